//! Shadow mode (DESIGN.md §5): legacy decides; the shadow engine evaluates the same operation in
//! its own keyspace, and the two decisions are compared. Spawned and bounded: never delays or
//! changes the primary response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::oneshot;

use super::{Needs, Shadow};
use crate::classify::{Acquire, LockKey, PullRef};
use crate::engine::AcquireRequest;
use crate::route::shadow::{
    LegacyOutcome, ShadowOp, evaluate, legacy_outcome_from_api, legacy_outcome_from_delete,
    observe_legacy,
};
use crate::telemetry;
use crate::upstream::Upstream;

/// How long an `/api/*` answer's body may take to arrive for the comparison.
const API_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What legacy's outcome will be read from.
#[derive(Debug)]
pub enum LegacyEvidence {
    /// Atlantis's lock table shortly after (webhooks).
    LockTable,
    /// The status of a `DELETE /locks` answer.
    DeleteStatus(StatusCode),
    /// An `/api/plan` or `/api/apply` answer: its status and, once streamed, its first bytes.
    ApiAnswer(StatusCode, oneshot::Receiver<Bytes>),
}

/// Runs the shadow comparisons: owns the shadow engine and what reading legacy's outcome takes.
pub struct ShadowRunner {
    needs: Arc<Needs>,
    shadow: Shadow,
    upstream: Upstream,
    settle: Duration,
}

impl ShadowRunner {
    /// Compares in `shadow`'s engine, finding locks with `needs` and legacy's outcome through
    /// `upstream`, `settle` after a webhook.
    pub fn new(needs: Arc<Needs>, shadow: Shadow, upstream: Upstream, settle: Duration) -> Self {
        Self {
            needs,
            shadow,
            upstream,
            settle,
        }
    }

    /// Shadows an acquire that legacy handled.
    pub fn shadow_acquire(self: &Arc<Self>, acq: Acquire) {
        let this = self.clone();
        let trace = telemetry::traceparent_of(&tracing::Span::current());
        self.spawn_shadow(async move {
            let Some(g) = this.needs.gated(&acq).await else {
                return;
            };
            let op = ShadowOp::Acquire(AcquireRequest {
                locks: g.locks,
                pull: acq.pull.clone(),
                user: acq.user.clone(),
                priority: g.priority,
                hold_timeout: g.hold_timeout,
                request_id: None,
            });
            this.compare(op, LegacyEvidence::LockTable, trace).await;
        });
    }

    /// Shadows an `/api/plan` or `/api/apply` that legacy answered with `status`; `body` brings
    /// the answer's first bytes once the client has read them. Atlantis releases the pull's
    /// locks when the call ends, and so does the shadow engine after comparing.
    pub fn shadow_acquire_api(
        self: &Arc<Self>,
        acq: Acquire,
        status: StatusCode,
        body: oneshot::Receiver<Bytes>,
    ) {
        let this = self.clone();
        let trace = telemetry::traceparent_of(&tracing::Span::current());
        self.spawn_shadow(async move {
            let Some(g) = this.needs.gated(&acq).await else {
                return;
            };
            let op = ShadowOp::Acquire(AcquireRequest {
                locks: g.locks,
                pull: acq.pull.clone(),
                user: acq.user.clone(),
                priority: g.priority,
                hold_timeout: g.hold_timeout,
                request_id: None,
            });
            this.compare(op, LegacyEvidence::ApiAnswer(status, body), trace)
                .await;
            let release = ShadowOp::ReleasePull { pull: acq.pull };
            if let Err(e) = evaluate(this.shadow.engine.as_ref(), &release).await {
                tracing::debug!(error = %e, "shadow engine failed to end an /api call");
            }
        });
    }

    /// Shadows a release that legacy handled.
    pub fn shadow_release_pull(self: &Arc<Self>, pull: PullRef) {
        let this = self.clone();
        let trace = telemetry::traceparent_of(&tracing::Span::current());
        self.spawn_shadow(async move {
            this.compare(
                ShadowOp::ReleasePull { pull },
                LegacyEvidence::LockTable,
                trace,
            )
            .await;
        });
    }

    /// Shadows a `DELETE /locks` that legacy answered with `status`.
    pub fn shadow_release_key(self: &Arc<Self>, key: LockKey, status: StatusCode) {
        let this = self.clone();
        let trace = telemetry::traceparent_of(&tracing::Span::current());
        self.spawn_shadow(async move {
            this.compare(
                ShadowOp::ReleaseKey { key },
                LegacyEvidence::DeleteStatus(status),
                trace,
            )
            .await;
        });
    }

    fn spawn_shadow(&self, work: impl Future<Output = ()> + Send + 'static) {
        if !self.shadow.spawner.spawn(work) {
            tracing::debug!("shadow saturated: evaluation dropped");
        }
    }

    /// Evaluates `op` in the shadow engine at once (so its state follows traffic in order), then
    /// reads legacy's outcome and records the comparison.
    async fn compare(&self, op: ShadowOp, evidence: LegacyEvidence, trace: Option<String>) {
        let enhanced = match evaluate(self.shadow.engine.as_ref(), &op).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "shadow engine failed; comparison skipped");
                return;
            }
        };
        let legacy = match evidence {
            LegacyEvidence::DeleteStatus(status) => legacy_outcome_from_delete(status),
            LegacyEvidence::ApiAnswer(status, body) => {
                match tokio::time::timeout(API_ANSWER_WAIT, body).await {
                    Ok(Ok(bytes)) => legacy_outcome_from_api(status, &bytes),
                    // The answer never finished: what Atlantis did is not known.
                    _ => LegacyOutcome::Unknown,
                }
            }
            LegacyEvidence::LockTable => {
                observe_legacy(
                    &self.upstream,
                    &op,
                    None,
                    self.settle,
                    Duration::from_secs(5),
                )
                .await
            }
        };
        let trace_id = trace.and_then(|t| t.split('-').nth(1).map(str::to_string));
        let kind = self
            .shadow
            .spawner
            .recorder()
            .record(&op, legacy, enhanced, trace_id);
        tracing::debug!(kind = kind.as_str(), "shadow compared");
    }
}
