//! Connections to Redis: reconnecting multiplexed connections for a standalone server, the
//! cluster client otherwise.
//!
//! Why not a bb8 pool: bb8-redis never reports a multiplexed connection as broken, so after a
//! Redis restart a pooled connection would fail forever unless every checkout paid a PING (twice
//! the round trips of a lock operation). `ConnectionManager` reconnects by itself, and since each
//! connection pipelines concurrent requests, `pool-size` of them are used round robin.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    ScriptInvocation, Value,
};

use crate::engine::{EngineError, RedisSettings};

/// A live connection source for scripts and plain commands.
#[derive(Clone)]
pub enum Backend {
    /// Standalone server: `pool-size` reconnecting multiplexed connections, used round robin.
    Standalone {
        /// The connections.
        conns: Arc<[ConnectionManager]>,
        /// Round-robin cursor.
        next: Arc<AtomicUsize>,
    },
    /// Redis Cluster; the client routes each script by its first key.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Standalone { conns, .. } => write!(f, "Backend::Standalone({})", conns.len()),
            Backend::Cluster(_) => f.write_str("Backend::Cluster"),
        }
    }
}

pub(crate) fn connection_info(
    addr: &str,
    s: &RedisSettings,
    db: i64,
) -> Result<ConnectionInfo, EngineError> {
    // The address may be a URL with a password in it: never print that part.
    let shown = crate::vocab::redact_userinfo(addr);
    let bad =
        |why: String| EngineError::BackendUnavailable(format!("redis address {shown:?}: {why}"));
    let info = if addr.contains("://") {
        addr.into_connection_info()
            .map_err(|e| bad(e.to_string()))?
    } else {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port".into()))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port".into()))?;
        ConnectionAddr::Tcp(host.trim_matches(['[', ']']).to_owned(), port)
            .into_connection_info()
            .map_err(|e| bad(e.to_string()))?
    };
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(pw) = &s.password {
        redis = redis.set_password(pw);
    }
    Ok(info.set_redis_settings(redis))
}

impl Backend {
    /// Connects according to the settings (cluster mode or a standalone pool).
    pub async fn connect(s: &RedisSettings) -> Result<Self, EngineError> {
        let unavailable = |e: RedisError| EngineError::BackendUnavailable(e.to_string());
        if s.cluster_mode {
            let seeds: Vec<&str> = if s.cluster_nodes.is_empty() {
                vec![s.addr.as_str()]
            } else {
                s.cluster_nodes.iter().map(String::as_str).collect()
            };
            let infos = seeds
                .iter()
                .map(|a| connection_info(a, s, 0))
                .collect::<Result<Vec<_>, _>>()?;
            let client = ClusterClientBuilder::new(infos)
                .connection_timeout(s.dial_timeout)
                .response_timeout(s.read_timeout)
                .retries(s.max_retries)
                .build()
                .map_err(unavailable)?;
            let conn = tokio::time::timeout(s.dial_timeout, client.get_async_connection())
                .await
                .map_err(|_| EngineError::BackendTimeout)?
                .map_err(unavailable)?;
            Ok(Backend::Cluster(conn))
        } else {
            let info = connection_info(&s.addr, s, s.db)?;
            let client = redis::Client::open(info).map_err(unavailable)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(s.dial_timeout))
                .set_response_timeout(Some(s.read_timeout))
                .set_number_of_retries(s.max_retries as usize);
            // Lazy: an engine built while Redis is down still starts (the proxy falls back to
            // legacy) and connects on first use; `ping` reports readiness.
            let conns = (0..s.pool_size.max(1))
                .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Ok(Backend::Standalone {
                conns: conns.into(),
                next: Arc::new(AtomicUsize::new(0)),
            })
        }
    }

    fn standalone(conns: &[ConnectionManager], next: &AtomicUsize) -> ConnectionManager {
        let i = next.fetch_add(1, Ordering::Relaxed) % conns.len();
        conns[i].clone()
    }

    /// Runs a prepared script (EVALSHA, reloading on NOSCRIPT).
    pub async fn invoke(&self, inv: &ScriptInvocation<'_>) -> Result<Value, RedisError> {
        match self {
            Backend::Standalone { conns, next } => {
                inv.invoke_async(&mut Self::standalone(conns, next)).await
            }
            Backend::Cluster(conn) => inv.invoke_async(&mut conn.clone()).await,
        }
    }

    /// Runs a plain command (any node in cluster mode when it has no key).
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, RedisError> {
        match self {
            Backend::Standalone { conns, next } => {
                cmd.query_async(&mut Self::standalone(conns, next)).await
            }
            Backend::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }
}

/// The engine error of a failed command: a script error or a cross-slot key concerns the one
/// repository the command was for (`Refused`), anything else the backend.
pub fn failure(e: &RedisError) -> EngineError {
    use redis::{ErrorKind, ServerErrorKind};
    let refused = matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::CrossSlot | ServerErrorKind::ResponseError)
    ) || e.code() == Some("WRONGTYPE");
    if refused {
        EngineError::Refused(e.to_string())
    } else {
        EngineError::BackendUnavailable(e.to_string())
    }
}

/// Whether a failed command certainly never reached the server, so retrying cannot apply it twice.
pub fn safe_to_retry(e: &RedisError) -> bool {
    e.is_connection_refusal()
}

/// Bound on one command round trip.
pub fn op_deadline(s: &RedisSettings) -> Duration {
    s.read_timeout + s.write_timeout
}
