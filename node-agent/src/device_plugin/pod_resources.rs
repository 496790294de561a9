//! Which devices the kubelet allocated to a pod, from its pod resources API (v1, served from
//! kubelet 1.20 on). Without Multus nothing passes the CNI plugin a `deviceID`: containerd's
//! CRI plugin calls it with the pod's name and namespace only, so ADD asks the kubelet.

use std::path::Path;
use std::time::Duration;

use switchyard_kubelet_api::podresources::pod_resources_lister_client::PodResourcesListerClient;
use switchyard_kubelet_api::podresources::{ListPodResourcesRequest, ListPodResourcesResponse};
use switchyard_kubelet_api::unix_channel;
use thiserror::Error;

/// How long the kubelet gets to answer (it answers from memory).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the kubelet could not say.
#[derive(Debug, Error)]
pub enum PodResourcesError {
    /// No connection to the socket.
    #[error("connecting to the kubelet's pod resources socket {socket}: {source}")]
    Connect {
        /// The socket.
        socket: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The call failed.
    #[error("the kubelet's pod resources List failed: {0}")]
    List(#[from] tonic::Status),
    /// No answer in time.
    #[error("the kubelet's pod resources List did not answer within {TIMEOUT:?}")]
    Timeout,
}

/// The device IDs of `resource` the kubelet allocated to the pod's containers, in the order it
/// lists them.
pub async fn allocated(
    socket: &Path,
    namespace: &str,
    name: &str,
    resource: &str,
) -> Result<Vec<String>, PodResourcesError> {
    let call = async {
        let channel = unix_channel(socket)
            .await
            .map_err(|source| PodResourcesError::Connect {
                socket: socket.display().to_string(),
                source,
            })?;
        let response = PodResourcesListerClient::new(channel)
            .list(ListPodResourcesRequest {})
            .await?
            .into_inner();
        Ok(devices_of(&response, namespace, name, resource))
    };
    tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| PodResourcesError::Timeout)?
}

/// The pod's device IDs of `resource`, over all its containers.
pub fn devices_of(
    response: &ListPodResourcesResponse,
    namespace: &str,
    name: &str,
    resource: &str,
) -> Vec<String> {
    response
        .pod_resources
        .iter()
        .filter(|pod| pod.namespace == namespace && pod.name == name)
        .flat_map(|pod| &pod.containers)
        .flat_map(|container| &container.devices)
        .filter(|devices| devices.resource_name == resource)
        .flat_map(|devices| devices.device_ids.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_kubelet_api::podresources::{
        ContainerDevices, ContainerResources, PodResources,
    };

    fn pod(namespace: &str, name: &str, containers: Vec<Vec<(&str, &[&str])>>) -> PodResources {
        PodResources {
            name: name.into(),
            namespace: namespace.into(),
            containers: containers
                .into_iter()
                .enumerate()
                .map(|(i, devices)| ContainerResources {
                    name: format!("c{i}"),
                    devices: devices
                        .into_iter()
                        .map(|(resource, ids)| ContainerDevices {
                            resource_name: resource.into(),
                            device_ids: ids.iter().map(|id| id.to_string()).collect(),
                            topology: None,
                        })
                        .collect(),
                    cpu_ids: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn only_the_pods_devices_of_the_resource_count_in_every_container() {
        let response = ListPodResourcesResponse {
            pod_resources: vec![
                pod("ns", "other", vec![vec![("switchyard.dev/a", &["9"])]]),
                pod(
                    "ns",
                    "vm",
                    vec![
                        vec![
                            ("switchyard.dev/a", &["1", "2"]),
                            ("switchyard.dev/b", &["3"]),
                        ],
                        vec![("switchyard.dev/a", &["4"])],
                    ],
                ),
                pod("elsewhere", "vm", vec![vec![("switchyard.dev/a", &["5"])]]),
            ],
        };
        assert_eq!(
            devices_of(&response, "ns", "vm", "switchyard.dev/a"),
            vec!["1", "2", "4"]
        );
        assert_eq!(
            devices_of(&response, "ns", "vm", "switchyard.dev/b"),
            vec!["3"]
        );
        assert!(devices_of(&response, "ns", "vm", "switchyard.dev/c").is_empty());
        assert!(devices_of(&response, "ns", "absent", "switchyard.dev/a").is_empty());
    }
}
