//! One CNI call, read from the process environment and stdin and checked as the spec asks
//! (SPEC.md §2 "Parameters", §3 "Deriving request configuration"). The shim checks a call
//! before it bothers the agent, and the agent checks it again with the same code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;
use crate::version;

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Check that the attachment is as ADD left it.
    Check,
    /// Whether ADD can be served now (spec 1.1).
    Status,
    /// Release every attachment not listed as valid (spec 1.1).
    Gc,
    /// Which versions are spoken.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        Ok(match text {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            other => {
                return Err(CniError::environment(format!(
                    "CNI_COMMAND '{other}' is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
                )));
            }
        })
    }

    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }

    /// The `CNI_*` variables the spec requires for this command.
    fn required(self) -> &'static [&'static str] {
        match self {
            Self::Add | Self::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Self::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Self::Status | Self::Gc | Self::Version => &[],
        }
    }
}

/// One attachment named by GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// `containerID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// The parts of the network configuration switchyard reads. Unknown keys are allowed, as the
/// spec requires.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetConf {
    /// `cniVersion`: the version the runtime speaks, and that answers must use.
    pub cni_version: String,
    /// `name`: the network configuration's name (GC's scope).
    pub name: String,
    /// `network`: the switchyard Network; `name` when left out.
    pub network: String,
    /// `portgroup`: the Network's portgroup to take settings from.
    pub portgroup: Option<String>,
    /// `socket`: the agent's socket; [`crate::DEFAULT_SOCKET`] when left out.
    pub socket: Option<String>,
    /// `mtu`: the link's MTU; the pool device's when left out.
    pub mtu: Option<u32>,
    /// `agentWaitSeconds`: how long ADD and CHECK wait for the agent to serve its socket.
    pub agent_wait_seconds: Option<u64>,
    /// `runtimeConfig.mac` (the `mac` capability; Multus sets it from the pod's request).
    pub runtime_mac: Option<String>,
    /// `runtimeConfig.deviceID` or `deviceID` (Multus, from a device plugin allocation).
    pub device_id: Option<String>,
    /// `prevResult`: on ADD the chain's result so far, on DEL and CHECK the ADD's result.
    pub prev_result: Option<Value>,
    /// GC: `cni.dev/valid-attachments` and the older `cni.dev/attachments`, together.
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// A CNI call: the command, its `CNI_*` parameters and the network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`, in order.
    pub args: Vec<(String, String)>,
    /// The network configuration from stdin (VERSION: only its `cniVersion`, if any).
    pub config: NetConf,
}

impl Call {
    /// Reads and checks a call from the `CNI_*` variables and stdin.
    pub fn parse(env: &BTreeMap<String, String>, stdin: &str) -> Result<Self, CniError> {
        let command = Command::parse(
            env.get("CNI_COMMAND")
                .ok_or_else(|| CniError::environment("CNI_COMMAND is not set"))?,
        )?;
        let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        for name in command.required() {
            if var(name).is_none() {
                return Err(CniError::environment(format!(
                    "{name} is not set; {} needs {}",
                    command.as_str(),
                    command.required().join(", ")
                )));
            }
        }
        let container_id = var("CNI_CONTAINERID");
        if let Some(id) = &container_id {
            check_container_id(id)?;
        }
        let ifname = var("CNI_IFNAME");
        if let Some(name) = &ifname {
            check_ifname(name)?;
        }
        let args = parse_args(env.get("CNI_ARGS").map_or("", String::as_str))?;
        let config = if command == Command::Version {
            NetConf::default()
        } else {
            NetConf::parse(stdin)?
        };
        if command == Command::Check && !version::at_least(&config.cni_version, (0, 4, 0)) {
            return Err(CniError::new(
                crate::error::INCOMPATIBLE_VERSION,
                "incompatible CNI version",
                format!(
                    "CHECK exists from cniVersion 0.4.0 on; the configuration says '{}'",
                    config.cni_version
                ),
            ));
        }
        Ok(Self {
            command,
            container_id,
            netns: var("CNI_NETNS"),
            ifname,
            args,
            config,
        })
    }

    /// The value of a `CNI_ARGS` key (the last one given).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The MAC the runtime asks for, as given: `runtimeConfig.mac`, then `CNI_ARGS` `MAC=`.
    /// Not checked here: the agent checks it with libvirt's one MAC parser (the shim stays
    /// small and does not link the libvirt crate), and [`RequestedMac::invalid`] makes its
    /// error.
    pub fn requested_mac(&self) -> Option<RequestedMac<'_>> {
        if let Some(mac) = &self.config.runtime_mac {
            return Some(RequestedMac {
                value: mac,
                source: MacSource::RuntimeConfig,
            });
        }
        self.arg("MAC").map(|mac| RequestedMac {
            value: mac,
            source: MacSource::CniArgs,
        })
    }

    /// The attachment this call is about (ADD, DEL, CHECK).
    pub fn attachment(&self) -> Option<Attachment> {
        Some(Attachment {
            container_id: self.container_id.clone()?,
            ifname: self.ifname.clone()?,
        })
    }
}

/// `CNI_CONTAINERID` must match `[A-Za-z0-9][A-Za-z0-9_.-]*` (SPEC.md §2).
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Ok(());
    }
    Err(CniError::environment(format!(
        "CNI_CONTAINERID '{id}' must start with a letter or digit and hold only letters, \
         digits, '_', '.' and '-'"
    )))
}

/// `CNI_IFNAME` must be a name the kernel accepts: 1 to 15 bytes, no '/', ':' or white space,
/// not `.` or `..` (Linux `dev_valid_name`).
fn check_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.len() > 15 {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is not a valid interface name")
    } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        Some("contains '/', ':' or white space")
    } else {
        None
    };
    match why {
        Some(why) => Err(CniError::environment(format!("CNI_IFNAME '{name}' {why}"))),
        None => Ok(()),
    }
}

/// Parses `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
pub fn parse_args(text: &str) -> Result<Vec<(String, String)>, CniError> {
    text.split(';')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CniError::environment(format!(
                "CNI_ARGS: '{part}' is not KEY=VALUE (pairs are separated by ';')"
            ))),
        })
        .collect()
}

/// A MAC the runtime asked for, and where it said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedMac<'a> {
    /// The value as the runtime wrote it.
    pub value: &'a str,
    /// Where it came from.
    pub source: MacSource,
}

/// Where a requested MAC came from: which field a refusal names, and its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacSource {
    /// `runtimeConfig.mac` in the network configuration.
    RuntimeConfig,
    /// `MAC=` in `CNI_ARGS`.
    CniArgs,
}

impl RequestedMac<'_> {
    /// The CNI error refusing this MAC for `why`: invalid network configuration (7) for
    /// `runtimeConfig.mac`, invalid environment (4) for `CNI_ARGS`, as the spec sorts them.
    pub fn invalid(&self, why: &str) -> CniError {
        match self.source {
            MacSource::RuntimeConfig => {
                CniError::config(format!("field 'runtimeConfig.mac': '{}' {why}", self.value))
            }
            MacSource::CniArgs => {
                CniError::environment(format!("CNI_ARGS MAC: '{}' {why}", self.value))
            }
        }
    }
}

impl NetConf {
    /// Parses the network configuration from stdin.
    pub fn parse(stdin: &str) -> Result<Self, CniError> {
        let value: Value = serde_json::from_str(stdin).map_err(|error| {
            CniError::new(
                crate::error::DECODE_FAILURE,
                "decoding failure",
                format!("the network configuration on stdin is not JSON: {error}"),
            )
        })?;
        let Value::Object(map) = &value else {
            return Err(CniError::config(
                "the network configuration must be a JSON object",
            ));
        };
        let text = |key: &str| -> Result<Option<String>, CniError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(CniError::config(format!("field '{key}' must be a string"))),
            }
        };
        let number = |key: &str| -> Result<Option<u64>, CniError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    CniError::config(format!("field '{key}' must be a non-negative integer"))
                }),
            }
        };
        let cni_version =
            text("cniVersion")?.ok_or_else(|| CniError::config("field 'cniVersion' is missing"))?;
        version::check(&cni_version)?;
        let name = text("name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| CniError::config("field 'name' is missing or empty"))?;
        let network = match text("network")? {
            Some(n) if n.is_empty() => {
                return Err(CniError::config(
                    "field 'network' is empty; name a switchyard Network or leave it out to use 'name'",
                ));
            }
            Some(n) => n,
            None => name.clone(),
        };
        let mtu = match number("mtu")? {
            None => None,
            Some(mtu) if (68..=65535).contains(&mtu) => Some(mtu as u32),
            Some(mtu) => {
                return Err(CniError::config(format!(
                    "field 'mtu': {mtu} is outside 68..65535"
                )));
            }
        };
        let runtime = match map.get("runtimeConfig") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(r)) => r.clone(),
            Some(_) => return Err(CniError::config("field 'runtimeConfig' must be an object")),
        };
        let runtime_text = |key: &str| -> Result<Option<String>, CniError> {
            match runtime.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(CniError::config(format!(
                    "field 'runtimeConfig.{key}' must be a string"
                ))),
            }
        };
        let valid_attachments = attachments(map)?;
        Ok(Self {
            cni_version,
            name,
            network,
            portgroup: text("portgroup")?.filter(|p| !p.is_empty()),
            socket: text("socket")?.filter(|s| !s.is_empty()),
            mtu,
            agent_wait_seconds: number("agentWaitSeconds")?,
            runtime_mac: runtime_text("mac")?,
            device_id: runtime_text("deviceID")?.or(text("deviceID")?.filter(|d| !d.is_empty())),
            prev_result: map.get("prevResult").filter(|v| !v.is_null()).cloned(),
            valid_attachments,
        })
    }
}

/// GC's valid attachments: `cni.dev/valid-attachments` and `cni.dev/attachments` (libcni sends
/// both from spec 1.1.0 on; older runtimes only the latter), merged.
fn attachments(map: &serde_json::Map<String, Value>) -> Result<Option<Vec<Attachment>>, CniError> {
    let mut all: Option<Vec<Attachment>> = None;
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let Some(value) = map.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let list: Vec<Attachment> = serde_json::from_value(value.clone()).map_err(|error| {
            CniError::config(format!(
                "field '{key}' must be a list of {{\"containerID\", \"ifname\"}}: {error}"
            ))
        })?;
        all.get_or_insert_with(Vec::new).extend(list);
    }
    if let Some(list) = &mut all {
        list.sort();
        list.dedup();
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lan","type":"switchyard-cni"}"#;

    fn add_env() -> BTreeMap<String, String> {
        env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/p"),
            ("CNI_IFNAME", "net1"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=vm;MAC=52:54:00:00:00:01",
            ),
            ("CNI_PATH", "/opt/cni/bin"),
        ])
    }

    #[test]
    fn an_add_call_parses() {
        let call = Call::parse(&add_env(), CONF).unwrap();
        assert_eq!(call.command, Command::Add);
        assert_eq!(call.container_id.as_deref(), Some("abc123"));
        assert_eq!(call.ifname.as_deref(), Some("net1"));
        assert_eq!(call.arg("K8S_POD_NAME"), Some("vm"));
        assert_eq!(call.config.network, "lan", "network defaults to name");
        assert_eq!(
            call.requested_mac().map(|m| m.value),
            Some("52:54:00:00:00:01")
        );
    }

    #[test]
    fn missing_variables_are_named() {
        for (var, command) in [
            ("CNI_NETNS", "ADD"),
            ("CNI_IFNAME", "ADD"),
            ("CNI_CONTAINERID", "DEL"),
            ("CNI_NETNS", "CHECK"),
        ] {
            let mut e = add_env();
            e.insert("CNI_COMMAND".into(), command.into());
            e.remove(var);
            let error = Call::parse(&e, r#"{"cniVersion":"1.0.0","name":"lan"}"#).unwrap_err();
            assert_eq!(error.code, 4, "{var} {command}");
            assert!(error.details.starts_with(var), "{}", error.details);
        }
        // DEL needs no netns: it must succeed after the namespace is gone.
        let mut e = add_env();
        e.insert("CNI_COMMAND".into(), "DEL".into());
        e.remove("CNI_NETNS");
        assert!(Call::parse(&e, CONF).is_ok());
        let error = Call::parse(&env(&[]), CONF).unwrap_err();
        assert_eq!(error.details, "CNI_COMMAND is not set");
        let error = Call::parse(&env(&[("CNI_COMMAND", "ATTACH")]), CONF).unwrap_err();
        assert_eq!(error.code, 4);
    }

    #[test]
    fn malformed_parameters_are_refused() {
        let mut e = add_env();
        e.insert("CNI_CONTAINERID".into(), "-bad".into());
        assert_eq!(Call::parse(&e, CONF).unwrap_err().code, 4);
        for bad in ["a/b", "sixteen-bytes-xx", "..", "a b"] {
            let mut e = add_env();
            e.insert("CNI_IFNAME".into(), bad.into());
            let error = Call::parse(&e, CONF).unwrap_err();
            assert!(error.details.starts_with("CNI_IFNAME"), "{bad}: {error}");
        }
        let mut e = add_env();
        e.insert("CNI_ARGS".into(), "K8S_POD_NAME=vm;junk".into());
        let error = Call::parse(&e, CONF).unwrap_err();
        assert_eq!(error.code, 4);
        assert!(error.details.contains("'junk'"), "{}", error.details);
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let cases = [
            ("not json", 6, "not JSON"),
            ("[]", 7, "JSON object"),
            (r#"{"name":"lan"}"#, 7, "'cniVersion'"),
            (r#"{"cniVersion":"0.2.0","name":"lan"}"#, 1, "'0.2.0'"),
            (r#"{"cniVersion":"1.0.0"}"#, 7, "'name'"),
            (
                r#"{"cniVersion":"1.0.0","name":"lan","network":""}"#,
                7,
                "'network'",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"lan","mtu":20}"#,
                7,
                "'mtu'",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"lan","runtimeConfig":{"mac":7}}"#,
                7,
                "runtimeConfig.mac",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"lan","cni.dev/valid-attachments":[{"x":1}]}"#,
                7,
                "cni.dev/valid-attachments",
            ),
        ];
        for (conf, code, needle) in cases {
            let error = NetConf::parse(conf).unwrap_err();
            assert_eq!(error.code, code, "{conf}");
            assert!(error.details.contains(needle), "{conf}: {}", error.details);
        }
    }

    #[test]
    fn runtime_mac_wins_over_cni_args_and_a_refusal_names_its_field() {
        let conf =
            r#"{"cniVersion":"1.0.0","name":"lan","runtimeConfig":{"mac":"02:AA:00:00:00:02"}}"#;
        let call = Call::parse(&add_env(), conf).unwrap();
        let mac = call.requested_mac().unwrap();
        assert_eq!(
            (mac.value, mac.source),
            ("02:AA:00:00:00:02", MacSource::RuntimeConfig)
        );
        let error = mac.invalid("is a multicast address");
        assert_eq!(error.code, 7);
        assert_eq!(
            error.details,
            "field 'runtimeConfig.mac': '02:AA:00:00:00:02' is a multicast address"
        );

        let mut e = add_env();
        e.insert("CNI_ARGS".into(), "MAC=52:54:00".into());
        let call = Call::parse(&e, CONF).unwrap();
        let mac = call.requested_mac().unwrap();
        assert_eq!((mac.value, mac.source), ("52:54:00", MacSource::CniArgs));
        let error = mac.invalid("is not a MAC address");
        assert_eq!(error.code, 4);
        assert_eq!(
            error.details,
            "CNI_ARGS MAC: '52:54:00' is not a MAC address"
        );

        let mut e = add_env();
        e.insert("CNI_ARGS".into(), "K8S_POD_NAME=x".into());
        assert_eq!(Call::parse(&e, CONF).unwrap().requested_mac(), None);
    }

    #[test]
    fn gc_reads_both_attachment_keys() {
        let conf = r#"{"cniVersion":"1.1.0","name":"lan",
            "cni.dev/valid-attachments":[{"containerID":"a","ifname":"net1"}],
            "cni.dev/attachments":[{"containerID":"a","ifname":"net1"},{"containerID":"b","ifname":"net2"}]}"#;
        let parsed = NetConf::parse(conf).unwrap();
        let listed: Vec<_> = parsed
            .valid_attachments
            .unwrap()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        assert_eq!(
            listed,
            [("a".into(), "net1".into()), ("b".into(), "net2".into())]
        );
        let old_only =
            NetConf::parse(r#"{"cniVersion":"1.1.0","name":"lan","cni.dev/attachments":[]}"#)
                .unwrap();
        assert_eq!(old_only.valid_attachments, Some(vec![]));
        let none = NetConf::parse(r#"{"cniVersion":"1.1.0","name":"lan"}"#).unwrap();
        assert_eq!(none.valid_attachments, None);
    }

    #[test]
    fn check_needs_0_4_0() {
        let mut e = add_env();
        e.insert("CNI_COMMAND".into(), "CHECK".into());
        let error = Call::parse(&e, r#"{"cniVersion":"0.3.1","name":"lan"}"#).unwrap_err();
        assert_eq!(error.code, 1);
        assert!(Call::parse(&e, r#"{"cniVersion":"0.4.0","name":"lan"}"#).is_ok());
    }

    #[test]
    fn version_needs_no_configuration() {
        let call = Call::parse(&env(&[("CNI_COMMAND", "VERSION")]), "").unwrap();
        assert_eq!(call.command, Command::Version);
    }
}
