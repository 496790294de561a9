//! A view of an element while mapping it: it knows its XPath for error messages and refuses
//! attributes and children the mapping does not know, so nothing is dropped silently.

use super::XmlError;
use super::dom::Element;
use crate::values;

/// An element and its XPath, e.g. `/network/forward/interface[2]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node<'a> {
    pub(super) element: &'a Element,
    path: &'a str,
}

/// Owns the path strings of the nodes handed out, so nodes can borrow them.
pub(super) struct Child<'a> {
    pub(super) element: &'a Element,
    pub(super) path: String,
}

impl<'a> Child<'a> {
    pub(super) fn node(&self) -> Node<'_> {
        Node {
            element: self.element,
            path: &self.path,
        }
    }
}

impl<'a> Node<'a> {
    pub(super) fn root(element: &'a Element, path: &'a str) -> Self {
        Self { element, path }
    }

    pub(super) fn error(&self, message: impl Into<String>) -> XmlError {
        XmlError::Invalid {
            element: self.path.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn attribute_error(&self, name: &str, message: impl Into<String>) -> XmlError {
        XmlError::Invalid {
            element: format!("{}/@{name}", self.path),
            message: message.into(),
        }
    }

    /// Fails on any attribute outside `known` (namespace declarations aside). `ignored` lists
    /// attributes libvirt writes in live status only (e.g. `connections`), accepted and
    /// dropped.
    pub(super) fn only_attributes(&self, known: &[&str], ignored: &[&str]) -> Result<(), XmlError> {
        for (name, _) in &self.element.attributes {
            let declaration = name == "xmlns" || name.starts_with("xmlns:");
            if !declaration && !known.contains(&name.as_str()) && !ignored.contains(&name.as_str())
            {
                return Err(self.attribute_error(
                    name,
                    format!(
                        "unknown attribute '{name}' on <{}>{}",
                        self.element.name,
                        expected(known)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Fails on any child element outside `known`.
    pub(super) fn only_children(&self, known: &[&str]) -> Result<(), XmlError> {
        match self
            .element
            .children
            .iter()
            .find(|c| !known.contains(&c.name.as_str()))
        {
            Some(child) => Err(self.error(format!(
                "unknown element <{}> in <{}>{}",
                child.name,
                self.element.name,
                if known.is_empty() {
                    " (it has no child elements)".to_string()
                } else {
                    format!(
                        " (expected {})",
                        known
                            .iter()
                            .map(|k| format!("<{k}>"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ))),
            None => Ok(()),
        }
    }

    /// Every child named `name`, with XPath positions.
    pub(super) fn children(&self, name: &str) -> Vec<Child<'a>> {
        self.element
            .children
            .iter()
            .filter(|c| c.name == name)
            .enumerate()
            .map(|(i, element)| Child {
                element,
                path: format!("{}/{name}[{}]", self.path, i + 1),
            })
            .collect()
    }

    /// The child named `name`, which may appear at most once.
    pub(super) fn child(&self, name: &str) -> Result<Option<Child<'a>>, XmlError> {
        let mut found = self.element.children.iter().filter(|c| c.name == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(self.error(format!(
                "<{name}> may appear only once in <{}>",
                self.element.name
            )));
        }
        Ok(first.map(|element| Child {
            element,
            path: format!("{}/{name}", self.path),
        }))
    }

    pub(super) fn attr(&self, name: &str) -> Option<&'a str> {
        self.element.attribute(name)
    }

    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(str::to_string)
    }

    pub(super) fn required(&self, name: &str) -> Result<&'a str, XmlError> {
        self.attr(name).ok_or_else(|| {
            self.attribute_error(
                name,
                format!("<{}> needs the attribute '{name}'", self.element.name),
            )
        })
    }

    /// `yes`/`no` (any case, as libvirt's case-insensitive readers accept).
    pub(super) fn yes_no(&self, name: &str) -> Result<Option<bool>, XmlError> {
        self.choice(name, &[("yes", true), ("no", false)])
    }

    /// `on`/`off`.
    pub(super) fn on_off(&self, name: &str) -> Result<Option<bool>, XmlError> {
        self.choice(name, &[("on", true), ("off", false)])
    }

    /// One of a fixed set of words.
    pub(super) fn choice<T: Copy>(
        &self,
        name: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, XmlError> {
        let Some(value) = self.attr(name) else {
            return Ok(None);
        };
        options
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(value))
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| {
                self.attribute_error(
                    name,
                    format!(
                        "'{}' is not a valid {name}; expected {}",
                        shorten(value),
                        options
                            .iter()
                            .map(|(w, _)| format!("'{w}'"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                )
            })
    }

    /// A decimal whole number from 0 to `max`.
    pub(super) fn decimal(&self, name: &str, max: u64) -> Result<Option<u64>, XmlError> {
        self.number(name, max, |v| {
            v.parse()
                .ok()
                .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
        })
    }

    /// A whole number from 0 to `max` in C notation (decimal, `0x` hex or leading-0 octal),
    /// as libvirt reads virtualport parameters and PCI addresses.
    pub(super) fn c_number(&self, name: &str, max: u64) -> Result<Option<u64>, XmlError> {
        self.number(name, max, values::parse_c_integer)
    }

    fn number(
        &self,
        name: &str,
        max: u64,
        parse: impl Fn(&str) -> Option<u64>,
    ) -> Result<Option<u64>, XmlError> {
        let Some(value) = self.attr(name) else {
            return Ok(None);
        };
        match parse(value) {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(self.attribute_error(
                name,
                format!("'{}' is not a whole number from 0 to {max}", shorten(value)),
            )),
        }
    }
}

fn expected(known: &[&str]) -> String {
    if known.is_empty() {
        " (it takes no attributes)".to_string()
    } else {
        format!(" (expected {})", known.join(", "))
    }
}

/// Long values are cut in messages so an error stays readable.
pub(super) fn shorten(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        format!(
            "{}… ({} bytes)",
            value.chars().take(MAX).collect::<String>(),
            value.len()
        )
    }
}
