//! proxy: the main listener's request path. This file is the one place that composes its stack;
//! every concern is a `Layer` + `Service` in its own file, and per-request facts travel between
//! them in extensions ([`facts`]).

pub mod budget;
mod buffer;
mod classifier;
mod error;
mod facts;
mod forward;
mod gate;
mod limit;
mod mirror;
mod observe;
pub mod rate;
pub mod ratelimit;
mod rescue;
mod routing;
mod shadow;
#[cfg(test)]
mod tests;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use error::{ERROR_HEADER, Failure, LimitScope, ProxyError};
pub use facts::ClientAddr;

use crate::classify::ClassifyConfig;
use crate::config::ServerConfig;
use crate::enhanced::{Enhanced, ShadowRunner};
use crate::route::Router;
use crate::telemetry::Metrics;
use crate::upstream::{ProxyBody, Upstream};

/// Marks answers the proxy makes on purpose (not errors), e.g. `x-lock-proxy: queued`.
pub const PROXY_HEADER: &str = "x-lock-proxy";

/// Everything the request path needs, shared by all connections.
pub struct ProxyState {
    /// Client to Atlantis.
    pub upstream: Upstream,
    /// Client limits.
    pub server: ServerConfig,
    /// How to read Atlantis traffic.
    pub classify: Arc<ClassifyConfig>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Which path each repository takes.
    pub router: Arc<Router>,
    /// The enhanced path (engine, resolver, replay).
    pub enhanced: Arc<Enhanced>,
    /// Shadow-mode comparisons.
    pub shadow: Arc<ShadowRunner>,
    /// Per-client and per-repository limits on lock traffic.
    pub limits: Arc<ratelimit::RateLimits>,
    /// Bytes of all buffered bodies at once (`server.max-buffered-bytes`).
    pub body_budget: budget::BodyBudget,
}

/// The main listener's service, shared by every connection (each adds its [`ClientAddr`]).
pub type Stack = BoxCloneService<Request<Incoming>, Response<ProxyBody>, Infallible>;

/// The main listener's stack, forwarding to Atlantis (over any request body: the listener's
/// `Incoming`, or a test's).
pub fn stack<B>(state: &ProxyState) -> BoxCloneService<Request<B>, Response<ProxyBody>, Infallible>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::upstream::BoxError>,
{
    let forward = forward::Forward::new(
        state.upstream.clone(),
        state.metrics.clone(),
        state.server.max_body_size,
    );
    compose(state, forward.clone(), forward)
}

/// Composes the stack, outer layer first, over `inner` (Atlantis, or a test's stand-in).
fn compose<B, S>(
    state: &ProxyState,
    forward: forward::Forward,
    inner: S,
) -> BoxCloneService<Request<B>, Response<ProxyBody>, Infallible>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::upstream::BoxError>,
    S: facts::Inner,
{
    let s = &state.server;
    let svc = ServiceBuilder::new()
        // One server span (continuing the caller's trace) and one requests_total sample per
        // request, both read from the facts on the answer.
        .layer(observe::ObserveLayer::new(state.metrics.clone()))
        // The only place a failure becomes a response (x-lock-proxy-error, Retry-After).
        .layer(rescue::RescueLayer)
        // A client that stalls mid-body must not hold a connection (and an upstream slot) forever.
        .layer(RequestBodyTimeoutLayer::new(s.body_read_timeout))
        // Nor one that sends a byte now and then, never pausing long enough to time out.
        .layer(rate::MinRateLayer::new(s.min_body_rate))
        // Job-log websockets are spliced to Atlantis; nothing below sees an upgrade.
        .layer(upgrade::UpgradeLayer::new(forward.clone()))
        // Lock routes are buffered once (classification and replay share the bytes); the rest stream.
        .layer(buffer::BufferLockRoutesLayer::new(
            state.body_budget.clone(),
            s.max_body_size,
            s.max_lock_body_size,
        ))
        // Buffered lock traffic becomes an Operation; a forged webhook stops here.
        .layer(classifier::ClassifyLayer::new(state.classify.clone()))
        // Lock traffic over a client's or repository's limit is refused before it costs anything.
        .layer(limit::RateLimitLayer::new(state.limits.clone()))
        // The weighted split picks legacy or enhanced (and shadow) for the repository.
        .layer(routing::RouteLayer::new(state.router.clone()))
        // Shadowed repositories: the engine evaluates what legacy decided, never delaying it.
        .layer(shadow::ShadowLayer::new(state.shadow.clone()))
        // Releases reach the engine only once Atlantis has carried them out.
        .layer(mirror::ReleaseLayer::new(state.enhanced.clone()))
        // Enhanced acquires are admitted, queued (202) or handed to Atlantis undecided.
        .layer(gate::GateLayer::new(
            state.enhanced.clone(),
            state.metrics.clone(),
        ))
        .service(inner);
    BoxCloneService::new(svc)
}

/// The service for one client connection: the shared stack, told who the client is.
pub fn service(
    stack: &Stack,
    client: SocketAddr,
) -> BoxCloneService<Request<Incoming>, Response<ProxyBody>, Infallible> {
    stack
        .clone()
        .map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(client));
            req
        })
        .boxed_clone()
}
