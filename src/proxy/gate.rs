//! The gate layer: an acquire routed to the engine is admitted (forwarded once, with its grant),
//! queued (answered `202` here; Atlantis never sees it until its replay), or handed to Atlantis
//! undecided (the legacy fallback). Its [`Verdict`] and the deciding [`EnginePath`] travel up
//! as facts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};
use tracing::Instrument;

use super::facts::{Answer, AnswerFuture, Buffered, Inner, Verdict, note, take_ready};
use super::forward::{client_of, prepare};
use super::{Failure, PROXY_HEADER, ProxyError};
use crate::classify::{Acquire, Operation};
use crate::enhanced::{ADMITTED_HEADER, Decision, Enhanced, QueuedReply};
use crate::route::Route;
use crate::telemetry::{self, Metrics, ReleaseReason, spans};
use crate::upstream::replay::StoredRequest;
use crate::upstream::{ProxyBody, full};
use crate::vocab::{EnginePath, LegacyReason};

/// Gates acquires on the enhanced path.
#[derive(Clone)]
pub struct GateLayer {
    enhanced: Arc<Enhanced>,
    metrics: Arc<Metrics>,
}

impl GateLayer {
    /// Gates through `enhanced`, counting fallbacks and refusals into `metrics`.
    pub fn new(enhanced: Arc<Enhanced>, metrics: Arc<Metrics>) -> Self {
        Self { enhanced, metrics }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`GateLayer`].
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

impl<S> Service<Request<ProxyBody>> for Gate<S>
where
    S: Inner,
{
    type Response = Response<ProxyBody>;
    type Error = Failure;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let gated = req.extensions().get::<Route>().map(|r| r.path) == Some(EnginePath::Enhanced);
        let acq = match req.extensions().get::<Operation>() {
            Some(Operation::Acquire(acq)) if gated => acq.clone(),
            _ => return Box::pin(self.inner.call(req)),
        };
        let inner = take_ready(&mut self.inner);
        let layer = self.layer.clone();
        Box::pin(async move { layer.gate(inner, req, acq).await })
    }
}

impl GateLayer {
    async fn gate<S>(&self, mut inner: S, req: Request<ProxyBody>, acq: Acquire) -> Answer
    where
        S: Inner,
    {
        let pull = acq.pull.number;
        let client = client_of(&req);
        let (mut parts, body) = req.into_parts();
        let bytes = parts
            .extensions
            .get::<Buffered>()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let mut stored = stored_request(&parts, &bytes, client);
        // Nothing secret is kept at rest: the replay takes the secrets from the configuration.
        stored.redact(self.enhanced.upstream().secrets());
        stored.vcs = Some(acq.vcs.as_str().to_string());
        stored.command = Some(acq.command.as_typed().to_string());
        let request_id = request_identity(&parts, &bytes);
        let span = spans::engine("acquire");
        let decision = self
            .enhanced
            .acquire(&acq, &stored, Some(request_id))
            .instrument(span.clone())
            .await;
        record(&span, &decision);
        let decided =
            |answer: Answer, verdict: Verdict, path: EnginePath| note(note(answer, verdict), path);
        match decision {
            Ok(Decision::Forward {
                release_after,
                grant,
            }) => {
                if let Some(g) = &grant
                    && let Ok(v) = HeaderValue::from_str(&g.fencing_token.to_string())
                {
                    parts.headers.insert(ADMITTED_HEADER, v);
                }
                let answer = inner.call(Request::from_parts(parts, body)).await;
                // A grant whose request Atlantis refused (or never answered) must not stay (§10.4).
                if let Some(g) = grant
                    && release_after.is_none()
                {
                    if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
                        self.enhanced.settle_grant(g);
                    } else {
                        self.enhanced.release_refused(&g).await;
                    }
                }
                if let Some(pull) = release_after {
                    // Atlantis deletes every lock of the pull when an /api call ends.
                    self.enhanced
                        .release_pull(&pull, ReleaseReason::Unlock)
                        .await;
                }
                decided(answer, Verdict::Granted { pull }, EnginePath::Enhanced)
            }
            Ok(Decision::Queued(reply)) => {
                let verdict = Verdict::Queued {
                    pull,
                    waiter: reply.waiter_id.clone(),
                    position: reply.first_position(),
                };
                decided(Ok(queued_response(&reply)), verdict, EnginePath::Enhanced)
            }
            Ok(Decision::Legacy(reason)) => {
                // The fallback counter counts a backend that is down, not the gate's other reasons.
                if reason == LegacyReason::BreakerOpen {
                    self.metrics.legacy_fallback();
                }
                let answer = inner.call(Request::from_parts(parts, body)).await;
                decided(answer, Verdict::Legacy { pull, reason }, EnginePath::Legacy)
            }
            Err(e) => {
                let verdict = Verdict::EngineError { pull };
                // A full queue or a memory cap is answered the legacy way: Atlantis says
                // "locked", nothing is silent.
                let refused = e.queue_refusal();
                if let Some(reason) = refused {
                    self.metrics.queue_refused(reason);
                }
                if refused.is_some() || self.enhanced.settings().legacy_fallback {
                    self.metrics.legacy_fallback();
                    tracing::warn!(error = %e, pull = %acq.pull, "engine unavailable: legacy path");
                    let answer = inner.call(Request::from_parts(parts, body)).await;
                    return decided(answer, verdict, EnginePath::Legacy);
                }
                let failed = Err(ProxyError::EngineUnavailable(e.to_string()).into());
                decided(failed, verdict, EnginePath::Enhanced)
            }
        }
    }
}

/// The engine's answer, on the engine span.
fn record(span: &tracing::Span, decision: &Result<Decision, crate::engine::EngineError>) {
    let keys = |keys: &mut dyn Iterator<Item = String>| keys.collect::<Vec<_>>().join(",");
    match decision {
        Ok(Decision::Forward { grant, .. }) => {
            span.record(spans::attr::DECISION, "granted");
            if let Some(g) = grant {
                span.record(spans::attr::FENCING_TOKEN, g.fencing_token);
                let keys = keys(&mut g.locks.iter().map(ToString::to_string));
                span.record(spans::attr::LOCK_KEYS, keys.as_str());
            }
        }
        Ok(Decision::Queued(reply)) => {
            span.record(spans::attr::DECISION, "queued");
            span.record(
                spans::attr::WAITER_ID,
                tracing::field::display(&reply.waiter_id),
            );
            if let Some(pos) = reply.first_position() {
                span.record(spans::attr::QUEUE_POSITION, pos);
            }
            let keys = keys(&mut reply.locks.iter().map(|l| l.key.to_string()));
            span.record(spans::attr::LOCK_KEYS, keys.as_str());
        }
        Ok(Decision::Legacy(reason)) => {
            span.record(spans::attr::DECISION, reason.as_str());
        }
        Err(_) => {
            span.record(spans::attr::DECISION, "engine_error");
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Headers that carry a VCS's delivery id, in the order VCSs are detected (ATLANTIS.md §3).
const DELIVERY_HEADERS: [&str; 6] = [
    "x-gitea-delivery",
    "x-github-delivery",
    "x-gitlab-event-uuid",
    "x-request-uuid",
    "x-request-id",
    "x-vss-activityid",
];

/// The request's identity for idempotent enqueue (§10.5): the VCS delivery id, else a hash of
/// the body.
fn request_identity(parts: &Parts, bytes: &Bytes) -> String {
    use sha2::Digest;
    for name in DELIVERY_HEADERS {
        if let Some(v) = parts.headers.get(name).and_then(|v| v.to_str().ok())
            && !v.trim().is_empty()
            && v.len() <= 128
        {
            return format!("{name}:{}", v.trim());
        }
    }
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The request as it would be forwarded now, kept for a later replay.
fn stored_request(parts: &Parts, bytes: &Bytes, client: SocketAddr) -> StoredRequest {
    let mut head = Request::from_parts(parts.clone(), ());
    prepare(&mut head, client, false);
    let (prepared, ()) = head.into_parts();
    let mut stored = StoredRequest::capture(&prepared, bytes);
    // The replay continues this request's trace (the server span is the current one).
    stored.traceparent = telemetry::traceparent_of(&tracing::Span::current());
    stored
}

/// The `202` a queued request is answered with.
fn queued_response(reply: &QueuedReply) -> Response<ProxyBody> {
    let mut resp = Response::new(full(reply.to_body()));
    *resp.status_mut() = StatusCode::ACCEPTED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(PROXY_HEADER, HeaderValue::from_static("queued"));
    resp
}
