//! Background tasks that must run until shutdown: one that ends early (a panic, a loop that
//! returned) is logged, counted (`atlantis_lock_proxy_background_task_exits`) and makes
//! `/readyz` answer 503, instead of dying silently while the proxy keeps serving.

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// Which background tasks ended before shutdown.
#[derive(Debug, Default)]
pub struct TaskHealth {
    ended: Mutex<Vec<&'static str>>,
}

impl TaskHealth {
    /// Nothing ended yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Watches `handle`: when it ends while `stop` is not cancelled, logs an error, counts it
    /// and records it. Await the returned handle at shutdown in place of the task's own.
    pub fn watch(
        self: &Arc<Self>,
        name: &'static str,
        handle: JoinHandle<()>,
        stop: CancellationToken,
        metrics: Option<Arc<Metrics>>,
    ) -> JoinHandle<()> {
        self.watch_inner(name, handle, stop, metrics, false)
    }

    /// Like [`TaskHealth::watch`] for a task that may decide to stop (the reconciler against an
    /// Atlantis without `GET /api/locks`): only a panic counts.
    pub fn watch_may_return(
        self: &Arc<Self>,
        name: &'static str,
        handle: JoinHandle<()>,
        stop: CancellationToken,
        metrics: Option<Arc<Metrics>>,
    ) -> JoinHandle<()> {
        self.watch_inner(name, handle, stop, metrics, true)
    }

    fn watch_inner(
        self: &Arc<Self>,
        name: &'static str,
        handle: JoinHandle<()>,
        stop: CancellationToken,
        metrics: Option<Arc<Metrics>>,
        may_return: bool,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let result = handle.await;
            if stop.is_cancelled() || (may_return && result.is_ok()) {
                return;
            }
            let how = match &result {
                Ok(()) => "returned",
                Err(e) if e.is_panic() => "panicked",
                Err(_) => "was cancelled",
            };
            tracing::error!(
                task = name,
                how,
                "a background task ended before shutdown; /readyz now fails (restart the replica)"
            );
            if let Some(m) = &metrics {
                m.background_task_exit(name);
            }
            this.record(name);
        })
    }

    fn record(&self, name: &'static str) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.push(name);
        }
    }

    /// The tasks that ended before shutdown, in the order they ended.
    pub fn ended(&self) -> Vec<&'static str> {
        self.ended.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_ending_early_is_recorded_and_counted() {
        let health = TaskHealth::new();
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let panicking = tokio::spawn(async { panic!("period must be non-zero") });
        let w1 = health.watch(
            "maintenance",
            panicking,
            stop.clone(),
            Some(metrics.clone()),
        );
        let returning = tokio::spawn(async {});
        let w2 = health.watch("stats", returning, stop.clone(), Some(metrics.clone()));
        let (_, _) = tokio::join!(w1, w2);
        let mut ended = health.ended();
        ended.sort_unstable();
        assert_eq!(ended, ["maintenance", "stats"]);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"atlantis_lock_proxy_background_task_exits_total{task="maintenance"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn ending_at_shutdown_is_normal() {
        let health = TaskHealth::new();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move { s.cancelled().await });
        let w = health.watch("reconciler", task, stop.clone(), None);
        stop.cancel();
        w.await.unwrap();
        assert!(health.ended().is_empty());
        let done = tokio::spawn(async {});
        health
            .watch_may_return("reconciler", done, CancellationToken::new(), None)
            .await
            .unwrap();
        assert!(health.ended().is_empty());
    }
}
