//! The two Atlantis calls the proxy makes on its own: `GET /api/locks` and `DELETE /locks?id=`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{Upstream, UpstreamError, full};

/// One lock as `GET /api/locks` lists it (ATLANTIS.md §1).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AtlantisLock {
    /// The lock key (`owner/repo/path/workspace/project`; 3 parts before v0.40).
    pub name: String,
    /// Project name, empty for unnamed projects.
    #[serde(default)]
    pub project_name: String,
    /// Repository full name.
    #[serde(default)]
    pub project_repo: String,
    /// Repo-relative path.
    #[serde(default)]
    pub project_repo_path: String,
    /// Pull number, as a string.
    #[serde(rename = "PullID", default)]
    pub pull_id: String,
    /// Pull URL.
    #[serde(rename = "PullURL", default)]
    pub pull_url: String,
    /// Who ran the command.
    #[serde(default)]
    pub user: String,
    /// Workspace.
    #[serde(default)]
    pub workspace: String,
}

impl AtlantisLock {
    /// The pull number, if Atlantis gave a numeric one.
    pub fn pull(&self) -> Option<i64> {
        self.pull_id.trim().parse().ok()
    }
}

#[derive(Deserialize)]
struct LocksBody {
    #[serde(rename = "Locks")]
    locks: Option<Vec<AtlantisLock>>,
}

/// Why Atlantis's lock list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LockListError {
    /// Atlantis older than v0.34 has no `GET /api/locks`.
    #[error("Atlantis has no GET /api/locks (older than v0.34)")]
    Unsupported,
    /// Transport failure or timeout.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Atlantis answered something else.
    #[error("GET /api/locks answered {status}: {body}")]
    Unexpected {
        /// Status.
        status: StatusCode,
        /// Body, shortened.
        body: String,
    },
}

/// Reads Atlantis's whole lock table. `"Locks":null` is an empty table.
pub async fn list_locks(
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Vec<AtlantisLock>, LockListError> {
    let (status, body) = upstream.get("/api/locks", timeout).await?;
    if status == StatusCode::NOT_FOUND {
        return Err(LockListError::Unsupported);
    }
    let unexpected = |body: &Bytes| LockListError::Unexpected {
        status,
        body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    if !status.is_success() {
        return Err(unexpected(&body));
    }
    let parsed: LocksBody = serde_json::from_slice(&body).map_err(|_| unexpected(&body))?;
    Ok(parsed.locks.unwrap_or_default())
}

/// Characters kept literal in a lock id; everything else (including `/` and `+`) is escaped.
const ID_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `DELETE /locks?id=<key>` (single-encoded, which Atlantis decodes). True when Atlantis deleted
/// it, false when it had no such lock.
pub async fn delete_lock(
    upstream: &Upstream,
    key: &str,
    timeout: Duration,
) -> Result<bool, LockListError> {
    let uri = format!("/locks?id={}", utf8_percent_encode(key, ID_KEEP));
    let req = Request::delete(uri)
        .body(full(Bytes::new()))
        .map_err(|e| UpstreamError::Unavailable(Box::new(e)))?;
    let fut = async {
        let resp = upstream.send(req).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok::<_, LockListError>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))??;
    match status {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        status => Err(LockListError::Unexpected {
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_listed_locks_parse() {
        let none: LocksBody = serde_json::from_str(r#"{"Locks":null}"#).unwrap();
        assert!(none.locks.is_none());
        let one: LocksBody = serde_json::from_str(
            r#"{"Locks":[{"Name":"owner/repo/./default/","ProjectName":"","ProjectRepo":"owner/repo",
            "ProjectRepoPath":".","PullID":"123","PullURL":"https://github.com/owner/repo/pull/123",
            "User":"alice","Workspace":"default","Time":"2025-02-13T16:47:42.040856-08:00"}]}"#,
        )
        .unwrap();
        let l = &one.locks.unwrap()[0];
        assert_eq!(l.pull(), Some(123));
        assert_eq!(l.name, "owner/repo/./default/");
    }

    #[test]
    fn lock_ids_escape_slashes_and_plus() {
        let enc = utf8_percent_encode("owner/repo/a+b c/default/", ID_KEEP).to_string();
        assert_eq!(enc, "owner%2Frepo%2Fa%2Bb%20c%2Fdefault%2F");
    }
}
