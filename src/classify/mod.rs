//! classify: turn one HTTP request into one [`Operation`] (DESIGN.md §2 step 1).
//!
//! Parsing follows Atlantis's own (`events_controller.go`, `event_parser.go`,
//! `comment_parser.go`, `api_controller.go`, `locks_controller.go`) so the proxy reads a request
//! exactly as the Atlantis behind it will. Anything Atlantis would ignore, refuse or fail to
//! parse is [`Operation::Passthrough`]: the proxy forwards it and Atlantis answers as usual.
//! Only a webhook whose signature fails against a configured secret is an error, answered by the
//! proxy like Atlantis would and never forwarded.
//!
//! ```
//! use atlantis_lock_proxy::classify::{classify, ClassifyConfig, CommandKind, Operation};
//!
//! let body = br#"{"action":"created","issue":{"number":7,"pull_request":{}},
//!     "comment":{"body":"atlantis plan","user":{"login":"alice"}},
//!     "repository":{"full_name":"acme/infra","clone_url":"https://github.com/acme/infra.git"}}"#;
//! let (parts, ()) = http::Request::post("/events")
//!     .header("x-github-event", "issue_comment")
//!     .header("content-type", "application/json")
//!     .body(())
//!     .expect("valid request")
//!     .into_parts();
//! match classify(&parts, body, &ClassifyConfig::accepting_unsigned()) {
//!     Ok(Operation::Acquire(a)) => assert_eq!(a.command, CommandKind::Plan),
//!     Ok(other) => panic!("{other:?}"),
//!     // A bad signature: answer `e.status()` / `e.body()` and do not forward.
//!     Err(e) => panic!("{e}"),
//! }
//! ```

mod allowlist;
mod api;
pub mod comment;
mod config;
#[cfg(test)]
mod fixtures_test;
mod json;
mod operation;
#[cfg(test)]
mod proptests;
mod signature;
#[cfg(test)]
pub(crate) mod testutil;
mod webhook;

pub use crate::vocab::{
    CommandKind, CommentCommandName, LockKey, LockMode, ParseKeyError, Priority, PullId, PullRef,
    Vcs, command_locks,
};
pub use allowlist::RepoAllowlist;
pub use config::{ClassifyConfig, LockModeTable, RepoLockModes, Secret, ShaCache, WebhookSecrets};
pub use operation::{
    Acquire, GlobalApplyAction, LockSet, LockTarget, Operation, PassthroughReason, PullMeta,
    ReleaseCause,
};

use api::ApiCall;
use http::{Method, StatusCode};

/// A request the proxy must answer itself instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// The webhook failed the configured secret/signature check.
    #[error("{message}")]
    BadSignature {
        /// Which VCS's check failed.
        vcs: Vcs,
        /// Atlantis's response text for the failure (without the trailing newline).
        message: String,
    },
}

impl ClassifyError {
    /// The status Atlantis answers with: 400, or 401 for Azure DevOps.
    pub fn status(&self) -> StatusCode {
        match self {
            ClassifyError::BadSignature {
                vcs: Vcs::AzureDevops,
                ..
            } => StatusCode::UNAUTHORIZED,
            ClassifyError::BadSignature { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The content type of [`ClassifyError::body`], as Atlantis sends it.
    pub fn content_type(&self) -> &'static str {
        "text/plain; charset=utf-8"
    }

    /// The response body as Atlantis writes it (`text/plain; charset=utf-8`, newline-terminated).
    pub fn body(&self) -> String {
        format!("{self}\n")
    }
}

/// Classifies one buffered request.
///
/// `body` must be the exact bytes that will be forwarded: signatures are checked over them.
pub fn classify(
    parts: &http::request::Parts,
    body: &[u8],
    cfg: &ClassifyConfig,
) -> Result<Operation, ClassifyError> {
    let path = parts.uri.path();
    let m = &parts.method;
    let op = match path {
        "/events" if m == Method::POST => return webhook::classify(&parts.headers, body, cfg),
        "/api/plan" if m == Method::POST => api::classify_api(
            &parts.headers,
            body,
            cfg,
            ApiCall::Run(CommandKind::ApiPlan),
        ),
        "/api/apply" if m == Method::POST => api::classify_api(
            &parts.headers,
            body,
            cfg,
            ApiCall::Run(CommandKind::ApiApply),
        ),
        "/api/drift/detect" if m == Method::POST => {
            api::classify_api(&parts.headers, body, cfg, ApiCall::DriftDetect)
        }
        "/api/drift/remediate" if m == Method::POST => {
            api::classify_api(&parts.headers, body, cfg, ApiCall::DriftRemediate)
        }
        "/api/locks" if m == Method::GET => Operation::ListLocks,
        "/locks" if m == Method::DELETE => api::release_key(parts.uri.query(), cfg),
        "/apply/lock" if m == Method::POST => Operation::GlobalApply(GlobalApplyAction::Lock),
        "/apply/unlock" if m == Method::DELETE => Operation::GlobalApply(GlobalApplyAction::Unlock),
        _ => Operation::passthrough(PassthroughReason::NotLockRoute),
    };
    Ok(op)
}
