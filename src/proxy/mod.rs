//! proxy: the main listener's request path. This file is the one place that composes its stack.

pub mod budget;
mod error;
mod forward;
mod lock_traffic;
pub mod rate;
pub mod ratelimit;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower::util::BoxCloneService;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};
use tracing::Instrument;

pub use error::{ERROR_HEADER, ProxyError};
use lock_traffic::Carried;
pub use lock_traffic::PROXY_HEADER;

use crate::classify::{ClassifyConfig, classify};
use crate::config::ServerConfig;
use crate::enhanced::Enhanced;
use crate::route::Router;
use crate::telemetry::metrics::status_class;
use crate::telemetry::{self, Metrics};
use crate::upstream::{ProxyBody, Upstream, is_job_websocket};

/// Everything the request path needs, shared by all connections.
pub struct ProxyState {
    /// Client to Atlantis.
    pub upstream: Upstream,
    /// Client limits.
    pub server: ServerConfig,
    /// How to read Atlantis traffic.
    pub classify: ClassifyConfig,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Which path each repository takes.
    pub router: Arc<Router>,
    /// The enhanced path (engine, resolver, replay).
    pub enhanced: Arc<Enhanced>,
    /// Per-client and per-repository limits on lock traffic.
    pub limits: Arc<ratelimit::RateLimits>,
    /// Bytes of all buffered bodies at once (`server.max-buffered-bytes`).
    pub body_budget: budget::BodyBudget,
}

/// A client's request body: paused no longer than the body timeout, and not trickled.
type ClientBody = rate::MinRate<TimeoutBody<Incoming>>;

/// The service for one client connection, outer layer first.
pub fn service(
    state: Arc<ProxyState>,
    client: SocketAddr,
) -> BoxCloneService<Request<Incoming>, Response<ProxyBody>, Infallible> {
    let body_timeout = state.server.body_read_timeout;
    let min_rate = state.server.min_body_rate;
    let svc = ServiceBuilder::new()
        // A client that stalls mid-body must not hold a connection (and an upstream slot) forever.
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        // Nor one that sends a byte now and then, never pausing long enough to time out.
        .map_request(move |req: Request<TimeoutBody<Incoming>>| {
            req.map(|b| rate::MinRate::new(b, min_rate))
        })
        .service_fn(move |req| rescue(handle(state.clone(), client, req)));
    BoxCloneService::new(svc)
}

/// The rescue: a [`ProxyError`] becomes its response, marked as the proxy's own; nothing else
/// turns errors into answers.
async fn rescue(
    handled: impl Future<Output = Result<Response<ProxyBody>, ProxyError>>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(handled.await.unwrap_or_else(ProxyError::into_response))
}

/// One request: pick how to carry it, carry it, count it.
async fn handle(
    state: Arc<ProxyState>,
    client: SocketAddr,
    req: Request<ClientBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let route = route_name(req.method(), req.uri().path());
    // The server span: every later step (classify, engine, upstream) is its child.
    let span = telemetry::spans::server(req.method(), route, req.uri().path());
    telemetry::set_parent_from_headers(&span, req.headers());
    let Carried {
        answer: result,
        path,
    } = carry(&state, client, req).instrument(span.clone()).await;
    let (outcome, status) = match &result {
        Ok(resp) => (status_class(resp.status()), resp.status()),
        Err(e) => {
            span.record("error.type", e.kind());
            (e.kind(), e.status())
        }
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    state.metrics.request(route, path, outcome);
    result
}

/// Returns the answer and the engine path that decided it.
async fn carry(state: &ProxyState, client: SocketAddr, req: Request<ClientBody>) -> Carried {
    read_and_carry(state, client, req)
        .await
        .unwrap_or_else(|e| Carried::legacy(Err(e)))
}

async fn read_and_carry(
    state: &ProxyState,
    client: SocketAddr,
    req: Request<ClientBody>,
) -> Result<Carried, ProxyError> {
    // Only Atlantis's log stream is spliced; an `Upgrade` anywhere else changes nothing.
    if is_job_websocket(req.method(), req.uri().path(), req.headers()) {
        return Ok(Carried::legacy(forward::upgrade(state, client, req).await));
    }
    let lock_route = may_carry_lock_traffic(req.method(), req.uri().path());
    let limit = if lock_route {
        state.server.max_lock_body_size
    } else {
        state.server.max_body_size
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    let (parts, body) = req.into_parts();
    if !lock_route {
        let body = forward::stream(body, limit);
        let resp = forward::forward(state, client, Request::from_parts(parts, body)).await;
        return Ok(Carried::legacy(resp));
    }
    // Lock traffic is buffered once: classification reads it and a replay resends it byte for
    // byte. Its bytes count against the shared budget until the answer is made.
    let (bytes, _reserved) = state.body_budget.buffer(body, limit, declared).await?;
    let op = {
        let _s = telemetry::spans::classify().entered();
        classify(&parts, &bytes, &state.classify)
    }
    .map_err(|e| ProxyError::BadSignature {
        status: e.status(),
        message: e.to_string(),
    })?;
    tracing::debug!(
        kind = op.kind(),
        repo = op.repo().unwrap_or(""),
        "classified"
    );
    Ok(lock_traffic::carry(state, client, parts, bytes, op).await)
}

/// Routes whose requests can take or release Atlantis locks (ATLANTIS.md §1).
fn may_carry_lock_traffic(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (
            &Method::POST,
            "/events"
                | "/api/plan"
                | "/api/apply"
                | "/api/drift/detect"
                | "/api/drift/remediate"
                | "/apply/lock"
        ) | (&Method::DELETE, "/locks" | "/apply/unlock")
    )
}

/// A bounded label for metrics: Atlantis's route, never the raw path.
fn route_name(method: &Method, path: &str) -> &'static str {
    match (method, path) {
        (&Method::POST, "/events") => "events",
        (&Method::POST, "/api/plan") => "api_plan",
        (&Method::POST, "/api/apply") => "api_apply",
        (&Method::POST, "/api/drift/detect") => "api_drift_detect",
        (&Method::POST, "/api/drift/remediate") => "api_drift_remediate",
        (&Method::GET, "/api/locks") => "api_locks",
        (&Method::DELETE, "/locks") => "delete_lock",
        (&Method::GET, "/lock") => "lock_page",
        (&Method::POST, "/apply/lock") => "apply_lock",
        (&Method::DELETE, "/apply/unlock") => "apply_unlock",
        (_, p) if p.starts_with("/jobs/") && p.ends_with("/ws") => "jobs_ws",
        (_, p) if p.starts_with("/jobs/") => "jobs",
        (_, "/healthz" | "/readyz" | "/status") => "health",
        (_, "/") => "index",
        _ => "other",
    }
}
