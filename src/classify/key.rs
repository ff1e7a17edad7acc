//! Atlantis's lock identity: `{repo}/{path}/{workspace}/{project}` (ATLANTIS.md §2).

use std::fmt;

/// One Atlantis project lock.
///
/// `Display` renders exactly Atlantis's `GenerateLockKey` string; unnamed projects render with a
/// trailing `/` because their project part is empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct LockKey {
    /// Full repository name, e.g. `owner/repo` or `group/sub/repo` (GitLab subgroups).
    pub repo: String,
    /// Repo-relative directory after Atlantis's path cleaning (`.` for the root).
    pub path: String,
    /// Terraform workspace (`default` unless named).
    pub workspace: String,
    /// Project name from `atlantis.yaml`, empty for unnamed projects.
    pub project: String,
}

impl LockKey {
    /// Builds a key from its parts as Atlantis would (no cleaning is applied here).
    pub fn new(
        repo: impl Into<String>,
        path: impl Into<String>,
        workspace: impl Into<String>,
        project: impl Into<String>,
    ) -> Self {
        Self {
            repo: repo.into(),
            path: path.into(),
            workspace: workspace.into(),
            project: project.into(),
        }
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.repo, self.path, self.workspace, self.project
        )
    }
}

/// A pull request as Atlantis identifies it for locking: repository plus number.
///
/// The number is signed because Atlantis's API uses synthetic negative numbers when `PR` is omitted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PullRef {
    /// Full repository name.
    pub repo: String,
    /// Pull/merge request number.
    pub number: i64,
}

impl fmt::Display for PullRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.repo, self.number)
    }
}
