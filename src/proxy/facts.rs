//! The per-request facts the layers hand each other (pingora's per-request context): typed
//! values in the request's extensions on the way down, in the response's (or the
//! [`Failure`]'s) on the way up. No layer returns facts through tuples or records them on
//! someone else's span; the telemetry layer reads them off the answer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http::{Request, Response};
use tower::Service;

use super::error::Failure;
use crate::engine::WaiterId;
use crate::upstream::ProxyBody;
use crate::vocab::LegacyReason;

/// What every layer below the rescue answers.
pub type Answer = Result<Response<ProxyBody>, Failure>;

/// A layer's boxed response future.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A layer's inner service: the rest of the stack, down to Atlantis.
pub trait Inner:
    Service<
        Request<ProxyBody>,
        Response = Response<ProxyBody>,
        Error = Failure,
        Future = AnswerFuture,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Inner for S where
    S: Service<
            Request<ProxyBody>,
            Response = Response<ProxyBody>,
            Error = Failure,
            Future = AnswerFuture,
        > + Clone
        + Send
        + 'static
{
}

/// The client's address (request extension, set per connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A lock route's body, read once (request extension): classification reads it, a queued
/// request keeps it for its replay, and the request's own body is the same bytes.
#[derive(Clone, Debug)]
pub struct Buffered(pub Bytes);

/// What classification found, for the server span (response extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The operation's kind (`acquire`, `release_pull`, ...).
    pub kind: &'static str,
    /// `owner/repo`, when the operation names one.
    pub repo: Option<String>,
}

/// What the gate decided for an acquire routed to the engine (response extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The engine admitted it; Atlantis got it once.
    Granted {
        /// The pull it was admitted for.
        pull: i64,
    },
    /// Queued behind a holder: the 202 went back, Atlantis did not see it.
    Queued {
        /// The pull it waits for.
        pull: i64,
        /// The waiter.
        waiter: WaiterId,
        /// 1-based position in the first lock's queue.
        position: Option<u64>,
    },
    /// Handed to Atlantis undecided.
    Legacy {
        /// The pull.
        pull: i64,
        /// Why.
        reason: LegacyReason,
    },
    /// The engine failed.
    EngineError {
        /// The pull.
        pull: i64,
    },
}

impl Verdict {
    /// The `alp.decision` span attribute.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Granted { .. } => "granted",
            Verdict::Queued { .. } => "queued",
            Verdict::Legacy { reason, .. } => reason.as_str(),
            Verdict::EngineError { .. } => "engine_error",
        }
    }

    /// The pull it is about.
    pub fn pull(&self) -> i64 {
        match self {
            Verdict::Granted { pull }
            | Verdict::Queued { pull, .. }
            | Verdict::Legacy { pull, .. }
            | Verdict::EngineError { pull } => *pull,
        }
    }
}

/// Adds a fact to an answer, whether it is a response or a failure.
pub fn note<T: Clone + Send + Sync + 'static>(answer: Answer, fact: T) -> Answer {
    match answer {
        Ok(mut resp) => {
            resp.extensions_mut().insert(fact);
            Ok(resp)
        }
        Err(mut failure) => {
            failure.facts.insert(fact);
            Err(failure)
        }
    }
}

/// Takes the inner service that `poll_ready` readied and leaves a clone in its place (tower's
/// pattern for a call that awaits before it calls the inner service).
pub fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
