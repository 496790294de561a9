//! One network's `DevicePlugin` service, as the kubelet calls it on the plugin's socket.

use std::pin::Pin;

use futures::Stream;
use switchyard_kubelet_api::deviceplugin::device_plugin_server::DevicePlugin;
use switchyard_kubelet_api::deviceplugin::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, DeviceSpec, Empty, HEALTHY,
    ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, UNHEALTHY,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::slots::{BlockTable, Slot, tap_device};

/// What a network's plugin advertises and hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Advertised {
    /// The devices (slots).
    pub slots: Vec<Slot>,
    /// Whether a pod's interface is a macvtap whose `/dev/tapN` the container needs (direct
    /// networks), or a veth that needs none (bridge networks).
    pub tap: bool,
}

/// The `DevicePlugin` service of one network.
#[derive(Debug)]
pub(super) struct NetworkPlugin {
    pub network: String,
    /// The network's block, fixed for the plugin's life.
    pub table: BlockTable,
    pub advertised: watch::Receiver<Advertised>,
}

fn devices(advertised: &Advertised) -> ListAndWatchResponse {
    ListAndWatchResponse {
        devices: advertised
            .slots
            .iter()
            .map(|slot| Device {
                id: slot.id.clone(),
                health: if slot.healthy { HEALTHY } else { UNHEALTHY }.to_string(),
                topology: None,
            })
            .collect(),
    }
}

/// The container's part of `Allocate`: `/dev/tap<ID>` for each device of a direct network,
/// nothing for a bridge network; every ID must be one of the network's slots.
pub(super) fn allocate_container(
    table: &BlockTable,
    network: &str,
    tap: bool,
    ids: &[String],
) -> Result<ContainerAllocateResponse, super::slots::SlotError> {
    let mut response = ContainerAllocateResponse::default();
    for id in ids {
        let ifindex = table.ifindex_for(network, id)?;
        if tap {
            // Nothing exists yet: the macvtap is made by the CNI ADD that follows, and the
            // runtime looks the path up only when it creates the container, after that ADD.
            response.devices.push(DeviceSpec {
                container_path: tap_device(ifindex),
                host_path: tap_device(ifindex),
                permissions: "rw".into(),
            });
        }
    }
    Ok(response)
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for NetworkPlugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: false,
        }))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        info!(network = %self.network, "the kubelet watches the network's devices");
        let mut receiver = self.advertised.clone();
        receiver.mark_changed();
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            // The sender goes when the plugin stops: the stream ends, and the kubelet marks
            // the devices unhealthy.
            receiver.changed().await.ok()?;
            let response = devices(&receiver.borrow_and_update());
            Some((Ok(response), receiver))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        // Not advertised (any slot is as good as another); answered anyway: the lowest IDs.
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|request| {
                let mut ids = request.must_include_device_i_ds;
                for id in request.available_device_i_ds {
                    if ids.len() >= request.allocation_size.max(0) as usize {
                        break;
                    }
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                ContainerPreferredAllocationResponse { device_i_ds: ids }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let tap = self.advertised.borrow().tap;
        let mut container_responses = Vec::new();
        for container in request.into_inner().container_requests {
            let ids = container.devices_i_ds;
            match allocate_container(&self.table, &self.network, tap, &ids) {
                Ok(response) => {
                    info!(network = %self.network, devices = ?ids, "allocated");
                    container_responses.push(response);
                }
                Err(error) => {
                    warn!(network = %self.network, %error, "refusing an allocation");
                    return Err(Status::invalid_argument(error.to_string()));
                }
            }
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_plugin::slots::{SLOT_BASE, SLOTS_PER_BLOCK, SlotError, slots};

    fn table() -> BlockTable {
        let mut table = BlockTable::default();
        table.assign("a").unwrap();
        table.assign("b").unwrap();
        table
    }

    #[test]
    fn a_direct_networks_allocation_is_the_tap_device_of_each_slot() {
        let ids: Vec<String> = slots(1, 2, true).into_iter().map(|s| s.id).collect();
        let response = allocate_container(&table(), "b", true, &ids).unwrap();
        let first = SLOT_BASE + SLOTS_PER_BLOCK;
        assert_eq!(
            response.devices,
            vec![
                DeviceSpec {
                    container_path: format!("/dev/tap{first}"),
                    host_path: format!("/dev/tap{first}"),
                    permissions: "rw".into(),
                },
                DeviceSpec {
                    container_path: format!("/dev/tap{}", first + 1),
                    host_path: format!("/dev/tap{}", first + 1),
                    permissions: "rw".into(),
                },
            ]
        );
        assert!(response.envs.is_empty() && response.mounts.is_empty());
    }

    #[test]
    fn a_bridge_network_needs_no_device_and_foreign_ids_are_refused() {
        let ids: Vec<String> = slots(0, 1, true).into_iter().map(|s| s.id).collect();
        let response = allocate_container(&table(), "a", false, &ids).unwrap();
        assert!(response.devices.is_empty());
        assert!(matches!(
            allocate_container(&table(), "b", true, &ids),
            Err(SlotError::OtherNetwork { .. })
        ));
    }

    #[test]
    fn the_kubelet_sees_health_as_its_constants() {
        let listed = devices(&Advertised {
            slots: slots(0, 2, false),
            tap: true,
        });
        assert_eq!(listed.devices.len(), 2);
        assert!(listed.devices.iter().all(|d| d.health == "Unhealthy"));
        let listed = devices(&Advertised {
            slots: slots(0, 1, true),
            tap: true,
        });
        assert_eq!(listed.devices[0].health, "Healthy");
        assert_eq!(listed.devices[0].id, SLOT_BASE.to_string());
    }
}
