//! The shadow layer (DESIGN.md §5): when a repository is shadowed, legacy decides and the
//! engine evaluates the same operation in its own keyspace afterwards; the two are compared.
//! Every comparison is spawned: the primary answer is never delayed or changed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use tower::{Layer, Service};

use super::Failure;
use super::facts::{AnswerFuture, Inner, take_ready};
use super::routing::route_of;
use crate::classify::Operation;
use crate::enhanced::ShadowRunner;
use crate::upstream::{BoxError, ProxyBody};
use crate::vocab::{CommandKind, EnginePath};

/// How much of an `/api/*` answer is kept for the comparison: Atlantis's lock text comes first.
const API_ANSWER_KEPT: usize = 64 * 1024;

/// Mirrors shadowed lock traffic into the shadow engine.
#[derive(Clone)]
pub struct ShadowLayer {
    runner: Arc<ShadowRunner>,
}

impl ShadowLayer {
    /// Compares through `runner`.
    pub fn new(runner: Arc<ShadowRunner>) -> Self {
        Self { runner }
    }
}

impl<S> Layer<S> for ShadowLayer {
    type Service = Shadow<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shadow {
            inner,
            runner: self.runner.clone(),
        }
    }
}

/// See [`ShadowLayer`].
#[derive(Clone)]
pub struct Shadow<S> {
    inner: S,
    runner: Arc<ShadowRunner>,
}

impl<S> Service<Request<ProxyBody>> for Shadow<S>
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
        let shadowed = route_of(&req).filter(|r| r.shadow);
        let op = match (shadowed, req.extensions().get::<Operation>()) {
            (Some(route), Some(op)) => (route, op.clone()),
            _ => return Box::pin(self.inner.call(req)),
        };
        let mut inner = take_ready(&mut self.inner);
        let runner = self.runner.clone();
        Box::pin(async move {
            let answer = inner.call(req).await;
            Ok(mirror(&runner, op, answer?))
        })
    }
}

/// Starts the comparison for a shadowed operation Atlantis answered with `resp`.
fn mirror(
    runner: &Arc<ShadowRunner>,
    (route, op): (crate::route::Route, Operation),
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = resp.status();
    match op {
        // Legacy decided; an /api call's answer says what Atlantis did (it has released the
        // pull's locks again by the time its lock table could be read).
        Operation::Acquire(acq) if route.path == EnginePath::Legacy => {
            if matches!(acq.command, CommandKind::ApiPlan | CommandKind::ApiApply) {
                let (tx, rx) = oneshot::channel();
                runner.shadow_acquire_api(acq, status, rx);
                return resp.map(|body| Tee::new(body, tx).boxed());
            }
            runner.shadow_acquire(acq);
        }
        Operation::ReleasePull { pull, .. } if status.is_success() => {
            runner.shadow_release_pull(pull);
        }
        Operation::ReleaseKey { key } => runner.shadow_release_key(key, status),
        _ => {}
    }
    resp
}

/// A response body passed through untouched, whose first bytes are handed to the shadow
/// comparison when it ends (or is dropped, when the client goes away).
struct Tee {
    inner: ProxyBody,
    kept: BytesMut,
    done: Option<oneshot::Sender<Bytes>>,
}

impl Tee {
    fn new(inner: ProxyBody, done: oneshot::Sender<Bytes>) -> Self {
        Self {
            inner,
            kept: BytesMut::new(),
            done: Some(done),
        }
    }

    fn boxed(self) -> ProxyBody {
        http_body_util::BodyExt::boxed_unsync(self)
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.kept).freeze());
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let room = API_ANSWER_KEPT.saturating_sub(self.kept.len());
                    let take = room.min(data.len());
                    self.kept.extend_from_slice(&data[..take]);
                }
            }
            Poll::Ready(_) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish();
    }
}
