//! The main listener's errors and the one place they become HTTP responses.
//!
//! Every answer the proxy makes itself carries `x-lock-proxy-error: <kind>` so nobody mistakes
//! it for one of Atlantis's own (like linkerd's `l5d-proxy-error`).

use std::time::Duration;

use http::{Extensions, HeaderValue, Response, StatusCode, header};

use super::ratelimit::RetryAfter;
use crate::telemetry::metrics::labels::ProxyErrorKind;
use crate::upstream::{ProxyBody, UpstreamError, full};

/// Header that marks a response made by the proxy, not Atlantis.
pub const ERROR_HEADER: &str = "x-lock-proxy-error";

/// Why the proxy answered instead of Atlantis.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Atlantis refused the connection, reset it, or is down.
    #[error("Atlantis is unavailable")]
    UpstreamUnavailable(#[source] crate::upstream::BoxError),
    /// Atlantis did not send a response head in time.
    #[error("Atlantis did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The client's body is larger than `server.max-body-size`.
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// The client paused longer than `server.body-read-timeout` while sending its body.
    #[error("request body was not received in time")]
    BodyTimeout,
    /// The client's body could not be read (connection reset, bad chunking).
    #[error("request body could not be read: {0}")]
    BodyUnreadable(String),
    /// The bytes of all buffered bodies reached `server.max-buffered-bytes`.
    #[error("too many request bodies are being read at once; retry shortly")]
    Overloaded,
    /// The engine failed and `legacy-fallback` is off.
    #[error("the lock engine is unavailable: {0}")]
    EngineUnavailable(String),
    /// The client or the repository is over its rate limit on lock traffic.
    #[error("too many lock requests for this {scope}; retry after {} s", retry.secs())]
    RateLimited {
        /// Which limit: `client` or `repository`.
        scope: LimitScope,
        /// When to try again.
        retry: RetryAfter,
    },
    /// A webhook whose signature or secret does not match (answered like Atlantis).
    #[error("{message}")]
    BadSignature {
        /// Atlantis's own status for this VCS (400, or 401 for Azure DevOps).
        status: StatusCode,
        /// Atlantis's own text.
        message: String,
    },
}

/// Which rate limit a request broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// `rate-limit.per-client`.
    Client,
    /// `rate-limit.per-repository`.
    Repository,
}

impl std::fmt::Display for LimitScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitScope::Client => "client",
            LimitScope::Repository => "repository",
        })
    }
}

/// What travels up the stack instead of an answer: the error, plus the facts the layers below
/// learned before it happened (the engine path, the decision), which the rescue moves into the
/// response's extensions like any answer's.
#[derive(Debug)]
pub struct Failure {
    /// Why there is no answer.
    pub error: ProxyError,
    /// Per-request facts, as on a response.
    pub facts: Extensions,
}

impl<E: Into<ProxyError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            error: e.into(),
            facts: Extensions::new(),
        }
    }
}

impl Failure {
    /// The response the rescue makes, carrying the facts.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = self.error.into_response();
        resp.extensions_mut().extend(self.facts);
        resp
    }
}

impl From<UpstreamError> for ProxyError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unavailable(src) => ProxyError::UpstreamUnavailable(src),
            UpstreamError::Timeout(t) => ProxyError::UpstreamTimeout(t),
        }
    }
}

impl ProxyError {
    /// Short machine-readable kind, used in the marker header and in metrics.
    pub fn kind(&self) -> ProxyErrorKind {
        match self {
            ProxyError::UpstreamUnavailable(_) => ProxyErrorKind::UpstreamUnavailable,
            ProxyError::UpstreamTimeout(_) => ProxyErrorKind::UpstreamTimeout,
            ProxyError::BodyTooLarge(_) => ProxyErrorKind::BodyTooLarge,
            ProxyError::BodyTimeout => ProxyErrorKind::BodyTimeout,
            ProxyError::BodyUnreadable(_) => ProxyErrorKind::BodyUnreadable,
            ProxyError::BadSignature { .. } => ProxyErrorKind::BadSignature,
            ProxyError::EngineUnavailable(_) => ProxyErrorKind::EngineUnavailable,
            ProxyError::Overloaded => ProxyErrorKind::Overloaded,
            ProxyError::RateLimited { .. } => ProxyErrorKind::RateLimited,
        }
    }

    /// The status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            ProxyError::BadSignature { status, .. } => *status,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::EngineUnavailable(_) | ProxyError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The response: a short plain-text body that says it came from the proxy.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let kind = self.kind();
        let body = match &self {
            // Atlantis's own wording, so VCS delivery logs read the same as without the proxy.
            ProxyError::BadSignature { message, .. } => format!("{message}\n"),
            other => format!("atlantis-lock-proxy: {other}\n"),
        };
        match &self {
            ProxyError::UpstreamUnavailable(src) => {
                tracing::warn!(error = %src, "Atlantis unavailable")
            }
            other => tracing::debug!(error = %other, status = status.as_u16(), "proxy answered"),
        }
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(ERROR_HEADER, HeaderValue::from_static(kind.as_str()));
        match &self {
            ProxyError::Overloaded => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ProxyError::RateLimited { retry, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry.secs()));
            }
            _ => {}
        }
        // What the proxy answered, for the server span and `requests_total`.
        resp.extensions_mut().insert(Rescued(kind));
        resp
    }
}

/// Marks a response the rescue made from an error: its kind (`upstream-timeout`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rescued(pub ProxyErrorKind);
