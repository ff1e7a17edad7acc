//! The request's span tree, one constructor per step, so every step records the same attribute
//! names. A `tracing` span can only record fields declared when it is created: each constructor
//! declares the step's attributes empty, and the step fills them in with `span.record(..)`
//! (or `Span::current().record(..)` inside it).
//!
//! ```text
//! request (server)            GET api_locks / POST events…   http.*, alp.repo, alp.pull, alp.engine_path, alp.decision…
//! ├── classify                                                alp.operation, alp.repo, alp.pull
//! ├── resolve                                                 alp.lock_keys, alp.resolve_outcome
//! ├── route                                                   alp.engine_path
//! ├── engine {op}                                             alp.lock_keys, alp.priority, alp.decision, alp.queue_position…
//! ├── shadow                                                  alp.shadow_kind
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
    /// How the resolver found the projects (`flags`, `table`, `vcs`, `unresolved`).
    pub const RESOLVE_OUTCOME: &str = "alp.resolve_outcome";
    /// The shadow comparison's kind.
    pub const SHADOW_KIND: &str = "alp.shadow_kind";
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
    tracing::info_span!(
        "classify",
        alp.operation = Empty,
        alp.repo = Empty,
        alp.pull = Empty,
        alp.priority = Empty,
    )
}

/// Resolution of the projects a bare plan locks.
pub fn resolve() -> Span {
    tracing::info_span!(
        "resolve",
        alp.repo = Empty,
        alp.pull = Empty,
        alp.lock_keys = Empty,
        alp.resolve_outcome = Empty,
    )
}

/// The split decision for the request's repository.
pub fn route() -> Span {
    tracing::info_span!("route", alp.repo = Empty, alp.engine_path = Empty)
}

/// One lock-engine call (`acquire`, `release`, `list`…).
pub fn engine(operation: &'static str) -> Span {
    tracing::info_span!(
        "engine",
        otel.name = %format_args!("engine {operation}"),
        alp.operation = operation,
        alp.lock_keys = Empty,
        alp.priority = Empty,
        alp.decision = Empty,
        alp.queue_position = Empty,
        alp.waiter_id = Empty,
        alp.fencing_token = Empty,
    )
}

/// The shadow evaluation of one operation (runs spawned; still a child of the request).
pub fn shadow() -> Span {
    tracing::info_span!(
        "shadow",
        alp.operation = Empty,
        alp.decision = Empty,
        alp.shadow_kind = Empty,
    )
}
