//! The one place the CLI talks to the cluster, found as kubectl finds it (`KUBECONFIG`,
//! `~/.kube/config`, or the in-cluster service account).

use std::time::Duration;

use anyhow::Context;
use kube::{Api, Client, Config};
use switchyard_crds::Network;

use crate::failure::Failure;

/// Reads a Network from the cluster.
pub fn fetch_network(name: &str) -> Result<Network, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Cluster)?;
    runtime.block_on(async {
        let mut config = Config::infer()
            .await
            .context("finding the cluster (set KUBECONFIG, or run inside a pod)")
            .map_err(Failure::Cluster)?;
        // Fail fast on an unreachable API server instead of kube's long defaults.
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(20));
        let cluster_url = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .context("creating the Kubernetes client")
            .map_err(Failure::Cluster)?;
        let networks: Api<Network> = Api::all(client);
        networks
            .get_opt(name)
            .await
            .with_context(|| format!("reading network {name} from {cluster_url}"))
            .map_err(Failure::Cluster)?
            .ok_or_else(|| {
                Failure::Cluster(anyhow::anyhow!(
                    "network {name} not found in the cluster at {cluster_url} (kubectl get networks.switchyard.dev lists them)"
                ))
            })
    })
}
