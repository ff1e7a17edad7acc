//! config: the raw YAML file → a validated, typed [`Config`] (DESIGN.md §6).
//!
//! Loading never binds or connects anything: `main` loads and validates first and exits non-zero
//! with a message naming the key when something is wrong.

mod atlantis;
pub mod atlantis_server;
mod engine;
mod load;
mod rate;
mod raw;
mod report;
mod validate;
mod vcs_access;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub(crate) use crate::vocab::RawSecret;
pub use crate::vocab::{Secret, has_userinfo, redact_userinfo};
pub(crate) use atlantis::split_gitlab_hostname;
pub use load::Override;
pub use report::{Capability, Level};

use crate::vocab::{CommentCommandName, Priority, Vcs};

/// A configuration problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted key path (`enhanced-locking.redis.addr`), or where the value came from.
    pub key: String,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The validated configuration every other module reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Main listener (Atlantis's default port).
    pub listen: SocketAddr,
    /// The real Atlantis.
    pub upstream: UpstreamConfig,
    /// Limits on the main listener's clients.
    pub server: ServerConfig,
    /// The operator's listener.
    pub admin: AdminConfig,
    /// How to read Atlantis traffic.
    pub atlantis: AtlantisConfig,
    /// The `enhanced-locking:` block.
    pub enhanced: EnhancedConfig,
    /// Per-repository project table.
    pub repos: crate::resolve::ProjectTable,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

/// `upstream:`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL of Atlantis (`http://host:port`, optional path prefix).
    pub url: http::Uri,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long Atlantis may take to send its response head.
    pub timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
}

/// `server:`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted on streamed routes (413 above it).
    pub max_body_size: usize,
    /// Largest body of a lock route (`/events`, `/api/plan`, ...), which is buffered whole.
    pub max_lock_body_size: usize,
    /// Bytes of all buffered bodies at once; over it, 503 with `Retry-After`.
    pub max_buffered_bytes: usize,
    /// Open client connections on the main listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Slowest average body rate (bytes per second) tolerated after a short grace; 0 is off.
    pub min_body_rate: usize,
    /// How long a client may take to send its request head.
    pub header_read_timeout: Duration,
    /// How long a client may pause while sending its body.
    pub body_read_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    pub drain_period: Duration,
    /// Limits on lock traffic (off unless configured).
    pub rate_limit: RateLimitConfig,
    /// Load balancers / Ingress controllers whose `X-Forwarded-For` names the client for the
    /// per-IP limit (empty: the TCP peer is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// `server.rate-limit:`.
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    /// Lock requests per client IP.
    pub per_ip: Option<RateSpec>,
    /// Lock requests per repository.
    pub per_repo: Option<RateSpec>,
}

/// A token-bucket rate: `count` per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests allowed per period, sustained.
    pub count: u32,
    /// The period.
    pub per: Duration,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// `admin:`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Admin listener address.
    pub listen: SocketAddr,
    /// Bearer token for `/admin/*`.
    pub token: Option<Secret>,
    /// Requests per client IP on `/admin/*` (off unless configured).
    pub rate_limit: Option<RateSpec>,
    /// Open connections on the admin listener.
    pub max_connections: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a connection may stay without a byte read or written.
    pub idle_timeout: Duration,
}

/// `atlantis:`.
#[derive(Debug, Clone)]
pub struct AtlantisConfig {
    /// Atlantis's `--executable-name`.
    pub executable_name: String,
    /// Bot user names that may be addressed as `@name plan`.
    pub vcs_bot_users: Vec<String>,
    /// Webhook secrets per VCS.
    pub webhook_secrets: WebhookSecrets,
    /// VCSs whose webhooks are gated although they carry no secret (`allow-unsigned-webhooks`):
    /// anyone who reaches the webhook port can then move their locks.
    pub allow_unsigned_webhooks: Vec<Vcs>,
    /// Atlantis's `--api-secret`.
    pub api_secret: Option<Secret>,
    /// Reconciler period.
    pub lock_sync_interval: Duration,
    /// How long an engine lock may be missing from Atlantis before the reconciler releases it.
    pub lock_sync_grace: Duration,
    /// Budget for finding a bare command's projects through the VCS API.
    pub resolve_timeout: Duration,
    /// Atlantis's `--allow-draft-prs`.
    pub allow_draft_prs: bool,
    /// Atlantis's `--disable-autoplan`.
    pub disable_autoplan: bool,
    /// Atlantis's `--disable-autoplan-label`.
    pub disable_autoplan_label: Option<String>,
    /// Also comment when a queued command is granted (Atlantis's plan comment follows anyway).
    pub notify_on_grant: bool,
    /// Atlantis's `--allow-commands` (None: Atlantis's default list).
    pub allow_commands: Option<Vec<CommentCommandName>>,
    /// VCS API tokens and base URLs.
    pub vcs_tokens: VcsTokens,
    /// Atlantis's `--allow-fork-prs`: commands on pulls from another owner's repository run.
    pub allow_fork_prs: bool,
    /// Atlantis's `--disable-repo-locking`: nothing ever locks.
    pub disable_repo_locking: bool,
    /// Atlantis's `--repo-allowlist` rules (None: every repository, as the proxy cannot tell).
    pub repo_allowlist: Option<Vec<String>>,
    /// Atlantis's `--disable-apply-all`: a bare `atlantis apply` is refused.
    pub disable_apply_all: bool,
    /// Atlantis's `--disable-unlock-label`: `unlock` on a pull with this label deletes nothing.
    pub disable_unlock_label: Option<String>,
    /// Atlantis's `--gitlab-hostname` (host and optional base path), checked against clone URLs.
    pub gitlab_hostname: String,
    /// Atlantis's per-VCS bot users (`--gh-user`, `--gitlab-user`, ...).
    pub bot_user: PerVcsUser,
    /// The hosts of Atlantis's repo IDs (`--gh-hostname`, `--bitbucket-base-url`, ...).
    pub hosts: crate::resolve::RepoHosts,
    /// Atlantis's server-side repo config (`--repo-config`), lock keys only.
    pub server_repos: crate::resolve::ServerRepoConfig,
    /// Atlantis's `--autoplan-file-list`, when set.
    pub autoplan_file_list: Option<String>,
    /// Atlantis's `--autodiscover-mode`.
    pub autodiscover_mode: crate::resolve::AutoDiscoverMode,
    /// Every Atlantis setting the proxy read: its value (secrets hidden) and where it came from.
    pub settings: Vec<SettingReport>,
}

/// One Atlantis setting as `check-config` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingReport {
    /// Atlantis's flag name (`allow-fork-prs`).
    pub name: &'static str,
    /// The value as the proxy uses it (`***` for secrets).
    pub value: String,
    /// Where it came from.
    pub source: atlantis_server::SettingSource,
}

/// The bot user Atlantis runs as on each VCS (`@user plan` invokes it there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerVcsUser {
    /// `--gh-user`.
    pub github: Option<String>,
    /// `--gitlab-user`.
    pub gitlab: Option<String>,
    /// `--bitbucket-user` (Cloud and Server).
    pub bitbucket: Option<String>,
    /// `--gitea-user`.
    pub gitea: Option<String>,
    /// `--azuredevops-user`.
    pub azuredevops: Option<String>,
}

impl PerVcsUser {
    /// The bot user of `vcs`, if set.
    pub fn for_vcs(&self, vcs: Vcs) -> Option<&str> {
        match vcs {
            Vcs::Github => self.github.as_deref(),
            Vcs::Gitlab => self.gitlab.as_deref(),
            Vcs::BitbucketCloud | Vcs::BitbucketServer => self.bitbucket.as_deref(),
            Vcs::Gitea => self.gitea.as_deref(),
            Vcs::AzureDevops => self.azuredevops.as_deref(),
        }
    }
}

/// Webhook secrets per VCS.
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets {
    /// GitHub `--gh-webhook-secret`.
    pub github: Option<Secret>,
    /// GitLab `--gitlab-webhook-secret`.
    pub gitlab: Option<Secret>,
    /// Bitbucket `--bitbucket-webhook-secret`.
    pub bitbucket: Option<Secret>,
    /// Gitea `--gitea-webhook-secret`.
    pub gitea: Option<Secret>,
    /// Azure DevOps basic auth user and password.
    pub azuredevops: Option<(String, Secret)>,
}

/// VCS API access for the resolver and the notifier.
#[derive(Debug, Clone, Default)]
pub struct VcsTokens {
    /// GitHub token.
    pub github: Option<Secret>,
    /// Atlantis's `gh-token-file`, when `github` was read from it: the GitHub clients read the
    /// file again on every call, as Atlantis does, so a rotated token is used at once.
    pub github_token_file: Option<std::path::PathBuf>,
    /// GitHub App credentials (Atlantis's `gh-app-*`), used when no token is: the proxy calls
    /// the GitHub API with the app's installation token.
    pub github_app: Option<crate::vcs::GithubAppCredentials>,
    /// GitHub API base (GitHub Enterprise).
    pub github_api_url: Option<http::Uri>,
    /// GitLab token.
    pub gitlab: Option<Secret>,
    /// GitLab API base (self-hosted).
    pub gitlab_api_url: Option<http::Uri>,
    /// Atlantis's `gitea-token`: the proxy reads a Gitea pull through it (is it a fork?).
    pub gitea: Option<Secret>,
    /// Atlantis's `gitea-base-url` (default `https://gitea.com`); the API is under `/api/v1`.
    pub gitea_base_url: String,
}

impl VcsTokens {
    /// True when the proxy can call the GitHub API authenticated (a token or a GitHub App).
    pub fn github_authenticated(&self) -> bool {
        self.github.is_some() || self.github_app.is_some()
    }
}

/// Which store the engine keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-process (one replica only).
    Memory,
    /// Redis or Redis Cluster.
    Redis,
}

/// `enhanced-locking:` — the migration guide's keys.
#[derive(Debug, Clone)]
pub struct EnhancedConfig {
    /// Master switch: when false everything takes the legacy path.
    pub enabled: bool,
    /// Engine store.
    pub backend: Backend,
    /// On engine failure, take the legacy path instead of failing the request.
    pub legacy_fallback: bool,
    /// Shadow mode: legacy decides, the engine only evaluates and diffs.
    pub monitor_only: bool,
    /// Percentage of repositories (by stable hash) routed to the engine.
    pub traffic_split: u8,
    /// Redis connection.
    pub redis: RedisConfig,
    /// Hold timeout when none is configured for the project or priority.
    pub default_timeout: Duration,
    /// Upper bound on any hold timeout.
    pub max_timeout: Duration,
    /// Hold timeout per priority.
    pub priority_timeouts: BTreeMap<Priority, Duration>,
    /// Order waiters by priority (otherwise FIFO).
    pub enable_priority_queue: bool,
    /// Waiters per resource.
    pub max_queue_size: usize,
    /// Stored requests (queued or being replayed) per repository.
    pub max_waiters_per_repo: u64,
    /// Stored requests in total.
    pub max_waiters_total: u64,
    /// Bytes of stored requests per repository.
    pub max_queued_bytes_per_repo: u64,
    /// Bytes of stored requests in total.
    pub max_queued_bytes_total: u64,
    /// How long a waiter may wait before it is forwarded to Atlantis anyway.
    pub queue_timeout: Duration,
    /// Aging factor so low priority cannot starve.
    pub priority_boost_factor: f64,
    /// PR label pattern that sets priority (`<level>` is the placeholder).
    pub priority_label_pattern: String,
    /// Look for wait-for cycles.
    pub enable_deadlock_detection: bool,
    /// Period of the deadlock scan.
    pub deadlock_check_interval: Duration,
    /// Breaker around the engine backend.
    pub enable_circuit_breaker: bool,
    /// Breaker thresholds.
    pub circuit_breaker: BreakerConfig,
    /// Release timed-out locks even when nobody waits.
    pub enable_automatic_cleanup: bool,
    /// Period of the cleanup task.
    pub cleanup_interval: Duration,
    /// Emit engine events.
    pub enable_events: bool,
    /// Bound of event/shadow buffers.
    pub event_buffer_size: usize,
    /// Name of this replica (claims, logs).
    pub instance_id: String,
    /// Replay retries toward Atlantis.
    pub retry: RetryConfig,
    /// Period of queue-timeout, preemption and lease checks.
    pub timeout_check_interval: Duration,
    /// How long a replica owns a dispatch before another may take it over.
    pub dispatch_lease: Duration,
    /// How long a replay waits for Atlantis to show the released lock gone.
    pub replay_wait: Duration,
    /// How often an `/api/plan` or `/api/apply` waiting for a contended lock asks the engine again.
    pub api_poll_interval: Duration,
    /// How long after a shadowed webhook Atlantis's lock table is read for legacy's decision.
    pub shadow_settle: Duration,
    /// Repositories always on the enhanced path.
    pub always_enhanced: Vec<String>,
    /// Repositories always on the legacy path.
    pub always_legacy: Vec<String>,
}

/// `enhanced-locking.redis:`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `host:port` of a standalone Redis (`redis://` URLs accepted).
    pub addr: Option<String>,
    /// Seed nodes for cluster mode.
    pub cluster_nodes: Vec<String>,
    /// Password (AUTH).
    pub password: Option<Secret>,
    /// Database number (standalone only).
    pub db: i64,
    /// Use Redis Cluster.
    pub cluster_mode: bool,
    /// Prefix of every engine key.
    pub key_prefix: String,
    /// Prefix of shadow-mode keys.
    pub shadow_key_prefix: String,
    /// Pool size.
    pub pool_size: u32,
    /// Wait for a pooled connection.
    pub pool_timeout: Duration,
    /// Connect timeout.
    pub dial_timeout: Duration,
    /// Read timeout.
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Retries of a failed command.
    pub max_retries: u32,
}

/// `enhanced-locking.circuit-breaker:`.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Consecutive successful probes that close it.
    pub success_threshold: u32,
    /// How long it stays open before probing.
    pub timeout: Duration,
}

/// Replay retries (`enable-retry`, `max-retry-attempts`, `retry-base-delay`).
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retry failed replays at all.
    pub enabled: bool,
    /// Attempts before giving up for this round (the waiter stays durable).
    pub max_attempts: u32,
    /// First backoff, doubled each attempt.
    pub base_delay: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `telemetry:`.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP endpoint; traces are off when unset.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub otlp_protocol: String,
    /// Head sampling ratio 0..=1.
    pub sampling_ratio: f64,
    /// `service.name`.
    pub service_name: String,
}

/// What the command line contributes.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
}

impl Config {
    /// Loads the file (if any), applies `ALP_*` environment and CLI overrides, and validates.
    pub fn load(
        path: Option<&Path>,
        env: &HashMap<String, String>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", p.display()))
            })?),
            None => None,
        };
        let name = path.map(|p| p.display().to_string()).unwrap_or_default();
        Self::from_parts(text.as_deref().map(|t| (name.as_str(), t)), env, cli)
    }

    /// Builds a config from YAML text alone (no environment, no CLI): for tests and embedding.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Self::from_parts(
            Some(("(inline)", text)),
            &HashMap::new(),
            &CliOverrides::default(),
        )
    }

    fn from_parts(
        file: Option<(&str, &str)>,
        env: &HashMap<String, String>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let mut overrides = load::env_overrides(env);
        let flags = [
            ("listen", "--listen", &cli.listen),
            ("upstream.url", "--upstream", &cli.upstream),
            ("admin.listen", "--admin-listen", &cli.admin_listen),
        ];
        for (key, source, value) in flags {
            if let Some(v) = value {
                overrides.push(Override {
                    key: key.into(),
                    value: v.clone(),
                    source: source.into(),
                });
            }
        }
        let raw = load::assemble(file, env, &overrides)?;
        validate::validate(raw, env)
    }
}
