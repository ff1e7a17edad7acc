//! The configuration file exactly as written: serde structs that refuse unknown keys.
//!
//! Every field is optional here; defaults and checks live in `validate.rs`, so one place decides
//! what a value means. Key names are the migration guide's (kebab-case) where it names them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::vocab::RawSecret;

/// The whole file (DESIGN.md §6: the top level is a contract).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    pub listen: Option<String>,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub atlantis: RawAtlantis,
    #[serde(default)]
    pub enhanced_locking: RawEnhancedLocking,
    #[serde(default)]
    pub repos: Vec<crate::resolve::RawRepo>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

/// `upstream:` — the real Atlantis.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUpstream {
    pub url: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<usize>,
}

/// `server:` — limits on the main listener's clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServer {
    pub max_body_size: Option<String>,
    pub max_lock_body_size: Option<String>,
    pub max_buffered_bytes: Option<String>,
    pub max_connections: Option<usize>,
    pub min_body_rate: Option<String>,
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub drain_period: Option<String>,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    pub trusted_proxies: Option<Vec<String>>,
}

/// `server.rate-limit:` — per client and per repository limits on lock traffic.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRateLimit {
    pub per_ip: Option<String>,
    pub per_repo: Option<String>,
}

/// `admin:` — the operator's listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<RawSecret>,
    pub rate_limit: Option<String>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
}

/// `atlantis:` — what the proxy must know to read Atlantis traffic like Atlantis.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAtlantis {
    pub executable_name: Option<String>,
    pub vcs_bot_users: Option<Vec<String>>,
    #[serde(default)]
    pub webhook_secrets: RawWebhookSecrets,
    pub allow_unsigned_webhooks: Option<Vec<String>>,
    pub api_secret: Option<RawSecret>,
    pub lock_sync_interval: Option<String>,
    pub lock_sync_grace: Option<String>,
    pub resolve_timeout: Option<String>,
    pub allow_draft_prs: Option<bool>,
    pub disable_autoplan: Option<bool>,
    pub disable_autoplan_label: Option<String>,
    pub allow_commands: Option<Vec<String>>,
    pub notify_on_grant: Option<bool>,
    #[serde(default)]
    pub vcs_tokens: RawVcsTokens,
    pub server_config: Option<String>,
    pub repo_config: Option<String>,
    pub allow_fork_prs: Option<bool>,
    pub disable_repo_locking: Option<bool>,
    pub repo_allowlist: Option<Vec<String>>,
    pub disable_apply_all: Option<bool>,
    pub disable_unlock_label: Option<String>,
    pub gitlab_hostname: Option<String>,
}

/// `atlantis.webhook-secrets:` — Atlantis's own webhook secrets, to verify signatures.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWebhookSecrets {
    pub github: Option<RawSecret>,
    pub gitlab: Option<RawSecret>,
    pub bitbucket: Option<RawSecret>,
    pub gitea: Option<RawSecret>,
    pub azuredevops: Option<RawBasicAuth>,
}

/// A user/password pair (Azure DevOps webhooks use HTTP Basic auth).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub user: Option<String>,
    pub password: Option<RawSecret>,
}

/// `atlantis.vcs-tokens:` — API tokens for the resolver and the notifier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVcsTokens {
    pub github: Option<RawSecret>,
    pub github_api_url: Option<String>,
    pub gitlab: Option<RawSecret>,
    pub gitlab_api_url: Option<String>,
}

/// `enhanced-locking:` — the migration guide's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEnhancedLocking {
    pub enabled: Option<bool>,
    pub backend: Option<String>,
    pub legacy_fallback: Option<bool>,
    pub monitor_only: Option<bool>,
    pub traffic_split: Option<u8>,
    #[serde(default)]
    pub redis: RawRedis,
    pub default_timeout: Option<String>,
    pub max_timeout: Option<String>,
    pub priority_timeouts: Option<BTreeMap<String, String>>,
    pub enable_priority_queue: Option<bool>,
    pub max_queue_size: Option<usize>,
    pub max_waiters_per_repo: Option<u64>,
    pub max_waiters_total: Option<u64>,
    pub max_queued_bytes_per_repo: Option<String>,
    pub max_queued_bytes_total: Option<String>,
    pub queue_timeout: Option<String>,
    pub priority_boost_factor: Option<f64>,
    pub priority_label_pattern: Option<String>,
    pub enable_deadlock_detection: Option<bool>,
    pub deadlock_check_interval: Option<String>,
    pub enable_circuit_breaker: Option<bool>,
    #[serde(default)]
    pub circuit_breaker: RawCircuitBreaker,
    pub enable_automatic_cleanup: Option<bool>,
    pub cleanup_interval: Option<String>,
    pub enable_events: Option<bool>,
    pub event_buffer_size: Option<usize>,
    pub instance_id: Option<String>,
    pub timeout_check_interval: Option<String>,
    pub dispatch_lease: Option<String>,
    pub replay_wait: Option<String>,
    pub api_poll_interval: Option<String>,
    pub shadow_settle: Option<String>,
    pub enable_retry: Option<bool>,
    pub max_retry_attempts: Option<u32>,
    pub retry_base_delay: Option<String>,
    pub preserve_legacy_format: Option<bool>,
    pub always_enhanced: Option<Vec<String>>,
    pub always_legacy: Option<Vec<String>>,
}

/// `enhanced-locking.redis:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRedis {
    pub addr: Option<String>,
    pub cluster_nodes: Option<Vec<String>>,
    pub password: Option<RawSecret>,
    pub db: Option<i64>,
    pub cluster_mode: Option<bool>,
    pub key_prefix: Option<String>,
    pub shadow_key_prefix: Option<String>,
    pub pool_size: Option<u32>,
    pub pool_timeout: Option<String>,
    pub dial_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub max_retries: Option<u32>,
}

/// `enhanced-locking.circuit-breaker:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCircuitBreaker {
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
    pub timeout: Option<String>,
}

/// `telemetry:` — logs, traces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTelemetry {
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<String>,
    pub sampling_ratio: Option<f64>,
    pub service_name: Option<String>,
}
