//! A Redis outage surfaces as a prompt error (for the circuit breaker), never as a hang.

use std::time::Duration;

use atlantis_lock_proxy::classify::Priority;
use atlantis_lock_proxy::engine::{
    EngineError, EngineSettings, LockEngine, RedisEngine, RedisSettings,
};

use super::ctx::req;
use crate::support::redis::RedisServer;

#[tokio::test]
async fn lost_redis_fails_fast_with_a_backend_error() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("server");
    let engine = RedisEngine::connect(
        EngineSettings::default(),
        RedisSettings {
            addr: server.addr.clone(),
            read_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
            pool_timeout: Duration::from_millis(500),
            max_retries: 1,
            ..RedisSettings::default()
        },
    )
    .await
    .expect("connect");
    engine.ping().await.expect("up");
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("stop server");
    let started = tokio::time::Instant::now();
    let err = engine
        .acquire(req(1, Priority::Normal, &["k"]))
        .await
        .expect_err("no backend");
    assert!(
        matches!(
            err,
            EngineError::BackendUnavailable(_) | EngineError::BackendTimeout
        ),
        "{err:?}"
    );
    assert!(engine.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast");
}

#[tokio::test]
async fn engine_recovers_when_redis_comes_back() {
    let mut server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("server");
    let engine = RedisEngine::connect(
        EngineSettings::default(),
        RedisSettings {
            addr: server.addr.clone(),
            read_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
            ..RedisSettings::default()
        },
    )
    .await
    .expect("connect");
    engine.ping().await.expect("up");
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match engine.acquire(req(1, Priority::Normal, &["k"])).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%e, "not yet reconnected");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("engine never reconnected: {e}"),
        }
    }
    drop(server);
}
