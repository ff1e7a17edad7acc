//! When the split moves repositories from enhanced back to legacy (lowered, rollback), their
//! waiters go to Atlantis at once, as the legacy path would have done; their engine locks stay
//! known (the reconciler keeps them in step).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::LockEngine;
use crate::route::{Router, SplitState};
use crate::vocab::EnginePath;

/// Follows the split and hands the waiters of repositories that left the enhanced path on.
pub struct SplitWatcher {
    engine: Arc<dyn LockEngine>,
    router: Arc<Router>,
}

impl SplitWatcher {
    /// Watches `router`'s changes; removes waiters from `engine`.
    pub fn new(engine: Arc<dyn LockEngine>, router: Arc<Router>) -> Self {
        Self { engine, router }
    }

    /// Runs until `stop`.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut changes = self.router.changes();
            let mut previous = changes.borrow_and_update().clone();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
                let current = changes.borrow_and_update().clone();
                self.moved(&previous, &current).await;
                previous = current;
            }
        })
    }

    /// Hands on the waiters of every repository enhanced under `before` and legacy under `now`.
    async fn moved(&self, before: &SplitState, now: &SplitState) {
        let Ok(queues) = self.engine.list_queues().await else {
            return;
        };
        let mut handed = 0usize;
        for q in &queues {
            let repo = &q.key.repo;
            let was = self.router.route_under(repo, before).path;
            let is = self.router.route_under(repo, now).path;
            if was != EnginePath::Enhanced || is != EnginePath::Legacy {
                continue;
            }
            for w in &q.waiters {
                if matches!(self.engine.remove_waiter(w.id.clone()).await, Ok(true)) {
                    handed += 1;
                }
            }
        }
        if handed > 0 {
            tracing::info!(
                waiters = handed,
                "repositories moved to the legacy path: their waiters go to Atlantis now"
            );
        }
    }
}
