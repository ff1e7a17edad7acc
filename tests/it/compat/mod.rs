//! Issue 15: the proxy takes exactly the locks Atlantis takes. One test per divergence, through
//! the real proxy against the fake Atlantis (and the fake GitHub API where `atlantis.yaml` or the
//! pull is read), plus a test loading Atlantis's own config file, repos.yaml and `ATLANTIS_*`.

mod azure_close;
mod drafts;
mod gitea_forks;
mod github_app;
mod settings;
mod token_file;

use std::time::Duration;

use serde_json::json;

use crate::enhanced::{REPO, SECRET, base_yaml};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::fake_vcs::{FakePull, FakeVcs};
use crate::support::http::{Reply, get, send};
use crate::support::proxy::{RunningProxy, spawn_proxy};
use crate::support::webhooks::{
    Webhook, bitbucket, github_comment, github_comment_labeled, github_fork_pull, github_pull,
};

const ATLANTIS_YAML: &str = "version: 3
projects:
  - name: netproj
    dir: net
  - name: lateproj
    dir: late
    repo_locks: {mode: on_apply}
";
const NET: &str = "acme/infra/net/default/netproj";
const API_SECRET: &str = "api-s3cret";

struct Compat {
    fake: FakeAtlantis,
    vcs: FakeVcs,
    proxy: RunningProxy,
}

impl Compat {
    /// Fake Atlantis configured like `opts`, the fake GitHub API holding `ATLANTIS_YAML` and
    /// pulls 1..=9, and the proxy (memory engine, split 100) given a token for it.
    async fn start(opts: FakeOptions, atlantis_extra: &str) -> Compat {
        let fake = FakeAtlantis::start_with(FakeOptions {
            github_secret: Some(SECRET.into()),
            api_secret: Some(API_SECRET.into()),
            ..opts
        })
        .await;
        fake.set_project(REPO, "net", "default", "netproj", "on_plan");
        fake.set_project(REPO, "late", "default", "lateproj", "on_apply");
        let vcs = FakeVcs::github().await;
        vcs.add_file(REPO, "atlantis.yaml", ATLANTIS_YAML);
        for n in 1..=9 {
            vcs.add_pull(
                REPO,
                n,
                FakePull {
                    head_sha: format!("{n:040x}"),
                    base_branch: "main".into(),
                    files: vec![crate::support::fake_vcs::FakeFile::modified("net/main.tf")],
                },
            );
        }
        let extra = format!(
            "  api-secret: {API_SECRET}\n  vcs-tokens:\n    github: t0ken\n    github-api-url: {}\n{atlantis_extra}",
            vcs.base_url()
        );
        // Bitbucket webhooks are gated too (their signature checked with this secret).
        let yaml = base_yaml(None, "", &extra).replace(
            &format!("    github: {SECRET}\n"),
            &format!("    github: {SECRET}\n    bitbucket: bb-secret\n"),
        );
        let proxy = spawn_proxy(&fake.url(), &yaml).await;
        Compat { fake, vcs, proxy }
    }

    async fn send(&self, hook: &Webhook) -> Reply {
        hook.send_to(&self.proxy.url("/events")).await
    }

    async fn comment(&self, pull: i64, text: &str) -> Reply {
        self.send(&github_comment(
            SECRET,
            REPO,
            pull,
            &format!("user{pull}"),
            text,
        ))
        .await
    }

    async fn engine_locks(&self) -> Vec<(String, i64)> {
        self.proxy.engine_locks().await
    }

    async fn waiters(&self) -> usize {
        self.proxy.queued_pulls().await.len()
    }

    fn atlantis_holder(&self, key: &str) -> Option<i64> {
        let (repo, rest) = key.split_at(REPO.len());
        assert_eq!(repo, REPO);
        self.fake
            .locks()
            .iter()
            .find(|(k, _)| k.ends_with(rest) && k.starts_with(REPO))
            .map(|(_, l)| l.pull)
    }

    /// Pull 1 plans `net` and both Atlantis and the engine say it holds `netproj`.
    async fn pull_one_holds_net(&self) {
        let r = self.comment(1, "atlantis plan -d net").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            eventually(Duration::from_secs(10), || self.atlantis_holder(NET)
                == Some(1))
            .await,
            "Atlantis locks {:?}",
            self.fake.locks().keys().collect::<Vec<_>>()
        );
        assert!(self.engine_locks().await.contains(&(NET.to_owned(), 1)));
    }
}

/// Divergence 1: `-d` maps to the project configured at that dir, and its name is in the key.
#[tokio::test]
async fn a_dir_comment_takes_the_named_project_of_atlantis_yaml() {
    let c = Compat::start(FakeOptions::default(), "").await;
    c.pull_one_holds_net().await;
    // Contended: queued under the *named* key Atlantis holds (not `acme/infra/net/default/`).
    let r = c.comment(2, "atlantis plan -d net").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["locks"][0]["key"], NET);
    assert_eq!(r.json()["locks"][0]["held_by_pull"], 1);
    // `lateproj` is on_apply: Atlantis plans it without a lock, so two pulls never queue on it.
    assert_eq!(c.comment(3, "atlantis plan -d late").await.status, 200);
    let r = c.comment(4, "atlantis plan -d late").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        c.engine_locks()
            .await
            .iter()
            .all(|(k, _)| !k.contains("/late/")),
        "{:?}",
        c.engine_locks().await
    );
    assert_eq!(c.waiters().await, 1);
    assert!(c.vcs.count("atlantis.yaml") >= 1);
}

/// Divergence 1, budget: when atlantis.yaml cannot be read, the request takes the legacy path
/// (forwarded, nothing in the engine) and is counted.
#[tokio::test]
async fn a_dir_comment_whose_config_cannot_be_read_takes_the_legacy_path() {
    let c = Compat::start(FakeOptions::default(), "").await;
    c.vcs
        .set_failure(crate::support::fake_vcs::Failure::Status(500));
    let r = c.comment(2, "atlantis plan -d net").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(c.engine_locks().await.is_empty());
    let m = get(&c.proxy.admin_url("/metrics")).await.text();
    assert!(
        m.lines().any(|l| l
            .starts_with("atlantis_lock_proxy_resolves_total{outcome=\"api_error\"} ")
            && !l.ends_with(" 0")),
        "{m}"
    );
}

/// Divergence 2: Atlantis refuses fork pulls (no `--allow-fork-prs`): nothing is locked or queued.
#[tokio::test]
async fn fork_pulls_take_no_lock_and_are_never_queued() {
    let c = Compat::start(FakeOptions::default(), "").await;
    c.pull_one_holds_net().await;
    // An autoplan from a fork, whose changed files touch the held project.
    let r = c
        .send(&github_fork_pull(
            SECRET, REPO, 5, "mallory", "opened", "forker",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A comment on a fork pull (the payload does not say; the pull API does).
    c.vcs.set_fork(REPO, 6);
    c.fake.set_fork(REPO, 6);
    let r = c.comment(6, "atlantis plan -d net").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.waiters().await, 0);
    assert_eq!(c.engine_locks().await, vec![(NET.to_owned(), 1)]);
    // The same comment from pull 7 (not a fork) queues.
    assert_eq!(c.comment(7, "atlantis plan -d net").await.status, 202);
}

/// Divergence 2 with `--allow-fork-prs`: forks are gated like any pull.
#[tokio::test]
async fn with_allow_fork_prs_fork_pulls_queue_too() {
    let c = Compat::start(
        FakeOptions {
            allow_fork_prs: true,
            ..Default::default()
        },
        "  allow-fork-prs: true\n",
    )
    .await;
    c.pull_one_holds_net().await;
    c.vcs.set_fork(REPO, 6);
    c.fake.set_fork(REPO, 6);
    assert_eq!(c.comment(6, "atlantis plan -d net").await.status, 202);
}

/// Divergence 3: an `unlock` Atlantis refuses (unlock label) and a close it fails (403) release
/// nothing in the engine; an accepted unlock does.
#[tokio::test]
async fn only_what_atlantis_releases_is_released() {
    let c = Compat::start(
        FakeOptions {
            disable_unlock_label: Some("keep-locks".into()),
            ..Default::default()
        },
        "  disable-unlock-label: keep-locks\n",
    )
    .await;
    c.pull_one_holds_net().await;
    // The label is in the payload: the proxy knows Atlantis deletes nothing.
    let r = c
        .send(&github_comment_labeled(
            SECRET,
            REPO,
            1,
            "user1",
            "atlantis unlock",
            &["keep-locks"],
        ))
        .await;
    assert_eq!(r.status, 200);
    // The label only Atlantis sees (the payload's labels are stale): it refuses after answering.
    c.fake.set_labels(REPO, 1, &["keep-locks"]);
    assert_eq!(c.comment(1, "atlantis unlock").await.status, 200);
    // replay-wait (3 s in these tests) passes without Atlantis letting go.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(c.atlantis_holder(NET), Some(1));
    assert_eq!(c.engine_locks().await, vec![(NET.to_owned(), 1)]);
    // A close whose clean-up fails: 403, locks kept.
    c.fake.fail_close(REPO, 1);
    let r = c
        .send(&github_pull(SECRET, REPO, 1, "user1", "closed"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(c.engine_locks().await, vec![(NET.to_owned(), 1)]);
    // An unlock Atlantis carries out is mirrored.
    c.fake.set_labels(REPO, 1, &[]);
    assert_eq!(c.comment(1, "atlantis unlock").await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || c.atlantis_holder(NET).is_none()).await,
        "Atlantis kept the lock"
    );
    let mut released = false;
    for _ in 0..100 {
        if c.engine_locks().await.is_empty() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "{:?}", c.engine_locks().await);
}

/// Divergence 4: drift detection takes the project's lock like `/api/plan`: held while another
/// pull holds it, sent once it is free, released when the call ends.
#[tokio::test]
async fn drift_detection_waits_for_a_held_lock_and_releases_after() {
    let c = Compat::start(FakeOptions::default(), "").await;
    c.pull_one_holds_net().await;
    let body = json!({"repository": REPO, "ref": "main", "type": "Github",
                      "paths": [{"directory": "net", "workspace": "default"}]});
    let url = c.proxy.url("/api/drift/detect");
    let call = tokio::spawn(async move {
        send(
            http::Method::POST,
            &url,
            &[
                ("content-type", "application/json"),
                ("x-atlantis-token", API_SECRET),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        c.fake.received_at("/api/drift/detect").is_empty(),
        "a contended drift call must wait"
    );
    let closed_at = std::time::Instant::now();
    assert_eq!(
        c.send(&github_pull(SECRET, REPO, 1, "user1", "closed"))
            .await
            .status,
        200
    );
    let reply = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the drift call finishes")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let arrived = c.fake.received_at("/api/drift/detect");
    assert_eq!(arrived.len(), 1);
    assert!(arrived[0].at >= closed_at);
    assert!(c.engine_locks().await.is_empty(), "released after the call");
}

fn bitbucket_server_comment(pull: i64, text: &str, reviewers: bool) -> serde_json::Value {
    let side = |slug: &str| {
        json!({"displayId": "feature", "latestCommit": "abc123",
               "repository": {"slug": slug, "project": {"name": "Ops", "key": "OPS"}}})
    };
    let mut pr = json!({"id": pull, "version": 1, "state": "OPEN",
                        "fromRef": side("infra"), "toRef": side("infra")});
    if reviewers {
        pr["reviewers"] = json!([]);
    }
    json!({"actor": {"name": "alice"}, "pullRequest": pr, "comment": {"text": text}})
}

fn bitbucket_cloud_event(pull: i64, sha: &str, complete: bool) -> serde_json::Value {
    let repo = json!({"full_name": "ws/infra",
                      "links": {"html": {"href": "https://bitbucket.org/ws/infra"}}});
    let mut pr = json!({
        "id": pull, "state": "OPEN",
        "source": {"repository": repo, "commit": {"hash": sha}, "branch": {"name": "feature"}},
        "destination": {"repository": repo, "commit": {"hash": "d0d0"}, "branch": {"name": "main"}},
        "links": {"html": {"href": format!("https://bitbucket.org/ws/infra/pull-requests/{pull}")}},
        "participants": [], "author": {"uuid": "{u-1}"},
    });
    if !complete {
        pr.as_object_mut().unwrap().remove("participants");
    }
    json!({"actor": {"account_id": "acc-1"}, "repository": repo, "pullrequest": pr,
           "comment": {"content": {"raw": "atlantis plan -d net"}}})
}

/// Divergence 5: payloads Atlantis refuses with 400 lock nothing; a Bitbucket Cloud update with
/// the head commit Atlantis saw last is no autoplan.
#[tokio::test]
async fn payloads_atlantis_refuses_lock_nothing() {
    let c = Compat::start(FakeOptions::default(), "").await;
    // Bitbucket Server without `reviewers`: nothing; with it: the `-d` key is held.
    c.send(&bitbucket(
        "bb-secret",
        false,
        "pr:comment:added",
        &bitbucket_server_comment(3, "atlantis plan -d net", false),
    ))
    .await;
    assert!(c.engine_locks().await.is_empty());
    c.send(&bitbucket(
        "bb-secret",
        false,
        "pr:comment:added",
        &bitbucket_server_comment(3, "atlantis plan -d net", true),
    ))
    .await;
    assert_eq!(
        c.engine_locks().await,
        vec![("Ops/infra/net/default/".to_owned(), 3)]
    );
    // Bitbucket Cloud without `participants`: nothing; with it: held.
    c.send(&bitbucket(
        "bb-secret",
        true,
        "pullrequest:comment_created",
        &bitbucket_cloud_event(4, "a1a1", false),
    ))
    .await;
    assert_eq!(c.engine_locks().await.len(), 1);
    c.send(&bitbucket(
        "bb-secret",
        true,
        "pullrequest:comment_created",
        &bitbucket_cloud_event(4, "a1a1", true),
    ))
    .await;
    assert!(
        c.engine_locks()
            .await
            .contains(&("ws/infra/net/default/".to_owned(), 4))
    );
    // Updates: a new head commit is an autoplan (it needs a resolver: no Bitbucket client, so
    // it is counted as `no_client`); the same commit again is not looked at.
    let no_client = || async {
        let m = get(&c.proxy.admin_url("/metrics")).await.text();
        m.lines()
            .find(|l| l.starts_with("atlantis_lock_proxy_resolves_total{outcome=\"no_client\"} "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let before = no_client().await;
    let update = |sha: &str| {
        bitbucket(
            "bb-secret",
            true,
            "pullrequest:updated",
            &bitbucket_cloud_event(8, sha, true),
        )
    };
    c.send(&update("b2b2")).await;
    assert_eq!(no_client().await, before + 1);
    c.send(&update("b2b2")).await;
    assert_eq!(
        no_client().await,
        before + 1,
        "same head commit: no autoplan"
    );
    c.send(&update("c3c3")).await;
    assert_eq!(no_client().await, before + 2);
}

/// Start-up: the counters a quick start looks for exist at once, with zero values.
#[tokio::test]
async fn counters_exist_from_the_start() {
    let fake = FakeAtlantis::start().await;
    let proxy = spawn_proxy(&fake.url(), "").await;
    let m = get(&proxy.admin_url("/metrics")).await.text();
    for series in [
        "atlantis_lock_proxy_notifications_total{vcs=\"github\",outcome=\"unconfigured\"} 0",
        "atlantis_lock_proxy_resolves_total{outcome=\"no_client\"} 0",
        "atlantis_lock_proxy_resolves_total{outcome=\"resolved\"} 0",
    ] {
        assert!(m.contains(series), "{series} missing from\n{m}");
    }
    proxy.stop().await;
}
