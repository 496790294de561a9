//! Spec versions. The L2-only result switchyard returns has the same shape from 0.3.0 to
//! 1.1.0 (1.1.0 adds `interfaces[].mtu`), so those are spoken; 0.1.0 and 0.2.0 have no
//! `interfaces` at all and are refused.

use crate::error::{CniError, INCOMPATIBLE_VERSION};

/// The newest version, used for answers that carry no caller's version.
pub const CURRENT: &str = "1.1.0";

/// Every version spoken, oldest first.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// `VERSION`'s answer.
pub fn version_result() -> serde_json::Value {
    serde_json::json!({"cniVersion": CURRENT, "supportedVersions": SUPPORTED})
}

/// A spec version as (major, minor, patch).
pub fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

/// Checks that `version` (the configuration's `cniVersion`) is spoken.
pub fn check(version: &str) -> Result<(), CniError> {
    if SUPPORTED.contains(&version) {
        return Ok(());
    }
    Err(CniError::new(
        INCOMPATIBLE_VERSION,
        "incompatible CNI version",
        format!(
            "field 'cniVersion': switchyard-cni speaks {}, not '{version}'; set the \
             NetworkAttachmentDefinition's or the CNI configuration's cniVersion to one of them",
            SUPPORTED.join(", ")
        ),
    ))
}

/// Whether `version` is `at_least` or newer (unparsable versions are not).
pub fn at_least(version: &str, at_least: (u32, u32, u32)) -> bool {
    parse(version).is_some_and(|v| v >= at_least)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answer_lists_every_spoken_version() {
        assert_eq!(
            version_result(),
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            })
        );
    }

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse("1.1.0"), Some((1, 1, 0)));
        assert_eq!(parse("0.3.1"), Some((0, 3, 1)));
        for bad in ["", "1", "1.0", "1.0.0.0", "v1.0.0", "1.x.0"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(at_least("1.1.0", (1, 1, 0)));
        assert!(!at_least("1.0.0", (1, 1, 0)));
        assert!(at_least("0.4.0", (0, 4, 0)));
        assert!(!at_least("nonsense", (0, 0, 0)));
    }

    #[test]
    fn unspoken_versions_are_refused_with_the_list() {
        for ok in SUPPORTED {
            assert!(check(ok).is_ok(), "{ok}");
        }
        let error = check("0.2.0").unwrap_err();
        assert_eq!(error.code, 1);
        assert!(error.details.contains("'0.2.0'"), "{}", error.details);
        assert!(error.details.contains("1.0.0"), "{}", error.details);
    }
}
