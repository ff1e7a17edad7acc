//! The buffering layer: a lock route's body is read once, within its size limit and the shared
//! byte budget, and travels on as [`Buffered`] bytes (classification reads them, a replay resends
//! them byte for byte). Every other body streams to Atlantis, still bounded by its limit.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body::Body;
use tower::{Layer, Service};

use super::budget::BodyBudget;
use super::facts::{AnswerFuture, Buffered, Inner, take_ready};
use super::forward;
use super::{Failure, ProxyError};
use crate::upstream::{BoxError, ProxyBody, full};

/// Buffers lock routes, streams the rest.
#[derive(Clone)]
pub struct BufferLockRoutesLayer {
    budget: BodyBudget,
    max_body: usize,
    max_lock_body: usize,
}

impl BufferLockRoutesLayer {
    /// `max_lock_body` bounds a lock route's body, `max_body` any other; `budget` bounds the
    /// bytes of all buffered bodies at once.
    pub fn new(budget: BodyBudget, max_body: usize, max_lock_body: usize) -> Self {
        Self {
            budget,
            max_body,
            max_lock_body,
        }
    }
}

impl<S> Layer<S> for BufferLockRoutesLayer {
    type Service = BufferLockRoutes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferLockRoutes {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`BufferLockRoutesLayer`].
#[derive(Clone)]
pub struct BufferLockRoutes<S> {
    inner: S,
    layer: BufferLockRoutesLayer,
}

impl<S, B> Service<Request<B>> for BufferLockRoutes<S>
where
    S: Inner,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Failure;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let layer = self.layer.clone();
        Box::pin(async move {
            let lock_route = may_carry_lock_traffic(req.method(), req.uri().path());
            let limit = if lock_route {
                layer.max_lock_body
            } else {
                layer.max_body
            };
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(ProxyError::BodyTooLarge(limit).into());
            }
            let (mut parts, body) = req.into_parts();
            if !lock_route {
                let body = forward::stream(body, limit);
                return inner.call(Request::from_parts(parts, body)).await;
            }
            // Its bytes count against the shared budget until the answer is made.
            let (bytes, _reserved) = layer.budget.buffer(body, limit, declared).await?;
            parts.extensions.insert(Buffered(bytes.clone()));
            inner.call(Request::from_parts(parts, full(bytes))).await
        })
    }
}

/// Routes whose requests can take or release Atlantis locks (ATLANTIS.md §1).
fn may_carry_lock_traffic(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (
            &Method::POST,
            "/events"
                | "/api/plan"
                | "/api/apply"
                | "/api/drift/detect"
                | "/api/drift/remediate"
                | "/apply/lock"
        ) | (&Method::DELETE, "/locks" | "/apply/unlock")
    )
}
