//! Typed label values: every value a label can take is a variant, so the values the README and
//! the dashboards list are exactly the ones emitted (each encodes as its `as_str()`).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::vocab::{DiffKind, EnginePath, UnresolvedKind};

/// Implements [`EncodeLabelValue`] through `as_str()`.
macro_rules! label_value {
    ($($t:ty),* $(,)?) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}

label_value!(
    HttpRoute,
    RequestOutcome,
    UpstreamOutcome,
    EnginePath,
    ResolveOutcome,
    DiffKind
);

/// `resolves_total{outcome}`: how the resolver settled which locks a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResolveOutcome {
    /// The locks are known.
    Resolved,
    /// The request takes no lock (its projects lock nothing under their mode).
    NoLocks,
    /// The resolver could not tell: the request takes the legacy path.
    Unresolved(UnresolvedKind),
}

impl ResolveOutcome {
    /// Every outcome, for exporting each series from the start.
    pub fn all() -> impl Iterator<Item = ResolveOutcome> {
        [Self::Resolved, Self::NoLocks]
            .into_iter()
            .chain(UnresolvedKind::ALL.into_iter().map(Self::Unresolved))
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resolved => "resolved",
            Self::NoLocks => "no_locks",
            Self::Unresolved(kind) => kind.as_str(),
        }
    }
}

/// The coarse Atlantis route of a request on the main listener (`requests_total{route}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpRoute {
    /// `POST /events` (webhooks).
    Events,
    /// `POST /api/plan`.
    ApiPlan,
    /// `POST /api/apply`.
    ApiApply,
    /// `POST /api/drift/detect`.
    ApiDriftDetect,
    /// `POST /api/drift/remediate`.
    ApiDriftRemediate,
    /// `GET /api/locks`.
    ApiLocks,
    /// `DELETE /locks`.
    DeleteLock,
    /// `GET /lock` (the lock page).
    LockPage,
    /// `POST /apply/lock`.
    ApplyLock,
    /// `DELETE /apply/unlock`.
    ApplyUnlock,
    /// `/jobs/{id}/ws` (log stream websocket).
    JobsWs,
    /// `/jobs/{id}`.
    Jobs,
    /// `/healthz`, `/readyz`, `/status`.
    Health,
    /// `/`.
    Index,
    /// Anything else.
    Other,
}

impl HttpRoute {
    /// The route of `method path` (never the raw path: the label stays bounded).
    pub fn of(method: &http::Method, path: &str) -> Self {
        use http::Method;
        match (method, path) {
            (&Method::POST, "/events") => Self::Events,
            (&Method::POST, "/api/plan") => Self::ApiPlan,
            (&Method::POST, "/api/apply") => Self::ApiApply,
            (&Method::POST, "/api/drift/detect") => Self::ApiDriftDetect,
            (&Method::POST, "/api/drift/remediate") => Self::ApiDriftRemediate,
            (&Method::GET, "/api/locks") => Self::ApiLocks,
            (&Method::DELETE, "/locks") => Self::DeleteLock,
            (&Method::GET, "/lock") => Self::LockPage,
            (&Method::POST, "/apply/lock") => Self::ApplyLock,
            (&Method::DELETE, "/apply/unlock") => Self::ApplyUnlock,
            (_, p) if p.starts_with("/jobs/") && p.ends_with("/ws") => Self::JobsWs,
            (_, p) if p.starts_with("/jobs/") => Self::Jobs,
            (_, "/healthz" | "/readyz" | "/status") => Self::Health,
            (_, "/") => Self::Index,
            _ => Self::Other,
        }
    }

    /// The label value (also the server span's `http.route`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::ApiPlan => "api_plan",
            Self::ApiApply => "api_apply",
            Self::ApiDriftDetect => "api_drift_detect",
            Self::ApiDriftRemediate => "api_drift_remediate",
            Self::ApiLocks => "api_locks",
            Self::DeleteLock => "delete_lock",
            Self::LockPage => "lock_page",
            Self::ApplyLock => "apply_lock",
            Self::ApplyUnlock => "apply_unlock",
            Self::JobsWs => "jobs_ws",
            Self::Jobs => "jobs",
            Self::Health => "health",
            Self::Index => "index",
            Self::Other => "other",
        }
    }
}

/// The class of an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx (and anything out of range).
    ServerError,
}

impl StatusClass {
    /// The class of `status`.
    pub fn of(status: http::StatusCode) -> Self {
        match status.as_u16() {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }

    /// `1xx` … `5xx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        }
    }
}

/// Why the proxy answered a request itself (the `x-lock-proxy-error` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyErrorKind {
    /// Atlantis refused or reset the connection.
    UpstreamUnavailable,
    /// No response head within `upstream.timeout`.
    UpstreamTimeout,
    /// The body is over its size limit.
    BodyTooLarge,
    /// The client stalled or trickled its body.
    BodyTimeout,
    /// The client broke its own body.
    BodyUnreadable,
    /// Buffered bodies reached `server.max-buffered-bytes`.
    Overloaded,
    /// The engine failed and `legacy-fallback` is off.
    EngineUnavailable,
    /// A webhook's signature did not verify.
    BadSignature,
    /// Over a rate limit.
    RateLimited,
}

impl ProxyErrorKind {
    /// The header and label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpstreamUnavailable => "upstream-unavailable",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::BodyTooLarge => "body-too-large",
            Self::BodyTimeout => "body-timeout",
            Self::BodyUnreadable => "body-unreadable",
            Self::Overloaded => "overloaded",
            Self::EngineUnavailable => "engine-unavailable",
            Self::BadSignature => "bad-signature",
            Self::RateLimited => "rate-limited",
        }
    }
}

/// `requests_total{outcome}`: Atlantis's status class, or what the proxy answered instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// An answer with this status (Atlantis's, or the proxy's own `202 queued`).
    Status(StatusClass),
    /// The proxy answered with an error of this kind.
    Proxy(ProxyErrorKind),
}

impl RequestOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status(c) => c.as_str(),
            Self::Proxy(k) => k.as_str(),
        }
    }
}

/// `upstream_duration_seconds{status_class}`: Atlantis's status class, or no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamOutcome {
    /// Atlantis answered.
    Status(StatusClass),
    /// The connection failed.
    Error,
    /// No response head in time.
    Timeout,
}

impl UpstreamOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status(c) => c.as_str(),
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_the_documented_ones() {
        let routes = [
            (http::Method::POST, "/events"),
            (http::Method::GET, "/api/locks"),
            (http::Method::GET, "/jobs/abc/ws"),
            (http::Method::GET, "/nope"),
        ];
        let got: Vec<&str> = routes
            .iter()
            .map(|(m, p)| HttpRoute::of(m, p).as_str())
            .collect();
        assert_eq!(got, ["events", "api_locks", "jobs_ws", "other"]);
        assert_eq!(
            RequestOutcome::Status(StatusClass::of(http::StatusCode::ACCEPTED)).as_str(),
            "2xx"
        );
        assert_eq!(
            RequestOutcome::Proxy(ProxyErrorKind::RateLimited).as_str(),
            "rate-limited"
        );
        assert_eq!(UpstreamOutcome::Timeout.as_str(), "timeout");
    }
}
