//! The main listener's errors and the one place they become HTTP responses.
//!
//! Every answer the proxy makes itself carries `x-lock-proxy-error: <kind>` so nobody mistakes
//! it for one of Atlantis's own (like linkerd's `l5d-proxy-error`).

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

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
    /// A webhook whose signature or secret does not match (answered like Atlantis).
    #[error("{message}")]
    BadSignature {
        /// Atlantis's own status for this VCS (400, or 401 for Azure DevOps).
        status: StatusCode,
        /// Atlantis's own text.
        message: String,
    },
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
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnavailable(_) => "upstream-unavailable",
            ProxyError::UpstreamTimeout(_) => "upstream-timeout",
            ProxyError::BodyTooLarge(_) => "body-too-large",
            ProxyError::BodyTimeout => "body-timeout",
            ProxyError::BodyUnreadable(_) => "body-unreadable",
            ProxyError::BadSignature { .. } => "bad-signature",
            ProxyError::EngineUnavailable(_) => "engine-unavailable",
            ProxyError::Overloaded => "overloaded",
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
        h.insert(ERROR_HEADER, HeaderValue::from_static(kind));
        if matches!(self, ProxyError::Overloaded) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
