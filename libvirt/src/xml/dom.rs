//! A small, bounded element tree read with quick-xml's event reader.
//!
//! Network definitions are tiny, so reading the whole document first keeps the mapping code
//! simple (look up a child, check what is left over). The reader refuses what could exhaust
//! memory or stack — oversized documents, attributes or text, deep nesting, DTDs (and with
//! them entity expansion) — with a message instead of a panic.

use std::ops::Range;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::XmlError;

/// Kubernetes keeps objects under about 1.5 MiB, so no useful definition is bigger.
pub const MAX_DOCUMENT_BYTES: usize = 1536 * 1024;
/// The deepest nesting accepted (libvirt's own elements go five deep; metadata may go deeper).
pub const MAX_DEPTH: usize = 64;
/// The longest attribute value or text node accepted.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// One element: its qualified name, attributes (namespace declarations included) in document
/// order, child elements, the text directly inside it, and where its content lies in the
/// source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The name as written, with its prefix (`dnsmasq:option`).
    pub name: String,
    /// `(name, value)` pairs, values unescaped.
    pub attributes: Vec<(String, String)>,
    /// Child elements in order.
    pub children: Vec<Element>,
    /// The character data directly inside, concatenated and unescaped.
    pub text: String,
    /// The byte range of everything between the start and end tag (empty for `<x/>`).
    pub inner: Range<usize>,
}

impl Element {
    /// `at` is the position of the start tag, for messages.
    fn from_start(start: &BytesStart, at: u64, source: &str) -> Result<Self, XmlError> {
        let name = start.name().as_ref().to_string();
        let mut attributes = Vec::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| {
                syntax_at(source, at, &format!("in the attributes of <{name}>: {e}"))
            })?;
            let key = attribute.key.as_ref().to_string();
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| syntax_at(source, at, &format!("attribute {key} of <{name}>: {e}")))?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(XmlError::TooLarge {
                    what: format!("attribute {key} of <{name}>"),
                    size: value.len(),
                    limit: MAX_VALUE_BYTES,
                });
            }
            attributes.push((key, value.into_owned()));
        }
        Ok(Self {
            name,
            attributes,
            children: Vec::new(),
            text: String::new(),
            inner: 0..0,
        })
    }

    /// The value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The element's prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.name.split_once(':').map(|(prefix, _)| prefix)
    }
}

/// Reads a document and returns its root element.
pub fn parse(source: &str) -> Result<Element, XmlError> {
    if source.len() > MAX_DOCUMENT_BYTES {
        return Err(XmlError::TooLarge {
            what: "the document".into(),
            size: source.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let mut reader = Reader::from_str(source);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| syntax_at(source, reader.error_position(), &e.to_string()))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(syntax_at(
                        source,
                        before,
                        &format!("elements are nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                if root.is_some() {
                    return Err(syntax_at(source, before, "content after the root element"));
                }
                let mut element = Element::from_start(&start, before, source)?;
                let at = to_usize(reader.buffer_position());
                element.inner = at..at;
                stack.push(element);
            }
            Event::Empty(start) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return Err(syntax_at(
                        source,
                        before,
                        "content after the root element or nested too deep",
                    ));
                }
                let element = Element::from_start(&start, before, source)?;
                attach(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                let mut element = stack
                    .pop()
                    .ok_or_else(|| syntax_at(source, before, "end tag without a start tag"))?;
                element.inner.end = to_usize(before);
                attach(&mut stack, &mut root, element);
            }
            Event::Text(text) => push_text(&mut stack, &text.xml10_content(), source, before)?,
            Event::CData(data) => push_text(&mut stack, &data.xml10_content(), source, before)?,
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .map_err(|e| syntax_at(source, before, &e.to_string()))?
                        .map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&reference).map(String::from)
                };
                let Some(resolved) = resolved else {
                    return Err(syntax_at(
                        source,
                        before,
                        &format!("unknown entity &{};", &*reference),
                    ));
                };
                push_text(&mut stack, &resolved, source, before)?;
            }
            Event::DocType(_) => {
                return Err(syntax_at(
                    source,
                    before,
                    "DOCTYPE declarations are not accepted",
                ));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(syntax_at(
            source,
            to_u64(source.len()),
            &format!("the document ends inside <{}>", open.name),
        ));
    }
    root.ok_or_else(|| syntax_at(source, 0, "the document has no root element"))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], text: &str, source: &str, at: u64) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => {
            if parent.text.len() + text.len() > MAX_VALUE_BYTES {
                return Err(XmlError::TooLarge {
                    what: format!("the text of <{}>", parent.name),
                    size: parent.text.len() + text.len(),
                    limit: MAX_VALUE_BYTES,
                });
            }
            parent.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(syntax_at(source, at, "text outside the root element")),
    }
}

fn to_usize(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

fn to_u64(position: usize) -> u64 {
    u64::try_from(position).unwrap_or(u64::MAX)
}

/// A syntax error with a line and column, counted in characters from 1.
fn syntax_at(source: &str, position: u64, message: &str) -> XmlError {
    let position = to_usize(position).min(source.len());
    let mut boundary = position;
    while !source.is_char_boundary(boundary) {
        boundary -= 1;
    }
    let before = &source[..boundary];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    XmlError::Syntax {
        line,
        column,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_attributes_and_text() {
        let root = parse("<?xml version='1.0'?>\n<a x='1' y=\"&lt;2&gt;\"><!-- c --><b>t&amp;u&#x41;<![CDATA[<v>]]></b><c/></a>").unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.attribute("y"), Some("<2>"));
        assert_eq!(root.children.len(), 2);
        assert_eq!(root.children[0].text, "t&uA<v>");
        assert_eq!(root.children[1].inner, 0..0);
    }

    #[test]
    fn records_the_inner_source_range() {
        let source = "<a><m><x:y xmlns:x='u'>z</x:y></m></a>";
        let root = parse(source).unwrap();
        let m = &root.children[0];
        assert_eq!(&source[m.inner.clone()], "<x:y xmlns:x='u'>z</x:y>");
        assert_eq!(m.children[0].prefix(), Some("x"));
    }

    #[test]
    fn refuses_broken_documents_with_a_position() {
        let cases = [
            ("<a><b></a>", "line 1"),
            ("<a>", "ends inside <a>"),
            ("", "no root element"),
            ("<a/><b/>", "after the root element"),
            ("<a>&foo;</a>", "unknown entity &foo;"),
            ("<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>", "DOCTYPE"),
            ("text<a/>", "outside the root element"),
            ("<a x='1' x='2'/>", "line 1"),
            ("<a>\n  <b x=1/></a>", "line 2"),
        ];
        for (source, expected) in cases {
            let err = parse(source).unwrap_err().to_string();
            assert!(err.contains(expected), "{source:?}: {err}");
        }
    }

    #[test]
    fn refuses_deep_nesting_and_huge_values() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(
            parse(&deep)
                .unwrap_err()
                .to_string()
                .contains("nested deeper")
        );
        let huge = format!("<a x='{}'/>", "v".repeat(MAX_VALUE_BYTES + 1));
        assert!(matches!(parse(&huge), Err(XmlError::TooLarge { .. })));
        let long_text = format!("<a>{}</a>", "v".repeat(MAX_VALUE_BYTES + 1));
        assert!(matches!(parse(&long_text), Err(XmlError::TooLarge { .. })));
        let big = format!("<a>{}</a>", "<b/>".repeat(MAX_DOCUMENT_BYTES / 4));
        assert!(matches!(parse(&big), Err(XmlError::TooLarge { .. })));
    }
}
