//! The firewall libvirt 11.3.0 puts around a virtual network (isolated, nat, route; open gets
//! none), as the commands it runs, in the order it runs them.
//!
//! libvirt's network driver (src/network/network_nftables.c, bridge_driver_linux.c) keeps its
//! rules in a private table, `libvirt_network`, once per family (`ip` and `ip6`). The table
//! name is a parameter here: switchyard's nodes use [`SWITCHYARD_TABLE`] so that a libvirtd on
//! the same host never sees its rules touched, and [`LIBVIRT_TABLE`] reproduces libvirt.
//!
//! - [`nftables`]: the table and chain set-up and each network's rules, command by command.
//! - [`iptables`]: the same for libvirt's iptables backend (its own chains in the host's
//!   filter, nat and mangle tables), for comparison with libvirt's other golden files.
//! - [`removal`]: the commands that take a network's rules away again, built as libvirt builds
//!   them from the handles `nft -ae` echoed.
//! - [`script`]: the same rules as one `nft -f` script, one atomic transaction.
//!
//! Everything here is pure: the node agent runs the commands or the script.

pub mod iptables;
pub mod nftables;
pub mod removal;
pub mod script;

mod subnets;

use std::fmt;

use switchyard_crds::{ForwardMode, NetworkSpec};

use crate::path::FieldPath;
use crate::validate::FieldError;

pub use subnets::{Family, Subnet};

/// libvirt's own table name.
pub const LIBVIRT_TABLE: &str = "libvirt_network";

/// The table switchyard's nodes use, beside (never instead of) libvirt's.
pub const SWITCHYARD_TABLE: &str = "switchyard_network";

/// nft's limit on a table name (NFT_NAME_MAXLEN, less the terminating NUL).
const TABLE_NAME_MAX: usize = 255;

/// The program a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// nftables' `nft`.
    Nft,
    /// iproute2's `tc` (the nftables backend's DHCP checksum fix).
    Tc,
    /// `iptables` (libvirt's iptables backend, IPv4).
    Iptables,
    /// `ip6tables` (libvirt's iptables backend, IPv6).
    Ip6tables,
}

impl Program {
    /// The program's name, as libvirt runs it (from PATH).
    pub fn name(self) -> &'static str {
        match self {
            Self::Nft => "nft",
            Self::Tc => "tc",
            Self::Iptables => "iptables",
            Self::Ip6tables => "ip6tables",
        }
    }

    /// The iptables program of an address family.
    pub fn iptables(family: Family) -> Self {
        match family {
            Family::Ipv4 => Self::Iptables,
            Family::Ipv6 => Self::Ip6tables,
        }
    }
}

/// One command libvirt runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program.
    pub program: Program,
    /// Whether libvirt runs it with `-ae`, making nft echo the new object's `# handle N`
    /// (the creations of a network's transaction, so that they can be removed later).
    pub echo_handle: bool,
    /// The arguments after the program name and `-ae`, e.g.
    /// `insert rule ip libvirt_network guest_output iif virbr0 counter reject`.
    pub args: Vec<String>,
}

impl Command {
    fn nft(args: Vec<String>) -> Self {
        Self {
            program: Program::Nft,
            echo_handle: false,
            args,
        }
    }

    fn tc(args: &[&str]) -> Self {
        Self {
            program: Program::Tc,
            echo_handle: false,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The whole command line, as libvirt executes it: `nft -ae insert rule ...`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.program.name().to_string()];
        if self.echo_handle {
            argv.push("-ae".into());
        }
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Whether the command only looks (`nft list`, `tc qdisc show`, `iptables --list-rules`);
    /// the set-up reads what it prints to decide what is missing.
    pub fn is_query(&self) -> bool {
        match self.program {
            Program::Nft => self.args.first().is_some_and(|a| a == "list"),
            Program::Tc => self.args.get(1).is_some_and(|a| a == "show"),
            Program::Iptables | Program::Ip6tables => self.args.iter().any(|a| a == "--list-rules"),
        }
    }
}

impl fmt::Display for Command {
    /// The command as one line: an nft command in nft's own syntax (as in an `nft -f` script,
    /// without the program name and `-ae`), any other with its program name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.program != Program::Nft {
            write!(f, "{} ", self.program.name())?;
        }
        f.write_str(&self.args.join(" "))
    }
}

/// Why no firewall can be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    /// A field of the network does not allow it.
    #[error("{0}")]
    Field(FieldError),
    /// The table name is not one nft accepts.
    #[error("table name '{name}': {reason}")]
    TableName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl FirewallError {
    fn field(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::Field(FieldError::new(path, message))
    }
}

/// Whether libvirt puts firewall rules around the network: isolated, nat and route networks
/// get them; open networks and the modes without a managed bridge get none (libvirt's
/// `networkHasRunningNetworksWithFW`), so they also never cause the table set-up.
pub fn has_firewall(spec: &NetworkSpec) -> bool {
    matches!(
        spec.forward.as_ref().map(|f| f.mode),
        None | Some(ForwardMode::Nat | ForwardMode::Route)
    )
}

/// The network's bridge name, which every rule names. libvirt picks a free `virbrN` when the
/// definition has none; switchyard's node picks it likewise and passes it in.
pub fn bridge_name(spec: &NetworkSpec) -> Result<&str, FirewallError> {
    spec.bridge
        .as_ref()
        .and_then(|b| b.name.as_deref())
        .ok_or_else(|| {
            FirewallError::field(
                &FieldPath::spec()
                    .elem("bridge", "bridge")
                    .attr("name", "name"),
                "the firewall rules name the bridge, and none is given",
            )
        })
}

/// Refuses a table name nft would not take as an identifier (letters, digits and `_`, not
/// starting with a digit), so that it can be written into commands and scripts unquoted.
pub fn check_table_name(name: &str) -> Result<(), FirewallError> {
    let reason = if name.is_empty() {
        Some("a table name is required")
    } else if name.len() > TABLE_NAME_MAX {
        Some("longer than nft's 255 characters")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("must not start with a digit")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("only letters, digits and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FirewallError::TableName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{Bridge, Forward};

    #[test]
    fn commands_print_in_nft_syntax_and_run_with_their_program() {
        let insert = Command {
            echo_handle: true,
            ..Command::nft(vec!["insert".into(), "rule".into(), "ip".into()])
        };
        assert_eq!(insert.to_string(), "insert rule ip");
        assert_eq!(insert.argv(), ["nft", "-ae", "insert", "rule", "ip"]);
        let show = Command::tc(&["qdisc", "show", "dev", "virbr0"]);
        assert_eq!(show.to_string(), "tc qdisc show dev virbr0");
        assert_eq!(show.argv(), ["tc", "qdisc", "show", "dev", "virbr0"]);
        assert!(show.is_query());
        assert!(!insert.is_query());
        assert!(Command::nft(vec!["list".into(), "table".into()]).is_query());
    }

    #[test]
    fn only_isolated_nat_and_route_have_a_firewall() {
        let mode = |mode| NetworkSpec {
            forward: Some(Forward {
                mode,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(has_firewall(&NetworkSpec::default()));
        assert!(has_firewall(&mode(ForwardMode::Nat)));
        assert!(has_firewall(&mode(ForwardMode::Route)));
        for other in [
            ForwardMode::Open,
            ForwardMode::Bridge,
            ForwardMode::Vepa,
            ForwardMode::Private,
            ForwardMode::Passthrough,
            ForwardMode::Hostdev,
        ] {
            assert!(!has_firewall(&mode(other)), "{other:?}");
        }
    }

    #[test]
    fn the_bridge_name_is_required() {
        let err = bridge_name(&NetworkSpec::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.bridge.name: the firewall rules name the bridge, and none is given"
        );
        let spec = NetworkSpec {
            bridge: Some(Bridge {
                name: Some("virbr3".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(bridge_name(&spec).unwrap(), "virbr3");
    }

    #[test]
    fn table_names_are_nft_identifiers() {
        assert!(check_table_name(LIBVIRT_TABLE).is_ok());
        assert!(check_table_name(SWITCHYARD_TABLE).is_ok());
        for bad in [
            "",
            "1st",
            "my-table",
            "a b",
            "x;flush ruleset",
            &"t".repeat(256),
        ] {
            let err = check_table_name(bad).unwrap_err();
            assert!(err.to_string().starts_with("table name '"), "{err}");
        }
    }
}
