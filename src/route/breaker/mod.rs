//! The circuit breaker around engine backend calls (DESIGN.md §3, `enable-circuit-breaker`).
//!
//! Closed: calls flow; `failure-threshold` consecutive backend failures (errors or timeouts) open
//! it. Open: calls are refused at once (the caller takes the legacy path) for `timeout`. Then
//! half-open: a few probes go through; `success-threshold` consecutive successes close it, one
//! failure opens it again for another `timeout`.
//!
//! The state is one atomic, so the per-request check is a load; transitions take a short mutex.
//! A call that started in an earlier state (a generation ago) does not count: a slow failure from
//! before a reopen must not cut the new open period short or close a fresh one.

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::BreakerConfig;
use crate::engine::{EngineError, LockEngine};
use crate::telemetry::{BreakerState, Metrics};
use crate::throttle::LogThrottle;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Whether an error says the backend is unwell (trips the breaker) or only that the request
/// was refused on its merits (a full queue, a bad request), which says nothing about health.
pub trait BackendFailure {
    /// True when this error should count toward opening the breaker.
    fn is_backend_failure(&self) -> bool;
}

impl BackendFailure for EngineError {
    fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            EngineError::BackendUnavailable(_)
                | EngineError::BackendTimeout
                | EngineError::Protocol(_)
        )
    }
}

/// Why a call through the breaker did not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker is open: the call was not made; take the legacy path.
    #[error("circuit breaker open: engine backend skipped")]
    Open,
    /// The call itself failed.
    #[error(transparent)]
    Inner(E),
}

/// Breaker thresholds, from `enhanced-locking.circuit-breaker.*`.
#[derive(Clone, Debug)]
pub struct BreakerSettings {
    /// `enable-circuit-breaker`: when false the breaker never opens.
    pub enabled: bool,
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// Consecutive half-open successes that close it.
    pub success_threshold: u32,
    /// How long it stays open before probing.
    pub open_for: Duration,
}

impl BreakerSettings {
    /// From the validated config.
    pub fn from_config(enabled: bool, cfg: &BreakerConfig) -> Self {
        Self {
            enabled,
            failure_threshold: cfg.failure_threshold.max(1),
            success_threshold: cfg.success_threshold.max(1),
            open_for: cfg.timeout,
        }
    }
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    successes: u32,
    probes_in_flight: u32,
    opened_at: Instant,
    /// Failed probes of one outage: logged once per interval, the recovery once.
    probe_log: LogThrottle,
}

/// A circuit breaker; share it as `Arc<CircuitBreaker>`.
pub struct CircuitBreaker {
    settings: BreakerSettings,
    state: AtomicU8,
    // Bumped on every transition (under the mutex); read lock-free to stamp permits.
    generation: AtomicU64,
    // Closed-state failure streak mirrored outside the mutex, so the common success path
    // (closed, no streak) never locks.
    closed_failures: AtomicU32,
    inner: Mutex<Inner>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Permission to make one call; report its result with [`Permit::record`].
///
/// Dropping a permit unrecorded (the caller was cancelled) frees a half-open probe slot and counts
/// as neither success nor failure.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// Records the outcome: `true` for a healthy backend answer.
    pub fn record(mut self, ok: bool) {
        self.done = true;
        self.breaker.record(self.generation, self.probe, ok);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut inner = self.breaker.lock();
            if self.breaker.generation.load(Ordering::Acquire) == self.generation {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
            }
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker; `metrics` receives every state change.
    pub fn new(settings: BreakerSettings, metrics: Option<Arc<Metrics>>) -> Self {
        if let Some(m) = &metrics {
            m.set_breaker_state(BreakerState::Closed);
        }
        Self {
            settings,
            state: AtomicU8::new(CLOSED),
            generation: AtomicU64::new(0),
            closed_failures: AtomicU32::new(0),
            inner: Mutex::new(Inner {
                failures: 0,
                successes: 0,
                probes_in_flight: 0,
                opened_at: Instant::now(),
                probe_log: LogThrottle::default(),
            }),
            metrics,
        }
    }

    /// The current state (lock-free). An open breaker whose `timeout` has passed still reads
    /// `Open` until the next call turns it half-open.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// The state as the admin API names it: `closed`, `open` or `half-open`.
    pub fn state_name(&self) -> &'static str {
        state_name(self.state())
    }

    /// Asks to make one call: `None` means the breaker is open and the caller must not call.
    pub fn allow(&self) -> Option<Permit<'_>> {
        if !self.settings.enabled || self.state.load(Ordering::Acquire) == CLOSED {
            return Some(self.permit(self.generation.load(Ordering::Acquire), false));
        }
        let mut inner = self.lock();
        match self.state.load(Ordering::Acquire) {
            CLOSED => Some(self.permit(self.generation.load(Ordering::Acquire), false)),
            OPEN if inner.opened_at.elapsed() >= self.settings.open_for => {
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                inner.successes = 0;
                inner.probes_in_flight = 1;
                self.set_state(HALF_OPEN);
                if inner.probe_log.failing() {
                    tracing::debug!("circuit breaker half-open: probing the engine backend");
                } else {
                    tracing::info!("circuit breaker half-open: probing the engine backend");
                }
                Some(self.permit(generation, true))
            }
            HALF_OPEN if inner.probes_in_flight < self.probe_slots(&inner) => {
                inner.probes_in_flight += 1;
                Some(self.permit(self.generation.load(Ordering::Acquire), true))
            }
            _ => None,
        }
    }

    /// Runs `fut` through the breaker; backend failures (see [`BackendFailure`]) count against it.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: BackendFailure,
    {
        let permit = self.allow().ok_or(BreakerError::Open)?;
        let res = fut.await;
        permit.record(match &res {
            Ok(_) => true,
            Err(e) => !e.is_backend_failure(),
        });
        res.map_err(BreakerError::Inner)
    }

    /// Runs `fut` whatever the state and reports its outcome (never refused, never a probe):
    /// for engine work that must go on while the breaker is open (see [`Guarded`]).
    pub async fn observe<T, E, F>(&self, fut: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: BackendFailure,
    {
        let permit = self.permit(self.generation.load(Ordering::Acquire), false);
        let res = fut.await;
        permit.record(match &res {
            Ok(_) => true,
            Err(e) => !e.is_backend_failure(),
        });
        res
    }

    fn permit(&self, generation: u64, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            generation,
            probe,
            done: false,
        }
    }

    /// Concurrent probes allowed while half-open: enough to close it, never a flood.
    fn probe_slots(&self, inner: &Inner) -> u32 {
        self.settings
            .success_threshold
            .saturating_sub(inner.successes)
            .max(1)
    }

    fn record(&self, generation: u64, probe: bool, ok: bool) {
        if !self.settings.enabled {
            return;
        }
        if ok && !probe && self.closed_failures.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if probe {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
        match (self.state.load(Ordering::Acquire), ok) {
            (CLOSED, true) => {
                inner.failures = 0;
                self.closed_failures.store(0, Ordering::Relaxed);
            }
            (CLOSED, false) => {
                inner.failures += 1;
                self.closed_failures
                    .store(inner.failures, Ordering::Relaxed);
                if inner.failures >= self.settings.failure_threshold {
                    tracing::warn!(
                        failures = inner.failures,
                        open_for = ?self.settings.open_for,
                        "circuit breaker open: enhanced traffic takes the legacy path"
                    );
                    self.open(&mut inner);
                }
            }
            (HALF_OPEN, true) => {
                inner.successes += 1;
                if inner.successes >= self.settings.success_threshold {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    inner.failures = 0;
                    inner.probes_in_flight = 0;
                    self.closed_failures.store(0, Ordering::Relaxed);
                    self.set_state(CLOSED);
                    let failed_probes = inner.probe_log.success().unwrap_or(0);
                    tracing::info!(
                        failed_probes,
                        "circuit breaker closed: engine backend healthy again"
                    );
                }
            }
            (HALF_OPEN, false) => {
                match inner.probe_log.failure() {
                    Some(unlogged) => tracing::warn!(
                        repeated = unlogged,
                        "circuit breaker probe failed: open again"
                    ),
                    None => tracing::debug!("circuit breaker probe failed: open again"),
                }
                self.open(&mut inner);
            }
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        inner.opened_at = Instant::now();
        inner.successes = 0;
        inner.probes_in_flight = 0;
        self.set_state(OPEN);
    }

    fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::Release);
        if let Some(m) = &self.metrics {
            m.set_breaker_state(self.state());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections cannot panic halfway; a poisoned lock still holds consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often the prober looks at a breaker that is not closed: with the default
/// `success-threshold` of 3 the breaker closes well within 2 s of the backend answering again.
const PROBE_EVERY: Duration = Duration::from_millis(250);

impl CircuitBreaker {
    /// The backend answered a direct ping while the breaker is open: probe it now instead of
    /// waiting out `timeout` (recovery follows the backend, not the clock).
    pub fn backend_answers(&self) {
        if !self.settings.enabled {
            return;
        }
        let mut inner = self.lock();
        if self.state.load(Ordering::Acquire) == OPEN {
            self.generation.fetch_add(1, Ordering::AcqRel);
            inner.successes = 0;
            inner.probes_in_flight = 0;
            self.set_state(HALF_OPEN);
            tracing::info!("circuit breaker half-open: the engine backend answers again");
        }
    }
}

impl CircuitBreaker {
    /// Pings the engine backend while the breaker is not closed, so it closes again when the
    /// backend is back even if no enhanced-routed request comes along to probe it (the
    /// dispatcher and maintenance tasks need a closed breaker to resume).
    pub fn spawn_prober(
        self: &Arc<Self>,
        engine: Arc<dyn LockEngine>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(
                PROBE_EVERY.min(me.settings.open_for.max(Duration::from_millis(10))),
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match me.state() {
                    BreakerState::Closed => {}
                    // Open: ask the backend directly; once it answers, probes start at once.
                    BreakerState::Open => {
                        let ping =
                            tokio::time::timeout(Duration::from_secs(1), engine.ping()).await;
                        if matches!(ping, Ok(Ok(()))) {
                            me.backend_answers();
                        }
                    }
                    BreakerState::HalfOpen => {
                        let _ = me.call(engine.ping()).await;
                    }
                }
            }
        })
    }
}

/// The API name of a breaker state: `closed`, `open` or `half-open`.
pub fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

mod engine;
pub use engine::Guarded;

#[cfg(test)]
mod tests;
