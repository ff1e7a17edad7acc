//! Secrets at rest: a queued request is stored without the secrets its headers carry, and they
//! are put back from the configuration when it is replayed (issue 14, item 13).
//!
//! A header value that contains a configured secret is stored as the text around it plus the
//! secret's *name* (`atlantis.webhook-secrets.gitlab`), never its value; at replay the value is
//! read from the configuration again, so Atlantis receives the bytes it would have received. A
//! header that is secret by its name (`Authorization`, `X-Gitlab-Token`, `X-Atlantis-Token`,
//! `Cookie`) but carries no configured secret is not stored at all: the proxy cannot put it back,
//! and Atlantis only checks these headers against secrets the proxy is configured with too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::Config;
use crate::vocab::Secret;

/// Headers that carry credentials by their very name (lowercase).
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "x-gitlab-token",
    "x-atlantis-token",
    "cookie",
    "proxy-authorization",
];

/// A secret shorter than this is replaced only where it is a header's whole value: a short one
/// could occur inside an unrelated header by chance.
const MIN_EMBEDDED_LEN: usize = 8;

/// One configured secret as it may appear in a header.
#[derive(Clone)]
struct Known {
    /// Its configuration key (what the stored request names instead of the value).
    name: String,
    /// The text that appears in a header.
    value: Secret,
}

/// The configured secrets a header may carry, by name.
#[derive(Clone, Default)]
pub struct HeaderSecrets {
    known: Vec<Known>,
}

impl std::fmt::Debug for HeaderSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.known.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("HeaderSecrets")
            .field("names", &names)
            .finish()
    }
}

/// Where a stored header's secret was taken out: the value is `parts` joined by the secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redaction {
    /// Index of the header in the stored request's header list.
    pub header: usize,
    /// The configuration key of the secret.
    pub secret: String,
    /// The value's text around each occurrence of the secret, base64 (at least two parts).
    pub parts: Vec<String>,
}

/// A stored request names a secret the configuration no longer has.
#[derive(Debug, thiserror::Error)]
#[error("the stored request needs the secret {0}, which is not configured any more")]
pub struct MissingSecret(pub String);

impl HeaderSecrets {
    /// Every secret of the configuration that a request header could carry.
    pub fn from_config(c: &Config) -> Self {
        let mut s = Self::default();
        let w = &c.atlantis.webhook_secrets;
        s.add("atlantis.webhook-secrets.gitlab", w.gitlab.as_ref());
        s.add("atlantis.webhook-secrets.github", w.github.as_ref());
        s.add("atlantis.webhook-secrets.bitbucket", w.bitbucket.as_ref());
        s.add("atlantis.webhook-secrets.gitea", w.gitea.as_ref());
        if let Some((user, password)) = &w.azuredevops {
            // Azure DevOps sends `Authorization: Basic base64(user:password)`.
            let basic = B64.encode(format!("{user}:{}", password.expose()));
            s.add(
                "atlantis.webhook-secrets.azuredevops",
                Some(&Secret::new(basic)),
            );
            s.add(
                "atlantis.webhook-secrets.azuredevops.password",
                Some(password),
            );
        }
        s.add("atlantis.api-secret", c.atlantis.api_secret.as_ref());
        s.add(
            "atlantis.vcs-tokens.github",
            c.atlantis.vcs_tokens.github.as_ref(),
        );
        s.add(
            "atlantis.vcs-tokens.gitlab",
            c.atlantis.vcs_tokens.gitlab.as_ref(),
        );
        s.add("admin.token", c.admin.token.as_ref());
        s.add(
            "enhanced-locking.redis.password",
            c.enhanced.redis.password.as_ref(),
        );
        s
    }

    /// Adds one secret (ignored when unset or empty).
    pub fn add(&mut self, name: &str, value: Option<&Secret>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.known.push(Known {
                name: name.to_owned(),
                value: v.clone(),
            });
        }
        // Longest first: a secret that contains another is replaced whole.
        self.known
            .sort_by_key(|k| std::cmp::Reverse(k.value.expose().len()));
    }

    /// Takes the secrets out of `headers` (name, value pairs in order): a value carrying a
    /// configured secret is emptied and described by a [`Redaction`]; a credential header
    /// carrying none is removed. Returns the redactions.
    pub fn strip(&self, headers: &mut Vec<(String, Vec<u8>)>) -> Vec<Redaction> {
        let mut out = Vec::new();
        let mut kept = Vec::with_capacity(headers.len());
        for (name, value) in headers.drain(..) {
            match self.find(&value) {
                Some((known, parts)) => {
                    out.push(Redaction {
                        header: kept.len(),
                        secret: known.name.clone(),
                        parts: parts.iter().map(|p| B64.encode(p)).collect(),
                    });
                    kept.push((name, Vec::new()));
                }
                None if is_secret_header(&name) => {}
                None => kept.push((name, value)),
            }
        }
        *headers = kept;
        out
    }

    /// The value of a redacted header, from the configured secret.
    pub fn restore(&self, r: &Redaction) -> Result<Vec<u8>, MissingSecret> {
        let known = self
            .known
            .iter()
            .find(|k| k.name == r.secret)
            .ok_or_else(|| MissingSecret(r.secret.clone()))?;
        let parts: Vec<Vec<u8>> = r
            .parts
            .iter()
            .map(|p| B64.decode(p).unwrap_or_default())
            .collect();
        Ok(parts.join(known.value.expose().as_bytes()))
    }

    /// The first configured secret `value` carries, and the text around its occurrences.
    fn find(&self, value: &[u8]) -> Option<(&Known, Vec<Vec<u8>>)> {
        for k in &self.known {
            let secret = k.value.expose().as_bytes();
            if value == secret {
                return Some((k, vec![Vec::new(), Vec::new()]));
            }
            if secret.len() >= MIN_EMBEDDED_LEN && contains(value, secret) {
                return Some((k, split(value, secret)));
            }
        }
        None
    }
}

fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `hay` split at every occurrence of `needle`.
fn split(hay: &[u8], needle: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut from = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            parts.push(hay[from..i].to_vec());
            i += needle.len();
            from = i;
        } else {
            i += 1;
        }
    }
    parts.push(hay[from..].to_vec());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> HeaderSecrets {
        let mut s = HeaderSecrets::default();
        s.add(
            "atlantis.webhook-secrets.gitlab",
            Some(&Secret::new("gl-secret-123")),
        );
        s.add("atlantis.api-secret", Some(&Secret::new("short")));
        s
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_secret_is_replaced_by_its_name_and_comes_back() {
        let s = secrets();
        let mut h = headers(&[
            ("x-gitlab-event", "Note Hook"),
            ("x-gitlab-token", "gl-secret-123"),
            ("x-custom", "Bearer gl-secret-123; more"),
        ]);
        let red = s.strip(&mut h);
        assert_eq!(red.len(), 2);
        let stored = format!("{h:?}{red:?}");
        assert!(!stored.contains("gl-secret-123"), "{stored}");
        assert!(stored.contains("atlantis.webhook-secrets.gitlab"));
        assert_eq!(s.restore(&red[0]).unwrap(), b"gl-secret-123");
        assert_eq!(s.restore(&red[1]).unwrap(), b"Bearer gl-secret-123; more");
        assert_eq!(h[red[1].header].0, "x-custom");
    }

    #[test]
    fn a_credential_header_without_a_configured_secret_is_not_stored() {
        let s = secrets();
        let mut h = headers(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("x-other", "contains short inside"),
            ("x-api", "short"),
        ]);
        let red = s.strip(&mut h);
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x-other", "x-api"]);
        // A short secret is replaced only as a whole value.
        assert_eq!(h[0].1, b"contains short inside");
        assert_eq!(red.len(), 1);
        assert_eq!(red[0].header, 1);
    }

    #[test]
    fn azure_devops_basic_auth_is_stored_by_name_and_rebuilt_byte_for_byte() {
        let c = Config::from_yaml(
            "upstream: {url: 'http://a:4141'}\natlantis:\n  webhook-secrets:\n    azuredevops: {user: bot, password: pw-0123456789}\n",
        )
        .unwrap();
        let s = HeaderSecrets::from_config(&c);
        let value = format!("Basic {}", B64.encode("bot:pw-0123456789"));
        let mut h = headers(&[("authorization", value.as_str())]);
        let red = s.strip(&mut h);
        assert_eq!(red.len(), 1, "{h:?}");
        assert_eq!(red[0].secret, "atlantis.webhook-secrets.azuredevops");
        assert!(h[0].1.is_empty());
        assert_eq!(s.restore(&red[0]).unwrap(), value.as_bytes());
    }

    #[test]
    fn a_secret_gone_from_the_config_is_reported() {
        let s = secrets();
        let mut h = headers(&[("x-gitlab-token", "gl-secret-123")]);
        let red = s.strip(&mut h);
        let empty = HeaderSecrets::default();
        assert!(empty.restore(&red[0]).is_err());
        assert!(format!("{empty:?}{s:?}").contains("atlantis.api-secret"));
    }
}
