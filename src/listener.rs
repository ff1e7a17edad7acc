//! listener: the accept loop both listeners share, with the limits a hostile client meets first:
//! a connection cap, a header-read timeout, an optional idle timeout, and a backoff (logged once
//! per interval) when accepting fails, as it does when the process runs out of file descriptors.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a failing `accept` is logged at most.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest pause after a failed `accept`.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What one listener allows its clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Which listener, for logs.
    pub name: &'static str,
    /// Open connections at most; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request head (also while idle between requests).
    pub header_read_timeout: Duration,
    /// Close a connection that moved no byte for this long.
    pub idle_timeout: Option<Duration>,
    /// How long in-flight requests may finish once `stop` fires.
    pub drain: Duration,
}

/// Logs a repeating failure once per interval, with how often it happened meanwhile.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn record(&mut self, name: &str, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < ACCEPT_LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            listener = name,
            error = %e,
            repeated = self.suppressed,
            "accept failed (out of file descriptors?); backing off"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Serves HTTP/1.1 connections from `listener` until `stop`, each with a service from `make`.
pub async fn serve<M, S, R>(listener: TcpListener, limits: Limits, make: M, stop: CancellationToken)
where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    R: http_body::Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout);
    let mut failures = Throttled {
        last: None,
        suppressed: 0,
    };
    let mut backoff = Duration::from_millis(5);
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, client) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    failures.record(limits.name, &e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(5);
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(AtomicU64::new(0));
        let io = Tracked {
            inner: stream,
            epoch: Instant::now(),
            last: activity.clone(),
        };
        let epoch = io.epoch;
        let conn = builder
            .serve_connection(TokioIo::new(io), make(client))
            .with_upgrades();
        let stop = stop.clone();
        let idle = limits.idle_timeout;
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let idle_check = async {
                let Some(idle) = idle else {
                    return std::future::pending::<()>().await;
                };
                loop {
                    let last = epoch + Duration::from_millis(activity.load(Ordering::Relaxed));
                    if last.elapsed() >= idle {
                        return;
                    }
                    tokio::time::sleep_until(last + idle).await;
                }
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = idle_check => {
                    tracing::debug!(%client, "idle connection closed");
                    return;
                }
                () = stop.cancelled() => {
                    // Finish the request in flight, then close instead of keeping it alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %client, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = limits.name,
            "drain period over: closing remaining connections"
        );
    }
}

/// A socket that records when it last moved a byte (milliseconds since `epoch`).
struct Tracked<T> {
    inner: T,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
