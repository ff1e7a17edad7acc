//! `/admin/shadow/diffs` and `/admin/deadlocks`: what the operator reads before moving the split.

use std::sync::Arc;
use std::time::Duration;

use super::api::{DeadlockList, DeadlockView, DiffView, ShadowDiffs};
use super::{AdminError, AdminState};
use crate::engine::from_unix_ms;
use crate::vocab::DiffKind;
use axum::Json;
use axum::extract::State;

/// Bound on one engine read for the admin API.
const ENGINE_READ: Duration = Duration::from_secs(5);

/// `GET /admin/shadow/diffs`.
pub(super) async fn shadow_diffs(State(st): State<Arc<AdminState>>) -> Json<ShadowDiffs> {
    let r = &st.shadow;
    Json(ShadowDiffs {
        compared: r.compared(),
        mismatched: r.mismatched(),
        dropped: r.dropped_count(),
        by_kind: DiffKind::ALL
            .iter()
            .filter(|k| r.count(**k) > 0)
            .map(|k| (k.as_str().to_owned(), r.count(*k)))
            .collect(),
        recent: r
            .recent()
            .into_iter()
            .map(|d| DiffView {
                at: d.at,
                kind: d.kind,
                operation: d.operation.to_owned(),
                repo: d.repo,
                pull: d.pull,
                locks: d.locks,
                legacy: d.legacy,
                enhanced: d.enhanced,
                trace_id: d.trace_id,
            })
            .collect(),
    })
}

/// `GET /admin/deadlocks`, newest first.
pub(super) async fn deadlocks(
    State(st): State<Arc<AdminState>>,
) -> Result<Json<DeadlockList>, AdminError> {
    let records = tokio::time::timeout(ENGINE_READ, st.enhanced.engine.deadlocks())
        .await
        .map_err(|_| AdminError::Unavailable("lock engine did not answer in time".into()))?
        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
    let deadlocks = records
        .iter()
        .map(|r| DeadlockView {
            detected_at: humantime::format_rfc3339_millis(from_unix_ms(r.detected_at_ms))
                .to_string(),
            repo: r.repo.clone(),
            cycle: r.cycle.clone(),
            victim: r.victim.clone(),
            victim_pull: r.victim_pull,
            victim_priority: r.victim_priority,
        })
        .collect();
    Ok(Json(DeadlockList { deadlocks }))
}
