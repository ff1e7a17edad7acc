//! Where the routing state lives so restarts and every replica agree (DESIGN.md §4).
//!
//! With the memory backend there is one replica and nothing to persist. With Redis the state is one
//! JSON value under `{key-prefix}control:split`; a change is `SET` then `PUBLISH` on the same name,
//! and every replica runs a follower that applies published changes at once and re-reads the key
//! every [`FOLLOW_INTERVAL`] as the safety net (the only mechanism in cluster mode, where pub/sub
//! is skipped). A replica that cannot write keeps the operator's change locally and pushes it on
//! the next tick, so an emergency rollback during a Redis outage still holds when Redis returns
//! instead of being overwritten by the older stored value.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Router, SplitState};
use crate::config::EnhancedConfig;
use crate::engine::RedisSettings;
use crate::engine::redis::conn::{Backend, connection_info, op_deadline};
use crate::telemetry::Metrics;

/// Period of the follower's re-read, the safety net under pub/sub.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Longest an admin request waits for the state to be stored before answering.
const SAVE_WAIT: Duration = Duration::from_secs(1);

/// Why the control state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Redis refused, failed or did not answer in time.
    #[error("control state backend unavailable: {0}")]
    Unavailable(String),
    /// The stored value is not a split state.
    #[error("stored control state is unreadable: {0}")]
    Corrupt(String),
}

/// The persisted routing state: in memory (nothing to share) or in Redis.
#[derive(Debug)]
pub enum ControlStore {
    /// One replica: the router is the only copy.
    Memory,
    /// Shared through Redis.
    Redis(Box<RedisControl>),
}

/// How the store reaches Redis.
enum Link {
    // A self-reconnecting connection: the control state must come back after a Redis restart
    // by itself, and it is a handful of commands a second at most, so one connection suffices.
    Standalone(ConnectionManager),
    // The cluster client routes the one key and re-discovers nodes itself.
    Cluster(Backend),
}

/// The Redis side of [`ControlStore`].
pub struct RedisControl {
    link: Link,
    // The standalone client, for the pub/sub connection; `None` in cluster mode.
    client: Option<redis::Client>,
    settings: RedisSettings,
    key: String,
    // A change this replica could not write yet: it wins over what Redis holds until written.
    pending: Mutex<Option<SplitState>>,
}

impl std::fmt::Debug for RedisControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisControl")
            .field("key", &self.key)
            .field("pubsub", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl ControlStore {
    /// The store for the configured backend; connects to Redis when it is the backend.
    pub async fn connect(cfg: &EnhancedConfig) -> Result<Self, ControlError> {
        match cfg.redis_settings(false) {
            None => Ok(ControlStore::Memory),
            Some(redis) => Self::connect_redis(redis)
                .await
                .map(|r| ControlStore::Redis(Box::new(r))),
        }
    }

    /// A Redis store with the given connection settings (key under `settings.key_prefix`).
    ///
    /// Standalone connects lazily, so a Redis that is down at start-up delays nothing: the
    /// configured state is used until the follower can read the stored one.
    pub async fn connect_redis(settings: RedisSettings) -> Result<RedisControl, ControlError> {
        let unavailable = |e: crate::engine::EngineError| ControlError::Unavailable(e.to_string());
        let redis_err = |e: redis::RedisError| ControlError::Unavailable(e.to_string());
        let (link, client) = if settings.cluster_mode {
            let backend = Backend::connect(&settings).await.map_err(unavailable)?;
            (Link::Cluster(backend), None)
        } else {
            let info =
                connection_info(&settings.addr, &settings, settings.db).map_err(unavailable)?;
            let client = redis::Client::open(info).map_err(redis_err)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.dial_timeout))
                .set_response_timeout(Some(op_deadline(&settings)))
                .set_number_of_retries(settings.max_retries as usize)
                .set_max_delay(FOLLOW_INTERVAL);
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(redis_err)?;
            (Link::Standalone(manager), Some(client))
        };
        Ok(RedisControl {
            link,
            client,
            key: format!("{}control:split", settings.key_prefix),
            settings,
            pending: Mutex::new(None),
        })
    }

    /// `memory` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            ControlStore::Memory => "memory",
            ControlStore::Redis(_) => "redis",
        }
    }

    /// The state to start from: the stored one, or `initial` (from config) written as the stored
    /// one when the backend holds none. An unreachable or unreadable backend yields `initial`
    /// (logged); the follower picks up the stored state once it can read it.
    pub async fn load_or_init(&self, initial: SplitState) -> SplitState {
        let ControlStore::Redis(r) = self else {
            return initial;
        };
        match r.load_or_init(&initial).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "starting from the configured split; the stored one could not be read");
                initial
            }
        }
    }

    /// Persists a new state and announces it to the other replicas. On failure the state is kept
    /// as pending and written by the follower as soon as the backend answers.
    pub async fn save(&self, state: &SplitState) -> Result<(), ControlError> {
        let ControlStore::Redis(r) = self else {
            return Ok(());
        };
        // The operator's request waits at most this long; the follower finishes the job.
        let res = match tokio::time::timeout(SAVE_WAIT, r.write(state)).await {
            Ok(res) => res,
            Err(_) => Err(ControlError::Unavailable("timed out".into())),
        };
        let mut pending = r.lock_pending();
        *pending = match &res {
            Ok(()) => None,
            Err(_) => Some(state.clone()),
        };
        res
    }

    /// Starts the follower that keeps `router` equal to the stored state; `None` for memory.
    pub fn spawn_follower(
        self: &Arc<Self>,
        router: Arc<Router>,
        metrics: Option<Arc<Metrics>>,
        stop: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        if let ControlStore::Memory = **self {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            if let ControlStore::Redis(r) = &*me {
                r.follow(&router, metrics.as_deref(), &stop).await;
            }
        }))
    }
}

impl RedisControl {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<SplitState>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, ControlError> {
        let call = async {
            match &self.link {
                Link::Standalone(m) => cmd.query_async(&mut m.clone()).await,
                Link::Cluster(b) => b.query(cmd).await,
            }
        };
        match tokio::time::timeout(op_deadline(&self.settings), call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ControlError::Unavailable(e.to_string())),
            Err(_) => Err(ControlError::Unavailable("timed out".into())),
        }
    }

    async fn read(&self) -> Result<Option<SplitState>, ControlError> {
        let v = self.query(redis::cmd("GET").arg(&self.key)).await?;
        let text: Option<Vec<u8>> =
            redis::from_redis_value(v).map_err(|e| ControlError::Corrupt(e.to_string()))?;
        text.map(|t| decode(&t)).transpose()
    }

    async fn load_or_init(&self, initial: &SplitState) -> Result<SplitState, ControlError> {
        let json = encode(initial);
        // NX: the first replica ever started seeds the state; everyone else reads it.
        self.query(redis::cmd("SET").arg(&self.key).arg(&json).arg("NX"))
            .await?;
        Ok(self.read().await?.unwrap_or_else(|| initial.clone()))
    }

    async fn write(&self, state: &SplitState) -> Result<(), ControlError> {
        let json = encode(state);
        self.query(redis::cmd("SET").arg(&self.key).arg(&json))
            .await?;
        if self.client.is_some() {
            // Best effort: a lost announcement is covered by the followers' re-read.
            if let Err(e) = self
                .query(redis::cmd("PUBLISH").arg(&self.key).arg(&json))
                .await
            {
                tracing::debug!(error = %e, "split change not announced; replicas re-read it");
            }
        }
        Ok(())
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSubStream> {
        let client = self.client.as_ref()?;
        let connect = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&self.key).await?;
            Ok::<_, redis::RedisError>(ps.into_on_message())
        };
        match tokio::time::timeout(self.settings.dial_timeout, connect).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "split follower: cannot subscribe; re-reading only");
                None
            }
            Err(_) => None,
        }
    }

    async fn follow(&self, router: &Router, metrics: Option<&Metrics>, stop: &CancellationToken) {
        let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feed = None;
        loop {
            if feed.is_none() {
                feed = self.subscribe().await;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.resync(router, metrics).await,
                msg = next(&mut feed) => match msg {
                    Some(m) => match decode(m.get_payload_bytes()) {
                        Ok(state) if self.lock_pending().is_none() => apply(router, metrics, state),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed split announcement"),
                    },
                    // Connection lost: resubscribe on the next turn, the re-read covers the gap.
                    None => feed = None,
                },
            }
        }
    }

    /// One safety-net pass: push a pending local change, else adopt the stored state.
    async fn resync(&self, router: &Router, metrics: Option<&Metrics>) {
        let pending = self.lock_pending().clone();
        if let Some(state) = pending {
            if self.write(&state).await.is_ok() {
                let mut p = self.lock_pending();
                if p.as_ref() == Some(&state) {
                    *p = None;
                }
                tracing::info!("split change made during a backend outage is now stored");
            }
            return;
        }
        match self.read().await {
            Ok(Some(state)) if self.lock_pending().is_none() => apply(router, metrics, state),
            Ok(Some(_)) => {}
            // The key is gone (Redis restarted without persistence): store what we follow, so
            // a replica started now does not fall back to its own config.
            Ok(None) => {
                let json = encode(&router.state());
                let _ = self
                    .query(redis::cmd("SET").arg(&self.key).arg(&json).arg("NX"))
                    .await;
            }
            Err(e) => tracing::debug!(error = %e, "split follower: re-read failed"),
        }
    }
}

async fn next(feed: &mut Option<redis::aio::PubSubStream>) -> Option<redis::Msg> {
    match feed {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn apply(router: &Router, metrics: Option<&Metrics>, state: SplitState) {
    if *router.state() == state {
        return;
    }
    tracing::info!(
        traffic_split = state.traffic_split,
        monitor_only = state.monitor_only,
        enabled = state.enabled,
        "split changed by another replica"
    );
    if let Some(m) = metrics {
        m.set_split(state.traffic_split, state.monitor_only);
    }
    router.set(state);
}

fn encode(state: &SplitState) -> String {
    // A plain struct of numbers, booleans and a string cannot fail to serialize.
    serde_json::to_string(state).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Result<SplitState, ControlError> {
    let state: SplitState =
        serde_json::from_slice(bytes).map_err(|e| ControlError::Corrupt(e.to_string()))?;
    if state.traffic_split > 100 {
        return Err(ControlError::Corrupt(format!(
            "traffic_split {} is not a percentage",
            state.traffic_split
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_value_round_trips_and_bad_values_are_refused() {
        let s = SplitState::new(30, true, true);
        assert_eq!(decode(encode(&s).as_bytes()).unwrap(), s);
        assert!(matches!(
            decode(br#"{"traffic_split":130,"monitor_only":false,"enabled":true,"updated_at":""}"#),
            Err(ControlError::Corrupt(_))
        ));
        assert!(decode(b"not json").is_err());
    }

    #[tokio::test]
    async fn memory_store_keeps_the_configured_state_and_has_no_follower() {
        let store = Arc::new(ControlStore::Memory);
        let initial = SplitState::new(25, false, true);
        assert_eq!(store.load_or_init(initial.clone()).await, initial);
        store.save(&SplitState::new(50, false, true)).await.unwrap();
        let router = Arc::new(Router::new(Default::default(), initial));
        assert!(
            store
                .spawn_follower(router, None, CancellationToken::new())
                .is_none()
        );
    }

    #[test]
    fn apply_skips_an_unchanged_state_and_sets_a_new_one() {
        let router = Router::new(Default::default(), SplitState::new(10, false, true));
        let m = Metrics::new();
        apply(&router, Some(&m), SplitState::new(60, false, true));
        assert_eq!(router.state().traffic_split, 60);
        assert!(m.encode().contains("60"), "split gauge follows");
    }
}
