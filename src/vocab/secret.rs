//! A secret value that never prints.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token, password or webhook secret. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (treated as "not configured").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with a presented value without revealing the secret or its length: both sides
    /// are hashed (SHA-256) and the digests compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = Sha256::digest(self.0.as_bytes());
        let theirs = Sha256::digest(presented);
        ours.as_slice().ct_eq(theirs.as_slice()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL or address with any `user:password@` replaced by `***@`, for messages.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// True when a URL or address carries a `user:password@` part.
pub fn has_userinfo(url: &str) -> bool {
    redact_userinfo(url) != url
}

/// A secret as the config file or the environment gives it: only a string is taken, and a value
/// of another type is refused without being printed (YAML reads `12345` as a number, `yes` as a
/// boolean, `1234e5` as a float; their text could be the secret).
#[derive(Clone, PartialEq, Eq)]
pub struct RawSecret(pub String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<RawSecret> for String {
    fn from(s: RawSecret) -> Self {
        s.0
    }
}

const NOT_A_STRING: &str = "must be a string; YAML read this value as a number or a boolean, so \
     quote it in the file (environment variables are always taken as written); the value is not shown";

impl<'de> serde::Deserialize<'de> for RawSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<RawSecret, E> {
                Ok(RawSecret(v))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawSecret, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RawSecret, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<RawSecret, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawSecret, E> {
                Err(E::custom(NOT_A_STRING))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_and_compares_exactly() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter"));
        assert!(!s.matches(b"hunter22"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("redis://:hunter2@redis:6379/0"),
            "redis://***@redis:6379/0"
        );
        assert_eq!(
            redact_userinfo("http://u:p@w@atlantis:4141/x@y"),
            "http://***@atlantis:4141/x@y"
        );
        assert_eq!(redact_userinfo("user:pw@host:1"), "***@host:1");
        assert_eq!(
            redact_userinfo("http://atlantis:4141"),
            "http://atlantis:4141"
        );
        assert!(has_userinfo("http://a:b@h"));
        assert!(!has_userinfo("http://h/a@b"));
    }

    #[test]
    fn raw_secrets_of_other_types_are_refused_unprinted() {
        for yaml in ["12345678", "1234e5", "true", "0x1F"] {
            let e = serde_norway::from_str::<RawSecret>(yaml)
                .unwrap_err()
                .to_string();
            assert!(e.contains("must be a string"), "{yaml}: {e}");
            assert!(!e.contains(yaml), "{yaml}: {e}");
        }
        let s: RawSecret = serde_norway::from_str("'12345678'").unwrap();
        assert_eq!(s.0, "12345678");
        assert_eq!(format!("{s:?}"), "***");
    }
}
