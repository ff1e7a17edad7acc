//! A tiny HTTP client for tests (hyper-util, no extra dependencies).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// A received response, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as one of the admin API's types (`atlantis_lock_proxy::admin::api`).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not a {} ({e}): {}",
                std::any::type_name::<T>(),
                self.text()
            )
        })
    }
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static C: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    C.get_or_init(|| Client::builder(TokioExecutor::new()).build(HttpConnector::new()))
}

/// Sends one request; `headers` are added as given.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = client().request(req).await.expect("request failed");
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(url: &str) -> Reply {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// Like [`send`], but a transport failure is an `Err` (for load and fault tests), and the whole
/// exchange is bounded by `timeout`.
pub async fn try_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    timeout: std::time::Duration,
) -> Result<Reply, String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = client().request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// Waits (at most `within`) until the proxy on `admin_port` answers `/readyz` with 200, as a
/// load balancer would before sending it traffic.
pub async fn wait_ready(admin_port: u16, within: Duration) -> bool {
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        let r = try_send(Method::GET, &url, &[], Vec::new(), Duration::from_secs(2)).await;
        if r.is_ok_and(|r| r.status == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
