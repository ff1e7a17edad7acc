//! Rate limits (`governor` token buckets): per client IP and per repository on the main
//! listener's lock traffic, and per client IP on the admin API. Over a limit the caller answers
//! 429 with `Retry-After` (whole seconds, rounded up).
//!
//! Every limit is off unless configured, so by default Atlantis sees exactly the traffic it
//! would see without the proxy.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use http::HeaderMap;

use crate::config::{Config, RateSpec};

/// Checks between two sweeps of idle keys, so one-off clients do not pile up in memory.
const SWEEP_EVERY: u64 = 16_384;

/// How long the caller should wait before trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header: rounded up, at least 1.
    pub fn secs(self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

impl std::fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rate limit exceeded; retry after {} s", self.secs())
    }
}

/// One keyed token bucket.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(spec: RateSpec) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota(spec)),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &K) -> Result<(), RetryAfter> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            RetryAfter(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }
}

/// The bucket for a spec: `count` per `per`, refilling one token every `per / count`.
fn quota(spec: RateSpec) -> Quota {
    let one = NonZeroU32::MIN;
    let burst = NonZeroU32::new(spec.burst).unwrap_or(one);
    let interval = spec.per / spec.count.max(1);
    Quota::with_period(interval)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

/// Every configured rate limit; share as `Arc<RateLimits>` between the listeners.
#[derive(Default)]
pub struct RateLimits {
    per_ip: Option<Keyed<IpAddr>>,
    per_repo: Option<Keyed<String>>,
    admin: Option<Keyed<IpAddr>>,
    /// Peers whose `X-Forwarded-For` is believed (`server.trusted-proxies`).
    trusted: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_ip", &self.per_ip.is_some())
            .field("per_repo", &self.per_repo.is_some())
            .field("admin", &self.admin.is_some())
            .field("trusted_proxies", &self.trusted.len())
            .finish()
    }
}

impl RateLimits {
    /// The limits from `server.rate-limit` and `admin.rate-limit`.
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.server.rate_limit.per_ip,
            config.server.rate_limit.per_repo,
            config.admin.rate_limit,
        )
        .with_trusted_proxies(config.server.trusted_proxies.clone())
    }

    /// Believe `X-Forwarded-For` from these peers (load balancers, Ingress controllers).
    pub fn with_trusted_proxies(mut self, trusted: Vec<ipnet::IpNet>) -> Self {
        self.trusted = trusted;
        self
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client a request is from: the TCP peer, unless the peer is a trusted proxy; then the
    /// rightmost `X-Forwarded-For` address that is not itself a trusted proxy (what the outermost
    /// trusted hop saw). Entries left of an untrusted one are the client's own claims and ignored.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// One lock request from the client of a request whose TCP peer is `peer`.
    pub fn check_client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(), RetryAfter> {
        if self.per_ip.is_none() {
            return Ok(());
        }
        self.check_ip(self.client_ip(peer, headers))
    }

    /// Limits from explicit specs (`None` = unlimited).
    pub fn new(
        per_ip: Option<RateSpec>,
        per_repo: Option<RateSpec>,
        admin: Option<RateSpec>,
    ) -> Self {
        Self {
            per_ip: per_ip.map(Keyed::new),
            per_repo: per_repo.map(Keyed::new),
            admin: admin.map(Keyed::new),
            trusted: Vec::new(),
        }
    }

    /// One lock request from client `ip` on the main listener.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.per_ip.as_ref().map_or(Ok(()), |k| k.check(&ip))
    }

    /// One lock request for `repo` (case-insensitive, as the split treats repositories).
    pub fn check_repo(&self, repo: &str) -> Result<(), RetryAfter> {
        self.per_repo
            .as_ref()
            .map_or(Ok(()), |k| k.check(&repo.to_ascii_lowercase()))
    }

    /// One admin API request from client `ip`.
    pub fn check_admin(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.admin.as_ref().map_or(Ok(()), |k| k.check(&ip))
    }
}

/// An `X-Forwarded-For` entry: an address, maybe bracketed or with a port (some proxies add one).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let l = RateLimits::default().with_trusted_proxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().unwrap(),
        );
        let lb = IpAddr::from([10, 0, 0, 1]);
        let outside = IpAddr::from([198, 51, 100, 1]);
        // Behind the trusted Ingress: the rightmost untrusted hop; the spoofed 6.6.6.6 is ignored.
        assert_eq!(l.client_ip(lb, &h), IpAddr::from([203, 0, 113, 9]));
        // A client talking directly cannot pick its bucket.
        assert_eq!(l.client_ip(outside, &h), outside);
        // No header, or garbage: the peer itself.
        assert_eq!(l.client_ip(lb, &HeaderMap::new()), lb);
        h.insert("x-forwarded-for", "junk".parse().unwrap());
        assert_eq!(l.client_ip(lb, &h), lb);
        h.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            l.client_ip(lb, &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // Nothing is trusted by default.
        assert_eq!(RateLimits::default().client_ip(lb, &h), lb);
    }

    fn spec(count: u32, per_secs: u64, burst: u32) -> Option<RateSpec> {
        Some(RateSpec {
            count,
            per: Duration::from_secs(per_secs),
            burst,
        })
    }

    #[test]
    fn unconfigured_limits_never_refuse() {
        let l = RateLimits::default();
        for _ in 0..10_000 {
            l.check_ip(IpAddr::from([10, 0, 0, 1])).unwrap();
            l.check_repo("acme/infra").unwrap();
            l.check_admin(IpAddr::from([10, 0, 0, 1])).unwrap();
        }
    }

    #[test]
    fn a_client_over_its_burst_is_told_when_to_retry_and_others_are_unaffected() {
        let l = RateLimits::new(spec(60, 3600, 3), None, None);
        let a = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            l.check_ip(a).unwrap();
        }
        let retry = l.check_ip(a).unwrap_err();
        // One token per minute: the next one is about a minute away.
        assert!((55..=60).contains(&retry.secs()), "{retry:?}");
        l.check_ip(IpAddr::from([10, 0, 0, 2])).unwrap();
    }

    #[test]
    fn repositories_are_limited_case_insensitively() {
        let l = RateLimits::new(None, spec(1, 3600, 1), None);
        l.check_repo("Acme/Infra").unwrap();
        assert!(l.check_repo("acme/infra").is_err());
        l.check_repo("acme/other").unwrap();
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1001)).secs(), 2);
        assert_eq!(RetryAfter(Duration::ZERO).secs(), 1);
    }
}
