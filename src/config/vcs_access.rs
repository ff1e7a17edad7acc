//! VCS API access for the resolver and the notifier: the proxy's `atlantis.vcs-tokens`, else the
//! credentials Atlantis is given (`gh-token(-file)`, the GitHub App settings, `gitlab-token`),
//! and the API URLs derived from Atlantis's hostnames as Atlantis derives them.

use super::atlantis::Merge;
use super::atlantis_server::SettingSource;
use super::validate::{opt_url, secret};
use super::*;
use crate::vcs::{GithubAppCredentials, GithubAppKey};

type Result<T> = std::result::Result<T, ConfigError>;

/// VCS API tokens: the proxy's, else those Atlantis is given; API URLs from Atlantis's hostnames.
///
/// GitHub credentials are chosen as Atlantis chooses them (`server/server.go`): with `gh-user`
/// set, the token; else with `gh-app-id` set, the GitHub App; the proxy's own
/// `atlantis.vcs-tokens.github` wins over both.
pub(super) fn vcs_tokens(
    m: &mut Merge<'_>,
    t: super::raw::RawVcsTokens,
    gh_hostname: &str,
    gitlab_host: &str,
    gitlab_base: &str,
    gitea_base_url: &str,
) -> Result<VcsTokens> {
    let k = "atlantis.vcs-tokens";
    let proxy_github = secret(&format!("{k}.github"), t.github)?;
    // Validated whenever it is set: Atlantis refuses to start with a broken App setting too.
    let app = github_app(m)?;
    let gh_user = m.atlantis.string("gh-user").is_some();
    let ((github, github_token_file), github_app) = match app {
        Some(app) if proxy_github.is_none() && !gh_user => ((None, None), Some(app)),
        app => {
            if app.is_some() {
                let why = if proxy_github.is_some() {
                    "not used: the proxy's atlantis.vcs-tokens.github wins"
                } else {
                    "not used: gh-user is set, so Atlantis (and the proxy) use gh-token"
                };
                annotate(m, "gh-app-id", why);
            }
            (atlantis_token(m, proxy_github)?, None)
        }
    };
    let gitlab = secret(&format!("{k}.gitlab"), t.gitlab)?;
    let gitlab = m.secret("gitlab-token", gitlab, &format!("{k}.gitlab"))?;
    let github_api_url = match opt_url(&format!("{k}.github-api-url"), t.github_api_url)? {
        Some(u) => Some(u),
        None => match github_api_base(gh_hostname) {
            Some(url) => opt_url("gh-hostname", Some(url))?,
            None => None,
        },
    };
    let gitlab_api_url = match opt_url(&format!("{k}.gitlab-api-url"), t.gitlab_api_url)? {
        Some(u) => Some(u),
        None if gitlab_host != "gitlab.com" || !gitlab_base.is_empty() => opt_url(
            "gitlab-hostname",
            Some(format!("https://{gitlab_host}{gitlab_base}/api/v4")),
        )?,
        None => None,
    };
    let gitea = m.secret("gitea-token", None, "")?;
    Ok(VcsTokens {
        gitea,
        gitea_base_url: gitea_base_url.trim_end_matches('/').to_owned(),
        github,
        github_token_file,
        github_app,
        github_api_url,
        gitlab,
        gitlab_api_url,
    })
}

/// The GitHub token: the proxy's key, else `gh-token`, else the contents of `gh-token-file`
/// (read now, so a missing file stops the start as it stops Atlantis's, and returned with the
/// file's path: the clients read it again on every call, as Atlantis's `UserCredentials` do).
fn atlantis_token(
    m: &mut Merge<'_>,
    proxy: Option<Secret>,
) -> Result<(Option<Secret>, Option<std::path::PathBuf>)> {
    let k = "atlantis.vcs-tokens.github";
    let github = m.secret("gh-token", proxy, k)?;
    if github.is_none()
        && let Some((path, src)) = m.atlantis.string("gh-token-file")
    {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new(src.to_string(), format!("gh-token-file {path}: {e}")))?;
        let github = secret(&src.to_string(), Some(RawSecret(text.trim().to_owned())))?;
        m.note("gh-token", String::new(), src);
        return Ok((github, Some(path.into())));
    }
    Ok((github, None))
}

/// `gh-app-id` with `gh-app-key` or `gh-app-key-file` (exactly one, as Atlantis demands) and
/// `gh-app-installation-id`; `None` when no app id is set (Atlantis's default `0`).
fn github_app(m: &mut Merge<'_>) -> Result<Option<GithubAppCredentials>> {
    let Some((id_text, id_src)) = m.atlantis.string("gh-app-id") else {
        return Ok(None);
    };
    let app_id = id_number("gh-app-id", &id_text, &id_src)?;
    if app_id == 0 {
        return Ok(None);
    }
    let inline = m.atlantis.string("gh-app-key");
    let file = m.atlantis.string("gh-app-key-file");
    let (pem, flag, src) = match (inline, file) {
        (Some((_, a)), Some((_, b))) => {
            return Err(ConfigError::new(
                format!("{a} and {b}"),
                "`gh-app-key` and `gh-app-key-file` are both set (Atlantis refuses that too): keep one",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                id_src.to_string(),
                "`gh-app-id` is set without `gh-app-key` or `gh-app-key-file` (Atlantis refuses \
                 that too): give the app's private key",
            ));
        }
        (Some((pem, src)), None) => (pem.into_bytes(), "gh-app-key", src),
        (None, Some((path, src))) => {
            let pem = std::fs::read(&path).map_err(|e| {
                ConfigError::new(src.to_string(), format!("gh-app-key-file {path}: {e}"))
            })?;
            m.note("gh-app-key-file", path, src.clone());
            (pem, "gh-app-key-file", src)
        }
    };
    let key = GithubAppKey::from_pem(&pem)
        .map_err(|e| ConfigError::new(src.to_string(), format!("`{flag}` {e}")))?;
    if flag == "gh-app-key" {
        m.note("gh-app-key", String::new(), src);
    }
    let installation_id = match m.atlantis.string("gh-app-installation-id") {
        None => None,
        Some((text, src)) => {
            let id = id_number("gh-app-installation-id", &text, &src)?;
            m.note("gh-app-installation-id", id.to_string(), src);
            (id != 0).then_some(id)
        }
    };
    if installation_id.is_none() {
        m.note(
            "gh-app-installation-id",
            "(the app's only installation, found through GET /app/installations)".into(),
            SettingSource::Default,
        );
    }
    m.note("gh-app-id", app_id.to_string(), id_src);
    Ok(Some(GithubAppCredentials {
        app_id,
        key,
        installation_id,
    }))
}

/// An Atlantis `int64` id flag (`0` means unset).
fn id_number(flag: &str, text: &str, src: &SettingSource) -> Result<u64> {
    text.trim().parse::<u64>().map_err(|_| {
        ConfigError::new(
            src.to_string(),
            format!("`{flag}` is '{text}', not a number (GitHub shows the app's id on its settings page)"),
        )
    })
}

/// Appends a remark to a setting's reported value.
fn annotate(m: &mut Merge<'_>, name: &'static str, remark: &str) {
    if let Some(r) = m.report.iter_mut().find(|r| r.name == name) {
        r.value = format!("{} ({remark})", r.value);
    }
}

/// The REST base Atlantis derives from `--gh-hostname` (`resolveGithubAPIURL`): `None` for
/// github.com (the client's default `https://api.github.com`), `https://api.<tenant>.ghe.com`
/// for GitHub Enterprise Cloud, `https://<host>/api/v3` for GitHub Enterprise Server.
fn github_api_base(gh_hostname: &str) -> Option<String> {
    let host = gh_hostname.trim();
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    if bare == "github.com" {
        return None;
    }
    let tenant = bare.to_ascii_lowercase();
    let tenant = tenant.strip_prefix("api.").unwrap_or(&tenant);
    if tenant.ends_with(".ghe.com") {
        return Some(format!("https://api.{tenant}"));
    }
    Some(format!("https://{host}/api/v3"))
}

#[cfg(test)]
mod tests {
    use super::github_api_base;

    #[test]
    fn api_bases_follow_atlantis() {
        assert_eq!(github_api_base("github.com"), None);
        assert_eq!(github_api_base("github.com:443"), None);
        assert_eq!(
            github_api_base("ghe.example.com"),
            Some("https://ghe.example.com/api/v3".into())
        );
        assert_eq!(
            github_api_base("ghe.example.com:8443"),
            Some("https://ghe.example.com:8443/api/v3".into())
        );
        assert_eq!(
            github_api_base("Acme.ghe.com"),
            Some("https://api.acme.ghe.com".into())
        );
        assert_eq!(
            github_api_base("api.acme.ghe.com:443"),
            Some("https://api.acme.ghe.com".into())
        );
    }
}
