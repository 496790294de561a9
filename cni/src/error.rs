//! CNI error results (SPEC.md "Error"): a code, a short message, and details a person can act
//! on. Codes below 100 are the spec's; switchyard's own start at 100.

use serde::{Deserialize, Serialize};

/// 1: the configuration's `cniVersion` is not one this plugin speaks.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// 2: a field of the configuration is not supported.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// 3: the container is unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// 4: a `CNI_*` variable is missing or malformed.
pub const INVALID_ENVIRONMENT: u32 = 4;
/// 5: reading or writing failed.
pub const IO_FAILURE: u32 = 5;
/// 6: the configuration (or a reply) could not be decoded.
pub const DECODE_FAILURE: u32 = 6;
/// 7: the network configuration is invalid.
pub const INVALID_NETWORK_CONFIG: u32 = 7;
/// 11: a transient condition; try again later.
pub const TRY_AGAIN_LATER: u32 = 11;
/// 50: STATUS: the plugin cannot serve ADD now.
pub const PLUGIN_NOT_AVAILABLE: u32 = 50;

/// 100: switchyard refused the port: no device with room, merge conflict, capacity, or the
/// admission webhook's refusal. `details` says which, in the words the NetworkPort would carry.
pub const PORT_REFUSED: u32 = 100;
/// 101: the kernel refused the link (the interface name is taken, the device is busy, ...).
pub const LINK_FAILED: u32 = 101;
/// 102: CHECK found the attachment not as ADD left it.
pub const CHECK_FAILED: u32 = 102;
/// 103: the Kubernetes API refused or failed a call the agent needed.
pub const API_FAILED: u32 = 103;

/// A CNI error result. `msg` is short; `details` is the whole story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// The spec's code, or switchyard's (100 and above).
    pub code: u32,
    /// A short description.
    pub msg: String,
    /// What happened and what to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with a code, a message and details.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A missing or malformed `CNI_*` variable.
    pub fn environment(details: impl Into<String>) -> Self {
        Self::new(
            INVALID_ENVIRONMENT,
            "invalid environment variables",
            details,
        )
    }

    /// An invalid network configuration.
    pub fn config(details: impl Into<String>) -> Self {
        Self::new(
            INVALID_NETWORK_CONFIG,
            "invalid network configuration",
            details,
        )
    }

    /// Something that may work later (the agent starting, the API down).
    pub fn try_again(details: impl Into<String>) -> Self {
        Self::new(TRY_AGAIN_LATER, "try again later", details)
    }

    /// The error as the JSON object the runtime reads from stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut object = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            object["details"] = serde_json::Value::String(self.details.clone());
        }
        object
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code)
        } else {
            write!(f, "{} (code {}): {}", self.msg, self.code, self.details)
        }
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_is_the_specs_shape() {
        let error = CniError::config("field 'network': must not be empty");
        assert_eq!(
            error.to_json("1.0.0"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "code": 7,
                "msg": "invalid network configuration",
                "details": "field 'network': must not be empty",
            })
        );
        let bare = CniError::new(PLUGIN_NOT_AVAILABLE, "not available", "");
        assert_eq!(
            bare.to_json("1.1.0"),
            serde_json::json!({"cniVersion": "1.1.0", "code": 50, "msg": "not available"})
        );
    }
}
