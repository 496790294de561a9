//! The validating admission webhook's HTTP side: `/validate-networks`,
//! `/validate-networkports` (also their status), `/validate-networknodes` and `/validate-nodes`
//! (Node status) take an AdmissionReview v1 and answer with the decisions of
//! [`crate::admission`], made from the controller's caches. Requests of the node agents'
//! ServiceAccount are judged by [`crate::admission::agent`], from the node of the agent's pod.
//! `/mutate-pods`, the one mutating webhook, adds the resource requests of switchyard NADs a
//! Pod names (`pods`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use switchyard_crds::{Network, NetworkNode, NetworkPort};

use crate::admission::agent::{self, NodeAgent};
use crate::admission::{Decision, Denial, review_network, review_port};
use crate::cache::Caches;
use crate::metrics::Metrics;

mod agents;
mod pods;

pub use agents::AgentPods;

/// What the handlers read.
#[derive(Clone)]
pub struct WebhookState {
    /// The index the decisions are made from.
    pub caches: Caches,
    /// For confirming a network the cache has not seen yet.
    pub client: Client,
    /// Where counts and check latencies go.
    pub metrics: Arc<Metrics>,
    /// The node agents' account and their pods' nodes; `None` leaves agents unchecked
    /// beyond RBAC.
    pub agents: Option<Arc<AgentPods>>,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("caches", &self.caches)
            .finish_non_exhaustive()
    }
}

/// How long a port's admission waits for the cache to catch up with a network the apiserver
/// already has (created a moment before the port).
const CACHE_CATCH_UP: Duration = Duration::from_secs(3);
/// How long a Node status review waits for the stored Node: the Node status webhook has a
/// timeout of 2 s.
const STORED_NODE_READ: Duration = Duration::from_millis(1500);

/// The webhook's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/validate-networks", post(validate_networks))
        .route("/validate-networkports", post(validate_networkports))
        .route("/validate-networknodes", post(validate_networknodes))
        .route("/validate-nodes", post(validate_nodes))
        .route("/mutate-pods", post(pods::mutate_pods))
        .with_state(state)
}

type Review = Json<AdmissionReview<DynamicObject>>;

/// The request in an AdmissionReview, or why there is none.
fn parse<K: Resource + DeserializeOwned>(body: &[u8]) -> Result<AdmissionRequest<K>, String> {
    let review: AdmissionReview<K> = serde_json::from_slice(body).map_err(|error| {
        format!(
            "not an AdmissionReview of a {}: {error}",
            std::any::type_name::<K>()
        )
    })?;
    review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())
}

fn invalid(message: String) -> Review {
    tracing::warn!(%message, "unreadable admission review");
    Json(AdmissionResponse::invalid(message).into_review())
}

async fn validate_networks(State(state): State<WebhookState>, body: Bytes) -> Review {
    let request = match parse::<Network>(&body) {
        Ok(request) => request,
        Err(message) => return invalid(message),
    };
    let decision = match (&request.operation, &request.object) {
        (Operation::Create | Operation::Update, Some(network)) => {
            match agent_of(&state, &request.user_info).await {
                Err(denial) => Decision::Deny(denial),
                Ok(Some(agent)) => agent::review_other_kind(&agent, "Network", &network.name_any()),
                Ok(None) => {
                    review_network(&state.caches.read(), network, request.old_object.as_ref())
                }
            }
        }
        _ => Decision::Allow,
    };
    respond(&state, "networks", &request, decision)
}

async fn validate_networkports(State(state): State<WebhookState>, body: Bytes) -> Review {
    let request = match parse::<NetworkPort>(&body) {
        Ok(request) => request,
        Err(message) => return invalid(message),
    };
    let sub_resource = request.sub_resource.as_deref();
    let old = request.old_object.as_ref();
    let decision = match (&request.operation, &request.object) {
        (Operation::Create | Operation::Update, Some(port)) => {
            match agent_of(&state, &request.user_info).await {
                Err(denial) => Decision::Deny(denial),
                Ok(Some(agent)) => match agent::review_port(&agent, sub_resource, port, old) {
                    // A pod's port from the agent's CNI server meets the placement rules too,
                    // so the CNI call fails with the webhook's own message.
                    Decision::Allow if request.operation == Operation::Create => {
                        review_user_port(&state, &request, port).await
                    }
                    decision => decision,
                },
                // Status is the agent's to write; others' writes (tests, tools) pass.
                Ok(None) if sub_resource.is_some() => Decision::Allow,
                Ok(None) => review_user_port(&state, &request, port).await,
            }
        }
        (Operation::Delete, _) => match (agent_of(&state, &request.user_info).await, old) {
            (Err(denial), _) => Decision::Deny(denial),
            (Ok(Some(agent)), Some(port)) => agent::review_port_delete(&agent, port),
            _ => Decision::Allow,
        },
        _ => Decision::Allow,
    };
    respond(&state, "networkports", &request, decision)
}

/// A port written by its user (not an agent): the placement rules on create, the fixed spec
/// on update.
async fn review_user_port(
    state: &WebhookState,
    request: &AdmissionRequest<NetworkPort>,
    port: &NetworkPort,
) -> Decision {
    if request.operation == Operation::Create {
        catch_up_with_network(state, &port.spec.network).await;
    }
    let started = Instant::now();
    let decision = review_port(&state.caches.read(), port, request.old_object.as_ref());
    if request.operation == Operation::Create {
        state.metrics.checked("webhook", started.elapsed());
    }
    decision
}

async fn validate_networknodes(State(state): State<WebhookState>, body: Bytes) -> Review {
    let request = match parse::<NetworkNode>(&body) {
        Ok(request) => request,
        Err(message) => return invalid(message),
    };
    let decision = match (&request.operation, &request.object) {
        (Operation::Create | Operation::Update, Some(node)) => {
            match agent_of(&state, &request.user_info).await {
                Err(denial) => Decision::Deny(denial),
                Ok(Some(agent)) => agent::review_network_node(&agent, &node.name_any()),
                Ok(None) => Decision::Allow,
            }
        }
        _ => Decision::Allow,
    };
    respond(&state, "networknodes", &request, decision)
}

/// Node status writes. Kubelets write here too, often: anyone but an agent passes at once.
async fn validate_nodes(State(state): State<WebhookState>, body: Bytes) -> Review {
    let request = match parse::<Node>(&body) {
        Ok(request) => request,
        Err(message) => return invalid(message),
    };
    let decision = match agent_of(&state, &request.user_info).await {
        Err(denial) => Decision::Deny(denial),
        Ok(None) => Decision::Allow,
        Ok(Some(agent)) => match (
            request.sub_resource.as_deref(),
            &request.object,
            &request.old_object,
        ) {
            (Some("status"), Some(node), Some(_)) if node.name_any() == agent.node => {
                match stored_node(&state, node).await {
                    Ok(stored) => agent::review_node_status(&agent, node, &stored),
                    Err(denial) => Decision::Deny(denial),
                }
            }
            (Some("status"), Some(node), Some(old)) => agent::review_node_status(&agent, node, old),
            _ => agent::review_other_kind(&agent, "Node", &request.name),
        },
    };
    respond(&state, "nodes", &request, decision)
}

/// The Node the written one was made from, as stored. kube-apiserver v1.20 sends a Node status
/// patch's result as `oldObject` too (controller/tests/rbac.rs shows it), so what the agent
/// changed is judged against the Node read back. When the Node changed meanwhile the write is
/// refused for a retry rather than judged against the wrong base.
async fn stored_node(state: &WebhookState, node: &Node) -> Result<Node, Denial> {
    let name = node.name_any();
    let api: Api<Node> = Api::all(state.client.clone());
    let stored = match tokio::time::timeout(STORED_NODE_READ, api.get(&name)).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(error)) => return Err(node_unreadable(&name, &error.to_string())),
        Err(_) => return Err(node_unreadable(&name, "no answer in time")),
    };
    if stored.metadata.resource_version != node.metadata.resource_version {
        return Err(Denial {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Node \"{name}\" changed while its status write was judged; try again"
            ),
        });
    }
    Ok(stored)
}

fn node_unreadable(name: &str, error: &str) -> Denial {
    tracing::warn!(
        node = name,
        error,
        "could not read a Node to judge its agent's write"
    );
    Denial {
        code: 503,
        reason: "ServiceUnavailable",
        message: format!("could not read Node \"{name}\" to judge the write ({error}); try again"),
    }
}

/// The node agent sending the request, if it is one (and agents are checked at all).
async fn agent_of(state: &WebhookState, user: &UserInfo) -> Result<Option<NodeAgent>, Denial> {
    match &state.agents {
        Some(agents) => agents.identify(user).await,
        None => Ok(None),
    }
}

/// When the cache lacks the port's network but the apiserver has it, waits (bounded) for the
/// watch to deliver it, so a port created right after its network is judged on the network.
async fn catch_up_with_network(state: &WebhookState, network: &str) {
    if state.caches.read().network(network).is_some() {
        return;
    }
    let api: Api<Network> = Api::all(state.client.clone());
    match api.get_opt(network).await {
        Ok(Some(_)) => {}
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(network, %error, "could not confirm whether the network exists");
            return;
        }
    }
    let deadline = Instant::now() + CACHE_CATCH_UP;
    while Instant::now() < deadline {
        if state.caches.read().network(network).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(network, "the cache did not see an existing network in time");
}

fn respond<K: Resource>(
    state: &WebhookState,
    resource: &'static str,
    request: &AdmissionRequest<K>,
    decision: Decision,
) -> Review {
    let response = AdmissionResponse::from(request);
    let namespace = request.namespace.as_deref().unwrap_or("");
    let response = match decision {
        Decision::Allow => {
            state.metrics.reviewed(resource, true);
            tracing::debug!(
                resource,
                namespace,
                name = %request.name,
                operation = ?request.operation,
                user = request.user_info.username.as_deref().unwrap_or(""),
                "admission allowed"
            );
            response
        }
        Decision::Deny(denial) => {
            state.metrics.reviewed(resource, false);
            tracing::info!(
                resource,
                namespace,
                name = %request.name,
                operation = ?request.operation,
                reason = denial.reason,
                message = %denial.message,
                "admission denied"
            );
            let mut response = response.deny(&denial.message);
            response.result =
                Status::failure(&denial.message, denial.reason).with_code(denial.code);
            response
        }
    };
    Json(response.into_review())
}
