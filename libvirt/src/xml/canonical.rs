//! A canonical form of an XML document, for comparing libvirt's output with ours: two
//! documents are equivalent when they have the same elements in the same order, the same
//! attributes (in any order, with either quote style) and the same non-blank text.
//!
//! Normalisation applied: attribute order and quoting, whitespace-only text (indentation),
//! leading and trailing blanks of text, `<x></x>` versus `<x/>`, comments, the XML
//! declaration. Element order is kept, since libvirt gives it meaning.

use super::XmlError;
use super::dom::{self, Element};

/// The canonical form of `xml`, one element per line.
pub fn canonical(xml: &str) -> Result<String, XmlError> {
    let root = dom::parse(xml)?;
    let mut out = String::new();
    write(&root, 0, &mut out);
    Ok(out)
}

fn write(element: &Element, depth: usize, out: &mut String) {
    out.push_str(&"  ".repeat(depth));
    out.push('<');
    out.push_str(&element.name);
    let mut attributes: Vec<_> = element.attributes.iter().collect();
    attributes.sort();
    for (key, value) in attributes {
        out.push_str(&format!(" {key}={value:?}"));
    }
    out.push('>');
    let text = element.text.trim();
    if !text.is_empty() {
        out.push_str(&format!("{text:?}"));
    }
    out.push('\n');
    for child in &element.children {
        write(child, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_quoting_attribute_order_and_indentation() {
        let a = "<network a='1' b=\"2\">\n  <name>x</name>\n  <ip>\n  </ip>\n</network>";
        let b =
            "<?xml version='1.0'?><network b='2' a='1'><!-- c --><name> x </name><ip/></network>";
        assert_eq!(canonical(a).unwrap(), canonical(b).unwrap());
    }

    #[test]
    fn keeps_element_order_and_values() {
        let a = canonical("<n><a/><b/></n>").unwrap();
        assert_ne!(a, canonical("<n><b/><a/></n>").unwrap());
        assert_ne!(
            canonical("<n x='1'/>").unwrap(),
            canonical("<n x='2'/>").unwrap()
        );
        assert_ne!(
            canonical("<n>1</n>").unwrap(),
            canonical("<n>2</n>").unwrap()
        );
    }
}
