//! Bearer-token check for `/admin/*` (constant-time).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::{AdminError, AdminState};

/// Rejects requests without `Authorization: Bearer <admin token>` when a token is configured.
///
/// Without a token the listener is loopback-only (config validation refuses anything else).
pub async fn require_token(
    State(st): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Result<Response, AdminError> {
    if let Some(token) = &st.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(p) if token.matches(p.as_bytes()) => {}
            _ => return Err(AdminError::Unauthorized),
        }
    }
    Ok(next.run(req).await)
}
