//! The classification layer: a buffered lock route becomes an [`Operation`] in the request's
//! extensions (ATLANTIS.md §1–§4). A webhook whose signature does not verify is refused here,
//! the way Atlantis refuses it; anything unbuffered passes through unclassified.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::facts::{AnswerFuture, Buffered, Classified, Inner, note};
use super::{Failure, ProxyError};
use crate::classify::{ClassifyConfig, classify};
use crate::telemetry::spans;
use crate::upstream::ProxyBody;

/// Classifies lock traffic.
#[derive(Clone)]
pub struct ClassifyLayer {
    config: Arc<ClassifyConfig>,
}

impl ClassifyLayer {
    /// Reads requests the way `config` says Atlantis does.
    pub fn new(config: Arc<ClassifyConfig>) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for ClassifyLayer {
    type Service = Classify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify {
            inner,
            config: self.config.clone(),
        }
    }
}

/// See [`ClassifyLayer`].
#[derive(Clone)]
pub struct Classify<S> {
    inner: S,
    config: Arc<ClassifyConfig>,
}

impl<S> Service<Request<ProxyBody>> for Classify<S>
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
        let Some(Buffered(bytes)) = req.extensions().get::<Buffered>().cloned() else {
            return Box::pin(self.inner.call(req));
        };
        let (mut parts, body) = req.into_parts();
        let classified = {
            let _s = spans::classify().entered();
            classify(&parts, &bytes, &self.config)
        };
        let op = match classified {
            Ok(op) => op,
            Err(e) => {
                let refused = ProxyError::BadSignature {
                    status: e.status(),
                    message: e.to_string(),
                };
                return Box::pin(std::future::ready(Err(refused.into())));
            }
        };
        tracing::debug!(
            kind = op.kind(),
            repo = op.repo().unwrap_or(""),
            "classified"
        );
        let fact = Classified {
            kind: op.kind(),
            repo: op.repo().map(str::to_string),
        };
        parts.extensions.insert(op);
        let answer = self.inner.call(Request::from_parts(parts, body));
        Box::pin(async move { note(answer.await, fact) })
    }
}
