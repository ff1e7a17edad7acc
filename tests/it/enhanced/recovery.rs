//! Nothing lost: a killed proxy, several replicas, and locks taken or dropped behind the
//! proxy's back.

use std::process::Stdio;
use std::time::Duration;

use super::{Backend, REPO, SECRET, Setup, base_yaml, key};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeLock, FakeOptions};
use crate::support::http::get;
use crate::support::ports::free_ports;
use crate::support::proxy::spawn_proxy;
use crate::support::redis::RedisServer;
use crate::support::webhooks::{github_comment, github_pull};

#[tokio::test]
async fn waiters_survive_a_killed_proxy_and_a_new_one_replays_them() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let redis = RedisServer::start();
    let [port, admin_port] = free_ports::<2>();
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nupstream:\n  url: {}\nadmin:\n  listen: 127.0.0.1:{admin_port}\n{}",
        fake.url(),
        base_yaml(Some(&redis), "", "")
    );
    let path = std::env::temp_dir().join(format!("alp-kill-{}-{port}.yaml", std::process::id()));
    std::fs::write(&path, yaml).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlantis-lock-proxy"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/events");
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok()
    })
    .await;
    assert!(up, "the proxy binary did not start");
    assert!(
        crate::support::http::wait_ready(admin_port, Duration::from_secs(10)).await,
        "the proxy binary never became ready"
    );

    // PR 1 holds three projects; PRs 2-4 each wait for one of them.
    for dir in ["x", "y", "z"] {
        let hook = github_comment(SECRET, REPO, 1, "alice", &format!("atlantis plan -d {dir}"));
        assert_eq!(hook.send_to(&url).await.status, 200);
    }
    assert!(eventually(Duration::from_secs(5), || fake.locks().len() == 3).await);
    let mut waiting = Vec::new();
    for (pull, dir) in [(2, "x"), (3, "y"), (4, "z")] {
        let hook = github_comment(
            SECRET,
            REPO,
            pull,
            "bob",
            &format!("atlantis plan -d {dir}"),
        );
        let r = hook.send_to(&url).await;
        assert_eq!(r.status, 202, "{}", r.text());
        waiting.push(hook);
    }
    // Not a graceful stop: the process dies with three waiters queued.
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(&path);

    let proxy = spawn_proxy(&fake.url(), &base_yaml(Some(&redis), "", "")).await;
    let queues = get(&proxy.admin_url("/admin/queues")).await.json();
    assert_eq!(queues["queues"].as_array().unwrap().len(), 3, "{queues}");
    let closed = github_pull(SECRET, REPO, 1, "alice", "closed")
        .send_to(&proxy.url("/events"))
        .await;
    assert_eq!(closed.status, 200);
    for hook in &waiting {
        let replayed = eventually(Duration::from_secs(10), || {
            fake.received_at("/events")
                .iter()
                .any(|r| r.body.as_ref() == hook.body.as_slice() && r.signature_ok == Some(true))
        })
        .await;
        assert!(
            replayed,
            "every queued request is replayed by the new proxy"
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            let l = fake.locks();
            l.len() == 3 && l.values().all(|l| l.pull != 1)
        })
        .await
    );
    proxy.stop().await;
}

#[tokio::test]
async fn two_replicas_replay_a_waiter_exactly_once() {
    // Both replicas on one server of their own, under the same keys.
    let redis = RedisServer::start();
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let yaml = base_yaml(Some(&redis), "", "");
    let s = Setup {
        proxy: spawn_proxy(&fake.url(), &yaml).await,
        fake,
        _redis: Some(redis),
    };
    let b = spawn_proxy(&s.fake.url(), &yaml).await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (hook2, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 202, "queued through replica A");
    let closed = github_pull(SECRET, REPO, 1, "user1", "closed")
        .send_to(&b.url("/events"))
        .await;
    assert_eq!(closed.status, 200, "released through replica B");
    assert!(s.wait_arrival(&hook2).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.arrivals(&hook2).len(),
        1,
        "exactly one replica replays it, once"
    );
    assert!(s.wait_atlantis_holder("net", "prod", 2).await);
    b.stop().await;
    s.proxy.stop().await;
}

async fn the_reconciler_adopts_and_releases(backend: Backend) {
    let s = Setup::start_with(
        backend,
        "",
        "  lock-sync-interval: 100ms\n  lock-sync-grace: 400ms\n",
    )
    .await;
    // A lock taken before the proxy existed becomes visible...
    s.fake.insert_lock(FakeLock {
        repo: REPO.into(),
        path: "legacy".into(),
        workspace: "default".into(),
        project: String::new(),
        pull: 7,
        user: "carol".into(),
        url: FakeLock::github_url(REPO, 7),
    });
    let k = key("legacy", "default");
    let mut seen = false;
    for _ in 0..50 {
        if s.engine_holder(&k).await == Some(7) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the Atlantis lock shows up in /admin/locks");
    // ...and gates newcomers like any other.
    let (hook8, r) = s.plan(8, "legacy", "default").await;
    assert_eq!(r.status, 202, "{}", r.text());
    // Atlantis drops the lock by itself (a failed plan): the engine follows and serves the waiter.
    s.fake.drop_lock(&k);
    assert!(
        s.wait_arrival(&hook8).await,
        "the waiter is replayed once Atlantis let go"
    );
    assert!(s.wait_atlantis_holder("legacy", "default", 8).await);
    s.proxy.stop().await;
}

on_both_backends!(the_reconciler_adopts_and_releases);

#[tokio::test]
async fn an_atlantis_without_the_locks_api_keeps_working() {
    let s = Setup::start_with(Backend::Memory, "", "  lock-sync-interval: 100ms\n").await;
    s.fake.set_no_api_locks(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (hook2, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 202);
    s.close(1).await;
    assert!(
        s.wait_arrival(&hook2).await,
        "replays do not need GET /api/locks"
    );
    s.proxy.stop().await;
}
