//! admin: the operator's HTTP API on its own listener (DESIGN.md §4).

mod auth;
pub mod client;
mod error;
mod locks;
mod split;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use serde_json::json;

pub use error::AdminError;

use crate::config::Secret;
use crate::route::{Router as SplitRouter, SplitState};
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// What the admin handlers read.
pub struct AdminState {
    /// Metrics registry to expose.
    pub metrics: Arc<Metrics>,
    /// Atlantis, for readiness.
    pub upstream: Upstream,
    /// Bearer token for `/admin/*`.
    pub token: Option<Secret>,
    /// Engine backend name (`memory`, `redis`).
    pub backend: &'static str,
    /// When the process started.
    pub started_at: std::time::SystemTime,
    /// Live routing state.
    pub router: Arc<SplitRouter>,
    /// The enhanced path (engine and its Atlantis client).
    pub enhanced: Arc<crate::enhanced::Enhanced>,
}

impl AdminState {
    /// Circuit-breaker state as the API names it.
    pub fn breaker_state(&self) -> &'static str {
        "closed"
    }

    /// Makes a new split state take effect (and, with a shared backend, reach every replica).
    pub async fn apply_split(&self, state: SplitState) -> Result<(), AdminError> {
        self.router.set(state);
        Ok(())
    }
}

/// The admin router: probes and metrics open, `/admin/*` behind the bearer token.
pub fn router(state: Arc<AdminState>) -> Router {
    let admin = Router::new()
        .route("/status", get(status))
        .route("/split", get(split::get_split).put(split::put_split))
        .route("/rollback", post(split::rollback))
        .route("/locks", get(locks::list_locks))
        .route("/locks/{*key}", delete(locks::release_lock))
        .route("/queues", get(locks::list_queues))
        .route("/queues/{id}", delete(locks::remove_waiter))
        .fallback(|| async { AdminError::NotFound("no such admin route".into()) })
        // Everything under /admin, unknown routes included, needs the token.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/admin", admin)
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AdminState>>) -> Response {
    let atlantis = match st.upstream.get("/healthz", Duration::from_secs(2)).await {
        Ok((s, _)) if s.is_success() => Ok(()),
        Ok((s, _)) => Err(format!("Atlantis /healthz answered {s}")),
        Err(e) => Err(e.to_string()),
    };
    let ready = atlantis.is_ok();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": { "atlantis": atlantis.err().unwrap_or_else(|| "ok".into()) },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<Arc<AdminState>>, headers: axum::http::HeaderMap) -> Response {
    // Prometheus text unless the scraper asks for OpenMetrics.
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = st.metrics.encode_for(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn status(State(st): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let uptime = st.started_at.elapsed().unwrap_or_default().as_secs();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "upstream": st.upstream.base().to_string(),
        "backend": st.backend,
        "uptime_seconds": uptime,
    }))
}
