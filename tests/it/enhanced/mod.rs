//! The enhanced path end to end, through the real HTTP path: fake Atlantis, real engine (memory
//! and a real redis-server).

/// Runs `$case(backend)` as two tests, `$case::memory` and `$case::redis` (the engine suite's
/// conformance macro, for the end-to-end cases).
macro_rules! on_both_backends {
    ($case:ident) => {
        mod $case {
            use super::super::Backend;

            #[tokio::test]
            async fn memory() {
                super::$case(Backend::Memory).await;
            }

            #[tokio::test]
            async fn redis() {
                super::$case(Backend::Redis).await;
            }
        }
    };
}

mod exclusion;
mod notices;
mod operator;
mod queue;
mod recovery;
mod refused;
mod secrets;
mod vcs;

use std::time::Duration;

use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions, Recorded};
use crate::support::http::{Reply, get};
use crate::support::proxy::{RunningProxy, spawn_proxy};
use crate::support::redis::RedisServer;
use crate::support::webhooks::{Webhook, github_comment, github_comment_labeled, github_pull};

pub const SECRET: &str = "enhanced-secret";
pub const REPO: &str = "acme/infra";

/// Which engine backend a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Redis,
}

/// A fake Atlantis, a proxy with all traffic on the enhanced path, and the Redis it uses.
pub struct Setup {
    pub fake: FakeAtlantis,
    pub proxy: RunningProxy,
    /// Kept alive for the test's duration (dropping it stops the server).
    pub _redis: Option<RedisServer>,
}

/// Test settings: fast timers, reconciler off unless `atlantis_extra` sets `lock-sync-interval`.
/// Both extras are YAML lines indented two spaces (keys of `enhanced-locking:` / `atlantis:`).
pub fn base_yaml(
    redis: Option<&RedisServer>,
    enhanced_extra: &str,
    atlantis_extra: &str,
) -> String {
    base_yaml_with(
        redis.map(|r| format!("  redis:\n    addr: {}\n", r.addr)),
        enhanced_extra,
        atlantis_extra,
    )
}

/// [`base_yaml`] on the shared server, under keys of its own (`t{n}:`), so tests need not
/// start a server each.
pub fn base_yaml_shared(redis: &RedisServer, enhanced_extra: &str, atlantis_extra: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    base_yaml_with(
        Some(format!(
            "  redis:\n    addr: {}\n    key-prefix: \"t{n}:\"\n    shadow-key-prefix: \"t{n}s:\"\n",
            redis.addr
        )),
        enhanced_extra,
        atlantis_extra,
    )
}

fn base_yaml_with(redis: Option<String>, enhanced_extra: &str, atlantis_extra: &str) -> String {
    let redis = redis.unwrap_or_default();
    let lock_sync = if atlantis_extra.contains("lock-sync-interval") {
        ""
    } else {
        "  lock-sync-interval: 1h\n"
    };
    format!(
        "atlantis:\n  webhook-secrets:\n    github: {SECRET}\n{lock_sync}{atlantis_extra}\
         enhanced-locking:\n  traffic-split: 100\n  timeout-check-interval: 100ms\n  replay-wait: 3s\n  \
         retry-base-delay: 50ms\n  dispatch-lease: 2s\n{redis}{enhanced_extra}"
    )
}

impl Setup {
    pub async fn start(backend: Backend, enhanced_extra: &str) -> Setup {
        Self::start_with(backend, enhanced_extra, "").await
    }

    pub async fn start_with(backend: Backend, enhanced_extra: &str, atlantis_extra: &str) -> Setup {
        let fake = FakeAtlantis::start_with(FakeOptions {
            github_secret: Some(SECRET.into()),
            ..Default::default()
        })
        .await;
        // One server for every Redis test that does not stop or pause it, each under its own
        // key prefix.
        let yaml = match backend {
            Backend::Redis => {
                let shared = tokio::task::spawn_blocking(crate::support::redis::shared_server)
                    .await
                    .expect("shared redis-server");
                base_yaml_shared(shared, enhanced_extra, atlantis_extra)
            }
            Backend::Memory => base_yaml(None, enhanced_extra, atlantis_extra),
        };
        let proxy = spawn_proxy(&fake.url(), &yaml).await;
        Setup {
            fake,
            proxy,
            _redis: None,
        }
    }

    /// `atlantis plan -d <dir> -w <ws>` from `pull`, sent through the proxy.
    pub async fn plan(&self, pull: i64, dir: &str, ws: &str) -> (Webhook, Reply) {
        self.plan_labeled(pull, dir, ws, &[]).await
    }

    pub async fn plan_labeled(
        &self,
        pull: i64,
        dir: &str,
        ws: &str,
        labels: &[&str],
    ) -> (Webhook, Reply) {
        let hook = github_comment_labeled(
            SECRET,
            REPO,
            pull,
            &format!("user{pull}"),
            &format!("atlantis plan -d {dir} -w {ws}"),
            labels,
        );
        let reply = hook.send_to(&self.proxy.url("/events")).await;
        (hook, reply)
    }

    pub async fn close(&self, pull: i64) -> Reply {
        github_pull(SECRET, REPO, pull, &format!("user{pull}"), "closed")
            .send_to(&self.proxy.url("/events"))
            .await
    }

    pub async fn unlock(&self, pull: i64) -> Reply {
        github_comment(SECRET, REPO, pull, "someone", "atlantis unlock")
            .send_to(&self.proxy.url("/events"))
            .await
    }

    /// The webhooks with exactly these bytes that reached Atlantis.
    pub fn arrivals(&self, hook: &Webhook) -> Vec<Recorded> {
        self.fake
            .received_at("/events")
            .into_iter()
            .filter(|r| r.body.as_ref() == hook.body.as_slice())
            .collect()
    }

    pub async fn wait_arrival(&self, hook: &Webhook) -> bool {
        eventually(Duration::from_secs(10), || !self.arrivals(hook).is_empty()).await
    }

    /// Which pull the fake Atlantis says holds `dir`/`ws`.
    pub fn atlantis_holder(&self, dir: &str, ws: &str) -> Option<i64> {
        self.fake
            .locks()
            .get(&format!("{REPO}/{dir}/{ws}/"))
            .map(|l| l.pull)
    }

    pub async fn wait_atlantis_holder(&self, dir: &str, ws: &str, pull: i64) -> bool {
        eventually(Duration::from_secs(10), || {
            self.atlantis_holder(dir, ws) == Some(pull)
        })
        .await
    }

    pub async fn admin(&self, path: &str) -> serde_json::Value {
        get(&self.proxy.admin_url(path)).await.json()
    }

    /// Pull numbers of `/admin/queues` for `key`, in grant order.
    pub async fn queue(&self, key: &str) -> Vec<i64> {
        self.proxy
            .queues()
            .await
            .queues
            .into_iter()
            .filter(|q| q.key == key)
            .flat_map(|q| q.waiters)
            .map(|w| w.pull)
            .collect()
    }

    /// Pull holding `key` in the engine.
    pub async fn engine_holder(&self, key: &str) -> Option<i64> {
        self.proxy
            .locks()
            .await
            .locks
            .into_iter()
            .find(|l| l.key == key)
            .map(|l| l.pull)
    }
}

pub fn key(dir: &str, ws: &str) -> String {
    format!("{REPO}/{dir}/{ws}/")
}
