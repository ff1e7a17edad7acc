//! The upgrade layer: Atlantis's job-log websockets (`/jobs/{id}/ws`) are spliced straight to
//! Atlantis; nothing below ever sees an upgrade. An `Upgrade` header anywhere else changes
//! nothing.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::facts::AnswerFuture;
use super::forward::{self, Forward, client_of};
use crate::upstream::{ProxyBody, is_job_websocket};

/// Splices job-log websockets.
#[derive(Clone)]
pub struct UpgradeLayer {
    forward: Forward,
}

impl UpgradeLayer {
    /// Splices through `forward`'s upstream.
    pub fn new(forward: Forward) -> Self {
        Self { forward }
    }
}

impl<S> Layer<S> for UpgradeLayer {
    type Service = Upgrade<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Upgrade {
            inner,
            forward: self.forward.clone(),
        }
    }
}

/// See [`UpgradeLayer`].
#[derive(Clone)]
pub struct Upgrade<S> {
    inner: S,
    forward: Forward,
}

impl<S, B> Service<Request<B>> for Upgrade<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = super::Failure>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = super::Failure;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !is_job_websocket(req.method(), req.uri().path(), req.headers()) {
            return Box::pin(self.inner.call(req));
        }
        let forward = self.forward.clone();
        Box::pin(async move {
            let client = client_of(&req);
            Ok(forward::upgrade(&forward, client, req).await?)
        })
    }
}
