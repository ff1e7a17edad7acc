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
            .and_then(bearer);
        match presented {
            Some(p) if token.matches(p.as_bytes()) => {}
            _ => return Err(AdminError::Unauthorized),
        }
    }
    Ok(next.run(req).await)
}

/// The credentials of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110
/// §11.1). A wrong token is never echoed: the answer is a fixed 401.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "bEaReR\tt0k"] {
            assert_eq!(bearer(v), Some("t0k"), "{v:?}");
        }
        for v in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer(v), None, "{v:?}");
        }
    }
}
