//! Issue 15, divergence 5, through the proxy: GitLab drafts are read from `work_in_progress`
//! only, as Atlantis reads them. A merge request marked draft there is not autoplanned, so
//! nothing is gated or queued; one marked only by GitLab's newer `draft` field is autoplanned by
//! Atlantis, so the proxy gates it: it queues behind the holder and is replayed when it leaves.

use std::time::Duration;

use crate::enhanced::{REPO, SECRET, base_yaml};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::fake_vcs::{FakeFile, FakePull, FakeVcs};
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::{gitlab_mr, gitlab_mr_opened, gitlab_note};

const GL_SECRET: &str = "gl-drafts-secret";
const ROOT: &str = "acme/infra/./default/";

#[tokio::test]
async fn gitlab_drafts_are_read_from_work_in_progress_only() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        gitlab_secret: Some(GL_SECRET.into()),
        ..Default::default()
    })
    .await;
    let vcs = FakeVcs::gitlab().await;
    for n in 1..=3 {
        vcs.add_pull(
            REPO,
            n,
            FakePull {
                head_sha: format!("{n:040x}"),
                base_branch: "main".into(),
                files: vec![FakeFile::modified("main.tf")],
            },
        );
    }
    let extra = format!(
        "  vcs-tokens:\n    gitlab: gl-t0ken\n    gitlab-api-url: {}\n",
        vcs.base_url()
    );
    let yaml = base_yaml(None, "", &extra).replace(
        &format!("    github: {SECRET}\n"),
        &format!("    github: {SECRET}\n    gitlab: {GL_SECRET}\n"),
    );
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let events = proxy.url("/events");
    let holder = || fake.locks().get(ROOT).map(|l| l.pull);
    let queued = || proxy.queued_pulls();

    // !1 holds the root project, in Atlantis and in the engine.
    let r = gitlab_note(GL_SECRET, REPO, 1, "atlantis plan -d .")
        .send_to(&events)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(eventually(Duration::from_secs(10), || holder() == Some(1)).await);

    // !2 is a draft by `work_in_progress`: Atlantis does not autoplan it, the proxy gates nothing.
    let r = gitlab_mr_opened(GL_SECRET, REPO, 2, true, false)
        .send_to(&events)
        .await;
    assert_eq!(r.status, 200, "passed through: {}", r.text());
    assert_eq!(r.text().trim(), "Ignoring draft merge request");
    assert_eq!(queued().await, Vec::<i64>::new());

    // !3 is a draft by `draft` only: Atlantis autoplans it, so it queues behind !1.
    let r = gitlab_mr_opened(GL_SECRET, REPO, 3, false, true)
        .send_to(&events)
        .await;
    assert_eq!(r.status, 202, "queued: {}", r.text());
    assert_eq!(queued().await, vec![3]);

    // !1 closes: !3's autoplan is replayed and takes the lock; !2 never plans.
    let r = gitlab_mr(GL_SECRET, REPO, 1, "close")
        .send_to(&events)
        .await;
    assert_eq!(r.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || holder() == Some(3)).await,
        "Atlantis locks {:?}",
        fake.locks()
    );
    assert!(fake.conflicts().is_empty(), "{:?}", fake.conflicts());
    proxy.stop().await;
}
