//! The watch on KubeVirt's VirtualMachineInstances that carries out [`super::migration`]'s
//! decisions for this node's pod attachments.
//!
//! Every VMI is watched (the `kubevirt.io/nodeName` label moves to the target node when a
//! migration completes, so a watch selecting this node's VMIs would lose the source's VMI at
//! the very change it waits for), but nothing of it is kept: each event is decoded down to its
//! `status.migrationState` and matched by UID against the records' VMIs, so only VMIs owning
//! a port on this node are acted on. Without KubeVirt (no such resource) the watch says so once
//! and looks again with the shared backoff.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde::Deserialize;
use switchyard_crds::NetworkPort;
use tracing::{debug, info, warn};

use super::migration::{LocalAttachment, MigrationAction, MigrationState, decide};
use super::records::{Phase, Record};
use super::{Cni, sweep};
use crate::agent::port_status::with_migrated_away;
use crate::netlink::PodNamespace;

/// KubeVirt's VirtualMachineInstance, `kubevirt.io/v1`.
fn vmi_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", super::attach::VMI_KIND),
        "virtualmachineinstances",
    )
}

/// Watches VMIs until the agent stops.
pub(super) async fn run(cni: Arc<Cni>) {
    let api = Api::<DynamicObject>::all_with(cni.ctx.kube_client().clone(), &vmi_resource());
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let backoffs = switchyard_retry::Backoffs::new();
    let mut said_missing = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(vmi) | watcher::Event::InitApply(vmi)) => {
                backoffs.succeeded(&());
                handle(&cni, &vmi).await;
            }
            Ok(_) => backoffs.succeeded(&()),
            Err(error) => {
                // The watcher starts over on the next poll: the wait here is all that keeps a
                // missing resource from being asked for in a loop.
                let (attempt, wait) = backoffs.failed(());
                if not_installed(&error) {
                    if !said_missing {
                        info!(
                            "KubeVirt's VirtualMachineInstances are not served; live migrations are not followed until they are"
                        );
                        said_missing = true;
                    }
                    debug!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "VMI watch: no such resource"
                    );
                } else {
                    warn!(%error, attempt, wait_ms = wait.as_millis() as u64, "VMI watch failed; retrying");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Whether the apiserver does not serve the resource (KubeVirt is not installed).
fn not_installed(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

/// A VMI's migration state; `None` when it has none or it does not decode (said once per
/// event: the VMI's next change may fix it).
fn migration_state(vmi: &DynamicObject) -> Option<MigrationState> {
    let value = vmi.data.pointer("/status/migrationState")?;
    if value.is_null() {
        return None;
    }
    match MigrationState::deserialize(value) {
        Ok(state) => Some(state),
        Err(error) => {
            warn!(vmi = %vmi.name_any(), namespace = ?vmi.namespace(), %error, "ignoring a migration state that does not decode");
            None
        }
    }
}

async fn handle(cni: &Cni, vmi: &DynamicObject) {
    let Some(uid) = vmi.uid() else {
        return;
    };
    let Some(state) = migration_state(vmi) else {
        return;
    };
    let mut records = cni.records.lock().await;
    let concerned: Vec<Record> = records
        .iter()
        .filter(|r| r.phase == Phase::Ready && r.vmi_uid.as_deref() == Some(uid.as_str()))
        .cloned()
        .collect();
    for record in concerned {
        let attached_at = record.attached_at.as_deref().and_then(|t| t.parse().ok());
        let action = decide(
            Some(&state),
            &LocalAttachment {
                node: cni.ctx.node_name(),
                pod_name: &record.pod_name,
                attached_at,
                down_for: record.down_for_migration.as_deref(),
            },
        );
        match action {
            MigrationAction::Nothing => {}
            MigrationAction::SourceDown {
                migration_uid,
                target_node,
            } => source_down(cni, &mut records, record, &migration_uid, &target_node).await,
            MigrationAction::ReleaseTarget { migration_uid } => {
                info!(vmi = %vmi.name_any(), migration = %migration_uid, pod = %record.pod_name, ifname = %record.ifname, "the migration to this node failed or was aborted: releasing the target's attachment");
                sweep::release(cni, &mut records, record, true).await;
            }
        }
    }
}

/// Sets the source's link down, records it, then says so on the port.
async fn source_down(
    cni: &Cni,
    records: &mut Vec<Record>,
    mut record: Record,
    migration_uid: &str,
    target_node: &str,
) {
    // A namespace already gone took the link with it; the sweep releases the rest.
    if !record.netns_alive() {
        return;
    }
    let downed = async {
        let netns = PodNamespace::open(Path::new(&record.netns)).await?;
        match netns.link(&record.ifname).await? {
            Some(link) if link.ifindex == record.ifindex => {}
            // Not the link ADD made: leave it alone.
            _ => return Ok(false),
        }
        netns.set_down(record.ifindex).await.map(|()| true)
    };
    match downed.await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            warn!(%error, pod = %record.pod_name, ifname = %record.ifname, migration = %migration_uid, "setting the migrated VM's source link down");
            return;
        }
    }
    info!(pod = %record.pod_name, ifname = %record.ifname, migration = %migration_uid, target = %target_node, "the VM migrated away: its source link is down");
    record.down_for_migration = Some(migration_uid.to_string());
    if let Err(error) = sweep::put(cni, records, &record) {
        warn!(%error, "recording the migrated link");
    }
    let api = Api::<NetworkPort>::namespaced(cni.ctx.kube_client().clone(), &record.pod_namespace);
    let manager = cni.ctx.field_manager().to_string();
    let (name, migration_uid, target_node) = (
        record.port_name.clone(),
        migration_uid.to_string(),
        target_node.to_string(),
    );
    // In the background, as ADD writes its status: the link is what matters at once.
    tokio::spawn(async move {
        if let Err(error) =
            write_migrated_status(&api, &manager, &name, &migration_uid, &target_node).await
        {
            warn!(port = %name, %error, "writing the migrated port's status");
        }
    });
}

async fn write_migrated_status(
    api: &Api<NetworkPort>,
    manager: &str,
    name: &str,
    migration_uid: &str,
    target_node: &str,
) -> Result<(), kube::Error> {
    let Some(port) = api.get_opt(name).await? else {
        return Ok(());
    };
    let status = with_migrated_away(
        port.status.unwrap_or_default(),
        migration_uid,
        target_node,
        &super::attach::now(),
    );
    super::attach::apply_port_status(api, manager, name, &status).await
}
