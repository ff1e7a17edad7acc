//! What `check-config` and start-up say about a configuration: every Atlantis setting with
//! where it came from, and in plain words what will and will not work with it.

use super::{Config, Vcs};

/// How serious one line of the capability report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Works as configured.
    Ok,
    /// Works, but not the way a user expects unless they act (silent queues, legacy autoplans).
    Warn,
}

/// One statement about what the configuration makes work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Ok or warn.
    pub level: Level,
    /// The sentence.
    pub text: String,
}

fn ok(text: impl Into<String>) -> Capability {
    Capability {
        level: Level::Ok,
        text: text.into(),
    }
}

fn warn(text: impl Into<String>) -> Capability {
    Capability {
        level: Level::Warn,
        text: text.into(),
    }
}

impl Config {
    /// `name = value (source)` for every Atlantis setting the proxy read.
    pub fn atlantis_settings_report(&self) -> Vec<String> {
        let width = self
            .atlantis
            .settings
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        let mut rows: Vec<_> = self.atlantis.settings.iter().collect();
        rows.sort_by_key(|s| s.name);
        rows.into_iter()
            .map(|s| {
                let value = if s.value.is_empty() {
                    "(none)"
                } else {
                    &s.value
                };
                format!("{:width$}  {value}  [{}]", s.name, s.source)
            })
            .collect()
    }

    /// What will and will not work with this configuration, in plain words.
    pub fn capabilities(&self) -> Vec<Capability> {
        let a = &self.atlantis;
        let t = &a.vcs_tokens;
        let mut out = Vec::new();
        let source = |name: &str| {
            a.settings
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.source.to_string())
                .unwrap_or_else(|| "proxy config".into())
        };
        let split = self.enhanced.traffic_split;
        if !self.enhanced.enabled {
            out.push(warn(
                "enhanced-locking.enabled is false: every request takes the legacy path",
            ));
        } else if split == 0 {
            out.push(warn(format!(
                "traffic split {split}%: every repository takes the legacy path (Atlantis alone); \
                 raise it with `atlantis-lock-proxy split set 100` or enhanced-locking.traffic-split \
                 (a split stored in Redis by an earlier run wins over the file)"
            )));
        } else {
            out.push(ok(format!(
                "traffic split {split}%: that share of repositories (by stable hash) is gated by the engine{}",
                if self.enhanced.monitor_only {
                    ", in shadow mode (legacy decides)"
                } else {
                    ""
                }
            )));
        }
        if a.disable_repo_locking {
            out.push(warn(
                "disable-repo-locking is set: Atlantis takes no locks, so the proxy gates nothing",
            ));
        }
        let secret = |v: Vcs| match v {
            Vcs::Github => a.webhook_secrets.github.is_some(),
            Vcs::Gitlab => a.webhook_secrets.gitlab.is_some(),
            Vcs::BitbucketCloud | Vcs::BitbucketServer => a.webhook_secrets.bitbucket.is_some(),
            Vcs::Gitea => a.webhook_secrets.gitea.is_some(),
            Vcs::AzureDevops => a.webhook_secrets.azuredevops.is_some(),
        };
        let gated: Vec<&str> = Vcs::ALL
            .into_iter()
            .filter(|v| secret(*v) || a.allow_unsigned_webhooks.contains(v))
            .map(Vcs::as_str)
            .collect();
        if gated.is_empty() {
            out.push(warn(
                "no webhook secret: every webhook passes to Atlantis untouched and moves no lock \
                 in the engine (set ATLANTIS_GH_WEBHOOK_SECRET, ... or atlantis.webhook-secrets)",
            ));
        } else {
            out.push(ok(format!("webhooks gated for: {}", gated.join(", "))));
        }
        let mut announced = Vec::new();
        if t.github.is_some() {
            announced.push(format!("GitHub (token from {})", source("gh-token")));
        } else if let Some(app) = &t.github_app {
            let key = if a.settings.iter().any(|s| s.name == "gh-app-key-file") {
                "gh-app-key-file"
            } else {
                "gh-app-key"
            };
            announced.push(format!(
                "GitHub (as GitHub App {} from {}, key from {}, with its installation token)",
                app.app_id,
                source("gh-app-id"),
                source(key)
            ));
        }
        if t.gitlab.is_some() {
            announced.push(format!("GitLab (token from {})", source("gitlab-token")));
        }
        if announced.is_empty() {
            out.push(warn(
                "queued commands are SILENT: no VCS token, so no comment tells the pull it waits \
                 (counted as atlantis_lock_proxy_notifications_total{outcome=\"unconfigured\"}); \
                 the proxy uses Atlantis's ATLANTIS_GH_TOKEN, its GitHub App \
                 (ATLANTIS_GH_APP_ID with ATLANTIS_GH_APP_KEY or _KEY_FILE), ATLANTIS_GITLAB_TOKEN \
                 or atlantis.vcs-tokens.*",
            ));
        } else {
            out.push(ok(format!(
                "queued commands are announced on pulls of {}; Bitbucket, Azure DevOps and Gitea pulls get no comment",
                announced.join(", ")
            )));
        }
        if let Some(app) = &t.github_app {
            out.push(ok(format!(
                "GitHub API calls authenticate as GitHub App {} with an installation token ({}), \
                 refreshed before it expires",
                app.app_id,
                match app.installation_id {
                    Some(id) => format!("installation {id}"),
                    None => "the app's only installation, found at first use".to_string(),
                }
            )));
        }
        let mut apis = Vec::new();
        if t.github_authenticated() {
            apis.push("GitHub");
        }
        if t.gitlab.is_some() {
            apis.push("GitLab");
        }
        let table = if self.repos.is_empty() {
            String::new()
        } else {
            format!(
                " and the {} repositories of the proxy's repos: table",
                self.repos.len()
            )
        };
        if apis.is_empty() {
            out.push(warn(format!(
                "autoplans, bare `atlantis plan` and `-p` comments take the legacy path \
                 (resolves_total{{outcome=\"no_client\"}}){}: no VCS API token to read changed files and atlantis.yaml{}",
                if table.is_empty() { "" } else { " except on the table's repositories" },
                table
            )));
            out.push(warn(
                "`-d`/`-w` comments are keyed as unnamed projects: a project named in atlantis.yaml \
                 at that dir is not seen without a VCS API token",
            ));
        } else {
            out.push(ok(format!(
                "autoplans, bare `atlantis plan`, `-p` and `-d`/`-w` are resolved through the VCS API on {}{table}; \
                 other VCSs take the legacy path for them",
                apis.join(" and ")
            )));
        }
        if a.allow_fork_prs {
            out.push(ok("fork pulls: commands run (allow-fork-prs is set)"));
        } else {
            let mut asked = Vec::new();
            let mut unasked = Vec::new();
            for (name, has) in [
                ("GitHub", t.github_authenticated()),
                ("Gitea", t.gitea.is_some()),
            ] {
                if has {
                    asked.push(name)
                } else {
                    unasked.push(name)
                }
            }
            if unasked.is_empty() {
                out.push(ok(
                    "fork pulls: refused like Atlantis does (GitHub and Gitea comments checked through the pull API)",
                ));
            } else {
                let asked = if asked.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{} comments are checked through the pull API; ",
                        asked.join(" and ")
                    )
                };
                out.push(warn(format!(
                    "fork pulls: refused from PR events and from GitLab/Bitbucket/Azure payloads; {asked}a {} \
                     comment does not say, and without a token the proxy cannot ask",
                    unasked.join(" or ")
                )));
            }
        }
        if self.atlantis.server_repos.given() {
            out.push(ok(format!(
                "server-side repo config read ({}): repo_locks and allowed_overrides merged as Atlantis does",
                source("repo-config")
            )));
        } else {
            out.push(warn(
                "no server-side repo config (atlantis.repo-config / ATLANTIS_REPO_CONFIG): a repo's \
                 atlantis.yaml repo_locks are taken as written",
            ));
        }
        out
    }
}
