//! `/mutate-pods`: a Pod naming switchyard NADs in `k8s.v1.cni.cncf.io/networks` gets the
//! `switchyard.dev/<network>` requests the node agent's device plugin serves (see
//! [`crate::pod_networks`]). Registered with failurePolicy Ignore: a pod is never held back by
//! the controller, at worst it lacks the request (and Multus or the scheduler says why).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, Operation};
use switchyard_crds::LABEL_NETWORK;

use super::{Review, WebhookState, invalid, parse};
use crate::nad::{LABEL_MANAGED_BY, MANAGED_BY, nad_resource};
use crate::pod_networks::{ANNOTATION_NETWORKS, NadRef, parse_networks, requested, resource_patch};

/// How long the NAD reads may take: the registration's timeout is 2 s.
const NAD_READS: Duration = Duration::from_millis(1500);

pub(super) async fn mutate_pods(State(state): State<WebhookState>, body: Bytes) -> Review {
    let request = match parse::<Pod>(&body) {
        Ok(request) => request,
        Err(message) => return invalid(message),
    };
    let response = AdmissionResponse::from(&request);
    let (Operation::Create, Some(pod)) = (&request.operation, &request.object) else {
        return Json(response.into_review());
    };
    // Most pods name no secondary network: answered without a read.
    let Some(value) = pod.annotations().get(ANNOTATION_NETWORKS) else {
        return Json(response.into_review());
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.namespace())
        .unwrap_or_default();
    let nads = match parse_networks(value, &namespace) {
        Ok(nads) => nads,
        Err(error) => {
            // Multus refuses the pod's sandbox with its own message; nothing to add here.
            tracing::debug!(namespace, pod = %pod.name_any(), %error, "unreadable networks annotation");
            return Json(response.into_review());
        }
    };
    let networks = match tokio::time::timeout(NAD_READS, networks_of(&state, &nads)).await {
        Ok(networks) => networks,
        Err(_) => {
            tracing::warn!(namespace, pod = %pod.name_any(), "NAD reads took too long; pod left unchanged");
            return Json(response.into_review());
        }
    };
    let counts = requested(&nads, |nad| networks.get(nad).cloned().flatten());
    let Some(patch) = resource_patch(pod, &counts) else {
        return Json(response.into_review());
    };
    tracing::info!(namespace, pod = %pod.name_any(), ?counts, "adding switchyard resource requests");
    state.metrics.reviewed("pods", true);
    match response.clone().with_patch(patch) {
        Ok(patched) => Json(patched.into_review()),
        Err(error) => {
            tracing::warn!(%error, "could not serialise the pod's patch");
            Json(response.into_review())
        }
    }
}

/// For each NAD named, the switchyard network it is the controller's for; `None` for NADs of
/// others, missing or unreadable ones.
async fn networks_of(state: &WebhookState, nads: &[NadRef]) -> BTreeMap<NadRef, Option<String>> {
    let unique: Vec<NadRef> = {
        let mut unique = nads.to_vec();
        unique.sort();
        unique.dedup();
        unique
    };
    let resource = nad_resource();
    let reads = unique.iter().map(|(namespace, name)| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(state.client.clone(), namespace, &resource);
        async move {
            match api.get_opt(name).await {
                Ok(Some(nad)) => (nad.labels().get(LABEL_MANAGED_BY).map(String::as_str)
                    == Some(MANAGED_BY))
                .then(|| nad.labels().get(LABEL_NETWORK).cloned())
                .flatten(),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(namespace, nad = name, %error, "could not read a NAD a pod names");
                    None
                }
            }
        }
    });
    let found = join_all(reads).await;
    unique.into_iter().zip(found).collect()
}
