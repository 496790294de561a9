//! The plain-HTTP operational endpoints: `/metrics`, `/healthz` and `/readyz`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::cache::Caches;
use crate::metrics::{CONTENT_TYPE, Metrics};

/// Which long-running parts of the controller have stopped when they should not have.
#[derive(Debug, Default)]
pub struct Health {
    stopped: Mutex<Vec<&'static str>>,
}

impl Health {
    /// Records that a part stopped unexpectedly; `/healthz` fails from then on, so the
    /// kubelet restarts the controller.
    pub fn stopped(&self, part: &'static str) {
        tracing::error!(part, "stopped unexpectedly");
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(part);
    }

    fn failures(&self) -> Vec<&'static str> {
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the endpoints read.
#[derive(Clone, Debug)]
pub struct ProbeState {
    /// Readiness is the caches' sync.
    pub caches: Caches,
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// Liveness.
    pub health: Arc<Health>,
}

/// The routes.
pub fn router(state: ProbeState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<ProbeState>) -> Response {
    let rendered = {
        let index = state.caches.read();
        state.metrics.render(&index)
    };
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<ProbeState>) -> Response {
    let failures = state.health.failures();
    if failures.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stopped: {}\n", failures.join(", ")),
        )
            .into_response()
    }
}

async fn readyz(State(state): State<ProbeState>) -> Response {
    if state.caches.is_synced() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n").into_response()
    }
}
