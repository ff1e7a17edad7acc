//! app: build everything from a validated [`Config`], own the listeners, shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::classify::{ClassifyConfig, LockModeTable};
use crate::config::{Backend, Config};
use crate::engine::{EngineSettings, MemoryEngine};
use crate::proxy::ratelimit::RateLimits;
use crate::proxy::{self, ProxyState};
use crate::route::shadow::{RECENT_DIFFS, ShadowRecorder};
use crate::route::{
    BreakerSettings, CircuitBreaker, ControlError, ControlStore, Router, SplitRule, SplitState,
};
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind its address.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store of the routing state could not be set up.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// A built, bound application: call [`App::run`] to serve.
pub struct App {
    config: Config,
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
    proxy_state: Arc<ProxyState>,
    admin_state: Arc<AdminState>,
}

impl App {
    /// Binds both listeners (port 0 picks a free port) and wires the components.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let proxy_listener = bind("main", config.listen).await?;
        let admin_listener = bind("admin", config.admin.listen).await?;
        let metrics = Arc::new(Metrics::new());
        let upstream = Upstream::new(&config.upstream);
        let backend = match config.enhanced.backend {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
        };
        if config.enhanced.backend == Backend::Memory {
            tracing::info!(
                "engine backend: in-memory (single replica only; set enhanced-locking.redis.addr for Redis)"
            );
        }
        let e = &config.enhanced;
        // The stored split wins; config only seeds a backend that holds none.
        let control = Arc::new(ControlStore::connect(e).await?);
        let initial = control
            .load_or_init(SplitState::new(e.traffic_split, e.monitor_only, e.enabled))
            .await;
        metrics.set_split(initial.traffic_split, initial.monitor_only);
        let router = Arc::new(Router::new(
            SplitRule::new(&e.always_enhanced, &e.always_legacy),
            initial,
        ));
        let breaker = Arc::new(CircuitBreaker::new(
            BreakerSettings::from_config(e.enable_circuit_breaker, &e.circuit_breaker),
            Some(metrics.clone()),
        ));
        let shadow = Arc::new(ShadowRecorder::new(RECENT_DIFFS, Some(metrics.clone())));
        let limits = Arc::new(RateLimits::from_config(&config));
        // Placeholder until the enhanced path builds the configured engine (issue 5).
        let engine: Arc<dyn crate::engine::LockEngine> =
            Arc::new(MemoryEngine::new(EngineSettings::default()));
        let proxy_state = Arc::new(ProxyState {
            upstream: upstream.clone(),
            server: config.server.clone(),
            classify: ClassifyConfig::from_config(
                &config.atlantis,
                LockModeTable::from_projects(&config.repos),
            ),
            metrics: metrics.clone(),
        });
        let admin_state = Arc::new(AdminState {
            metrics,
            upstream,
            token: config.admin.token.clone(),
            backend,
            started_at: std::time::SystemTime::now(),
            router,
            control,
            breaker,
            shadow,
            engine,
            limits,
        });
        Ok(App {
            config,
            proxy_listener,
            admin_listener,
            proxy_state,
            admin_state,
        })
    }

    /// Address of the main listener.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_listener
            .local_addr()
            .unwrap_or(self.config.listen)
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.config.admin.listen)
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish within `server.drain-period`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let stop = CancellationToken::new();
        tracing::info!(
            listen = %self.proxy_addr(),
            admin = %self.admin_addr(),
            upstream = %self.config.upstream.url,
            "atlantis-lock-proxy started"
        );
        let st = &self.admin_state;
        let follower =
            st.control
                .spawn_follower(st.router.clone(), Some(st.metrics.clone()), stop.clone());
        let admin = {
            let router = admin::router(self.admin_state.clone())
                // Client addresses for the admin rate limit.
                .into_make_service_with_connect_info::<SocketAddr>();
            let stop = stop.clone();
            tokio::spawn(async move {
                let serve = axum::serve(self.admin_listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            })
        };
        let main = serve_main(
            self.proxy_listener,
            self.proxy_state.clone(),
            &self.config,
            stop.clone(),
        );
        tokio::pin!(main);
        tokio::select! {
            () = &mut main => {}
            () = shutdown => {
                tracing::info!(drain = ?self.config.server.drain_period, "shutting down: draining in-flight requests");
                stop.cancel();
                main.await;
            }
        }
        stop.cancel();
        let _ = admin.await;
        if let Some(f) = follower {
            let _ = f.await;
        }
        tracing::info!("atlantis-lock-proxy stopped");
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Accept loop of the main listener: HTTP/1.1 keep-alive, upgrades, bounded header reads.
async fn serve_main(
    listener: TcpListener,
    state: Arc<ProxyState>,
    config: &Config,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.server.header_read_timeout);
    loop {
        let (stream, client) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(proxy::service(state.clone(), client));
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    // Finish the request in flight, then close instead of keeping the connection alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %client, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(config.server.drain_period, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain period over: closing remaining connections");
    }
}
