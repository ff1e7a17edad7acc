//! `/admin/locks` and `/admin/queues`: what the engine holds and who waits (DESIGN.md §4).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::api::{LockList, LockView, QueueList, QueueView, Released, Removed, WaiterView};
use super::{AdminError, AdminState};
use crate::classify::LockKey;
use crate::engine::{EngineError, WaiterId};
use crate::telemetry::ReleaseReason;
use crate::upstream::atlantis_api;
use axum::Json;
use axum::extract::{Path, State};

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn unavailable(e: EngineError) -> AdminError {
    AdminError::Unavailable(format!("lock engine: {e}"))
}

/// `GET /admin/locks`.
pub(super) async fn list_locks(
    State(st): State<Arc<AdminState>>,
) -> Result<Json<LockList>, AdminError> {
    let mut locks = st.enhanced.engine.list_locks().await.map_err(unavailable)?;
    locks.sort_by(|a, b| a.key.cmp(&b.key));
    let locks = locks
        .iter()
        .map(|l| LockView {
            key: l.key.to_string(),
            repo: l.key.repo.clone(),
            path: l.key.path.clone(),
            workspace: l.key.workspace.clone(),
            project: l.key.project.clone(),
            pull: l.pull.number,
            vcs: l.pull.vcs.as_str().to_owned(),
            user: l.user.clone(),
            priority: l.priority.as_str().to_owned(),
            acquired_at: rfc3339(l.acquired_at),
            expires_at: rfc3339(l.expires_at),
            fencing_token: l.fencing_token,
        })
        .collect();
    Ok(Json(LockList { locks }))
}

/// `GET /admin/queues`: waiters in the order they would be granted (position 1 first).
pub(super) async fn list_queues(
    State(st): State<Arc<AdminState>>,
) -> Result<Json<QueueList>, AdminError> {
    let mut queues = st
        .enhanced
        .engine
        .list_queues()
        .await
        .map_err(unavailable)?;
    queues.sort_by(|a, b| a.key.cmp(&b.key));
    let queues = queues
        .iter()
        .map(|q| QueueView {
            key: q.key.to_string(),
            waiters: q
                .waiters
                .iter()
                .map(|w| WaiterView {
                    id: w.id.to_string(),
                    pull: w.pull.number,
                    vcs: w.pull.vcs.as_str().to_owned(),
                    user: w.user.clone(),
                    priority: w.priority.as_str().to_owned(),
                    enqueued_at: rfc3339(w.enqueued_at),
                    position: w.position,
                })
                .collect(),
        })
        .collect();
    Ok(Json(QueueList { queues }))
}

/// `DELETE /admin/locks/{key}`: force-release in the engine and delete Atlantis's lock; waiters
/// are granted through the dispatcher. 404 when neither held it.
pub(super) async fn release_lock(
    State(st): State<Arc<AdminState>>,
    Path(key): Path<String>,
) -> Result<Json<Released>, AdminError> {
    let parsed = parse_key(&st, &key).await?;
    let in_engine = st.enhanced.release_key(&parsed, ReleaseReason::Admin).await;
    let in_atlantis =
        atlantis_api::delete_lock(st.enhanced.upstream(), &key, Duration::from_secs(10))
            .await
            .map_err(|e| AdminError::Unavailable(format!("Atlantis: {e}")))?;
    if !in_engine && !in_atlantis {
        return Err(AdminError::NotFound(format!("no lock at '{key}'")));
    }
    tracing::warn!(%key, in_engine, in_atlantis, "lock force-released by an operator");
    Ok(Json(Released {
        released: key,
        engine: in_engine,
        atlantis: in_atlantis,
    }))
}

/// `DELETE /admin/queues/{id}`: removes a waiter; its pull-request comment says an operator
/// removed it.
pub(super) async fn remove_waiter(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Removed>, AdminError> {
    let waiter: WaiterId = id.parse().map_err(|_| {
        AdminError::BadRequest(format!("'{id}' is not a waiter id (see GET /admin/queues)"))
    })?;
    // Before the removal: its dispatch (maybe on another task) reads the mark for the comment.
    st.enhanced.note_operator_removal(&waiter);
    let removed = st.enhanced.engine.remove_waiter(waiter.clone()).await;
    if !matches!(removed, Ok(true)) {
        st.enhanced.unnote_operator_removal(&waiter);
    }
    if !removed.map_err(unavailable)? {
        return Err(AdminError::NotFound(format!("no queued waiter '{id}'")));
    }
    tracing::warn!(waiter = %id, "waiter removed by an operator");
    Ok(Json(Removed { removed: id }))
}

/// The key as the engine knows it: the engine's own locks decide how an ambiguous key splits.
async fn parse_key(st: &AdminState, key: &str) -> Result<LockKey, AdminError> {
    let locks = st.enhanced.engine.list_locks().await.map_err(unavailable)?;
    if let Some(l) = locks.iter().find(|l| l.key.to_string() == key) {
        return Ok(l.key.clone());
    }
    LockKey::parse(key)
        .map_err(|e| AdminError::BadRequest(format!("'{key}' is not an Atlantis lock key: {e}")))
}
