//! Reading networks and ports from files (libvirt XML or Kubernetes YAML), standard input, or
//! the cluster.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_crds::{Network, NetworkPort};
use switchyard_libvirt::{XmlError, names, network_from_xml};

use crate::cluster;
use crate::failure::Failure;

/// A document and the name to show for it.
pub struct Source {
    /// The file name, or `<stdin>`.
    pub name: String,
    /// The document.
    pub text: String,
}

impl Source {
    /// Reads `path`, or standard input for `-`.
    pub fn read(path: &str) -> Result<Self, Failure> {
        if path == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")
                .map_err(Failure::Input)?;
            return Ok(Self {
                name: "<stdin>".into(),
                text,
            });
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))
            .map_err(Failure::Input)?;
        Ok(Self {
            name: path.into(),
            text,
        })
    }

    /// The YAML documents of the file (separated by `---` lines), each as a source of its own
    /// named `<file>: document N` (N counting from 1, empty documents left out) when there are
    /// several; a single document, or XML, is the source itself. Each document's text keeps
    /// its place in the file (the lines before it are left blank), so that the line numbers
    /// serde_yaml gives are the file's.
    pub fn documents(self) -> Vec<Source> {
        if self.is_xml() {
            return vec![self];
        }
        let mut documents: Vec<String> = vec![String::new()];
        for line in self.text.split_inclusive('\n') {
            let marker = line.trim_end();
            if marker == "---" || marker.starts_with("--- ") {
                documents.push(String::new());
            } else if let Some(document) = documents.last_mut() {
                document.push_str(line);
            }
        }
        // Blank lines for everything before a document: its earlier documents and separators.
        let mut lines_before = 0;
        let mut texts = Vec::new();
        for text in &documents {
            let blank = text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
            if !blank {
                texts.push(format!("{}{text}", "\n".repeat(lines_before)));
            }
            lines_before += text.matches('\n').count() + 1;
        }
        if texts.len() <= 1 {
            return vec![self];
        }
        texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| Source {
                name: format!("{}: document {}", self.name, i + 1),
                text,
            })
            .collect()
    }

    /// Whether the document is XML (it starts with `<`) rather than YAML.
    pub fn is_xml(&self) -> bool {
        self.text.trim_start().starts_with('<')
    }

    /// The document as a `Network`: libvirt XML is imported, YAML must be a Network object.
    pub fn network(&self) -> Result<Network, Failure> {
        if self.is_xml() {
            network_from_xml(&self.text).map_err(|err| self.xml_failure(&err))
        } else {
            self.object("Network")
        }
    }

    /// The document as a `NetworkPort` object.
    pub fn port(&self) -> Result<NetworkPort, Failure> {
        self.object("NetworkPort")
    }

    fn xml_failure(&self, err: &XmlError) -> Failure {
        let lines: Vec<String> = err.to_string().lines().map(|l| format!("  {l}")).collect();
        Failure::Invalid(format!(
            "{}: not an importable libvirt network definition:\n{}",
            self.name,
            lines.join("\n")
        ))
    }

    /// A Kubernetes object of `kind` from YAML (or JSON, which is YAML).
    fn object<T: DeserializeOwned + Serialize>(&self, kind: &str) -> Result<T, Failure> {
        let invalid = |message: String| Failure::Invalid(format!("{}: {message}", self.name));
        let value: serde_yaml::Value =
            serde_yaml::from_str(&self.text).map_err(|e| invalid(format!("not YAML: {e}")))?;
        let found_kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if found_kind != kind {
            return Err(invalid(format!(
                "expected a switchyard {kind} (kind: {kind}), found {}",
                if found_kind.is_empty() {
                    "no kind".to_string()
                } else {
                    format!("kind: {found_kind}")
                }
            )));
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let expected = format!("{}/{}", switchyard_crds::GROUP, switchyard_crds::VERSION);
        if api_version != expected {
            return Err(invalid(format!(
                "expected apiVersion: {expected}, found '{api_version}'"
            )));
        }
        // From the text rather than the value, so that errors carry the field and line.
        let object: T = serde_yaml::from_str(&self.text)
            .map_err(|e| invalid(format!("not a valid {kind}: {e}")))?;
        // serde drops fields the types do not know without a word: a misspelt `forwrd:` would
        // leave a vepa network isolated and still "valid". What was written and is not kept is
        // refused, as the apiserver's strict field validation would.
        let kept = serde_yaml::to_value(&object)
            .map_err(|e| invalid(format!("not a valid {kind}: {e}")))?;
        let mut unknown = Vec::new();
        unknown_fields(&value, &kept, "", &mut unknown);
        if !unknown.is_empty() {
            return Err(invalid(format!(
                "not a valid {kind}: unknown field(s) {} (misspelt, or from another version of the API?)",
                unknown.join(", ")
            )));
        }
        Ok(object)
    }
}

/// The fields of `given` (as written) that `kept` (the typed object written back) lacks, as
/// paths like `spec.forward.frob`. Empty values are not counted: the types leave out empty
/// lists, maps and unset options when writing.
fn unknown_fields(
    given: &serde_yaml::Value,
    kept: &serde_yaml::Value,
    path: &str,
    found: &mut Vec<String>,
) {
    use serde_yaml::Value;
    match (given, kept) {
        (Value::Mapping(given), Value::Mapping(kept)) => {
            for (key, value) in given {
                let name = match key {
                    Value::String(name) => name.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                match kept.get(key) {
                    Some(kept) => unknown_fields(value, kept, &child, found),
                    None if is_empty(value) => {}
                    None => found.push(child),
                }
            }
        }
        (Value::Sequence(given), Value::Sequence(kept)) => {
            for (i, (given, kept)) in given.iter().zip(kept).enumerate() {
                unknown_fields(given, kept, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match value {
        Value::Null => true,
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(entries) => entries.is_empty(),
        _ => false,
    }
}

/// A network given as a file (XML or YAML), `-`, or the name of a Network in the cluster.
pub fn network(file_or_name: &str) -> Result<(String, Network), Failure> {
    if file_or_name == "-" || Path::new(file_or_name).is_file() {
        let source = Source::read(file_or_name)?;
        let network = source.network()?;
        return Ok((source.name, network));
    }
    let looks_like_file = file_or_name.contains('/')
        || [".xml", ".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| file_or_name.ends_with(ext));
    if !looks_like_file && names::is_object_name(file_or_name) {
        let network = cluster::fetch_network(file_or_name)?;
        return Ok((format!("network/{file_or_name}"), network));
    }
    Err(Failure::Input(anyhow::anyhow!(
        "{file_or_name}: no such file{}",
        if looks_like_file {
            ""
        } else {
            ", and not a valid Network name"
        }
    )))
}
