//! ADD, DEL, CHECK and STATUS (see the module docs of [`super`] for the protocol).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::Value;
use switchyard_cni::error::{
    API_FAILED, CHECK_FAILED, IO_FAILURE, LINK_FAILED, PLUGIN_NOT_AVAILABLE, PORT_REFUSED,
    UNKNOWN_CONTAINER,
};
use switchyard_cni::result::{Interface, add_result, prev_mac};
use switchyard_cni::{Attachment, Call, CniError, Command};
use switchyard_crds::{
    ActualType, LABEL_NETWORK, LABEL_NODE, MacvtapMode, NetworkPort, NetworkPortSpec,
    NetworkPortStatus, PortActual, PortOwner,
};
use switchyard_libvirt::merge::{EffectivePort, PortRequest, effective_port};
use tracing::{info, warn};

use super::naming::{derived_mac, host_link_name, ifindex_candidate, port_name, requested_mac};
use super::records::{NetnsId, Phase, Record};
use super::{
    ANNOTATION_CONTAINER_ID, ANNOTATION_IFNAME, ANNOTATION_NETNS, Cni, LABEL_POD_UID, sweep,
};
use crate::device_plugin::slots::{is_slot, resource_name, unused_slot};
use crate::netlink::{PodLinkError, PodMacvtapRequest, PodNamespace, PodVethRequest};
use switchyard_libvirt::values::{format_mac, parse_mac};
use switchyard_placement::PortKey;
use switchyard_placement::ledger::{AllocationError, Holding, PoolMember, Sharing};
use switchyard_placement::realisation::{RealisationKind, realise};

/// The kind of KubeVirt's VirtualMachineInstance, the owner of a VM's launcher pod.
pub(super) const VMI_KIND: &str = "VirtualMachineInstance";

/// How many ifindexes ADD tries before giving up (each is checked free first, so more than
/// one is needed only when another namespace took it in between).
const IFINDEX_ATTEMPTS: u32 = 32;

/// Serves one call.
pub(super) async fn dispatch(cni: &Cni, call: &Call) -> Result<Option<Value>, CniError> {
    let started = Instant::now();
    let outcome = match call.command {
        Command::Add => add(cni, call).await.map(Some),
        Command::Del => del(cni, call).await.map(|()| None),
        Command::Check => check(cni, call).await.map(|()| None),
        Command::Status => status(cni, call).map(|()| None),
        Command::Gc => sweep::gc(cni, call).await.map(|()| None),
        Command::Version => Ok(Some(switchyard_cni::version::version_result())),
    };
    let command = call.command.as_str();
    let container = call.container_id.as_deref().unwrap_or("");
    let ifname = call.ifname.as_deref().unwrap_or("");
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &outcome {
        Ok(_) => info!(command, container, ifname, took_ms, "CNI call served"),
        Err(error) => warn!(command, container, ifname, took_ms, %error, "CNI call failed"),
    }
    outcome
}

/// What the network says about a new port, before anything is created.
struct Placement {
    network: String,
    kind: PlacementKind,
    effective: EffectivePort,
}

/// What the pod gets.
enum PlacementKind {
    /// A macvtap on a pool device the ledger picks.
    Macvtap {
        mode: MacvtapMode,
        pool: Vec<String>,
        sharing: Sharing,
    },
    /// The end of a veth pair on the bridge.
    Veth { bridge: String },
}

fn refused(details: impl Into<String>) -> CniError {
    CniError::new(PORT_REFUSED, "switchyard refused the port", details)
}

fn io_failure(what: &str, error: impl std::fmt::Display) -> CniError {
    CniError::new(IO_FAILURE, "I/O failure", format!("{what}: {error}"))
}

/// The network's rules for the port, from the agent's caches (no API call).
fn place(cni: &Cni, call: &Call) -> Result<Placement, CniError> {
    let name = &call.config.network;
    let network = cni.ctx.cached_network(name).ok_or_else(|| {
        CniError::config(format!(
            "field 'network': there is no switchyard Network '{name}'; create it, or name an \
             existing one in the NetworkAttachmentDefinition's config"
        ))
    })?;
    let node = cni.ctx.node_name();
    let realisation = cni.ctx.cached_realisation(name).ok_or_else(|| {
        refused(format!(
            "[NetworkNotOnNode] network '{name}' does not select node '{node}'; schedule the \
             pod by the node label net.switchyard.dev/{name}"
        ))
    })?;
    let request = PortRequest {
        portgroup: call.config.portgroup.as_deref(),
        ..Default::default()
    };
    let effective = effective_port(&network.spec, &request)
        .map_err(|error| refused(format!("[{}] {error}", error.reason())))?;
    match realisation.kind {
        RealisationKind::Macvtap {
            mode,
            pool,
            max_connections_per_device,
            ..
        } => Ok(Placement {
            network: name.clone(),
            kind: PlacementKind::Macvtap {
                mode,
                pool,
                sharing: Sharing::for_port(&effective, max_connections_per_device),
            },
            effective,
        }),
        RealisationKind::Bridge { bridge } => Ok(Placement {
            network: name.clone(),
            kind: PlacementKind::Veth { bridge },
            effective,
        }),
        RealisationKind::Unsupported { reason, message } => {
            Err(refused(format!("[{reason}] {message}")))
        }
    }
}

fn required_arg<'a>(call: &'a Call, key: &str) -> Result<&'a str, CniError> {
    call.arg(key).filter(|v| !v.is_empty()).ok_or_else(|| {
        CniError::environment(format!(
            "CNI_ARGS {key} is not set; switchyard-cni attaches Kubernetes pods, and the \
             runtime's CRI plugin (or Multus) sets it"
        ))
    })
}

async fn add(cni: &Cni, call: &Call) -> Result<Value, CniError> {
    let attachment = call
        .attachment()
        .ok_or_else(|| CniError::environment("ADD needs CNI_CONTAINERID and CNI_IFNAME"))?;
    let netns = call
        .netns
        .clone()
        .ok_or_else(|| CniError::environment("CNI_NETNS is not set"))?;
    let pod_namespace = required_arg(call, "K8S_POD_NAMESPACE")?;
    let pod_name = required_arg(call, "K8S_POD_NAME")?;
    let requested_mac = requested_mac(call)?;
    let placement = place(cni, call)?;

    let mut records = cni.records.lock().await;
    if records.iter().any(|r| r.attachment() == attachment) {
        return Err(CniError::new(
            LINK_FAILED,
            "already attached",
            format!(
                "container {} already has {} attached by switchyard; DEL it before adding it again",
                attachment.container_id, attachment.ifname
            ),
        ));
    }
    let pod = get_pod(cni, pod_namespace, pod_name).await?;
    let pod_uid = pod.uid().unwrap_or_default();
    if let Some(given) = call.arg("K8S_POD_UID").filter(|u| !u.is_empty())
        && given != pod_uid
    {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            "unknown container",
            format!(
                "pod {pod_namespace}/{pod_name} has UID {pod_uid}, the runtime says {given}: the \
                 pod was deleted and created again"
            ),
        ));
    }
    let owner = port_owner(&pod);
    let mac = match requested_mac {
        Some(mac) => mac,
        None => derived_mac(owner.uid.as_deref().unwrap_or(&pod_uid), &attachment.ifname),
    };

    // An earlier sandbox of the same pod whose DEL never reached the agent: its port is
    // adopted below, its link (if its namespace lives on) goes.
    let stale: Vec<Record> = records
        .iter()
        .filter(|r| r.pod_uid == pod_uid && r.ifname == attachment.ifname)
        .cloned()
        .collect();
    for record in stale {
        info!(container = %record.container_id, ifname = %record.ifname, "replacing the pod's attachment from an earlier sandbox");
        sweep::release(cni, &mut records, record, false).await;
    }

    let slot = device_slot(
        cni,
        call,
        &placement.network,
        &pod_uid,
        &attachment,
        &records,
    )
    .await?;
    if let Some(ifindex) = slot {
        // The kubelet gave this pod the slot, so an attachment still holding it is of a pod the
        // kubelet no longer runs (its DEL has not come yet): its link would own /dev/tapN.
        let holders: Vec<Record> = records
            .iter()
            .filter(|r| r.ifindex == ifindex)
            .cloned()
            .collect();
        for holder in holders {
            info!(container = %holder.container_id, ifname = %holder.ifname, ifindex, "releasing an earlier holder of the pod's device plugin slot");
            sweep::release(cni, &mut records, holder, true).await;
        }
    }

    let netns_file = File::open(&netns).map_err(|error| {
        CniError::environment(format!("CNI_NETNS '{netns}' cannot be opened: {error}"))
    })?;
    let pod_netns = PodNamespace::open(Path::new(&netns))
        .await
        .map_err(|error| io_failure("entering the pod's network namespace", error))?;
    if pod_netns
        .link(&attachment.ifname)
        .await
        .map_err(|error| io_failure("reading the pod's links", error))?
        .is_some()
    {
        return Err(name_exists(&attachment.ifname, &netns));
    }

    let mut record = Record {
        phase: Phase::Adding,
        container_id: attachment.container_id.clone(),
        ifname: attachment.ifname.clone(),
        netns: netns.clone(),
        netns_id: NetnsId::of(Path::new(&netns)),
        conf_name: call.config.name.clone(),
        network: placement.network.clone(),
        pod_namespace: pod_namespace.to_string(),
        pod_name: pod_name.to_string(),
        pod_uid: pod_uid.clone(),
        port_name: port_name(pod_name, &pod_uid, &attachment.ifname),
        port_uid: None,
        device: None,
        exclusive: matches!(
            placement.kind,
            PlacementKind::Macvtap {
                sharing: Sharing::Exclusive,
                ..
            }
        ),
        mode: match &placement.kind {
            PlacementKind::Macvtap { mode, .. } => Some(*mode),
            PlacementKind::Veth { .. } => None,
        },
        bridge: match &placement.kind {
            PlacementKind::Veth { bridge } => Some(bridge.clone()),
            PlacementKind::Macvtap { .. } => None,
        },
        host_link: matches!(placement.kind, PlacementKind::Veth { .. })
            .then(|| host_link_name(&attachment.container_id, &attachment.ifname)),
        host_ifindex: None,
        mac: mac.clone(),
        ifindex: slot.unwrap_or_else(|| free_ifindex(&records, &attachment, 0)),
        tap_device: None,
        mtu: None,
        vmi_uid: (owner.kind.as_deref() == Some(VMI_KIND))
            .then(|| owner.uid.clone())
            .flatten(),
        attached_at: Some(now()),
        down_for_migration: None,
    };
    sweep::put(cni, &mut records, &record)?;
    let made = make(
        cni,
        &mut records,
        &mut record,
        &pod,
        owner,
        &placement,
        call,
        &netns_file,
        &pod_netns,
    )
    .await;
    if let Err(error) = made {
        drop(pod_netns);
        sweep::release(cni, &mut records, record, true).await;
        return Err(error);
    }
    record.phase = Phase::Ready;
    sweep::put(cni, &mut records, &record)?;
    drop(records);
    spawn_status(cni, &record, &placement.effective);
    let mut interfaces = Vec::new();
    if let Some(host) = &record.host_link {
        let mut host_mac = parse_mac(&record.mac).unwrap_or_default();
        host_mac[0] = 0xfe;
        interfaces.push(Interface {
            name: host.clone(),
            mac: format_mac(&host_mac),
            mtu: record.mtu,
            sandbox: String::new(),
        });
    }
    interfaces.push(Interface {
        name: record.ifname.clone(),
        mac: record.mac.clone(),
        mtu: record.mtu,
        sandbox: netns,
    });
    Ok(add_result(
        &call.config.cni_version,
        call.config.prev_result.as_ref(),
        &interfaces,
    ))
}

fn name_exists(ifname: &str, netns: &str) -> CniError {
    CniError::new(
        LINK_FAILED,
        "interface name taken",
        format!(
            "an interface named '{ifname}' already exists in {netns}; CNI_IFNAME must name a \
             free interface (is another network attached as '{ifname}'?)"
        ),
    )
}

/// The steps of ADD that leave something behind; on error the caller undoes them.
#[allow(clippy::too_many_arguments)]
async fn make(
    cni: &Cni,
    records: &mut Vec<Record>,
    record: &mut Record,
    pod: &Pod,
    owner: PortOwner,
    placement: &Placement,
    call: &Call,
    netns_file: &File,
    pod_netns: &PodNamespace,
) -> Result<(), CniError> {
    let port_uid = create_or_adopt_port(cni, record, pod, owner, call).await?;
    record.port_uid = Some(port_uid.clone());
    sweep::put(cni, records, record)?;

    let links = cni.ctx.link_manager();
    let key = PortKey::new(record.pod_namespace.clone(), record.port_name.clone());
    let mac =
        parse_mac(&record.mac).ok_or_else(|| refused(format!("invalid MAC {}", record.mac)))?;
    let device = match &placement.kind {
        PlacementKind::Macvtap { pool, sharing, .. } => {
            let pool: Vec<&str> = pool.iter().map(String::as_str).collect();
            let members: Vec<PoolMember> = links
                .device_states(&pool)
                .await
                .map_err(|error| io_failure("reading the pool devices", error))?
                .iter()
                .map(|d| PoolMember {
                    name: d.name.clone(),
                    present: d.present(),
                })
                .collect();
            cni.ctx
                .with_ledger(|ledger| {
                    ledger.allocate(&port_uid, &key, &placement.network, &members, *sharing)
                })
                .map_err(|error: AllocationError| {
                    refused(format!("[{}] {error}", error.reason()))
                })?
        }
        PlacementKind::Veth { bridge } => {
            cni.ctx
                .with_ledger(|ledger| ledger.record(&port_uid, bridge, holding(record)));
            bridge.clone()
        }
    };
    record.device = Some(device.clone());
    sweep::put(cni, records, record)?;
    if let Some(refusal) = crate::vlan::refusal(&placement.effective, &device, || {
        links.is_virtual_function(&device)
    }) {
        return Err(refused(format!("[{}] {}", refusal.reason, refusal.message)));
    }

    let mut attempt = 0;
    loop {
        let created = {
            let _one_at_a_time = cni.ctx.one_link_at_a_time().await;
            match &placement.kind {
                PlacementKind::Macvtap { mode, .. } => links
                    .create_pod_macvtap(&PodMacvtapRequest {
                        netns: netns_file,
                        ifname: &record.ifname,
                        ifindex: record.ifindex,
                        lower: &device,
                        mode: *mode,
                        mac,
                        mtu: call.config.mtu,
                    })
                    .await
                    .map(|()| None),
                PlacementKind::Veth { bridge } => links
                    .create_pod_veth(&PodVethRequest {
                        netns: netns_file,
                        ifname: &record.ifname,
                        ifindex: record.ifindex,
                        host_name: record.host_link.as_deref().unwrap_or_default(),
                        bridge,
                        mac,
                        mtu: call.config.mtu,
                    })
                    .await
                    .map(Some),
            }
        };
        match created {
            Ok(host_ifindex) => {
                record.host_ifindex = host_ifindex;
                break;
            }
            Err(PodLinkError::IndexTaken(ifindex)) if is_slot(ifindex) => {
                return Err(CniError::new(
                    LINK_FAILED,
                    "the device plugin slot's ifindex is taken",
                    format!(
                        "ifindex {ifindex} (the pod's slot, /dev/tap{ifindex}) is taken in {}",
                        record.netns
                    ),
                ));
            }
            Err(PodLinkError::IndexTaken(_)) if attempt < IFINDEX_ATTEMPTS => {
                attempt += 1;
                record.ifindex = free_ifindex(records, &record.attachment(), attempt);
                sweep::put(cni, records, record)?;
            }
            Err(PodLinkError::NameExists(name)) => return Err(name_exists(&name, &record.netns)),
            Err(PodLinkError::Netlink(error)) => {
                let code = match error.reason() {
                    "DeviceMissing" | "DeviceBusy" | "BridgeAbsent" | "BridgeFull" => PORT_REFUSED,
                    _ => LINK_FAILED,
                };
                return Err(CniError::new(
                    code,
                    "creating the pod's link failed",
                    format!("[{}] {error}", error.reason()),
                ));
            }
            Err(error) => {
                return Err(CniError::new(
                    LINK_FAILED,
                    "creating the pod's link failed",
                    error.to_string(),
                ));
            }
        }
    }
    pod_netns
        .bring_up(record.ifindex, mac)
        .await
        .map_err(|error| {
            CniError::new(
                LINK_FAILED,
                "setting the pod's link up failed",
                error.to_string(),
            )
        })?;
    let link = pod_netns
        .link(&record.ifname)
        .await
        .map_err(|error| io_failure("reading the new link", error))?
        .filter(|link| link.ifindex == record.ifindex)
        .ok_or_else(|| {
            CniError::new(
                LINK_FAILED,
                "the pod's link vanished",
                format!("{} was gone right after it was created", record.ifname),
            )
        })?;
    record.mtu = link.mtu;
    if record.mode.is_some() {
        record.tap_device = Some(
            pod_netns
                .tap_device(&record.ifname, record.ifindex)
                .map_err(|error| {
                    io_failure("reading the tap device from the pod's sysfs", error)
                })?,
        );
    }
    Ok(())
}

/// The ifindex of the pod's device plugin slot for this interface, `None` without a device
/// plugin or when the pod was given no slot of the network (it then gets an ifindex of the
/// CNI's own range, and no `/dev/tapN` in its containers).
///
/// The slot is `deviceID` when the runtime passes one (Multus, from the NAD's resourceName);
/// else the kubelet's pod resources say which slots of `switchyard.dev/<network>` the pod got,
/// and the interface takes the first its other interfaces did not.
async fn device_slot(
    cni: &Cni,
    call: &Call,
    network: &str,
    pod_uid: &str,
    attachment: &Attachment,
    records: &[Record],
) -> Result<Option<u32>, CniError> {
    let Some(plugin) = cni.ctx.device_plugin_access() else {
        return Ok(None);
    };
    let id = match &call.config.device_id {
        Some(id) => id.clone(),
        None => {
            let Some(resource) = resource_name(network) else {
                return Ok(None);
            };
            let (namespace, name) = (
                required_arg(call, "K8S_POD_NAMESPACE")?,
                required_arg(call, "K8S_POD_NAME")?,
            );
            let allocated =
                crate::device_plugin::allocated(&plugin.pod_resources, namespace, name, &resource)
                    .await
                    .map_err(|error| CniError::try_again(error.to_string()))?;
            let taken: Vec<u32> = records
                .iter()
                .filter(|r| r.pod_uid == pod_uid && r.ifname != attachment.ifname)
                .map(|r| r.ifindex)
                .collect();
            match unused_slot(&allocated, &taken) {
                Some(id) => id.to_string(),
                None if allocated.is_empty() => {
                    info!(pod = %format!("{namespace}/{name}"), %resource, "the pod has no device plugin slot of the network; its interface gets no tap device in the container");
                    return Ok(None);
                }
                None => {
                    return Err(refused(format!(
                        "pod {namespace}/{name} got {} of {resource} ({}), and its other \
                         interfaces on the network hold them all; request one per interface",
                        allocated.len(),
                        allocated.join(", ")
                    )));
                }
            }
        }
    };
    plugin
        .slots
        .ifindex_for(network, &id)
        .map(Some)
        .map_err(|error| CniError::config(format!("field 'deviceID': {error}")))
}

/// An ifindex no record holds and no `/dev/tap<N>` names, from the attempt-th candidate on.
fn free_ifindex(records: &[Record], attachment: &Attachment, from_attempt: u32) -> u32 {
    let mut attempt = from_attempt;
    loop {
        let candidate = ifindex_candidate(&attachment.container_id, &attachment.ifname, attempt);
        let held = records.iter().any(|r| r.ifindex == candidate);
        if !held && !Path::new(&format!("/dev/tap{candidate}")).exists() {
            return candidate;
        }
        attempt += 1;
    }
}

fn port_owner(pod: &Pod) -> PortOwner {
    let vmi = pod.owner_references().iter().find(|o| o.kind == VMI_KIND);
    match vmi {
        Some(vmi) => PortOwner {
            kind: Some(vmi.kind.clone()),
            name: vmi.name.clone(),
            uid: Some(vmi.uid.clone()),
        },
        None => PortOwner {
            kind: Some("Pod".into()),
            name: pod.name_any(),
            uid: pod.uid(),
        },
    }
}

fn api_error(what: &str, error: &kube::Error) -> CniError {
    match error {
        kube::Error::Api(status)
            if status.code == 403 || status.code == 422 || status.code == 400 =>
        {
            refused(format!("{what}: {}", status.message))
        }
        kube::Error::Api(status) => CniError::new(
            API_FAILED,
            "the Kubernetes API failed",
            format!("{what}: {}", status.message),
        ),
        other => CniError::try_again(format!("{what}: {other}")),
    }
}

async fn get_pod(cni: &Cni, namespace: &str, name: &str) -> Result<Pod, CniError> {
    let api = Api::<Pod>::namespaced(cni.ctx.kube_client().clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(pod)) => Ok(pod),
        Ok(None) => Err(CniError::new(
            UNKNOWN_CONTAINER,
            "unknown container",
            format!("pod {namespace}/{name} (from CNI_ARGS) does not exist"),
        )),
        Err(error) => Err(api_error(
            &format!("reading pod {namespace}/{name}"),
            &error,
        )),
    }
}

fn cni_annotations(record: &Record) -> BTreeMap<String, String> {
    [
        (ANNOTATION_CONTAINER_ID, &record.container_id),
        (ANNOTATION_IFNAME, &record.ifname),
        (ANNOTATION_NETNS, &record.netns),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect()
}

/// Creates the pod's port, or adopts the one an earlier sandbox of the same pod left.
async fn create_or_adopt_port(
    cni: &Cni,
    record: &Record,
    pod: &Pod,
    owner: PortOwner,
    call: &Call,
) -> Result<String, CniError> {
    let api = Api::<NetworkPort>::namespaced(cni.ctx.kube_client().clone(), &record.pod_namespace);
    let mut port = NetworkPort::new(
        &record.port_name,
        NetworkPortSpec {
            network: record.network.clone(),
            portgroup: call.config.portgroup.clone(),
            node: cni.ctx.node_name().to_string(),
            mac: record.mac.clone(),
            owner: Some(owner),
            ..Default::default()
        },
    );
    port.metadata.namespace = Some(record.pod_namespace.clone());
    port.metadata.labels = Some(
        [
            (LABEL_NODE, cni.ctx.node_name()),
            (LABEL_NETWORK, record.network.as_str()),
            (LABEL_POD_UID, record.pod_uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    port.metadata.annotations = Some(cni_annotations(record));
    port.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.name_any(),
        uid: record.pod_uid.clone(),
        ..Default::default()
    }]);
    let what = format!(
        "creating NetworkPort {}/{}",
        record.pod_namespace, record.port_name
    );
    match api.create(&PostParams::default(), &port).await {
        Ok(created) => created
            .uid()
            .ok_or_else(|| refused(format!("{what}: the API returned no UID"))),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api
                .get(&record.port_name)
                .await
                .map_err(|error| api_error(&what, &error))?;
            if existing.labels().get(LABEL_POD_UID) != Some(&record.pod_uid) {
                return Err(refused(format!(
                    "{what}: a NetworkPort of that name exists and is not pod {}/{}'s",
                    record.pod_namespace, record.pod_name
                )));
            }
            // A port's spec is fixed once created (the webhook refuses changes): a new sandbox
            // asking for other settings waits until the old port is gone.
            let same_spec = existing.spec.mac == record.mac
                && existing.spec.network == record.network
                && existing.spec.portgroup == call.config.portgroup;
            if !same_spec {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: existing.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                api.delete(&record.port_name, &params)
                    .await
                    .map_err(|error| {
                        api_error(&format!("replacing {}", record.port_name), &error)
                    })?;
                return Err(CniError::try_again(format!(
                    "{what}: an earlier sandbox's port of that name has other settings \
                     (network, portgroup or MAC); it is being deleted, try again"
                )));
            }
            let patch = serde_json::json!({
                "metadata": {"annotations": cni_annotations(record)},
            });
            let adopted = api
                .patch(
                    &record.port_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|error| api_error(&format!("adopting {}", record.port_name), &error))?;
            info!(port = %record.port_name, "adopted the pod's port from an earlier sandbox");
            adopted
                .uid()
                .ok_or_else(|| refused(format!("{what}: the API returned no UID")))
        }
        Err(error) => Err(api_error(&what, &error)),
    }
}

/// Deletes the record's port (only if it is the one the record made: same UID, or when the UID
/// was never learnt, same container); `Err` when the API could not be asked.
pub(super) async fn delete_port(cni: &Cni, record: &Record) -> Result<(), kube::Error> {
    let api = Api::<NetworkPort>::namespaced(cni.ctx.kube_client().clone(), &record.pod_namespace);
    let uid = match &record.port_uid {
        Some(uid) => uid.clone(),
        None => {
            let Some(port) = api.get_opt(&record.port_name).await? else {
                return Ok(());
            };
            let ours =
                port.annotations().get(ANNOTATION_CONTAINER_ID) == Some(&record.container_id);
            match (ours, port.uid()) {
                (true, Some(uid)) => uid,
                _ => return Ok(()),
            }
        }
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&record.port_name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced by a newer port of the same name (the UID differs).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Writes the port's Ready status in the background: ADD does not wait for it.
fn spawn_status(cni: &Cni, record: &Record, effective: &EffectivePort) {
    let settings = PortActual {
        portgroup: effective.portgroup.clone(),
        virtualport: effective.virtualport.clone(),
        // Tags are refused before the link is made (see `crate::vlan`): none was applied.
        vlan: None,
        bandwidth: effective.bandwidth.clone(),
        trust_guest_rx_filters: effective.trust_guest_rx_filters,
        ..Default::default()
    };
    let actual = match &record.host_link {
        // As for any bridge port: `linkName` the bridge end, `peerLinkName` the guest's.
        Some(host) => PortActual {
            kind: ActualType::Bridge,
            device: record.bridge.clone(),
            bridge: record.bridge.clone(),
            link_name: host.clone(),
            peer_link_name: Some(record.ifname.clone()),
            ifindex: record.host_ifindex,
            ..settings
        },
        None => PortActual {
            kind: ActualType::Direct,
            device: record.device.clone(),
            mode: record.mode,
            link_name: record.ifname.clone(),
            ifindex: Some(record.ifindex),
            tap_device: record.tap_device.clone(),
            ..settings
        },
    };
    let status = crate::agent::port_status::ready(None, None, actual, &now());
    let api = Api::<NetworkPort>::namespaced(cni.ctx.kube_client().clone(), &record.pod_namespace);
    let manager = cni.ctx.field_manager().to_string();
    let name = record.port_name.clone();
    tokio::spawn(async move {
        // In the background and briefly: the ADD has already answered, and the link is
        // what the pod needs.
        for attempt in 1..=5u32 {
            match apply_port_status(&api, &manager, &name, &status).await {
                Ok(()) => return,
                Err(kube::Error::Api(s)) if s.code == 404 => return,
                Err(error) => {
                    warn!(port = %name, %error, attempt, "writing the pod port's status");
                    tokio::time::sleep(switchyard_retry::backoff(attempt) / 2).await;
                }
            }
        }
    });
}

/// Writes a pod port's whole status by server-side apply as `manager`: the CNI path is the
/// status's only writer for pod ports, so it owns every field it sets.
pub(super) async fn apply_port_status(
    api: &Api<NetworkPort>,
    manager: &str,
    name: &str,
    status: &NetworkPortStatus,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": NetworkPort::api_version(&()),
        "kind": NetworkPort::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

pub(super) fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

async fn del(cni: &Cni, call: &Call) -> Result<(), CniError> {
    let Some(attachment) = call.attachment() else {
        return Ok(());
    };
    let mut records = cni.records.lock().await;
    let Some(record) = records
        .iter()
        .find(|r| r.attachment() == attachment)
        .cloned()
    else {
        return Ok(());
    };
    sweep::release(cni, &mut records, record, true).await;
    Ok(())
}

async fn check(cni: &Cni, call: &Call) -> Result<(), CniError> {
    let attachment = call
        .attachment()
        .ok_or_else(|| CniError::environment("CHECK needs CNI_CONTAINERID and CNI_IFNAME"))?;
    let record = cni
        .records
        .lock()
        .await
        .iter()
        .find(|r| r.attachment() == attachment && r.phase == Phase::Ready)
        .cloned();
    let failed = |details: String| CniError::new(CHECK_FAILED, "check failed", details);
    let Some(record) = record else {
        return Err(failed(format!(
            "switchyard has no attachment of {} for container {}",
            attachment.ifname, attachment.container_id
        )));
    };
    if !record.netns_alive() {
        return Err(failed(format!(
            "network namespace {} is gone",
            record.netns
        )));
    }
    let pod_netns = PodNamespace::open(Path::new(&record.netns))
        .await
        .map_err(|error| io_failure("entering the pod's network namespace", error))?;
    let link = pod_netns
        .link(&record.ifname)
        .await
        .map_err(|error| io_failure("reading the pod's links", error))?;
    let Some(link) = link.filter(|l| l.ifindex == record.ifindex) else {
        return Err(failed(format!(
            "{} is missing from {} (or is another link now)",
            record.ifname, record.netns
        )));
    };
    if link.mac.as_deref() != Some(record.mac.as_str()) {
        return Err(failed(format!(
            "{} has MAC {}, ADD gave it {}",
            record.ifname,
            link.mac.as_deref().unwrap_or("none"),
            record.mac
        )));
    }
    if let Some(prev) = &call.config.prev_result
        && let Some(mac) = prev_mac(prev, &record.ifname, &record.netns)
        && !mac.eq_ignore_ascii_case(&record.mac)
    {
        return Err(failed(format!(
            "prevResult gives {} MAC {mac}, switchyard gave it {}",
            record.ifname, record.mac
        )));
    }
    if !link.up {
        return Err(failed(format!("{} is down", record.ifname)));
    }
    if let Some(device) = &record.device {
        let states = cni
            .ctx
            .link_manager()
            .device_states(&[device.as_str()])
            .await
            .map_err(|error| io_failure("reading the pool device", error))?;
        if !states.iter().all(|d| d.present()) {
            return Err(failed(format!(
                "pool device {device} is gone from the node"
            )));
        }
    }
    if cni.ctx.cached_network(&record.network).is_none() {
        return Err(failed(format!(
            "network '{}' no longer exists",
            record.network
        )));
    }
    Ok(())
}

/// STATUS: the agent answers, so it is ready; the network must also exist and select the node.
fn status(cni: &Cni, call: &Call) -> Result<(), CniError> {
    let name = &call.config.network;
    let not_available =
        |details: String| CniError::new(PLUGIN_NOT_AVAILABLE, "plugin not available", details);
    let network = cni
        .ctx
        .cached_network(name)
        .ok_or_else(|| not_available(format!("there is no switchyard Network '{name}'")))?;
    if realise(&network, &cni.ctx.cached_node_labels()).is_none() {
        return Err(not_available(format!(
            "network '{name}' does not select node '{}'",
            cni.ctx.node_name()
        )));
    }
    Ok(())
}

/// The pod's holding, as the ledger keeps it.
pub(super) fn holding(record: &Record) -> Holding {
    Holding {
        port: PortKey::new(record.pod_namespace.clone(), record.port_name.clone()),
        network: record.network.clone(),
        exclusive: record.exclusive,
    }
}
