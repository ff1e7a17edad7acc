//! A request kept for later: the durable form of a queued webhook, and its replay to Atlantis.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::redact::{HeaderSecrets, MissingSecret, Redaction};
use super::{ProxyBody, Upstream, UpstreamError, full};
use crate::config::RetryConfig;

/// The original request, exactly as it would have been forwarded: method, path and query,
/// headers (hop-by-hop removed, `X-Forwarded-*` added) and body bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// HTTP method.
    pub method: String,
    /// Origin-form path and query, byte for byte.
    pub uri: String,
    /// Header pairs in their original order; values base64 (they may be non-UTF-8).
    headers: Vec<(String, String)>,
    /// Body, base64.
    body: String,
    /// W3C `traceparent` of the request that was queued, so a replay can link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The VCS the request came from (`github`, …), for pull-request notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs: Option<String>,
    /// The command as a user would type it after `atlantis` (`plan`, `apply`), for notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Headers whose secret was taken out before the request was stored (their value in
    /// `headers` is empty until [`StoredRequest::restore_secrets`] puts it back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    redacted: Vec<Redaction>,
}

/// A stored request that cannot be read back (corrupt or from an incompatible version).
#[derive(Debug, thiserror::Error)]
#[error("stored request is unreadable: {0}")]
pub struct StoredRequestError(String);

impl StoredRequest {
    /// Captures a request's parts and body bytes.
    pub fn capture(parts: &http::request::Parts, body: &Bytes) -> Self {
        Self {
            method: parts.method.as_str().to_string(),
            uri: parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), B64.encode(v.as_bytes())))
                .collect(),
            body: B64.encode(body),
            traceparent: None,
            vcs: None,
            command: None,
            redacted: Vec::new(),
        }
    }

    /// Takes every configured secret out of the headers (and drops credential headers that
    /// carry none), so the stored form holds no secret.
    pub fn redact(&mut self, secrets: &HeaderSecrets) {
        let mut raw: Vec<(String, Vec<u8>)> = self
            .headers
            .drain(..)
            .map(|(k, v)| {
                let v = B64.decode(&v).unwrap_or_default();
                (k, v)
            })
            .collect();
        self.redacted = secrets.strip(&mut raw);
        self.headers = raw.into_iter().map(|(k, v)| (k, B64.encode(v))).collect();
    }

    /// Puts the redacted secrets back from the configuration. A header whose secret is not
    /// configured any more is left out (and reported).
    pub fn restore_secrets(&mut self, secrets: &HeaderSecrets) -> Vec<MissingSecret> {
        let mut missing = Vec::new();
        let mut gone = Vec::new();
        for r in std::mem::take(&mut self.redacted) {
            match secrets.restore(&r) {
                Ok(v) => {
                    if let Some(h) = self.headers.get_mut(r.header) {
                        h.1 = B64.encode(v);
                    }
                }
                Err(e) => {
                    gone.push(r.header);
                    missing.push(e);
                }
            }
        }
        let mut i = 0;
        self.headers.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
        missing
    }

    /// Serialized form stored in the engine's waiter record.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the serialized form back.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoredRequestError> {
        serde_json::from_slice(bytes).map_err(|e| StoredRequestError(e.to_string()))
    }

    /// The body bytes.
    pub fn body(&self) -> Result<Bytes, StoredRequestError> {
        B64.decode(&self.body)
            .map(Bytes::from)
            .map_err(|e| StoredRequestError(e.to_string()))
    }

    /// One header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| B64.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
    }

    /// Replaces every value of header `name` with `value` (e.g. a replay's own `traceparent`).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers
            .push((name.to_ascii_lowercase(), B64.encode(value.as_bytes())));
    }

    /// Rebuilds the request to send to Atlantis.
    pub fn to_request(&self) -> Result<Request<ProxyBody>, StoredRequestError> {
        let bad = |e: &dyn std::fmt::Display| StoredRequestError(e.to_string());
        let method = Method::from_bytes(self.method.as_bytes()).map_err(|e| bad(&e))?;
        let mut req = Request::builder()
            .method(method)
            .uri(self.uri.as_str())
            .body(full(self.body()?))
            .map_err(|e| bad(&e))?;
        let h = req.headers_mut();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(&e))?;
            let value = B64.decode(v).map_err(|e| bad(&e))?;
            h.append(name, HeaderValue::from_bytes(&value).map_err(|e| bad(&e))?);
        }
        Ok(req)
    }
}

/// What Atlantis made of a replay.
#[derive(Debug)]
pub enum ReplayOutcome {
    /// Atlantis answered (any status below 500): the request is delivered.
    Delivered {
        /// Atlantis's status.
        status: StatusCode,
    },
    /// Atlantis kept failing; the waiter stays durable and will be offered again.
    Failed(String),
}

/// Sends a stored request to Atlantis, retrying 5xx and transport errors with exponential backoff.
pub async fn replay(
    upstream: &Upstream,
    stored: &StoredRequest,
    retry: &RetryConfig,
) -> ReplayOutcome {
    let attempts = if retry.enabled { retry.max_attempts } else { 1 };
    let mut delay = retry.base_delay;
    let mut last = String::new();
    let mut stored = stored.clone();
    for missing in stored.restore_secrets(upstream.secrets()) {
        tracing::warn!(error = %missing, uri = %stored.uri, "replayed without a secret header");
    }
    let stored = &stored;
    for attempt in 1..=attempts {
        let req = match stored.to_request() {
            Ok(r) => r,
            Err(e) => return ReplayOutcome::Failed(e.to_string()),
        };
        match upstream.send(req).await {
            Ok(resp) if !resp.status().is_server_error() => {
                let status = resp.status();
                // Read the answer to the end so the pooled connection can be reused.
                let _ = resp.into_body().collect().await;
                return ReplayOutcome::Delivered { status };
            }
            Ok(resp) => last = format!("Atlantis answered {}", resp.status()),
            Err(UpstreamError::Timeout(t)) => {
                last = format!("Atlantis did not answer within {t:?}")
            }
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(attempt, attempts, error = %last, uri = %stored.uri, "replay to Atlantis failed");
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    ReplayOutcome::Failed(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_request_round_trips_byte_for_byte() {
        let req = Request::post("/events?x=%252F")
            .header("x-hub-signature-256", "sha256=abc")
            .header(
                "x-binary",
                HeaderValue::from_bytes(&[0xff, 0x20, 0x7e]).unwrap(),
            )
            .header("x-dup", "1")
            .header("x-dup", "2")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let body = Bytes::from_static(b"{\"a\":1}\n\x00\xff");
        let stored = StoredRequest::capture(&parts, &body);
        let back = StoredRequest::decode(&stored.encode()).unwrap();
        assert_eq!(back, stored);
        let rebuilt = back.to_request().unwrap();
        assert_eq!(rebuilt.uri(), "/events?x=%252F");
        assert_eq!(
            rebuilt.headers()["x-binary"].as_bytes(),
            &[0xff, 0x20, 0x7e]
        );
        let dups: Vec<_> = rebuilt.headers().get_all("x-dup").iter().collect();
        assert_eq!(dups, ["1", "2"]);
        assert_eq!(back.body().unwrap(), body);
        assert_eq!(
            back.header("X-Hub-Signature-256").as_deref(),
            Some("sha256=abc")
        );
    }

    #[test]
    fn a_redacted_request_stores_no_secret_and_rebuilds_the_same_headers() {
        let mut secrets = HeaderSecrets::default();
        secrets.add(
            "atlantis.webhook-secrets.gitlab",
            Some(&crate::vocab::Secret::new("s3cr3t-token")),
        );
        let req = Request::post("/events")
            .header("x-gitlab-event", "Note Hook")
            .header("x-gitlab-token", "s3cr3t-token")
            .header("x-after", "1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut stored = StoredRequest::capture(&parts, &Bytes::from_static(b"{}"));
        stored.redact(&secrets);
        let bytes = stored.encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cr3t-token"), "{text}");
        assert!(!text.contains(&B64.encode("s3cr3t-token")), "{text}");
        let mut back = StoredRequest::decode(&bytes).unwrap();
        assert!(back.restore_secrets(&secrets).is_empty());
        let rebuilt = back.to_request().unwrap();
        let names: Vec<&str> = rebuilt.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-gitlab-event", "x-gitlab-token", "x-after"]);
        assert_eq!(rebuilt.headers()["x-gitlab-token"], "s3cr3t-token");
        // Without the secret configured, the header is left out rather than sent empty.
        let mut again = StoredRequest::decode(&bytes).unwrap();
        assert_eq!(again.restore_secrets(&HeaderSecrets::default()).len(), 1);
        assert!(again.header("x-gitlab-token").is_none());
    }
}
