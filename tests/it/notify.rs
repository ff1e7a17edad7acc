//! The pull-request notifier against fake GitHub and GitLab APIs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atlantis_lock_proxy::classify::{LockKey, Priority};
use atlantis_lock_proxy::notify::{
    Notifier, NotifierSettings, NotifyEvent, QueuedLock, RemoveReason, Target, marker,
};
use atlantis_lock_proxy::telemetry::Metrics;
use atlantis_lock_proxy::vcs::{ApiConfig, Secret, Vcs};

use crate::support::fake_vcs::{Failure, FakeVcs, Flavor};

const REPO: &str = "acme/infra";
const TOKEN: &str = "t0ken-sekrit";

fn api(fake: &FakeVcs) -> ApiConfig {
    let mut cfg = NotifierSettings::api_config(fake.base_url(), Secret::new(TOKEN));
    cfg.request_timeout = Duration::from_secs(5);
    cfg.max_retries = 2;
    cfg.backoff = Duration::from_millis(20);
    cfg
}

fn vcs(fake: &FakeVcs) -> Vcs {
    match fake.flavor {
        Flavor::Github => Vcs::Github,
        Flavor::Gitlab => Vcs::Gitlab,
        Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
    }
}

fn start(fake: &FakeVcs, metrics: Option<Arc<Metrics>>) -> Notifier {
    let mut s = NotifierSettings::default();
    match fake.flavor {
        Flavor::Github => s.github = Some(api(fake)),
        Flavor::Gitlab => s.gitlab = Some(api(fake)),
        Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
    }
    Notifier::new(s, metrics).unwrap()
}

async fn both() -> [FakeVcs; 2] {
    [FakeVcs::github().await, FakeVcs::gitlab().await]
}

fn target(fake: &FakeVcs, pull: i64, seq: u64) -> Target {
    Target {
        waiter_id: format!("{REPO}:{seq}"),
        vcs: vcs(fake),
        repo: REPO.into(),
        pull,
    }
}

fn vpc(position: u64, holder: Option<i64>) -> Vec<QueuedLock> {
    vec![QueuedLock {
        key: LockKey {
            repo: REPO.into(),
            path: "modules/vpc".into(),
            workspace: "default".into(),
            project: String::new(),
        },
        position,
        held_by_pull: holder,
    }]
}

fn queued(t: Target, position: u64) -> NotifyEvent {
    NotifyEvent::Queued {
        target: t,
        user: "alice".into(),
        priority: Priority::Normal,
        command: "plan".into(),
        locks: vpc(position, Some(12)),
    }
}

fn moved(t: Target, position: u64) -> NotifyEvent {
    NotifyEvent::Moved {
        target: t,
        user: "alice".into(),
        priority: Priority::Normal,
        command: "plan".into(),
        locks: vpc(position, Some(12)),
    }
}

async fn settle(n: &Notifier) {
    assert!(n.flush(Duration::from_secs(20)).await, "{:?}", n.stats());
}

fn holder_link(fake: &FakeVcs) -> &'static str {
    match fake.flavor {
        Flavor::Github => "locked by #12,",
        Flavor::Gitlab => "locked by !12,",
        Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
    }
}

#[tokio::test]
async fn a_queued_plan_posts_one_comment_naming_the_holder_and_position() {
    for fake in both().await {
        let n = start(&fake, None);
        n.notify(queued(target(&fake, 31, 7), 2));
        settle(&n).await;

        let comments = fake.comment_records();
        assert_eq!(comments.len(), 1, "{:?}: {comments:?}", fake.flavor);
        let c = &comments[0];
        assert_eq!((c.repo.as_str(), c.pull), (REPO, 31));
        assert!(c.body.starts_with("**Plan Queued**"), "{}", c.body);
        assert!(c.body.contains(holder_link(&fake)), "{}", c.body);
        assert!(c.body.contains("position **2** in the queue"), "{}", c.body);
        assert!(c.body.contains("comment `atlantis unlock`"), "{}", c.body);
        assert!(c.body.ends_with(&marker("acme/infra:7")), "{}", c.body);
        assert_eq!(n.stats().created, 1);

        // The token went in the provider's header.
        let sent = fake.requests();
        let last = sent.last().unwrap();
        match fake.flavor {
            Flavor::Github => assert_eq!(last.auth.as_deref(), Some("Bearer t0ken-sekrit")),
            Flavor::Gitlab => assert_eq!(last.private_token.as_deref(), Some(TOKEN)),
            Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
        }
    }
}

#[tokio::test]
async fn moving_up_edits_the_same_comment() {
    for fake in both().await {
        let n = start(&fake, None);
        // Someone else's comment on the same pull must stay untouched.
        fake.add_comment(REPO, 31, "looks good");
        n.notify(queued(target(&fake, 31, 7), 2));
        n.notify(moved(target(&fake, 31, 7), 1));
        settle(&n).await;

        let comments = fake.comment_records();
        assert_eq!(comments.len(), 2, "{:?}: {comments:?}", fake.flavor);
        assert_eq!(comments[0].body, "looks good");
        let ours = &comments[1];
        assert_eq!(ours.edits, 1);
        assert!(
            ours.body.contains("position **1** in the queue"),
            "{}",
            ours.body
        );
        assert!(!ours.body.contains("position **2**"), "{}", ours.body);
        let s = n.stats();
        assert_eq!((s.created, s.edited, s.failed), (1, 1, 0));
        // The id was remembered: one listing (for the first event) and one creation only.
        let comments_path = match fake.flavor {
            Flavor::Github => "/issues/31/comments",
            Flavor::Gitlab => "/merge_requests/31/notes",
            Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
        };
        assert_eq!(fake.count_method("GET", comments_path), 1);
        assert_eq!(fake.count_method("POST", comments_path), 1);
    }
}

#[tokio::test]
async fn a_timeout_turns_the_comment_into_the_explanation() {
    for fake in both().await {
        let n = start(&fake, None);
        let t = target(&fake, 31, 7);
        n.notify(queued(t.clone(), 1));
        n.notify(NotifyEvent::TimedOut {
            target: t,
            command: "plan".into(),
            waited: Duration::from_secs(1800),
            locks: vpc(1, Some(12)),
        });
        settle(&n).await;

        let comments = fake.comment_records();
        assert_eq!(comments.len(), 1, "{:?}: {comments:?}", fake.flavor);
        let body = &comments[0].body;
        assert!(
            body.starts_with("**Plan Queue Timed Out**: the lock was not released within 30m."),
            "{body}"
        );
        assert!(
            body.contains("handed to Atlantis, which will answer that the project is locked"),
            "{body}"
        );
        assert_eq!(comments[0].edits, 1);
    }
}

#[tokio::test]
async fn a_deadlock_victim_is_told_why() {
    let fake = FakeVcs::gitlab().await;
    let n = start(&fake, None);
    n.notify(NotifyEvent::DeadlockVictim {
        target: target(&fake, 31, 9),
        command: "plan".into(),
        cycle: vec![12, 31],
    });
    settle(&n).await;
    let comments = fake.comments();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].2.starts_with(
            "**Plan Removed From Queue**: deadlock between pull requests !12 and !31."
        ),
        "{}",
        comments[0].2
    );
}

#[tokio::test]
async fn notify_returns_at_once_while_the_api_takes_two_seconds() {
    for fake in both().await {
        fake.set_delay(Duration::from_secs(2));
        let n = start(&fake, None);
        let began = Instant::now();
        for seq in 0..20 {
            n.notify(queued(target(&fake, 31 + seq as i64, seq), 1));
        }
        let took = began.elapsed();
        assert!(
            took < Duration::from_millis(50),
            "notify blocked for {took:?}"
        );
        assert_eq!(n.stats().pending, 20);
        // Nothing has reached the pull yet, but the workers are getting there (a listing and a
        // creation: 4 s per comment, four workers in parallel).
        assert!(fake.comments().is_empty());
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake.comments().len() < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(fake.comments().len() >= 2, "{:?}", n.stats());
        assert_eq!(n.stats().failed, 0);
    }
}

#[tokio::test]
async fn a_500_is_retried_and_counted() {
    for fake in both().await {
        let metrics = Arc::new(Metrics::new());
        let n = start(&fake, Some(metrics.clone()));
        let label = vcs(&fake).as_str();

        // One 500, then service: the client's retry makes it through.
        fake.fail_next(1, 500);
        n.notify(queued(target(&fake, 31, 7), 1));
        settle(&n).await;
        assert_eq!(fake.comments().len(), 1);
        assert_eq!(fake.total(), 3, "failed listing, listing, creation");
        assert_eq!(n.stats().created, 1);

        // Failing for good: retried, then counted as an error; the caller never noticed.
        fake.set_failure(Failure::Status(500));
        let before = fake.total();
        n.notify(moved(target(&fake, 31, 7), 1));
        settle(&n).await;
        assert_eq!(fake.total() - before, 3, "first try and two retries");
        assert_eq!(n.stats().failed, 1);

        let text = metrics.encode();
        for outcome in ["created", "error"] {
            let line = format!(
                "atlantis_lock_proxy_notifications_total{{vcs=\"{label}\",outcome=\"{outcome}\"}} 1"
            );
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}

#[tokio::test]
async fn a_restarted_notifier_finds_its_comment_by_marker() {
    for fake in both().await {
        // Enough chatter that our comment sits on the second page of the listing.
        for i in 0..120 {
            fake.add_comment(REPO, 31, &format!("comment {i}"));
        }
        let first = start(&fake, None);
        first.notify(queued(target(&fake, 31, 7), 2));
        settle(&first).await;
        drop(first);

        let second = start(&fake, None);
        second.notify(moved(target(&fake, 31, 7), 1));
        settle(&second).await;

        let ours: Vec<_> = fake
            .comment_records()
            .into_iter()
            .filter(|c| c.body.contains(&marker("acme/infra:7")))
            .collect();
        assert_eq!(ours.len(), 1, "{:?}: {ours:?}", fake.flavor);
        assert_eq!(ours[0].edits, 1);
        assert!(ours[0].body.contains("position **1**"), "{}", ours[0].body);
        assert_eq!(second.stats().edited, 1);
        assert_eq!(second.stats().created, 0);
    }
}

#[tokio::test]
async fn a_comment_deleted_by_a_user_is_posted_again() {
    let fake = FakeVcs::github().await;
    let n = start(&fake, None);
    n.notify(queued(target(&fake, 31, 7), 2));
    settle(&n).await;
    let id = fake.comment_records()[0].id;
    fake.delete_comment(id);

    n.notify(moved(target(&fake, 31, 7), 1));
    settle(&n).await;
    let comments = fake.comment_records();
    assert_eq!(comments.len(), 1);
    assert_ne!(comments[0].id, id);
    assert!(comments[0].body.contains("position **1**"));
}

#[tokio::test]
async fn uncovered_vcs_and_grants_are_not_sent() {
    let fake = FakeVcs::github().await;
    let metrics = Arc::new(Metrics::new());
    let n = start(&fake, Some(metrics.clone()));
    let mut t = target(&fake, 31, 7);
    t.vcs = Vcs::BitbucketCloud;
    n.notify(queued(t.clone(), 1));
    n.notify(queued(t, 1));
    // No GitLab token configured on this notifier.
    let mut gl = target(&fake, 31, 8);
    gl.vcs = Vcs::Gitlab;
    n.notify(queued(gl, 1));
    // Off by default: Atlantis's own comment follows a grant at once.
    n.notify(NotifyEvent::Granted {
        target: target(&fake, 31, 9),
        command: "plan".into(),
    });
    settle(&n).await;

    assert_eq!(fake.total(), 0);
    let s = n.stats();
    assert_eq!((s.unsupported, s.skipped, s.pending), (3, 1, 0));
    let text = metrics.encode();
    assert!(text.contains(
        "atlantis_lock_proxy_notifications_total{vcs=\"bitbucket_cloud\",outcome=\"unsupported\"} 2"
    ));
    assert!(text.contains(
        "atlantis_lock_proxy_notifications_total{vcs=\"gitlab\",outcome=\"unconfigured\"} 1"
    ));
}

#[tokio::test]
async fn grants_are_announced_when_asked() {
    let fake = FakeVcs::github().await;
    let mut s = NotifierSettings {
        notify_on_grant: true,
        ..NotifierSettings::default()
    };
    s.github = Some(api(&fake));
    let n = Notifier::new(s, None).unwrap();
    let t = target(&fake, 31, 7);
    n.notify(queued(t.clone(), 1));
    n.notify(NotifyEvent::Granted {
        target: t,
        command: "plan".into(),
    });
    settle(&n).await;
    let comments = fake.comments();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].2.starts_with("**Plan Lock Granted**"),
        "{}",
        comments[0].2
    );
}

#[tokio::test]
async fn a_rate_limit_is_waited_out() {
    let fake = FakeVcs::github().await;
    fake.set_failure(Failure::RateLimited {
        retry_after_secs: 1,
    });
    let n = start(&fake, None);
    n.notify(queued(target(&fake, 31, 7), 1));
    // Longer than the client's own retries (three tries a second apart) last.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(fake.comments().is_empty());
    fake.set_failure(Failure::None);
    settle(&n).await;
    assert_eq!(fake.comments().len(), 1);
    let s = n.stats();
    assert_eq!((s.created, s.failed), (1, 0));
    assert!(s.rate_limited >= 1, "{s:?}");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let fake = FakeVcs::github().await;
    fake.set_delay(Duration::from_secs(1));
    let metrics = Arc::new(Metrics::new());
    let mut s = NotifierSettings {
        queue_capacity: 2,
        workers: 1,
        ..NotifierSettings::default()
    };
    s.github = Some(api(&fake));
    let n = Notifier::new(s, Some(metrics.clone())).unwrap();
    // The worker has not run yet (one thread, no await): two fit, three do not.
    for seq in 0..5 {
        n.notify(queued(target(&fake, 31, seq), 1));
    }
    let st = n.stats();
    assert_eq!((st.pending, st.dropped), (2, 3));
    assert!(
        metrics.encode().contains(
            "atlantis_lock_proxy_notifications_total{vcs=\"github\",outcome=\"dropped\"} 3"
        )
    );
}

#[tokio::test]
async fn failures_are_logged_without_the_token() {
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for fake in both().await {
        fake.set_failure(Failure::Status(502));
        let n = start(&fake, None);
        n.notify(queued(target(&fake, 31, 7), 1));
        settle(&n).await;
        assert_eq!(n.stats().failed, 1);
    }
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("could not comment on the pull request"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs:\n{logs}");
}

#[tokio::test]
async fn leaving_the_queue_updates_the_comment() {
    let fake = FakeVcs::gitlab().await;
    let n = start(&fake, None);
    let t = target(&fake, 31, 7);
    n.notify(queued(t.clone(), 1));
    n.notify(NotifyEvent::Removed {
        target: t,
        command: "plan".into(),
        reason: RemoveReason::LeftQueue,
    });
    settle(&n).await;
    let comments = fake.comment_records();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0]
            .body
            .starts_with("**Plan Removed From Queue**: this pull request left the queue"),
        "{}",
        comments[0].body
    );
}
