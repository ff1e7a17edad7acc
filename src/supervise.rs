//! Background tasks that must run until shutdown, under one [`Supervisor`]: one that ends early
//! (a panic, a loop that returned) is logged, counted
//! (`atlantis_lock_proxy_background_task_exits`) and makes `/readyz` answer 503, instead of dying
//! silently while the proxy keeps serving; at shutdown they are all stopped and awaited together.

use std::sync::{Arc, Mutex};

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// Starts, watches and stops the background tasks.
pub struct Supervisor {
    stop: CancellationToken,
    health: Arc<TaskHealth>,
    metrics: Option<Arc<Metrics>>,
    watched: JoinSet<()>,
}

impl Supervisor {
    /// Tasks report to `health` and `metrics`, and stop when `stop` is cancelled.
    pub fn new(
        stop: CancellationToken,
        health: Arc<TaskHealth>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            stop,
            health,
            metrics,
            watched: JoinSet::new(),
        }
    }

    /// The token every task stops on.
    pub fn stop(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Watches a task that must run until shutdown.
    pub fn run(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.watch(name, task, false);
    }

    /// Watches a task that may decide to stop by itself (only a panic counts).
    pub fn run_may_return(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.watch(name, task, true);
    }

    fn watch(&mut self, name: &'static str, task: JoinHandle<()>, may_return: bool) {
        let watcher = self.health.watch_inner(
            name,
            task,
            self.stop.clone(),
            self.metrics.clone(),
            may_return,
        );
        self.watched.spawn(async move {
            let _ = watcher.await;
        });
    }

    /// Stops every task and waits for all of them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.watched.join_next().await.is_some() {}
    }
}

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

    /// Watches `handle`: when it ends while `stop` is not cancelled (and, with `may_return`,
    /// by a panic), logs an error, counts it and records it.
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
        let mut tasks = Supervisor::new(stop.clone(), health.clone(), Some(metrics.clone()));
        tasks.run(
            "maintenance",
            tokio::spawn(async { panic!("period must be non-zero") }),
        );
        tasks.run("stats", tokio::spawn(async {}));
        let s = stop.clone();
        tasks.run(
            "reconciler",
            tokio::spawn(async move { s.cancelled().await }),
        );
        // Let the two end before shutdown.
        while health.ended().len() < 2 {
            tokio::task::yield_now().await;
        }
        tasks.shutdown().await;
        let mut ended = health.ended();
        ended.sort_unstable();
        assert_eq!(
            ended,
            ["maintenance", "stats"],
            "the one that ran until shutdown is fine"
        );
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"atlantis_lock_proxy_background_task_exits_total{task="maintenance"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn ending_at_shutdown_or_by_choice_is_normal() {
        let health = TaskHealth::new();
        let stop = CancellationToken::new();
        let mut tasks = Supervisor::new(stop.clone(), health.clone(), None);
        let s = stop.clone();
        tasks.run(
            "dispatcher",
            tokio::spawn(async move { s.cancelled().await }),
        );
        tasks.run_may_return("reconciler", tokio::spawn(async {}));
        tokio::task::yield_now().await;
        tasks.shutdown().await;
        assert!(stop.is_cancelled());
        assert!(health.ended().is_empty(), "{:?}", health.ended());
    }
}
