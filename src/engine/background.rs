//! The engine's periodic work, started explicitly so tests control it.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::LockEngine;

/// Runs maintenance every `timeout-check-interval`, cleanup every `cleanup-interval` (when
/// enabled) and deadlock checks every `deadlock-check-interval` (when enabled) until `shutdown`.
pub fn spawn_background(
    engine: Arc<dyn LockEngine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let s = engine.settings().clone();
        let mut tick = tokio::time::interval(s.timeout_check_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_cleanup = Instant::now() + s.cleanup_interval;
        let mut next_deadlock = Instant::now() + s.deadlock_check_interval;
        tokio::pin!(shutdown);
        // During a backend outage these fail every tick: one line per minute, with a count.
        let mut maintain_log = crate::throttle::LogThrottle::default();
        let mut deadlock_log = crate::throttle::LogThrottle::default();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let cleanup = s.enable_automatic_cleanup && now >= next_cleanup;
            if cleanup {
                next_cleanup = now + s.cleanup_interval;
            }
            match engine.maintain(cleanup).await {
                Err(e) => {
                    if let Some(unlogged) = maintain_log.failure() {
                        tracing::warn!(error = %e, repeated = unlogged, "lock engine maintenance failed");
                    }
                }
                Ok(_) => {
                    if let Some(failures) = maintain_log.success() {
                        tracing::info!(failures, "lock engine maintenance works again");
                    }
                }
            }
            if s.enable_deadlock_detection && now >= next_deadlock {
                next_deadlock = now + s.deadlock_check_interval;
                match engine.check_deadlocks().await {
                    Err(e) => {
                        if let Some(unlogged) = deadlock_log.failure() {
                            tracing::warn!(error = %e, repeated = unlogged, "deadlock check failed");
                        }
                    }
                    Ok(_) => {
                        if let Some(failures) = deadlock_log.success() {
                            tracing::info!(failures, "deadlock checks work again");
                        }
                    }
                }
            }
        }
    })
}
