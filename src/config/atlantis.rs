//! `atlantis:` → [`AtlantisConfig`]: the proxy's own keys first, then Atlantis's own
//! configuration (its `--config` file named by `atlantis.server-config`, the `ATLANTIS_*`
//! variables, its repos.yaml named by `atlantis.repo-config`), then Atlantis's defaults. Each
//! setting that decides which locks Atlantis takes is recorded with where it came from, for
//! `check-config`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::atlantis_server::{AtlantisSettings, SECRET_FLAGS, SettingSource};
use super::raw::RawAtlantis;
use super::validate::{dur, positive, secret};
use super::*;

type Result<T> = std::result::Result<T, ConfigError>;

/// Reads the proxy's value or else Atlantis's, and remembers which one won.
pub(super) struct Merge<'a> {
    pub(super) atlantis: &'a AtlantisSettings,
    pub(super) report: Vec<SettingReport>,
}

impl Merge<'_> {
    pub(super) fn note(&mut self, name: &'static str, value: String, source: SettingSource) {
        let value = if SECRET_FLAGS.contains(&name) {
            "***".to_owned()
        } else {
            value
        };
        self.report.retain(|r| r.name != name);
        self.report.push(SettingReport {
            name,
            value,
            source,
        });
    }

    fn bool(
        &mut self,
        flag: &'static str,
        proxy: Option<bool>,
        proxy_key: &str,
        default: bool,
    ) -> Result<bool> {
        let (v, src) = match (proxy, self.atlantis.bool(flag)?) {
            (Some(v), _) => (v, SettingSource::Proxy(proxy_key.into())),
            (None, Some((v, src))) => (v, src),
            (None, None) => (default, SettingSource::Default),
        };
        self.note(flag, v.to_string(), src);
        Ok(v)
    }

    /// A string setting; `None` when nobody set it (recorded as `default`).
    fn string(
        &mut self,
        flag: &'static str,
        proxy: Option<String>,
        proxy_key: &str,
        default: &str,
    ) -> Option<String> {
        let (v, src) = match (proxy.filter(|p| !p.is_empty()), self.atlantis.string(flag)) {
            (Some(v), _) => (Some(v), SettingSource::Proxy(proxy_key.into())),
            (None, Some((v, src))) => (Some(v), src),
            (None, None) => (None, SettingSource::Default),
        };
        let shown = v.clone().unwrap_or_else(|| default.to_owned());
        self.note(flag, shown, src);
        v
    }

    /// A secret: the proxy's key, else Atlantis's flag; validated like every proxy secret.
    pub(super) fn secret(
        &mut self,
        flag: &'static str,
        proxy: Option<Secret>,
        proxy_key: &str,
    ) -> Result<Option<Secret>> {
        if let Some(s) = proxy {
            self.note(flag, String::new(), SettingSource::Proxy(proxy_key.into()));
            return Ok(Some(s));
        }
        let Some((v, src)) = self.atlantis.string(flag) else {
            return Ok(None);
        };
        let s = secret(&src.to_string(), Some(RawSecret(v)))?;
        self.note(flag, String::new(), src);
        Ok(s)
    }
}

/// Builds the `atlantis:` section.
pub(super) fn atlantis(a: RawAtlantis, env: &HashMap<String, String>) -> Result<AtlantisConfig> {
    let server_config = a
        .server_config
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(Path::new);
    let settings = AtlantisSettings::load("atlantis.server-config", server_config, env)?;
    let mut m = Merge {
        atlantis: &settings,
        report: Vec::new(),
    };

    let executable_name = m
        .string(
            "executable-name",
            a.executable_name,
            "atlantis.executable-name",
            "atlantis",
        )
        .unwrap_or_else(|| "atlantis".into());
    if executable_name.trim().is_empty() || executable_name.contains(char::is_whitespace) {
        return Err(ConfigError::new(
            "atlantis.executable-name",
            "must be one word, like Atlantis's --executable-name",
        ));
    }

    // Webhook secrets: the proxy's keys, else Atlantis's own flags.
    let ws = a.webhook_secrets;
    let github = secret("atlantis.webhook-secrets.github", ws.github)?;
    let gitlab = secret("atlantis.webhook-secrets.gitlab", ws.gitlab)?;
    let bitbucket = secret("atlantis.webhook-secrets.bitbucket", ws.bitbucket)?;
    let gitea = secret("atlantis.webhook-secrets.gitea", ws.gitea)?;
    let azure = match ws.azuredevops {
        None => None,
        Some(b) => match (b.user, b.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, Secret::new(p))),
            _ => {
                return Err(ConfigError::new(
                    "atlantis.webhook-secrets.azuredevops",
                    "needs both user and password",
                ));
            }
        },
    };
    let k = "atlantis.webhook-secrets";
    let webhook_secrets = WebhookSecrets {
        github: m.secret("gh-webhook-secret", github, &format!("{k}.github"))?,
        gitlab: m.secret("gitlab-webhook-secret", gitlab, &format!("{k}.gitlab"))?,
        bitbucket: m.secret(
            "bitbucket-webhook-secret",
            bitbucket,
            &format!("{k}.bitbucket"),
        )?,
        gitea: m.secret("gitea-webhook-secret", gitea, &format!("{k}.gitea"))?,
        azuredevops: match azure {
            Some(pair) => Some(pair),
            None => {
                let user = m.string(
                    "azuredevops-webhook-user",
                    None,
                    &format!("{k}.azuredevops"),
                    "",
                );
                let pass = m.secret(
                    "azuredevops-webhook-password",
                    None,
                    &format!("{k}.azuredevops"),
                )?;
                user.zip(pass)
            }
        },
    };
    let api_secret = secret("atlantis.api-secret", a.api_secret)?;
    let api_secret = m.secret("api-secret", api_secret, "atlantis.api-secret")?;

    let allow_draft_prs = m.bool(
        "allow-draft-prs",
        a.allow_draft_prs,
        "atlantis.allow-draft-prs",
        false,
    )?;
    let disable_autoplan = m.bool(
        "disable-autoplan",
        a.disable_autoplan,
        "atlantis.disable-autoplan",
        false,
    )?;
    let disable_autoplan_label = m.string(
        "disable-autoplan-label",
        a.disable_autoplan_label,
        "atlantis.disable-autoplan-label",
        "",
    );
    let allow_fork_prs = m.bool(
        "allow-fork-prs",
        a.allow_fork_prs,
        "atlantis.allow-fork-prs",
        false,
    )?;
    let disable_repo_locking = m.bool(
        "disable-repo-locking",
        a.disable_repo_locking,
        "atlantis.disable-repo-locking",
        false,
    )?;
    let disable_apply_all = m.bool(
        "disable-apply-all",
        a.disable_apply_all,
        "atlantis.disable-apply-all",
        false,
    )?;
    let disable_unlock_label = m.string(
        "disable-unlock-label",
        a.disable_unlock_label,
        "atlantis.disable-unlock-label",
        "",
    );
    let allow_commands = allow_commands(&mut m, a.allow_commands)?;
    let repo_allowlist = m
        .string(
            "repo-allowlist",
            a.repo_allowlist.map(|l| l.join(",")),
            "atlantis.repo-allowlist",
            "(every repository)",
        )
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    if let Some(rules) = &repo_allowlist
        && let Some(bad) = rules.iter().find(|r| r.contains("://"))
    {
        return Err(ConfigError::new(
            "atlantis.repo-allowlist",
            format!("rule '{bad}' contains :// (write host/owner/repo, like Atlantis)"),
        ));
    }

    let gitlab_hostname = m
        .string(
            "gitlab-hostname",
            a.gitlab_hostname,
            "atlantis.gitlab-hostname",
            "gitlab.com",
        )
        .unwrap_or_else(|| "gitlab.com".into());
    let (gitlab_host, gitlab_base) = split_gitlab_hostname(&gitlab_hostname).ok_or_else(|| {
        ConfigError::new(
            "atlantis.gitlab-hostname",
            format!("'{gitlab_hostname}' has no host"),
        )
    })?;
    let gh_hostname = m
        .string("gh-hostname", None, "", "github.com")
        .unwrap_or_else(|| "github.com".into());

    // Bot users: the proxy's list applies to every VCS and wins; else Atlantis's per-VCS users.
    let proxy_bots = a.vcs_bot_users.unwrap_or_default();
    let bot_user = if proxy_bots.is_empty() {
        PerVcsUser {
            github: m.string("gh-user", None, "", ""),
            gitlab: m.string("gitlab-user", None, "", ""),
            bitbucket: m.string("bitbucket-user", None, "", ""),
            gitea: m.string("gitea-user", None, "", ""),
            azuredevops: m.string("azuredevops-user", None, "", ""),
        }
    } else {
        m.note(
            "gh-user",
            proxy_bots.join(","),
            SettingSource::Proxy("atlantis.vcs-bot-users".into()),
        );
        PerVcsUser::default()
    };

    let gitea_base_url = m
        .string("gitea-base-url", None, "", "https://gitea.com")
        .unwrap_or_else(|| "https://gitea.com".into());
    let hosts = crate::resolve::RepoHosts {
        github: gh_hostname.clone(),
        gitlab: gitlab_host.clone(),
        bitbucket_server: host_of(&m.string(
            "bitbucket-base-url",
            None,
            "",
            "https://api.bitbucket.org",
        ))
        .unwrap_or_else(|| "bitbucket.org".into()),
        gitea: host_of(&Some(gitea_base_url.clone())).unwrap_or_else(|| "gitea.com".into()),
    };

    let vcs_tokens = super::vcs_access::vcs_tokens(
        &mut m,
        a.vcs_tokens,
        &gh_hostname,
        &gitlab_host,
        &gitlab_base,
        &gitea_base_url,
    )?;

    let mut server_repos = server_repos(&mut m, a.repo_config, &settings)?;
    server_repos.locking_disabled = disable_repo_locking;
    let autoplan_file_list = m.string(
        "autoplan-file-list",
        None,
        "",
        crate::resolve::DEFAULT_AUTOPLAN_FILE_LIST,
    );
    let autodiscover_mode = match m.string("autodiscover-mode", None, "", "auto").as_deref() {
        None | Some("auto") => crate::resolve::AutoDiscoverMode::Auto,
        Some("enabled") => crate::resolve::AutoDiscoverMode::Enabled,
        Some("disabled") => crate::resolve::AutoDiscoverMode::Disabled,
        Some(other) => {
            return Err(ConfigError::new(
                "autodiscover-mode",
                format!("'{other}' is not auto, enabled or disabled"),
            ));
        }
    };

    Ok(AtlantisConfig {
        executable_name,
        vcs_bot_users: proxy_bots,
        webhook_secrets,
        allow_unsigned_webhooks: super::validate::allow_unsigned(
            a.allow_unsigned_webhooks.unwrap_or_default(),
        )?,
        api_secret,
        lock_sync_interval: positive("atlantis.lock-sync-interval", a.lock_sync_interval, "10s")?,
        lock_sync_grace: dur("atlantis.lock-sync-grace", a.lock_sync_grace, "30s")?,
        resolve_timeout: positive("atlantis.resolve-timeout", a.resolve_timeout, "2s")?,
        allow_draft_prs,
        disable_autoplan,
        notify_on_grant: a.notify_on_grant.unwrap_or(false),
        disable_autoplan_label,
        allow_commands,
        vcs_tokens,
        allow_fork_prs,
        disable_repo_locking,
        repo_allowlist,
        disable_apply_all,
        disable_unlock_label,
        gitlab_hostname,
        bot_user,
        hosts,
        server_repos,
        autoplan_file_list,
        autodiscover_mode,
        settings: m.report,
    })
}

/// `--allow-commands` (a comma list, `all` for every command), minus `apply` under the old
/// `--disable-apply`.
fn allow_commands(
    m: &mut Merge<'_>,
    proxy: Option<Vec<String>>,
) -> Result<Option<Vec<CommentCommandName>>> {
    let default = "version,plan,apply,unlock,approve_policies,cancel";
    let text = m.string(
        "allow-commands",
        proxy.map(|l| l.join(",")),
        "atlantis.allow-commands",
        default,
    );
    let key = m
        .report
        .iter()
        .find(|r| r.name == "allow-commands")
        .map(|r| r.source.to_string())
        .unwrap_or_default();
    let mut list = match &text {
        None => None,
        Some(t) => {
            let mut out = Vec::new();
            for n in t.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if n == "all" {
                    out = CommentCommandName::ALL.to_vec();
                    break;
                }
                let c = CommentCommandName::parse(&n.to_ascii_lowercase()).ok_or_else(|| {
                    ConfigError::new(
                        &key,
                        format!("'{n}' is not an Atlantis command (version, plan, apply, cancel, unlock, approve_policies, import, state, all)"),
                    )
                })?;
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            Some(out)
        }
    };
    if m.atlantis.bool("disable-apply")?.is_some_and(|(b, _)| b) {
        let l = list.get_or_insert_with(|| CommentCommandName::DEFAULT_ALLOWED.to_vec());
        l.retain(|c| *c != CommentCommandName::Apply);
        let names: Vec<&str> = l.iter().map(|c| c.as_str()).collect();
        let src = m
            .atlantis
            .get("disable-apply")
            .map(|(_, s)| s.clone())
            .unwrap_or(SettingSource::Default);
        m.note("allow-commands", names.join(","), src);
    }
    Ok(list)
}

/// The server-side repo config: `atlantis.repo-config`, else Atlantis's `repo-config` flag (file
/// or `ATLANTIS_REPO_CONFIG`), else `repo-config-json`.
fn server_repos(
    m: &mut Merge<'_>,
    proxy: Option<String>,
    settings: &AtlantisSettings,
) -> Result<crate::resolve::ServerRepoConfig> {
    let path = m.string("repo-config", proxy, "atlantis.repo-config", "(none)");
    let key = m
        .report
        .iter()
        .find(|r| r.name == "repo-config")
        .map(|r| r.source.to_string())
        .unwrap_or_default();
    let (text, at) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| ConfigError::new(&key, format!("cannot read {p}: {e}")))?;
            (text, p)
        }
        None => match settings.string("repo-config-json") {
            Some((json, src)) => {
                m.note("repo-config-json", "set".into(), src);
                (json, "repo-config-json".to_owned())
            }
            None => return Ok(crate::resolve::ServerRepoConfig::default()),
        },
    };
    let cfg = crate::resolve::ServerRepoConfig::parse(&text)
        .map_err(|e| ConfigError::new(&key, format!("{at}: {e}")))?;
    if let Some(r) = m.report.iter_mut().find(|r| r.name == "repo-config") {
        r.source = match &r.source {
            SettingSource::Default => SettingSource::RepoConfig(PathBuf::from(&at)),
            other => other.clone(),
        };
    }
    Ok(cfg)
}

/// `models.ParseGitlabHostname`: host (with port) and base path without a trailing `/`.
pub(crate) fn split_gitlab_hostname(raw: &str) -> Option<(String, String)> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = host.rsplit('@').next().unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), path.trim_end_matches('/').to_owned()))
}

/// The host name (no port) of a base URL setting.
fn host_of(url: &Option<String>) -> Option<String> {
    let u: http::Uri = url.as_deref()?.parse().ok()?;
    u.host().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_hostnames_split_like_atlantis() {
        assert_eq!(
            split_gitlab_hostname("gitlab.com"),
            Some(("gitlab.com".into(), String::new()))
        );
        assert_eq!(
            split_gitlab_hostname("https://acme.com:8080/gitlab/"),
            Some(("acme.com:8080".into(), "/gitlab".into()))
        );
        assert_eq!(split_gitlab_hostname("https://"), None);
    }
}
