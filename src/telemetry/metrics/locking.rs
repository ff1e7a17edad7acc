//! The migration guide's `atlantis_enhanced_locking_*` metrics, with its names, meanings and
//! histogram buckets, so the guide's dashboards and alert rules work unchanged.
//!
//! What the counters count (the guide is silent, these are the proxy's definitions):
//! - an *acquisition* is one lock request the engine finished with: granted (at once or after
//!   waiting) is a success; rejected (queue full), expired in the queue, deadlock victim or backend
//!   error is a failure. A request that is queued is counted when it leaves the queue.
//! - `acquisition_duration_seconds` is the engine's decision time (grant / queue / reject), not the
//!   queue wait, which has its own histogram; the guide's latency alerts (p95 > 1 s, > 10 s) are
//!   about the engine, and contention is not an engine fault.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::classify::Priority;

/// The guide's timing histogram buckets (`histogram-buckets`), in seconds.
pub const GUIDE_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

/// Queue waits: the guide's buckets, extended so its 5 and 10 minute wait alerts can fire
/// (`histogram_quantile` never answers above the largest finite bucket).
pub const QUEUE_WAIT_BUCKETS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
    1800.0, 3600.0,
];

/// Lock holding times: plans and applies hold for minutes to hours; the guide alerts at 1 h and 2 h.
pub const HOLD_BUCKETS: [f64; 14] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];

/// How many backend health probes the availability gauge averages over.
const AVAILABILITY_WINDOW: usize = 360;

/// Why an acquisition failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// The queue for the resource was full (`max-queue-size`).
    QueueFull,
    /// The waiter reached `queue-timeout` and was handed to Atlantis.
    QueueTimeout,
    /// The waiter was the victim chosen to break a deadlock.
    Deadlock,
    /// The backend failed (Redis error or timeout).
    Error,
    /// The request was withdrawn (pull closed while waiting, admin cancel).
    Cancelled,
}

impl FailReason {
    /// Every reason, exported at zero from the start.
    pub const ALL: [FailReason; 5] = [
        FailReason::QueueFull,
        FailReason::QueueTimeout,
        FailReason::Deadlock,
        FailReason::Error,
        FailReason::Cancelled,
    ];

    fn as_str(self) -> &'static str {
        match self {
            FailReason::QueueFull => "queue_full",
            FailReason::QueueTimeout => "queue_timeout",
            FailReason::Deadlock => "deadlock",
            FailReason::Error => "error",
            FailReason::Cancelled => "cancelled",
        }
    }
}

/// Why a lock was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// The pull was closed or merged.
    PullClosed,
    /// `atlantis unlock`, `DELETE /locks`, or the UI's unlock.
    Unlock,
    /// The lock outlived its timeout and was preempted or cleaned up.
    Expired,
    /// An operator force-released it on the admin API.
    Admin,
    /// The reconciler found Atlantis had already released it.
    Reconciled,
}

impl ReleaseReason {
    /// Every reason, exported at zero from the start.
    pub const ALL: [ReleaseReason; 5] = [
        ReleaseReason::PullClosed,
        ReleaseReason::Unlock,
        ReleaseReason::Expired,
        ReleaseReason::Admin,
        ReleaseReason::Reconciled,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::PullClosed => "pull_closed",
            ReleaseReason::Unlock => "unlock",
            ReleaseReason::Expired => "expired",
            ReleaseReason::Admin => "admin",
            ReleaseReason::Reconciled => "reconciled",
        }
    }
}

/// The circuit breaker's state; the gauge reads 0 closed, 1 open (the guide's values) and 0.5 while
/// half-open probes run, so the guide's `== 1` alert means "open" exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows to the engine.
    Closed,
    /// Probing whether the backend is back.
    HalfOpen,
    /// Enhanced traffic takes the legacy path.
    Open,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The guide's metric set.
pub(super) struct Locking {
    backend_health: Gauge,
    availability: FloatGauge,
    health_window: Mutex<VecDeque<bool>>,
    acquisitions: Counter,
    acquisitions_success: Counter,
    acquisitions_failed: Family<ReasonLabel, Counter>,
    releases: Family<ReasonLabel, Counter>,
    acquisition_duration: Histogram,
    queue_depth: Family<PriorityLabel, Gauge>,
    queue_wait: Histogram,
    hold: Histogram,
    operations: Family<OperationLabel, Counter>,
    errors: Family<OperationLabel, Counter>,
    deadlocks: Counter,
    inversion_ratio: FloatGauge,
    breaker: FloatGauge,
    retries: Family<OperationLabel, Counter>,
    pool_active: Gauge,
    pool_max: Gauge,
    redis_memory: Gauge,
}

impl Locking {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            backend_health: Gauge::default(),
            availability: FloatGauge::default(),
            health_window: Mutex::new(VecDeque::with_capacity(AVAILABILITY_WINDOW)),
            acquisitions: Counter::default(),
            acquisitions_success: Counter::default(),
            acquisitions_failed: Family::default(),
            releases: Family::default(),
            acquisition_duration: Histogram::new(GUIDE_BUCKETS),
            queue_depth: Family::default(),
            queue_wait: Histogram::new(QUEUE_WAIT_BUCKETS),
            hold: Histogram::new(HOLD_BUCKETS),
            operations: Family::default(),
            errors: Family::default(),
            deadlocks: Counter::default(),
            inversion_ratio: FloatGauge::default(),
            breaker: FloatGauge::default(),
            retries: Family::default(),
            pool_active: Gauge::default(),
            pool_max: Gauge::default(),
            redis_memory: Gauge::default(),
        };
        // Until the first probe nobody knows; report healthy rather than page on start-up.
        m.backend_health.set(1);
        m.availability.set(1.0);
        for p in Priority::ALL {
            // Every priority is exported from the start, so `by (priority)` panels show zeros.
            let _ = m.queue_depth.get_or_create(&PriorityLabel {
                priority: p.as_str(),
            });
        }
        // Closed label sets start at zero: `rate()` then sees the first failure, and panels
        // show 0 instead of "no data".
        for reason in FailReason::ALL {
            let _ = m.acquisitions_failed.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for reason in ReleaseReason::ALL {
            let _ = m.releases.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        let p = "atlantis_enhanced_locking_";
        r.register(
            format!("{p}backend_health"),
            "Engine backend health (0=unhealthy, 1=healthy)",
            m.backend_health.clone(),
        );
        r.register(
            format!("{p}availability"),
            "Share (0-1) of the recent backend health probes that succeeded",
            m.availability.clone(),
        );
        r.register(
            format!("{p}acquisitions"),
            "Lock acquisitions the engine finished with, granted or failed",
            m.acquisitions.clone(),
        );
        r.register(
            format!("{p}acquisitions_success"),
            "Lock acquisitions granted, at once or after waiting in the queue",
            m.acquisitions_success.clone(),
        );
        r.register(
            format!("{p}acquisitions_failed"),
            "Lock acquisitions that failed, by reason",
            m.acquisitions_failed.clone(),
        );
        r.register(
            format!("{p}releases"),
            "Locks released, by reason",
            m.releases.clone(),
        );
        r.register(
            format!("{p}acquisition_duration_seconds"),
            "Time the engine took to decide a lock request (grant, queue or reject)",
            m.acquisition_duration.clone(),
        );
        r.register(
            format!("{p}queue_depth"),
            "Requests waiting for locks, by priority",
            m.queue_depth.clone(),
        );
        r.register(
            format!("{p}queue_wait_duration_seconds"),
            "Time a queued request waited until it was granted or gave up",
            m.queue_wait.clone(),
        );
        r.register(
            format!("{p}hold_duration_seconds"),
            "Time a lock was held, from grant to release",
            m.hold.clone(),
        );
        r.register(
            format!("{p}operations"),
            "Engine backend operations, by operation",
            m.operations.clone(),
        );
        r.register(
            format!("{p}errors"),
            "Engine backend operations that failed, by operation",
            m.errors.clone(),
        );
        r.register(
            format!("{p}deadlocks_detected"),
            "Wait-for cycles between pulls detected and broken",
            m.deadlocks.clone(),
        );
        r.register(
            format!("{p}priority_queue_inversion_ratio"),
            "Share (0-1) of recent grants that went to a waiter while a higher-priority one waited",
            m.inversion_ratio.clone(),
        );
        r.register(
            format!("{p}circuit_breaker_state"),
            "Circuit breaker state (0=closed, 0.5=half-open, 1=open)",
            m.breaker.clone(),
        );
        r.register(
            format!("{p}retries"),
            "Engine backend operations retried after a transient error, by operation",
            m.retries.clone(),
        );
        r.register(
            format!("{p}redis_pool_active_connections"),
            "Redis connections in use",
            m.pool_active.clone(),
        );
        r.register(
            format!("{p}redis_pool_max_connections"),
            "Redis connection pool size (redis.pool-size)",
            m.pool_max.clone(),
        );
        r.register(
            format!("{p}redis_memory_used_bytes"),
            "Memory Redis reports in use (INFO memory used_memory)",
            m.redis_memory.clone(),
        );
        m
    }
}

impl Metrics {
    /// Records an engine decision on a lock request that did not queue: `took` is the decision
    /// time; `Ok` is a grant, `Err` a failure (queue full, backend error).
    pub fn lock_acquired(&self, took: Duration, result: Result<(), FailReason>) {
        self.locking
            .acquisition_duration
            .observe(took.as_secs_f64());
        self.count_acquisition(result);
    }

    /// Records an engine decision that queued the request; it is counted as an acquisition when
    /// it leaves the queue ([`Metrics::queue_left`]).
    pub fn lock_queued(&self, took: Duration) {
        self.locking
            .acquisition_duration
            .observe(took.as_secs_f64());
    }

    /// Records a waiter leaving the queue after `waited`: granted (`Ok`) or given up (`Err`).
    pub fn queue_left(&self, waited: Duration, result: Result<(), FailReason>) {
        self.locking.queue_wait.observe(waited.as_secs_f64());
        self.count_acquisition(result);
    }

    fn count_acquisition(&self, result: Result<(), FailReason>) {
        let l = &self.locking;
        l.acquisitions.inc();
        match result {
            Ok(()) => {
                l.acquisitions_success.inc();
            }
            Err(reason) => {
                l.acquisitions_failed
                    .get_or_create(&ReasonLabel {
                        reason: reason.as_str(),
                    })
                    .inc();
            }
        }
    }

    /// Records a lock released after being held for `held`.
    pub fn lock_released(&self, held: Duration, reason: ReleaseReason) {
        let l = &self.locking;
        l.hold.observe(held.as_secs_f64());
        l.releases
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Records `n` locks released when their hold time is not known here (a pull's release).
    pub fn locks_released(&self, n: usize, reason: ReleaseReason) {
        self.locking
            .releases
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(n as u64);
    }

    /// Sets how many requests wait at `priority` (summed over all resources).
    pub fn set_queue_depth(&self, priority: Priority, waiting: u64) {
        self.locking
            .queue_depth
            .get_or_create(&PriorityLabel {
                priority: priority.as_str(),
            })
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Counts one backend operation (`acquire`, `release`, `list`, `reconcile`, `dispatch`,
    /// `cleanup`, `deadlock_check`…) and whether it failed.
    pub fn engine_op(&self, operation: &'static str, ok: bool) {
        let label = OperationLabel { operation };
        self.locking.operations.get_or_create(&label).inc();
        if !ok {
            self.locking.errors.get_or_create(&label).inc();
        }
    }

    /// Counts a backend operation retried after a transient error.
    pub fn engine_retry(&self, operation: &'static str) {
        self.locking
            .retries
            .get_or_create(&OperationLabel { operation })
            .inc();
    }

    /// Counts one detected (and broken) deadlock.
    pub fn deadlock(&self) {
        self.locking.deadlocks.inc();
    }

    /// Sets the share of recent grants that skipped a higher-priority waiter.
    pub fn set_priority_inversion_ratio(&self, ratio: f64) {
        self.locking.inversion_ratio.set(ratio.clamp(0.0, 1.0));
    }

    /// Records one backend health probe; also moves the availability gauge, the share of healthy
    /// probes among the last 360.
    pub fn set_backend_health(&self, healthy: bool) {
        let l = &self.locking;
        l.backend_health.set(i64::from(healthy));
        let Ok(mut window) = l.health_window.lock() else {
            return;
        };
        if window.len() == AVAILABILITY_WINDOW {
            window.pop_front();
        }
        window.push_back(healthy);
        let up = window.iter().filter(|h| **h).count();
        l.availability.set(up as f64 / window.len() as f64);
    }

    /// Sets the circuit breaker state.
    pub fn set_breaker_state(&self, state: BreakerState) {
        self.locking.breaker.set(match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 0.5,
            BreakerState::Open => 1.0,
        });
    }

    /// Sets the Redis pool gauges.
    pub fn set_redis_pool(&self, active: u32, max: u32) {
        self.locking.pool_active.set(i64::from(active));
        self.locking.pool_max.set(i64::from(max));
    }

    /// Sets the memory Redis reports in use.
    pub fn set_redis_memory(&self, bytes: u64) {
        self.locking
            .redis_memory
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
