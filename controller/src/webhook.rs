//! The validating admission webhook's HTTP side: `/validate-networks` and
//! `/validate-networkports` take an AdmissionReview v1 and answer with the decisions of
//! [`crate::admission`], made from the controller's caches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use switchyard_crds::{Network, NetworkPort};

use crate::admission::{Decision, review_network, review_port};
use crate::cache::Caches;
use crate::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct WebhookState {
    /// The index the decisions are made from.
    pub caches: Caches,
    /// For confirming a network the cache has not seen yet.
    pub client: Client,
    /// Where counts and check latencies go.
    pub metrics: Arc<Metrics>,
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

/// The webhook's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/validate-networks", post(validate_networks))
        .route("/validate-networkports", post(validate_networkports))
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
            review_network(&state.caches.read(), network, request.old_object.as_ref())
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
    let decision = match (&request.operation, &request.object) {
        (Operation::Create | Operation::Update, Some(port)) => {
            catch_up_with_network(&state, &port.spec.network).await;
            let started = Instant::now();
            let decision = review_port(&state.caches.read(), port, request.old_object.as_ref());
            if request.operation == Operation::Create {
                state.metrics.checked("webhook", started.elapsed());
            }
            decision
        }
        _ => Decision::Allow,
    };
    respond(&state, "networkports", &request, decision)
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
