//! The HTTP core shared by the VCS clients: one base URL, one token, timeouts, retries, rate limits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::github_app::GithubAppAuth;
use super::{Secret, VcsError};

/// The header presenting `token` in `style`, marked sensitive; `None` when the token holds
/// bytes a header cannot carry.
fn token_header(style: AuthStyle, token: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, raw) = match style {
        AuthStyle::Bearer => (header::AUTHORIZATION, format!("Bearer {token}")),
        AuthStyle::PrivateToken => (HeaderName::from_static("private-token"), token.to_string()),
        AuthStyle::Token => (header::AUTHORIZATION, format!("token {token}")),
    };
    let mut value = HeaderValue::from_str(&raw).ok()?;
    // Keeps the value out of hyper's debug output and HPACK tables.
    value.set_sensitive(true);
    Some((name, value))
}

/// Reads the token file for one call, trimmed as Atlantis trims it (`strings.TrimSpace`); a
/// file that cannot be read fails the call, as it fails Atlantis's.
async fn read_token_file(
    style: AuthStyle,
    path: &std::path::Path,
) -> Result<(HeaderName, HeaderValue), VcsError> {
    let failed = |detail: String| VcsError::TokenFile {
        path: path.display().to_string(),
        detail,
    };
    // Off the async workers: a file on a slow volume must not stall them.
    let owned = path.to_owned();
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))?;
    // The error never carries the file's bytes.
    token_header(style, text.trim())
        .ok_or_else(|| failed("the token holds characters not allowed in a header".into()))
}

/// Connection settings for one VCS API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// API root, e.g. `https://api.github.com`, `https://ghe.example.com/api/v3`,
    /// `https://gitlab.example.com/api/v4`. `http://` is accepted (tests, internal mirrors).
    pub base_url: String,
    /// Access token; `None` sends unauthenticated requests (public repos, tight rate limits).
    pub token: Option<Secret>,
    /// A file holding the token (Atlantis's `gh-token-file`), read again on every call as
    /// Atlantis reads it, so a rotated token is used at once; `token` is then ignored.
    pub token_file: Option<std::path::PathBuf>,
    /// Bound on one attempt (connect, headers and body).
    pub request_timeout: Duration,
    /// Extra attempts after the first for retryable failures (5xx, 429, timeouts, resets).
    pub max_retries: u32,
    /// First backoff delay; doubled per retry, with up to 50 % jitter added.
    pub backoff: Duration,
    /// Longest `Retry-After`/reset wait we sleep through; longer ones fail at once as rate limited.
    pub max_retry_wait: Duration,
    /// Largest response body accepted.
    pub max_body_bytes: usize,
    /// `User-Agent` sent (GitHub rejects requests without one).
    pub user_agent: String,
    /// PEM bundle of extra CA certificates trusted besides the public (webpki) roots, for
    /// GitHub Enterprise / self-hosted GitLab behind a private CA.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl ApiConfig {
    /// Defaults suited to a webhook path with a ~2 s budget.
    pub fn new(base_url: impl Into<String>, token: Option<Secret>) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            token_file: None,
            request_timeout: Duration::from_millis(1500),
            max_retries: 2,
            backoff: Duration::from_millis(100),
            max_retry_wait: Duration::from_secs(1),
            max_body_bytes: 8 * 1024 * 1024,
            user_agent: concat!("atlantis-lock-proxy/", env!("CARGO_PKG_VERSION")).to_string(),
            extra_ca_pem: None,
        }
    }
}

/// How the token is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthStyle {
    /// `Authorization: Bearer <token>` (GitHub).
    Bearer,
    /// `PRIVATE-TOKEN: <token>` (GitLab personal/project/group tokens).
    PrivateToken,
    /// `Authorization: token <token>` (Gitea access tokens).
    Token,
}

/// A finished response: status, headers and the whole (size-limited) body.
#[derive(Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}

/// An HTTP client bound to one API base URL and one credential.
pub struct ApiClient {
    /// `scheme://authority`, used to refuse pagination links to other hosts.
    origin: String,
    /// Path prefix of the API root without a trailing slash (may be empty).
    base_path: String,
    auth: Auth,
    fixed_headers: Vec<(HeaderName, HeaderValue)>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    cfg: ApiConfig,
    /// Set when the provider said our quota is exhausted: calls fail fast until then.
    blocked_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("origin", &self.origin)
            .field("base_path", &self.base_path)
            .field("token", &self.cfg.token)
            .field("github_app", &matches!(self.auth, Auth::App(_)))
            .finish_non_exhaustive()
    }
}

/// The credential every request carries.
enum Auth {
    /// Unauthenticated (public repositories only, low rate limits).
    None,
    /// A token in a fixed, sensitive header.
    Fixed(HeaderName, HeaderValue),
    /// A token read from this file on every call (a small read, as Atlantis does per request).
    File(AuthStyle, std::path::PathBuf),
    /// A GitHub App's installation token, fetched and refreshed as it expires.
    App(Arc<GithubAppAuth>),
}

/// What one attempt produced, before retry policy is applied.
enum Attempt {
    Done(ApiResponse),
    Retry {
        error: VcsError,
        wait: Option<Duration>,
    },
    Fail(VcsError),
}

impl ApiClient {
    pub(crate) fn new(
        cfg: ApiConfig,
        style: AuthStyle,
        fixed_headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, VcsError> {
        let bad = |reason: &str| VcsError::BadBaseUrl {
            url: cfg.base_url.clone(),
            reason: reason.to_string(),
        };
        let uri: Uri = cfg.base_url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme_str().ok_or_else(|| bad("no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("scheme must be http or https"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let origin = format!("{scheme}://{authority}");
        let base_path = uri.path().trim_end_matches('/').to_string();

        let auth = match (
            &cfg.token_file,
            cfg.token.as_ref().filter(|t| !t.is_empty()),
        ) {
            (Some(path), _) => Auth::File(style, path.clone()),
            (None, None) => Auth::None,
            (None, Some(token)) => {
                let (name, value) = token_header(style, token.expose())
                    .ok_or_else(|| bad("token holds characters not allowed in a header"))?;
                Auth::Fixed(name, value)
            }
        };
        let mut fixed = fixed_headers;
        let ua = HeaderValue::from_str(&cfg.user_agent).map_err(|_| bad("bad user agent"))?;
        fixed.push((header::USER_AGENT, ua));

        let tls = tls_config(cfg.extra_ca_pem.as_deref()).map_err(|r| bad(&r))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self {
            origin,
            base_path,
            auth,
            fixed_headers: fixed,
            client,
            cfg,
            blocked_until: Mutex::new(None),
        })
    }

    /// A client whose requests carry `app`'s installation token (`cfg.token` is ignored).
    pub(crate) fn with_app(
        mut cfg: ApiConfig,
        fixed_headers: Vec<(HeaderName, HeaderValue)>,
        app: Arc<GithubAppAuth>,
    ) -> Result<Self, VcsError> {
        cfg.token = None;
        let mut client = Self::new(cfg, AuthStyle::Bearer, fixed_headers)?;
        client.auth = Auth::App(app);
        Ok(client)
    }

    /// `GET` a path relative to the API root (`/repos/o/r/pulls/1`, query included).
    pub async fn get(&self, path_and_query: &str) -> Result<ApiResponse, VcsError> {
        self.send(Method::GET, path_and_query, None).await
    }

    /// `GET` an absolute URL the API itself handed out (a `Link: rel="next"`), same origin only.
    pub async fn get_link(&self, url: &str) -> Result<ApiResponse, VcsError> {
        let rest = url
            .strip_prefix(&self.origin)
            .filter(|r| r.starts_with('/'))
            .ok_or(VcsError::ForeignLink)?;
        self.send_raw(Method::GET, rest.to_string(), None, None)
            .await
    }

    /// Sends a request to a path relative to the API root; JSON bodies only.
    ///
    /// Returns the response for any status that is not retried to exhaustion; callers decide what
    /// a 404 means. Retryable outcomes (5xx, 429, rate-limit 403, timeouts, transport errors) are
    /// retried `max_retries` times.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Bytes>,
    ) -> Result<ApiResponse, VcsError> {
        let full = format!("{}{}", self.base_path, path_and_query);
        self.send_raw(method, full, json_body, None).await
    }

    /// Like [`ApiClient::send`], with this `Authorization` value instead of the client's own
    /// credential (a GitHub App's JWT for the app's endpoints).
    pub(crate) async fn send_as(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Bytes>,
        authorization: HeaderValue,
    ) -> Result<ApiResponse, VcsError> {
        let full = format!("{}{}", self.base_path, path_and_query);
        self.send_raw(method, full, json_body, Some(authorization))
            .await
    }

    async fn send_raw(
        &self,
        method: Method,
        path_and_query: String,
        json_body: Option<Bytes>,
        authorization: Option<HeaderValue>,
    ) -> Result<ApiResponse, VcsError> {
        let endpoint = format!("{method} {}", path_only(&path_and_query));
        let mut attempt = 0u32;
        // An installation token GitHub refuses is replaced once per request.
        let mut may_renew = true;
        loop {
            self.check_blocked()?;
            let (credential, app_token) = match (&authorization, &self.auth) {
                (Some(v), _) => (Some((header::AUTHORIZATION, v.clone())), None),
                (None, Auth::None) => (None, None),
                (None, Auth::Fixed(name, value)) => (Some((name.clone(), value.clone())), None),
                (None, Auth::File(style, path)) => {
                    (Some(read_token_file(*style, path).await?), None)
                }
                (None, Auth::App(app)) => {
                    let token = app.token().await?;
                    (
                        Some((header::AUTHORIZATION, token.header()?)),
                        Some((app, token.serial)),
                    )
                }
            };
            let outcome = self
                .attempt(
                    &method,
                    &path_and_query,
                    json_body.clone(),
                    &endpoint,
                    credential,
                )
                .await;
            match outcome {
                Attempt::Done(resp) => {
                    if let Some((app, serial)) = app_token
                        && resp.status == StatusCode::UNAUTHORIZED
                        && may_renew
                    {
                        // Revoked, or expired early by clock skew: fetch another, once.
                        tracing::debug!(%endpoint, "installation token refused; renewing it");
                        app.invalidate(serial);
                        may_renew = false;
                        continue;
                    }
                    return Ok(resp);
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { error, wait } => {
                    if attempt >= self.cfg.max_retries {
                        return Err(error);
                    }
                    let delay = match wait {
                        Some(w) if w > self.cfg.max_retry_wait => return Err(error),
                        Some(w) => w,
                        None => self.backoff(attempt),
                    };
                    tracing::debug!(%endpoint, attempt, ?delay, error = %error, "retrying VCS API call");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        path_and_query: &str,
        json_body: Option<Bytes>,
        endpoint: &str,
        credential: Option<(HeaderName, HeaderValue)>,
    ) -> Attempt {
        let uri = format!("{}{}", self.origin, path_and_query);
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in &self.fixed_headers {
            builder = builder.header(name, value.clone());
        }
        if let Some((name, value)) = credential {
            builder = builder.header(name, value);
        }
        let body = match json_body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(b)
            }
            None => Full::new(Bytes::new()),
        };
        let req = match builder.body(body) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Fail(VcsError::BadResponse {
                    endpoint: endpoint.to_string(),
                    detail: format!("cannot build request: {e}"),
                });
            }
        };
        let limit = self.cfg.max_body_bytes;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| {
                // hyper-util's error text names the failure kind, never headers.
                VcsError::Transport(e.to_string())
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| VcsError::Transport(format!("reading body: {e}")))?
                .to_bytes();
            Ok::<_, VcsError>(ApiResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let resp = match tokio::time::timeout(self.cfg.request_timeout, call).await {
            Err(_) => {
                return Attempt::Retry {
                    error: VcsError::Timeout,
                    wait: None,
                };
            }
            Ok(Err(e)) => {
                return Attempt::Retry {
                    error: e,
                    wait: None,
                };
            }
            Ok(Ok(r)) => r,
        };
        tracing::debug!(%endpoint, status = resp.status.as_u16(), "VCS API call");
        self.classify(resp, endpoint)
    }

    /// Applies the providers' rate-limit and error conventions to one response.
    fn classify(&self, resp: ApiResponse, endpoint: &str) -> Attempt {
        let status = resp.status;
        let limits = RateLimit::from_headers(&resp.headers);
        let limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (limits.retry_after.is_some() || limits.remaining == Some(0)));
        if limited {
            let wait = limits.wait();
            if let Some(w) = wait {
                self.block_for(w);
            }
            return Attempt::Retry {
                error: VcsError::RateLimited { retry_after: wait },
                wait: Some(wait.unwrap_or(Duration::from_secs(60))),
            };
        }
        if limits.remaining == Some(0) {
            // This call succeeded but was the last of the window: don't spend the next ones.
            if let Some(w) = limits.wait() {
                self.block_for(w);
            }
        }
        if status.is_server_error() {
            return Attempt::Retry {
                error: VcsError::Status {
                    status: status.as_u16(),
                    endpoint: endpoint.to_string(),
                },
                wait: limits.retry_after,
            };
        }
        Attempt::Done(resp)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.backoff.saturating_mul(1u32 << attempt.min(10));
        let jitter_ms = base.as_millis().min(u128::from(u32::MAX)) as u64 / 2;
        base + Duration::from_millis(rand::random_range(0..=jitter_ms))
    }

    fn block_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut guard) = self.blocked_until.lock() {
            *guard = Some(guard.map_or(until, |cur| cur.max(until)));
        }
    }

    fn check_blocked(&self) -> Result<(), VcsError> {
        let guard = match self.blocked_until.lock() {
            Ok(g) => g,
            Err(_) => return Ok(()),
        };
        match *guard {
            Some(until) if until > Instant::now() => Err(VcsError::RateLimited {
                retry_after: Some(until - Instant::now()),
            }),
            _ => Ok(()),
        }
    }
}

/// rustls with the ring provider, the public webpki roots and any extra CAs.
///
/// The provider is named explicitly rather than taken from a process default, so another
/// crate's choice can never change how this client verifies servers.
fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("CA bundle is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA bundle holds an unusable certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("CA bundle holds no certificate".into());
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The rate-limit headers of GitHub (`X-RateLimit-*`), GitLab (`RateLimit-*`) and HTTP (`Retry-After`).
#[derive(Debug, Default, PartialEq)]
struct RateLimit {
    retry_after: Option<Duration>,
    remaining: Option<u64>,
    /// Time until the window resets.
    reset_in: Option<Duration>,
}

impl RateLimit {
    fn from_headers(h: &HeaderMap) -> Self {
        let num = |names: &[&str]| {
            names.iter().find_map(|n| {
                h.get(*n)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        };
        // Retry-After may also be an HTTP date; providers send seconds, so a date is ignored.
        let retry_after = num(&["retry-after"]).map(Duration::from_secs);
        let remaining = num(&["x-ratelimit-remaining", "ratelimit-remaining"]);
        let reset_in = num(&["x-ratelimit-reset", "ratelimit-reset"]).map(|epoch| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Duration::from_secs(epoch.saturating_sub(now))
        });
        Self {
            retry_after,
            remaining,
            reset_in,
        }
    }

    /// How long to wait: `Retry-After` first, else the reset time once the quota is spent.
    fn wait(&self) -> Option<Duration> {
        self.retry_after.or(match self.remaining {
            Some(0) => self.reset_in,
            _ => None,
        })
    }
}

fn path_only(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let rl = RateLimit::from_headers(&headers(&[
            ("retry-after", "3"),
            ("x-ratelimit-remaining", "0"),
        ]));
        assert_eq!(rl.wait(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn spent_quota_waits_until_reset() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let rl = RateLimit::from_headers(&headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", &(now + 30).to_string()),
        ]));
        let w = rl.wait().unwrap();
        assert!(
            w <= Duration::from_secs(30) && w >= Duration::from_secs(28),
            "{w:?}"
        );
        let fine = RateLimit::from_headers(&headers(&[("x-ratelimit-remaining", "10")]));
        assert_eq!(fine.wait(), None);
    }

    #[test]
    fn base_url_is_validated_and_token_hidden() {
        let cfg = ApiConfig::new("ftp://x", None);
        assert!(ApiClient::new(cfg, AuthStyle::Bearer, vec![]).is_err());
        let cfg = ApiConfig::new(
            "https://ghe.example.com/api/v3/",
            Some(Secret::new("tok123")),
        );
        let c = ApiClient::new(cfg, AuthStyle::Bearer, vec![]).unwrap();
        assert_eq!(c.base_path, "/api/v3");
        assert!(!format!("{c:?}").contains("tok123"));
    }

    #[test]
    fn a_bad_ca_bundle_is_a_config_error() {
        let mut cfg = ApiConfig::new("https://gitlab.internal/api/v4", None);
        cfg.extra_ca_pem = Some(b"not a certificate".to_vec());
        let err = ApiClient::new(cfg, AuthStyle::PrivateToken, vec![]).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[tokio::test]
    async fn foreign_pagination_links_are_refused() {
        let cfg = ApiConfig::new("https://api.github.com", Some(Secret::new("t")));
        let c = ApiClient::new(cfg, AuthStyle::Bearer, vec![]).unwrap();
        let err = c.get_link("https://evil.example/next").await.unwrap_err();
        assert!(matches!(err, VcsError::ForeignLink));
    }
}
