//! GitHub App authentication in the fake GitHub API, as GitHub does it: the app's endpoints
//! (`GET /app/installations`, `POST /app/installations/{id}/access_tokens`) take a JWT that must
//! be RS256, signed by the app's key, `iss` = the app id, `exp` in the future and at most ten
//! minutes ahead, `iat` not in the future; every other endpoint then takes the installation
//! token as `Authorization: token …` or `Bearer …` until it expires. Refusals carry GitHub's
//! own status and JSON body.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;

/// GitHub's message for a JWT it cannot verify (bad signature, wrong `iss`, not a JWT).
pub const UNDECODABLE: &str = "A JSON web token could not be decoded";
/// GitHub's message for an expired JWT.
pub const EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
/// GitHub's message for a JWT that lives more than ten minutes.
pub const TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
/// GitHub's message for a JWT issued in the future.
pub const IAT_FUTURE: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
/// GitHub's message for an unknown or expired token.
pub const BAD_CREDENTIALS: &str = "Bad credentials";

/// The app the fake knows, its installations and the tokens it issued.
pub(super) struct AppState {
    app_id: u64,
    public_pem: Vec<u8>,
    installations: Vec<u64>,
    lifetime: Duration,
    /// token → (installation, expiry).
    tokens: HashMap<String, (u64, SystemTime)>,
    /// Tokens in the order they were issued.
    issued: Vec<String>,
    /// Every refusal: (status, path, message).
    refusals: Vec<(u16, String, String)>,
    /// Every JWT presented to the app's endpoints.
    jwts: Vec<String>,
}

impl AppState {
    pub(super) fn new(app_id: u64, public_pem: &str, installations: &[u64]) -> Self {
        Self {
            app_id,
            public_pem: public_pem.as_bytes().to_vec(),
            installations: installations.to_vec(),
            // GitHub's installation tokens live one hour.
            lifetime: Duration::from_secs(3600),
            tokens: HashMap::new(),
            issued: Vec::new(),
            refusals: Vec::new(),
            jwts: Vec::new(),
        }
    }

    pub(super) fn set_lifetime(&mut self, d: Duration) {
        self.lifetime = d;
    }

    /// Revokes every token issued so far (as an admin or a key rotation would).
    pub(super) fn revoke(&mut self) {
        self.tokens.clear();
    }

    pub(super) fn issued(&self) -> Vec<String> {
        self.issued.clone()
    }

    pub(super) fn refusals(&self) -> Vec<(u16, String, String)> {
        self.refusals.clone()
    }

    pub(super) fn jwts(&self) -> Vec<String> {
        self.jwts.clone()
    }

    /// Checks a JWT as GitHub does; `Err` is GitHub's message.
    fn verify_jwt(&self, jwt: &str) -> Result<(), &'static str> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| UNDECODABLE)?;
        if header.alg != Algorithm::RS256 {
            return Err(UNDECODABLE);
        }
        let key = DecodingKey::from_rsa_pem(&self.public_pem).expect("the app's public key");
        let mut v = Validation::new(Algorithm::RS256);
        // The time claims are checked below, with GitHub's own messages.
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v)
            .map_err(|_| UNDECODABLE)?
            .claims;
        let iss = match &claims["iss"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(UNDECODABLE),
        };
        if iss != self.app_id.to_string() {
            return Err(UNDECODABLE);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = claims["exp"].as_u64().ok_or(EXPIRED)?;
        let iat = claims["iat"].as_u64().ok_or(IAT_FUTURE)?;
        if exp <= now {
            return Err(EXPIRED);
        }
        if exp > now + 600 {
            return Err(TOO_FAR);
        }
        if iat > now {
            return Err(IAT_FUTURE);
        }
        Ok(())
    }

    /// True when `token` is a live installation token.
    fn accepts(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|(_, exp)| SystemTime::now() < *exp)
    }

    fn issue(&mut self, installation: u64) -> (String, SystemTime) {
        use rand::Rng as _;
        let suffix: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(36)
            .map(char::from)
            .collect();
        let token = format!("ghs_{suffix}");
        // GitHub states `expires_at` to the second.
        let exp = SystemTime::now() + self.lifetime;
        let secs = exp.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let exp = UNIX_EPOCH + Duration::from_secs(secs);
        self.tokens.insert(token.clone(), (installation, exp));
        self.issued.push(token.clone());
        (token, exp)
    }
}

fn refusal(status: StatusCode, message: &str, docs: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": docs,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// The credential of `Authorization: token X` / `Bearer X` (scheme case-insensitive).
fn presented(req: &Request) -> Option<String> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, cred) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| cred.trim().to_owned())
}

/// Authentication in front of every route while an app is configured: JWTs on the app's
/// endpoints, installation tokens everywhere else.
pub(super) async fn authenticate(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    // `None`: no app configured, every request passes as before.
    let verdict: Option<Result<(), &'static str>> = {
        let mut i = s.inner.lock().unwrap();
        i.app.as_mut().map(|app| {
            let cred = presented(&req);
            let verdict = if path.starts_with("/api/v3/app/") || path == "/api/v3/app" {
                if let Some(c) = &cred {
                    app.jwts.push(c.clone());
                }
                match cred.as_deref().map(|c| app.verify_jwt(c)) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(m)) => Err(m),
                    // GitHub's answer to an app endpoint called without a JWT.
                    None => Err(UNDECODABLE),
                }
            } else if cred.as_deref().is_some_and(|c| app.accepts(c)) {
                Ok(())
            } else {
                Err(BAD_CREDENTIALS)
            };
            if let Err(m) = verdict {
                app.refusals.push((401, path.clone(), m.to_owned()));
            }
            verdict
        })
    };
    match verdict {
        None | Some(Ok(())) => next.run(req).await,
        Some(Err(m)) => refusal(StatusCode::UNAUTHORIZED, m, "https://docs.github.com/rest"),
    }
}

/// `GET /app/installations`.
pub(super) async fn list_installations(State(s): State<Shared>) -> Response {
    let i = s.inner.lock().unwrap();
    let Some(app) = i.app.as_ref() else {
        return super::not_found("Not Found");
    };
    let list: Vec<Value> = app
        .installations
        .iter()
        .map(|id| {
            json!({
                "id": id, "app_id": app.app_id, "target_type": "Organization",
                "account": {"login": "acme", "id": 1, "type": "Organization"},
                "repository_selection": "all",
                "access_tokens_url": format!("http://{}/api/v3/app/installations/{id}/access_tokens", s.addr),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// `POST /app/installations/{id}/access_tokens`: 201 with the token and its expiry.
pub(super) async fn create_access_token(State(s): State<Shared>, Path(id): Path<u64>) -> Response {
    let mut i = s.inner.lock().unwrap();
    let Some(app) = i.app.as_mut() else {
        return super::not_found("Not Found");
    };
    if !app.installations.contains(&id) {
        app.refusals.push((
            404,
            format!("/api/v3/app/installations/{id}/access_tokens"),
            "Not Found".into(),
        ));
        return refusal(
            StatusCode::NOT_FOUND,
            "Not Found",
            "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app",
        );
    }
    let (token, exp) = app.issue(id);
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": humantime::format_rfc3339_seconds(exp).to_string(),
            "permissions": {"contents": "read", "issues": "write", "metadata": "read",
                            "pull_requests": "write"},
            "repository_selection": "all",
        })),
    )
        .into_response()
}
