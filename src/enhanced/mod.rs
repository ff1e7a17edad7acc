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
mod notices;
mod priority;
mod reconciler;

use std::sync::Arc;
use std::time::Duration;

pub use gate::{Decision, Gated};
pub use priority::LabelPattern;

use crate::config::{Config, RetryConfig};
use crate::engine::LockEngine;
use crate::notify::Notifier;
use crate::resolve::{ProjectTable, Resolver};
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// What the enhanced path needs to know beyond the engine's own settings.
#[derive(Clone, Debug)]
pub struct GateSettings {
    /// How long `/api/*` callers wait for a contended lock before their request is forwarded anyway.
    pub queue_timeout: Duration,
    /// How often a waiting `/api/*` caller retries the engine.
    pub api_poll: Duration,
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
}

impl GateSettings {
    /// The settings from the validated config.
    pub fn from_config(c: &Config) -> Self {
        Self {
            queue_timeout: c.enhanced.queue_timeout,
            api_poll: Duration::from_millis(250),
            retry: c.enhanced.retry.clone(),
            labels: LabelPattern::new(&c.enhanced.priority_label_pattern),
            lock_sync_interval: c.atlantis.lock_sync_interval,
            lock_sync_grace: c.atlantis.lock_sync_grace,
            replay_wait: c.enhanced.replay_wait,
            legacy_fallback: c.enhanced.legacy_fallback,
        }
    }
}

/// The enhanced path's shared state.
pub struct Enhanced {
    /// The lock engine.
    pub engine: Arc<dyn LockEngine>,
    upstream: Upstream,
    resolver: Arc<Resolver>,
    table: ProjectTable,
    metrics: Arc<Metrics>,
    settings: GateSettings,
    notifier: Option<Arc<Notifier>>,
    notes: notices::Notes,
}

/// The parts the enhanced path is built from.
pub struct Parts {
    /// The lock engine.
    pub engine: Arc<dyn LockEngine>,
    /// Client to Atlantis.
    pub upstream: Upstream,
    /// Finds a bare command's projects.
    pub resolver: Arc<Resolver>,
    /// The proxy's project table.
    pub table: ProjectTable,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Gate settings.
    pub settings: GateSettings,
    /// Pull-request comments, when a VCS token is configured.
    pub notifier: Option<Arc<Notifier>>,
}

impl Enhanced {
    /// Wires the enhanced path.
    pub fn new(p: Parts) -> Self {
        Self {
            engine: p.engine,
            upstream: p.upstream,
            resolver: p.resolver,
            table: p.table,
            metrics: p.metrics,
            settings: p.settings,
            notifier: p.notifier,
            notes: notices::Notes::default(),
        }
    }

    /// The gate's settings.
    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    /// The client to Atlantis.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

impl Enhanced {
    /// Keeps the engine's gauges and health in the metrics: queue depth by priority, deadlocks,
    /// backend health (a ping) — once a second until `stop`.
    pub fn spawn_stats(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        use std::sync::atomic::Ordering;

        use crate::classify::Priority;

        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut deadlocks_seen = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let stats = this.engine.stats();
                for p in Priority::ALL {
                    this.metrics
                        .set_queue_depth(p, stats.queue_depth(p).max(0) as u64);
                }
                let deadlocks = stats.deadlocks.load(Ordering::Relaxed);
                for _ in deadlocks_seen..deadlocks {
                    this.metrics.deadlock();
                }
                deadlocks_seen = deadlocks;
                let healthy = tokio::time::timeout(Duration::from_secs(2), this.engine.ping())
                    .await
                    .is_ok_and(|r| r.is_ok());
                this.metrics.set_backend_health(healthy);
            }
        })
    }
}
