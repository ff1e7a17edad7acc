//! The rescue layer: the only place a [`Failure`] becomes a response (its status, the
//! `x-lock-proxy-error` marker, `Retry-After`), so every layer below may simply fail.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::{self, Either, Map, Ready};
use http::{Request, Response};
use tower::{Layer, Service};

use super::error::Failure;
use crate::upstream::ProxyBody;

/// Turns the stack's failures into the proxy's own answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue {
            inner,
            unready: None,
        }
    }
}

/// See [`RescueLayer`].
pub struct Rescue<S> {
    inner: S,
    // The stack could not take a request: the next call is answered with this.
    unready: Option<Failure>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            unready: None,
        }
    }
}

type Answered = Result<Response<ProxyBody>, Infallible>;

fn answer(result: Result<Response<ProxyBody>, Failure>) -> Answered {
    Ok(result.unwrap_or_else(Failure::into_response))
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Failure>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Either<
        Map<S::Future, fn(Result<Response<ProxyBody>, Failure>) -> Answered>,
        Ready<Answered>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.unready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(failure)) => {
                self.unready = Some(failure);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.unready.take() {
            Some(failure) => Either::Right(future::ready(answer(Err(failure)))),
            None => Either::Left(self.inner.call(req).map(answer as fn(_) -> _)),
        }
    }
}
