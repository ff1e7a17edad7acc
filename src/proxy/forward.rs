//! Forwarding one request to Atlantis: the stack's innermost service, plus the websocket
//! splice the upgrade layer uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower::Service;
use tracing::Instrument;

use super::ProxyError;
use super::facts::{AnswerFuture, ClientAddr};
use crate::telemetry::metrics::labels::{StatusClass, UpstreamOutcome};
use crate::telemetry::{self, Metrics};
use crate::upstream::{BoxError, ProxyBody, Upstream, add_forwarded, full, strip_hop_by_hop};

/// Sends requests to Atlantis: the service at the bottom of the stack.
#[derive(Clone)]
pub struct Forward {
    upstream: Upstream,
    metrics: Arc<Metrics>,
    // The limit a streamed body broke, for the 413.
    max_body_size: usize,
}

impl Forward {
    /// Forwards to `upstream`, timing each call into `metrics`.
    pub fn new(upstream: Upstream, metrics: Arc<Metrics>, max_body_size: usize) -> Self {
        Self {
            upstream,
            metrics,
            max_body_size,
        }
    }
}

impl Service<Request<ProxyBody>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = super::Failure;
    type Future = AnswerFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let client = client_of(&req);
            Ok(forward(&this, client, req).await?)
        })
    }
}

/// The client's address, as the connection set it (unspecified in tests that skip it).
pub fn client_of<B>(req: &Request<B>) -> SocketAddr {
    req.extensions()
        .get::<ClientAddr>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// The error a failed body read becomes: too large, too slow, or unreadable.
pub fn read_error(e: BoxError, limit: usize) -> ProxyError {
    body_error(&*e, limit).unwrap_or_else(|| ProxyError::BodyUnreadable(e.to_string()))
}

/// Wraps a body for streaming to Atlantis, still bounded by the size limit. Its read errors are
/// marked as the client's ([`ClientBodyError`]), so a broken upload is a 400, not a 502.
pub fn stream<B>(body: B, limit: usize) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Limited::new(body, limit)
        .map_err(|e| Box::new(ClientBodyError(e)) as BoxError)
        .boxed_unsync()
}

/// A client's request body failed while it was streamed to Atlantis (bad chunking, reset, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(#[source] BoxError);

/// Sends a request to Atlantis and streams its answer back, hop-by-hop headers removed.
async fn forward(
    state: &Forward,
    client: SocketAddr,
    mut req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    prepare(&mut req, client, false);
    let span = telemetry::spans::upstream(req.method(), req.uri().path());
    // Atlantis (and whatever it calls) continues this trace under the upstream span.
    telemetry::inject_headers(&span, req.headers_mut());
    let start = Instant::now();
    let result = state.upstream.send(req).instrument(span.clone()).await;
    let took = start.elapsed();
    match &result {
        Ok(resp) => span.record("http.response.status_code", resp.status().as_u16()),
        Err(_) => span.record("otel.status_code", "ERROR"),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            let err = ProxyError::from(e);
            // A body that broke the size or time limit surfaces as a failed upstream call.
            if let ProxyError::UpstreamUnavailable(src) = &err
                && let Some(body_err) = body_error(&**src, state.max_body_size)
            {
                return Err(body_err);
            }
            let class = if matches!(err, ProxyError::UpstreamTimeout(_)) {
                UpstreamOutcome::Timeout
            } else {
                UpstreamOutcome::Error
            };
            state.metrics.upstream(class, took);
            return Err(err);
        }
    };
    let class = UpstreamOutcome::Status(StatusClass::of(resp.status()));
    state.metrics.upstream(class, took);
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(parts, body))
}

/// Passes a websocket upgrade (`/jobs/{id}/ws` log streams) through in both directions.
pub async fn upgrade<B>(
    state: &Forward,
    client: SocketAddr,
    mut req: Request<B>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let client_side = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let mut up_req = Request::from_parts(parts, full(Bytes::new()));
    prepare(&mut up_req, client, true);
    let start = Instant::now();
    let mut resp = state.upstream.send(up_req).await?;
    state.metrics.upstream(
        UpstreamOutcome::Status(StatusClass::of(resp.status())),
        start.elapsed(),
    );
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        return Ok(Response::from_parts(parts, body));
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client_side, upstream_side) {
            Ok((c, u)) => {
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    tracing::debug!(error = %e, "websocket stream ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade did not complete"),
        }
    });
    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    Ok(Response::from_parts(parts, full(Bytes::new())))
}

/// Header hygiene and `X-Forwarded-*` for a request about to go to Atlantis.
pub fn prepare<B>(req: &mut Request<B>, client: SocketAddr, keep_upgrade: bool) {
    strip_hop_by_hop(req.headers_mut(), keep_upgrade);
    add_forwarded(req.headers_mut(), client);
    // Keep-alive toward Atlantis even for an HTTP/1.0 client.
    *req.version_mut() = Version::HTTP_11;
}

/// Finds a size-limit or body-timeout error anywhere in an error's source chain.
/// A body the client broke in another way is the client's fault too (400, no upstream error).
fn body_error(err: &(dyn std::error::Error + 'static), limit: usize) -> Option<ProxyError> {
    let chain = || std::iter::successors(Some(err), |e| e.source());
    for e in chain() {
        if e.is::<http_body_util::LengthLimitError>() {
            return Some(ProxyError::BodyTooLarge(limit));
        }
        if e.is::<tower_http::timeout::TimeoutError>() || e.is::<super::rate::TooSlow>() {
            return Some(ProxyError::BodyTimeout);
        }
    }
    chain()
        .find(|e| e.is::<ClientBodyError>())
        .map(|e| ProxyError::BodyUnreadable(e.to_string()))
}
