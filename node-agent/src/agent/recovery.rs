//! Start-up recovery: rebuild counts from the kernel and the ports' records, clean up what no
//! port owns, and mark what cannot come back. The decisions are [`crate::plan`]'s; this module
//! only reads the inputs and carries the decisions out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use switchyard_crds::{NetworkPort, PortPhase};
use switchyard_libvirt::merge::{PortRequest, effective_port};
use switchyard_placement::PortKey;
use switchyard_placement::exclusive::{actual_is_exclusive, port_is_exclusive};
use tracing::{info, warn};

use super::{AgentError, Context, HeldFailure, Realised, now, port_status, ports};
use crate::plan::{LinkAction, PortAction, PortRecord, plan_recovery};

/// The condition reason of a port whose link vanished with its device: it stays failed until
/// its spec changes or it is re-created, as libvirt leaves such a port unrealised.
pub(super) const LINK_LOST: &str = "LinkLost";

/// Recovers from the ports the controller's cache listed (`listed_in`: how long that took).
/// The links of `undecodable` ports (by UID: listed, but not readable) are left as they are:
/// their ports exist, and may read again after an upgrade.
pub(super) async fn recover(
    ctx: &Context,
    ports: Vec<Arc<NetworkPort>>,
    undecodable: &HashSet<String>,
    listed_in: Duration,
) -> Result<(), AgentError> {
    let started = Instant::now();
    let (mut owned, present) = ctx.links.owned_links_and_names().await?;
    owned.retain(|link| {
        let keep = link
            .port_uid
            .as_ref()
            .is_some_and(|uid| undecodable.contains(uid));
        if keep {
            warn!(link = %link.link, "left the link of a port the agent cannot decode as it is");
        }
        !keep
    });
    info!(
        ports = ports.len(),
        links = owned.len(),
        list_ms = listed_in.as_millis() as u64,
        dump_ms = started.elapsed().as_millis() as u64,
        "recovery read the ports and the kernel"
    );
    // Pod ports are recovered from the CNI records ([`crate::cni`]): their links are not here.
    let records: Vec<PortRecord> = ports
        .iter()
        .filter(|port| !crate::cni::made_by_cni(port))
        .filter_map(|port| record(port, ctx))
        .collect();
    let plan = plan_recovery(&records, &owned, &present);

    for action in &plan.links {
        if let LinkAction::RestoreGroup { link, port } = action {
            info!(%link, %port, "link was tagged for deletion but its port is live: restoring it");
            ctx.links.restore_group(link).await?;
        }
    }
    let deletions: Vec<_> = plan.deletions().cloned().collect();
    if !deletions.is_empty() {
        let done = ctx.links.delete_links(&deletions).await?;
        info!(
            deleted = done.deleted.len(),
            already_gone = done.already_gone.len(),
            "removed links no live port owns"
        );
    }

    let by_uid: HashMap<String, &NetworkPort> = ports
        .iter()
        .filter_map(|p| p.uid().map(|uid| (uid, &**p)))
        .collect();
    {
        let mut state = ctx.state();
        state.ledger = plan.ledger.clone();
        for decision in &plan.ports {
            match &decision.action {
                PortAction::Count { link, device, .. } => {
                    state.realised.insert(
                        decision.uid.clone(),
                        Realised {
                            link: link.clone(),
                            device: device.clone(),
                            // Compared with the kernel on the port's first reconcile.
                            bandwidth: None,
                        },
                    );
                }
                PortAction::Conflict {
                    kept_link: Some(link),
                    device,
                    ..
                } => {
                    state.realised.insert(
                        decision.uid.clone(),
                        Realised {
                            link: link.clone(),
                            device: Some(device.clone()),
                            bandwidth: None,
                        },
                    );
                }
                _ => {}
            }
            if let Some(port) = by_uid.get(&decision.uid)
                && let Some((reason, message)) = failure(&decision.action)
            {
                state.held.insert(
                    decision.uid.clone(),
                    HeldFailure {
                        generation: port.metadata.generation,
                        reason,
                        message,
                    },
                );
            }
        }
    }
    // Statuses the decisions change; the port controller does the rest (writing the status of
    // counted links, re-creating vanished ones on their reserved device, finalizing).
    for decision in &plan.ports {
        let Some(port) = by_uid.get(&decision.uid) else {
            continue;
        };
        let Some((reason, message)) = failure(&decision.action) else {
            continue;
        };
        warn!(port = %decision.key, reason, %message, "port cannot be realised after restart");
        let status = port_status::not_ready(
            port.status.as_ref(),
            port.metadata.generation,
            PortPhase::Failed,
            reason,
            &message,
            &now(),
        );
        if let Err(error) = ports::write_status(port, ctx, &status).await {
            // Held in the agent's state: the port's reconcile writes it, retrying as it does.
            warn!(port = %decision.key, %error, "could not record the port's failure yet; its reconcile retries");
        }
    }
    ctx.report.notify_one();
    Ok(())
}

/// The condition a recovery decision leaves on its port until the port's spec changes.
fn failure(action: &PortAction) -> Option<(&'static str, String)> {
    match action {
        PortAction::Fail { reason, message } => Some((LINK_LOST, format!("{reason}: {message}"))),
        PortAction::Conflict { message, .. } => {
            Some((crate::plan::REASON_DEVICE_CONFLICT, message.clone()))
        }
        _ => None,
    }
}

/// A port as recovery sees it; `None` for a port without UID (never from the apiserver).
fn record(port: &NetworkPort, ctx: &Context) -> Option<PortRecord> {
    let actual = port.status.as_ref().and_then(|s| s.actual.clone());
    let exclusive = match ctx.network(&port.spec.network) {
        Some(network) => effective_port(&network.spec, &PortRequest::from_port(&port.spec))
            .map(|effective| port_is_exclusive(&effective))
            .unwrap_or_else(|_| actual.as_ref().is_some_and(actual_is_exclusive)),
        None => actual.as_ref().is_some_and(actual_is_exclusive),
    };
    Some(PortRecord {
        uid: port.uid()?,
        key: PortKey::of(port),
        created: port.creation_timestamp().map_or(0, |t| t.0.as_second()),
        network: port.spec.network.clone(),
        deleting: port.metadata.deletion_timestamp.is_some(),
        phase: port.status.as_ref().and_then(|s| s.phase),
        actual,
        exclusive,
    })
}
