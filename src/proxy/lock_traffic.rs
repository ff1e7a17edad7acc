//! Lock traffic after classification: route it (legacy or enhanced), gate it, forward it, and
//! mirror releases in the engine.

use std::net::SocketAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tracing::Instrument;

use super::{ProxyError, ProxyState, forward};
use crate::classify::{Acquire, GlobalApplyAction, Operation, ReleaseCause};
use crate::enhanced::{ADMITTED_HEADER, Decision, QueuedReply};
use crate::route::EnginePath;
use crate::telemetry::{self, ReleaseReason, spans};
use crate::upstream::replay::StoredRequest;
use crate::upstream::{ProxyBody, full};
use crate::vocab::LegacyReason;

/// Marks answers the proxy makes on purpose (not errors), e.g. `x-lock-proxy: queued`.
pub const PROXY_HEADER: &str = "x-lock-proxy";

/// A carried request: its answer (or the error the rescue turns into one) and the path that
/// decided it, for the request metric.
pub struct Carried {
    /// Atlantis's answer, the proxy's own (`202`, `429`), or why there is none.
    pub answer: Result<Response<ProxyBody>, ProxyError>,
    /// `Enhanced` once the engine decided, even if Atlantis then failed to answer.
    pub path: EnginePath,
}

impl Carried {
    /// Decided by Atlantis alone.
    pub fn legacy(answer: Result<Response<ProxyBody>, ProxyError>) -> Self {
        Self {
            answer,
            path: EnginePath::Legacy,
        }
    }

    /// Decided by the engine.
    fn enhanced(answer: Result<Response<ProxyBody>, ProxyError>) -> Self {
        Self {
            answer,
            path: EnginePath::Enhanced,
        }
    }
}

/// Carries one classified request; returns the answer and the path that decided it.
pub async fn carry(
    state: &ProxyState,
    client: SocketAddr,
    parts: Parts,
    bytes: Bytes,
    op: Operation,
) -> Carried {
    let span = tracing::Span::current();
    span.record(spans::attr::OPERATION, op.kind());
    if let Some(repo) = op.repo() {
        span.record(spans::attr::REPO, repo);
    }
    if let Some(limited) = rate_limited(state, client, &parts.headers, &op) {
        return Carried::legacy(Ok(limited));
    }
    match op {
        Operation::Acquire(acq) => acquire(state, client, parts, bytes, acq).await,
        Operation::ReleasePull { pull, cause } => {
            // Nothing of this pull is sent to Atlantis while its release is under way (bounded
            // by `replay-wait` on the sending side).
            state.enhanced.set_unlocking(&pull, true);
            state
                .enhanced
                .replays_sent(&pull, std::time::Duration::from_secs(10))
                .await;
            // Nor does anyone's hand-off count on the pull's locks until the release is carried out.
            state.enhanced.fence_release(&pull).await;
            let resp = send(state, client, parts, bytes).await;
            let mut lifted_later = false;
            // Mirror the release only once Atlantis did release (§10.4), on every path, so the
            // engine never keeps a lock Atlantis let go nor frees one Atlantis keeps.
            if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                if state.router.route(&pull.repo).shadow {
                    state.enhanced.shadow_release_pull(pull.clone());
                }
                match cause {
                    // Atlantis cleans up a closed pull before it answers (403 when it failed).
                    ReleaseCause::PullClosed => state.enhanced.release_closed_pull(&pull).await,
                    // Atlantis answers an `unlock` before acting and may still refuse it: the
                    // engine follows its lock table, in the background.
                    ReleaseCause::UnlockComment => {
                        state
                            .enhanced
                            .release_pull_when_unlocked(pull.clone())
                            .await;
                        lifted_later = true;
                    }
                }
            }
            if !lifted_later {
                state.enhanced.lift_fence(&pull).await;
            }
            state.enhanced.set_unlocking(&pull, false);
            Carried::legacy(resp)
        }
        Operation::ReleaseKey { key } => {
            let holder = state.enhanced.fence_key(&key).await;
            let resp = send(state, client, parts, bytes).await;
            // Deleted (200), or Atlantis has no such lock (404): the engine must not keep it.
            if resp
                .as_ref()
                .is_ok_and(|r| r.status().is_success() || r.status() == StatusCode::NOT_FOUND)
            {
                state
                    .enhanced
                    .release_key(&key, ReleaseReason::Unlock)
                    .await;
            }
            // Atlantis deletes a lock before it answers.
            if let Some(holder) = holder {
                state.enhanced.lift_fence(&holder).await;
            }
            Carried::legacy(resp)
        }
        Operation::GlobalApply(action) => {
            let resp = send(state, client, parts, bytes).await;
            if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                let locked = matches!(action, GlobalApplyAction::Lock);
                state.enhanced.set_global_apply_locked(locked);
                tracing::info!(locked, "global apply lock changed");
            }
            Carried::legacy(resp)
        }
        Operation::ListLocks | Operation::Passthrough { .. } => {
            Carried::legacy(send(state, client, parts, bytes).await)
        }
    }
}

async fn acquire(
    state: &ProxyState,
    client: SocketAddr,
    parts: Parts,
    bytes: Bytes,
    acq: Acquire,
) -> Carried {
    let route = {
        let _s = spans::route().entered();
        state.router.route(&acq.pull.repo)
    };
    let span = tracing::Span::current();
    span.record(spans::attr::PULL, acq.pull.number);
    span.record(spans::attr::ENGINE_PATH, route.path.as_str());
    if route.path == EnginePath::Legacy {
        let resp = send(state, client, parts, bytes).await;
        if route.shadow {
            // Legacy decided; the engine evaluates the same request in its shadow keyspace.
            state.enhanced.shadow_acquire(acq);
        }
        return Carried::legacy(resp);
    }
    let mut stored = stored_request(&parts, &bytes, client);
    // Nothing secret is kept at rest: the replay takes the secrets from the configuration.
    stored.redact(state.upstream.secrets());
    stored.vcs = Some(acq.vcs.as_str().to_string());
    stored.command = Some(acq.command.as_typed().to_string());
    let request_id = request_identity(&parts, &bytes);
    let decision = state
        .enhanced
        .acquire(&acq, &stored, Some(request_id))
        .instrument(spans::engine("acquire"))
        .await;
    match decision {
        Ok(Decision::Forward {
            release_after,
            grant,
        }) => {
            span.record(spans::attr::DECISION, "granted");
            let mut parts = parts;
            if let Some(g) = &grant
                && let Ok(v) = HeaderValue::from_str(&g.fencing_token.to_string())
            {
                parts.headers.insert(ADMITTED_HEADER, v);
            }
            let resp = send(state, client, parts, bytes).await;
            // A grant whose request Atlantis refused (or never answered) must not stay (§10.4).
            if let Some(g) = grant
                && release_after.is_none()
            {
                if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                    state.enhanced.settle_grant(g);
                } else {
                    state.enhanced.release_refused(&g).await;
                }
            }
            if let Some(pull) = release_after {
                // Atlantis deletes every lock of the pull when an /api call ends.
                state
                    .enhanced
                    .release_pull(&pull, ReleaseReason::Unlock)
                    .await;
            }
            Carried::enhanced(resp)
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
            Carried::enhanced(Ok(queued_response(&reply)))
        }
        Ok(Decision::Legacy(reason)) => {
            span.record(spans::attr::DECISION, reason.as_str());
            // The fallback counter counts a backend that is down, not the gate's other reasons.
            if reason == LegacyReason::BreakerOpen {
                state.metrics.legacy_fallback();
            }
            Carried::legacy(send(state, client, parts, bytes).await)
        }
        Err(e) => {
            span.record(spans::attr::DECISION, "engine_error");
            // A full queue or a memory cap is answered the legacy way: Atlantis says "locked",
            // nothing is silent.
            let refused = e.queue_refusal();
            if let Some(reason) = refused {
                state.metrics.queue_refused(reason);
            }
            if refused.is_some() || state.enhanced.settings().legacy_fallback {
                state.metrics.legacy_fallback();
                tracing::warn!(error = %e, pull = %acq.pull, "engine unavailable: legacy path");
                return Carried::legacy(send(state, client, parts, bytes).await);
            }
            Carried::enhanced(Err(ProxyError::EngineUnavailable(e.to_string())))
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

/// The 429 for a client or repository over its rate limit, if any.
fn rate_limited(
    state: &ProxyState,
    client: SocketAddr,
    headers: &http::HeaderMap,
    op: &Operation,
) -> Option<Response<ProxyBody>> {
    if matches!(op, Operation::Passthrough { .. } | Operation::ListLocks) {
        return None;
    }
    if let Err(retry) = state.limits.check_client(client.ip(), headers) {
        return Some(retry.response("client"));
    }
    let repo = op.repo()?;
    state
        .limits
        .check_repo(repo)
        .err()
        .map(|retry| retry.response("repository"))
}

async fn send(
    state: &ProxyState,
    client: SocketAddr,
    parts: Parts,
    bytes: Bytes,
) -> Result<Response<ProxyBody>, ProxyError> {
    forward::forward(state, client, Request::from_parts(parts, full(bytes))).await
}

/// The request as it would be forwarded now, kept for a later replay.
fn stored_request(parts: &Parts, bytes: &Bytes, client: SocketAddr) -> StoredRequest {
    let mut req = Request::from_parts(parts.clone(), ());
    forward::prepare(&mut req, client, false);
    let (prepared, ()) = req.into_parts();
    let mut stored = StoredRequest::capture(&prepared, bytes);
    stored.traceparent = telemetry::traceparent_of(&tracing::Span::current());
    stored
}

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
