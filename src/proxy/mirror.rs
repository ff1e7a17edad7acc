//! The release layer: a close, an `atlantis unlock`, a `DELETE /locks` or the global apply lock
//! goes to Atlantis, and the engine follows only once Atlantis has acted (DESIGN.md §10.4), on
//! every path, so the engine never keeps a lock Atlantis let go nor frees one it keeps. While a
//! release is under way no hand-off may count on the pull's locks (the release fence).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

use super::Failure;
use super::facts::{Answer, AnswerFuture, Inner, take_ready};
use crate::classify::{GlobalApplyAction, Operation, ReleaseCause};
use crate::enhanced::Enhanced;
use crate::telemetry::ReleaseReason;
use crate::upstream::ProxyBody;
use crate::vocab::{LockKey, PullRef};

/// How long a release waits for the pull's own replays already on their way to Atlantis.
const REPLAYS_SENT_WAIT: Duration = Duration::from_secs(10);

/// Mirrors releases into the engine.
#[derive(Clone)]
pub struct ReleaseLayer {
    enhanced: Arc<Enhanced>,
}

impl ReleaseLayer {
    /// Mirrors into `enhanced`'s engine.
    pub fn new(enhanced: Arc<Enhanced>) -> Self {
        Self { enhanced }
    }
}

impl<S> Layer<S> for ReleaseLayer {
    type Service = Release<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Release {
            inner,
            enhanced: self.enhanced.clone(),
        }
    }
}

/// See [`ReleaseLayer`].
#[derive(Clone)]
pub struct Release<S> {
    inner: S,
    enhanced: Arc<Enhanced>,
}

impl<S> Service<Request<ProxyBody>> for Release<S>
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
        let mirrored = match req.extensions().get::<Operation>() {
            Some(Operation::ReleasePull { pull, cause }) => Mirrored::Pull(pull.clone(), *cause),
            Some(Operation::ReleaseKey { key }) => Mirrored::Key(key.clone()),
            Some(Operation::GlobalApply(action)) => Mirrored::GlobalApply(*action),
            _ => return Box::pin(self.inner.call(req)),
        };
        let inner = take_ready(&mut self.inner);
        let enhanced = self.enhanced.clone();
        Box::pin(async move {
            match mirrored {
                Mirrored::Pull(pull, cause) => {
                    release_pull(&enhanced, inner, req, pull, cause).await
                }
                Mirrored::Key(key) => release_key(&enhanced, inner, req, key).await,
                Mirrored::GlobalApply(action) => global_apply(&enhanced, inner, req, action).await,
            }
        })
    }
}

/// What the engine has to follow.
enum Mirrored {
    Pull(PullRef, ReleaseCause),
    Key(LockKey),
    GlobalApply(GlobalApplyAction),
}

fn succeeded(answer: &Answer) -> bool {
    answer.as_ref().is_ok_and(|r| r.status().is_success())
}

async fn release_pull<S>(
    enhanced: &Arc<Enhanced>,
    mut inner: S,
    req: Request<ProxyBody>,
    pull: PullRef,
    cause: ReleaseCause,
) -> Answer
where
    S: Inner,
{
    // Nothing of this pull is sent to Atlantis while its release is under way (bounded by
    // `replay-wait` on the sending side).
    enhanced.set_unlocking(&pull, true);
    enhanced.replays_sent(&pull, REPLAYS_SENT_WAIT).await;
    // Nor does anyone's hand-off count on the pull's locks until the release is carried out.
    enhanced.fence_release(&pull).await;
    let answer = inner.call(req).await;
    let mut lifted_later = false;
    if succeeded(&answer) {
        match cause {
            // Atlantis cleans up a closed pull before it answers (403 when it failed).
            ReleaseCause::PullClosed => enhanced.release_closed_pull(&pull).await,
            // Atlantis answers an `unlock` before acting and may still refuse it: the engine
            // follows its lock table, in the background, and lifts the fence when done.
            ReleaseCause::UnlockComment => {
                enhanced.release_pull_when_unlocked(pull.clone()).await;
                lifted_later = true;
            }
        }
    }
    if !lifted_later {
        enhanced.lift_fence(&pull).await;
    }
    enhanced.set_unlocking(&pull, false);
    answer
}

async fn release_key<S>(
    enhanced: &Arc<Enhanced>,
    mut inner: S,
    req: Request<ProxyBody>,
    key: LockKey,
) -> Answer
where
    S: Inner,
{
    let holder = enhanced.fence_key(&key).await;
    let answer = inner.call(req).await;
    // Deleted (200), or Atlantis has no such lock (404): the engine must not keep it.
    if answer
        .as_ref()
        .is_ok_and(|r| r.status().is_success() || r.status() == StatusCode::NOT_FOUND)
    {
        enhanced.release_key(&key, ReleaseReason::Unlock).await;
    }
    // Atlantis deletes a lock before it answers.
    if let Some(holder) = holder {
        enhanced.lift_fence(&holder).await;
    }
    answer
}

async fn global_apply<S>(
    enhanced: &Arc<Enhanced>,
    mut inner: S,
    req: Request<ProxyBody>,
    action: GlobalApplyAction,
) -> Answer
where
    S: Inner,
{
    let answer = inner.call(req).await;
    if succeeded(&answer) {
        let locked = matches!(action, GlobalApplyAction::Lock);
        enhanced.set_global_apply_locked(locked);
        tracing::info!(locked, "global apply lock changed");
    }
    answer
}
