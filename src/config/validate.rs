//! Raw values → typed config, with defaults, and every check that can fail before binding.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{RawConfig, RawEnhancedLocking, RawRedis};
use super::*;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(raw: RawConfig, env: &HashMap<String, String>) -> Result<Config> {
    let listen = addr("listen", raw.listen.as_deref().unwrap_or("0.0.0.0:4141"))?;
    let admin_listen = addr(
        "admin.listen",
        raw.admin.listen.as_deref().unwrap_or("127.0.0.1:9464"),
    )?;
    if clash(listen, admin_listen) {
        return Err(ConfigError::new(
            "admin.listen",
            format!(
                "{admin_listen} clashes with listen {listen}: give the admin listener its own port"
            ),
        ));
    }
    let admin_token = secret("admin.token", raw.admin.token)?;
    if admin_token.is_none() && !admin_listen.ip().is_loopback() {
        return Err(ConfigError::new(
            "admin.token",
            format!(
                "the admin listener {admin_listen} is not on loopback, so a token is required \
                 (set admin.token or ALP_ADMIN_TOKEN)"
            ),
        ));
    }

    let admin_rate = rate::parse("admin.rate-limit", raw.admin.rate_limit.as_deref())?;

    let url = raw
        .upstream
        .url
        .as_deref()
        .unwrap_or("http://127.0.0.1:4142");
    let upstream = UpstreamConfig {
        url: upstream_url(url)?,
        connect_timeout: positive(
            "upstream.connect-timeout",
            raw.upstream.connect_timeout,
            "5s",
        )?,
        timeout: positive("upstream.timeout", raw.upstream.timeout, "60s")?,
        pool_idle_timeout: dur(
            "upstream.pool-idle-timeout",
            raw.upstream.pool_idle_timeout,
            "90s",
        )?,
        pool_max_idle_per_host: raw.upstream.pool_max_idle_per_host.unwrap_or(32),
    };

    let server = ServerConfig {
        max_body_size: size(
            "server.max-body-size",
            raw.server.max_body_size.as_deref(),
            "25MiB",
        )?,
        max_lock_body_size: size(
            "server.max-lock-body-size",
            raw.server.max_lock_body_size.as_deref(),
            "25MiB",
        )?,
        max_buffered_bytes: size(
            "server.max-buffered-bytes",
            raw.server.max_buffered_bytes.as_deref(),
            "256MiB",
        )?,
        max_connections: count("server.max-connections", raw.server.max_connections, 1024)?,
        min_body_rate: match raw.server.min_body_rate.as_deref().map(str::trim) {
            Some("off") => 0,
            other => size(
                "server.min-body-rate",
                other.map(|r| r.trim_end_matches("/s")),
                "1KiB",
            )?,
        },
        header_read_timeout: positive(
            "server.header-read-timeout",
            raw.server.header_read_timeout,
            "30s",
        )?,
        body_read_timeout: positive(
            "server.body-read-timeout",
            raw.server.body_read_timeout,
            "30s",
        )?,
        drain_period: dur("server.drain-period", raw.server.drain_period, "30s")?,
        rate_limit: RateLimitConfig {
            per_ip: rate::parse(
                "server.rate-limit.per-ip",
                raw.server.rate_limit.per_ip.as_deref(),
            )?,
            per_repo: rate::parse(
                "server.rate-limit.per-repo",
                raw.server.rate_limit.per_repo.as_deref(),
            )?,
        },
        trusted_proxies: cidrs(
            "server.trusted-proxies",
            raw.server.trusted_proxies.unwrap_or_default(),
        )?,
    };

    let atlantis = super::atlantis::atlantis(raw.atlantis, env)?;

    let telemetry = telemetry(raw.telemetry)?;
    let enhanced = enhanced(raw.enhanced_locking)?;
    Ok(Config {
        listen,
        upstream,
        server,
        admin: AdminConfig {
            listen: admin_listen,
            token: admin_token,
            rate_limit: admin_rate,
            max_connections: count("admin.max-connections", raw.admin.max_connections, 64)?,
            header_read_timeout: dur(
                "admin.header-read-timeout",
                raw.admin.header_read_timeout,
                "10s",
            )?,
            idle_timeout: dur("admin.idle-timeout", raw.admin.idle_timeout, "60s")?,
        },
        atlantis,
        enhanced,
        repos: crate::resolve::ProjectTable::from_raw(&raw.repos)
            .map_err(|e| ConfigError::new(e.at.clone(), e.problem.clone()))?,
        telemetry,
    })
}

/// `atlantis.allow-unsigned-webhooks`: VCS names as under `webhook-secrets` (`bitbucket` is
/// Cloud and Server).
pub(super) fn allow_unsigned(names: Vec<String>) -> Result<Vec<Vcs>> {
    let mut out = Vec::new();
    for n in names {
        let vcs: &[Vcs] = match n.to_ascii_lowercase().as_str() {
            "github" => &[Vcs::Github],
            "gitlab" => &[Vcs::Gitlab],
            "bitbucket" => &[Vcs::BitbucketCloud, Vcs::BitbucketServer],
            "gitea" => &[Vcs::Gitea],
            "azuredevops" => &[Vcs::AzureDevops],
            _ => {
                return Err(ConfigError::new(
                    "atlantis.allow-unsigned-webhooks",
                    format!("'{n}' is not a VCS (github, gitlab, bitbucket, gitea, azuredevops)"),
                ));
            }
        };
        for v in vcs {
            if !out.contains(v) {
                out.push(*v);
            }
        }
    }
    Ok(out)
}

fn enhanced(e: RawEnhancedLocking) -> Result<EnhancedConfig> {
    const K: &str = "enhanced-locking";
    let caps = QueueCaps::validate(&e)?;
    let redis = redis(e.redis)?;
    let backend = match e.backend.as_deref() {
        None if redis.addr.is_some() || !redis.cluster_nodes.is_empty() => Backend::Redis,
        None | Some("memory") => Backend::Memory,
        Some("redis") => Backend::Redis,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{K}.backend"),
                format!("unknown backend '{other}' (expected redis or memory)"),
            ));
        }
    };
    if backend == Backend::Redis && redis.addr.is_none() && redis.cluster_nodes.is_empty() {
        return Err(ConfigError::new(
            format!("{K}.redis.addr"),
            "backend is redis but no address is given (set redis.addr, or redis.cluster-nodes with cluster-mode)",
        ));
    }
    let traffic_split = e.traffic_split.unwrap_or(0);
    if traffic_split > 100 {
        return Err(ConfigError::new(
            format!("{K}.traffic-split"),
            format!("{traffic_split} is not a percentage (0 to 100)"),
        ));
    }
    if e.preserve_legacy_format == Some(false) {
        return Err(ConfigError::new(
            format!("{K}.preserve-legacy-format"),
            "the proxy always keeps Atlantis's own lock key format; remove the key or set it to true",
        ));
    }
    let default_timeout = positive(&format!("{K}.default-timeout"), e.default_timeout, "30m")?;
    let max_timeout = positive(&format!("{K}.max-timeout"), e.max_timeout, "2h")?;
    if default_timeout > max_timeout {
        return Err(ConfigError::new(
            format!("{K}.default-timeout"),
            "is longer than max-timeout",
        ));
    }
    let mut priority_timeouts = BTreeMap::new();
    for (name, value) in e.priority_timeouts.unwrap_or_default() {
        let key = format!("{K}.priority-timeouts.{name}");
        let p: Priority = name.parse().map_err(|m| ConfigError::new(&key, m))?;
        priority_timeouts.insert(p, positive(&key, Some(value), "0s")?);
    }
    let boost = e.priority_boost_factor.unwrap_or(2.0);
    if !(boost.is_finite() && boost >= 1.0) {
        return Err(ConfigError::new(
            format!("{K}.priority-boost-factor"),
            format!("{boost} must be a number >= 1.0"),
        ));
    }
    let pattern = e
        .priority_label_pattern
        .unwrap_or_else(|| "atlantis/priority:<level>".into());
    if !pattern.contains("<level>") {
        return Err(ConfigError::new(
            format!("{K}.priority-label-pattern"),
            "must contain the placeholder <level>",
        ));
    }
    let max_queue_size = e.max_queue_size.unwrap_or(1000);
    if max_queue_size == 0 {
        return Err(ConfigError::new(
            format!("{K}.max-queue-size"),
            "must be at least 1",
        ));
    }
    let cb = e.circuit_breaker;
    Ok(EnhancedConfig {
        enabled: e.enabled.unwrap_or(true),
        backend,
        legacy_fallback: e.legacy_fallback.unwrap_or(true),
        monitor_only: e.monitor_only.unwrap_or(false),
        traffic_split,
        redis,
        default_timeout,
        max_timeout,
        priority_timeouts,
        enable_priority_queue: e.enable_priority_queue.unwrap_or(true),
        max_queue_size,
        max_waiters_per_repo: caps.waiters_per_repo,
        max_waiters_total: caps.waiters_total,
        max_queued_bytes_per_repo: caps.bytes_per_repo,
        max_queued_bytes_total: caps.bytes_total,
        queue_timeout: positive(&format!("{K}.queue-timeout"), e.queue_timeout, "10m")?,
        priority_boost_factor: boost,
        priority_label_pattern: pattern,
        enable_deadlock_detection: e.enable_deadlock_detection.unwrap_or(true),
        deadlock_check_interval: positive(
            &format!("{K}.deadlock-check-interval"),
            e.deadlock_check_interval,
            "30s",
        )?,
        enable_circuit_breaker: e.enable_circuit_breaker.unwrap_or(true),
        circuit_breaker: BreakerConfig {
            failure_threshold: cb.failure_threshold.unwrap_or(10).max(1),
            success_threshold: cb.success_threshold.unwrap_or(5).max(1),
            timeout: positive(&format!("{K}.circuit-breaker.timeout"), cb.timeout, "30s")?,
        },
        enable_automatic_cleanup: e.enable_automatic_cleanup.unwrap_or(false),
        cleanup_interval: positive(&format!("{K}.cleanup-interval"), e.cleanup_interval, "5m")?,
        enable_events: e.enable_events.unwrap_or(true),
        event_buffer_size: e.event_buffer_size.unwrap_or(1000).max(1),
        instance_id: e.instance_id.unwrap_or_else(default_instance_id),
        retry: RetryConfig {
            enabled: e.enable_retry.unwrap_or(true),
            max_attempts: e.max_retry_attempts.unwrap_or(5).max(1),
            base_delay: dur(&format!("{K}.retry-base-delay"), e.retry_base_delay, "1s")?,
        },
        timeout_check_interval: positive(
            &format!("{K}.timeout-check-interval"),
            e.timeout_check_interval,
            "1s",
        )?,
        dispatch_lease: positive(&format!("{K}.dispatch-lease"), e.dispatch_lease, "60s")?,
        replay_wait: positive(&format!("{K}.replay-wait"), e.replay_wait, "30s")?,
        api_poll_interval: positive(
            &format!("{K}.api-poll-interval"),
            e.api_poll_interval,
            "250ms",
        )?,
        shadow_settle: positive(&format!("{K}.shadow-settle"), e.shadow_settle, "1s")?,
        always_enhanced: e.always_enhanced.unwrap_or_default(),
        always_legacy: e.always_legacy.unwrap_or_default(),
    })
}

/// The memory caps on stored requests (issue 14, item 6), each at least 1 and the per-repository
/// one no larger than the total.
struct QueueCaps {
    waiters_per_repo: u64,
    waiters_total: u64,
    bytes_per_repo: u64,
    bytes_total: u64,
}

impl QueueCaps {
    fn validate(e: &RawEnhancedLocking) -> Result<Self> {
        const K: &str = "enhanced-locking";
        let at_least_one = |key: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::new(format!("{K}.{key}"), "must be at least 1"))
            } else {
                Ok(v)
            }
        };
        let bytes = |key: &str, v: Option<&str>, default: &str| -> Result<u64> {
            let n = size(&format!("{K}.{key}"), v, default)? as u64;
            at_least_one(key, n)
        };
        let caps = Self {
            waiters_per_repo: at_least_one(
                "max-waiters-per-repo",
                e.max_waiters_per_repo.unwrap_or(1000),
            )?,
            waiters_total: at_least_one(
                "max-waiters-total",
                e.max_waiters_total.unwrap_or(10_000),
            )?,
            bytes_per_repo: bytes(
                "max-queued-bytes-per-repo",
                e.max_queued_bytes_per_repo.as_deref(),
                "256MiB",
            )?,
            bytes_total: bytes(
                "max-queued-bytes-total",
                e.max_queued_bytes_total.as_deref(),
                "1GiB",
            )?,
        };
        if caps.waiters_per_repo > caps.waiters_total {
            return Err(ConfigError::new(
                format!("{K}.max-waiters-per-repo"),
                "is larger than max-waiters-total",
            ));
        }
        if caps.bytes_per_repo > caps.bytes_total {
            return Err(ConfigError::new(
                format!("{K}.max-queued-bytes-per-repo"),
                "is larger than max-queued-bytes-total",
            ));
        }
        Ok(caps)
    }
}

fn redis(r: RawRedis) -> Result<RedisConfig> {
    const K: &str = "enhanced-locking.redis";
    let cluster_mode = r.cluster_mode.unwrap_or(false);
    let mut cluster_nodes = r.cluster_nodes.unwrap_or_default();
    if cluster_mode && cluster_nodes.is_empty() {
        if let Some(a) = &r.addr {
            cluster_nodes.push(a.clone());
        } else {
            return Err(ConfigError::new(
                format!("{K}.cluster-nodes"),
                "cluster-mode is on but no nodes are given",
            ));
        }
    }
    for (key, prefix) in [
        ("key-prefix", &r.key_prefix),
        ("shadow-key-prefix", &r.shadow_key_prefix),
    ] {
        // A brace in the prefix would become the Redis Cluster hash tag of every key.
        if prefix.as_deref().is_some_and(|p| p.contains(['{', '}'])) {
            return Err(ConfigError::new(
                format!("{K}.{key}"),
                "must not contain '{' or '}' (they would choose the Redis Cluster slot of every key)",
            ));
        }
    }
    let db = r.db.unwrap_or(0);
    if cluster_mode && db != 0 {
        return Err(ConfigError::new(
            format!("{K}.db"),
            "Redis Cluster has only db 0",
        ));
    }
    Ok(RedisConfig {
        addr: r.addr.filter(|a| !a.is_empty()),
        cluster_nodes,
        password: secret(&format!("{K}.password"), r.password)?,
        db,
        cluster_mode,
        key_prefix: r.key_prefix.unwrap_or_else(|| "atlantis:lock:".into()),
        shadow_key_prefix: r
            .shadow_key_prefix
            .unwrap_or_else(|| "atlantis:shadow:".into()),
        pool_size: r.pool_size.unwrap_or(20).max(1),
        pool_timeout: positive(&format!("{K}.pool-timeout"), r.pool_timeout, "2s")?,
        dial_timeout: positive(&format!("{K}.dial-timeout"), r.dial_timeout, "2s")?,
        read_timeout: positive(&format!("{K}.read-timeout"), r.read_timeout, "1s")?,
        write_timeout: positive(&format!("{K}.write-timeout"), r.write_timeout, "1s")?,
        max_retries: r.max_retries.unwrap_or(2),
    })
}

fn telemetry(t: super::raw::RawTelemetry) -> Result<TelemetryConfig> {
    let log_format = match t.log_format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::new(
                "telemetry.log-format",
                format!("unknown format '{other}' (expected text or json)"),
            ));
        }
    };
    let log_level = t.log_level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(ConfigError::new(
            "telemetry.log-level",
            format!(
                "'{log_level}' is not a level or filter (e.g. info, debug, atlantis_lock_proxy=debug)"
            ),
        ));
    }
    let otlp_protocol = t.otlp_protocol.unwrap_or_else(|| "grpc".into());
    if otlp_protocol != "grpc" && otlp_protocol != "http/protobuf" {
        return Err(ConfigError::new(
            "telemetry.otlp-protocol",
            format!("'{otlp_protocol}' (expected grpc or http/protobuf)"),
        ));
    }
    let sampling_ratio = t.sampling_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sampling_ratio) {
        return Err(ConfigError::new(
            "telemetry.sampling-ratio",
            format!("{sampling_ratio} is not between 0 and 1"),
        ));
    }
    if let Some(ep) = &t.otlp_endpoint {
        ep.parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme().is_some() && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::new("telemetry.otlp-endpoint", format!("'{ep}' is not a URL"))
            })?;
    }
    Ok(TelemetryConfig {
        log_format,
        log_level,
        otlp_endpoint: t.otlp_endpoint.filter(|e| !e.is_empty()),
        otlp_protocol,
        sampling_ratio,
        service_name: t
            .service_name
            .unwrap_or_else(|| "atlantis-lock-proxy".into()),
    })
}

fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "proxy".into());
    format!("{host}-{}", std::process::id())
}

fn addr(key: &str, value: &str) -> Result<SocketAddr> {
    value.parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("'{value}' is not an address like 0.0.0.0:4141 or 127.0.0.1:9464"),
        )
    })
}

/// Two listeners clash when they share a port and one address covers the other.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn upstream_url(value: &str) -> Result<http::Uri> {
    let shown = redact_userinfo(value);
    let bad = |why: &str| ConfigError::new("upstream.url", format!("'{shown}' {why}"));
    if has_userinfo(value) {
        // It would go to Atlantis nowhere (hyper ignores it) and end up in logs and errors.
        return Err(bad(
            "carries a user:password@ part: the proxy never sends credentials to Atlantis; remove it",
        ));
    }
    let uri: http::Uri = value.parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "uses https: the proxy talks plain HTTP to Atlantis (run it beside Atlantis, e.g. in the same pod)",
            ));
        }
        _ => return Err(bad("needs an http:// scheme, e.g. http://atlantis:4141")),
    }
    if uri.host().is_none() {
        return Err(bad("has no host"));
    }
    if uri.query().is_some() {
        return Err(bad("must not carry a query string"));
    }
    Ok(uri)
}

pub(super) fn opt_url(key: &str, value: Option<String>) -> Result<Option<http::Uri>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<http::Uri>()
                .ok()
                .filter(|u| u.scheme().is_some() && u.host().is_some())
                .ok_or_else(|| {
                    ConfigError::new(key, format!("'{}' is not a URL", redact_userinfo(&v)))
                })
        })
        .transpose()
}

/// CIDRs (`10.0.0.0/8`, `fd00::/8`); a bare address is one host.
fn cidrs(key: &str, values: Vec<String>) -> Result<Vec<ipnet::IpNet>> {
    values
        .iter()
        .map(|v| {
            let t = v.trim();
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    ConfigError::new(
                        key,
                        format!("'{v}' is not a CIDR like 10.0.0.0/8 or an address"),
                    )
                })
        })
        .collect()
}

pub(super) fn secret(key: &str, value: Option<RawSecret>) -> Result<Option<Secret>> {
    match value.map(String::from) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.trim() != v => Err(ConfigError::new(
            key,
            "has leading or trailing whitespace (a stray newline from a secret file?)",
        )),
        Some(v) => Ok(Some(Secret::new(v))),
    }
}

/// Longest duration any key takes: beyond it, adding the value to a clock reading can overflow
/// (a background task would panic on "overflow when adding duration to instant").
pub(super) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration that may be zero (a grace period, a drain period, a base delay).
pub(super) fn dur(key: &str, value: Option<String>, default: &str) -> Result<Duration> {
    let text = value.unwrap_or_else(|| default.to_string());
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        ConfigError::new(
            key,
            format!("'{text}' is not a duration ({e}); write e.g. 500ms, 30s, 10m, 2h"),
        )
    })?;
    if d > MAX_DURATION {
        return Err(ConfigError::new(
            key,
            format!("'{text}' is longer than the most any duration may be (366 days)"),
        ));
    }
    Ok(d)
}

/// A period or a timeout: zero would spin, panic (`interval` needs a non-zero period) or time
/// everything out at once.
pub(super) fn positive(key: &str, value: Option<String>, default: &str) -> Result<Duration> {
    let d = dur(key, value, default)?;
    if d.is_zero() {
        return Err(ConfigError::new(key, "must be longer than zero"));
    }
    Ok(d)
}

fn count(key: &str, value: Option<usize>, default: usize) -> Result<usize> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::new(key, "must be at least 1")),
        n => Ok(n),
    }
}

fn size(key: &str, value: Option<&str>, default: &str) -> Result<usize> {
    let text = value.unwrap_or(default).trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1_000_000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => usize::MAX,
    };
    num.parse::<usize>()
        .ok()
        .filter(|_| mult != usize::MAX)
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ConfigError::new(key, format!("'{text}' is not a size like 25MiB or 1048576"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> ConfigError {
        Config::from_yaml(yaml).unwrap_err()
    }

    #[test]
    fn empty_file_gives_atlantis_compatible_defaults() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:4141");
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.enhanced.backend, Backend::Memory);
        assert_eq!(c.enhanced.traffic_split, 0);
        assert_eq!(c.enhanced.queue_timeout, Duration::from_secs(600));
        assert_eq!(c.server.max_body_size, 25 * 1024 * 1024);
        assert_eq!(c.server.max_lock_body_size, 25 * 1024 * 1024);
        assert_eq!(c.server.max_buffered_bytes, 256 * 1024 * 1024);
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.min_body_rate, 1024);
        assert_eq!(c.admin.max_connections, 64);
        assert_eq!(c.admin.header_read_timeout, Duration::from_secs(10));
        let c = Config::from_yaml("server: {min-body-rate: off}").unwrap();
        assert_eq!(c.server.min_body_rate, 0);
        let c = Config::from_yaml("server: {min-body-rate: 2KiB/s}").unwrap();
        assert_eq!(c.server.min_body_rate, 2048);
        assert_eq!(
            err("server: {max-connections: 0}").key,
            "server.max-connections"
        );
    }

    #[test]
    fn each_bad_value_names_its_key() {
        assert_eq!(err("upstream: {url: 'ftp://x'}").key, "upstream.url");
        assert_eq!(
            err("enhanced-locking: {queue-timeout: soon}").key,
            "enhanced-locking.queue-timeout"
        );
        assert_eq!(
            err("listen: 0.0.0.0:4141\nadmin: {listen: '127.0.0.1:4141'}").key,
            "admin.listen"
        );
        assert_eq!(err("admin: {listen: '0.0.0.0:9464'}").key, "admin.token");
        assert_eq!(
            err("enhanced-locking: {traffic-split: 101}").key,
            "enhanced-locking.traffic-split"
        );
        assert_eq!(
            err("enhanced-locking: {backend: etcd}").key,
            "enhanced-locking.backend"
        );
        assert_eq!(
            err("enhanced-locking: {priority-timeouts: {urgent: 5m}}").key,
            "enhanced-locking.priority-timeouts.urgent"
        );
        assert_eq!(
            err("server: {max-body-size: lots}").key,
            "server.max-body-size"
        );
    }

    #[test]
    fn the_project_table_is_validated_with_named_keys() {
        let ok = Config::from_yaml(
            "repos:\n  - name: acme/infra\n    projects:\n      - {name: net, dir: net, repo_locks: {mode: on_apply, priority: high}}\n",
        )
        .unwrap();
        assert_eq!(ok.repos.len(), 1);
        let e = err(
            "repos:\n  - name: acme/infra\n    projects:\n      - {dir: net, repo_locks: {timeout: 45x}}\n",
        );
        assert_eq!(e.key, "repos[0].projects[0].repo_locks.timeout");
        let e = err("repos:\n  - name: acme/infra\n    projekts: []\n");
        assert!(e.message.contains("projekts"), "{e}");
    }

    /// Issue 14 item 14: credentials in the upstream URL are refused and never printed.
    #[test]
    fn an_upstream_url_with_credentials_is_refused_unprinted() {
        let e = err("upstream:\n  url: http://admin:hunter2@atlantis:4141\n");
        assert_eq!(e.key, "upstream.url");
        assert!(e.message.contains("user:password@"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = err("upstream:\n  url: ftp://u:hunter2@x\n");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    /// Issue 14 item 12: a zero period or an overflowing duration would panic a background task.
    #[test]
    fn every_duration_is_range_checked_naming_its_key() {
        for (yaml, key) in [
            (
                "enhanced-locking:\n  timeout-check-interval: 0s\n",
                "enhanced-locking.timeout-check-interval",
            ),
            (
                "enhanced-locking:\n  cleanup-interval: 0s\n",
                "enhanced-locking.cleanup-interval",
            ),
            (
                "enhanced-locking:\n  deadlock-check-interval: 0ms\n",
                "enhanced-locking.deadlock-check-interval",
            ),
            (
                "atlantis:\n  lock-sync-interval: 0s\n",
                "atlantis.lock-sync-interval",
            ),
            (
                "enhanced-locking:\n  queue-timeout: 0s\n",
                "enhanced-locking.queue-timeout",
            ),
            (
                "enhanced-locking:\n  cleanup-interval: 500000000000y\n",
                "enhanced-locking.cleanup-interval",
            ),
            (
                "enhanced-locking:\n  deadlock-check-interval: 1000y\n",
                "enhanced-locking.deadlock-check-interval",
            ),
            (
                "enhanced-locking:\n  queue-timeout: 400d\n",
                "enhanced-locking.queue-timeout",
            ),
            (
                "enhanced-locking:\n  dispatch-lease: 0s\n",
                "enhanced-locking.dispatch-lease",
            ),
            (
                "enhanced-locking:\n  redis:\n    read-timeout: 0s\n",
                "enhanced-locking.redis.read-timeout",
            ),
            ("upstream:\n  timeout: 0s\n", "upstream.timeout"),
            ("server:\n  drain-period: 2000y\n", "server.drain-period"),
            (
                "enhanced-locking:\n  priority-timeouts: {high: 0s}\n",
                "enhanced-locking.priority-timeouts.high",
            ),
        ] {
            let e = err(yaml);
            assert_eq!(e.key, key, "{yaml}: {e}");
        }
        // Zero stays allowed where it means "none".
        let c =
            Config::from_yaml("server:\n  drain-period: 0s\natlantis:\n  lock-sync-grace: 0s\n")
                .unwrap();
        assert!(c.server.drain_period.is_zero());
        assert!(Config::from_yaml("enhanced-locking:\n  max-timeout: 366d\n").is_ok());
    }

    #[test]
    fn unsigned_webhooks_are_allowed_only_by_name() {
        assert!(
            Config::from_yaml("")
                .unwrap()
                .atlantis
                .allow_unsigned_webhooks
                .is_empty()
        );
        let c =
            Config::from_yaml("atlantis: {allow-unsigned-webhooks: [gitlab, bitbucket]}").unwrap();
        assert_eq!(
            c.atlantis.allow_unsigned_webhooks,
            [Vcs::Gitlab, Vcs::BitbucketCloud, Vcs::BitbucketServer]
        );
        assert_eq!(
            err("atlantis: {allow-unsigned-webhooks: [svn]}").key,
            "atlantis.allow-unsigned-webhooks"
        );
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let c = Config::from_yaml(
            "server: {trusted-proxies: ['10.1.2.3/8', '192.168.0.7', 'fd00::/8']}",
        )
        .unwrap();
        let shown: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.0.7/32", "fd00::/8"]);
        assert_eq!(
            err("server: {trusted-proxies: ['10.0.0.0/33']}").key,
            "server.trusted-proxies"
        );
    }

    #[test]
    fn a_redis_address_selects_the_redis_backend() {
        let c = Config::from_yaml("enhanced-locking: {redis: {addr: 'localhost:6379'}}").unwrap();
        assert_eq!(c.enhanced.backend, Backend::Redis);
        assert_eq!(
            err("enhanced-locking: {backend: redis}").key,
            "enhanced-locking.redis.addr"
        );
    }

    #[test]
    fn queue_memory_caps_have_defaults_and_are_checked() {
        let c = Config::from_yaml("upstream: {url: 'http://a:4141'}").unwrap();
        assert_eq!(c.enhanced.max_waiters_per_repo, 1000);
        assert_eq!(c.enhanced.max_waiters_total, 10_000);
        assert_eq!(c.enhanced.max_queued_bytes_per_repo, 256 << 20);
        assert_eq!(c.enhanced.max_queued_bytes_total, 1 << 30);
        let c = Config::from_yaml(
            "upstream: {url: 'http://a:4141'}\nenhanced-locking:\n  max-queued-bytes-per-repo: 1MiB\n  max-waiters-total: 5\n  max-waiters-per-repo: 5\n",
        )
        .unwrap();
        assert_eq!(c.enhanced.max_queued_bytes_per_repo, 1 << 20);
        for (yaml, key) in [
            (
                "max-waiters-per-repo: 0",
                "enhanced-locking.max-waiters-per-repo",
            ),
            (
                "max-queued-bytes-total: 0B",
                "enhanced-locking.max-queued-bytes-total",
            ),
            (
                "max-queued-bytes-total: lots",
                "enhanced-locking.max-queued-bytes-total",
            ),
            (
                "max-waiters-per-repo: 20\n  max-waiters-total: 10",
                "enhanced-locking.max-waiters-per-repo",
            ),
            (
                "redis: {addr: 'r:6379', key-prefix: 'a{b}:'}",
                "enhanced-locking.redis.key-prefix",
            ),
        ] {
            let err = Config::from_yaml(&format!(
                "upstream: {{url: 'http://a:4141'}}\nenhanced-locking:\n  {yaml}\n"
            ))
            .unwrap_err();
            assert_eq!(err.key, key, "{yaml}: {err}");
        }
    }

    #[test]
    fn sizes_and_durations_read_like_people_write_them() {
        assert_eq!(size("k", Some("5MiB"), "1").unwrap(), 5 * 1024 * 1024);
        assert_eq!(size("k", Some("1048576"), "1").unwrap(), 1_048_576);
        assert!(size("k", Some("0"), "1").is_err());
        assert_eq!(
            dur("k", Some("1h 30m".into()), "0s").unwrap(),
            Duration::from_secs(5400)
        );
    }
}
