//! The proxy under test: the real `App` on port 0, in-process.

use atlantis_lock_proxy::admin::api::{LockList, QueueList};
use std::net::SocketAddr;

use atlantis_lock_proxy::app::App;
use atlantis_lock_proxy::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running proxy; dropping it does not stop it, call [`RunningProxy::stop`].
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The engine's locks as the admin API lists them.
    pub async fn locks(&self) -> LockList {
        crate::support::http::get(&self.admin_url("/admin/locks"))
            .await
            .parse()
    }

    /// The queues as the admin API lists them.
    pub async fn queues(&self) -> QueueList {
        crate::support::http::get(&self.admin_url("/admin/queues"))
            .await
            .parse()
    }

    /// The engine's locks: (key, holder pull).
    pub async fn engine_locks(&self) -> Vec<(String, i64)> {
        self.locks()
            .await
            .locks
            .into_iter()
            .map(|l| (l.key, l.pull))
            .collect()
    }

    /// The pull of every queued waiter, queue by queue in grant order.
    pub async fn queued_pulls(&self) -> Vec<i64> {
        self.queues()
            .await
            .queues
            .into_iter()
            .flat_map(|q| q.waiters)
            .map(|w| w.pull)
            .collect()
    }

    /// Graceful stop, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Starts the proxy with `yaml` added to test defaults (both listeners on port 0).
///
/// When `yaml` has its own `upstream:` section it must write the URL itself (`{upstream}` is
/// replaced by the given one).
pub async fn spawn_proxy(upstream: &str, yaml: &str) -> RunningProxy {
    let yaml = yaml.replace("{upstream}", upstream);
    let upstream_section = if yaml.contains("upstream:") {
        String::new()
    } else {
        format!("upstream:\n  url: {upstream}\n")
    };
    let admin_section = if yaml.contains("admin:") {
        String::new()
    } else {
        "admin:\n  listen: 127.0.0.1:0\n".to_string()
    };
    let text = format!("listen: 127.0.0.1:0\n{upstream_section}{admin_section}{yaml}");
    let config =
        Config::from_yaml(&text).unwrap_or_else(|e| panic!("bad test config: {e}\n{text}"));
    spawn_config(config).await
}

pub async fn spawn_config(config: Config) -> RunningProxy {
    let app = App::build(config).await.expect("proxy failed to start");
    let (addr, admin) = (app.proxy_addr(), app.admin_addr());
    let started = app.started_handle();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        app.run(async {
            let _ = rx.await;
        })
        .await;
    });
    // As a load balancer would (`/readyz`), the tests send lock traffic once the replica has
    // read Atlantis's lock table (bounded: an unreachable Atlantis never lets it start).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !started() && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    RunningProxy {
        addr,
        admin,
        stop: Some(tx),
        task,
    }
}
