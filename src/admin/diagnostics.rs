//! `/admin/shadow/diffs` and `/admin/deadlocks`: what the operator reads before moving the split.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AdminError, AdminState};
use crate::engine::from_unix_ms;

/// Bound on one engine read for the admin API.
const ENGINE_READ: Duration = Duration::from_secs(5);

/// `{"compared": n, "mismatched": m, "dropped": d, "by_kind": {...}, "recent": [...]}`.
pub(super) async fn shadow_diffs(State(st): State<Arc<AdminState>>) -> Json<Value> {
    Json(st.shadow.view())
}

/// `{"deadlocks": [{"detected_at", "repo", "cycle", "victim", "victim_pull", "victim_priority"}]}`,
/// newest first.
pub(super) async fn deadlocks(
    State(st): State<Arc<AdminState>>,
) -> Result<Json<Value>, AdminError> {
    let records = tokio::time::timeout(ENGINE_READ, st.enhanced.engine.deadlocks())
        .await
        .map_err(|_| AdminError::Unavailable("lock engine did not answer in time".into()))?
        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
    let list: Vec<Value> = records
        .iter()
        .map(|r| {
            let at = humantime::format_rfc3339_millis(from_unix_ms(r.detected_at_ms)).to_string();
            json!({
                "detected_at": at,
                "repo": r.repo,
                "cycle": r.cycle,
                "victim": r.victim,
                "victim_pull": r.victim_pull,
                "victim_priority": r.victim_priority,
            })
        })
        .collect();
    Ok(Json(json!({ "deadlocks": list })))
}
