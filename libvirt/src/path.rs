//! Where a value lives, named two ways: as a field of the `Network` object
//! (`spec.forward.interfaces[1].dev`) and as a node of libvirt's XML
//! (`/network/forward/interface[2]/@dev`). Every check reports the first; the XML import
//! reports the second, so each user reads the name of what they wrote.

use std::fmt;

/// A path from a `Network`'s `spec` to one field, with its place in libvirt's XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field { json: &'static str, xml: Xml },
    Index(usize),
}

/// What a field is in the XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Xml {
    /// A child element (or a short run of them, like `parameters/@typeid`).
    Node(&'static str),
    /// An attribute of the current element.
    Attribute(&'static str),
    /// Not part of libvirt's XML (a switchyard-only field).
    Absent,
}

impl FieldPath {
    /// The spec itself, `spec` in the object and `/network` in the XML.
    pub fn spec() -> Self {
        Self {
            segments: Vec::new(),
        }
    }

    /// A field that is a child element in the XML: `.elem("ips", "ip")`.
    pub fn elem(&self, json: &'static str, xml: &'static str) -> Self {
        self.push(Segment::Field {
            json,
            xml: Xml::Node(xml),
        })
    }

    /// A field that is an attribute in the XML: `.attr("dev", "dev")`.
    pub fn attr(&self, json: &'static str, xml: &'static str) -> Self {
        self.push(Segment::Field {
            json,
            xml: Xml::Attribute(xml),
        })
    }

    /// A field with no counterpart in libvirt's XML (node groups, capacity limits).
    pub fn field(&self, json: &'static str) -> Self {
        self.push(Segment::Field {
            json,
            xml: Xml::Absent,
        })
    }

    /// The `i`th item (0-based) of a list field.
    pub fn index(&self, i: usize) -> Self {
        self.push(Segment::Index(i))
    }

    fn push(&self, segment: Segment) -> Self {
        let mut segments = self.segments.clone();
        segments.push(segment);
        Self { segments }
    }

    /// The path in the object, e.g. `spec.forward.interfaces[1].dev`.
    pub fn spec_path(&self) -> String {
        let mut out = String::from("spec");
        for segment in &self.segments {
            match segment {
                Segment::Field { json, .. } => {
                    out.push('.');
                    out.push_str(json);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The place in libvirt's XML, e.g. `/network/forward/interface[2]/@dev` (XPath, so
    /// positions count from 1). Fields with no XML counterpart end the path with
    /// `(switchyard only: <field>)`.
    pub fn xml_path(&self) -> String {
        let mut out = String::from("/network");
        for segment in &self.segments {
            match segment {
                Segment::Field { xml, .. } => match xml {
                    Xml::Node(name) => {
                        out.push('/');
                        out.push_str(name);
                    }
                    Xml::Attribute(name) => {
                        out.push_str("/@");
                        out.push_str(name);
                    }
                    Xml::Absent => {
                        return format!("{out} (switchyard only: {})", self.spec_path());
                    }
                },
                Segment::Index(i) => out.push_str(&format!("[{}]", i + 1)),
            }
        }
        out
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_object_and_xml_paths() {
        let path = FieldPath::spec()
            .elem("forward", "forward")
            .elem("interfaces", "interface")
            .index(1)
            .attr("dev", "dev");
        assert_eq!(path.spec_path(), "spec.forward.interfaces[1].dev");
        assert_eq!(path.xml_path(), "/network/forward/interface[2]/@dev");
        assert_eq!(path.to_string(), "spec.forward.interfaces[1].dev");
    }

    #[test]
    fn nested_xml_nodes_and_root_attributes() {
        let typeid = FieldPath::spec()
            .elem("portgroups", "portgroup")
            .index(0)
            .elem("virtualport", "virtualport")
            .elem("typeid", "parameters/@typeid");
        assert_eq!(typeid.spec_path(), "spec.portgroups[0].virtualport.typeid");
        assert_eq!(
            typeid.xml_path(),
            "/network/portgroup[1]/virtualport/parameters/@typeid"
        );
        assert_eq!(
            FieldPath::spec().attr("ipv6", "ipv6").xml_path(),
            "/network/@ipv6"
        );
    }

    #[test]
    fn switchyard_only_fields_say_so_in_xml() {
        let path = FieldPath::spec().field("nodeGroups").index(2).field("name");
        assert_eq!(path.spec_path(), "spec.nodeGroups[2].name");
        assert_eq!(
            path.xml_path(),
            "/network (switchyard only: spec.nodeGroups[2].name)"
        );
    }
}
