//! How a case gets engines: fresh keyspace per case, shared servers per test binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use atlantis_lock_proxy::classify::{LockKey, Priority, PullRef, Vcs};
use atlantis_lock_proxy::engine::{
    AcquireRequest, Dispatch, EngineSettings, LockEngine, MemoryEngine, RedisEngine, RedisSettings,
};

use crate::support::redis::{RedisCluster, RedisServer, shared_cluster, shared_server};

/// Which backend a case runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
    Cluster,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn server() -> &'static RedisServer {
    shared_server()
}

fn cluster() -> &'static RedisCluster {
    shared_cluster()
}

/// A case's backend plus its private key prefix.
pub struct Ctx {
    pub backend: Backend,
    pub prefix: String,
    /// The memory engine is its own "server": peers share it.
    memory: Option<Arc<dyn LockEngine>>,
    settings: EngineSettings,
}

/// Repository used by most cases.
pub const REPO: &str = "acme/infra";

impl Ctx {
    pub async fn new(backend: Backend) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("t{}-{n}:", std::process::id());
        // Servers start on a blocking thread: the harness is synchronous.
        match backend {
            Backend::Redis => {
                tokio::task::spawn_blocking(server).await.expect("server");
            }
            Backend::Cluster => {
                tokio::task::spawn_blocking(cluster).await.expect("cluster");
            }
            Backend::Memory => {}
        }
        Self {
            backend,
            prefix,
            memory: None,
            settings: base_settings(),
        }
    }

    pub fn is_memory(&self) -> bool {
        self.backend == Backend::Memory
    }

    /// Settings every engine of this case starts from.
    pub fn settings(&mut self) -> &mut EngineSettings {
        &mut self.settings
    }

    /// The case's engine (for memory, the same instance every time).
    pub async fn engine(&mut self) -> Arc<dyn LockEngine> {
        self.engine_as("replica-a").await
    }

    /// An engine on the same server under `<case prefix><suffix>:` (e.g. the shadow keyspace).
    pub async fn engine_with_prefix(&mut self, suffix: &str) -> Arc<dyn LockEngine> {
        let saved = self.prefix.clone();
        self.prefix = format!("{saved}{suffix}:");
        let engine = self.engine_as("other-keyspace").await;
        self.prefix = saved;
        engine
    }

    /// An engine with its own instance id sharing the case's state (a second replica).
    pub async fn engine_as(&mut self, instance: &str) -> Arc<dyn LockEngine> {
        let mut settings = self.settings.clone();
        settings.instance_id = instance.to_owned();
        match self.backend {
            Backend::Memory => self
                .memory
                .get_or_insert_with(|| Arc::new(MemoryEngine::new(settings)))
                .clone(),
            Backend::Redis => Arc::new(
                RedisEngine::connect(
                    settings,
                    RedisSettings {
                        addr: server().addr.clone(),
                        key_prefix: self.prefix.clone(),
                        ..RedisSettings::default()
                    },
                )
                .await
                .expect("connect to redis"),
            ),
            Backend::Cluster => Arc::new(
                RedisEngine::connect(
                    settings,
                    RedisSettings {
                        cluster_mode: true,
                        cluster_nodes: cluster().addrs(),
                        key_prefix: self.prefix.clone(),
                        ..RedisSettings::default()
                    },
                )
                .await
                .expect("connect to redis cluster"),
            ),
        }
    }
}

impl Ctx {
    /// Empties the server's script cache (every node of a cluster), as a restart or failover would.
    pub fn flush_scripts(&self) {
        let nodes: Vec<&RedisServer> = match self.backend {
            Backend::Memory => Vec::new(),
            Backend::Redis => vec![server()],
            Backend::Cluster => cluster().nodes.iter().collect(),
        };
        for n in nodes {
            n.command(&["SCRIPT", "FLUSH"]).expect("SCRIPT FLUSH");
        }
    }
}

fn base_settings() -> EngineSettings {
    EngineSettings {
        enable_events: false,
        dispatch_lease: Duration::from_secs(30),
        ..EngineSettings::default()
    }
}

/// A lock of [`REPO`] named after a directory.
pub fn key(dir: &str) -> LockKey {
    LockKey::new(REPO, dir, "default", "")
}

/// A pull of [`REPO`].
pub fn pull(n: i64) -> PullRef {
    PullRef::new(Vcs::Github, REPO, n)
}

/// An acquire of `dirs` by pull `n`.
pub fn req(n: i64, priority: Priority, dirs: &[&str]) -> AcquireRequest {
    AcquireRequest {
        locks: dirs.iter().map(|d| key(d)).collect(),
        pull: pull(n),
        user: format!("user{n}"),
        priority,
        hold_timeout: None,
        request_id: None,
    }
}

/// The next dispatch, failing the test after a few seconds.
pub async fn next(rx: &mut tokio::sync::mpsc::Receiver<Dispatch>) -> Dispatch {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a dispatch within 5 s")
        .expect("dispatch channel open")
}

/// Asserts nothing is dispatched for a short while.
pub async fn nothing(rx: &mut tokio::sync::mpsc::Receiver<Dispatch>) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await {
        panic!("unexpected dispatch {d:?}");
    }
}
