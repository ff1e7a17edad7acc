//! The engine's typed settings, derived from the `enhanced-locking:` section.

use crate::engine::{EngineSettings, RedisSettings};

use super::{Backend, EnhancedConfig};

impl EnhancedConfig {
    /// Queueing, timeout, deadlock and cleanup settings for the engine.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            default_timeout: self.default_timeout,
            max_timeout: self.max_timeout,
            priority_timeouts: self
                .priority_timeouts
                .iter()
                .map(|(p, d)| (*p, *d))
                .collect(),
            enable_priority_queue: self.enable_priority_queue,
            max_queue_size: self.max_queue_size,
            max_waiters_per_repo: self.max_waiters_per_repo,
            max_waiters_total: self.max_waiters_total,
            max_queued_bytes_per_repo: self.max_queued_bytes_per_repo,
            max_queued_bytes_total: self.max_queued_bytes_total,
            queue_timeout: self.queue_timeout,
            priority_boost_factor: self.priority_boost_factor,
            enable_deadlock_detection: self.enable_deadlock_detection,
            deadlock_check_interval: self.deadlock_check_interval,
            enable_automatic_cleanup: self.enable_automatic_cleanup,
            cleanup_interval: self.cleanup_interval,
            timeout_check_interval: self.timeout_check_interval,
            dispatch_lease: self.dispatch_lease,
            instance_id: self.instance_id.clone(),
            enable_events: self.enable_events,
        }
    }

    /// Redis connection settings, `None` for the in-memory backend. `shadow` selects the
    /// separate shadow keyspace.
    pub fn redis_settings(&self, shadow: bool) -> Option<RedisSettings> {
        if self.backend != Backend::Redis {
            return None;
        }
        let r = &self.redis;
        Some(RedisSettings {
            addr: r
                .addr
                .clone()
                .or_else(|| r.cluster_nodes.first().cloned())
                .unwrap_or_default(),
            cluster_nodes: r.cluster_nodes.clone(),
            password: r.password.as_ref().map(|p| p.expose().to_string()),
            db: r.db,
            cluster_mode: r.cluster_mode,
            key_prefix: if shadow {
                r.shadow_key_prefix.clone()
            } else {
                r.key_prefix.clone()
            },
            pool_size: r.pool_size,
            pool_timeout: r.pool_timeout,
            dial_timeout: r.dial_timeout,
            read_timeout: r.read_timeout,
            write_timeout: r.write_timeout,
            max_retries: r.max_retries,
        })
    }
}
