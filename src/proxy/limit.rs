//! The rate-limit layer: lock traffic over the per-client or per-repository limit is refused
//! with 429 (the rescue writes it) before it reaches the engine or Atlantis. Reads and
//! passthrough traffic are never limited.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::error::LimitScope;
use super::facts::{AnswerFuture, Inner};
use super::forward::client_of;
use super::ratelimit::RateLimits;
use super::{Failure, ProxyError};
use crate::classify::Operation;
use crate::upstream::ProxyBody;

/// Enforces `rate-limit.*` on lock traffic.
#[derive(Clone)]
pub struct RateLimitLayer {
    limits: Arc<RateLimits>,
}

impl RateLimitLayer {
    /// Enforces `limits`.
    pub fn new(limits: Arc<RateLimits>) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// See [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: Arc<RateLimits>,
}

impl<S> Service<Request<ProxyBody>> for RateLimit<S>
where
    S: Inner,
{
    type Response = Response<ProxyBody>;
    type Error = Failure;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        if let Some(refused) = self.check(&req) {
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        Box::pin(self.inner.call(req))
    }
}

impl<S> RateLimit<S> {
    fn check(&self, req: &Request<ProxyBody>) -> Option<ProxyError> {
        let op = req.extensions().get::<Operation>()?;
        if matches!(op, Operation::Passthrough { .. } | Operation::ListLocks) {
            return None;
        }
        let over = |scope, retry| ProxyError::RateLimited { scope, retry };
        if let Err(retry) = self.limits.check_client(client_of(req).ip(), req.headers()) {
            return Some(over(LimitScope::Client, retry));
        }
        let repo = op.repo()?;
        self.limits
            .check_repo(repo)
            .err()
            .map(|retry| over(LimitScope::Repository, retry))
    }
}
