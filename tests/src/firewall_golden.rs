//! libvirt's golden firewall files (../shared/corpus/libvirt/networkxml2firewalldata), read
//! the same way by the libvirt crate's conformance tests and the CLI's `render --nftables` test.

use std::path::{Path, PathBuf};

/// The directory of libvirt's firewall corpus.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/libvirt/networkxml2firewalldata")
}

/// A golden file as command lines: continuations joined, the dry run's `# handle` echoes
/// dropped, shell quoting undone.
pub fn golden_commands(file: &str) -> Vec<Vec<String>> {
    let path = data_dir().join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .replace(" \\\n", " ")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("# handle"))
        .map(|line| shlex::split(line).unwrap_or_else(|| panic!("unbalanced quoting: {line}")))
        .collect()
}
