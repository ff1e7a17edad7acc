//! The engine's typed settings, derived from the `enhanced-locking:` section.

use crate::engine::{EngineSettings, RedisSettings};
use crate::vocab::Vcs;

use super::{AtlantisConfig, Backend, EnhancedConfig};

impl AtlantisConfig {
    /// The VCSs whose webhooks the proxy gates (a webhook secret, or `allow-unsigned-webhooks`),
    /// in [`Vcs::ALL`] order.
    pub fn gated_vcss(&self) -> Vec<Vcs> {
        let s = &self.webhook_secrets;
        let set =
            |v: &Option<crate::vocab::Secret>| v.as_ref().is_some_and(|s| !s.expose().is_empty());
        Vcs::ALL
            .into_iter()
            .filter(|v| {
                let signed = match v {
                    Vcs::Github => set(&s.github),
                    Vcs::Gitlab => set(&s.gitlab),
                    Vcs::BitbucketCloud | Vcs::BitbucketServer => set(&s.bitbucket),
                    Vcs::Gitea => set(&s.gitea),
                    Vcs::AzureDevops => s
                        .azuredevops
                        .as_ref()
                        .is_some_and(|(u, p)| !u.is_empty() && !p.is_empty()),
                };
                signed || self.allow_unsigned_webhooks.contains(v)
            })
            .collect()
    }

    /// The VCS whose pulls the engine stores unmarked, as all pulls were stored before they had
    /// a VCS: GitHub when it is gated (or nothing is), else the first gated VCS, so a
    /// single-VCS deployment reads its state from before the upgrade as its own.
    pub fn unmarked_vcs(&self) -> Vcs {
        let gated = self.gated_vcss();
        if gated.contains(&Vcs::Github) {
            return Vcs::Github;
        }
        gated.first().copied().unwrap_or(Vcs::Github)
    }
}

impl EnhancedConfig {
    /// Queueing, timeout, deadlock and cleanup settings for the engine; `unmarked_vcs` from
    /// [`AtlantisConfig::unmarked_vcs`].
    pub fn engine_settings(&self, unmarked_vcs: Vcs) -> EngineSettings {
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
            unmarked_vcs,
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::vocab::Vcs;

    fn unmarked(atlantis: &str) -> (Vec<Vcs>, Vcs) {
        let c = Config::from_yaml(&format!("atlantis:\n{atlantis}")).expect("config");
        (c.atlantis.gated_vcss(), c.atlantis.unmarked_vcs())
    }

    #[test]
    fn the_unmarked_vcs_is_github_or_the_only_gated_one() {
        assert_eq!(
            unmarked("  lock-sync-interval: 10s\n"),
            (vec![], Vcs::Github)
        );
        assert_eq!(
            unmarked("  webhook-secrets: {gitlab: s}\n"),
            (vec![Vcs::Gitlab], Vcs::Gitlab)
        );
        assert_eq!(
            unmarked("  webhook-secrets: {gitlab: s, github: t}\n"),
            (vec![Vcs::Github, Vcs::Gitlab], Vcs::Github)
        );
        assert_eq!(
            unmarked("  webhook-secrets: {gitea: s}\n  allow-unsigned-webhooks: [gitlab]\n"),
            (vec![Vcs::Gitlab, Vcs::Gitea], Vcs::Gitlab)
        );
    }
}
