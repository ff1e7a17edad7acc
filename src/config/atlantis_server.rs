//! Atlantis's own server configuration, read the way Atlantis reads it (`cmd/server.go`): its
//! `--config` YAML file (keys are flag names) and the `ATLANTIS_*` environment variables
//! (`ATLANTIS_` + the flag name upper-cased with `-` → `_`); a variable beats the file, as viper
//! does. Only the settings that change which locks Atlantis takes or releases, or that the proxy
//! needs to talk to the VCS like Atlantis, are read; the rest is ignored (not refused: it is
//! Atlantis's file).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use super::ConfigError;

/// Where one setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingSource {
    /// The proxy's own key (`atlantis.allow-fork-prs`, or its `ALP_*` override).
    Proxy(String),
    /// An `ATLANTIS_*` environment variable.
    Env(String),
    /// Atlantis's `--config` file.
    ServerConfig(PathBuf),
    /// Atlantis's server-side repo config (`--repo-config`).
    RepoConfig(PathBuf),
    /// Nobody set it: Atlantis's default.
    Default,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::Proxy(k) => write!(f, "proxy config {k}"),
            SettingSource::Env(v) => write!(f, "environment {v}"),
            SettingSource::ServerConfig(p) => write!(f, "Atlantis config {}", p.display()),
            SettingSource::RepoConfig(p) => write!(f, "Atlantis repo config {}", p.display()),
            SettingSource::Default => f.write_str("Atlantis default"),
        }
    }
}

/// The Atlantis flags the proxy reads. Secrets among them are never printed.
pub const FLAGS: &[&str] = &[
    "allow-commands",
    "allow-draft-prs",
    "allow-fork-prs",
    "api-secret",
    "autodiscover-mode",
    "autoplan-file-list",
    "azuredevops-user",
    "azuredevops-webhook-password",
    "azuredevops-webhook-user",
    "bitbucket-base-url",
    "bitbucket-user",
    "bitbucket-webhook-secret",
    "disable-apply",
    "disable-apply-all",
    "disable-autoplan",
    "disable-autoplan-label",
    "disable-repo-locking",
    "disable-unlock-label",
    "executable-name",
    "gh-app-id",
    "gh-app-installation-id",
    "gh-app-key",
    "gh-app-key-file",
    "gh-hostname",
    "gh-token",
    "gh-token-file",
    "gh-user",
    "gh-webhook-secret",
    "gitea-base-url",
    "gitea-token",
    "gitea-user",
    "gitea-webhook-secret",
    "gitlab-hostname",
    "gitlab-token",
    "gitlab-user",
    "gitlab-webhook-secret",
    "azuredevops-token",
    "bitbucket-token",
    "repo-allowlist",
    "repo-config",
    "repo-config-json",
];

/// Flags whose values are credentials.
pub const SECRET_FLAGS: &[&str] = &[
    "api-secret",
    "azuredevops-token",
    "azuredevops-webhook-password",
    "bitbucket-token",
    "bitbucket-webhook-secret",
    "gh-app-key",
    "gh-token",
    "gh-webhook-secret",
    "gitea-token",
    "gitea-webhook-secret",
    "gitlab-token",
    "gitlab-webhook-secret",
];

/// The environment variable Atlantis reads for a flag (viper's `ATLANTIS_` prefix and `-` → `_`).
pub fn env_name(flag: &str) -> String {
    format!("ATLANTIS_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Atlantis's settings as found in its config file and environment.
#[derive(Clone, Debug, Default)]
pub struct AtlantisSettings {
    values: BTreeMap<&'static str, (String, SettingSource)>,
}

impl AtlantisSettings {
    /// Reads `server_config` (when given, or named by `ATLANTIS_CONFIG`) and the `ATLANTIS_*`
    /// variables of `env`. A file that cannot be read or parsed is an error naming `key`.
    pub fn load(
        key: &str,
        server_config: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        let from_env_path = env
            .get("ATLANTIS_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(path) = server_config.map(Path::to_path_buf).or(from_env_path) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(key, format!("cannot read {}: {e}", path.display()))
            })?;
            let doc: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_norway::from_str(&text).map_err(|e| {
                    ConfigError::new(
                        key,
                        format!("{} is not valid YAML: {}", path.display(), redact(&e)),
                    )
                })?
            };
            if let Value::Mapping(map) = doc {
                for (k, v) in map {
                    let Some(name) = k.as_str().and_then(|k| FLAGS.iter().find(|f| **f == k))
                    else {
                        continue;
                    };
                    let Some(text) = scalar_text(&v) else {
                        return Err(ConfigError::new(
                            key,
                            format!("{}: `{name}` is not a single value", path.display()),
                        ));
                    };
                    values.insert(*name, (text, SettingSource::ServerConfig(path.clone())));
                }
            } else if !doc.is_null() {
                return Err(ConfigError::new(
                    key,
                    format!("{} is not a mapping of Atlantis flags", path.display()),
                ));
            }
        }
        for flag in FLAGS {
            let var = env_name(flag);
            if let Some(v) = env.get(&var) {
                values.insert(*flag, (v.clone(), SettingSource::Env(var)));
            }
        }
        Ok(Self { values })
    }

    /// The raw text of a flag and where it came from.
    pub fn get(&self, flag: &str) -> Option<(&str, &SettingSource)> {
        self.values.get(flag).map(|(v, s)| (v.as_str(), s))
    }

    /// A boolean flag, parsed like Go's `strconv.ParseBool`.
    pub fn bool(&self, flag: &str) -> Result<Option<(bool, SettingSource)>, ConfigError> {
        let Some((text, src)) = self.get(flag) else {
            return Ok(None);
        };
        let b = match text.trim() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => {
                return Err(ConfigError::new(
                    src.to_string(),
                    format!("`{flag}` is '{text}', not a boolean"),
                ));
            }
        };
        Ok(Some((b, src.clone())))
    }

    /// A non-empty string flag.
    pub fn string(&self, flag: &str) -> Option<(String, SettingSource)> {
        self.get(flag)
            .filter(|(v, _)| !v.is_empty())
            .map(|(v, s)| (v.to_owned(), s.clone()))
    }
}

/// A YAML scalar as Atlantis's viper reads it into a flag (a sequence is joined with commas,
/// which is how `allow-commands` or `repo-allowlist` may be written in the file).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Sequence(items) => items
            .iter()
            .map(scalar_text)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => None,
    }
}

/// A YAML error without the quoted text around it (the file may hold secrets).
fn redact(e: &serde_norway::Error) -> String {
    match e.location() {
        Some(l) => format!("syntax error at line {}, column {}", l.line(), l.column()),
        None => "syntax error".into(),
    }
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
    fn environment_beats_the_file_and_sources_are_named() {
        let dir = std::env::temp_dir().join(format!("alp-atl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("atlantis.yaml");
        std::fs::write(
            &path,
            "allow-fork-prs: true\nrepo-allowlist: [github.com/acme/*, '!github.com/acme/x']\nport: 4141\ngh-token: t0k\n",
        )
        .unwrap();
        let s = AtlantisSettings::load(
            "atlantis.server-config",
            Some(&path),
            &env(&[
                ("ATLANTIS_ALLOW_FORK_PRS", "false"),
                ("ATLANTIS_GH_USER", "bot"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.bool("allow-fork-prs").unwrap(),
            Some((false, SettingSource::Env("ATLANTIS_ALLOW_FORK_PRS".into())))
        );
        let (list, src) = s.string("repo-allowlist").unwrap();
        assert_eq!(list, "github.com/acme/*,!github.com/acme/x");
        assert_eq!(src, SettingSource::ServerConfig(path.clone()));
        assert_eq!(s.string("gh-user").unwrap().0, "bot");
        assert!(
            s.get("port").is_none(),
            "flags the proxy does not use are skipped"
        );
        std::fs::write(&path, "gh-token: [\n").unwrap();
        let e = AtlantisSettings::load("k", Some(&path), &HashMap::new()).unwrap_err();
        assert!(!e.to_string().contains("gh-token"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn booleans_parse_like_go() {
        let s =
            AtlantisSettings::load("k", None, &env(&[("ATLANTIS_DISABLE_AUTOPLAN", "T")])).unwrap();
        assert!(s.bool("disable-autoplan").unwrap().unwrap().0);
        let s = AtlantisSettings::load("k", None, &env(&[("ATLANTIS_DISABLE_AUTOPLAN", "yes")]))
            .unwrap();
        assert_eq!(
            s.bool("disable-autoplan").unwrap_err().key,
            "environment ATLANTIS_DISABLE_AUTOPLAN"
        );
    }
}
