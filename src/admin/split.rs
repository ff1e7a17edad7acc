//! `/admin/split` and `/admin/rollback`: the operator's controls over routing.

use std::sync::Arc;

use super::api::{SplitUpdate, SplitView};
use super::{AdminError, AdminState};
use crate::route::SplitState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

/// The state as the API shows it, with breaker and backend.
pub(super) fn view(st: &AdminState, state: &SplitState) -> SplitView {
    SplitView {
        traffic_split: state.traffic_split,
        monitor_only: state.monitor_only,
        enabled: state.enabled,
        breaker: st.breaker_state().to_owned(),
        backend: st.enhanced.engine.backend_name().to_owned(),
        updated_at: state.updated_at.clone(),
    }
}

pub(super) async fn get_split(State(st): State<Arc<AdminState>>) -> Json<SplitView> {
    Json(view(&st, &st.router.state()))
}

pub(super) async fn put_split(
    State(st): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Json<SplitView>, AdminError> {
    let update: SplitUpdate = serde_json::from_slice(&body).map_err(|e| {
        AdminError::BadRequest(format!(
            "body must be JSON like {{\"traffic_split\": 0..100, \"monitor_only\": bool}}: {e}"
        ))
    })?;
    let current = st.router.state();
    let traffic_split = match update.traffic_split {
        None => current.traffic_split,
        Some(p) => u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
            AdminError::BadRequest(format!("traffic_split {p} is not between 0 and 100"))
        })?,
    };
    let monitor_only = update.monitor_only.unwrap_or(current.monitor_only);
    let next = SplitState::new(traffic_split, monitor_only, current.enabled);
    st.apply_split(next.clone()).await?;
    tracing::info!(
        traffic_split,
        monitor_only,
        "split changed through the admin API"
    );
    Ok(Json(view(&st, &next)))
}

pub(super) async fn rollback(
    State(st): State<Arc<AdminState>>,
) -> Result<Json<SplitView>, AdminError> {
    let current = st.router.state();
    let next = SplitState::new(0, false, current.enabled);
    st.apply_split(next.clone()).await?;
    tracing::warn!("rollback: every repository is on the legacy path from the next request on");
    Ok(Json(view(&st, &next)))
}
