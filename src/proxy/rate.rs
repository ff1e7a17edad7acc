//! A minimum body rate: a client that trickles its body (one byte every 20 s never pauses longer
//! than `server.body-read-timeout`) is cut off once its average falls below
//! `server.min-body-rate`, after a short grace.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::upstream::BoxError;

/// How long a body may take before its rate counts (a slow start, a small first write).
pub const GRACE: Duration = Duration::from_secs(5);

/// The body arrived slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("request body arrived slower than the minimum rate")]
pub struct TooSlow;

/// A request body held to an average of at least `rate` bytes per second after [`GRACE`].
pub struct MinRate<B> {
    inner: Pin<Box<B>>,
    start: Instant,
    received: u64,
    rate: u64,
}

impl<B> MinRate<B> {
    /// Wraps `inner`; a `rate` of 0 checks nothing. The clock starts now.
    pub fn new(inner: B, rate: usize) -> Self {
        Self {
            inner: Box::pin(inner),
            start: Instant::now(),
            received: 0,
            rate: rate as u64,
        }
    }

    fn too_slow(&self) -> bool {
        let Some(counted) = self.start.elapsed().checked_sub(GRACE) else {
            return false;
        };
        self.rate > 0 && (self.received as f64) < self.rate as f64 * counted.as_secs_f64()
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            this.received += f.data_ref().map_or(0, |d| d.len() as u64);
            if this.too_slow() && !this.inner.is_end_stream() {
                return Poll::Ready(Some(Err(Box::new(TooSlow))));
            }
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Holds every request body to [`MinRate`].
#[derive(Clone, Copy, Debug)]
pub struct MinRateLayer {
    rate: usize,
}

impl MinRateLayer {
    /// At least `rate` bytes per second after [`GRACE`]; 0 checks nothing.
    pub fn new(rate: usize) -> Self {
        Self { rate }
    }
}

impl<S> tower::Layer<S> for MinRateLayer {
    type Service = MinRateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MinRateService {
            inner,
            rate: self.rate,
        }
    }
}

/// See [`MinRateLayer`].
#[derive(Clone, Debug)]
pub struct MinRateService<S> {
    inner: S,
    rate: usize,
}

impl<S, B> tower::Service<http::Request<B>> for MinRateService<S>
where
    S: tower::Service<http::Request<MinRate<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let rate = self.rate;
        self.inner.call(req.map(|b| MinRate::new(b, rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_and_a_steady_body_is_not() {
        // One byte every 20 s, announced as 100 bytes.
        let trickle = futures_util::stream::unfold(0u8, |n| async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            (n < 100).then(|| {
                (
                    Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))),
                    n + 1,
                )
            })
        });
        let body = MinRate::new(StreamBody::new(trickle), 1024);
        let Err(err) = body.collect().await else {
            panic!("a trickle must be cut off");
        };
        assert!(err.is::<TooSlow>());

        let steady = futures_util::stream::unfold(0u8, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (n < 20).then(|| {
                (
                    Ok::<_, BoxError>(Frame::data(Bytes::from(vec![0u8; 4096]))),
                    n + 1,
                )
            })
        });
        let got = MinRate::new(StreamBody::new(steady), 1024)
            .collect()
            .await
            .unwrap();
        assert_eq!(got.to_bytes().len(), 20 * 4096);
    }
}
