//! The routing layer: the weighted split (read lock-free) picks the path of the request's
//! repository — legacy or enhanced, shadowed or not — and the [`Route`] travels on in the
//! request's extensions for the shadow and gate layers.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::Failure;
use super::facts::{AnswerFuture, Inner, note};
use crate::classify::Operation;
use crate::route::{Route, Router};
use crate::telemetry::spans;
use crate::upstream::ProxyBody;

/// Routes lock traffic by the split.
#[derive(Clone)]
pub struct RouteLayer {
    router: Arc<Router>,
}

impl RouteLayer {
    /// Routes by `router`'s live split.
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Routing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Routing {
            inner,
            router: self.router.clone(),
        }
    }
}

/// See [`RouteLayer`].
#[derive(Clone)]
pub struct Routing<S> {
    inner: S,
    router: Arc<Router>,
}

impl<S> Service<Request<ProxyBody>> for Routing<S>
where
    S: Inner,
{
    type Response = Response<ProxyBody>;
    type Error = Failure;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ProxyBody>) -> Self::Future {
        let Some(repo) = req
            .extensions()
            .get::<Operation>()
            .and_then(Operation::repo)
        else {
            return Box::pin(self.inner.call(req));
        };
        let route = {
            let _s = spans::route(repo).entered();
            self.router.route(repo)
        };
        req.extensions_mut().insert(route);
        let answer = self.inner.call(req);
        Box::pin(async move { note(answer.await, route) })
    }
}

/// The request's route, if it has one.
pub fn route_of<B>(req: &Request<B>) -> Option<Route> {
    req.extensions().get::<Route>().copied()
}
