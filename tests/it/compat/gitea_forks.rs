//! Issue 15, divergence 2 on Gitea: a Gitea comment does not say whether its pull comes from a
//! fork. Atlantis (`getGiteaData` in `events/command_runner.go`) reads the pull with its
//! `gitea-token` and refuses a fork without `--allow-fork-prs`; the proxy asks the same API.

use std::time::Duration;

use super::{REPO, SECRET, base_yaml};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::fake_vcs::{FakePull, FakeVcs};
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::gitea_comment;

const GITEA_SECRET: &str = "gitea-s3cret";
const GITEA_TOKEN: &str = "gitea-t0ken";
/// No atlantis.yaml can be read on Gitea: `-d net` is Atlantis's unnamed project there.
const NET: &str = "acme/infra/net/default/";

#[tokio::test]
async fn a_gitea_comment_on_a_fork_pull_is_never_queued() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        gitea_secret: Some(GITEA_SECRET.into()),
        ..Default::default()
    })
    .await;
    let vcs = FakeVcs::gitea(GITEA_TOKEN).await;
    for n in [1, 6, 7] {
        vcs.add_pull(
            REPO,
            n,
            FakePull {
                head_sha: format!("{n:040x}"),
                base_branch: "main".into(),
                files: Vec::new(),
            },
        );
    }
    vcs.set_fork(REPO, 6);
    fake.set_fork(REPO, 6);

    // Only Gitea, configured as Atlantis is: its webhook secret, token and base URL.
    let dir = std::env::temp_dir().join(format!("alp-gitea-forks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = dir.join("atlantis-server.yaml");
    std::fs::write(
        &server,
        format!(
            "gitea-token: {GITEA_TOKEN}\ngitea-base-url: {}\ngitea-webhook-secret: {GITEA_SECRET}\n",
            vcs.root_url()
        ),
    )
    .unwrap();
    let yaml = base_yaml(
        None,
        "",
        &format!("  server-config: {}\n", server.display()),
    )
    .replace(&format!("  webhook-secrets:\n    github: {SECRET}\n"), "");
    assert!(!yaml.contains("github"), "{yaml}");
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let root = vcs.root_url();
    let events = proxy.url("/events");
    let plan = |n: i64| {
        let (root, events) = (root.clone(), events.clone());
        async move {
            gitea_comment(
                GITEA_SECRET,
                &root,
                REPO,
                n,
                &format!("user{n}"),
                "atlantis plan -d net",
            )
            .send_to(&events)
            .await
        }
    };
    let engine_locks = || proxy.engine_locks();
    let waiters = || async { proxy.queued_pulls().await.len() };

    // Pull 1 (same repository) plans `net`: Atlantis and the engine both hold it.
    let r = plan(1).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        eventually(Duration::from_secs(10), || fake
            .locks()
            .get(NET)
            .is_some_and(|l| l.pull == 1))
        .await,
        "Atlantis locks {:?}",
        fake.locks().keys().collect::<Vec<_>>()
    );
    assert_eq!(engine_locks().await, vec![(NET.to_owned(), 1)]);

    // Pull 6 comes from a fork: nothing is gated or queued, Atlantis refuses it itself.
    let r = plan(6).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(waiters().await, 0);
    assert_eq!(engine_locks().await, vec![(NET.to_owned(), 1)]);
    assert!(
        eventually(Duration::from_secs(10), || fake
            .comments()
            .iter()
            .any(|c| c.pull == 6 && c.body.contains("fork pull requests")))
        .await
    );
    // The proxy asked Gitea's pull API, with Atlantis's token.
    let asked: Vec<_> = vcs
        .requests()
        .into_iter()
        .filter(|r| r.uri == "/api/v1/repos/acme/infra/pulls/6")
        .collect();
    assert!(!asked.is_empty(), "{:?}", vcs.requests());
    let token = format!("token {GITEA_TOKEN}");
    assert!(
        asked
            .iter()
            .all(|r| r.auth.as_deref() == Some(token.as_str()))
    );

    // The same comment on pull 7 (same repository) is contended: queued.
    let r = plan(7).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["locks"][0]["key"], NET);
    assert_eq!(waiters().await, 1);
}
