//! Typed engine settings, filled by the config layer from the guide's `enhanced-locking:` keys.

use std::collections::HashMap;
use std::time::Duration;

use crate::vocab::{Priority, Vcs};

/// Queueing, timeout, deadlock and cleanup behaviour shared by every backend.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// `default-timeout`: how long a lock is held before it becomes preemptible.
    pub default_timeout: Duration,
    /// `max-timeout`: upper bound for any hold timeout (overrides and priority timeouts included).
    pub max_timeout: Duration,
    /// `priority-timeouts`: hold timeout per priority, used instead of `default_timeout`.
    pub priority_timeouts: HashMap<Priority, Duration>,
    /// `enable-priority-queue`: order waiters by priority; when off, waiters are served FIFO.
    pub enable_priority_queue: bool,
    /// `max-queue-size`: most waiters one lock key may have; a full queue rejects with `QueueFull`.
    pub max_queue_size: usize,
    /// `max-waiters-per-repo`: most stored requests (queued or being replayed) of one repository.
    pub max_waiters_per_repo: u64,
    /// `max-waiters-total`: most stored requests of all repositories together.
    pub max_waiters_total: u64,
    /// `max-queued-bytes-per-repo`: most bytes of stored requests of one repository.
    pub max_queued_bytes_per_repo: u64,
    /// `max-queued-bytes-total`: most bytes of stored requests of all repositories together.
    pub max_queued_bytes_total: u64,
    /// `queue-timeout`: how long a waiter may wait before it is dispatched as timed out.
    pub queue_timeout: Duration,
    /// `priority-boost-factor`: aging; a waiter gains this many priority levels per `queue_timeout` waited.
    pub priority_boost_factor: f64,
    /// `enable-deadlock-detection`: look for wait-for cycles on enqueue and periodically.
    pub enable_deadlock_detection: bool,
    /// `deadlock-check-interval`: period of the background deadlock check.
    pub deadlock_check_interval: Duration,
    /// `enable-automatic-cleanup`: release expired locks even when nobody waits for them.
    pub enable_automatic_cleanup: bool,
    /// `cleanup-interval`: period of the automatic cleanup.
    pub cleanup_interval: Duration,
    /// `timeout-check-interval`: period of queue-timeout, preemption and lease re-offer checks.
    pub timeout_check_interval: Duration,
    /// How long a replica owns a dispatch before another replica may re-offer it.
    pub dispatch_lease: Duration,
    /// `instance-id`: names this replica as the owner of the dispatches it claims.
    pub instance_id: String,
    /// `enable-events`: emit a `tracing` event for every engine state change.
    pub enable_events: bool,
    /// The VCS whose pulls the Redis engine stores by their bare number, as every pull was
    /// stored before pulls had a VCS (so that state reads back as pulls of this VCS); other
    /// VCSs' pulls are stored as `vcs:number`. GitHub when the proxy gates it, else the first
    /// VCS it gates (see `PullId::encode`).
    pub unmarked_vcs: Vcs,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30 * 60),
            max_timeout: Duration::from_secs(2 * 60 * 60),
            priority_timeouts: HashMap::new(),
            enable_priority_queue: true,
            max_queue_size: 1000,
            max_waiters_per_repo: 1000,
            max_waiters_total: 10_000,
            max_queued_bytes_per_repo: 256 << 20,
            max_queued_bytes_total: 1 << 30,
            queue_timeout: Duration::from_secs(10 * 60),
            priority_boost_factor: 2.0,
            enable_deadlock_detection: true,
            deadlock_check_interval: Duration::from_secs(30),
            enable_automatic_cleanup: false,
            cleanup_interval: Duration::from_secs(5 * 60),
            timeout_check_interval: Duration::from_secs(1),
            dispatch_lease: Duration::from_secs(60),
            instance_id: default_instance_id(),
            enable_events: true,
            unmarked_vcs: Vcs::Github,
        }
    }
}

impl EngineSettings {
    /// The hold timeout for a grant: the explicit override, else the priority's, else the default,
    /// never more than `max_timeout`.
    pub fn hold_timeout(&self, priority: Priority, requested: Option<Duration>) -> Duration {
        let wanted = requested
            .or_else(|| self.priority_timeouts.get(&priority).copied())
            .unwrap_or(self.default_timeout);
        wanted.min(self.max_timeout)
    }

    /// The configured value of a memory cap.
    pub fn cap(&self, cap: super::QueueCap) -> u64 {
        match cap {
            super::QueueCap::RepoWaiters => self.max_waiters_per_repo,
            super::QueueCap::RepoBytes => self.max_queued_bytes_per_repo,
            super::QueueCap::TotalWaiters => self.max_waiters_total,
            super::QueueCap::TotalBytes => self.max_queued_bytes_total,
        }
    }

    /// The priority level used for ordering: all equal when the priority queue is off.
    pub fn order_rank(&self, priority: Priority) -> u8 {
        if self.enable_priority_queue {
            rank(priority)
        } else {
            0
        }
    }

    /// Aging slope in priority levels per millisecond waited (0 disables aging).
    pub fn aging_per_ms(&self) -> f64 {
        let window = self.queue_timeout.as_millis() as f64;
        if !self.enable_priority_queue || window <= 0.0 || self.priority_boost_factor <= 0.0 {
            0.0
        } else {
            self.priority_boost_factor / window
        }
    }

    /// Static queue score (lower is served first) of a waiter enqueued at `enqueued_ms`.
    ///
    /// Aging raises a waiter's effective level by `aging_per_ms * waited`; because every waiter ages
    /// at the same rate, ordering by `aging * enqueued - rank` at any instant equals ordering by
    /// effective level, so the score never has to be rewritten as time passes.
    pub fn queue_score(&self, priority: Priority, enqueued_ms: i64) -> f64 {
        self.aging_per_ms() * enqueued_ms as f64 - f64::from(self.order_rank(priority))
    }
}

/// Numeric level of a priority: low 0 … critical 3.
pub fn rank(priority: Priority) -> u8 {
    match priority {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}

/// The priority of a numeric level (out-of-range values clamp to the nearest level).
pub fn priority_of(rank: i64) -> Priority {
    match rank {
        i64::MIN..=0 => Priority::Low,
        1 => Priority::Normal,
        2 => Priority::High,
        _ => Priority::Critical,
    }
}

fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "alp".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Connection settings of the Redis backend (`enhanced-locking.redis.*`).
#[derive(Clone)]
pub struct RedisSettings {
    /// `addr`: `host:port` of a standalone server, or of one seed node in cluster mode.
    pub addr: String,
    /// `cluster-nodes`: seed nodes in cluster mode (`addr` is used when empty).
    pub cluster_nodes: Vec<String>,
    /// `password`: sent with AUTH; never logged.
    pub password: Option<String>,
    /// `db`: database number (standalone only).
    pub db: i64,
    /// `cluster-mode`: talk Redis Cluster.
    pub cluster_mode: bool,
    /// `key-prefix`: prefix of every key this engine writes.
    pub key_prefix: String,
    /// `pool-size`: multiplexed connections to a standalone server, used round robin.
    pub pool_size: u32,
    /// `pool-timeout`: accepted for the guide's configs; multiplexed connections are never
    /// checked out, so nothing waits on a pool.
    pub pool_timeout: Duration,
    /// `dial-timeout`: TCP connect timeout.
    pub dial_timeout: Duration,
    /// `read-timeout`: bound on one command's reply.
    pub read_timeout: Duration,
    /// `write-timeout`: bound on sending one command (folded into the per-command deadline).
    pub write_timeout: Duration,
    /// `max-retries`: retries of a command that failed before reaching the server.
    pub max_retries: u32,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("addr", &self.addr)
            .field("cluster_nodes", &self.cluster_nodes)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("cluster_mode", &self.cluster_mode)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("pool_timeout", &self.pool_timeout)
            .field("dial_timeout", &self.dial_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// The key prefix of the shadow engine's separate keyspace.
pub const SHADOW_KEY_PREFIX: &str = "atlantis:shadow:";

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:6379".to_owned(),
            cluster_nodes: Vec::new(),
            password: None,
            db: 0,
            cluster_mode: false,
            key_prefix: "atlantis:lock:".to_owned(),
            pool_size: 16,
            pool_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_retries: 3,
        }
    }
}

impl RedisSettings {
    /// The same connection with the shadow keyspace, for the shadow engine instance.
    pub fn shadow(&self) -> Self {
        Self {
            key_prefix: SHADOW_KEY_PREFIX.to_owned(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_timeout_prefers_override_then_priority_and_caps_at_max() {
        let mut s = EngineSettings::default();
        s.priority_timeouts
            .insert(Priority::High, Duration::from_secs(45 * 60));
        assert_eq!(s.hold_timeout(Priority::Normal, None), s.default_timeout);
        assert_eq!(
            s.hold_timeout(Priority::High, None),
            Duration::from_secs(2700)
        );
        assert_eq!(
            s.hold_timeout(Priority::High, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            s.hold_timeout(Priority::Low, Some(Duration::from_secs(99_999))),
            s.max_timeout
        );
    }

    #[test]
    fn aging_lets_an_old_low_waiter_overtake_a_fresh_normal_one() {
        let s = EngineSettings {
            queue_timeout: Duration::from_secs(600),
            priority_boost_factor: 2.0,
            ..EngineSettings::default()
        };
        let low_old = s.queue_score(Priority::Low, 0);
        let normal_soon = s.queue_score(Priority::Normal, 60_000);
        let normal_late = s.queue_score(Priority::Normal, 400_000);
        assert!(normal_soon < low_old, "a minute of waiting is not enough");
        assert!(low_old < normal_late, "two thirds of queue-timeout is");
    }

    #[test]
    fn debug_never_shows_the_redis_password() {
        let s = RedisSettings {
            password: Some("hunter2".into()),
            ..RedisSettings::default()
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn priority_queue_off_means_fifo() {
        let s = EngineSettings {
            enable_priority_queue: false,
            ..EngineSettings::default()
        };
        assert!(s.queue_score(Priority::Low, 1) == s.queue_score(Priority::Critical, 1));
    }
}
