//! Connections to Redis: a bb8 pool for a standalone server, the cluster client otherwise.

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
    /// Standalone server behind a pool of multiplexed, self-reconnecting connections.
    Pool(bb8::Pool<Reconnecting>),
    /// Redis Cluster; the client routes each script by its first key.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Pool(_) => f.write_str("Backend::Pool"),
            Backend::Cluster(_) => f.write_str("Backend::Cluster"),
        }
    }
}

pub(crate) fn connection_info(
    addr: &str,
    s: &RedisSettings,
    db: i64,
) -> Result<ConnectionInfo, EngineError> {
    let bad =
        |why: String| EngineError::BackendUnavailable(format!("redis address {addr:?}: {why}"));
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
            let manager = Reconnecting {
                client: redis::Client::open(info).map_err(unavailable)?,
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(s.dial_timeout))
                    // Commands are bounded by the engine's own deadline (`op_deadline`).
                    .set_response_timeout(None)
                    .set_number_of_retries(s.max_retries as usize)
                    .set_max_delay(Duration::from_secs(1)),
            };
            let pool = bb8::Pool::builder()
                .max_size(s.pool_size.max(1))
                .connection_timeout(s.pool_timeout)
                // Connections are multiplexed and repaired on use; a PING per checkout would
                // double the round trips of every lock operation.
                .test_on_check_out(false)
                .build(manager)
                .await
                .map_err(unavailable)?;
            Ok(Backend::Pool(pool))
        }
    }

    /// Runs a prepared script (EVALSHA, reloading on NOSCRIPT).
    pub async fn invoke(&self, inv: &ScriptInvocation<'_>) -> Result<Value, RedisError> {
        match self {
            Backend::Pool(pool) => inv.invoke_async(&mut checkout(pool).await?).await,
            Backend::Cluster(conn) => inv.invoke_async(&mut conn.clone()).await,
        }
    }

    /// Runs a plain command (any node in cluster mode when it has no key).
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, RedisError> {
        match self {
            Backend::Pool(pool) => cmd.query_async(&mut checkout(pool).await?).await,
            Backend::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }
}

/// Pooled connections are `ConnectionManager`s: a plain multiplexed connection never recovers
/// once its server goes away (bb8 cannot tell it is broken, and checking with a PING per
/// checkout would double every round trip), so after a Redis restart the engine would fail
/// forever. A `ConnectionManager` reconnects in the background after a dropped connection.
pub struct Reconnecting {
    client: redis::Client,
    config: ConnectionManagerConfig,
}

impl bb8::ManageConnection for Reconnecting {
    type Connection = ConnectionManager;
    type Error = RedisError;

    async fn connect(&self) -> Result<ConnectionManager, RedisError> {
        ConnectionManager::new_with_config(self.client.clone(), self.config.clone()).await
    }

    async fn is_valid(&self, conn: &mut ConnectionManager) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, _: &mut ConnectionManager) -> bool {
        false
    }
}

/// A multiplexed connection from the pool, returned to the pool at once: it pipelines requests,
/// so holding the checkout across a round trip would only serialise callers behind it.
async fn checkout(pool: &bb8::Pool<Reconnecting>) -> Result<ConnectionManager, RedisError> {
    Ok(pool.get().await.map_err(pool_error)?.clone())
}

fn pool_error(e: bb8::RunError<RedisError>) -> RedisError {
    match e {
        bb8::RunError::User(e) => e,
        bb8::RunError::TimedOut => RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis pool timeout",
        )),
    }
}

/// Whether a failed command certainly never reached the server, so retrying cannot apply it twice.
pub fn safe_to_retry(e: &RedisError) -> bool {
    e.is_connection_refusal() || e.is_timeout() && e.to_string().contains("pool timeout")
}

/// Bound on one command round trip.
pub fn op_deadline(s: &RedisSettings) -> Duration {
    s.read_timeout + s.write_timeout
}
