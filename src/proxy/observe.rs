//! The telemetry layer: one server span per request (continuing the caller's trace) and one
//! `requests_total` sample, both read from the facts on the answer.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::error::Rescued;
use super::facts::{Classified, Verdict};
use crate::route::Route;
use crate::telemetry::metrics::labels::{HttpRoute, RequestOutcome, StatusClass};
use crate::telemetry::{self, Metrics, spans};
use crate::upstream::ProxyBody;
use crate::vocab::EnginePath;

/// Wraps the stack in the request's server span and counts its answer.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<ProxyBody>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = HttpRoute::of(req.method(), req.uri().path());
        // The server span: every later step (classify, engine, upstream) is its child.
        let span = spans::server(req.method(), route.as_str(), req.uri().path());
        telemetry::set_parent_from_headers(&span, req.headers());
        let metrics = self.metrics.clone();
        let answer = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let answer = answer.await;
            if let Ok(resp) = &answer {
                let path = record(&span, resp);
                let outcome = match resp.extensions().get::<Rescued>() {
                    Some(Rescued(kind)) => RequestOutcome::Proxy(*kind),
                    None => RequestOutcome::Status(StatusClass::of(resp.status())),
                };
                metrics.request(route, path, outcome);
            }
            answer
        })
    }
}

/// Records the answer's facts on the server span; returns the path that decided it.
fn record(span: &tracing::Span, resp: &Response<ProxyBody>) -> EnginePath {
    let facts = resp.extensions();
    if let Some(c) = facts.get::<Classified>() {
        span.record(spans::attr::OPERATION, c.kind);
        if let Some(repo) = &c.repo {
            span.record(spans::attr::REPO, repo.as_str());
        }
    }
    if let Some(route) = facts.get::<Route>() {
        span.record(spans::attr::ENGINE_PATH, route.path.as_str());
    }
    if let Some(v) = facts.get::<Verdict>() {
        span.record(spans::attr::PULL, v.pull());
        span.record(spans::attr::DECISION, v.as_str());
        if let Verdict::Queued {
            waiter, position, ..
        } = v
        {
            span.record(spans::attr::WAITER_ID, tracing::field::display(waiter));
            if let Some(pos) = position {
                span.record(spans::attr::QUEUE_POSITION, *pos);
            }
        }
    }
    if let Some(Rescued(kind)) = facts.get::<Rescued>() {
        span.record("error.type", kind.as_str());
    }
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    // The path that decided: the engine only once it did, even if Atlantis then failed.
    facts
        .get::<EnginePath>()
        .copied()
        .unwrap_or(EnginePath::Legacy)
}
