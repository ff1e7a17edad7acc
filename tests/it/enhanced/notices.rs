//! The pull request hears what happened to its queued command.

use std::time::{Duration, Instant};

use super::{Backend, Setup};
use crate::support::eventually;
use crate::support::fake_vcs::FakeVcs;

async fn setup(delay: Duration) -> (Setup, FakeVcs) {
    setup_with(delay, "").await
}

async fn setup_with(delay: Duration, enhanced: &str) -> (Setup, FakeVcs) {
    let gh = FakeVcs::github().await;
    gh.set_delay(delay);
    // With a token the proxy reads the pull (fork check) and atlantis.yaml for `-d` (issue 15).
    for n in 1..=5 {
        gh.add_pull(
            super::REPO,
            n,
            crate::support::fake_vcs::FakePull {
                head_sha: format!("{n:040x}"),
                base_branch: "main".into(),
                files: Vec::new(),
            },
        );
    }
    let atlantis = format!(
        "  vcs-tokens:\n    github: gh-token\n    github-api-url: {}\n",
        gh.base_url()
    );
    (
        Setup::start_with(Backend::Memory, enhanced, &atlantis).await,
        gh,
    )
}

#[tokio::test]
async fn a_queued_plan_gets_one_comment_that_is_edited_as_it_moves_up() {
    let (s, gh) = setup(Duration::ZERO).await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (_, r2) = s.plan(2, "net", "prod").await;
    let (_, r3) = s.plan(3, "net", "prod").await;
    assert_eq!((r2.status.as_u16(), r3.status.as_u16()), (202, 202));
    let on = |pull: i64| {
        gh.comment_records()
            .into_iter()
            .filter(|c| c.pull == pull)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(5), || on(2).len() == 1
            && on(3).len() == 1)
        .await
    );
    let c3 = on(3)[0].body.clone();
    assert!(c3.contains("**Plan Queued**"), "{c3}");
    assert!(c3.contains("position **2**"), "{c3}");
    assert!(
        on(2)[0].body.contains("locked by #1, position **1**"),
        "{}",
        on(2)[0].body
    );

    s.close(1).await;
    // PR 3 is now first behind PR 2: the same comment says so.
    let moved = eventually(Duration::from_secs(10), || {
        let c = on(3);
        c.len() == 1 && c[0].body.contains("locked by #2, position **1**")
    })
    .await;
    assert!(moved, "{:?}", on(3));
    assert_eq!(on(3).len(), 1, "edited in place, not a second comment");
    s.proxy.stop().await;
}

#[tokio::test]
async fn the_webhook_answer_does_not_wait_for_a_slow_vcs_api() {
    // The project table and --allow-fork-prs leave nothing for the resolver to ask the slow
    // API: only the notice talks to it.
    let gh = FakeVcs::github().await;
    gh.set_delay(Duration::from_secs(2));
    let atlantis = format!(
        "  allow-fork-prs: true\n  vcs-tokens:\n    github: gh-token\n    github-api-url: {}\n",
        gh.base_url()
    );
    let s = Setup::start_with(Backend::Memory, "repos:\n  - name: acme/infra\n", &atlantis).await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let start = Instant::now();
    let (_, r) = s.plan(2, "net", "prod").await;
    assert_eq!(r.status, 202);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(10), || gh
            .comment_records()
            .iter()
            .any(|c| c.pull == 2))
        .await
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn a_timed_out_waiter_is_told_why_atlantis_answers_locked() {
    let (s, gh) = setup_with(Duration::ZERO, "  queue-timeout: 1s\n").await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    let (hook2, _) = s.plan(2, "net", "prod").await;
    assert!(s.wait_arrival(&hook2).await);
    let explained = eventually(Duration::from_secs(10), || {
        gh.comment_records()
            .iter()
            .any(|c| c.pull == 2 && c.edits >= 1 && c.body.contains("Queue Timed Out"))
    })
    .await;
    assert!(explained, "{:?}", gh.comment_records());
    s.proxy.stop().await;
}

#[tokio::test]
async fn a_waiter_an_operator_removed_is_told_so() {
    let (s, gh) = setup(Duration::ZERO).await;
    s.plan(1, "net", "prod").await;
    assert!(s.wait_atlantis_holder("net", "prod", 1).await);
    s.plan(2, "net", "prod").await;
    let queued = eventually(Duration::from_secs(5), || {
        gh.comment_records().iter().any(|c| c.pull == 2)
    })
    .await;
    assert!(queued, "{:?}", gh.comment_records());
    let q = s.admin("/admin/queues").await;
    let id = q["queues"][0]["waiters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = crate::support::http::send(
        http::Method::DELETE,
        &s.proxy
            .admin_url(&format!("/admin/queues/{}", id.replace('/', "%2F"))),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let told = eventually(Duration::from_secs(10), || {
        gh.comment_records().iter().any(|c| {
            c.pull == 2 && c.edits >= 1 && c.body.contains("an operator removed this command")
        })
    })
    .await;
    assert!(told, "{:?}", gh.comment_records());
    s.proxy.stop().await;
}
