//! Atlantis's lock identity: `{repo}/{path}/{workspace}/{project}` (ATLANTIS.md §2).

use std::fmt;

/// One Atlantis project lock.
///
/// `Display` renders exactly Atlantis's `GenerateLockKey` string; unnamed projects render with a
/// trailing `/` because their project part is empty.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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

/// Queue priority of a lock request, highest first: `critical > high > normal > low`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Served last (but aged so it cannot starve).
    Low,
    /// The default.
    #[default]
    Normal,
    /// Served before normal.
    High,
    /// Served first.
    Critical,
}

impl Priority {
    /// All priorities, highest first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The lowercase name used in config, labels, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            other => Err(format!(
                "unknown priority '{other}' (expected critical, high, normal or low)"
            )),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a project takes its lock (`repo_locks.mode` in atlantis.yaml, ATLANTIS.md §4).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// plan, autoplan, policy check and approve_policies lock (Atlantis's default).
    #[default]
    OnPlan,
    /// Only apply locks.
    OnApply,
    /// Nothing locks (import and state rm neither).
    Disabled,
}
