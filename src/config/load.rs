//! Where configuration values come from, in increasing precedence: the YAML file (with `${VAR}`
//! expanded in string values), `ALP_*` environment variables, then CLI flags.

use std::collections::HashMap;

use serde_norway::{Mapping, Value};

use super::ConfigError;
use super::raw::RawConfig;

/// Environment variables that name one key directly, for the values operators set most.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("ALP_LISTEN", "listen"),
    ("ALP_UPSTREAM", "upstream.url"),
    ("ALP_UPSTREAM_URL", "upstream.url"),
    ("ALP_ADMIN_LISTEN", "admin.listen"),
    ("ALP_ADMIN_TOKEN", "admin.token"),
    ("ALP_API_SECRET", "atlantis.api-secret"),
    ("ALP_REDIS_ADDR", "enhanced-locking.redis.addr"),
    ("ALP_REDIS_PASSWORD", "enhanced-locking.redis.password"),
    ("ALP_TRAFFIC_SPLIT", "enhanced-locking.traffic-split"),
    ("ALP_LOG_LEVEL", "telemetry.log-level"),
    ("ALP_LOG_FORMAT", "telemetry.log-format"),
    ("ALP_OTLP_ENDPOINT", "telemetry.otlp-endpoint"),
    (
        "ALP_GITHUB_WEBHOOK_SECRET",
        "atlantis.webhook-secrets.github",
    ),
    (
        "ALP_GITLAB_WEBHOOK_SECRET",
        "atlantis.webhook-secrets.gitlab",
    ),
    ("ALP_GITHUB_TOKEN", "atlantis.vcs-tokens.github"),
    ("ALP_GITLAB_TOKEN", "atlantis.vcs-tokens.gitlab"),
];

/// Keys whose values are secrets: an override of one is taken as the raw string, whatever it
/// looks like (`ALP_REDIS_PASSWORD=20240101` is not a number, `ALP_ADMIN_TOKEN=1234e5` no float).
pub const SECRET_KEYS: &[&str] = &[
    "admin.token",
    "atlantis.api-secret",
    "atlantis.webhook-secrets.github",
    "atlantis.webhook-secrets.gitlab",
    "atlantis.webhook-secrets.bitbucket",
    "atlantis.webhook-secrets.gitea",
    "atlantis.webhook-secrets.azuredevops.password",
    "atlantis.vcs-tokens.github",
    "atlantis.vcs-tokens.gitlab",
    "enhanced-locking.redis.password",
];

/// One value set from outside the file: a dotted key path and its text.
#[derive(Clone, Debug)]
pub struct Override {
    /// Dotted path, e.g. `enhanced-locking.redis.addr`.
    pub key: String,
    /// The value as text; parsed as a YAML scalar so `10` is a number and `true` a boolean.
    pub value: String,
    /// Where it came from, for error messages (`ALP_ADMIN_TOKEN`, `--listen`).
    pub source: String,
}

/// Turns `ALP_*` variables into overrides.
///
/// Besides the aliases above, `ALP_SECTION__KEY__SUBKEY` addresses any key: `__` separates
/// levels and `_` stands for `-` (`ALP_ENHANCED_LOCKING__QUEUE_TIMEOUT` → `enhanced-locking.queue-timeout`).
/// Other `ALP_` variables without `__` are not configuration and are left alone.
pub fn env_overrides(env: &HashMap<String, String>) -> Vec<Override> {
    let mut out: Vec<Override> = env
        .iter()
        .filter_map(|(name, value)| {
            let key = if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| alias == name) {
                (*key).to_string()
            } else {
                let rest = name.strip_prefix("ALP_")?;
                if !rest.contains("__") {
                    return None;
                }
                rest.split("__")
                    .map(|part| part.to_ascii_lowercase().replace('_', "-"))
                    .collect::<Vec<_>>()
                    .join(".")
            };
            Some(Override {
                key,
                value: value.clone(),
                source: name.clone(),
            })
        })
        .collect();
    // Deterministic precedence when two variables name the same key: the generic form wins.
    out.sort_by(|a, b| a.source.cmp(&b.source));
    out
}

/// Parses the file text, expands `${VAR}`, applies overrides and deserializes, naming the bad key on error.
pub fn assemble(
    file: Option<(&str, &str)>,
    env: &HashMap<String, String>,
    overrides: &[Override],
) -> Result<RawConfig, ConfigError> {
    let mut root = match file {
        Some((path, text)) if !text.trim().is_empty() => serde_norway::from_str::<Value>(text)
            .map_err(|e| ConfigError::new("(file)", format!("{path} is not valid YAML: {e}")))?,
        _ => Value::Mapping(Mapping::new()),
    };
    if root.is_null() {
        root = Value::Mapping(Mapping::new());
    }
    expand_env(&mut root, env, "")?;
    for o in overrides {
        let value = if SECRET_KEYS.contains(&o.key.as_str()) {
            Value::String(o.value.clone())
        } else {
            scalar(&o.value)
        };
        set_path(&mut root, &o.key, value, &o.source)?;
    }
    serde_path_to_error::deserialize::<_, RawConfig>(root).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            "(top level)".to_string()
        } else {
            key
        };
        ConfigError::new(key, e.into_inner().to_string())
    })
}

/// A CLI or environment value as YAML would read it: numbers, booleans and lists keep their type.
fn scalar(text: &str) -> Value {
    match serde_norway::from_str::<Value>(text) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Sequence(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

fn set_path(root: &mut Value, key: &str, value: Value, source: &str) -> Result<(), ConfigError> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Mapping(map) = node else {
            return Err(ConfigError::new(
                key,
                format!("{source} sets a key below a value that is not a section"),
            ));
        };
        let k = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map
            .entry(k)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
    }
    Ok(())
}

/// Replaces `${VAR}` in every string value; a missing variable is an error naming the key.
fn expand_env(
    node: &mut Value,
    env: &HashMap<String, String>,
    at: &str,
) -> Result<(), ConfigError> {
    match node {
        Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env).map_err(|var| {
                ConfigError::new(at, format!("environment variable {var} is not set"))
            })?;
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().unwrap_or("?");
                let path = if at.is_empty() {
                    name.to_string()
                } else {
                    format!("{at}.{name}")
                };
                expand_env(v, env, &path)?;
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_env(v, env, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        out.push_str(env.get(var).ok_or_else(|| var.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn generic_env_names_address_nested_kebab_keys() {
        let e = env(&[
            ("ALP_ENHANCED_LOCKING__QUEUE_TIMEOUT", "5m"),
            ("ALP_FIXTURES_DIR", "/x"),
        ]);
        let o = env_overrides(&e);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].key, "enhanced-locking.queue-timeout");
    }

    #[test]
    fn overrides_keep_yaml_types_and_beat_the_file() {
        let e = env(&[("ALP_TRAFFIC_SPLIT", "40")]);
        let raw = assemble(
            Some(("f.yaml", "enhanced-locking:\n  traffic-split: 10\n")),
            &e,
            &env_overrides(&e),
        )
        .unwrap();
        assert_eq!(raw.enhanced_locking.traffic_split, Some(40));
    }

    #[test]
    fn dollar_braces_expand_from_the_environment() {
        let e = env(&[("REDIS_PASSWORD", "s3cret")]);
        let raw = assemble(
            Some((
                "f.yaml",
                "enhanced-locking:\n  redis:\n    password: \"${REDIS_PASSWORD}\"\n",
            )),
            &e,
            &[],
        )
        .unwrap();
        assert_eq!(
            raw.enhanced_locking
                .redis
                .password
                .map(String::from)
                .as_deref(),
            Some("s3cret")
        );
        let err = assemble(
            Some(("f.yaml", "admin:\n  token: \"${NOPE}\"\n")),
            &HashMap::new(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.key, "admin.token");
    }

    /// Issue 14 item 15: every secret key takes the environment's text as it is.
    #[test]
    fn secrets_from_the_environment_are_raw_strings() {
        for key in SECRET_KEYS {
            for value in ["20240101", "1234e5", "true", "0x1F", "'quoted'", "[a]", "~"] {
                let o = [Override {
                    key: key.to_string(),
                    value: value.to_string(),
                    source: "ALP_TEST".into(),
                }];
                let file = "atlantis:\n  webhook-secrets:\n    azuredevops:\n      user: u\n";
                let raw = assemble(Some(("f.yaml", file)), &HashMap::new(), &o)
                    .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
                let got = [
                    raw.admin.token,
                    raw.atlantis.api_secret,
                    raw.atlantis.webhook_secrets.github,
                    raw.atlantis.webhook_secrets.gitlab,
                    raw.atlantis.webhook_secrets.bitbucket,
                    raw.atlantis.webhook_secrets.gitea,
                    raw.atlantis
                        .webhook_secrets
                        .azuredevops
                        .and_then(|a| a.password),
                    raw.atlantis.vcs_tokens.github,
                    raw.atlantis.vcs_tokens.gitlab,
                    raw.enhanced_locking.redis.password,
                ];
                let set: Vec<String> = got.into_iter().flatten().map(String::from).collect();
                assert_eq!(set, vec![value.to_string()], "{key}");
            }
        }
        // The aliases name secret keys too.
        let e = env(&[
            ("ALP_REDIS_PASSWORD", "20240101"),
            ("ALP_ADMIN_TOKEN", "1234e5"),
        ]);
        let raw = assemble(None, &e, &env_overrides(&e)).unwrap();
        assert_eq!(
            raw.enhanced_locking
                .redis
                .password
                .map(String::from)
                .as_deref(),
            Some("20240101")
        );
        assert_eq!(raw.admin.token.map(String::from).as_deref(), Some("1234e5"));
    }

    /// Issue 14 item 14: a secret that YAML reads as a number is refused, naming the key but not
    /// the value.
    #[test]
    fn a_secret_of_another_type_in_the_file_is_not_printed() {
        for (yaml, key) in [
            ("admin:\n  token: 98765432\n", "admin.token"),
            ("atlantis:\n  api-secret: 1234e5\n", "atlantis.api-secret"),
            (
                "enhanced-locking:\n  redis:\n    password: 24681357\n",
                "enhanced-locking.redis.password",
            ),
            (
                "atlantis:\n  webhook-secrets:\n    github: true\n",
                "atlantis.webhook-secrets.github",
            ),
        ] {
            let e = assemble(Some(("f.yaml", yaml)), &HashMap::new(), &[]).unwrap_err();
            assert_eq!(e.key, key);
            let text = e.to_string();
            for leak in ["98765432", "1234", "123400000", "24681357", "true"] {
                assert!(!text.contains(leak), "{text}");
            }
            assert!(text.contains("quote it"), "{text}");
        }
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let err = assemble(
            Some(("f.yaml", "enhanced-locking:\n  trafic-split: 10\n")),
            &HashMap::new(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.key, "enhanced-locking.trafic-split");
        assert!(err.message.contains("trafic-split"), "{}", err.message);
    }
}
