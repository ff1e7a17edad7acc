//! GitHub App authentication, as Atlantis does it with `--gh-app-id` and `--gh-app-key(-file)`:
//! the app signs a short JWT (RS256, `iss` = app id) and trades it at
//! `POST /app/installations/{id}/access_tokens` for an installation token (one hour), which then
//! authenticates every repository call. Without `--gh-app-installation-id` the installation is
//! found through `GET /app/installations`, which must list exactly one (Atlantis's rule).
//!
//! One [`GithubAppAuth`] is shared by every client of the process: the token is cached until
//! shortly before its `expires_at`, one refresh serves every concurrent caller (and survives a
//! caller that gives up), and a token GitHub rejects with 401 is dropped so the next call fetches
//! another. Neither the key, the JWT nor the token is ever logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use http::header::HeaderValue;
use http::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use super::http::{ApiClient, ApiConfig, ApiResponse, AuthStyle};
use super::{Secret, VcsError};

/// How far in the past the JWT's `iat` is put, against clock drift (GitHub's advice: 60 s).
const IAT_BACKDATE: Duration = Duration::from_secs(60);
/// The JWT's lifetime from `iat`; GitHub refuses an `exp` more than 10 minutes ahead of its clock.
const JWT_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// A token is refreshed this long before `expires_at` (a quarter of its life when shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// After GitHub refuses the app (bad key, unknown installation), callers fail fast this long
/// instead of each asking again.
const REFUSED_BACKOFF: Duration = Duration::from_secs(2);

/// A GitHub App's private key, parsed once. `Debug` prints `***`.
#[derive(Clone)]
pub struct GithubAppKey(Arc<jsonwebtoken::EncodingKey>);

impl std::fmt::Debug for GithubAppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Why a private key cannot be used. The messages never hold any of the key's bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppKeyError {
    /// Not PEM, or PEM of something other than an RSA private key.
    #[error(
        "is not an RSA private key in PEM form (GitHub issues `-----BEGIN RSA PRIVATE KEY-----`; \
         PKCS#8 `-----BEGIN PRIVATE KEY-----` works too); the value is not shown"
    )]
    NotRsaPem,
    /// PEM of an RSA key that cannot sign (too small, or corrupt).
    #[error("holds an RSA key that cannot sign RS256 ({0}); the value is not shown")]
    Rejected(String),
}

impl GithubAppKey {
    /// Parses a PEM private key and proves it signs, so a bad key fails at start-up.
    pub fn from_pem(pem: &[u8]) -> Result<Self, AppKeyError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject as _;
        // jsonwebtoken takes a public key's PEM here too; only a private key can sign.
        match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs1(_) | PrivateKeyDer::Pkcs8(_)) => {}
            _ => return Err(AppKeyError::NotRsaPem),
        }
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|_| AppKeyError::NotRsaPem)?;
        let key = Self(Arc::new(key));
        // jsonwebtoken hands the DER to ring only when it signs: sign once now.
        key.jwt(1, SystemTime::now()).map_err(|e| match e.kind() {
            // ring's reasons are fixed words ("InvalidEncoding", "TooSmall"), never key bytes.
            jsonwebtoken::errors::ErrorKind::InvalidRsaKey(why) => {
                AppKeyError::Rejected(why.clone())
            }
            _ => AppKeyError::Rejected("signing failed".into()),
        })?;
        Ok(key)
    }

    /// The app's JWT at `now`: `iat` backdated, `exp` within GitHub's ten minutes, `iss` the id.
    fn jwt(&self, app_id: u64, now: SystemTime) -> Result<Secret, jsonwebtoken::errors::Error> {
        #[derive(serde::Serialize)]
        struct Claims {
            iat: u64,
            exp: u64,
            iss: String,
        }
        let iat = now
            .checked_sub(IAT_BACKDATE)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iat,
            exp: iat + JWT_LIFETIME.as_secs(),
            iss: app_id.to_string(),
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &self.0).map(Secret::new)
    }
}

/// What Atlantis is given to sign in as a GitHub App.
#[derive(Clone, Debug)]
pub struct GithubAppCredentials {
    /// `--gh-app-id`.
    pub app_id: u64,
    /// `--gh-app-key` or the contents of `--gh-app-key-file`.
    pub key: GithubAppKey,
    /// `--gh-app-installation-id`; `None`: the app's only installation.
    pub installation_id: Option<u64>,
}

/// An installation token and when to stop using it.
#[derive(Clone)]
pub(crate) struct InstallationToken {
    token: Secret,
    /// Which fetch produced it, so a 401 drops this token and not a newer one.
    pub(crate) serial: u64,
    refresh_at: Instant,
}

impl InstallationToken {
    /// `Authorization: Bearer <token>`, marked sensitive (kept out of debug output).
    pub(crate) fn header(&self) -> Result<HeaderValue, VcsError> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| auth_error("the installation token is not a valid header value"))?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// Why no installation token could be had; cloneable, as one refresh answers many callers.
#[derive(Clone, Debug)]
struct Refusal {
    detail: String,
    /// GitHub said no (as opposed to a timeout or an outage): worth a short back-off.
    definitive: bool,
}

type Fetch = Shared<BoxFuture<'static, Result<InstallationToken, Refusal>>>;

enum Slot {
    Empty,
    Ready(InstallationToken),
    /// A refresh under way; every caller awaits this same one.
    Pending(Fetch),
    Refused {
        until: Instant,
        refusal: Refusal,
    },
}

/// The installation token source of one GitHub App, shared by the process's GitHub clients.
pub struct GithubAppAuth {
    app_id: u64,
    key: GithubAppKey,
    configured_installation: Option<u64>,
    found_installation: Mutex<Option<u64>>,
    /// For the app's own endpoints; each request carries a fresh JWT.
    api: ApiClient,
    slot: Mutex<Slot>,
    serial: AtomicU64,
}

impl std::fmt::Debug for GithubAppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAppAuth")
            .field("app_id", &self.app_id)
            .field("installation", &self.configured_installation)
            .finish_non_exhaustive()
    }
}

fn auth_error(detail: impl Into<String>) -> VcsError {
    VcsError::Auth {
        detail: detail.into(),
    }
}

#[derive(Deserialize)]
struct AccessTokenJson {
    token: Secret,
    expires_at: String,
}

#[derive(Deserialize)]
struct InstallationJson {
    id: u64,
}

#[derive(Deserialize)]
struct ErrorJson {
    #[serde(default)]
    message: String,
}

impl GithubAppAuth {
    /// A token source for `creds` against the API at `api.base_url` (its token is ignored).
    pub fn new(creds: &GithubAppCredentials, mut api: ApiConfig) -> Result<Arc<Self>, VcsError> {
        api.token = None;
        Ok(Arc::new(Self {
            app_id: creds.app_id,
            key: creds.key.clone(),
            configured_installation: creds.installation_id,
            found_installation: Mutex::new(None),
            api: ApiClient::new(api, AuthStyle::Bearer, super::github::github_headers())?,
            slot: Mutex::new(Slot::Empty),
            serial: AtomicU64::new(0),
        }))
    }

    /// The app id (for reports).
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A valid installation token: the cached one, or the one refresh all callers share.
    ///
    /// Boxed: a refresh calls the API through the same client code that calls this, and the
    /// compiler can only see such a cycle is `Send` when one step of it is named.
    pub(crate) fn token(
        self: &Arc<Self>,
    ) -> BoxFuture<'static, Result<InstallationToken, VcsError>> {
        let fetch = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Slot::Ready(t) if Instant::now() < t.refresh_at => {
                    return futures_util::future::ready(Ok(t.clone())).boxed();
                }
                Slot::Refused { until, refusal } if Instant::now() < *until => {
                    let e = auth_error(refusal.detail.clone());
                    return futures_util::future::ready(Err(e)).boxed();
                }
                Slot::Pending(f) => f.clone(),
                _ => {
                    let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
                    let this = Arc::clone(self);
                    // Spawned, so the refresh finishes (and fills the slot) even if every
                    // caller waiting on it is cancelled by its own deadline.
                    let task = tokio::spawn(async move {
                        let result = this.fetch(serial).await;
                        this.settle(&result);
                        result
                    });
                    let f: Fetch = async move {
                        task.await.unwrap_or_else(|_| {
                            Err(Refusal {
                                detail: "the token refresh task stopped".into(),
                                definitive: false,
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    *slot = Slot::Pending(f.clone());
                    f
                }
            }
        };
        async move { fetch.await.map_err(|r| auth_error(r.detail)) }.boxed()
    }

    /// GitHub refused this token (401): forget it, unless a newer one already replaced it.
    pub(crate) fn invalidate(&self, serial: u64) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Slot::Ready(t) if t.serial == serial) {
            *slot = Slot::Empty;
        }
    }

    fn settle(&self, result: &Result<InstallationToken, Refusal>) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        *slot = match result {
            Ok(t) => Slot::Ready(t.clone()),
            Err(r) if r.definitive => Slot::Refused {
                until: Instant::now() + REFUSED_BACKOFF,
                refusal: r.clone(),
            },
            Err(_) => Slot::Empty,
        };
    }

    async fn fetch(&self, serial: u64) -> Result<InstallationToken, Refusal> {
        let installation = self.installation().await?;
        let path = format!("/app/installations/{installation}/access_tokens");
        let resp = self.call(Method::POST, &path).await?;
        if !resp.status.is_success() {
            return Err(refused(&resp, &path));
        }
        let body: AccessTokenJson = serde_json::from_slice(&resp.body).map_err(|e| Refusal {
            detail: format!("POST {path}: unexpected answer: {e}"),
            definitive: false,
        })?;
        let expires_at = humantime::parse_rfc3339(&body.expires_at).map_err(|e| Refusal {
            detail: format!("POST {path}: bad expires_at: {e}"),
            definitive: false,
        })?;
        let life = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let margin = REFRESH_MARGIN.min(life / 4);
        // A clock far ahead of GitHub's sees tokens born expired: use each for a second anyway
        // (a 401 still drops it) rather than ask GitHub again on every call.
        let use_for = life.saturating_sub(margin).max(Duration::from_secs(1));
        tracing::debug!(
            app_id = self.app_id,
            installation,
            expires_in_s = life.as_secs(),
            "GitHub App installation token obtained"
        );
        Ok(InstallationToken {
            token: body.token,
            serial,
            refresh_at: Instant::now() + use_for,
        })
    }

    /// The configured installation, else the app's only one (`GET /app/installations`).
    async fn installation(&self) -> Result<u64, Refusal> {
        if let Some(id) = self.configured_installation {
            return Ok(id);
        }
        if let Some(id) = *self
            .found_installation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            return Ok(id);
        }
        let path = "/app/installations?per_page=100";
        let resp = self.call(Method::GET, path).await?;
        if !resp.status.is_success() {
            return Err(refused(&resp, "/app/installations"));
        }
        let list: Vec<InstallationJson> =
            serde_json::from_slice(&resp.body).map_err(|e| Refusal {
                detail: format!("GET /app/installations: unexpected answer: {e}"),
                definitive: false,
            })?;
        match list.as_slice() {
            [only] => {
                *self
                    .found_installation
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(only.id);
                tracing::info!(
                    app_id = self.app_id,
                    installation = only.id,
                    "GitHub App installation found"
                );
                Ok(only.id)
            }
            _ => Err(Refusal {
                detail: format!(
                    "GitHub App {} has {} installations, and without gh-app-installation-id \
                     Atlantis (and so the proxy) needs exactly one: set gh-app-installation-id",
                    self.app_id,
                    list.len()
                ),
                definitive: true,
            }),
        }
    }

    /// One call to an app endpoint, authenticated with a JWT signed now.
    async fn call(&self, method: Method, path: &str) -> Result<ApiResponse, Refusal> {
        let jwt = self
            .key
            .jwt(self.app_id, SystemTime::now())
            .map_err(|_| Refusal {
                detail: "the GitHub App key could not sign a JWT".into(),
                definitive: true,
            })?;
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", jwt.expose())).map_err(|_| Refusal {
                detail: "the JWT is not a valid header value".into(),
                definitive: true,
            })?;
        value.set_sensitive(true);
        let endpoint = format!("{method} {}", path_only(path));
        self.api
            .send_as(method, path, None, value)
            .await
            .map_err(|e| Refusal {
                detail: format!("{endpoint}: {e}"),
                definitive: false,
            })
    }
}

/// GitHub's refusal, with its own message (`A JSON web token could not be decoded`, `Not Found`).
fn refused(resp: &ApiResponse, path: &str) -> Refusal {
    let message = serde_json::from_slice::<ErrorJson>(&resp.body)
        .map(|e| e.message)
        .unwrap_or_default();
    let message: String = message.chars().take(200).collect();
    Refusal {
        detail: format!(
            "{} answered {}: {}",
            path_only(path),
            resp.status.as_u16(),
            if message.is_empty() {
                "(no message)"
            } else {
                &message
            }
        ),
        definitive: resp.status.is_client_error() && resp.status != StatusCode::TOO_MANY_REQUESTS,
    }
}

fn path_only(p: &str) -> &str {
    p.split('?').next().unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_rsa_pem_are_refused_without_their_bytes() {
        let not_pem = "hunter2-not-a-key";
        assert_eq!(
            GithubAppKey::from_pem(not_pem.as_bytes()).unwrap_err(),
            AppKeyError::NotRsaPem
        );
        let garbled =
            "-----BEGIN RSA PRIVATE KEY-----\nTUlJQ2hpZGRlbg==\n-----END RSA PRIVATE KEY-----\n";
        let e = GithubAppKey::from_pem(garbled.as_bytes()).unwrap_err();
        assert!(!e.to_string().contains("TUlJ"), "{e}");
    }
}
