//! GitHub REST v3 client (github.com and GitHub Enterprise Server).

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;

use std::sync::Arc;

use super::github_app::GithubAppAuth;
use super::http::{ApiClient, ApiConfig, ApiResponse, AuthStyle};
use super::{ChangedFile, DirEntry, PullInfo, VcsError, encode_path, encode_segment};

/// Most pages of pull files followed; GitHub itself stops listing at 3000 files (30 pages).
const MAX_PAGES: usize = 40;

/// A GitHub REST client; `base_url` is `https://api.github.com` or `https://HOST/api/v3`.
#[derive(Debug)]
pub struct GithubClient {
    api: ApiClient,
}

#[derive(Deserialize)]
struct PullJson {
    head: RefJson,
    base: BaseJson,
}

#[derive(Deserialize)]
struct RefJson {
    sha: String,
    #[serde(default)]
    repo: Option<RepoJson>,
}

#[derive(Deserialize)]
struct BaseJson {
    #[serde(rename = "ref")]
    name: String,
    #[serde(default)]
    repo: Option<RepoJson>,
}

#[derive(Deserialize)]
struct RepoJson {
    #[serde(default)]
    full_name: Option<String>,
}

/// The owner of a full repo name (all before the last `/`).
fn owner(r: &Option<RepoJson>) -> Option<&str> {
    r.as_ref()?
        .full_name
        .as_deref()?
        .rsplit_once('/')
        .map(|(o, _)| o)
}

#[derive(Deserialize)]
struct FileJson {
    filename: String,
    status: String,
    #[serde(default)]
    previous_filename: Option<String>,
}

#[derive(Deserialize)]
struct ContentJson {
    #[serde(default)]
    content: String,
    #[serde(default)]
    encoding: String,
}

#[derive(Deserialize)]
struct DirEntryJson {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The headers GitHub's REST docs ask every call to send.
pub(crate) fn github_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        ),
        (
            HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static("2022-11-28"),
        ),
    ]
}

impl GithubClient {
    /// Builds a client with `cfg.token`; fails only on an unusable base URL or token.
    pub fn new(cfg: ApiConfig) -> Result<Self, VcsError> {
        Ok(Self {
            api: ApiClient::new(cfg, AuthStyle::Bearer, github_headers())?,
        })
    }

    /// Builds a client that signs in as a GitHub App: every call carries `app`'s installation
    /// token (`cfg.token` is ignored).
    pub fn with_app(cfg: ApiConfig, app: Arc<GithubAppAuth>) -> Result<Self, VcsError> {
        Ok(Self {
            api: ApiClient::with_app(cfg, github_headers(), app)?,
        })
    }

    /// The underlying HTTP client, for calls this type does not wrap.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// `GET /repos/{repo}/pulls/{n}`: head SHA and base branch.
    pub async fn pull(&self, repo: &str, number: i64) -> Result<PullInfo, VcsError> {
        let path = format!("/repos/{}/pulls/{number}", encode_path(repo));
        let resp = ok(self.api.get(&path).await?, &path)?;
        let pull: PullJson = json(&resp, &path)?;
        let fork = match (owner(&pull.base.repo), owner(&pull.head.repo)) {
            (Some(b), Some(h)) => Some(b != h),
            // The head repository was deleted: Atlantis cannot parse the pull and refuses it.
            (Some(_), None) => Some(true),
            _ => None,
        };
        Ok(PullInfo {
            head_sha: pull.head.sha,
            base_branch: pull.base.name,
            fork,
        })
    }

    /// `GET /repos/{repo}/pulls/{n}/files`, every page (via `Link: rel="next"`).
    ///
    /// A renamed file yields both its new path and its old path (removed), as Atlantis does.
    pub async fn changed_files(
        &self,
        repo: &str,
        number: i64,
    ) -> Result<Vec<ChangedFile>, VcsError> {
        let first = format!(
            "/repos/{}/pulls/{number}/files?per_page=100",
            encode_path(repo)
        );
        let mut resp = ok(self.api.get(&first).await?, &first)?;
        let mut files = Vec::new();
        for page in 1.. {
            let batch: Vec<FileJson> = json(&resp, &first)?;
            for f in batch {
                if let Some(prev) = f.previous_filename.filter(|_| f.status == "renamed") {
                    files.push(ChangedFile::removed(prev));
                }
                files.push(ChangedFile {
                    path: f.filename,
                    removed: f.status == "removed",
                });
            }
            let Some(next) = next_link(&resp) else { break };
            if page >= MAX_PAGES {
                return Err(VcsError::BadResponse {
                    endpoint: first,
                    detail: format!("more than {MAX_PAGES} pages of files"),
                });
            }
            resp = ok(self.api.get_link(&next).await?, &first)?;
        }
        Ok(files)
    }

    /// `GET /repos/{repo}/contents/{path}?ref=`: the file's bytes, `None` when it does not exist.
    pub async fn file_content(
        &self,
        repo: &str,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<u8>>, VcsError> {
        let p = format!(
            "/repos/{}/contents/{}?ref={}",
            encode_path(repo),
            encode_path(path),
            encode_segment(git_ref)
        );
        let resp = self.api.get(&p).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = ok(resp, &p)?;
        // A directory answers with an array: there is no file of that name.
        if resp.body.first() == Some(&b'[') {
            return Ok(None);
        }
        let c: ContentJson = json(&resp, &p)?;
        if c.encoding != "base64" {
            // Files over 1 MB come back with encoding "none"; an atlantis.yaml never is.
            return Err(VcsError::BadResponse {
                endpoint: p,
                detail: format!("content encoding {:?}", c.encoding),
            });
        }
        let compact: String = c.content.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(Some)
            .map_err(|e| VcsError::BadResponse {
                endpoint: p,
                detail: format!("bad base64: {e}"),
            })
    }

    /// `GET /repos/{repo}/contents/{dir}?ref=`: the entries of a directory, `None` if absent.
    pub async fn list_dir(
        &self,
        repo: &str,
        dir: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<DirEntry>>, VcsError> {
        let sub = if dir == "." || dir.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(dir))
        };
        let p = format!(
            "/repos/{}/contents{sub}?ref={}",
            encode_path(repo),
            encode_segment(git_ref)
        );
        let resp = self.api.get(&p).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = ok(resp, &p)?;
        if resp.body.first() != Some(&b'[') {
            return Ok(None); // a file, not a directory
        }
        let entries: Vec<DirEntryJson> = json(&resp, &p)?;
        Ok(Some(
            entries
                .into_iter()
                .map(|e| DirEntry {
                    is_dir: e.kind == "dir",
                    name: e.name,
                })
                .collect(),
        ))
    }

    /// `POST /repos/{repo}/issues/{n}/comments`: comments on a pull.
    pub async fn post_comment(&self, repo: &str, number: i64, body: &str) -> Result<(), VcsError> {
        self.create_comment(repo, number, body).await.map(|_| ())
    }

    /// `POST /repos/{repo}/issues/{n}/comments`: comments on a pull and returns the comment id.
    pub async fn create_comment(
        &self,
        repo: &str,
        number: i64,
        body: &str,
    ) -> Result<u64, VcsError> {
        let p = format!("/repos/{}/issues/{number}/comments", encode_path(repo));
        let resp = self
            .api
            .send(Method::POST, &p, Some(body_json(body, &p)?))
            .await?;
        let c: CommentJson = json(&ok(resp, &p)?, &p)?;
        Ok(c.id)
    }

    /// `PATCH /repos/{repo}/issues/comments/{id}`: replaces a comment's text; `false` when the
    /// comment no longer exists (deleted by a user).
    pub async fn edit_comment(&self, repo: &str, id: u64, body: &str) -> Result<bool, VcsError> {
        let p = format!("/repos/{}/issues/comments/{id}", encode_path(repo));
        replace_comment(&self.api, Method::PATCH, &p, body).await
    }

    /// `GET /repos/{repo}/issues/{n}/comments`, every page: the id of the first comment whose
    /// body contains `needle`.
    pub async fn find_comment(
        &self,
        repo: &str,
        number: i64,
        needle: &str,
    ) -> Result<Option<u64>, VcsError> {
        let first = format!(
            "/repos/{}/issues/{number}/comments?per_page=100",
            encode_path(repo)
        );
        let mut resp = ok(self.api.get(&first).await?, &first)?;
        for page in 1.. {
            let batch: Vec<CommentJson> = json(&resp, &first)?;
            if let Some(c) = batch.iter().find(|c| c.body.contains(needle)) {
                return Ok(Some(c.id));
            }
            let Some(next) = next_link(&resp) else { break };
            if page >= MAX_PAGES {
                // A pull this busy is searched no further: a second comment beats none.
                tracing::debug!(endpoint = %first, "comment search stopped at {MAX_PAGES} pages");
                break;
            }
            resp = ok(self.api.get_link(&next).await?, &first)?;
        }
        Ok(None)
    }
}

/// A comment (GitHub issue comment or GitLab note): its id and text.
#[derive(Deserialize)]
pub(crate) struct CommentJson {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) body: String,
}

/// `{"body": text}`, the payload both providers take for a comment.
pub(crate) fn body_json(body: &str, path: &str) -> Result<Bytes, VcsError> {
    serde_json::to_vec(&serde_json::json!({ "body": body }))
        .map(Bytes::from)
        .map_err(|e| VcsError::BadResponse {
            endpoint: path.to_string(),
            detail: e.to_string(),
        })
}

/// The `rel="next"` URL of an RFC 8288 `Link` header.
pub(crate) fn next_link(resp: &ApiResponse) -> Option<String> {
    let link = resp.headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Sends a comment's new text with `method`; `false` when the comment is gone (404), as both
/// providers answer for a comment deleted by a user.
pub(crate) async fn replace_comment(
    api: &ApiClient,
    method: Method,
    path: &str,
    body: &str,
) -> Result<bool, VcsError> {
    let resp = api.send(method, path, Some(body_json(body, path)?)).await?;
    if resp.status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    ok(resp, path).map(|_| true)
}

pub(crate) fn ok(resp: ApiResponse, path: &str) -> Result<ApiResponse, VcsError> {
    if resp.status.is_success() {
        Ok(resp)
    } else {
        Err(VcsError::Status {
            status: resp.status.as_u16(),
            endpoint: path.split('?').next().unwrap_or(path).to_string(),
        })
    }
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    resp: &ApiResponse,
    path: &str,
) -> Result<T, VcsError> {
    serde_json::from_slice(&resp.body).map_err(|e| VcsError::BadResponse {
        endpoint: path.split('?').next().unwrap_or(path).to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn next_link_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=1>; rel=\"prev\", \
                 <https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=3>; rel=\"next\", \
                 <https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=5>; rel=\"last\"",
            ),
        );
        let resp = ApiResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        };
        assert_eq!(
            next_link(&resp).as_deref(),
            Some("https://api.github.com/repositories/1/pulls/2/files?per_page=100&page=3")
        );
    }
}
