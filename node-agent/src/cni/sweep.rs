//! Releasing attachments: the one path DEL, GC, the sweep, recovery and a failed ADD share,
//! and the record bookkeeping under it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use switchyard_cni::{Attachment, Call, CniError};
use switchyard_crds::{LABEL_NODE, NetworkPort};
use tracing::{debug, info, warn};

use super::attach::{delete_port, holding};
use super::records::{Phase, Record, Recovery, recovery_step};
use super::{Cni, CniStartError, LABEL_POD_UID};
use crate::netlink::PodNamespace;

/// How long a release waits for the API to delete a port before leaving it to the sweep.
const API_WAIT: Duration = Duration::from_secs(5);

/// Saves a record and keeps the in-memory list in step with the directory.
pub(super) fn put(cni: &Cni, records: &mut Vec<Record>, record: &Record) -> Result<(), CniError> {
    cni.store.save(record).map_err(|error| {
        CniError::new(
            switchyard_cni::error::IO_FAILURE,
            "I/O failure",
            format!("writing the CNI record: {error}"),
        )
    })?;
    match records
        .iter_mut()
        .find(|r| r.attachment() == record.attachment())
    {
        Some(existing) => *existing = record.clone(),
        None => records.push(record.clone()),
    }
    Ok(())
}

fn forget(cni: &Cni, records: &mut Vec<Record>, attachment: &Attachment) {
    if let Err(error) = cni.store.remove(attachment) {
        warn!(%error, container = %attachment.container_id, "removing a CNI record");
    }
    records.retain(|r| &r.attachment() != attachment);
}

/// Undoes an attachment: marks it `deleting`, deletes its link if its namespace is still there,
/// frees its device and (with `delete_port`) deletes its port, then forgets it. Returns
/// `false` when the port's deletion has to wait for the API: the record stays `deleting` and
/// the sweep finishes it.
pub(super) async fn release(
    cni: &Cni,
    records: &mut Vec<Record>,
    mut record: Record,
    delete_port_too: bool,
) -> bool {
    record.phase = Phase::Deleting;
    if let Err(error) = put(cni, records, &record) {
        warn!(%error, "recording a deletion; going on with it");
    }
    if record.netns_alive() {
        match PodNamespace::open(Path::new(&record.netns)).await {
            Ok(netns) => match netns.delete(&record.ifname, record.ifindex).await {
                Ok(deleted) => debug!(ifname = %record.ifname, deleted, "pod link removed"),
                Err(error) => warn!(%error, ifname = %record.ifname, "deleting the pod's link"),
            },
            // Gone in between: the kernel took the link with it.
            Err(error) => debug!(%error, netns = %record.netns, "pod namespace not entered"),
        }
    }
    if let Some(uid) = &record.port_uid {
        cni.ctx.with_ledger(|ledger| ledger.release(uid));
    }
    if delete_port_too {
        match tokio::time::timeout(API_WAIT, delete_port(cni, &record)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(%error, port = %record.port_name, "deleting the pod's port; the sweep retries");
                return false;
            }
            Err(_) => {
                warn!(port = %record.port_name, "the API did not delete the pod's port in time; the sweep retries");
                return false;
            }
        }
    }
    forget(cni, records, &record.attachment());
    true
}

/// GC: releases this configuration's attachments that the runtime does not list as valid.
pub(super) async fn gc(cni: &Cni, call: &Call) -> Result<(), CniError> {
    let valid: BTreeSet<Attachment> = call
        .config
        .valid_attachments
        .clone()
        .ok_or_else(|| {
            CniError::config(
                "GC needs field 'cni.dev/valid-attachments' (or the older 'cni.dev/attachments')",
            )
        })?
        .into_iter()
        .collect();
    let mut records = cni.records.lock().await;
    let doomed: Vec<Record> = records
        .iter()
        .filter(|r| r.conf_name == call.config.name && !valid.contains(&r.attachment()))
        .cloned()
        .collect();
    for record in doomed {
        info!(container = %record.container_id, ifname = %record.ifname, "GC: attachment not listed as valid");
        release(cni, &mut records, record, true).await;
    }
    Ok(())
}

/// The node's pod ports.
async fn list_pod_ports(cni: &Cni) -> Result<Vec<NetworkPort>, kube::Error> {
    let selector = format!("{LABEL_POD_UID},{LABEL_NODE}={}", cni.ctx.node_name());
    Ok(Api::<NetworkPort>::all(cni.ctx.kube_client().clone())
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

fn is_records_port(record: &Record, port: &NetworkPort) -> bool {
    port.name_any() == record.port_name
        && port.namespace().as_deref() == Some(record.pod_namespace.as_str())
}

/// Deletes the pod ports no record knows (a reboot emptied `/run`, or someone made them).
async fn delete_orphans(cni: &Cni, records: &[Record], ports: &[NetworkPort]) -> usize {
    let mut deleted = 0;
    for port in ports {
        if records.iter().any(|r| is_records_port(r, port)) {
            continue;
        }
        let api = Api::<NetworkPort>::namespaced(
            cni.ctx.kube_client().clone(),
            &port.namespace().unwrap_or_default(),
        );
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: port.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&port.name_any(), &params).await {
            Ok(_) => {
                info!(port = %port.name_any(), "deleted a pod port no CNI record knows");
                deleted += 1;
            }
            Err(error) => warn!(%error, port = %port.name_any(), "deleting an orphaned pod port"),
        }
    }
    deleted
}

/// What recovery did.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    pub kept: usize,
    pub undone: usize,
    pub orphans: usize,
}

/// Start-up: keeps finished attachments (counting their devices on the ledger), undoes the
/// rest, deletes pod ports no record knows.
pub(super) async fn recover(cni: &Cni) -> Result<Recovered, CniStartError> {
    let mut records = cni.records.lock().await;
    let ports = list_pod_ports(cni).await?;
    let mut recovered = Recovered::default();
    for record in records.clone() {
        let alive = record.netns_alive();
        // `None`: the namespace is there but could not be read; the link is assumed present
        // rather than a live pod's port thrown away.
        let link_present = if alive {
            match PodNamespace::open(Path::new(&record.netns)).await {
                Ok(netns) => match netns.link(&record.ifname).await {
                    Ok(link) => Some(link.is_some_and(|l| l.ifindex == record.ifindex)),
                    Err(_) => None,
                },
                Err(_) => None,
            }
        } else {
            Some(false)
        };
        let port_listed = ports.iter().any(|p| {
            is_records_port(&record, p) && record.port_uid.is_some() && p.uid() == record.port_uid
        });
        let step = match link_present {
            _ if !port_listed => Recovery::Undo,
            Some(present) => recovery_step(record.phase, alive, present),
            None => recovery_step(record.phase, alive, true),
        };
        match (step, &record.port_uid, &record.device) {
            (Recovery::Keep, Some(uid), Some(device)) => {
                let held = holding(&record);
                cni.ctx
                    .with_ledger(|ledger| ledger.record(uid, device, held));
                recovered.kept += 1;
            }
            _ => {
                info!(container = %record.container_id, ifname = %record.ifname, phase = ?record.phase, netns_alive = alive, "undoing an unfinished or vanished attachment");
                release(cni, &mut records, record, true).await;
                recovered.undone += 1;
            }
        }
    }
    recovered.orphans = delete_orphans(cni, &records, &ports).await;
    Ok(recovered)
}

/// Every `interval`: releases attachments whose namespace, port or pod is gone, finishes
/// deletions the API held up, deletes pod ports no record knows.
pub(super) async fn run(cni: Arc<Cni>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        sweep_once(&cni).await;
    }
}

async fn sweep_once(cni: &Cni) {
    // Under the lock: a port listed before an ADD finished would look like a deleted one.
    let mut records = cni.records.lock().await;
    let ports = match list_pod_ports(cni).await {
        Ok(ports) => Some(ports),
        Err(error) => {
            warn!(%error, "sweep: listing the node's pod ports");
            None
        }
    };
    for record in records.clone() {
        let reason = match record.phase {
            Phase::Deleting => Some("its deletion was not finished"),
            Phase::Adding => None,
            Phase::Ready if !record.netns_alive() => Some("its network namespace is gone"),
            Phase::Ready
                if ports
                    .as_ref()
                    .is_some_and(|ports| !ports.iter().any(|p| is_records_port(&record, p))) =>
            {
                Some("its NetworkPort was deleted")
            }
            Phase::Ready if pod_gone(cni, &record).await => Some("its pod is gone or terminated"),
            Phase::Ready => None,
        };
        if let Some(reason) = reason {
            info!(container = %record.container_id, ifname = %record.ifname, reason, "sweep: releasing an attachment");
            release(cni, &mut records, record, true).await;
        }
    }
    if let Some(ports) = ports {
        delete_orphans(cni, &records, &ports).await;
    }
}

/// Whether the record's pod is gone: deleted, re-created under another UID, or terminated
/// (`Succeeded` or `Failed`: its containers never run again).
async fn pod_gone(cni: &Cni, record: &Record) -> bool {
    let api = Api::<Pod>::namespaced(cni.ctx.kube_client().clone(), &record.pod_namespace);
    match api.get_opt(&record.pod_name).await {
        Ok(None) => true,
        Ok(Some(pod)) => {
            let terminated = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
            terminated || pod.uid().as_deref() != Some(record.pod_uid.as_str())
        }
        Err(error) => {
            debug!(%error, pod = %record.pod_name, "sweep: reading the pod");
            false
        }
    }
}
