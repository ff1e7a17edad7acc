//! app: build everything from a validated [`Config`], own the listeners, shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::admin::{self, AdminState};
use crate::classify::{ClassifyConfig, LockModeTable};
use crate::config::{Backend, Config};
use crate::engine::{build_engine, spawn_background};
use crate::enhanced::{
    EngineGauges, Enhanced, GateSettings, Needs, Parts as EnhancedParts, Shadow, ShadowRunner,
    SplitWatcher,
};
use crate::listener;
use crate::notify::{Notifier, NotifierSettings};
use crate::proxy::ratelimit::RateLimits;
use crate::proxy::{self, ProxyState};
use crate::resolve::{Resolver, ResolverSettings};
use crate::route::shadow::{RECENT_DIFFS, ShadowRecorder, ShadowSpawner};
use crate::route::{BreakerSettings, CircuitBreaker, ControlError, ControlStore, Guarded};
use crate::route::{Router, SplitRule, SplitState};
use crate::supervise::Supervisor;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;
use crate::vcs::{ApiConfig, GiteaClient, GithubAppAuth, GithubClient, GitlabClient};

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
    /// The lock engine's backend could not be reached.
    #[error("cannot start the lock engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    /// The pull-request notifier could not start.
    #[error("cannot start pull-request notifications: {0}")]
    Notifier(String),
    /// A VCS API client could not be built from its settings.
    #[error("cannot set up the VCS API client: {0}")]
    Vcs(#[from] crate::vcs::VcsError),
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
    backend: Arc<dyn crate::engine::LockEngine>,
}

/// The components wired from a configuration, before anything listens: what a test drives
/// without sockets (the main listener's stack is [`proxy::stack`] over `proxy`).
pub struct Wired {
    /// The main listener's request path.
    pub proxy: Arc<ProxyState>,
    /// The admin API's state.
    pub admin: Arc<AdminState>,
    /// The engine without the breaker, for the breaker's own probes.
    pub backend: Arc<dyn crate::engine::LockEngine>,
}

impl App {
    /// Binds both listeners (port 0 picks a free port) and wires the components.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let proxy_listener = bind("main", config.listen).await?;
        let admin_listener = bind("admin", config.admin.listen).await?;
        let Wired {
            proxy: proxy_state,
            admin: admin_state,
            backend,
        } = wire(&config).await?;
        Ok(App {
            config,
            proxy_listener,
            admin_listener,
            proxy_state,
            admin_state,
            backend,
        })
    }
}

/// Wires every component from `config`: engines, resolver, notifier, router, the request path's
/// and the admin API's state. Binds nothing and starts no background task.
pub async fn wire(config: &Config) -> Result<Wired, StartError> {
    wire_to(config, Upstream::new(&config.upstream)).await
}

/// [`wire`] with the given client to Atlantis (an in-process one, for tests).
pub async fn wire_to(config: &Config, upstream: Upstream) -> Result<Wired, StartError> {
    let metrics = Arc::new(Metrics::new());
    let upstream =
        upstream.with_secrets(crate::upstream::redact::HeaderSecrets::from_config(config));
    if config.enhanced.backend == Backend::Memory {
        tracing::info!(
            "engine backend: in-memory (single replica only; set enhanced-locking.redis.addr for Redis)"
        );
    }
    // Say plainly what works with this configuration (silent queues, legacy autoplans, ...).
    for c in config.capabilities() {
        match c.level {
            crate::config::Level::Ok => tracing::info!("{}", c.text),
            crate::config::Level::Warn => tracing::warn!("{}", c.text),
        }
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
    let unmarked_vcs = config.atlantis.unmarked_vcs();
    let backend = build_engine(e.engine_settings(unmarked_vcs), e.redis_settings(false)).await?;
    // One installation token source for the resolver and the notifier, when Atlantis signs
    // in to GitHub as an App.
    let github_app = github_app(config)?;
    let resolver = Arc::new(Resolver::new(
        resolver_settings(config, github_app.clone())?,
        config.repos.clone(),
    ));
    let notifier = notifier(config, &metrics, github_app)?;
    let breaker = Arc::new(CircuitBreaker::new(
        BreakerSettings::from_config(e.enable_circuit_breaker, &e.circuit_breaker),
        Some(metrics.clone()),
    ));
    // Every engine call goes through the breaker; new work is refused while it is open.
    let engine: Arc<dyn crate::engine::LockEngine> =
        Arc::new(Guarded::new(backend.clone(), breaker.clone()));
    let shadow = Arc::new(ShadowRecorder::new(RECENT_DIFFS, Some(metrics.clone())));
    // The shadow engine evaluates legacy traffic in its own keyspace.
    let shadow_engine =
        build_engine(e.engine_settings(unmarked_vcs), e.redis_settings(true)).await?;
    let settings = GateSettings::from_config(config);
    // Which locks a request takes: the gate and the shadow runner ask the same way.
    let needs = Arc::new(Needs::new(
        resolver,
        config.repos.clone(),
        settings.labels.clone(),
        metrics.clone(),
    ));
    let shadow_runner = Arc::new(ShadowRunner::new(
        needs.clone(),
        Shadow {
            engine: shadow_engine,
            spawner: ShadowSpawner::new(e.event_buffer_size, shadow.clone()),
        },
        upstream.clone(),
        settings.shadow_settle,
    ));
    let enhanced = Arc::new(Enhanced::new(EnhancedParts {
        engine,
        upstream: upstream.clone(),
        needs,
        metrics: metrics.clone(),
        settings,
        notifier,
        breaker: breaker.clone(),
    }));
    let limits = Arc::new(RateLimits::from_config(config));
    let classify = ClassifyConfig::from_config(
        &config.atlantis,
        LockModeTable::from_projects(&config.repos),
    );
    let unsigned_webhooks = classify.unsigned_gated();
    warn_unsigned(&unsigned_webhooks);
    let proxy_state = Arc::new(ProxyState {
        upstream: upstream.clone(),
        server: config.server.clone(),
        classify: Arc::new(classify),
        metrics: metrics.clone(),
        router: router.clone(),
        enhanced: enhanced.clone(),
        shadow: shadow_runner,
        limits: limits.clone(),
        body_budget: proxy::budget::BodyBudget::new(config.server.max_buffered_bytes),
    });
    let admin_state = Arc::new(AdminState {
        metrics,
        upstream,
        token: config.admin.token.clone(),
        started_at: std::time::SystemTime::now(),
        router,
        enhanced,
        control,
        breaker,
        shadow,
        limits,
        unsigned_webhooks,
        tasks: crate::supervise::TaskHealth::new(),
    });
    Ok(Wired {
        proxy: proxy_state,
        admin: admin_state,
        backend,
    })
}

impl App {
    /// Address of the main listener.
    /// Whether the first reconciler pass has run (the replica knows Atlantis's locks).
    pub fn started_handle(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let enhanced = self.proxy_state.enhanced.clone();
        move || enhanced.started()
    }

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
        let mut tasks = Supervisor::new(stop.clone(), st.tasks.clone(), Some(st.metrics.clone()));
        let enhanced = self.proxy_state.enhanced.clone();
        // The engine's maintenance (timeouts, preemption, deadlocks).
        tasks.run(
            "maintenance",
            spawn_background(enhanced.engine.clone(), stop.clone().cancelled_owned()),
        );
        // The replays the engine hands this replica.
        if let Some(rx) = enhanced.engine.take_dispatches() {
            tasks.run("dispatcher", enhanced.spawn_dispatcher(rx, stop.clone()));
        }
        // The reconciler against Atlantis's lock table; it stops by itself against an Atlantis
        // older than v0.34 (it says so).
        tasks.run_may_return("reconciler", enhanced.spawn_reconciler(stop.clone()));
        // This replica's lease in a shared engine: the others grant only while it is in step.
        tasks.run("replica-lease", enhanced.spawn_lease(stop.clone()));
        tasks.run(
            "stats",
            EngineGauges::new(enhanced.engine.clone(), st.metrics.clone()).spawn(stop.clone()),
        );
        // Probes close the breaker as soon as the backend answers again.
        tasks.run(
            "breaker-prober",
            st.breaker.spawn_prober(self.backend.clone(), stop.clone()),
        );
        // A repository leaving the enhanced path hands its waiters to Atlantis.
        tasks.run(
            "path-watcher",
            SplitWatcher::new(enhanced.engine.clone(), self.proxy_state.router.clone())
                .spawn(stop.clone()),
        );
        // Every replica follows the stored split.
        if let Some(f) =
            st.control
                .spawn_follower(st.router.clone(), Some(st.metrics.clone()), stop.clone())
        {
            tasks.run("split-follower", f);
        }
        let admin = {
            let router = admin::router(self.admin_state.clone());
            let limits = admin_limits(&self.config);
            let stop = stop.clone();
            let listener = self.admin_listener;
            tokio::spawn(async move {
                let make = move |client: SocketAddr| {
                    // Client addresses for the admin rate limit.
                    let svc = router.clone().map_request(
                        move |mut req: http::Request<hyper::body::Incoming>| {
                            req.extensions_mut()
                                .insert(axum::extract::ConnectInfo(client));
                            req
                        },
                    );
                    TowerToHyperService::new(svc)
                };
                listener::serve(listener, limits, make, stop).await;
            })
        };
        let main = {
            let stack = proxy::stack(&self.proxy_state);
            let make =
                move |client: SocketAddr| TowerToHyperService::new(proxy::service(&stack, client));
            listener::serve(
                self.proxy_listener,
                main_limits(&self.config),
                make,
                stop.clone(),
            )
        };
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
        tasks.shutdown().await;
        tracing::info!("atlantis-lock-proxy stopped");
    }
}

/// The loud start-up warning for `atlantis.allow-unsigned-webhooks`.
fn warn_unsigned(vcs: &[crate::classify::Vcs]) {
    for v in vcs {
        tracing::warn!(
            vcs = v.as_str(),
            "UNSIGNED WEBHOOKS ARE GATED: {v} has no webhook secret but is listed in \
             atlantis.allow-unsigned-webhooks, so anyone who can reach the webhook port can take \
             and release its locks in the engine; set its webhook secret instead"
        );
    }
}

/// The pull-request notifier. Without any token it still runs, so every queued command it
/// cannot announce is counted (`unconfigured`) and warned about once per VCS.
fn notifier(
    config: &Config,
    metrics: &Arc<Metrics>,
    github_app: Option<Arc<GithubAppAuth>>,
) -> Result<Option<Arc<Notifier>>, StartError> {
    let settings = NotifierSettings::from_config(config, github_app);
    let n = Notifier::new(settings, Some(metrics.clone()))
        .map_err(|e| StartError::Notifier(e.to_string()))?;
    Ok(Some(Arc::new(n)))
}

/// The GitHub API root: `atlantis.vcs-tokens.github-api-url`, else from `gh-hostname`.
fn github_api_url(config: &Config) -> String {
    config
        .atlantis
        .vcs_tokens
        .github_api_url
        .as_ref()
        .map_or_else(|| "https://api.github.com".to_string(), ToString::to_string)
}

/// The GitHub App's token source, when the proxy signs in as one (no token given).
fn github_app(config: &Config) -> Result<Option<Arc<GithubAppAuth>>, crate::vcs::VcsError> {
    let t = &config.atlantis.vcs_tokens;
    let (None, Some(creds)) = (&t.github, &t.github_app) else {
        return Ok(None);
    };
    // Token refreshes run in the background of whichever call needs one: patient, like notices.
    let mut api = ApiConfig::new(github_api_url(config), None);
    api.request_timeout = std::time::Duration::from_secs(5);
    GithubAppAuth::new(creds, api).map(Some)
}

/// The resolver's settings: budget and VCS API clients from `atlantis:`.
fn resolver_settings(
    config: &Config,
    github_app: Option<Arc<GithubAppAuth>>,
) -> Result<ResolverSettings, crate::vcs::VcsError> {
    let t = &config.atlantis.vcs_tokens;
    let github = match (&t.github, github_app) {
        (Some(token), _) => Some(Arc::new(GithubClient::new(ApiConfig {
            token_file: t.github_token_file.clone(),
            ..ApiConfig::new(github_api_url(config), Some(token.clone()))
        })?)),
        (None, Some(app)) => Some(Arc::new(GithubClient::with_app(
            ApiConfig::new(github_api_url(config), None),
            app,
        )?)),
        (None, None) => None,
    };
    let gitlab = match &t.gitlab {
        Some(token) => {
            let url = t.gitlab_api_url.as_ref().map_or_else(
                || "https://gitlab.com/api/v4".to_string(),
                ToString::to_string,
            );
            Some(Arc::new(GitlabClient::new(ApiConfig::new(
                url,
                Some(token.clone()),
            ))?))
        }
        None => None,
    };
    let gitea = match &t.gitea {
        Some(token) => Some(Arc::new(GiteaClient::new(ApiConfig::new(
            t.gitea_base_url.clone(),
            Some(token.clone()),
        ))?)),
        None => None,
    };
    let a = &config.atlantis;
    let mut server_repos = a.server_repos.clone();
    server_repos.locking_disabled = a.disable_repo_locking;
    let mut settings = ResolverSettings {
        timeout: a.resolve_timeout,
        github,
        gitlab,
        gitea,
        server_repos: Arc::new(server_repos),
        hosts: a.hosts.clone(),
        allow_fork_prs: a.allow_fork_prs,
        autodiscover_mode: a.autodiscover_mode,
        ..ResolverSettings::default()
    };
    if let Some(list) = &a.autoplan_file_list
        && settings.set_autoplan_file_list(list).is_err()
    {
        tracing::warn!(%list, "Atlantis's autoplan-file-list does not compile here; using Atlantis's default");
    }
    Ok(settings)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// The main listener's limits (`server:`).
fn main_limits(config: &Config) -> listener::Limits {
    listener::Limits {
        name: "main",
        max_connections: config.server.max_connections,
        header_read_timeout: config.server.header_read_timeout,
        // A request held open while it waits for a lock moves no byte for minutes.
        idle_timeout: None,
        drain: config.server.drain_period,
    }
}

/// The admin listener's limits (`admin:`).
fn admin_limits(config: &Config) -> listener::Limits {
    listener::Limits {
        name: "admin",
        max_connections: config.admin.max_connections,
        header_read_timeout: config.admin.header_read_timeout,
        idle_timeout: Some(config.admin.idle_timeout),
        drain: config.server.drain_period,
    }
}
