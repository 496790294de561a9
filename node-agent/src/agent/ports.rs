//! Reconciling one port: finalizer, allocation, link, status; and on deletion, the reverse.

use std::sync::Arc;
use std::time::{Duration, Instant};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch as JsonPatch, PatchOperation, TestOperation};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use switchyard_crds::{ActualType, NetworkPort, NetworkPortStatus, PortActual, PortPhase};
use switchyard_libvirt::merge::{EffectivePort, PortRequest, effective_port};
use switchyard_placement::PortKey;
use switchyard_placement::ledger::{AllocationError, Holding, PoolMember, Sharing};
use switchyard_placement::realisation::RealisationKind;
use switchyard_retry::Retry;
use tracing::{debug, info, warn};

use super::{
    Context, HeldFailure, Realised, ReconcileError, finalizer, now, port_bandwidth, port_status,
};
use crate::bandwidth::HostView;
use crate::netlink::{BridgePortRequest, MacvtapRequest, NetlinkError, RealisedLink};
use crate::vlan;

/// How soon a port waiting for a free device looks again. Deletions free devices at any time
/// and waiting ports are few, so polling beats tracking who waits for what.
const WAIT_FOR_DEVICE: Duration = Duration::from_secs(1);
/// How soon a port whose device or bridge is missing looks again (hot-plug, a bridge created
/// later).
const WAIT_FOR_HARDWARE: Duration = Duration::from_secs(10);

/// How soon a cleanup whose link deletion is still under way is looked at again: a safety net
/// only, as the cleanup task removes the finalizer itself when the link is gone.
const CLEANUP_RECHECK: Duration = Duration::from_secs(5);

/// The controller's reconcile: the finalizer first, then realisation; on deletion, cleanup.
pub(super) async fn reconcile(
    port: Arc<NetworkPort>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // Allocation needs the counts recovery rebuilds; once it is done every cached port is
    // reconciled again (`reconcile_all_on` in `Agent::start`).
    if !ctx.is_ready() {
        return Ok(Action::await_change());
    }
    // A pod's port lives in the pod's namespace and is served by the CNI server alone.
    if crate::cni::made_by_cni(&port) {
        return Ok(Action::await_change());
    }
    let port_key = PortKey::of(&port).to_string();
    let result = reconcile_port(port, &ctx).await;
    ctx.metrics.reconciled(result.is_ok());
    if result.is_ok() {
        ctx.failures.succeeded(&port_key);
    }
    result
}

async fn reconcile_port(
    port: Arc<NetworkPort>,
    ctx: &Arc<Context>,
) -> Result<Action, ReconcileError> {
    if port.meta().deletion_timestamp.is_some() {
        if !finalizer::present(&port) {
            return Ok(Action::await_change());
        }
        return cleanup(port, ctx);
    }
    if finalizer::present(&port) {
        return apply(&port, ctx).await;
    }
    // The finalizer is in place before any link exists, so no link outlives its port; the
    // patched object carries on at once rather than after the watch brings it back.
    let namespace = port
        .namespace()
        .ok_or(ReconcileError::Incomplete("namespace"))?;
    let api = Api::<NetworkPort>::namespaced(ctx.client.clone(), &namespace);
    let port = finalizer::add(&api, &port).await?;
    ctx.metrics.wrote("NetworkPort");
    apply(&port, ctx).await
}

/// Transient API or kernel trouble is retried with exponential backoff and jitter per port
/// (the controller's policy, `switchyard-retry`); an invalid request waits for the port to
/// change, as repeating it would only repeat the refusal.
pub(super) fn error_policy(
    port: Arc<NetworkPort>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let key = PortKey::of(&port);
    match error.retry() {
        Retry::Invalid => {
            warn!(port = %key, %error, "refused; waiting for the port to change");
            Action::await_change()
        }
        Retry::Transient => {
            let (attempt, delay) = ctx.failures.failed(key.to_string());
            warn!(port = %key, %error, attempt, retry_in = ?delay, "reconcile failed");
            Action::requeue(delay)
        }
    }
}

/// Realises the port, or says in its status why it cannot be.
async fn apply(port: &NetworkPort, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = port.uid().ok_or(ReconcileError::Incomplete("uid"))?;
    // Recovery's decision stands until the spec changes, whether or not its status write went
    // through: a write that fails here is retried with backoff, and the port is never
    // realised meanwhile (a lost conflict's port would be given the contested device).
    if let Some(held) = held_failure(ctx, &uid, port.meta().generation) {
        write_failure(port, ctx, PortPhase::Failed, held.reason, &held.message).await?;
        return Ok(Action::await_change());
    }
    if already_realised(port, ctx, &uid) || failed_for_good(port) {
        return Ok(Action::await_change());
    }
    let Some(network) = ctx.network(&port.spec.network) else {
        let message = format!("network '{}' does not exist", port.spec.network);
        write_failure(port, ctx, PortPhase::Pending, "NetworkNotFound", &message).await?;
        return Ok(Action::await_change());
    };
    let Some(realisation) = ctx.realisation(&port.spec.network) else {
        let message = format!(
            "network '{}' does not select node '{}'",
            port.spec.network, ctx.node
        );
        write_failure(port, ctx, PortPhase::Failed, "NetworkNotOnNode", &message).await?;
        return Ok(Action::await_change());
    };
    let effective = match effective_port(&network.spec, &PortRequest::from_port(&port.spec)) {
        Ok(effective) => effective,
        Err(error) => {
            write_failure(
                port,
                ctx,
                PortPhase::Failed,
                error.reason(),
                &error.to_string(),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let refusal = port_bandwidth::Refusal {
        generation: port.meta().generation,
        requested: effective.bandwidth.clone(),
    };
    if ctx.state().bandwidth_refused.get(&uid) == Some(&refusal) {
        return Ok(Action::await_change());
    }
    let port_key = PortKey::of(port);
    let created = match &realisation.kind {
        RealisationKind::Unsupported { reason, message } => {
            write_failure(port, ctx, PortPhase::Failed, reason, message).await?;
            return Ok(Action::await_change());
        }
        RealisationKind::Macvtap {
            mode,
            pool,
            max_connections_per_device,
            ..
        } => {
            let device = {
                let devices = ctx
                    .links
                    .device_states(&pool.iter().map(String::as_str).collect::<Vec<_>>())
                    .await?;
                let members: Vec<PoolMember> = devices
                    .iter()
                    .map(|d| PoolMember {
                        name: d.name.clone(),
                        present: d.present(),
                    })
                    .collect();
                let sharing = Sharing::for_port(&effective, *max_connections_per_device);
                let allocated = ctx.state().ledger.allocate(
                    &uid,
                    &port_key,
                    &network.name_any(),
                    &members,
                    sharing,
                );
                match allocated {
                    Ok(device) => device,
                    Err(error) => return wait_for_device(port, ctx, &error).await,
                }
            };
            if let Some(refusal) = vlan::refusal(&effective, &device, || {
                ctx.links.is_virtual_function(&device)
            }) {
                ctx.state().ledger.release(&uid);
                return refuse_vlan(port, ctx, &refusal).await;
            }
            let request = MacvtapRequest {
                port_uid: &uid,
                lower: &device,
                mode: *mode,
                mac: &port.spec.mac,
            };
            let result = {
                let _one_at_a_time = ctx.creating.lock().await;
                let started = Instant::now();
                let result = ctx.links.create_macvtap(&request).await;
                ctx.metrics.observe_link_create(started.elapsed());
                result
            };
            result.map(|link| (link, actual_macvtap(&device, *mode, &effective)))
        }
        RealisationKind::Bridge { bridge } => {
            if let Some(refusal) = vlan::refusal(&effective, bridge, || false) {
                return refuse_vlan(port, ctx, &refusal).await;
            }
            ctx.state().ledger.record(
                &uid,
                bridge,
                Holding {
                    port: port_key.clone(),
                    network: network.name_any(),
                    exclusive: false,
                },
            );
            let request = BridgePortRequest {
                port_uid: &uid,
                bridge,
                mac: &port.spec.mac,
            };
            let result = {
                let _one_at_a_time = ctx.creating.lock().await;
                let started = Instant::now();
                let result = ctx.links.create_bridge_port(&request).await;
                ctx.metrics.observe_link_create(started.elapsed());
                result
            };
            result.map(|link| (link, actual_bridge(bridge, &effective)))
        }
    };
    match created {
        Ok((link, mut actual)) => {
            fill_from_link(&mut actual, &link);
            let view = match actual.kind {
                ActualType::Direct => HostView::Shared,
                ActualType::Bridge => HostView::Swapped,
            };
            let applied_before = ctx
                .state()
                .realised
                .get(&uid)
                .filter(|r| r.link == link.link)
                .and_then(|r| r.bandwidth.clone());
            let known = match (&applied_before, link.already_existed) {
                (Some(applied), _) => port_bandwidth::Known::Applied(applied),
                (None, false) => port_bandwidth::Known::Fresh,
                (None, true) => port_bandwidth::Known::Unknown,
            };
            let applied = match port_bandwidth::ensure(
                &ctx.links,
                &link.link,
                view,
                effective.bandwidth.as_ref(),
                known,
            )
            .await?
            {
                port_bandwidth::Outcome::Applied(applied) => applied,
                port_bandwidth::Outcome::Refused { reason, message } => {
                    ctx.state().bandwidth_refused.insert(uid.clone(), refusal);
                    return refuse_bandwidth(port, ctx, &uid, link.link, reason, &message).await;
                }
            };
            actual.bandwidth = applied.reported();
            ctx.state().bandwidth_refused.remove(&uid);
            let missing = applied.missing.clone();
            ctx.state().realised.insert(
                uid.clone(),
                Realised {
                    link: link.link.clone(),
                    device: actual.device.clone(),
                    bandwidth: Some(applied),
                },
            );
            ctx.report.notify_one();
            let status =
                port_status::ready(port.status.as_ref(), port.meta().generation, actual, &now());
            let status = port_status::with_missing_tc_features(
                status,
                port.status.as_ref(),
                &missing,
                &now(),
            );
            write_status(port, ctx, &status).await?;
            info!(port = %port_key, link = %link.link, existed = link.already_existed, "port realised");
            Ok(Action::await_change())
        }
        Err(error) => {
            ctx.state().ledger.release(&uid);
            link_failure(port, ctx, error).await
        }
    }
}

/// A link whose bandwidth cannot be enforced is removed again, as libvirt does not start an
/// interface whose shaping fails; the port waits, failed, for its spec or network to change.
async fn refuse_bandwidth(
    port: &NetworkPort,
    ctx: &Context,
    uid: &str,
    link: crate::ownership::LinkRef,
    reason: &str,
    message: &str,
) -> Result<Action, ReconcileError> {
    warn!(port = %PortKey::of(port), %link, reason, message, "bandwidth cannot be applied; removing the link");
    ctx.deleter
        .delete(link)
        .await
        .map_err(ReconcileError::Delete)?;
    ctx.state().realised.remove(uid);
    ctx.state().ledger.release(uid);
    ctx.report.notify_one();
    write_failure(port, ctx, PortPhase::Failed, reason, message).await?;
    Ok(Action::await_change())
}

/// Recovery's failure of the port while its spec is the one it was decided on; a changed spec
/// drops it (the port is then reconciled as any other).
fn held_failure(ctx: &Context, uid: &str, generation: Option<i64>) -> Option<HeldFailure> {
    let mut state = ctx.state();
    let held = state.held.get(uid)?;
    if held.generation == generation {
        return Some(held.clone());
    }
    state.held.remove(uid);
    None
}

/// Whether the port's status already describes the link the agent holds for it: its name,
/// ifindex and device as the kernel shows them (a status someone else changed is rewritten).
fn already_realised(port: &NetworkPort, ctx: &Context, uid: &str) -> bool {
    let state = ctx.state();
    let Some(realised) = state.realised.get(uid) else {
        return false;
    };
    let status = port.status.as_ref();
    bandwidth_settled(port, ctx, realised)
        && status.and_then(|s| s.phase) == Some(PortPhase::Ready)
        && status.and_then(|s| s.actual.as_ref()).is_some_and(|a| {
            a.link_name == realised.link.name
                && a.ifindex == Some(realised.link.ifindex)
                && (realised.device.is_none() || a.device == realised.device)
        })
        && status.and_then(|s| s.observed_generation) == port.meta().generation
}

/// Whether the link carries the bandwidth the port's spec, portgroup and network now ask for
/// (a network or portgroup change re-plans it without a new generation). A port whose network
/// or merge is gone keeps what it has: its failure is reported by the full reconcile only when
/// its own spec changes.
fn bandwidth_settled(port: &NetworkPort, ctx: &Context, realised: &Realised) -> bool {
    let Some(applied) = &realised.bandwidth else {
        return false;
    };
    let wanted = ctx.network(&port.spec.network).and_then(|network| {
        effective_port(&network.spec, &PortRequest::from_port(&port.spec))
            .ok()
            .map(|effective| effective.bandwidth)
    });
    wanted.is_none_or(|wanted| wanted == applied.requested)
}

/// Whether recovery found the port unrealisable (its link lost with its device, or its device
/// held by an older port): it stays failed until its spec changes or it is re-created.
fn failed_for_good(port: &NetworkPort) -> bool {
    let Some(status) = &port.status else {
        return false;
    };
    status.phase == Some(PortPhase::Failed)
        && status.observed_generation == port.meta().generation
        && status.conditions.iter().any(|c| {
            c.reason == super::recovery::LINK_LOST
                || c.reason == crate::plan::REASON_DEVICE_CONFLICT
        })
}

/// Fails a port whose vlan tags the node cannot apply, until its spec changes.
async fn refuse_vlan(
    port: &NetworkPort,
    ctx: &Context,
    refusal: &vlan::VlanRefusal,
) -> Result<Action, ReconcileError> {
    write_failure(
        port,
        ctx,
        PortPhase::Failed,
        refusal.reason,
        &refusal.message,
    )
    .await?;
    Ok(Action::await_change())
}

async fn wait_for_device(
    port: &NetworkPort,
    ctx: &Context,
    error: &AllocationError,
) -> Result<Action, ReconcileError> {
    let (phase, wait) = match error {
        AllocationError::NoExclusiveDevice { .. } | AllocationError::DevicesFull { .. } => {
            (PortPhase::Pending, WAIT_FOR_DEVICE)
        }
        AllocationError::NoDevicePresent { .. } | AllocationError::NoPool { .. } => {
            (PortPhase::Failed, WAIT_FOR_HARDWARE)
        }
    };
    write_failure(port, ctx, phase, error.reason(), &error.to_string()).await?;
    Ok(Action::requeue(wait))
}

async fn link_failure(
    port: &NetworkPort,
    ctx: &Context,
    error: NetlinkError,
) -> Result<Action, ReconcileError> {
    let wait = match &error {
        NetlinkError::BridgeFull { .. } | NetlinkError::DeviceBusy { .. } => WAIT_FOR_DEVICE,
        NetlinkError::DeviceNotFound(_) | NetlinkError::BridgeNotFound(_) => WAIT_FOR_HARDWARE,
        NetlinkError::InvalidMac(_) | NetlinkError::NameTaken { .. } => {
            write_failure(
                port,
                ctx,
                PortPhase::Failed,
                error.reason(),
                &error.to_string(),
            )
            .await?;
            return Ok(Action::await_change());
        }
        _ => return Err(error.into()),
    };
    write_failure(
        port,
        ctx,
        PortPhase::Pending,
        error.reason(),
        &error.to_string(),
    )
    .await?;
    Ok(Action::requeue(wait))
}

/// Starts the port's cleanup and returns at once: a task waits for the link's deletion batch,
/// removes the finalizer and only then frees the device, so a device never shows two holders
/// and waiting for a batch never holds a reconcile slot.
fn cleanup(port: Arc<NetworkPort>, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    let uid = port.uid().ok_or(ReconcileError::Incomplete("uid"))?;
    let namespace = port
        .namespace()
        .ok_or(ReconcileError::Incomplete("namespace"))?;
    if !ctx.state().cleaning.insert(uid.clone()) {
        return Ok(Action::requeue(CLEANUP_RECHECK));
    }
    let link = ctx.state().realised.get(&uid).map(|r| r.link.clone());
    let link = link.or_else(|| {
        port.status
            .as_ref()
            .and_then(|s| s.actual.as_ref())
            .and_then(|a| {
                a.ifindex.map(|ifindex| crate::ownership::LinkRef {
                    ifindex,
                    name: a.link_name.clone(),
                })
            })
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let api = Api::<NetworkPort>::namespaced(ctx.client.clone(), &namespace);
        let outcome = finish_cleanup(&port, &ctx, &api, &uid, link).await;
        ctx.state().cleaning.remove(&uid);
        match outcome {
            Ok(()) => debug!(port = %PortKey::of(&port), "port cleaned up"),
            // The reconcile's recheck tries again.
            Err(error) => {
                warn!(port = %PortKey::of(&port), %error, "port cleanup failed; retrying")
            }
        }
    });
    Ok(Action::requeue(CLEANUP_RECHECK))
}

async fn finish_cleanup(
    port: &NetworkPort,
    ctx: &Context,
    api: &Api<NetworkPort>,
    uid: &str,
    link: Option<crate::ownership::LinkRef>,
) -> Result<(), ReconcileError> {
    if let Some(link) = link {
        ctx.deleter
            .delete(link)
            .await
            .map_err(ReconcileError::Delete)?;
        ctx.state().realised.remove(uid);
    }
    ctx.state().held.remove(uid);
    ctx.state().bandwidth_refused.remove(uid);
    {
        let _slot = ctx.api_slots.acquire().await;
        finalizer::remove(api, port).await?;
        ctx.metrics.wrote("NetworkPort");
    }
    ctx.state().ledger.release(uid);
    ctx.report.notify_one();
    Ok(())
}

fn actual_macvtap(
    device: &str,
    mode: switchyard_crds::MacvtapMode,
    effective: &EffectivePort,
) -> PortActual {
    PortActual {
        kind: ActualType::Direct,
        device: Some(device.to_string()),
        mode: Some(mode),
        ..settings(effective)
    }
}

fn actual_bridge(bridge: &str, effective: &EffectivePort) -> PortActual {
    PortActual {
        kind: ActualType::Bridge,
        device: Some(bridge.to_string()),
        bridge: Some(bridge.to_string()),
        ..settings(effective)
    }
}

/// The merged settings every `actual` records.
fn settings(effective: &EffectivePort) -> PortActual {
    PortActual {
        portgroup: effective.portgroup.clone(),
        virtualport: effective.virtualport.clone(),
        // Only tags the agent applied would go here, and it applies none: a port with tags is
        // refused before its link is made (see `crate::vlan`).
        vlan: None,
        bandwidth: effective.bandwidth.clone(),
        trust_guest_rx_filters: effective.trust_guest_rx_filters,
        ..Default::default()
    }
}

fn fill_from_link(actual: &mut PortActual, link: &RealisedLink) {
    actual.link_name = link.link.name.clone();
    actual.ifindex = Some(link.link.ifindex);
    actual.tap_device = link.tap_device.clone();
    actual.peer_link_name = link.peer.as_ref().map(|p| p.name.clone());
}

async fn write_failure(
    port: &NetworkPort,
    ctx: &Context,
    phase: PortPhase,
    reason: &str,
    message: &str,
) -> Result<(), ReconcileError> {
    let status = port_status::not_ready(
        port.status.as_ref(),
        port.meta().generation,
        phase,
        reason,
        message,
        &now(),
    );
    write_status(port, ctx, &status).await
}

/// Replaces the port's whole status (a JSON patch of `/status`, pinned to the port's UID);
/// skipped when the port already shows it. Replaced rather than server-side applied: the agent
/// owns all of `status`, and an apply leaves fields another manager set inside `actual`,
/// which can leave an `actual` the schema refuses (422) or one that disagrees with the kernel.
pub(super) async fn write_status(
    port: &NetworkPort,
    ctx: &Context,
    status: &NetworkPortStatus,
) -> Result<(), ReconcileError> {
    if !port_status::differs(port.status.as_ref(), status) {
        return Ok(());
    }
    let uid = port.uid().ok_or(ReconcileError::Incomplete("uid"))?;
    let api =
        Api::<NetworkPort>::namespaced(ctx.client.clone(), &port.namespace().unwrap_or_default());
    let patch = JsonPatch(vec![
        PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["metadata", "uid"]),
            value: uid.into(),
        }),
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["status"]),
            value: serde_json::to_value(status).unwrap_or_default(),
        }),
    ]);
    api.patch_status(
        &port.name_any(),
        &PatchParams {
            field_manager: Some(ctx.manager.clone()),
            ..PatchParams::default()
        },
        &Patch::Json::<()>(patch),
    )
    .await?;
    ctx.metrics.wrote("NetworkPort");
    Ok(())
}
