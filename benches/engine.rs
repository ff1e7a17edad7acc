//! Redis engine throughput and latency, measured beside `redis-benchmark` on the same server.
//!
//! Starts its own `redis-server` on a free loopback port and reports:
//! - uncontended acquire+release, one in flight and 64 in flight: lock ops/s, p50/p99;
//! - `redis-benchmark -c 64 EVALSHA` of the engine's own acquire script, and our ratio to it;
//! - Redis memory per held lock (`INFO memory` delta over 100k held locks).
//!
//! Run: `cargo bench --bench engine` (knobs: `ALP_BENCH_OPS`, `ALP_BENCH_CONCURRENCY`,
//! `ALP_BENCH_POOL` = connections).

#[path = "../tests/it/support/redis.rs"]
mod support_redis;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use atlantis_lock_proxy::classify::{LockKey, Priority, PullRef, Vcs};
use atlantis_lock_proxy::engine::{
    AcquireOutcome, AcquireRequest, EngineSettings, LockEngine, RedisEngine, RedisSettings,
};
use tokio::time::Instant;

use support_redis::RedisServer;

const PREFIX: &str = "bench:";
const ACQUIRE_LUA: &str = concat!(
    include_str!("../src/engine/redis/lua/prelude.lua"),
    "\n",
    include_str!("../src/engine/redis/lua/acquire.lua")
);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(repo: &str, pull: i64, dir: &str) -> AcquireRequest {
    AcquireRequest {
        locks: vec![LockKey::new(repo, dir, "default", "")],
        pull: PullRef::new(Vcs::Github, repo, pull),
        user: "bench".to_owned(),
        priority: Priority::Normal,
        hold_timeout: None,
        request_id: None,
    }
}

/// One uncontended acquire + release; returns the two op latencies.
async fn cycle(engine: &dyn LockEngine, repo: &str, pull: i64, dir: &str) -> [Duration; 2] {
    let req = request(repo, pull, dir);
    let key = req.locks[0].clone();
    let owner = req.pull.clone();
    let t0 = Instant::now();
    let out = engine.acquire(req).await.expect("acquire");
    assert!(matches!(out, AcquireOutcome::Granted(_)), "uncontended");
    let t1 = Instant::now();
    engine.release(key, Some(owner)).await.expect("release");
    [t1 - t0, t1.elapsed()]
}

struct Report {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) -> Report {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let r = Report {
        ops_per_sec: lat.len() as f64 / wall.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    };
    println!(
        "{label:<34} {:>10.0} lock ops/s   p50 {:>7.3} ms   p99 {:>7.3} ms   ({} ops)",
        r.ops_per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        lat.len()
    );
    r
}

async fn sequential(engine: &dyn LockEngine, ops: usize) -> Report {
    let mut lat = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in 0..ops / 2 {
        lat.extend(cycle(engine, "bench/seq", 1, &format!("d{}", i % 1000)).await);
    }
    report("acquire+release, 1 in flight", lat, start.elapsed())
}

async fn concurrent(engine: Arc<dyn LockEngine>, ops: usize, conc: usize) -> Report {
    let per_task = ops / 2 / conc;
    let start = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|t| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let repo = format!("bench/c{}", t % 16);
                let mut lat = Vec::with_capacity(per_task * 2);
                for i in 0..per_task {
                    let dir = format!("t{t}-{}", i % 100);
                    lat.extend(cycle(&*engine, &repo, t as i64 + 1, &dir).await);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    report(
        &format!("acquire+release, {conc} in flight"),
        lat,
        start.elapsed(),
    )
}

/// `redis-benchmark` running the engine's acquire script (a re-entrant grant every call).
fn redis_benchmark(server: &RedisServer, ops: usize, conc: usize) -> f64 {
    let sha = server
        .command(&["SCRIPT", "LOAD", ACQUIRE_LUA])
        .expect("SCRIPT LOAD");
    let base = format!("{PREFIX}{{bench/rb}}:");
    let port = server.port.to_string();
    let n = ops.to_string();
    let c = conc.to_string();
    // Options must precede the command: everything after it is sent as arguments.
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-n",
            &n,
            "-c",
            &c,
            "-q",
            "-r",
            "1000",
        ])
        .args([
            "EVALSHA",
            &sha,
            "1",
            &format!("{base}h"),
            &base,
            "rb",
            "60000",
        ])
        .args([
            "0", "1", "bench", "1", "1", "1800000", "600000", "1000", "0", "-",
        ])
        .arg("d__rand_int__")
        .output()
        .expect("run redis-benchmark");
    let all = String::from_utf8_lossy(&out.stdout);
    // Progress lines are separated by carriage returns; the summary is the last one.
    let text = all
        .rsplit('\r')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    // `-q` prints "EVALSHA ...: 123456.79 requests per second, p50=0.231 msec".
    let rate = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[1] == "requests" && w[2] == "per")
        .and_then(|w| w[0].parse::<f64>().ok())
        .unwrap_or_else(|| panic!("could not parse redis-benchmark output: {text}"));
    let p50 = text
        .split("p50=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("?");
    println!("redis-benchmark EVALSHA, -c {conc:<13} {rate:>10.0} ops/s      p50 {p50:>7} ms");
    rate
}

/// What the machine gives a trivial command right now (context for every figure above).
fn ping_baseline(server: &RedisServer, ops: usize, conc: usize) {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
        .args([
            "-n",
            &ops.to_string(),
            "-c",
            &conc.to_string(),
            "-q",
            "-t",
            "ping_mbulk",
        ])
        .output()
        .expect("run redis-benchmark");
    let all = String::from_utf8_lossy(&out.stdout);
    let last = all
        .rsplit('\r')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    println!("redis-benchmark PING baseline: {last}");
}

/// Redis memory per held lock: 100 repos × 1000 locks, 10 locks per pull.
async fn memory_per_lock(server: &RedisServer, engine: Arc<dyn LockEngine>) -> f64 {
    const REPOS: usize = 100;
    const LOCKS: usize = 1000;
    let before = server.used_memory();
    let tasks: Vec<_> = (0..REPOS)
        .map(|r| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let repo = format!("org{r}/service-{r}");
                for l in 0..LOCKS {
                    let mut req =
                        request(&repo, (l / 10) as i64 + 1, &format!("modules/stack-{l}"));
                    req.locks[0].project = format!("project-{l}");
                    let out = engine.acquire(req).await.expect("acquire");
                    assert!(matches!(out, AcquireOutcome::Granted(_)));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let after = server.used_memory();
    let per = (after.saturating_sub(before)) as f64 / (REPOS * LOCKS) as f64;
    println!(
        "memory per held lock                {per:>10.0} bytes   ({} held, used_memory {before} -> {after})",
        REPOS * LOCKS
    );
    per
}

fn main() {
    let ops = env_usize("ALP_BENCH_OPS", 200_000);
    let conc = env_usize("ALP_BENCH_CONCURRENCY", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = RedisServer::start();
    // The figures depend on what else the machine runs; say so beside them.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    rt.block_on(async {
        let settings = EngineSettings {
            enable_events: false,
            ..EngineSettings::default()
        };
        let redis = RedisSettings {
            addr: server.addr.clone(),
            key_prefix: PREFIX.to_owned(),
            pool_size: env_usize("ALP_BENCH_POOL", 8) as u32,
            ..RedisSettings::default()
        };
        let engine: Arc<dyn LockEngine> = Arc::new(
            RedisEngine::connect(settings, redis)
                .await
                .expect("connect"),
        );
        // Warm up: script load and connections.
        sequential(&*engine, 2_000).await;
        let seq = sequential(&*engine, (ops / 10).max(2_000)).await;
        let par = concurrent(engine.clone(), ops, conc).await;
        let rb = redis_benchmark(&server, ops, conc);
        ping_baseline(&server, ops, conc);
        println!(
            "ratio engine/redis-benchmark        {:>10.2}   (target >= 0.5; target >= 50000 ops/s)",
            par.ops_per_sec / rb
        );
        let _ = seq;
        server.command(&["FLUSHALL"]).expect("FLUSHALL");
        memory_per_lock(&server, engine).await;
    });
}
