//! Admin API errors: the one place they become JSON responses (`{"error": "..."}`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::proxy::ratelimit::RetryAfter;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Bad input (body, path, value out of range).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing at that route or key.
    #[error("{0}")]
    NotFound(String),
    /// The engine backend or Atlantis failed.
    #[error("{0}")]
    Unavailable(String),
    /// The client is over `admin.rate-limit`.
    #[error("{0}")]
    TooManyRequests(RetryAfter),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        let retry_after = match &self {
            AdminError::TooManyRequests(r) => Some(r.secs()),
            _ => None,
        };
        let mut resp = (
            status,
            Json(super::api::ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"atlantis-lock-proxy\""),
            );
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
