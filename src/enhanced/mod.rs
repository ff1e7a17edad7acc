//! enhanced: the enhanced path (DESIGN.md §1–§3) — gate lock requests through the engine,
//! queue contended ones, replay them when granted, and keep the engine in step with Atlantis.
//!
//! ```text
//! Acquire ─► resolve locks ─► priority ─► engine.acquire_or_enqueue ─┬─ granted ─► forward
//!                                                                    └─ queued  ─► 202 (webhook)
//! release (forwarded first) ─► engine release ─► grants ─► dispatcher ─► wait until Atlantis
//!                                                       agrees ─► replay byte-for-byte ─► confirm
//! reconciler: GET /api/locks every lock-sync-interval ─► adopt unknown, release vanished
//! ```

mod dispatcher;
mod gate;
mod gauges;
mod holders;
mod needs;
mod notices;
mod peers;
mod priority;
mod reconciler;
mod reply;
mod shadowing;
mod split_watch;

use std::sync::Arc;
use std::time::Duration;

pub use dispatcher::{ADMITTED_HEADER, HANDOFF_HEADER};
pub use gate::{Admitted, Decision};
pub use gauges::EngineGauges;
pub use needs::{Gated, Needs};
pub use priority::LabelPattern;
pub use reply::{QueuedLock, QueuedReply, ReplyStatus};
pub use shadowing::ShadowRunner;
pub use split_watch::SplitWatcher;

use crate::config::{Config, RetryConfig};
use crate::engine::LockEngine;
use crate::notify::Notifier;
use crate::route::CircuitBreaker;
use crate::route::shadow::ShadowSpawner;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// What the enhanced path needs to know beyond the engine's own settings.
#[derive(Clone, Debug)]
pub struct GateSettings {
    /// How long `/api/*` callers wait for a contended lock before their request is forwarded anyway.
    pub queue_timeout: Duration,
    /// How often a waiting `/api/*` caller retries the engine.
    pub api_poll: Duration,
    /// How long after a shadowed webhook Atlantis's lock table is read.
    pub shadow_settle: Duration,
    /// Replay retries toward Atlantis.
    pub retry: RetryConfig,
    /// PR label pattern that sets priority.
    pub labels: LabelPattern,
    /// Reconciler period.
    pub lock_sync_interval: Duration,
    /// How long an engine lock may be missing from Atlantis before it is released.
    pub lock_sync_grace: Duration,
    /// How long a replay waits for Atlantis to show the released lock gone.
    pub replay_wait: Duration,
    /// On engine failure, forward on the legacy path instead of answering 503.
    pub legacy_fallback: bool,
    /// Atlantis's VCS hostnames: which VCS a pull in its lock table belongs to.
    pub hosts: crate::resolve::RepoHosts,
}

impl GateSettings {
    /// The settings from the validated config.
    pub fn from_config(c: &Config) -> Self {
        Self {
            queue_timeout: c.enhanced.queue_timeout,
            api_poll: c.enhanced.api_poll_interval,
            shadow_settle: c.enhanced.shadow_settle,
            retry: c.enhanced.retry.clone(),
            labels: LabelPattern::new(&c.enhanced.priority_label_pattern),
            lock_sync_interval: c.atlantis.lock_sync_interval,
            lock_sync_grace: c.atlantis.lock_sync_grace,
            replay_wait: c.enhanced.replay_wait,
            legacy_fallback: c.enhanced.legacy_fallback,
            hosts: c.atlantis.hosts.clone(),
        }
    }
}

/// The enhanced path's shared state.
pub struct Enhanced {
    /// The lock engine.
    pub engine: Arc<dyn LockEngine>,
    upstream: Upstream,
    needs: Arc<Needs>,
    metrics: Arc<Metrics>,
    settings: GateSettings,
    notifier: Option<Arc<Notifier>>,
    notes: notices::Notes,
    breaker: Arc<CircuitBreaker>,
    global_apply_locked: std::sync::atomic::AtomicBool,
    /// False from an engine failure until a reconciler pass repaired the engine afterwards.
    synced: std::sync::atomic::AtomicBool,
    /// Set by the first reconciler pass.
    started: std::sync::atomic::AtomicBool,
    /// When this replica last forwarded lock traffic on the legacy path because of the engine
    /// (down, timed out, or not repaired yet): the repair pass waits until it could have landed.
    last_legacy: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Releases Atlantis made that the engine could not mirror yet (retried by the reconciler).
    pending_releases: std::sync::Mutex<Vec<PendingRelease>>,
    /// Requests being forgotten in the engine (bounded).
    forgetting: Arc<std::sync::atomic::AtomicUsize>,
    /// Pulls whose release (close or unlock) is under way, with how many: their grants wait.
    unlocking: std::sync::Mutex<std::collections::HashMap<crate::classify::PullRef, usize>>,
    /// Replays this replica is sending now, per pull (taken under the `unlocking` lock, so a
    /// release either waits for a replay already leaving or stops it from leaving).
    sending: std::sync::Mutex<std::collections::HashMap<crate::classify::PullRef, usize>>,
    /// When this replica last finished sending a replay, per pull (pruned past the settle
    /// window): a close of the pull keeps the locks such a replay may still take.
    last_sent:
        std::sync::Mutex<std::collections::HashMap<crate::classify::PullRef, tokio::time::Instant>>,
    /// Dispatches this replica is handling now.
    handling: std::sync::Mutex<std::collections::HashSet<crate::engine::WaiterId>>,
    /// Grants forwarded directly whose command Atlantis has not carried out yet (it answers
    /// webhooks first): lock → the holder and token. An unlock is not judged on them until then.
    unsettled: std::sync::Mutex<
        std::collections::HashMap<crate::classify::LockKey, (crate::classify::PullRef, u64)>,
    >,
    /// The other replicas sharing the engine, from their leases (see [`peers`]).
    peers: peers::Peers,
    /// Lock requests waiting to go past the engine: the repair waits for them.
    bypassing: std::sync::atomic::AtomicUsize,
    /// When this replica last fell out of step (a bypass waits for grants sent before it).
    lost_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// A release Atlantis made that the engine has not mirrored yet.
#[derive(Clone, Debug)]
pub enum PendingRelease {
    /// Every lock of a pull.
    Pull(crate::classify::PullRef, crate::telemetry::ReleaseReason),
    /// One lock.
    Key(crate::classify::LockKey, crate::telemetry::ReleaseReason),
    /// One lock, only while the pull still holds it under this fencing token (an unlock: a
    /// newer grant of the lock stays).
    Grant(crate::classify::PullRef, crate::classify::LockKey, u64),
}

/// How long the repair after an engine outage waits for lock traffic forwarded past the engine
/// to show in Atlantis's lock table (what lands later is adopted on the next pass).
pub(crate) const LEGACY_SETTLE: Duration = Duration::from_secs(2);

/// Most pending releases kept while the engine is down (the reconciler repairs the rest).
const MAX_PENDING_RELEASES: usize = 10_000;

/// Most requests being forgotten at once.
const MAX_FORGETTING: usize = 10_000;

/// How long a forget is retried while the engine does not answer.
const FORGET_RETRY_FOR: Duration = Duration::from_secs(600);

/// The shadow side: a separate engine keyspace that evaluates legacy traffic, and the recorder.
pub struct Shadow {
    /// The shadow engine (its own key prefix).
    pub engine: Arc<dyn LockEngine>,
    /// Bounded spawner that drops (and counts) when saturated.
    pub spawner: ShadowSpawner,
}

/// The parts the enhanced path is built from.
pub struct Parts {
    /// The lock engine.
    pub engine: Arc<dyn LockEngine>,
    /// Client to Atlantis.
    pub upstream: Upstream,
    /// Which locks a request takes.
    pub needs: Arc<Needs>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Gate settings.
    pub settings: GateSettings,
    /// Pull-request comments, when a VCS token is configured.
    pub notifier: Option<Arc<Notifier>>,
    /// Breaker around engine calls.
    pub breaker: Arc<CircuitBreaker>,
}

impl Enhanced {
    /// Wires the enhanced path.
    pub fn new(p: Parts) -> Self {
        Self {
            peers: peers::Peers::new(p.engine.shared()),
            bypassing: std::sync::atomic::AtomicUsize::new(0),
            lost_at: std::sync::Mutex::new(None),
            engine: p.engine,
            upstream: p.upstream,
            needs: p.needs,
            metrics: p.metrics,
            settings: p.settings,
            notifier: p.notifier,
            notes: notices::Notes::default(),
            breaker: p.breaker,
            global_apply_locked: std::sync::atomic::AtomicBool::new(false),
            // A replica starting knows nothing of what Atlantis holds: its first reconciler
            // pass adopts Atlantis's locks before anyone is queued or granted past them.
            synced: std::sync::atomic::AtomicBool::new(false),
            started: std::sync::atomic::AtomicBool::new(false),
            pending_releases: std::sync::Mutex::new(Vec::new()),
            last_legacy: std::sync::Mutex::new(None),
            forgetting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            unlocking: std::sync::Mutex::new(std::collections::HashMap::new()),
            last_sent: std::sync::Mutex::new(std::collections::HashMap::new()),
            unsettled: std::sync::Mutex::new(std::collections::HashMap::new()),
            sending: std::sync::Mutex::new(std::collections::HashMap::new()),
            handling: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn begin_handling(&self, id: &crate::engine::WaiterId) -> bool {
        self.handling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone())
    }

    fn end_handling(&self, id: &crate::engine::WaiterId) {
        self.handling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// How long a grant's request may still be on its way through Atlantis after it answered.
    fn settle_window(&self) -> Duration {
        self.settings
            .replay_wait
            .min(self.engine.settings().dispatch_lease / 2)
    }

    /// Whether `key`'s direct grant to `pull` is still unsettled (not yet seen in Atlantis).
    fn is_unsettled(
        &self,
        key: &crate::classify::LockKey,
        pull: &crate::classify::PullRef,
    ) -> bool {
        self.unsettled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .is_some_and(|(p, _)| p == pull)
    }

    /// A direct grant Atlantis accepted the request of: until Atlantis lists its locks for the
    /// pull (bounded by `replay-wait`), an unlock of the pull does not release them.
    pub fn settle_grant(self: &Arc<Self>, grant: Admitted) {
        if grant.locks.is_empty() {
            return;
        }
        {
            let mut u = self
                .unsettled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for k in &grant.locks {
                u.insert(k.clone(), (grant.pull.clone(), grant.fencing_token));
            }
        }
        // A re-plan of a lock Atlantis already lists for the pull cannot be seen to land:
        // it stays unsettled for a fixed window, as long as a hand-off's.
        let replanned = grant.locks.len() > grant.taken.len();
        let window = self.settle_window();
        let this = self.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let deadline = start + this.settings.replay_wait;
            let mut delay = Duration::from_millis(10);
            let mut taken_seen = grant.taken.is_empty();
            while tokio::time::Instant::now() + delay <= deadline {
                tokio::time::sleep(delay).await;
                if !taken_seen {
                    match crate::upstream::atlantis_api::list_locks(
                        &this.upstream,
                        Duration::from_secs(5),
                    )
                    .await
                    {
                        Ok(locks) => {
                            let locks = this.parse_locks(&locks);
                            taken_seen = grant.taken.iter().all(|k| {
                                locks.iter().any(|(lk, p, _)| lk == k && p.is(&grant.pull))
                            });
                        }
                        Err(crate::upstream::atlantis_api::LockListError::Unsupported) => {
                            taken_seen = true
                        }
                        Err(_) => {}
                    }
                }
                if taken_seen && (!replanned || start.elapsed() >= window) {
                    break;
                }
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            let mut u = this
                .unsettled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for k in &grant.locks {
                if u.get(k)
                    .is_some_and(|(p, t)| *p == grant.pull && *t == grant.fencing_token)
                {
                    u.remove(k);
                }
            }
        });
    }

    /// Marks a pull whose release (close or unlock) is on its way to Atlantis: its grants and
    /// hand-offs are not sent meanwhile. Releases nest: each `true` is ended by one `false`.
    pub(crate) fn set_unlocking(&self, pull: &crate::classify::PullRef, on: bool) {
        let mut u = self
            .unlocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if on {
            *u.entry(pull.clone()).or_default() += 1;
        } else if let Some(n) = u.get_mut(pull) {
            *n -= 1;
            if *n == 0 {
                u.remove(pull);
            }
        }
    }

    /// Whether this replica sent a replay of `pull` within `window`.
    fn sent_within(&self, pull: &crate::classify::PullRef, window: Duration) -> bool {
        self.last_sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pull)
            .is_some_and(|t| t.elapsed() < window)
    }

    /// Starts sending a replay of `pull`; false (nothing may leave) while its release is under
    /// way. The returned guard ends it.
    fn begin_sending(&self, pull: &crate::classify::PullRef) -> Option<SendingGuard<'_>> {
        let unlocking = self
            .unlocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if unlocking.contains_key(pull) {
            return None;
        }
        *self
            .sending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(pull.clone())
            .or_default() += 1;
        Some(SendingGuard {
            enhanced: self,
            pull: pull.clone(),
        })
    }

    /// Waits (bounded) until no replay of `pull` is on its way to Atlantis from this replica, so
    /// a release forwarded next reaches Atlantis after them. Call after
    /// `set_unlocking(pull, true)`.
    pub(crate) async fn replays_sent(&self, pull: &crate::classify::PullRef, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until
            && self
                .sending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(pull)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn is_unlocking(&self, pull: &crate::classify::PullRef) -> bool {
        self.unlocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(pull)
    }

    /// Whether the engine is in step with Atlantis (no unrepaired outage).
    pub fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Lock traffic went to Atlantis past the engine (it failed or is being repaired).
    pub(crate) fn forwarded_past_engine(&self) {
        *self
            .last_legacy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }

    /// Whether lock traffic forwarded past the engine may still be on its way through Atlantis
    /// (so a repair pass would not see its locks yet).
    fn legacy_settling(&self) -> bool {
        self.last_legacy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < self.settle_window().min(LEGACY_SETTLE))
    }

    /// The engine failed: until a reconciler pass repairs it, nobody queues behind its locks.
    pub(crate) fn engine_lost_sync(&self) {
        self.forwarded_past_engine();
        if self.synced.swap(false, std::sync::atomic::Ordering::AcqRel) {
            *self
                .lost_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(tokio::time::Instant::now());
            // The others must hear it before anything goes past the engine.
            self.peers.wake.notify_one();
            tracing::warn!(
                "lock engine failed: contended requests take the legacy path until the engine is repaired from Atlantis's lock table"
            );
        }
    }

    /// Whether a reconciler pass has run since start (until then lock traffic takes the legacy
    /// path and `/readyz` fails).
    pub fn started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the engine in step with Atlantis without a reconciler pass (unit tests that have
    /// no Atlantis to read).
    #[cfg(test)]
    pub(crate) fn assume_synced(&self) {
        self.engine_synced();
    }

    fn engine_synced(&self) {
        self.started
            .store(true, std::sync::atomic::Ordering::Release);
        if !self.synced.swap(true, std::sync::atomic::Ordering::AcqRel)
            && self
                .last_legacy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some()
        {
            tracing::info!(
                "lock engine repaired from Atlantis's lock table: the enhanced path queues again"
            );
        }
    }

    /// Keeps a release the engine could not mirror, for the reconciler to retry.
    fn release_later(&self, r: PendingRelease) {
        self.engine_lost_sync();
        let mut p = self
            .pending_releases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.len() < MAX_PENDING_RELEASES {
            p.push(r);
        }
    }

    /// Retries the releases the engine missed; true when none is left.
    async fn retry_releases(&self) -> bool {
        let pending = std::mem::take(
            &mut *self
                .pending_releases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut failed = Vec::new();
        for r in pending {
            let ok = match &r {
                PendingRelease::Pull(pull, _) => {
                    self.engine.release_pull(pull.clone()).await.is_ok()
                }
                PendingRelease::Key(key, _) => self.engine.release(key.clone(), None).await.is_ok(),
                PendingRelease::Grant(pull, key, token) => self
                    .engine
                    .release_grant(pull.clone(), vec![key.clone()], *token)
                    .await
                    .is_ok(),
            };
            if ok {
                tracing::info!(release = ?r, "release mirrored in the engine after its outage");
            } else {
                failed.push(r);
            }
        }
        let done = failed.is_empty();
        self.pending_releases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(failed);
        done
    }

    /// Forgets `request_id` in the engine in the background, retrying until the engine answers:
    /// the request went to Atlantis on the legacy path, so a late waiter of it must not replay.
    fn forget_later(&self, repo: &str, request_id: Option<String>) {
        use std::sync::atomic::Ordering;
        let Some(rid) = request_id else { return };
        if self.forgetting.fetch_add(1, Ordering::AcqRel) >= MAX_FORGETTING {
            self.forgetting.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("too many requests to forget at once; a late waiter may replay");
            return;
        }
        let engine = self.engine.clone();
        let count = self.forgetting.clone();
        let repo = repo.to_owned();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + FORGET_RETRY_FOR;
            let mut delay = Duration::from_millis(100);
            while tokio::time::Instant::now() < deadline {
                match engine.forget(repo.clone(), rid.clone()).await {
                    Ok(removed) => {
                        if removed {
                            tracing::info!(%repo, "a request forwarded during an engine outage was removed from the queue");
                        }
                        break;
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
            count.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// The gate's settings.
    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    /// Records Atlantis's global apply lock as last seen through this proxy (`/apply/lock`).
    pub fn set_global_apply_locked(&self, locked: bool) {
        self.global_apply_locked
            .store(locked, std::sync::atomic::Ordering::Relaxed);
    }

    /// Atlantis's global apply lock as last seen through this proxy (shown in `/admin/status`).
    pub fn global_apply_locked(&self) -> bool {
        self.global_apply_locked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The client to Atlantis.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

/// A replay on its way to Atlantis (see `Enhanced::begin_sending`).
struct SendingGuard<'a> {
    enhanced: &'a Enhanced,
    pull: crate::classify::PullRef,
}

impl Drop for SendingGuard<'_> {
    fn drop(&mut self) {
        let now = tokio::time::Instant::now();
        {
            let window = self.enhanced.settle_window();
            let mut sent = self
                .enhanced
                .last_sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if sent.len() >= 1024 {
                sent.retain(|_, t| now.duration_since(*t) < window);
            }
            sent.insert(self.pull.clone(), now);
        }
        let mut s = self
            .enhanced
            .sending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = s.get_mut(&self.pull) {
            *n -= 1;
            if *n == 0 {
                s.remove(&self.pull);
            }
        }
    }
}

#[cfg(test)]
mod tests;
