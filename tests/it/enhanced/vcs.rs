//! A pull's identity includes its VCS (issue 14, item 1): with GitHub and GitLab both gated, a
//! GitLab merge request and a GitHub pull with the same number in a repository of the same name
//! share Atlantis's lock keys, but the engine never takes one for the other.
//!
//! Atlantis itself knows a holder by repository and number only: `UnlockByPull(repo, num)`
//! deletes both pulls' locks on either's close, and `TryLock` lets a pull with the holder's
//! number in. The fake Atlantis does the same. The engine mirrors a close only for the closed
//! pull; what Atlantis dropped besides, the reconciler follows after its grace (§10.1).

use std::time::Duration;

use super::{Backend, REPO, SECRET, base_yaml, key};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::http::get;
use crate::support::proxy::{RunningProxy, spawn_proxy};
use crate::support::redis::RedisServer;
use crate::support::webhooks::{Webhook, github_comment, gitlab_mr, gitlab_note};

const GL_SECRET: &str = "gl-vcs-identity-secret";

struct TwoVcs {
    fake: FakeAtlantis,
    proxy: RunningProxy,
    _redis: Option<RedisServer>,
}

impl TwoVcs {
    /// GitHub and GitLab both configured with secrets, in Atlantis and in the proxy.
    async fn start(backend: Backend, atlantis_extra: &str) -> TwoVcs {
        let fake = FakeAtlantis::start_with(FakeOptions {
            github_secret: Some(SECRET.into()),
            gitlab_secret: Some(GL_SECRET.into()),
            ..Default::default()
        })
        .await;
        let redis = matches!(backend, Backend::Redis).then(RedisServer::start);
        let yaml = base_yaml(redis.as_ref(), "", atlantis_extra).replace(
            &format!("    github: {SECRET}\n"),
            &format!("    github: {SECRET}\n    gitlab: {GL_SECRET}\n"),
        );
        let proxy = spawn_proxy(&fake.url(), &yaml).await;
        TwoVcs {
            fake,
            proxy,
            _redis: redis,
        }
    }

    async fn send(&self, hook: &Webhook) -> u16 {
        hook.send_to(&self.proxy.url("/events"))
            .await
            .status
            .as_u16()
    }

    /// `atlantis plan -d dir` on GitHub pull `n`.
    async fn github_plan(&self, n: i64, dir: &str) -> (Webhook, u16) {
        let hook = github_comment(
            SECRET,
            REPO,
            n,
            &format!("user{n}"),
            &format!("atlantis plan -d {dir}"),
        );
        let status = self.send(&hook).await;
        (hook, status)
    }

    /// `atlantis plan -d dir` on GitLab merge request `n` of the same repository name.
    async fn gitlab_plan(&self, n: i64, dir: &str) -> (Webhook, u16) {
        let hook = gitlab_note(GL_SECRET, REPO, n, &format!("atlantis plan -d {dir}"));
        let status = self.send(&hook).await;
        (hook, status)
    }

    async fn gitlab_close(&self, n: i64) -> u16 {
        self.send(&gitlab_mr(GL_SECRET, REPO, n, "close")).await
    }

    fn arrivals(&self, hook: &Webhook) -> usize {
        self.fake
            .received_at("/events")
            .iter()
            .filter(|r| r.body.as_ref() == hook.body.as_slice())
            .count()
    }

    fn atlantis_holder(&self, dir: &str) -> Option<i64> {
        self.fake.locks().get(&key(dir, "default")).map(|l| l.pull)
    }

    async fn wait_atlantis_holder(&self, dir: &str, pull: Option<i64>) -> bool {
        eventually(Duration::from_secs(10), || {
            self.atlantis_holder(dir) == pull
        })
        .await
    }

    /// The engine's holder of `dir` as (pull, VCS), from `/admin/locks`.
    async fn engine_holder(&self, dir: &str) -> Option<(i64, String)> {
        let k = key(dir, "default");
        let l = get(&self.proxy.admin_url("/admin/locks")).await.json();
        l["locks"]
            .as_array()?
            .iter()
            .find(|l| l["key"] == k.as_str())
            .map(|l| {
                (
                    l["pull"].as_i64().unwrap(),
                    l["vcs"].as_str().unwrap().to_owned(),
                )
            })
    }

    async fn wait_engine_holder(&self, dir: &str, want: Option<(i64, &str)>) -> bool {
        let want = want.map(|(n, v)| (n, v.to_owned()));
        for _ in 0..200 {
            if self.engine_holder(dir).await == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// `/admin/queues` waiters of `dir` as (pull, VCS), in grant order.
    async fn queue(&self, dir: &str) -> Vec<(i64, String)> {
        let k = key(dir, "default");
        let q = get(&self.proxy.admin_url("/admin/queues")).await.json();
        q["queues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["key"] == k.as_str())
            .flat_map(|q| q["waiters"].as_array().unwrap().clone())
            .map(|w| {
                (
                    w["pull"].as_i64().unwrap(),
                    w["vcs"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn at(n: i64, vcs: &str) -> (i64, String) {
    (n, vcs.to_owned())
}

/// A signed GitLab close of MR 1 releases MR 1's engine locks and serves their queue, but not
/// GitHub pull 1's lock, nor its queue.
async fn a_gitlab_close_never_releases_a_github_pull(backend: Backend) {
    let s = TwoVcs::start(backend, "").await;
    assert_eq!(s.github_plan(1, "net").await.1, 200);
    assert!(s.wait_atlantis_holder("net", Some(1)).await);
    let (gh2, status) = s.github_plan(2, "net").await;
    assert_eq!(status, 202, "GitHub pull 2 queues behind pull 1");
    assert_eq!(s.gitlab_plan(1, "gl").await.1, 200);
    assert!(s.wait_engine_holder("gl", Some((1, "gitlab"))).await);
    assert!(s.wait_atlantis_holder("gl", Some(1)).await);
    let (mr3, status) = s.gitlab_plan(3, "gl").await;
    assert_eq!(status, 202, "MR 3 queues behind MR 1");
    assert_eq!(s.engine_holder("net").await, Some(at(1, "github")));

    assert_eq!(s.gitlab_close(1).await, 200);
    // MR 1's lock is released and its queue served: MR 3's plan reaches Atlantis and holds it.
    assert!(
        eventually(Duration::from_secs(10), || s.arrivals(&mr3) == 1).await,
        "MR 3's plan is replayed after MR 1 closed"
    );
    assert!(s.wait_atlantis_holder("gl", Some(3)).await);
    assert!(s.wait_engine_holder("gl", Some((3, "gitlab"))).await);
    // GitHub pull 1 keeps its engine lock and pull 2 keeps waiting: nothing of it was replayed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.engine_holder("net").await, Some(at(1, "github")));
    assert_eq!(s.queue("net").await, vec![at(2, "github")]);
    assert_eq!(s.arrivals(&gh2), 0, "GitHub pull 2's plan was never sent");
    assert!(s.fake.conflicts().is_empty(), "{:?}", s.fake.conflicts());
    s.proxy.stop().await;
}

on_both_backends!(a_gitlab_close_never_releases_a_github_pull);

/// With the reconciler on: Atlantis's `PullURL` tells the reconciler a merge request's lock from
/// a GitHub pull's (it keeps the MR as holder), a GitHub pull with the MR's number queues behind
/// it (Atlantis would let it in), and what Atlantis's close deleted of the GitHub pull besides is
/// released in the engine once the grace has passed.
async fn the_reconciler_tells_merge_requests_from_pulls(backend: Backend) {
    let s = TwoVcs::start(
        backend,
        "  lock-sync-interval: 200ms\n  lock-sync-grace: 600ms\n",
    )
    .await;
    assert_eq!(s.github_plan(1, "app").await.1, 200);
    assert!(s.wait_atlantis_holder("app", Some(1)).await);
    assert_eq!(s.gitlab_plan(1, "net").await.1, 200);
    assert!(s.wait_atlantis_holder("net", Some(1)).await);
    // Several passes past the grace: both holders stay as they are.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.engine_holder("app").await, Some(at(1, "github")));
    assert_eq!(s.engine_holder("net").await, Some(at(1, "gitlab")));

    let (gh1, status) = s.github_plan(1, "net").await;
    assert_eq!(status, 202, "GitHub pull 1 does not re-enter MR 1's lock");
    assert_eq!(s.queue("net").await, vec![at(1, "github")]);

    // Atlantis deletes every lock of number 1 in the repository, GitHub pull 1's `app` too.
    assert_eq!(s.gitlab_close(1).await, 200);
    assert!(
        eventually(Duration::from_secs(10), || s.arrivals(&gh1) == 1).await,
        "GitHub pull 1's queued plan is replayed once MR 1 released net"
    );
    assert!(s.wait_engine_holder("net", Some((1, "github"))).await);
    assert!(s.wait_atlantis_holder("net", Some(1)).await);
    assert_eq!(s.atlantis_holder("app"), None);
    assert!(
        s.wait_engine_holder("app", None).await,
        "the engine follows Atlantis's release of app after the grace"
    );
    assert!(s.fake.conflicts().is_empty(), "{:?}", s.fake.conflicts());
    s.proxy.stop().await;
}

on_both_backends!(the_reconciler_tells_merge_requests_from_pulls);
