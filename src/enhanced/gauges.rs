//! The engine's gauges in the metrics: queue depth by priority, deadlocks broken, backend
//! health (a ping), once a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::LockEngine;
use crate::telemetry::Metrics;
use crate::vocab::Priority;

/// Copies the engine's counters into the metrics.
pub struct EngineGauges {
    engine: Arc<dyn LockEngine>,
    metrics: Arc<Metrics>,
}

impl EngineGauges {
    /// Reads `engine`, writes `metrics`.
    pub fn new(engine: Arc<dyn LockEngine>, metrics: Arc<Metrics>) -> Self {
        Self { engine, metrics }
    }

    /// Runs until `stop`.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut deadlocks_seen = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                deadlocks_seen = self.update(deadlocks_seen).await;
            }
        })
    }

    /// One update; returns the deadlock count now counted.
    async fn update(&self, deadlocks_seen: u64) -> u64 {
        let stats = self.engine.stats();
        for p in Priority::ALL {
            self.metrics
                .set_queue_depth(p, stats.queue_depth(p).max(0) as u64);
        }
        let deadlocks = stats.deadlocks.load(Ordering::Relaxed);
        for _ in deadlocks_seen..deadlocks {
            self.metrics.deadlock();
        }
        let healthy = tokio::time::timeout(Duration::from_secs(2), self.engine.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        self.metrics.set_backend_health(healthy);
        deadlocks
    }
}
