//! upstream: the pooled HTTP/1.1 client to Atlantis, header hygiene, and the body type they share.

pub mod atlantis_api;
mod headers;
pub mod redact;
pub mod replay;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use headers::{add_forwarded, is_job_websocket, is_upgrade, strip_hop_by_hop};

use crate::config::UpstreamConfig;

/// Any error a body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type that flows through the proxy, both directions.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body from bytes (buffered requests, replays, proxy-made answers).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response body from Atlantis, as the one body type.
fn boxed(body: Incoming) -> ProxyBody {
    body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}

/// Why Atlantis could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, reset, or a malformed answer.
    #[error("Atlantis is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// No response head within `upstream.timeout`.
    #[error("Atlantis did not answer within {0:?}")]
    Timeout(Duration),
}

/// The client that talks to Atlantis.
#[derive(Clone, Debug)]
pub struct Upstream {
    transport: Transport,
    base: Uri,
    timeout: Duration,
    secrets: redact::HeaderSecrets,
}

/// An in-process Atlantis: a function from request to answer (tests, embedding).
pub type AtlantisFn = Arc<
    dyn Fn(Request<ProxyBody>) -> BoxFuture<'static, Result<Response<ProxyBody>, BoxError>>
        + Send
        + Sync,
>;

/// How requests reach Atlantis.
#[derive(Clone)]
enum Transport {
    /// The pooled HTTP/1.1 client.
    Http(Box<Client<HttpConnector, ProxyBody>>),
    /// An in-process Atlantis.
    InProcess(AtlantisFn),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Http(_) => "Http",
            Transport::InProcess(_) => "InProcess",
        })
    }
}

impl Upstream {
    /// Builds a pooled keep-alive client for the configured Atlantis.
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .build(connector);
        Self {
            transport: Transport::Http(Box::new(client)),
            base: cfg.url.clone(),
            timeout: cfg.timeout,
            secrets: redact::HeaderSecrets::default(),
        }
    }

    /// An Atlantis that is a function in this process (`upstream.url` still names it in URIs,
    /// `upstream.timeout` still bounds it): the proxy without sockets, for tests.
    pub fn in_process(cfg: &UpstreamConfig, atlantis: AtlantisFn) -> Self {
        Self {
            transport: Transport::InProcess(atlantis),
            base: cfg.url.clone(),
            timeout: cfg.timeout,
            secrets: redact::HeaderSecrets::default(),
        }
    }

    /// The same client, knowing the configured secrets that queued requests are stored without
    /// and replayed with.
    pub fn with_secrets(mut self, secrets: redact::HeaderSecrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// The secrets taken out of stored requests (and put back at replay).
    pub fn secrets(&self) -> &redact::HeaderSecrets {
        &self.secrets
    }

    /// The Atlantis base URL.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// Sends a request whose URI is origin-form (`/path?query`) to Atlantis.
    ///
    /// The path and query are appended to the base URL byte for byte (no re-encoding), and the
    /// wait for the response head is bounded by `upstream.timeout`.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        *req.uri_mut() = self.target(req.uri())?;
        let answer = async {
            match &self.transport {
                Transport::Http(client) => client
                    .request(req)
                    .await
                    .map(|resp| resp.map(boxed))
                    .map_err(|e| Box::new(e) as BoxError),
                Transport::InProcess(atlantis) => atlantis(req).await,
            }
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unavailable(e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// `GET {base}{path}` with a short timeout, for readiness probes and the reconciler.
    pub async fn get(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), UpstreamError> {
        let req = Request::get(path)
            .body(full(Bytes::new()))
            .map_err(|e| UpstreamError::Unavailable(Box::new(e)))?;
        let fut = async {
            let resp = self.send(req).await?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(UpstreamError::Unavailable)?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
    }

    fn target(&self, uri: &Uri) -> Result<Uri, UpstreamError> {
        let prefix = self.base.path().trim_end_matches('/');
        let pq = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(
            format!("{prefix}{pq}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| UpstreamError::Unavailable(Box::new(e)))?,
        );
        Uri::from_parts(parts).map_err(|e| UpstreamError::Unavailable(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        let cfg = crate::config::Config::from_yaml(&format!("upstream: {{url: '{url}'}}"))
            .unwrap()
            .upstream;
        Upstream::new(&cfg)
    }

    #[tokio::test]
    async fn paths_and_queries_are_appended_without_reencoding() {
        let u = upstream("http://atlantis:4141");
        let t = u
            .target(
                &"/lock?id=owner%252Frepo%252F.%252Fdefault%252F"
                    .parse()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(
            t.to_string(),
            "http://atlantis:4141/lock?id=owner%252Frepo%252F.%252Fdefault%252F"
        );
        let u = upstream("http://atlantis:4141/prefix/");
        assert_eq!(
            u.target(&"/events".parse().unwrap()).unwrap().to_string(),
            "http://atlantis:4141/prefix/events"
        );
    }
}
