//! `<metadata>`: applications' own XML, kept verbatim as text.
//!
//! Import keeps the source of the elements inside `<metadata>` with their common indentation
//! removed; export indents it back under `<metadata>`. Every namespace prefix used inside must
//! be declared inside, so the text stands on its own (libvirt likewise requires metadata
//! elements to carry their own namespace).

use super::XmlError;
use super::dom::{self, Element};
use super::node::Node;

/// The metadata of `node` as standalone XML text, or `None` when it holds no element.
pub(super) fn capture(node: Node, source: &str) -> Result<Option<String>, XmlError> {
    node.only_attributes(&[], &[])?;
    if node.element.children.is_empty() {
        return Ok(None);
    }
    let raw = source.get(node.element.inner.clone()).unwrap_or_default();
    let text = dedent(raw);
    // What is stored must be what export accepts, or the metadata would not come back.
    check(&text).map_err(|message| node.error(message))?;
    Ok(Some(text))
}

/// Whether `metadata` is one or more XML elements, each with its namespace declared inside.
pub fn check(metadata: &str) -> Result<(), String> {
    let wrapped = format!("<metadata>{metadata}</metadata>");
    let root = dom::parse(&wrapped).map_err(|e| e.to_string())?;
    if root.children.is_empty() {
        return Err("no element found".into());
    }
    if !root.text.trim().is_empty() {
        return Err("text outside the elements".into());
    }
    for child in &root.children {
        if child.prefix().is_none() && child.attribute("xmlns").is_none() {
            return Err(format!("<{}> has no namespace", child.name));
        }
        check_namespaces(child, &[])?;
    }
    Ok(())
}

fn check_namespaces(element: &Element, outer: &[String]) -> Result<(), String> {
    let mut declared: Vec<String> = outer.to_vec();
    declared.extend(
        element
            .attributes
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("xmlns:").map(str::to_string)),
    );
    let prefixes = element.prefix().into_iter().chain(
        element
            .attributes
            .iter()
            .filter_map(|(k, _)| k.split_once(':').map(|(p, _)| p).filter(|p| *p != "xmlns")),
    );
    for prefix in prefixes {
        if prefix != "xml" && !declared.iter().any(|d| d == prefix) {
            return Err(format!(
                "namespace prefix '{prefix}' of <{}> is not declared inside <metadata>; declare it on the element (xmlns:{prefix}=\"...\")",
                element.name
            ));
        }
    }
    for child in &element.children {
        check_namespaces(child, &declared)?;
    }
    Ok(())
}

/// The text with XML line ends (`\r\n` and `\r` become `\n`, as any XML reader sees them),
/// surrounding blank lines, whitespace-only lines' blanks and the indentation common to all
/// lines removed. Removing a common prefix, not a count of blanks, keeps mixed tabs and spaces
/// intact, so importing the export gives the same text back.
fn dedent(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = raw
        .trim_end()
        .split('\n')
        .skip_while(|l| l.trim().is_empty())
        .collect();
    let indentation = |l: &str| -> usize { l.len() - l.trim_start_matches([' ', '\t']).len() };
    let mut common: Option<&str> = None;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let own = &line[..indentation(line)];
        common = Some(match common {
            None => own,
            Some(so_far) => {
                let shared = so_far
                    .bytes()
                    .zip(own.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                &so_far[..shared]
            }
        });
    }
    let common = common.unwrap_or("");
    lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                &l[common.len()..]
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata` indented to sit inside `<metadata>` at `indent` spaces.
pub(super) fn indent(metadata: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    metadata
        .split('\n')
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedent_removes_a_common_prefix_and_is_stable() {
        let raw = "\r\n\t<a:x xmlns:a='u'>\r\r\n    <a:y/>\n\t</a:x>\n";
        let once = dedent(raw);
        assert_eq!(once, "\t<a:x xmlns:a='u'>\n\n    <a:y/>\n\t</a:x>");
        assert_eq!(dedent(&indent(&once, 4)), once);
    }

    #[test]
    fn dedents_and_reindents() {
        let raw = "\n    <a:x xmlns:a='u'>\n      <a:y/>\n    </a:x>\n  ";
        let text = dedent(raw);
        assert_eq!(text, "<a:x xmlns:a='u'>\n  <a:y/>\n</a:x>");
        assert_eq!(
            indent(&text, 4),
            "    <a:x xmlns:a='u'>\n      <a:y/>\n    </a:x>"
        );
    }

    #[test]
    fn standalone_metadata_is_checked() {
        assert_eq!(
            check("<app1:foo xmlns:app1=\"http://foo.org/\">fooish</app1:foo>"),
            Ok(())
        );
        assert_eq!(check("<foo xmlns=\"http://foo.org/\"/>"), Ok(()));
        assert!(check("").unwrap_err().contains("no element"));
        assert!(check("plain text").unwrap_err().contains("no element"));
        assert!(check("<foo/>").unwrap_err().contains("no namespace"));
        assert!(check("<a:foo/>").unwrap_err().contains("prefix 'a'"));
        assert!(
            check("<a:foo xmlns:a='u'><b:bar/></a:foo>")
                .unwrap_err()
                .contains("prefix 'b'")
        );
        assert!(check("<a:foo xmlns:a='u'>").is_err());
        assert!(check("<a:foo xmlns:a='u'/></metadata><x/><metadata>").is_err());
    }
}
