//! Webhook authenticity checks, each as the Atlantis code that does it, with constant-time
//! comparisons. The error strings are the text Atlantis answers with.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use super::config::Secret;

fn verify_mac<M: Mac + KeyInit>(key: &[u8], body: &[u8], tag: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            mac.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

/// `sha1=`/`sha256=`/`sha512=` hex HMAC (go-github `ValidateSignature` and Atlantis's
/// `common.ValidateSignature` for Bitbucket, which share the messages).
pub fn verify_prefixed_hmac(body: &[u8], signature: &str, secret: &Secret) -> Result<(), String> {
    if signature.is_empty() {
        return Err("missing signature".into());
    }
    let Some((algo, hex_sig)) = signature.split_once('=') else {
        return Err(format!("error parsing signature {signature:?}"));
    };
    if !matches!(algo, "sha1" | "sha256" | "sha512") {
        return Err(format!("unknown hash type prefix: {algo:?}"));
    }
    let tag =
        hex::decode(hex_sig).map_err(|e| format!("error decoding signature {signature:?}: {e}"))?;
    let key = secret.expose().as_bytes();
    let ok = match algo {
        "sha1" => verify_mac::<Hmac<sha1::Sha1>>(key, body, &tag),
        "sha256" => verify_mac::<Hmac<sha2::Sha256>>(key, body, &tag),
        _ => verify_mac::<Hmac<sha2::Sha512>>(key, body, &tag),
    };
    if ok {
        Ok(())
    } else {
        Err("payload signature check failed".into())
    }
}

/// Gitea's `VerifyWebhookSignature` (bare hex HMAC-SHA256), with Atlantis's wrapping messages.
pub fn verify_gitea(body: &[u8], signature: &str, secret: &Secret) -> Result<(), String> {
    let tag = hex::decode(signature).map_err(|_| "signature verification internal error")?;
    if verify_mac::<Hmac<sha2::Sha256>>(secret.expose().as_bytes(), body, &tag) {
        Ok(())
    } else {
        Err("invalid signature".into())
    }
}

/// GitLab's `X-Gitlab-Token` equality check (digests compared, so the length stays hidden).
///
/// Atlantis's message repeats the presented token (`header X-Gitlab-Token=<token> did ...`);
/// this one leaves it out, so a near-miss secret never reaches an answer or a log.
pub fn verify_gitlab_token(token: &str, secret: &Secret) -> Result<(), String> {
    if secret.matches(token.as_bytes()) {
        Ok(())
    } else {
        Err("header X-Gitlab-Token did not match expected secret".to_owned())
    }
}

/// Azure DevOps Basic auth (`azuredevops.ValidatePayload`).
pub fn verify_basic_auth(
    authorization: Option<&str>,
    expected_user: &str,
    expected_password: &Secret,
) -> Result<(), String> {
    let fail = || "ValidatePayload authentication failed".to_owned();
    let (user, pass) = authorization.and_then(parse_basic).ok_or_else(fail)?;
    let u_ok = user.as_bytes().ct_eq(expected_user.as_bytes());
    let p_ok = subtle::Choice::from(u8::from(expected_password.matches(pass.as_bytes())));
    if bool::from(u_ok & p_ok) {
        Ok(())
    } else {
        Err(fail())
    }
}

/// Go's `Request.BasicAuth`: case-insensitive `Basic ` prefix, standard base64, split at `:`.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Signs like GitHub/Bitbucket: `sha256=<hex>`.
    pub fn sign_sha256(secret: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
            .expect("hmac takes any key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn prefixed_hmacs_verify_and_fail_like_atlantis() {
        let s = Secret::new("s3cret");
        let body = b"{\"a\":1}";
        let good = format!("sha256={}", sign_sha256("s3cret", body));
        assert_eq!(verify_prefixed_hmac(body, &good, &s), Ok(()));
        let mut sha1 = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        sha1.update(body);
        let sha1 = format!("sha1={}", hex::encode(sha1.finalize().into_bytes()));
        assert_eq!(verify_prefixed_hmac(body, &sha1, &s), Ok(()));
        let mut sha512 = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        sha512.update(body);
        let sha512 = format!("sha512={}", hex::encode(sha512.finalize().into_bytes()));
        assert_eq!(verify_prefixed_hmac(body, &sha512, &s), Ok(()));
        assert_eq!(
            verify_prefixed_hmac(b"{\"a\":2}", &good, &s),
            Err("payload signature check failed".into())
        );
        assert_eq!(
            verify_prefixed_hmac(body, "", &s),
            Err("missing signature".into())
        );
        assert!(
            verify_prefixed_hmac(body, "md5=00", &s)
                .unwrap_err()
                .contains("unknown hash")
        );
        assert!(
            verify_prefixed_hmac(body, "sha256=zz", &s)
                .unwrap_err()
                .contains("decoding")
        );
    }

    #[test]
    fn gitea_gitlab_and_azure_checks() {
        let s = Secret::new("k");
        let sig = sign_sha256("k", b"x");
        assert_eq!(verify_gitea(b"x", &sig, &s), Ok(()));
        assert_eq!(
            verify_gitea(b"y", &sig, &s),
            Err("invalid signature".into())
        );
        assert_eq!(
            verify_gitea(b"x", "nothex", &s),
            Err("signature verification internal error".into())
        );
        assert_eq!(verify_gitlab_token("k", &s), Ok(()));
        assert!(verify_gitlab_token("kk", &s).is_err());
        let (u, p) = ("u", Secret::new("p"));
        let ok = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        assert_eq!(verify_basic_auth(Some(&ok), u, &p), Ok(()));
        let lower = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        assert_eq!(verify_basic_auth(Some(&lower), u, &p), Ok(()));
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:x")
        );
        assert!(verify_basic_auth(Some(&bad), u, &p).is_err());
        assert!(verify_basic_auth(None, u, &p).is_err());
    }
}
