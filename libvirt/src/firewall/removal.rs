//! Taking a network's firewall away as libvirt does (virfirewall.c): every rule, chain or
//! table its transaction created is deleted by the handle `nft -ae` echoed when it was
//! created, the checksum filter by repeating its words with `del`, an iptables rule by
//! repeating its words with `--delete`, all in reverse order. The table and chains of the
//! set-up are never removed.

use super::nftables::checksum_filter;
use super::{Command, Program};

/// A command that was run, and what it printed on standard output.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The command.
    pub command: &'a Command,
    /// Its standard output (`nft -ae` prints the new object and `# handle N`).
    pub output: &'a str,
}

/// A created object whose handle cannot be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no handle in the output of '{command}' ('{output}'): its rule could not be removed later")]
pub struct MissingHandle {
    /// The command, as one line.
    pub command: String,
    /// What it printed.
    pub output: String,
}

/// The handle in `nft -ae` output: the digits after the first `# handle `.
pub fn echoed_handle(output: &str) -> Option<u64> {
    let rest = &output[output.find("# handle ")? + "# handle ".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The commands that undo `applied` (a network's commands, in the order they ran), in the
/// order to run them. A removal command that fails is to be ignored, as libvirt does: the
/// object may be gone already.
pub fn removal_commands(applied: &[Applied<'_>]) -> Result<Vec<Command>, MissingHandle> {
    let mut removal = Vec::new();
    for step in applied {
        if let Some(undo) = undo(step)? {
            removal.push(undo);
        }
    }
    removal.reverse();
    Ok(removal)
}

fn undo(step: &Applied<'_>) -> Result<Option<Command>, MissingHandle> {
    let args = &step.command.args;
    let arg = |i: usize| args.get(i).map(String::as_str);
    match step.command.program {
        Program::Tc => Ok(match (arg(0), arg(1), arg(3)) {
            (Some("filter"), Some("add"), Some(bridge)) => {
                Some(Command::tc(&checksum_filter("del", bridge)))
            }
            _ => None,
        }),
        // virfirewall.c: iptables deletes a rule given the same words with --delete.
        Program::Iptables | Program::Ip6tables => {
            Ok(args.iter().any(|a| a == "--insert").then(|| Command {
                args: args
                    .iter()
                    .map(|a| {
                        if a == "--insert" {
                            "--delete".into()
                        } else {
                            a.clone()
                        }
                    })
                    .collect(),
                ..step.command.clone()
            }))
        }
        Program::Nft => {
            let creates = matches!(arg(0), Some("add" | "insert" | "create"));
            let object = arg(1).filter(|o| matches!(*o, "rule" | "chain" | "table"));
            let (true, true, Some(object)) = (step.command.echo_handle, creates, object) else {
                return Ok(None);
            };
            let handle = echoed_handle(step.output).ok_or_else(|| MissingHandle {
                command: step.command.to_string(),
                output: step.output.to_string(),
            })?;
            // delete <object> <family> [<table> [<chain>]] handle N
            let kept = match object {
                "rule" => 3,
                "chain" => 2,
                _ => 1,
            };
            let mut delete = vec!["delete".to_string(), object.to_string()];
            delete.extend(args.iter().skip(2).take(kept).cloned());
            delete.extend(["handle".to_string(), handle.to_string()]);
            Ok(Some(Command::nft(delete)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nft(echo_handle: bool, line: &str) -> Command {
        Command {
            program: Program::Nft,
            echo_handle,
            args: line.split(' ').map(String::from).collect(),
        }
    }

    #[test]
    fn handles_are_read_from_the_echo() {
        assert_eq!(
            echoed_handle(
                "insert rule ip t guest_output iif \"virbr0\" counter packets 0 bytes 0 reject # handle 17\n"
            ),
            Some(17)
        );
        assert_eq!(echoed_handle("# handle 5309"), Some(5309));
        assert_eq!(echoed_handle("nothing here"), None);
        assert_eq!(echoed_handle("# handle x"), None);
    }

    #[test]
    fn removal_deletes_by_handle_in_reverse_and_drops_the_checksum_filter_last() {
        let show = Command::tc(&["qdisc", "show", "dev", "virbr0", "handle", "1:"]);
        let filter = Command::tc(&checksum_filter("add", "virbr0"));
        let reject = nft(
            true,
            "insert rule ip t guest_output iif virbr0 counter reject",
        );
        let chain = nft(true, "add chain ip6 t extra");
        let listing = nft(false, "list table ip t");
        let applied = [
            Applied {
                command: &show,
                output: "",
            },
            Applied {
                command: &filter,
                output: "",
            },
            Applied {
                command: &listing,
                output: "table ip t { # handle 3",
            },
            Applied {
                command: &reject,
                output: "... # handle 11\n",
            },
            Applied {
                command: &chain,
                output: "add chain ip6 t extra # handle 4\n",
            },
        ];
        let lines: Vec<String> = removal_commands(&applied)
            .unwrap()
            .iter()
            .map(|c| c.argv().join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                "nft delete chain ip6 t handle 4",
                "nft delete rule ip t guest_output handle 11",
                "tc filter del dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp",
            ]
        );
    }

    #[test]
    fn iptables_rules_are_deleted_with_their_own_words() {
        let insert = Command {
            program: Program::Ip6tables,
            echo_handle: false,
            args: "-w --table filter --insert LIBVIRT_FWO --in-interface virbr0 --jump REJECT"
                .split(' ')
                .map(String::from)
                .collect(),
        };
        let removal = removal_commands(&[Applied {
            command: &insert,
            output: "",
        }])
        .unwrap();
        assert_eq!(
            removal[0].argv().join(" "),
            "ip6tables -w --table filter --delete LIBVIRT_FWO --in-interface virbr0 --jump REJECT"
        );
    }

    #[test]
    fn a_created_rule_without_a_handle_is_an_error() {
        let reject = nft(
            true,
            "insert rule ip t guest_input oif virbr0 counter reject",
        );
        let err = removal_commands(&[Applied {
            command: &reject,
            output: "",
        }])
        .unwrap_err();
        assert!(err.to_string().starts_with(
            "no handle in the output of 'insert rule ip t guest_input oif virbr0 counter reject'"
        ));
    }
}
