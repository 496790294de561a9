//! Recovery at agent start-up (DESIGN.md "Agent start-up"), as a pure function from the node's
//! ports and the owned links the kernel shows to what to do.
//!
//! - link and live port agree: count it (and write `status.actual` when the port's status does
//!   not describe the link: a crash between "link created" and "status written");
//! - owned link that no live port claims: delete it;
//! - port being deleted: delete its link, then drop the finalizer;
//! - port Ready whose link vanished: re-create it on the recorded device, or fail when that
//!   device (or bridge) is gone;
//! - two ports claiming one device that one of them needs exclusively: one keeps it, the other
//!   gets `DeviceConflict`; never both counted as holders of one exclusive device;
//! - links outside the owned groups never reach this function.
//!
//! Precondition: `ports` is the complete list of this node's ports (a finished list, not a
//! partial watch), or live links of missing ports would be taken for orphans.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_crds::{ActualType, PortActual, PortPhase};
use switchyard_placement::PortKey;
use switchyard_placement::ledger::{Holding, Ledger};

use crate::ownership::{GroupRole, LinkRef, OwnedLink, link_name};

/// The condition reason of a port that lost a device conflict.
pub const REASON_DEVICE_CONFLICT: &str = "DeviceConflict";

/// A port as recovery needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRecord {
    /// `metadata.uid`, which the port's link carries in its alias.
    pub uid: String,
    /// Namespace and name.
    pub key: PortKey,
    /// `metadata.creationTimestamp` in seconds since the epoch: the older port wins a conflict.
    pub created: i64,
    /// `spec.network`.
    pub network: String,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase`.
    pub phase: Option<PortPhase>,
    /// `status.actual`.
    pub actual: Option<PortActual>,
    /// Whether the port holds its device alone: from the merged settings when the network is
    /// known, else `switchyard_placement::exclusive::actual_is_exclusive` of the recorded actual.
    pub exclusive: bool,
}

/// What recovery decided for one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortAction {
    /// Its link exists: counted on `device`. When `write_status`, `status.actual` does not
    /// describe the link yet and must be written from it.
    Count {
        /// The port's link.
        link: LinkRef,
        /// The pool device or bridge counted; `None` when the kernel does not say (a lower
        /// device in another namespace), and then nothing is counted.
        device: Option<String>,
        /// Whether the port's status must be (re)written from the link.
        write_status: bool,
    },
    /// Ready, but its link vanished: create it again on `device`, already reserved.
    Recreate {
        /// The recorded pool device or bridge.
        device: String,
    },
    /// Its link vanished and cannot come back.
    Fail {
        /// The condition reason: `DeviceMissing` or `BridgeAbsent`.
        reason: &'static str,
        /// What exactly is wrong.
        message: String,
    },
    /// Another port holds the device it claims; it gets condition `DeviceConflict`.
    Conflict {
        /// The device both claim.
        device: String,
        /// The port that keeps the device.
        holder: PortKey,
        /// The loser's link when it has one: left in place (deleting a running guest's link
        /// is for a human to decide) and counted, so counts still equal the kernel's.
        kept_link: Option<LinkRef>,
        /// The condition message.
        message: String,
    },
    /// Being deleted: once the link deletions of the plan are done, drop the finalizer.
    Finalize {
        /// Its link, if it still exists (also listed in [`RecoveryPlan::links`]).
        link: Option<LinkRef>,
    },
    /// Not realised (no link, not Ready): allocate as for a new port once recovery is done.
    Allocate,
}

/// The decision for one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDecision {
    /// The port's UID.
    pub uid: String,
    /// The port.
    pub key: PortKey,
    /// What to do.
    pub action: PortAction,
}

/// Why an owned link is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// No live port claims it (or its alias is missing).
    Orphan,
    /// Its port is being deleted.
    PortDeleting(PortKey),
    /// Its port has another link that matches the port better.
    Duplicate(PortKey),
}

/// What to do with an owned link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Delete it (batched: one group deletion for all of them).
    Delete {
        /// The link.
        link: LinkRef,
        /// Why.
        reason: DeleteReason,
    },
    /// It was tagged for deletion, but its port is live: move it back to the owned group.
    RestoreGroup {
        /// The link.
        link: LinkRef,
        /// Its port.
        port: PortKey,
    },
}

/// The outcome of recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// One decision per port, in the order given.
    pub ports: Vec<PortDecision>,
    /// Link actions, deletions in link order.
    pub links: Vec<LinkAction>,
    /// Who holds which device once the plan has run (recreations reserved).
    pub ledger: Ledger,
}

impl RecoveryPlan {
    /// The links to delete.
    pub fn deletions(&self) -> impl Iterator<Item = &LinkRef> {
        self.links.iter().filter_map(|action| match action {
            LinkAction::Delete { link, .. } => Some(link),
            LinkAction::RestoreGroup { .. } => None,
        })
    }
}

/// A port's claim on a device, ranked to settle conflicts.
struct Claim<'a> {
    port: &'a PortRecord,
    device: String,
    link: Option<LinkRef>,
}

impl Claim<'_> {
    /// A claim backed by a live link beats one from a recorded status only (the guest is using
    /// it), then the older port wins, then the name decides so the outcome is deterministic.
    fn rank(&self) -> (bool, i64, &PortKey, &str) {
        (
            self.link.is_none(),
            self.port.created,
            &self.port.key,
            &self.port.uid,
        )
    }
}

/// Computes recovery from the node's ports, its owned links, and the names of the devices and
/// bridges present in its namespace.
pub fn plan_recovery(
    ports: &[PortRecord],
    links: &[OwnedLink],
    present_devices: &BTreeSet<String>,
) -> RecoveryPlan {
    // A link without alias lost it to a crash between creation and setting the alias: its
    // name, derived from the UID, still says whose it is.
    let uid_by_derived_name: BTreeMap<String, &str> = ports
        .iter()
        .map(|port| (link_name(&port.uid), port.uid.as_str()))
        .collect();
    let mut links_by_uid: BTreeMap<&str, Vec<&OwnedLink>> = BTreeMap::new();
    let mut link_actions = Vec::new();
    for link in links {
        let uid = link
            .port_uid
            .as_deref()
            .or_else(|| uid_by_derived_name.get(&link.link.name).copied());
        match uid {
            Some(uid) => links_by_uid.entry(uid).or_default().push(link),
            None => link_actions.push(LinkAction::Delete {
                link: link.link.clone(),
                reason: DeleteReason::Orphan,
            }),
        }
    }

    let mut actions: Vec<Option<PortAction>> = vec![None; ports.len()];
    let mut claims: Vec<(usize, Claim<'_>)> = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let own_links = links_by_uid.remove(port.uid.as_str()).unwrap_or_default();
        let (chosen, duplicates) = choose_link(port, own_links);
        for duplicate in duplicates {
            link_actions.push(LinkAction::Delete {
                link: duplicate.link.clone(),
                reason: if port.deleting {
                    DeleteReason::PortDeleting(port.key.clone())
                } else {
                    DeleteReason::Duplicate(port.key.clone())
                },
            });
        }

        if port.deleting {
            if let Some(link) = chosen {
                link_actions.push(LinkAction::Delete {
                    link: link.link.clone(),
                    reason: DeleteReason::PortDeleting(port.key.clone()),
                });
            }
            actions[index] = Some(PortAction::Finalize {
                link: chosen.map(|link| link.link.clone()),
            });
            continue;
        }

        if let Some(link) = chosen {
            if link.group == GroupRole::Doomed {
                link_actions.push(LinkAction::RestoreGroup {
                    link: link.link.clone(),
                    port: port.key.clone(),
                });
            }
            match link.device() {
                Some(device) => claims.push((
                    index,
                    Claim {
                        port,
                        device: device.to_string(),
                        link: Some(link.link.clone()),
                    },
                )),
                None => {
                    actions[index] = Some(PortAction::Count {
                        link: link.link.clone(),
                        device: None,
                        write_status: !status_describes(port, link),
                    })
                }
            }
            continue;
        }

        let recorded = match (&port.actual, port.phase) {
            (Some(actual), Some(PortPhase::Ready)) => actual,
            _ => {
                actions[index] = Some(PortAction::Allocate);
                continue;
            }
        };
        match recorded_device(recorded) {
            Some(device) if present_devices.contains(device) => claims.push((
                index,
                Claim {
                    port,
                    device: device.to_string(),
                    link: None,
                },
            )),
            device => actions[index] = Some(missing_device_failure(recorded, device)),
        }
    }

    for orphans in links_by_uid.into_values() {
        for link in orphans {
            link_actions.push(LinkAction::Delete {
                link: link.link.clone(),
                reason: DeleteReason::Orphan,
            });
        }
    }

    let ledger = settle_claims(claims, links, &mut actions);
    RecoveryPlan {
        ports: ports
            .iter()
            .zip(actions)
            .map(|(port, action)| PortDecision {
                uid: port.uid.clone(),
                key: port.key.clone(),
                action: action.expect("every port gets a decision"),
            })
            .collect(),
        links: link_actions,
        ledger,
    }
}

/// Of the links carrying a port's UID, the one to keep: the one its status names, else the one
/// named after its UID, else the first. The others are duplicates.
fn choose_link<'a>(
    port: &PortRecord,
    mut candidates: Vec<&'a OwnedLink>,
) -> (Option<&'a OwnedLink>, Vec<&'a OwnedLink>) {
    if candidates.is_empty() {
        return (None, candidates);
    }
    let recorded_name = port.actual.as_ref().map(|actual| actual.link_name.as_str());
    let derived_name = link_name(&port.uid);
    let best = candidates
        .iter()
        .position(|link| Some(link.link.name.as_str()) == recorded_name)
        .or_else(|| {
            candidates
                .iter()
                .position(|link| link.link.name == derived_name)
        })
        .unwrap_or(0);
    let chosen = candidates.swap_remove(best);
    (Some(chosen), candidates)
}

/// The device (direct) or bridge (bridge) a recorded actual used.
fn recorded_device(actual: &PortActual) -> Option<&str> {
    match actual.kind {
        ActualType::Direct => actual.device.as_deref(),
        ActualType::Bridge => actual.bridge.as_deref().or(actual.device.as_deref()),
    }
}

fn missing_device_failure(actual: &PortActual, device: Option<&str>) -> PortAction {
    let (reason, what) = match actual.kind {
        ActualType::Direct => ("DeviceMissing", "device"),
        ActualType::Bridge => ("BridgeAbsent", "bridge"),
    };
    let message = match device {
        Some(device) => format!(
            "link {} vanished and its {what} '{device}' is no longer present on the node",
            actual.link_name
        ),
        None => format!(
            "link {} vanished and the port's status records no {what} to re-create it on",
            actual.link_name
        ),
    };
    PortAction::Fail { reason, message }
}

/// Whether the port's recorded actual already describes this link.
fn status_describes(port: &PortRecord, link: &OwnedLink) -> bool {
    port.actual.as_ref().is_some_and(|actual| {
        actual.link_name == link.link.name
            && actual.ifindex == Some(link.link.ifindex)
            && link
                .device()
                .is_none_or(|device| recorded_device(actual) == Some(device))
    })
}

/// Settles every device's claims in rank order: a claim is accepted unless the device already
/// has an accepted claim and either side is exclusive. Builds the ledger from the accepted
/// claims plus the live links of losers (they are real connections in the kernel).
fn settle_claims(
    mut claims: Vec<(usize, Claim<'_>)>,
    links: &[OwnedLink],
    actions: &mut [Option<PortAction>],
) -> Ledger {
    claims.sort_by(|(_, a), (_, b)| a.device.cmp(&b.device).then(a.rank().cmp(&b.rank())));
    let mut ledger = Ledger::new();
    let mut accepted: BTreeMap<&str, Vec<&Claim<'_>>> = BTreeMap::new();
    for (index, claim) in &claims {
        let on_device = accepted.entry(claim.device.as_str()).or_default();
        let clash = on_device
            .iter()
            .find(|held| held.port.exclusive || claim.port.exclusive);
        if let Some(holder) = clash {
            let message = format!(
                "device '{}' is already held by port {}{}; this port cannot share it",
                claim.device,
                holder.port.key,
                if holder.port.exclusive || claim.port.exclusive {
                    " and one of the two needs it exclusively"
                } else {
                    ""
                }
            );
            if claim.link.is_some() {
                ledger.record(
                    &claim.port.uid,
                    &claim.device,
                    Holding {
                        port: claim.port.key.clone(),
                        network: claim.port.network.clone(),
                        exclusive: false,
                    },
                );
            }
            actions[*index] = Some(PortAction::Conflict {
                device: claim.device.clone(),
                holder: holder.port.key.clone(),
                kept_link: claim.link.clone(),
                message,
            });
            continue;
        }
        on_device.push(claim);
        ledger.record(
            &claim.port.uid,
            &claim.device,
            Holding {
                port: claim.port.key.clone(),
                network: claim.port.network.clone(),
                exclusive: claim.port.exclusive,
            },
        );
        actions[*index] = Some(match &claim.link {
            Some(link_ref) => {
                let link = links
                    .iter()
                    .find(|link| &link.link == link_ref)
                    .expect("a claimed link comes from the observed links");
                PortAction::Count {
                    link: link_ref.clone(),
                    device: Some(claim.device.clone()),
                    write_status: !status_describes(claim.port, link),
                }
            }
            None => PortAction::Recreate {
                device: claim.device.clone(),
            },
        });
    }
    ledger
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{LinkState, MacvtapMode, VirtualPort, VirtualPortType};
    use switchyard_placement::exclusive::actual_is_exclusive;

    use crate::ownership::OwnedLinkKind;

    const UID_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const UID_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const UID_C: &str = "cccccccc-0000-4000-8000-000000000003";

    fn macvtap(uid: Option<&str>, ifindex: u32, lower: &str, mode: MacvtapMode) -> OwnedLink {
        OwnedLink {
            link: LinkRef {
                ifindex,
                name: uid.map_or_else(|| format!("swyorphan{ifindex}"), link_name),
            },
            group: GroupRole::Owned,
            port_uid: uid.map(str::to_string),
            kind: OwnedLinkKind::Macvtap {
                mode: Some(mode),
                lower: Some(lower.to_string()),
            },
            mac: Some("52:54:00:00:00:01".into()),
            oper_state: LinkState::Up,
        }
    }

    fn direct_actual(uid: &str, ifindex: u32, device: &str, mode: MacvtapMode) -> PortActual {
        PortActual {
            kind: ActualType::Direct,
            device: Some(device.into()),
            mode: Some(mode),
            link_name: link_name(uid),
            ifindex: Some(ifindex),
            ..PortActual::default()
        }
    }

    fn port(uid: &str, name: &str, created: i64, actual: Option<PortActual>) -> PortRecord {
        let exclusive = actual.as_ref().is_some_and(actual_is_exclusive);
        PortRecord {
            uid: uid.into(),
            key: PortKey::new("ns", name),
            created,
            network: "net".into(),
            deleting: false,
            phase: actual.as_ref().map(|_| PortPhase::Ready),
            actual,
            exclusive,
        }
    }

    fn present(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn action_of<'a>(plan: &'a RecoveryPlan, name: &str) -> &'a PortAction {
        &plan
            .ports
            .iter()
            .find(|d| d.key.name == name)
            .expect("port in plan")
            .action
    }

    #[test]
    fn agreeing_link_and_port_are_counted_without_status_write() {
        let actual = direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa);
        let ports = [port(UID_A, "a", 1, Some(actual))];
        let links = [macvtap(Some(UID_A), 7, "eth1", MacvtapMode::Vepa)];
        let plan = plan_recovery(&ports, &links, &present(&["eth1"]));
        assert_eq!(
            action_of(&plan, "a"),
            &PortAction::Count {
                link: links[0].link.clone(),
                device: Some("eth1".into()),
                write_status: false
            }
        );
        assert!(plan.links.is_empty());
        assert_eq!(plan.ledger.connections("eth1"), 1);
    }

    #[test]
    fn link_created_before_the_status_write_is_adopted() {
        let mut pending = port(UID_A, "a", 1, None);
        pending.phase = Some(PortPhase::Pending);
        let links = [macvtap(Some(UID_A), 9, "eth2", MacvtapMode::Bridge)];
        let plan = plan_recovery(&[pending], &links, &present(&["eth2"]));
        assert_eq!(
            action_of(&plan, "a"),
            &PortAction::Count {
                link: links[0].link.clone(),
                device: Some("eth2".into()),
                write_status: true
            }
        );
        assert_eq!(plan.ledger.device_of(UID_A), Some("eth2"));
    }

    #[test]
    fn kernel_wins_over_a_stale_recorded_device() {
        let stale = direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa);
        let links = [macvtap(Some(UID_A), 7, "eth2", MacvtapMode::Vepa)];
        let plan = plan_recovery(&[port(UID_A, "a", 1, Some(stale))], &links, &present(&[]));
        assert!(matches!(
            action_of(&plan, "a"),
            PortAction::Count { device: Some(d), write_status: true, .. } if d == "eth2"
        ));
        assert_eq!(plan.ledger.connections("eth1"), 0);
        assert_eq!(plan.ledger.connections("eth2"), 1);
    }

    #[test]
    fn links_without_a_live_port_are_deleted() {
        let links = [
            macvtap(Some(UID_C), 11, "eth1", MacvtapMode::Vepa),
            macvtap(None, 12, "eth1", MacvtapMode::Vepa),
        ];
        let plan = plan_recovery(&[], &links, &present(&["eth1"]));
        let deleted: Vec<_> = plan.deletions().map(|l| l.ifindex).collect();
        assert_eq!(deleted.len(), 2);
        assert!(deleted.contains(&11) && deleted.contains(&12));
        assert!(plan.links.iter().all(|a| matches!(
            a,
            LinkAction::Delete {
                reason: DeleteReason::Orphan,
                ..
            }
        )));
        assert_eq!(plan.ledger.total_connections(), 0);
    }

    #[test]
    fn deleting_ports_lose_their_link_then_their_finalizer() {
        let mut gone = port(
            UID_A,
            "a",
            1,
            Some(direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa)),
        );
        gone.deleting = true;
        let mut no_link = port(UID_B, "b", 1, None);
        no_link.deleting = true;
        let links = [macvtap(Some(UID_A), 7, "eth1", MacvtapMode::Vepa)];
        let plan = plan_recovery(&[gone, no_link], &links, &present(&["eth1"]));
        assert_eq!(
            action_of(&plan, "a"),
            &PortAction::Finalize {
                link: Some(links[0].link.clone())
            }
        );
        assert_eq!(action_of(&plan, "b"), &PortAction::Finalize { link: None });
        assert_eq!(
            plan.links,
            [LinkAction::Delete {
                link: links[0].link.clone(),
                reason: DeleteReason::PortDeleting(PortKey::new("ns", "a"))
            }]
        );
        assert_eq!(plan.ledger.connections("eth1"), 0);
    }

    #[test]
    fn vanished_link_is_recreated_on_its_device_or_fails_without_it() {
        let ports = [
            port(
                UID_A,
                "a",
                1,
                Some(direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa)),
            ),
            port(
                UID_B,
                "b",
                1,
                Some(direct_actual(UID_B, 8, "eth9", MacvtapMode::Vepa)),
            ),
        ];
        let plan = plan_recovery(&ports, &[], &present(&["eth1"]));
        assert_eq!(
            action_of(&plan, "a"),
            &PortAction::Recreate {
                device: "eth1".into()
            }
        );
        assert!(matches!(
            action_of(&plan, "b"),
            PortAction::Fail { reason: "DeviceMissing", message } if message.contains("'eth9'")
        ));
        // The recreation is reserved so new ports cannot take its place.
        assert_eq!(plan.ledger.device_of(UID_A), Some("eth1"));
        assert_eq!(plan.ledger.device_of(UID_B), None);
    }

    #[test]
    fn vanished_bridge_port_fails_when_the_bridge_is_gone() {
        let actual = PortActual {
            kind: ActualType::Bridge,
            bridge: Some("br-x".into()),
            device: Some("br-x".into()),
            link_name: link_name(UID_A),
            ..PortActual::default()
        };
        let plan = plan_recovery(&[port(UID_A, "a", 1, Some(actual))], &[], &present(&[]));
        assert!(matches!(
            action_of(&plan, "a"),
            PortAction::Fail {
                reason: "BridgeAbsent",
                ..
            }
        ));
    }

    #[test]
    fn two_ports_recording_one_passthrough_device_older_keeps_it() {
        // libvirt's restart case: both records claim eth1 and no link exists any more.
        let ports = [
            port(
                UID_B,
                "younger",
                20,
                Some(direct_actual(UID_B, 8, "eth1", MacvtapMode::Passthrough)),
            ),
            port(
                UID_A,
                "older",
                10,
                Some(direct_actual(UID_A, 7, "eth1", MacvtapMode::Passthrough)),
            ),
        ];
        let plan = plan_recovery(&ports, &[], &present(&["eth1"]));
        assert_eq!(
            action_of(&plan, "older"),
            &PortAction::Recreate {
                device: "eth1".into()
            }
        );
        match action_of(&plan, "younger") {
            PortAction::Conflict {
                device,
                holder,
                kept_link: None,
                message,
            } => {
                assert_eq!(device, "eth1");
                assert_eq!(holder, &PortKey::new("ns", "older"));
                assert!(message.contains("ns/older"));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(plan.ledger.connections("eth1"), 1);
        assert_eq!(
            plan.ledger.exclusive_holder("eth1").unwrap().port.name,
            "older"
        );
    }

    #[test]
    fn a_live_link_beats_an_older_recorded_claim() {
        let ports = [
            port(
                UID_A,
                "older",
                10,
                Some(direct_actual(UID_A, 7, "eth1", MacvtapMode::Passthrough)),
            ),
            port(
                UID_B,
                "younger",
                20,
                Some(direct_actual(UID_B, 8, "eth1", MacvtapMode::Passthrough)),
            ),
        ];
        let links = [macvtap(Some(UID_B), 8, "eth1", MacvtapMode::Passthrough)];
        let plan = plan_recovery(&ports, &links, &present(&["eth1"]));
        assert!(matches!(
            action_of(&plan, "younger"),
            PortAction::Count { .. }
        ));
        assert!(matches!(
            action_of(&plan, "older"),
            PortAction::Conflict { kept_link: None, holder, .. } if holder.name == "younger"
        ));
        assert_eq!(plan.ledger.connections("eth1"), 1);
    }

    #[test]
    fn live_links_on_an_exclusive_device_keep_counts_equal_to_the_kernel() {
        // Private + 802.1Qbh (exclusive) and a shared private link on one device: the kernel
        // allows it, the allocator never would. Older keeps it; the loser is flagged and counted.
        let qbh = VirtualPort {
            kind: Some(VirtualPortType::Qbh),
            ..VirtualPort::default()
        };
        let mut exclusive_actual = direct_actual(UID_A, 7, "eth1", MacvtapMode::Private);
        exclusive_actual.virtualport = Some(qbh);
        let ports = [
            port(UID_A, "qbh", 10, Some(exclusive_actual)),
            port(
                UID_B,
                "shared",
                20,
                Some(direct_actual(UID_B, 8, "eth1", MacvtapMode::Private)),
            ),
        ];
        assert!(ports[0].exclusive && !ports[1].exclusive);
        let links = [
            macvtap(Some(UID_A), 7, "eth1", MacvtapMode::Private),
            macvtap(Some(UID_B), 8, "eth1", MacvtapMode::Private),
        ];
        let plan = plan_recovery(&ports, &links, &present(&["eth1"]));
        assert!(matches!(action_of(&plan, "qbh"), PortAction::Count { .. }));
        assert!(matches!(
            action_of(&plan, "shared"),
            PortAction::Conflict { kept_link: Some(l), .. } if l.ifindex == 8
        ));
        assert_eq!(plan.ledger.connections("eth1"), 2);
        assert_eq!(
            plan.ledger.exclusive_holder("eth1").unwrap().port.name,
            "qbh"
        );
        assert!(plan.deletions().next().is_none());
    }

    #[test]
    fn shared_claims_on_one_device_do_not_conflict() {
        let ports = [
            port(
                UID_A,
                "a",
                1,
                Some(direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa)),
            ),
            port(
                UID_B,
                "b",
                2,
                Some(direct_actual(UID_B, 8, "eth1", MacvtapMode::Vepa)),
            ),
        ];
        let links = [macvtap(Some(UID_A), 7, "eth1", MacvtapMode::Vepa)];
        let plan = plan_recovery(&ports, &links, &present(&["eth1"]));
        assert!(matches!(action_of(&plan, "a"), PortAction::Count { .. }));
        assert_eq!(
            action_of(&plan, "b"),
            &PortAction::Recreate {
                device: "eth1".into()
            }
        );
        assert_eq!(plan.ledger.connections("eth1"), 2);
    }

    #[test]
    fn doomed_link_of_a_live_port_is_restored_and_duplicates_are_deleted() {
        let actual = direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa);
        let mut doomed = macvtap(Some(UID_A), 7, "eth1", MacvtapMode::Vepa);
        doomed.group = GroupRole::Doomed;
        let mut duplicate = macvtap(Some(UID_A), 30, "eth1", MacvtapMode::Vepa);
        duplicate.link.name = "swyduplicate".into();
        let plan = plan_recovery(
            &[port(UID_A, "a", 1, Some(actual))],
            &[duplicate.clone(), doomed.clone()],
            &present(&["eth1"]),
        );
        assert!(
            matches!(action_of(&plan, "a"), PortAction::Count { link, .. } if link.ifindex == 7)
        );
        assert!(plan.links.contains(&LinkAction::RestoreGroup {
            link: doomed.link.clone(),
            port: PortKey::new("ns", "a")
        }));
        assert!(plan.links.contains(&LinkAction::Delete {
            link: duplicate.link.clone(),
            reason: DeleteReason::Duplicate(PortKey::new("ns", "a"))
        }));
        assert_eq!(plan.ledger.connections("eth1"), 1);
    }

    #[test]
    fn link_that_lost_its_alias_is_matched_by_its_derived_name() {
        let mut unaliased = macvtap(Some(UID_A), 7, "eth1", MacvtapMode::Vepa);
        unaliased.port_uid = None;
        let mut stray = macvtap(None, 8, "eth1", MacvtapMode::Vepa);
        stray.port_uid = None;
        let plan = plan_recovery(
            &[port(UID_A, "a", 1, None)],
            &[unaliased.clone(), stray.clone()],
            &present(&["eth1"]),
        );
        assert!(matches!(
            action_of(&plan, "a"),
            PortAction::Count { link, write_status: true, .. } if link.ifindex == 7
        ));
        assert_eq!(plan.deletions().collect::<Vec<_>>(), [&stray.link]);
    }

    #[test]
    fn unrealised_and_failed_ports_go_back_to_allocation() {
        let mut failed = port(
            UID_A,
            "failed",
            1,
            Some(direct_actual(UID_A, 7, "eth1", MacvtapMode::Vepa)),
        );
        failed.phase = Some(PortPhase::Failed);
        let fresh = port(UID_B, "fresh", 1, None);
        let plan = plan_recovery(&[failed, fresh], &[], &present(&["eth1"]));
        assert_eq!(action_of(&plan, "failed"), &PortAction::Allocate);
        assert_eq!(action_of(&plan, "fresh"), &PortAction::Allocate);
        assert_eq!(plan.ledger.total_connections(), 0);
    }
}
