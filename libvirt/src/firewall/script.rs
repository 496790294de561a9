//! The firewall as one `nft -f` script: the whole table, rebuilt in a single transaction.
//!
//! libvirt runs one `nft` process per rule and remembers the handles to remove them. A node
//! agent that restarts would have to find its rules again; instead the script replaces its
//! own table wholesale (`add table` + `delete table` + the new contents, which nft applies
//! atomically or not at all). Loading it twice leaves the same rules, never duplicates, and a
//! network is removed by loading the script of the networks that remain. Packet counters
//! start again from zero at each load. The bridges the rules name (`iif`, `oif`) must exist
//! when the script is loaded; the forward devices (`iifname`, `oifname`) need not.
//!
//! Only nft commands go into the script: the queries libvirt runs to see what exists are not
//! needed, and the tc checksum fix is not nft's (the agent applies it on its own).

use super::nftables::setup_commands;
use super::{Command, Family, FirewallError, Program, check_table_name};

/// The script that makes `table` (both families) hold libvirt's chains and exactly the given
/// networks' rules, each network's commands as [`super::nftables::network_commands`] returns
/// them, in the order the networks should be applied.
pub fn table_script(table: &str, networks: &[Vec<Command>]) -> Result<String, FirewallError> {
    let mut script = format!(
        "# The whole of table {table} (ip and ip6), replaced in one transaction.\n{}",
        remove_table_script(table)?
    );
    let setup = setup_commands(table)?;
    for command in setup.iter().chain(networks.iter().flatten()) {
        if command.program == Program::Nft && !command.is_query() {
            script.push_str(&script_line(command));
            script.push('\n');
        }
    }
    Ok(script)
}

/// The script that removes `table` in both families, whether or not it exists.
pub fn remove_table_script(table: &str) -> Result<String, FirewallError> {
    check_table_name(table)?;
    let mut script = String::new();
    for family in Family::ALL {
        let family = family.nft();
        // `add` first, so that the delete never fails on a missing table.
        script.push_str(&format!(
            "add table {family} {table}\ndelete table {family} {table}\n"
        ));
    }
    Ok(script)
}

/// A command in nft's script syntax: device names quoted, as nft prints them itself, so that
/// a name nft would read as a number or keyword stays a name.
fn script_line(command: &Command) -> String {
    let mut words = Vec::with_capacity(command.args.len());
    let mut names_device = false;
    for arg in &command.args {
        if names_device {
            words.push(format!("\"{arg}\""));
        } else {
            words.push(arg.clone());
        }
        names_device = matches!(arg.as_str(), "iif" | "oif" | "iifname" | "oifname");
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nftables::network_commands;
    use switchyard_crds::{Bridge, Forward, ForwardMode, IpConfig, NetworkSpec};

    fn nat_network(bridge: &str, address: &str) -> NetworkSpec {
        NetworkSpec {
            forward: Some(Forward {
                mode: ForwardMode::Nat,
                dev: Some("eth0".into()),
                ..Default::default()
            }),
            bridge: Some(Bridge {
                name: Some(bridge.into()),
                ..Default::default()
            }),
            ips: vec![IpConfig {
                address: Some(address.into()),
                prefix: Some(24),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_script_replaces_the_table_then_adds_setup_and_rules_in_order() {
        let first = network_commands(&nat_network("br1", "10.1.0.1"), "br1", "sy").unwrap();
        let second = network_commands(&nat_network("br2", "10.2.0.1"), "br2", "sy").unwrap();
        let script = table_script("sy", &[first, second]).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            &lines[..5],
            [
                "# The whole of table sy (ip and ip6), replaced in one transaction.",
                "add table ip sy",
                "delete table ip sy",
                "add table ip6 sy",
                "delete table ip6 sy",
            ]
        );
        assert_eq!(lines[5], "add table ip sy");
        assert_eq!(
            lines[6],
            "add chain ip sy forward { type filter hook forward priority 0; policy accept; }"
        );
        assert!(!script.contains("list table"), "{script}");
        assert!(!script.contains("tc "), "{script}");
        assert!(!script.contains("-ae"), "{script}");
        assert!(script.contains("insert rule ip sy guest_output iif \"br1\" counter reject\n"));
        assert!(script.contains(
            "insert rule ip sy guest_nat ip saddr 10.1.0.0/24 ip daddr != 10.1.0.0/24 oifname \"eth0\" counter masquerade\n"
        ));
        let br1 = script.find("\"br1\"").unwrap();
        let br2 = script.find("\"br2\"").unwrap();
        assert!(br1 < br2, "networks keep their order");
    }

    #[test]
    fn an_empty_network_list_still_sets_up_the_chains() {
        let script = table_script("sy", &[]).unwrap();
        assert!(script.contains("insert rule ip6 sy forward counter jump guest_cross\n"));
        assert!(!script.contains("guest_output iif"));
    }

    #[test]
    fn bad_table_names_are_refused() {
        assert!(table_script("no such", &[]).is_err());
        assert!(remove_table_script("x;flush ruleset").is_err());
    }
}
