//! Slow and greedy clients: connection caps, header and idle timeouts, a minimum body rate, and
//! one budget for all buffered bodies.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw;
use crate::enhanced::{REPO, SECRET, Setup, base_yaml};
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::send;
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::github_comment;

async fn start(extra: &str) -> Setup {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let proxy = spawn_proxy(&fake.url(), &format!("{}{extra}", base_yaml(None, "", ""))).await;
    Setup {
        fake,
        proxy,
        _redis: None,
    }
}

/// Seconds a signed webhook on the main port takes to be answered 200.
async fn signed_webhook_latency(s: &Setup, pull: i64) -> f64 {
    let hook = github_comment(
        SECRET,
        REPO,
        pull,
        "alice",
        &format!("atlantis plan -d d{pull}"),
    );
    let t = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        hook.send_to(&s.proxy.url("/events")),
    )
    .await
    .expect("the webhook is answered");
    assert_eq!(reply.status, 200, "{}", reply.text());
    t.elapsed().as_secs_f64()
}

/// A slowloris client: a request head that never ends, one header byte at a time.
async fn loris(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"POST /events HTTP/1.1\r\nhost: x\r\nx-a: ")
        .await
        .ok()?;
    Some(s)
}

#[tokio::test]
async fn three_hundred_slowloris_connections_on_each_port_do_not_delay_a_signed_webhook() {
    let s = start("admin:\n  listen: 127.0.0.1:0\n  header-read-timeout: 30s\n").await;
    let t0 = Instant::now();
    let baseline = signed_webhook_latency(&s, 1).await;
    let mut held = Vec::new();
    for _ in 0..300 {
        held.extend(loris(s.proxy.addr).await);
    }
    // Beyond the admin cap (64) clients wait in the kernel's backlog, and once that is full their
    // connects hang: start them all at once and take what connected within 3 s.
    let admin = s.proxy.admin;
    let pending: Vec<_> = (0..300)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(3), loris(admin))
                    .await
                    .ok()
                    .flatten()
            })
        })
        .collect();
    for p in pending {
        held.extend(p.await.unwrap());
    }
    eprintln!(
        "{} slowloris connections open at {:?}",
        held.len(),
        t0.elapsed()
    );
    assert!(
        held.len() >= 364,
        "opened {} slowloris connections",
        held.len()
    );
    let trickle = tokio::spawn(async move {
        for _ in 0..5 {
            for c in held.iter_mut() {
                let _ = c.write_all(b"a").await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        held
    });
    let mut worst: f64 = 0.0;
    for pull in 2..7 {
        worst = worst.max(signed_webhook_latency(&s, pull).await);
    }
    eprintln!(
        "signed webhook latency: baseline {:.1} ms, worst of 5 under 600 slowloris connections {:.1} ms (x{:.2})",
        baseline * 1e3,
        worst * 1e3,
        worst / baseline
    );
    assert!(worst < 1.0, "a signed webhook waited {worst:.3} s");
    drop(trickle.await);
    s.proxy.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_although_it_never_pauses_long() {
    // Pauses of 1 s are far below the 30 s body timeout; the rate (1 B/s) is what fails.
    let s = start("").await;
    let mut c = TcpStream::connect(s.proxy.addr).await.unwrap();
    c.write_all(b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: issue_comment\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let answer = async {
        loop {
            if c.write_all(b" ").await.is_err() {
                return None;
            }
            if let Some(head) = raw::read_head(&mut c, Duration::from_secs(1)).await {
                return Some(head);
            }
        }
    };
    let head = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("cut off in time");
    let took = t.elapsed();
    if let Some(head) = head {
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
    assert!(took < Duration::from_secs(12), "cut off after {took:?}");
    assert!(s.fake.received_at("/events").is_empty());
    s.proxy.stop().await;
}

#[tokio::test]
async fn the_admin_listener_times_out_slow_heads_and_idle_connections() {
    let s = start("admin:\n  listen: 127.0.0.1:0\n  header-read-timeout: 1s\n").await;
    let mut slow = loris(s.proxy.admin).await.unwrap();
    assert!(
        raw::closed_within(&mut slow, Duration::from_secs(4)).await,
        "slow head cut off"
    );
    s.proxy.stop().await;
    // The idle timeout on its own (the header timeout is far longer).
    let s =
        start("admin:\n  listen: 127.0.0.1:0\n  header-read-timeout: 30s\n  idle-timeout: 1s\n")
            .await;
    let mut idle = TcpStream::connect(s.proxy.admin).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = raw::read_head(&mut idle, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        raw::closed_within(&mut idle, Duration::from_secs(4)).await,
        "idle keep-alive closed"
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn the_admin_connection_cap_queues_the_next_client() {
    let s =
        start("admin:\n  listen: 127.0.0.1:0\n  max-connections: 2\n  header-read-timeout: 2s\n")
            .await;
    let _a = loris(s.proxy.admin).await.unwrap();
    let _b = loris(s.proxy.admin).await.unwrap();
    let url = s.proxy.admin_url("/healthz");
    let t = Instant::now();
    let third = tokio::spawn(async move { crate::support::http::get(&url).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!third.is_finished(), "over the cap the client waits");
    let reply = tokio::time::timeout(Duration::from_secs(6), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "served once a slot freed"
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn buffered_bodies_share_one_budget_and_lock_routes_their_own_limit() {
    let s = start("server:\n  max-buffered-bytes: 1MiB\n  max-lock-body-size: 1536KiB\n").await;
    // Within the lock-route limit, but over what may be buffered at once.
    let big = vec![b' '; 1280 * 1024];
    let h = [
        ("content-type", "application/json"),
        ("x-github-event", "issue_comment"),
    ];
    let reply = send(http::Method::POST, &s.proxy.url("/events"), &h, big.clone()).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.headers["x-lock-proxy-error"], "overloaded");
    // Over the lock-route limit: 413; a streamed route keeps max-body-size (25 MiB).
    let huge = vec![b' '; 2 * 1024 * 1024];
    let reply = send(
        http::Method::POST,
        &s.proxy.url("/events"),
        &h,
        huge.clone(),
    )
    .await;
    assert_eq!(reply.status, 413);
    let reply = send(http::Method::POST, &s.proxy.url("/other"), &[], huge).await;
    assert_ne!(reply.status, 413);
    assert!(s.fake.received_at("/events").is_empty());
    // The budget was given back: a signed webhook still goes through.
    let hook = github_comment(SECRET, REPO, 1, "alice", "atlantis plan -d net");
    assert_eq!(hook.send_to(&s.proxy.url("/events")).await.status, 200);
    s.proxy.stop().await;
}

#[tokio::test]
async fn the_main_listener_closes_slow_heads_and_idle_keep_alive_connections() {
    let s = start("server:\n  header-read-timeout: 1s\n").await;
    let mut slow = loris(s.proxy.addr).await.unwrap();
    assert!(
        raw::closed_within(&mut slow, Duration::from_secs(4)).await,
        "slow head cut off"
    );
    let mut idle = TcpStream::connect(s.proxy.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = raw::read_head(&mut idle, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        raw::closed_within(&mut idle, Duration::from_secs(4)).await,
        "idle keep-alive closed"
    );
    s.proxy.stop().await;
}
