//! The Redis key layout (issue 14, items 8 and 9): idle repositories leave no work behind, hash
//! tags come from a digest of the name (hostile names work on a real Cluster, one broken
//! repository does not break the others), and keys of the old layout are moved once.

use std::time::{Duration, Instant};

use atlantis_lock_proxy::classify::Priority::Normal;
use atlantis_lock_proxy::classify::{LockKey, PullRef, Vcs};
use atlantis_lock_proxy::engine::redis::layout::Layout;
use atlantis_lock_proxy::engine::{
    AcquireOutcome, AcquireRequest, EngineError, EngineSettings, LockEngine, QueueOutcome,
    RedisEngine, RedisSettings,
};
use atlantis_lock_proxy::route::BackendFailure;

use crate::support::redis::{RedisServer, resp_command, shared_cluster};

fn settings() -> EngineSettings {
    EngineSettings {
        enable_events: false,
        ..EngineSettings::default()
    }
}

fn request(repo: &str, pull: i64, dir: &str, project: &str) -> AcquireRequest {
    AcquireRequest {
        locks: vec![LockKey::new(repo, dir, "default", project)],
        pull: PullRef::new(Vcs::Github, repo, pull),
        user: "u".into(),
        priority: Normal,
        hold_timeout: None,
        request_id: None,
    }
}

async fn standalone(server: &RedisServer, prefix: &str) -> RedisEngine {
    RedisEngine::connect(
        settings(),
        RedisSettings {
            addr: server.addr.clone(),
            key_prefix: prefix.into(),
            ..RedisSettings::default()
        },
    )
    .await
    .expect("connect")
}

/// Commands the server ran, from `INFO commandstats` (the INFO calls themselves excluded).
fn commands_run(server: &RedisServer) -> u64 {
    let info = server.command(&["INFO", "commandstats"]).expect("INFO");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn idle_cost(server: &RedisServer, e: &RedisEngine, passes: u32) -> (u64, Duration) {
    let before = commands_run(server);
    let start = Instant::now();
    for _ in 0..passes {
        e.maintain(false).await.expect("maintain");
    }
    (
        (commands_run(server) - before) / u64::from(passes),
        start.elapsed() / passes,
    )
}

/// Show: Redis does no more idle work after 5,000 junk repository names than before.
#[tokio::test]
async fn junk_repository_names_leave_no_idle_work_in_redis() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let prefix = "prune:";
    let e = standalone(&server, prefix).await;
    // One real repository holds a lock and has a waiter: it stays listed.
    e.acquire(request("acme/infra", 1, "net", ""))
        .await
        .expect("acquire");
    e.acquire_or_enqueue(request("acme/infra", 2, "net", ""), b"x".to_vec())
        .await
        .expect("enqueue");
    e.maintain(false).await.expect("maintain");
    let (baseline, baseline_time) = idle_cost(&server, &e, 20).await;

    for i in 0..5_000 {
        let r = request(&format!("junk-{i}/repo"), 1, ".", "");
        let pull = r.pull.clone();
        e.acquire(r).await.expect("junk acquire");
        e.release_pull(pull).await.expect("junk release");
    }
    let listed = server
        .command(&["SCARD", &format!("{prefix}repos")])
        .unwrap();
    assert_eq!(
        listed, "5001",
        "every junk name was listed while it had a lock"
    );
    let (first, first_time) = idle_cost(&server, &e, 1).await;
    let listed = server
        .command(&["SCARD", &format!("{prefix}repos")])
        .unwrap();
    assert_eq!(
        listed, "1",
        "the pass took every idle repository off the index"
    );
    let (after, after_time) = idle_cost(&server, &e, 20).await;
    println!(
        "idle maintenance pass: {baseline} commands / {baseline_time:?} before the junk names, \
         {first} / {first_time:?} for the pass that pruned 5,000 of them, {after} / {after_time:?} after"
    );
    assert!(
        after <= baseline,
        "idle work grew from {baseline} to {after} commands per pass"
    );
    // What is left of a junk repository: its two counters, expiring within a day.
    let keys = server.command(&["KEYS", &format!("{prefix}*")]).unwrap();
    let junk_base = Layout::new(prefix).base("junk-7/repo");
    let left: Vec<&str> = keys.lines().filter(|k| k.starts_with(&junk_base)).collect();
    assert!(left.len() <= 2, "{left:?}");
    for k in left {
        let ttl: i64 = server.command(&["PTTL", k]).unwrap().parse().unwrap();
        assert!(ttl > 0 && ttl <= 86_400_000, "{k} keeps no expiry ({ttl})");
    }
    // The real repository is untouched.
    assert_eq!(e.list_locks().await.unwrap().len(), 1);
    assert_eq!(e.list_queues().await.unwrap()[0].waiters.len(), 1);
}

/// Names that would have given an empty or a shorter hash tag, on a real 6-node Cluster.
#[tokio::test]
async fn hostile_names_work_on_a_cluster_and_a_broken_repository_spares_the_others() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = format!("hostile{}:", std::process::id());
    let e = RedisEngine::connect(
        settings(),
        RedisSettings {
            cluster_mode: true,
            cluster_nodes: cluster.addrs(),
            key_prefix: prefix.clone(),
            ..RedisSettings::default()
        },
    )
    .await
    .expect("connect to the cluster");
    let repos = ["}evil/repo", "a{b}/c", "{/}", "plain/repo"];
    for repo in repos {
        let granted = e
            .acquire(request(repo, 1, "dir}x", "{p}"))
            .await
            .expect(repo);
        assert!(matches!(granted, AcquireOutcome::Granted(_)), "{repo}");
        let queued = e
            .acquire_or_enqueue(request(repo, 2, "dir}x", "{p}"), b"req".to_vec())
            .await
            .expect(repo);
        assert!(matches!(queued, QueueOutcome::Queued(_)), "{repo}");
    }
    assert_eq!(e.list_locks().await.expect("locks").len(), 4);
    assert_eq!(e.list_queues().await.expect("queues").len(), 4);
    e.maintain(true).await.expect("maintain");
    e.check_deadlocks().await.expect("deadlocks");

    // Break one repository's data: its holder hash becomes a string.
    let h = format!("{}h", Layout::new(&prefix).base("}evil/repo"));
    let broken = cluster
        .nodes
        .iter()
        .any(|n| resp_command(&n.addr, &["SET", &h, "garbage"]).is_ok());
    assert!(broken, "one master owns the key");
    let err = e
        .acquire(request("}evil/repo", 3, "other", ""))
        .await
        .expect_err("the broken repository fails");
    assert!(matches!(err, EngineError::Refused(_)), "{err}");
    assert!(
        !err.is_backend_failure(),
        "not a reason to open the breaker"
    );
    let locks = e.list_locks().await.expect("the others are listed");
    assert_eq!(locks.len(), 3, "{locks:?}");
    assert!(locks.iter().all(|l| l.key.repo != "}evil/repo"));
    assert_eq!(e.list_queues().await.expect("queues").len(), 3);
    e.maintain(false)
        .await
        .expect("maintenance goes on for the others");
    e.check_deadlocks().await.expect("deadlock checks go on");
    e.deadlocks().await.expect("deadlock records");
    let other = e
        .acquire(request("plain/repo", 1, "another", ""))
        .await
        .expect("another repository works");
    assert!(matches!(other, AcquireOutcome::Granted(_)));
}

/// Keys of the old layout (`{<repo>}` tags) are moved to digest tags once, at connect.
#[tokio::test]
async fn keys_of_the_old_layout_are_moved_once() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let prefix = "old:";
    let e = standalone(&server, prefix).await;
    let repo = "acme/infra";
    e.acquire(request(repo, 1, "net", ""))
        .await
        .expect("acquire");
    e.acquire_or_enqueue(request(repo, 2, "net", ""), b"stored request".to_vec())
        .await
        .expect("enqueue");
    drop(e);
    // Rewrite the keyspace as an older version left it.
    let layout = Layout::new(prefix);
    let (new, old) = (layout.base(repo), layout.legacy_base(repo));
    let keys = server.command(&["KEYS", &format!("{prefix}*")]).unwrap();
    for k in keys.lines().filter(|k| k.starts_with(&new)) {
        let renamed = format!("{old}{}", &k[new.len()..]);
        server.command(&["RENAME", k, &renamed]).expect("rename");
    }
    server
        .command(&["DEL", &format!("{prefix}layout")])
        .unwrap();
    // An older version kept no usage counts.
    server.command(&["DEL", &format!("{old}u")]).unwrap();

    let e = standalone(&server, prefix).await;
    let locks = e.list_locks().await.expect("locks");
    assert_eq!(locks.len(), 1, "the held lock came along");
    assert_eq!(locks[0].pull.number, 1);
    let queues = e.list_queues().await.expect("queues");
    assert_eq!(queues[0].waiters[0].pull.number, 2, "the waiter came along");
    let keys = server.command(&["KEYS", &format!("{prefix}*")]).unwrap();
    assert!(
        !keys.lines().any(|k| k.starts_with(&old)),
        "old keys are gone: {keys}"
    );
    assert_eq!(
        server
            .command(&["GET", &format!("{prefix}layout")])
            .unwrap(),
        "digest-tag-1"
    );
    // The waiter is still served: pull 1 leaves, pull 2 is granted.
    let mut rx = e.take_dispatches().expect("dispatches");
    e.release_pull(PullRef::new(Vcs::Github, repo, 1))
        .await
        .expect("release");
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("dispatch")
        .expect("open");
    assert_eq!(d.pull.number, 2);
    assert_eq!(d.payload, b"stored request");
}

/// Pulls of the unmarked VCS are stored by their bare number, byte for byte what versions
/// before VCS-aware pulls stored for every pull; others are marked (`gitlab:2`). So state from
/// before the upgrade reads back as pulls of the unmarked VCS: here a GitLab-only deployment
/// (unmarked GitLab) reads bare numbers as its merge requests, which re-enter and release them.
#[tokio::test]
async fn state_from_before_pulls_had_a_vcs_reads_as_the_unmarked_vcs() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let prefix = "vcs:";
    let repo = "acme/infra";
    let base = Layout::new(prefix).base(repo);
    let e = standalone(&server, prefix).await;
    e.acquire(request(repo, 1, "net", ""))
        .await
        .expect("acquire");
    let mut mr = request(repo, 2, "app", "");
    mr.pull = PullRef::new(Vcs::Gitlab, repo, 2);
    e.acquire(mr).await.expect("acquire");
    let mut waiter = request(repo, 3, "net", "");
    waiter.pull = PullRef::new(Vcs::Gitlab, repo, 3);
    e.acquire_or_enqueue(waiter, b"mr 3".to_vec())
        .await
        .expect("enqueue");
    drop(e);
    let holders = server.command(&["HGETALL", &format!("{base}h")]).unwrap();
    let values: Vec<&str> = holders.lines().skip(1).step_by(2).collect();
    assert!(
        values.iter().any(|v| v.starts_with("1\t")),
        "GitHub pull 1 is stored as before: {holders}"
    );
    assert!(
        values.iter().any(|v| v.starts_with("gitlab:2\t")),
        "GitLab MR 2 is marked: {holders}"
    );
    assert_eq!(
        server.command(&["SCARD", &format!("{base}p:1")]).unwrap(),
        "1"
    );

    // The same bytes, read by a GitLab-only deployment (unmarked GitLab) after its upgrade.
    let e = RedisEngine::connect(
        EngineSettings {
            unmarked_vcs: Vcs::Gitlab,
            ..settings()
        },
        RedisSettings {
            addr: server.addr.clone(),
            key_prefix: prefix.into(),
            ..RedisSettings::default()
        },
    )
    .await
    .expect("connect");
    let locks = e.list_locks().await.expect("locks");
    let pulls: Vec<(Vcs, i64)> = locks.iter().map(|l| (l.pull.vcs, l.pull.number)).collect();
    assert_eq!(pulls, vec![(Vcs::Gitlab, 2), (Vcs::Gitlab, 1)], "app, net");
    let queues = e.list_queues().await.expect("queues");
    assert_eq!(
        queues[0].waiters[0].pull,
        PullRef::new(Vcs::Gitlab, repo, 3)
    );
    // MR 1 re-enters its lock (it does not queue behind itself) and its close releases it.
    let mut again = request(repo, 1, "net", "");
    again.pull = PullRef::new(Vcs::Gitlab, repo, 1);
    assert!(matches!(
        e.acquire(again).await.expect("acquire"),
        AcquireOutcome::Granted(_)
    ));
    let mut rx = e.take_dispatches().expect("dispatches");
    let summary = e
        .release_pull(PullRef::new(Vcs::Gitlab, repo, 1))
        .await
        .expect("release");
    assert_eq!(summary.released.len(), 1);
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("dispatch")
        .expect("open");
    assert_eq!((d.pull.vcs, d.pull.number), (Vcs::Gitlab, 3));
    assert_eq!(d.payload, b"mr 3");
}
