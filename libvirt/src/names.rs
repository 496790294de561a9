//! libvirt network names versus Kubernetes object names.
//!
//! libvirt accepts almost any name (capitals, underscores, quotes); a cluster-scoped object
//! needs a DNS subdomain name. Import derives one, and keeps the original in
//! `spec.libvirtName` when the two differ, so export gives back the name libvirt knew.

/// The longest Network name. Kubernetes allows 253 characters for object names, but a
/// network's name is also a label value (`switchyard.dev/network=<name>`), the name part of a
/// label key (`net.switchyard.dev/<name>`) and of an extended resource
/// (`switchyard.dev/<name>`), each limited to 63.
pub const MAX_OBJECT_NAME: usize = 63;

/// The kernel's buffer for an interface name, NUL included (`IFNAMSIZ` in `<linux/if.h>`).
/// Defined here, below every crate that checks device names; `switchyard_placement::kernel`
/// is where the rest of switchyard takes it from.
pub const IFNAMSIZ: usize = 16;

/// The longest interface name the kernel takes: [`IFNAMSIZ`] less the NUL.
pub const MAX_IFNAME_LEN: usize = IFNAMSIZ - 1;

/// A valid Kubernetes object name for a libvirt network name: lower-cased, every run of
/// characters outside `[a-z0-9.-]` replaced by one `-`, each dot-separated label trimmed of
/// dashes (empty labels dropped), at most 63 characters; `network` if nothing is left.
/// Names that are already valid come back unchanged.
pub fn object_name_for(libvirt_name: &str) -> String {
    let mut mapped = String::with_capacity(libvirt_name.len());
    let mut in_replaced_run = false;
    for c in libvirt_name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
            mapped.push(c);
            in_replaced_run = false;
        } else if !in_replaced_run {
            mapped.push('-');
            in_replaced_run = true;
        }
    }
    let mut name = clean_labels(&mapped);
    if name.len() > MAX_OBJECT_NAME {
        // Only ASCII is left, so any byte index is a character boundary.
        name.truncate(MAX_OBJECT_NAME);
        name = clean_labels(&name);
    }
    if name.is_empty() {
        "network".to_string()
    } else {
        name
    }
}

fn clean_labels(s: &str) -> String {
    s.split('.')
        .map(|label| label.trim_matches('-'))
        .filter(|label| !label.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether `name` is a valid Network name: an RFC 1123 subdomain of at most 63 characters.
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_OBJECT_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept() {
        for name in ["default", "vepa-net", "net.example", "a1", "a--b"] {
            assert_eq!(object_name_for(name), name);
            assert!(is_object_name(name));
        }
    }

    #[test]
    fn libvirt_only_characters_are_replaced() {
        assert_eq!(object_name_for("8021Qbh-net"), "8021qbh-net");
        assert_eq!(object_name_for("passthrough_001"), "passthrough-001");
        assert_eq!(
            object_name_for("default\"with\"quotes\""),
            "default-with-quotes"
        );
        assert_eq!(object_name_for("__x__"), "x");
        assert_eq!(object_name_for("\"\"\""), "network");
        assert_eq!(object_name_for("Ünïcode net"), "n-code-net");
    }

    #[test]
    fn derived_names_are_always_valid() {
        let long = "A_".repeat(400);
        for name in ["", "-", "..", "a..b", &long, "x-.y", "ÄÖÜ", "a/b"] {
            let derived = object_name_for(name);
            assert!(derived.len() <= MAX_OBJECT_NAME, "{name:?} -> {derived:?}");
            assert!(is_object_name(&derived), "{name:?} -> {derived:?}");
        }
    }

    #[test]
    fn rejects_invalid_object_names() {
        for name in ["", "Upper", "a_b", "-a", "a-", "a..b", "a.-b"] {
            assert!(!is_object_name(name), "{name}");
        }
    }
}
