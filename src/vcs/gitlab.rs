//! GitLab REST v4 client (gitlab.com and self-hosted).

use http::{Method, StatusCode};
use serde::Deserialize;

use super::github::{CommentJson, body_json, json, ok, replace_comment};
use super::http::{ApiClient, ApiConfig, ApiResponse, AuthStyle};
use super::{ChangedFile, DirEntry, PullInfo, VcsError, encode_segment};

/// Most pages followed for one listing (100 entries each).
const MAX_PAGES: u32 = 50;

/// A GitLab REST client; `base_url` is the API root, e.g. `https://gitlab.example.com/api/v4`.
///
/// Projects are addressed by their URL-encoded full path (`group%2Fsub%2Frepo`), which is what
/// Atlantis and the webhooks call the repository.
#[derive(Debug)]
pub struct GitlabClient {
    api: ApiClient,
}

#[derive(Deserialize)]
struct MergeRequestJson {
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    diff_refs: Option<DiffRefsJson>,
    target_branch: String,
}

#[derive(Deserialize)]
struct DiffRefsJson {
    #[serde(default)]
    head_sha: Option<String>,
}

#[derive(Deserialize)]
struct DiffJson {
    old_path: String,
    new_path: String,
    #[serde(default)]
    renamed_file: bool,
    #[serde(default)]
    deleted_file: bool,
}

#[derive(Deserialize)]
struct TreeJson {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

impl GitlabClient {
    /// Builds a client; fails only on an unusable base URL or token.
    pub fn new(cfg: ApiConfig) -> Result<Self, VcsError> {
        Ok(Self {
            api: ApiClient::new(cfg, AuthStyle::PrivateToken, Vec::new())?,
        })
    }

    /// The underlying HTTP client, for calls this type does not wrap.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// `GET /projects/:id/merge_requests/:iid`: head SHA and target branch.
    pub async fn merge_request(&self, repo: &str, iid: i64) -> Result<PullInfo, VcsError> {
        let p = format!("/projects/{}/merge_requests/{iid}", encode_segment(repo));
        let resp = ok(self.api.get(&p).await?, &p)?;
        let mr: MergeRequestJson = json(&resp, &p)?;
        let head_sha = mr
            .sha
            .or(mr.diff_refs.and_then(|d| d.head_sha))
            .ok_or_else(|| VcsError::BadResponse {
                endpoint: p.clone(),
                detail: "merge request has no head sha".into(),
            })?;
        Ok(PullInfo {
            head_sha,
            base_branch: mr.target_branch,
            fork: None,
        })
    }

    /// `GET /projects/:id/merge_requests/:iid/diffs`, every page (via `X-Next-Page`).
    ///
    /// A renamed file yields its new path and its old path (removed), as Atlantis does.
    pub async fn changed_files(&self, repo: &str, iid: i64) -> Result<Vec<ChangedFile>, VcsError> {
        let base = format!(
            "/projects/{}/merge_requests/{iid}/diffs",
            encode_segment(repo)
        );
        let mut files = Vec::new();
        self.each_page(&base, "", |resp| {
            let batch: Vec<DiffJson> = json(resp, &base)?;
            for d in batch {
                if d.renamed_file {
                    files.push(ChangedFile::removed(d.old_path));
                }
                files.push(ChangedFile {
                    path: d.new_path,
                    removed: d.deleted_file,
                });
            }
            Ok(false)
        })
        .await?;
        Ok(files)
    }

    /// `GET /projects/:id/repository/files/:path/raw?ref=`: the file's bytes, `None` if absent.
    pub async fn file_raw(
        &self,
        repo: &str,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<u8>>, VcsError> {
        let p = format!(
            "/projects/{}/repository/files/{}/raw?ref={}",
            encode_segment(repo),
            encode_segment(path),
            encode_segment(git_ref)
        );
        let resp = self.api.get(&p).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(ok(resp, &p)?.body.to_vec()))
    }

    /// `GET /projects/:id/repository/tree?path=&ref=`: a directory's entries, `None` if absent.
    pub async fn list_dir(
        &self,
        repo: &str,
        dir: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<DirEntry>>, VcsError> {
        let base = format!("/projects/{}/repository/tree", encode_segment(repo));
        let mut query = format!("ref={}", encode_segment(git_ref));
        if dir != "." && !dir.is_empty() {
            query.push_str(&format!("&path={}", encode_segment(dir)));
        }
        let mut entries = Vec::new();
        let found = self
            .each_page(&base, &query, |resp| {
                let batch: Vec<TreeJson> = json(resp, &base)?;
                entries.extend(batch.into_iter().map(|t| DirEntry {
                    is_dir: t.kind == "tree",
                    name: t.name,
                }));
                Ok(false)
            })
            .await?;
        // Git has no empty directories: an empty listing means the path is not a directory.
        Ok((found && !entries.is_empty()).then_some(entries))
    }

    /// `POST /projects/:id/merge_requests/:iid/notes`: comments on a merge request.
    pub async fn post_note(&self, repo: &str, iid: i64, body: &str) -> Result<(), VcsError> {
        self.create_note(repo, iid, body).await.map(|_| ())
    }

    /// `POST /projects/:id/merge_requests/:iid/notes`: comments and returns the note id.
    pub async fn create_note(&self, repo: &str, iid: i64, body: &str) -> Result<u64, VcsError> {
        let p = format!(
            "/projects/{}/merge_requests/{iid}/notes",
            encode_segment(repo)
        );
        let resp = self
            .api
            .send(Method::POST, &p, Some(body_json(body, &p)?))
            .await?;
        let note: CommentJson = json(&ok(resp, &p)?, &p)?;
        Ok(note.id)
    }

    /// `PUT /projects/:id/merge_requests/:iid/notes/:note_id`: replaces a note's text; `false`
    /// when the note no longer exists.
    pub async fn edit_note(
        &self,
        repo: &str,
        iid: i64,
        id: u64,
        body: &str,
    ) -> Result<bool, VcsError> {
        let p = format!(
            "/projects/{}/merge_requests/{iid}/notes/{id}",
            encode_segment(repo)
        );
        replace_comment(&self.api, Method::PUT, &p, body).await
    }

    /// `GET /projects/:id/merge_requests/:iid/notes`, every page: the id of the first note whose
    /// body contains `needle`.
    pub async fn find_note(
        &self,
        repo: &str,
        iid: i64,
        needle: &str,
    ) -> Result<Option<u64>, VcsError> {
        let base = format!(
            "/projects/{}/merge_requests/{iid}/notes",
            encode_segment(repo)
        );
        let mut found = None;
        self.each_page(&base, "", |resp| {
            let batch: Vec<CommentJson> = json(resp, &base)?;
            found = batch.iter().find(|n| n.body.contains(needle)).map(|n| n.id);
            Ok(found.is_some())
        })
        .await?;
        Ok(found)
    }

    /// Calls `f` on every page of a listing until it answers `true` (found, stop early);
    /// `Ok(false)` when the first page is a 404.
    async fn each_page(
        &self,
        base: &str,
        query: &str,
        mut f: impl FnMut(&ApiResponse) -> Result<bool, VcsError>,
    ) -> Result<bool, VcsError> {
        let sep = if query.is_empty() { "" } else { "&" };
        let mut page = 1u32;
        loop {
            let p = format!("{base}?{query}{sep}per_page=100&page={page}");
            let resp = self.api.get(&p).await?;
            if page == 1 && resp.status == StatusCode::NOT_FOUND {
                return Ok(false);
            }
            let resp = ok(resp, &p)?;
            if f(&resp)? {
                return Ok(true);
            }
            let next = resp
                .headers
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok());
            match next {
                // An empty X-Next-Page means this was the last page.
                None => return Ok(true),
                Some(n) if n <= page => return Ok(true),
                Some(_) if page >= MAX_PAGES => {
                    return Err(VcsError::BadResponse {
                        endpoint: base.to_string(),
                        detail: format!("more than {MAX_PAGES} pages"),
                    });
                }
                Some(n) => page = n,
            }
        }
    }
}
