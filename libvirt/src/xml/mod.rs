//! The one mapping between libvirt's network XML and the `Network` object, shared by the CLI
//! and the controller.
//!
//! - [`network_from_xml`] reads what libvirt's parser reads and refuses what it refuses,
//!   naming the element and the rule. Unlike libvirt it also refuses elements and attributes
//!   it does not know, instead of dropping them silently: what imports, exports again.
//! - [`network_to_xml`] writes what `virsh net-dumpxml --inactive` would print for the same
//!   definition, normalisations included (see [`format`]).
//! - [`canonical`] puts a document in a form where two equivalent documents compare equal.

mod canonical;
mod dom;
mod format;
mod metadata;
mod node;
mod parse;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchyard_crds::{Network, NetworkSpec};

pub use canonical::canonical;
pub use dom::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_VALUE_BYTES};

use crate::names;
use crate::validate::{self, FieldError};

/// The namespace of libvirt's `<dnsmasq:options>` extension.
pub const DNSMASQ_NAMESPACE: &str = "http://libvirt.org/schemas/network/dnsmasq/1.0";

/// Why a document cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML, or XML this reader refuses to process (DTDs, entities).
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Over a size limit.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Well-formed, but not a network definition: unknown element or attribute, wrong type.
    #[error("{element}: {message}")]
    Invalid {
        /// The XPath of the element or attribute, e.g. `/network/forward/@mode`.
        element: String,
        /// What is wrong.
        message: String,
    },
    /// A network definition that breaks libvirt's rules.
    #[error("{}", rejected(.problems))]
    Rejected {
        /// Every broken rule, with the element concerned.
        problems: Vec<FieldError>,
    },
}

fn rejected(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.element, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads libvirt network XML into a `Network`. `metadata.name` is a valid Kubernetes name
/// derived from `<name>`; `spec.libvirtName` keeps the original when the two differ.
pub fn network_from_xml(xml: &str) -> Result<Network, XmlError> {
    let root = dom::parse(xml)?;
    let (name, spec) = parse::network(&root, xml)?;
    let problems = validate::check_definition(&spec);
    if !problems.is_empty() {
        return Err(XmlError::Rejected { problems });
    }
    let object_name = names::object_name_for(&name);
    let spec = NetworkSpec {
        libvirt_name: (object_name != name).then_some(name),
        ..spec
    };
    Ok(Network {
        metadata: ObjectMeta {
            name: Some(object_name),
            ..Default::default()
        },
        spec,
        status: None,
    })
}

/// Writes a `Network` as libvirt network XML, named `spec.libvirtName` or else
/// `metadata.name`.
pub fn network_to_xml(net: &Network) -> String {
    let name = net
        .spec
        .libvirt_name
        .as_deref()
        .or(net.metadata.name.as_deref())
        .unwrap_or_default();
    format::network(name, &net.spec)
}

/// Whether `text` is valid content for `spec.libvirtMetadata`: XML elements, each with its
/// namespace declared inside.
pub fn check_metadata(text: &str) -> Result<(), String> {
    metadata::check(text)
}

#[cfg(test)]
mod tests;
