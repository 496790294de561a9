//! Network-namespace sandboxes standing in for nodes: a uniquely named namespace holding veth
//! pairs that play the node's NICs (the `dummy` kind is not available on the test machines),
//! optionally a bridge, all removed when the sandbox is dropped, also when a test panics.
//!
//! Sandboxes are set up and read with iproute2 (`ip`); code under test uses rtnetlink. Nothing
//! here touches the host's own interfaces: every command runs with `ip -n <sandbox>`.
//! Names include the process id, so parallel test processes do not collide, and a sandbox left
//! behind by a killed test process is removed by [`Sandbox::sweep_stale`].

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Prefix of every sandbox namespace: `swyt-<label>-<pid>-<n>`.
const SANDBOX_PREFIX: &str = "swyt-";

static NEXT_SANDBOX: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by the test, deleted on drop.
#[derive(Debug)]
pub struct Sandbox {
    name: String,
}

/// A stand-in NIC: a veth pair inside the sandbox. `name` plays the node's NIC; `switch_side`
/// is the other end, where the outside world would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The NIC's name, e.g. `eth1`.
    pub name: String,
    /// The veth peer's name.
    pub switch_side: String,
}

/// One link as `ip -d -j link show` reports it, with the fields tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// `ifname`.
    pub name: String,
    /// `ifindex`.
    pub ifindex: u32,
    /// `linkinfo.info_kind`, e.g. `macvtap`, `veth`, `bridge`.
    pub kind: Option<String>,
    /// `linkinfo.info_data.mode` (macvtap: `bridge`, `vepa`, `private`, `passthru`).
    pub mode: Option<String>,
    /// `link`: the lower device (macvtap) or the peer (veth).
    pub lower: Option<String>,
    /// `master`: the bridge a port is attached to.
    pub master: Option<String>,
    /// `address`.
    pub mac: Option<String>,
    /// `group` as a number (iproute2 prints `default` for 0).
    pub group: u32,
    /// `ifalias`.
    pub alias: Option<String>,
    /// `operstate`.
    pub operstate: Option<String>,
    /// Whether the link is administratively up (`UP` among `flags`).
    pub up: bool,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

impl LinkView {
    /// One element of `ip -j link show`'s array; an error names what is missing or malformed,
    /// so a link the tests cannot read fails them instead of vanishing from their view.
    fn from_json(value: &Value) -> Result<Self, String> {
        let info = value.get("linkinfo");
        let group = match value.get("group") {
            None => 0,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|g| u32::try_from(g).ok())
                .ok_or_else(|| format!("group {n} is not a u32"))?,
            Some(Value::String(s)) if s == "default" => 0,
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| format!("group {s:?} is neither a number nor \"default\""))?,
            Some(other) => return Err(format!("group {other} is neither a number nor a string")),
        };
        Ok(Self {
            name: text(value, "ifname").ok_or("no ifname")?,
            ifindex: value
                .get("ifindex")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("no ifindex (a u32)")?,
            kind: info.and_then(|i| text(i, "info_kind")),
            mode: info
                .and_then(|i| i.get("info_data"))
                .and_then(|d| text(d, "mode")),
            lower: text(value, "link"),
            master: text(value, "master"),
            mac: text(value, "address"),
            group,
            alias: text(value, "ifalias"),
            operstate: text(value, "operstate"),
            up: value
                .get("flags")
                .and_then(Value::as_array)
                .is_some_and(|flags| flags.iter().any(|f| f == "UP")),
        })
    }
}

impl Sandbox {
    /// Creates an empty namespace named after `label` (letters, digits and `-`; keep it short).
    pub fn new(label: &str) -> io::Result<Self> {
        let name = format!(
            "{SANDBOX_PREFIX}{label}-{}-{}",
            std::process::id(),
            NEXT_SANDBOX.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let sandbox = Self { name };
        // Loopback up, as on any node.
        sandbox.ip(&["link", "set", "lo", "up"])?;
        Ok(sandbox)
    }

    /// The namespace's name (under `/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, for `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <sandbox> <args>` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `ip -n <sandbox> -batch -` with one command per line (fast set-up of many objects).
    pub fn ip_batch(&self, commands: &[String]) -> io::Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        for command in commands {
            writeln!(stdin, "{command}")?;
        }
        drop(stdin);
        let output = child.wait_with_output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "ip -batch in {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Adds a stand-in NIC: a veth pair `name` / `<name>-sw`, both up. `name` must leave room
    /// for the suffix (at most 12 bytes).
    pub fn add_nic(&self, name: &str) -> io::Result<Nic> {
        let nic = Nic {
            name: name.to_string(),
            switch_side: format!("{name}-sw"),
        };
        self.ip(&[
            "link",
            "add",
            &nic.name,
            "type",
            "veth",
            "peer",
            "name",
            &nic.switch_side,
        ])?;
        self.ip(&["link", "set", &nic.name, "up"])?;
        self.ip(&["link", "set", &nic.switch_side, "up"])?;
        Ok(nic)
    }

    /// Adds stand-in NICs `<prefix>0`, `<prefix>1`, ...
    pub fn add_nics(&self, prefix: &str, count: usize) -> io::Result<Vec<Nic>> {
        (0..count)
            .map(|i| self.add_nic(&format!("{prefix}{i}")))
            .collect()
    }

    /// Adds a bridge, up.
    pub fn add_bridge(&self, name: &str) -> io::Result<()> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        self.ip(&["link", "set", name, "up"])?;
        Ok(())
    }

    /// Every link, as `ip -d -j link show` reports it. A link whose JSON cannot be read is an
    /// error, not left out: an oracle that cannot see a link must not call the kernel clean.
    pub fn links(&self) -> io::Result<Vec<LinkView>> {
        let json = self.ip(&["-d", "-j", "link", "show"])?;
        let parsed: Value = serde_json::from_str(&json).map_err(io::Error::other)?;
        let Some(links) = parsed.as_array() else {
            return Err(io::Error::other(format!(
                "ip -j link show in {} printed {parsed}, not an array",
                self.name
            )));
        };
        links
            .iter()
            .map(|link| {
                LinkView::from_json(link).map_err(|why| {
                    io::Error::other(format!(
                        "ip -j link show in {}: unreadable link ({why}): {link}",
                        self.name
                    ))
                })
            })
            .collect()
    }

    /// The `major:minor` of macvtap `name`'s tap character device, read from the `dev` file of
    /// the namespace's own sysfs (`ip netns exec` mounts one for the namespace; the host's
    /// /sys would show the host's links).
    pub fn tap_dev(&self, name: &str, ifindex: u32) -> io::Result<String> {
        let dev = run(Command::new("ip")
            .args(["netns", "exec", &self.name, "cat"])
            .arg(format!("/sys/class/net/{name}/macvtap/tap{ifindex}/dev")))?;
        Ok(dev.trim().to_string())
    }

    /// One link by name; `None` when absent.
    pub fn link(&self, name: &str) -> io::Result<Option<LinkView>> {
        Ok(self.links()?.into_iter().find(|link| link.name == name))
    }

    /// Removes the sandbox namespaces of test processes that no longer run (a SIGKILLed test
    /// cannot run its destructors). Returns the names removed.
    pub fn sweep_stale() -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir("/run/netns") {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(SANDBOX_PREFIX) else {
                continue;
            };
            // `<label>-<pid>-<n>`: the pid is the second field from the end.
            let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                run(Command::new("ip").args(["netns", "del", &name]))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Deleting the namespace destroys every link in it.
        if let Err(error) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("could not remove sandbox namespace {}: {error}", self.name);
        }
    }
}

fn run(command: &mut Command) -> io::Result<String> {
    let output = command.output()?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readable_link_is_read() {
        let link = LinkView::from_json(&serde_json::json!({
            "ifindex": 7, "ifname": "swy1", "group": "default", "flags": ["BROADCAST", "UP"],
            "linkinfo": {"info_kind": "macvtap", "info_data": {"mode": "vepa"}}, "link": "eth0"
        }))
        .unwrap();
        assert_eq!((link.ifindex, link.group, link.up), (7, 0, true));
        assert_eq!(link.kind.as_deref(), Some("macvtap"));
        assert_eq!(link.lower.as_deref(), Some("eth0"));
    }

    #[test]
    fn an_unreadable_link_is_an_error_not_a_gap() {
        for (json, why) in [
            (serde_json::json!({"ifname": "swy1"}), "no ifindex"),
            (serde_json::json!({"ifindex": 7}), "no ifname"),
            (
                serde_json::json!({"ifindex": 7, "ifname": "swy1", "group": "owned"}),
                "neither a number",
            ),
            (
                serde_json::json!({"ifindex": 7, "ifname": "swy1", "group": 4294967296u64}),
                "not a u32",
            ),
        ] {
            let error = LinkView::from_json(&json).unwrap_err();
            assert!(error.contains(why), "{json}: {error}");
        }
    }
}
