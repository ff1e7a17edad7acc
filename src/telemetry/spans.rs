//! The request's span tree, one constructor per step, so every step records the same attribute
//! names. A `tracing` span can only record fields declared when it is created: each constructor
//! takes what is known then and declares the rest empty, and the layer that owns the span fills
//! them in (the telemetry layer fills the server span from the facts on the answer).
//!
//! ```text
//! request (server)            GET api_locks / POST events…   http.*, alp.operation, alp.repo, alp.pull, alp.engine_path, alp.decision…
//! ├── classify
//! ├── route                                                   alp.repo
//! ├── engine {op}                                             alp.decision, alp.lock_keys, alp.queue_position, alp.fencing_token…
//! │   └── resolve                                             alp.repo, alp.pull
//! └── upstream (client)       GET atlantis                    http.*  (traceparent injected)
//! replay (new root, linked to the original request's span)   see propagation::replay_span
//! ```

use tracing::Span;
use tracing::field::Empty;

/// Attribute names shared by the spans (and usable with `Span::record`).
pub mod attr {
    /// `owner/repo`.
    pub const REPO: &str = "alp.repo";
    /// Pull request number.
    pub const PULL: &str = "alp.pull";
    /// Atlantis lock keys `{repo}/{path}/{workspace}/{project}`, comma-separated.
    pub const LOCK_KEYS: &str = "alp.lock_keys";
    /// `legacy`, `enhanced` or `shadow`.
    pub const ENGINE_PATH: &str = "alp.engine_path";
    /// What the proxy decided: `granted`, `queued`, `rejected`, `released`, `passthrough`…
    pub const DECISION: &str = "alp.decision";
    /// 1-based position in the queue of a queued request.
    pub const QUEUE_POSITION: &str = "alp.queue_position";
    /// The classified operation (`acquire`, `release_pull`, `release_key`, `list`, `passthrough`…).
    pub const OPERATION: &str = "alp.operation";
    /// `critical`, `high`, `normal`, `low`.
    pub const PRIORITY: &str = "alp.priority";
    /// The queued waiter's id.
    pub const WAITER_ID: &str = "alp.waiter_id";
    /// Fencing token of a grant.
    pub const FENCING_TOKEN: &str = "alp.fencing_token";
}

/// The server span of one request on the main listener; `route` is the bounded route name.
pub fn server(method: &http::Method, route: &'static str, path: &str) -> Span {
    tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        url.path = path,
        http.response.status_code = Empty,
        error.type = Empty,
        alp.repo = Empty,
        alp.pull = Empty,
        alp.operation = Empty,
        alp.lock_keys = Empty,
        alp.engine_path = Empty,
        alp.decision = Empty,
        alp.queue_position = Empty,
        alp.waiter_id = Empty,
    )
}

/// The client span of one call to Atlantis.
pub fn upstream(method: &http::Method, path: &str) -> Span {
    tracing::info_span!(
        "upstream",
        otel.name = %format_args!("{method} atlantis"),
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = %method,
        url.path = path,
        http.response.status_code = Empty,
    )
}

/// Classification of the request into an operation.
pub fn classify() -> Span {
    tracing::info_span!("classify")
}

/// Resolution of the projects a command on `repo`'s pull `pull` locks.
pub fn resolve(repo: &str, pull: i64) -> Span {
    tracing::info_span!("resolve", alp.repo = repo, alp.pull = pull)
}

/// The split decision for `repo`.
pub fn route(repo: &str) -> Span {
    tracing::info_span!("route", alp.repo = repo)
}

/// One lock-engine call (`acquire`, `release`, `list`…).
pub fn engine(operation: &'static str) -> Span {
    tracing::info_span!(
        "engine",
        otel.name = %format_args!("engine {operation}"),
        otel.status_code = Empty,
        alp.operation = operation,
        alp.lock_keys = Empty,
        alp.decision = Empty,
        alp.queue_position = Empty,
        alp.waiter_id = Empty,
        alp.fencing_token = Empty,
    )
}
