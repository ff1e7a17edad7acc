//! The per-request cost of the operator controls on the hot path: routing a repository,
//! passing the circuit breaker, and the two rate-limit checks.
//!
//! Run: `cargo bench --bench control`.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use atlantis_lock_proxy::config::RateSpec;
use atlantis_lock_proxy::proxy::ratelimit::RateLimits;
use atlantis_lock_proxy::route::{BreakerSettings, CircuitBreaker, Router, SplitRule, SplitState};
use criterion::{Criterion, criterion_group, criterion_main};

fn controls(c: &mut Criterion) {
    let router = Router::new(SplitRule::default(), SplitState::new(30, false, true));
    c.bench_function("route one repository", |b| {
        b.iter(|| black_box(router.route(black_box("acme/infrastructure"))))
    });

    let breaker = CircuitBreaker::new(
        BreakerSettings {
            enabled: true,
            failure_threshold: 10,
            success_threshold: 5,
            open_for: Duration::from_secs(30),
        },
        None,
    );
    c.bench_function("breaker allow + record (closed)", |b| {
        b.iter(|| {
            if let Some(p) = breaker.allow() {
                p.record(true);
            }
        })
    });

    // Generous enough never to refuse, so the bench measures the check, not the refusal.
    let spec = Some(RateSpec {
        count: u32::MAX / 2,
        per: Duration::from_secs(1),
        burst: u32::MAX / 2,
    });
    let limits = RateLimits::new(spec, spec, None);
    let ips: Vec<IpAddr> = (0..1000u32)
        .map(|i| IpAddr::from(i.to_be_bytes()))
        .collect();
    let mut i = 0;
    c.bench_function("rate limit: ip + repo (1000 clients)", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(limits.check_ip(ips[i]).is_ok() && limits.check_repo("acme/infra").is_ok())
        })
    });
}

criterion_group!(benches, controls);
criterion_main!(benches);
