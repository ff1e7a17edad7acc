//! Gitea REST v1 client, reduced to what the proxy needs: is a pull from a fork?
//!
//! A Gitea comment webhook does not say where the pull's head lives. Atlantis (v0.47.1,
//! `command_runner.go` `getGiteaData`) fetches the pull with its `gitea-token`
//! (`GET /api/v1/repos/{owner}/{repo}/pulls/{index}`, `Authorization: token …`) and refuses a
//! fork without `--allow-fork-prs`; the proxy asks the same question the same way.

use serde::Deserialize;

use super::github::{json, ok};
use super::http::{ApiClient, ApiConfig, AuthStyle};
use super::{PullInfo, VcsError, encode_segment};

/// A Gitea client; `base_url` is Atlantis's `gitea-base-url` (`https://gitea.com`), without
/// `/api/v1`.
#[derive(Debug)]
pub struct GiteaClient {
    api: ApiClient,
}

#[derive(Deserialize)]
struct PullJson {
    head: BranchJson,
    base: BranchJson,
}

#[derive(Deserialize)]
struct BranchJson {
    #[serde(default)]
    sha: String,
    #[serde(rename = "ref", default)]
    name: String,
    #[serde(default)]
    repo: Option<RepoJson>,
}

#[derive(Deserialize)]
struct RepoJson {
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    owner: Option<OwnerJson>,
}

#[derive(Deserialize)]
struct OwnerJson {
    #[serde(default)]
    login: Option<String>,
}

/// The owner as Atlantis reads it: from `full_name` (`models.NewRepo`), else `owner.login`.
fn owner(r: &Option<RepoJson>) -> Option<&str> {
    let r = r.as_ref()?;
    r.full_name
        .as_deref()
        .and_then(|f| f.rsplit_once('/').map(|(o, _)| o))
        .or(r.owner.as_ref()?.login.as_deref())
        .filter(|o| !o.is_empty())
}

/// Atlantis's `HeadRepo.Owner != Pull.BaseRepo.Owner`; `None` when the base does not say.
fn fork(p: &PullJson) -> Option<bool> {
    match (owner(&p.base.repo), owner(&p.head.repo)) {
        (Some(b), Some(h)) => Some(b != h),
        (Some(_), None) => Some(true),
        _ => None,
    }
}

impl GiteaClient {
    /// Builds a client with `cfg.token`, sent as `Authorization: token <token>`;
    /// `cfg.base_url` is the server's root (`/api/v1` is appended).
    pub fn new(mut cfg: ApiConfig) -> Result<Self, VcsError> {
        cfg.base_url = format!("{}/api/v1", cfg.base_url.trim_end_matches('/'));
        Ok(Self {
            api: ApiClient::new(
                cfg,
                AuthStyle::Token,
                vec![(
                    http::header::ACCEPT,
                    http::HeaderValue::from_static("application/json"),
                )],
            )?,
        })
    }

    /// `GET /repos/{owner}/{repo}/pulls/{index}`: head SHA, base branch, and whether the head
    /// repository's owner differs from the base's (a head repository that is gone counts as a
    /// fork: Atlantis cannot parse the pull and runs nothing).
    pub async fn pull(&self, repo: &str, number: i64) -> Result<PullInfo, VcsError> {
        let Some((o, r)) = repo.split_once('/') else {
            return Err(VcsError::BadResponse {
                endpoint: "GET /repos/{owner}/{repo}/pulls/{index}".into(),
                detail: format!("{repo:?} is not owner/name"),
            });
        };
        let path = format!(
            "/repos/{}/{}/pulls/{number}",
            encode_segment(o),
            encode_segment(r)
        );
        let resp = ok(self.api.get(&path).await?, &path)?;
        let pull: PullJson = json(&resp, &path)?;
        let fork = fork(&pull);
        Ok(PullInfo {
            head_sha: pull.head.sha,
            base_branch: pull.base.name,
            fork,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(head: serde_json::Value, base: serde_json::Value) -> Option<bool> {
        let p: PullJson = serde_json::from_value(serde_json::json!({
            "head": {"sha": "a", "ref": "f", "repo": head},
            "base": {"sha": "b", "ref": "main", "repo": base},
        }))
        .unwrap();
        fork(&p)
    }

    #[test]
    fn a_fork_is_a_head_of_another_owner() {
        let repo = |full: &str, login: &str| serde_json::json!({"full_name": full, "owner": {"login": login}});
        assert_eq!(
            pull(repo("acme/infra", "acme"), repo("acme/infra", "acme")),
            Some(false)
        );
        assert_eq!(
            pull(repo("forker/infra", "forker"), repo("acme/infra", "acme")),
            Some(true)
        );
        assert_eq!(
            pull(
                serde_json::json!({"owner": {"login": "forker"}}),
                repo("acme/infra", "acme")
            ),
            Some(true)
        );
        assert_eq!(
            pull(serde_json::Value::Null, repo("acme/infra", "acme")),
            Some(true)
        );
    }
}
