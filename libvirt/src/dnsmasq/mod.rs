//! The files libvirt writes for a network's dnsmasq: the configuration
//! (`networkDnsmasqConfContents` in libvirt 11.3.0's src/network/bridge_driver.c), the DHCP
//! hostsfile (`hostsfileAdd` / `dnsmasqDhcpHostsToString` in src/util/virdnsmasq.c) and the
//! DNS `addn-hosts` file (`addnhostsWrite`). Pure functions of the `Network` and of where the
//! files live ([`Paths`]); the node agent writes what they return, and
//! `kubectl switchyard render` prints it.
//!
//! With [`Paths::libvirt_test`] (state directory `/var/lib/libvirt/dnsmasq`, no pid file, as
//! libvirt's networkxml2conftest.c calls it) the output is byte-identical to libvirt's for
//! every network of its test corpus (tests/dnsmasq_conformance.rs).
//!
//! Intended differences from libvirt 11.3.0:
//! - A value that would be written into a file and holds a line break (or a NUL) is refused,
//!   naming its field, instead of being written verbatim: libvirt 11.3.0 lets `&#10;` in a DNS
//!   TXT or SRV value inject dnsmasq directives (CVE-2026-61477, fixed in Debian's
//!   11.3.0-3+deb13u3). This covers every value, including `<dnsmasq:options>`, which libvirt
//!   leaves raw on purpose. [`crate::validate_network`] refuses the same networks up front.
//! - A DNS forwarder's `port` (a switchyard field; libvirt 11.3.0 has none) is written as
//!   dnsmasq's `server=addr#port`.
//! - Networks that are not nat, route, open or isolated are refused: libvirt never runs
//!   dnsmasq for them.
//! - A network without a bridge name is refused (libvirt picks `virbrN` at define time; here the
//!   node agent must settle the name first), as is one with no name at all.
//! - Where libvirt would write `(null)` (an IPv4 DHCP host with neither MAC nor name, an IPv6
//!   one with neither id nor name), the generator refuses; validation refuses such hosts too.
//! - The dnsmasq "caps" argument is not taken: 11.3.0's generator ignores it.
//!
//! Path spelling is libvirt's: the hostsfile and addnhosts names escape the network name as
//! XML (`default"with"quotes"` → `default&quot;with&quot;quotes&quot;.hostsfile`) because
//! libvirt builds them with `virBufferEscapeString`; the conf file name does not.

mod conf;
mod hosts;
pub(crate) mod subnets;

#[cfg(test)]
mod tests;

use switchyard_crds::{ForwardMode, Network, NetworkSpec};

use crate::path::FieldPath;

pub use conf::conf;
pub use hosts::{addn_hosts, hostsfile};

/// libvirt's state directory for dnsmasq files (system daemon).
pub const LIBVIRT_STATE_DIR: &str = "/var/lib/libvirt/dnsmasq";

/// switchyard's own state directory for a node's dnsmasq files: beside libvirt's, never in it,
/// so that a libvirtd on the same host keeps its files.
pub const SWITCHYARD_STATE_DIR: &str = "/var/lib/switchyard/dnsmasq";

/// Where the dnsmasq files of a network live, as written into its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The directory holding `<name>.conf`, `<name>.hostsfile` and `<name>.addnhosts`.
    pub state_dir: String,
    /// dnsmasq's `pid-file=`; `None` writes no such line (a foreground dnsmasq needs none).
    pub pid_file: Option<String>,
}

impl Paths {
    /// The paths libvirt's own conf test uses: `/var/lib/libvirt/dnsmasq`, no pid file.
    pub fn libvirt_test() -> Self {
        Self {
            state_dir: LIBVIRT_STATE_DIR.to_string(),
            pid_file: None,
        }
    }

    /// The configuration file, `<state dir>/<name>.conf` (name unescaped, as libvirt does).
    pub fn conf_file(&self, network_name: &str) -> String {
        format!("{}/{network_name}.conf", self.state_dir)
    }

    /// The DHCP hostsfile, `<state dir>/<escaped name>.hostsfile`.
    pub fn hostsfile(&self, network_name: &str) -> String {
        format!("{}/{}.hostsfile", self.state_dir, xml_escape(network_name))
    }

    /// The DNS hosts file, `<state dir>/<escaped name>.addnhosts`.
    pub fn addn_hosts(&self, network_name: &str) -> String {
        format!("{}/{}.addnhosts", self.state_dir, xml_escape(network_name))
    }
}

/// Why no dnsmasq files can be generated for a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DnsmasqError {
    /// The field concerned, e.g. `spec.dns.txts[0].value`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl DnsmasqError {
    fn at(path: &FieldPath, message: impl Into<String>) -> Self {
        Self {
            field: path.spec_path(),
            message: message.into(),
        }
    }
}

/// The three files of a network's dnsmasq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqFiles {
    /// The configuration (`--conf-file`).
    pub conf: String,
    /// The DHCP hostsfile; empty when the network has no static DHCP hosts (libvirt still
    /// writes the empty file, for hosts added at run time).
    pub hostsfile: String,
    /// The DNS hosts file (`addn-hosts`); empty when the network has no DNS hosts.
    pub addn_hosts: String,
}

/// All three files at once.
pub fn files(network: &Network, paths: &Paths) -> Result<DnsmasqFiles, DnsmasqError> {
    Ok(DnsmasqFiles {
        conf: conf(network, paths)?,
        hostsfile: hostsfile(&network.spec)?,
        addn_hosts: addn_hosts(&network.spec)?,
    })
}

/// The network's libvirt name: `spec.libvirtName`, else `metadata.name`.
pub fn network_name(network: &Network) -> Option<&str> {
    network
        .spec
        .libvirt_name
        .as_deref()
        .or(network.metadata.name.as_deref())
}

/// Whether a node runs dnsmasq for the network at all (libvirt's `networkStartDhcpDaemon`):
/// a managed-bridge network with an address, and DHCP or TFTP on one, or DNS left enabled.
pub fn runs_dnsmasq(spec: &NetworkSpec) -> bool {
    if !serves_dnsmasq(spec) || spec.ips.is_empty() {
        return false;
    }
    let dhcp_or_tftp = spec.ips.iter().any(|ip| {
        ip.tftp_root.is_some()
            || ip
                .dhcp
                .as_ref()
                .is_some_and(|d| !d.ranges.is_empty() || !d.hosts.is_empty())
    });
    dhcp_or_tftp || dns_enabled(spec)
}

/// Forward modes whose bridge libvirt manages (nat, route, open, isolated).
fn serves_dnsmasq(spec: &NetworkSpec) -> bool {
    matches!(
        spec.forward.as_ref().map(|f| f.mode),
        None | Some(ForwardMode::Nat | ForwardMode::Route | ForwardMode::Open)
    )
}

fn dns_enabled(spec: &NetworkSpec) -> bool {
    spec.dns.as_ref().and_then(|d| d.enable) != Some(false)
}

/// What in `value` cannot be written into a line-oriented dnsmasq file, if anything.
pub fn line_problem(value: &str) -> Option<&'static str> {
    if value.contains(['\n', '\r']) {
        Some("must not contain a line break: dnsmasq would read the rest as a directive of its own")
    } else if value.contains('\0') {
        Some("must not contain a NUL character")
    } else {
        None
    }
}

/// `value`, or an error naming `path` when it cannot be written on one line.
fn one_line<'a>(path: &FieldPath, value: &'a str) -> Result<&'a str, DnsmasqError> {
    match line_problem(value) {
        Some(problem) => Err(DnsmasqError::at(path, problem)),
        None => Ok(value),
    }
}

/// libvirt's `virBufferEscapeString`: XML entities for `<>&'"`; the control characters in
/// its forbidden list (0x01-0x19 but tab and line breaks) dropped.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if matches!(c as u32, 0x01..=0x08 | 0x0b | 0x0c | 0x0e..=0x19) => {}
            c => out.push(c),
        }
    }
    out
}
