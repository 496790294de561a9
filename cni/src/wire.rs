//! The request and reply on the agent's socket: one JSON document each way, each on one line,
//! on a fresh connection per call. The shim sends every `CNI_*` variable as it found it and
//! stdin verbatim, so the agent parses the call with the same [`crate::Call::parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;

/// A CNI call as the shim forwards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Every `CNI_*` variable of the plugin's environment.
    pub env: BTreeMap<String, String>,
    /// The network configuration, as read from stdin.
    pub stdin: String,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    /// Success; `output` is what the plugin prints (nothing for DEL, GC and STATUS).
    Success {
        /// The result to print.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
    /// Failure, as the spec's error result.
    Failure {
        /// The error.
        error: CniError,
    },
}

impl Reply {
    /// The reply for an outcome.
    pub fn from_outcome(outcome: Result<Option<Value>, CniError>) -> Self {
        match outcome {
            Ok(output) => Self::Success { output },
            Err(error) => Self::Failure { error },
        }
    }
}

/// The `CNI_*` variables of an environment.
pub fn cni_env(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(key, _)| key.starts_with("CNI_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Success { output: None },
            Reply::Success {
                output: Some(serde_json::json!({"cniVersion": "1.0.0", "interfaces": []})),
            },
            Reply::Failure {
                error: CniError::config("field 'network': no Network 'x'"),
            },
        ] {
            let line = serde_json::to_string(&reply).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
        }
    }

    #[test]
    fn only_cni_variables_are_forwarded() {
        let env = cni_env([
            ("CNI_COMMAND".to_string(), "ADD".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
            ("KUBECONFIG".to_string(), "/secret".to_string()),
        ]);
        assert_eq!(env.keys().collect::<Vec<_>>(), ["CNI_COMMAND"]);
    }
}
