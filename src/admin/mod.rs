//! admin: the operator's HTTP API on its own listener (DESIGN.md §4).

pub mod api;
mod auth;
pub mod client;
mod diagnostics;
mod error;
mod limit;
mod locks;
mod split;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};

pub use error::AdminError;

use crate::config::Secret;
use crate::proxy::ratelimit::RateLimits;
use crate::route::shadow::ShadowRecorder;
use crate::route::{CircuitBreaker, ControlStore, Router as SplitRouter, SplitState};
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
    /// When the process started.
    pub started_at: std::time::SystemTime,
    /// Live routing state.
    pub router: Arc<SplitRouter>,
    /// The enhanced path (engine and its Atlantis client).
    pub enhanced: Arc<crate::enhanced::Enhanced>,
    /// Where the routing state is persisted and shared with the other replicas.
    pub control: Arc<ControlStore>,
    /// The breaker around the engine backend.
    pub breaker: Arc<CircuitBreaker>,
    /// Shadow comparisons, for `/admin/shadow/diffs`.
    pub shadow: Arc<ShadowRecorder>,
    /// Rate limits; the admin one guards `/admin/*`.
    pub limits: Arc<RateLimits>,
    /// VCSs whose webhooks are gated without a secret (`atlantis.allow-unsigned-webhooks`).
    pub unsigned_webhooks: Vec<crate::classify::Vcs>,
    /// Background tasks that ended before shutdown (they fail `/readyz`).
    pub tasks: Arc<crate::supervise::TaskHealth>,
}

impl AdminState {
    /// Circuit-breaker state as the API names it: `closed`, `open` or `half-open`.
    pub fn breaker_state(&self) -> &'static str {
        self.breaker.state_name()
    }

    /// Makes a new split state take effect here at once, then persists it so every replica
    /// follows within a second and a restart keeps it.
    ///
    /// Applying locally first means a rollback works even while the backend is down; the store
    /// then keeps the change pending and writes it when the backend is back (logged here).
    pub async fn apply_split(&self, state: SplitState) -> Result<(), AdminError> {
        self.metrics
            .set_split(state.traffic_split, state.monitor_only);
        self.router.set(state.clone());
        if let Err(e) = self.control.save(&state).await {
            tracing::warn!(error = %e, "split applied on this replica only for now; it is stored once the backend answers");
        }
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
        .route("/shadow/diffs", get(diagnostics::shadow_diffs))
        .route("/deadlocks", get(diagnostics::deadlocks))
        .fallback(|| async { AdminError::NotFound("no such admin route".into()) })
        // Everything under /admin, unknown routes included, needs the token.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Outermost: bound each client before any work (token check included, so guessing
        // tokens is throttled too).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit::limit_admin,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/admin", admin)
        .with_state(state)
}

/// `?engine=optional` — for a Kubernetes readiness probe: with `legacy-fallback` on, a replica
/// whose engine backend is down still serves every request (on the legacy path), so only Atlantis
/// decides readiness.
#[derive(serde::Deserialize, Default)]
struct ReadyQuery {
    engine: Option<String>,
}

async fn readyz(
    State(st): State<Arc<AdminState>>,
    axum::extract::Query(q): axum::extract::Query<ReadyQuery>,
) -> Response {
    let atlantis = match st.upstream.get("/healthz", Duration::from_secs(2)).await {
        Ok((s, _)) if s.is_success() => Ok(()),
        Ok((s, _)) => Err(format!("Atlantis /healthz answered {s}")),
        Err(e) => Err(e.to_string()),
    };
    let engine = match tokio::time::timeout(Duration::from_secs(2), st.enhanced.engine.ping()).await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{} backend did not answer within 2s",
            st.enhanced.engine.backend_name()
        )),
    };
    st.metrics.set_backend_health(engine.is_ok());
    let engine_optional =
        q.engine.as_deref() == Some("optional") && st.enhanced.settings().legacy_fallback;
    let ended = st.tasks.ended();
    let tasks = if ended.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "background task(s) ended before shutdown: {}",
            ended.join(", ")
        ))
    };
    // A replica that has not read Atlantis's lock table yet would gate nothing it knows of.
    let started = if st.enhanced.started() || (engine.is_err() && engine_optional) {
        Ok(())
    } else {
        Err("the first reconciler pass has not run yet".to_owned())
    };
    let ready =
        atlantis.is_ok() && (engine.is_ok() || engine_optional) && tasks.is_ok() && started.is_ok();
    let check = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".into());
    let body = api::Readiness {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        checks: [
            ("atlantis", check(atlantis)),
            ("engine", check(engine)),
            ("tasks", check(tasks)),
            ("lock_table", check(started)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        // Informational: an open breaker already means enhanced traffic takes the legacy path,
        // so it does not make the replica unready.
        breaker: st.breaker_state().to_owned(),
    };
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

async fn status(State(st): State<Arc<AdminState>>) -> Json<api::StatusView> {
    Json(api::StatusView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        upstream: st.upstream.base().to_string(),
        backend: st.enhanced.engine.backend_name().to_owned(),
        global_apply_locked: st.enhanced.global_apply_locked(),
        uptime_seconds: st.started_at.elapsed().unwrap_or_default().as_secs(),
        // Loud on purpose: anyone reaching the webhook port can move these VCSs' locks.
        unsigned_webhooks_gated: st
            .unsigned_webhooks
            .iter()
            .map(|v| v.as_str().to_owned())
            .collect(),
    })
}
