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

/// Why a string is not an Atlantis lock key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Atlantis lock key: {reason}")]
pub struct ParseKeyError {
    reason: &'static str,
}

impl ParseKeyError {
    fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}

impl LockKey {
    /// Parses an Atlantis key whose repository is known (e.g. `ProjectRepo` from `GET /api/locks`).
    ///
    /// This is the unambiguous form: repo names (GitLab subgroups, Azure DevOps `org/project/repo`)
    /// and paths both contain slashes, so only a known repo tells them apart. The rest is
    /// `{path}/{workspace}/{project}`; a rest with only two parts is the legacy (pre-v0.40)
    /// `{path}/{workspace}` form and yields an unnamed project, as Atlantis's migration does.
    pub fn parse_with_repo(key: &str, repo: &str) -> Result<Self, ParseKeyError> {
        if !valid_repo(repo) {
            return Err(ParseKeyError::new("repository name must be owner/name"));
        }
        let rest = key
            .strip_prefix(repo)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(ParseKeyError::new("key does not start with the repository"))?;
        split_rest(repo, rest)
    }

    /// Best-effort parse when the repository is not known.
    ///
    /// Heuristic: the repository is the shortest prefix of at least two segments after which the
    /// remainder is a valid `{path}/{workspace}/{project}` with a *cleaned* path (`.` or segments
    /// that are neither `.`, `..` nor empty). That recovers `group/sub/repo/./default/` (a path
    /// never ends in `/.`), but `group/sub/repo/modules/vpc/default/` is read as repo
    /// `group/sub` with path `repo/modules/vpc` — use [`LockKey::parse_with_repo`] or
    /// [`LockKey::parse_with_known_repos`] when slashes in repo names are possible. Whatever the
    /// split, `Display` gives back the input for current-format keys, which is the identity
    /// Atlantis itself uses. A project name is taken to be the last segment (no `/`).
    pub fn parse(key: &str) -> Result<Self, ParseKeyError> {
        let segments = key.split('/').count();
        // repo needs 2 segments; the rest at least 2 (legacy) or 3 (current).
        if segments < 4 {
            return Err(ParseKeyError::new("too few '/'-separated parts"));
        }
        let mut first_err = None;
        // GitLab nests at most 20 subgroups; bounding the search keeps a hostile id cheap.
        for (idx, _) in key.match_indices('/').skip(1).take(MAX_REPO_SEGMENTS) {
            let (repo, rest) = (&key[..idx], &key[idx + 1..]);
            if !valid_repo(repo) {
                return Err(ParseKeyError::new("repository name must be owner/name"));
            }
            match split_rest(repo, rest) {
                Ok(k) if valid_clean_path(&k.path) => return Ok(k),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(ParseKeyError::new("no split gives a cleaned path")))
    }

    /// Like [`LockKey::parse`], but first tries the longest matching repository from `repos`.
    pub fn parse_with_known_repos<'a>(
        key: &str,
        repos: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ParseKeyError> {
        let best = repos
            .into_iter()
            .filter(|r| {
                key.len() > r.len() && key.starts_with(r) && key[r.len()..].starts_with('/')
            })
            .max_by_key(|r| r.len());
        match best.map(|r| Self::parse_with_repo(key, r)) {
            Some(Ok(k)) => Ok(k),
            _ => Self::parse(key),
        }
    }
}

impl std::str::FromStr for LockKey {
    type Err = ParseKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The deepest repository name tried by [`LockKey::parse`] (GitLab: group + 20 subgroups + repo).
const MAX_REPO_SEGMENTS: usize = 22;

fn valid_repo(repo: &str) -> bool {
    let mut parts = repo.split('/');
    repo.contains('/') && parts.all(|p| !p.is_empty())
}

/// A path as Atlantis stores it: `.` or clean relative segments.
fn valid_clean_path(path: &str) -> bool {
    path == "."
        || path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Splits `{path}/{workspace}/{project}` (or legacy `{path}/{workspace}`) after the repo.
fn split_rest(repo: &str, rest: &str) -> Result<LockKey, ParseKeyError> {
    let parts: Vec<&str> = rest.split('/').collect();
    let (path_parts, workspace, project) = match parts.len() {
        0 | 1 => return Err(ParseKeyError::new("missing path or workspace")),
        2 => (&parts[..1], parts[1], ""),
        n => (&parts[..n - 2], parts[n - 2], parts[n - 1]),
    };
    let path = path_parts.join("/");
    if path.is_empty() {
        return Err(ParseKeyError::new("empty path"));
    }
    if workspace.is_empty() {
        return Err(ParseKeyError::new("empty workspace"));
    }
    Ok(LockKey::new(repo, path, workspace, project))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(key: &str, repo: &str, path: &str, ws: &str, project: &str) {
        let expected = LockKey::new(repo, path, ws, project);
        assert_eq!(expected.to_string(), key, "Display");
        assert_eq!(LockKey::parse_with_repo(key, repo), Ok(expected.clone()));
        assert_eq!(
            LockKey::parse_with_known_repos(key, [repo, "other/x"]),
            Ok(expected)
        );
    }

    #[test]
    fn keys_round_trip_with_known_repo() {
        roundtrip("owner/repo/./default/", "owner/repo", ".", "default", "");
        roundtrip(
            "owner/repo/./default/infra",
            "owner/repo",
            ".",
            "default",
            "infra",
        );
        roundtrip(
            "owner/repo/a/b/c/staging/",
            "owner/repo",
            "a/b/c",
            "staging",
            "",
        );
        roundtrip(
            "group/sub/repo/./default/",
            "group/sub/repo",
            ".",
            "default",
            "",
        );
        roundtrip(
            "group/sub/repo/mod/vpc/prod/vpc-prod",
            "group/sub/repo",
            "mod/vpc",
            "prod",
            "vpc-prod",
        );
        roundtrip(
            "org/project/repo/dir with space/ws+1/p+q r",
            "org/project/repo",
            "dir with space",
            "ws+1",
            "p+q r",
        );
        roundtrip("o/r/a+b/default/", "o/r", "a+b", "default", "");
    }

    #[test]
    fn best_effort_parse_handles_common_shapes() {
        let k: LockKey = "owner/repo/./default/".parse().unwrap();
        assert_eq!(k, LockKey::new("owner/repo", ".", "default", ""));
        let k = LockKey::parse("owner/repo/modules/vpc/default/vpc").unwrap();
        assert_eq!(
            k,
            LockKey::new("owner/repo", "modules/vpc", "default", "vpc")
        );
        // a subgroup repo at the root: "repo/." is not a cleaned path, so the repo grows.
        let k = LockKey::parse("group/sub/repo/./default/").unwrap();
        assert_eq!(k, LockKey::new("group/sub/repo", ".", "default", ""));
        let k = LockKey::parse("g/s/t/repo/./ws/name").unwrap();
        assert_eq!(k.repo, "g/s/t/repo");
        // documented ambiguity: a nested dir in a subgroup repo is read with a 2-part repo...
        let k = LockKey::parse("group/sub/repo/modules/vpc/default/").unwrap();
        assert_eq!(k.repo, "group/sub");
        // ...but Display is still the exact Atlantis key.
        assert_eq!(k.to_string(), "group/sub/repo/modules/vpc/default/");
        // ...and known repos fix it.
        let k = LockKey::parse_with_known_repos(
            "group/sub/repo/modules/vpc/default/",
            ["group/sub/repo"],
        )
        .unwrap();
        assert_eq!(
            k,
            LockKey::new("group/sub/repo", "modules/vpc", "default", "")
        );
    }

    #[test]
    fn legacy_three_part_keys_become_unnamed_projects() {
        let k = LockKey::parse("owner/repo/./default").unwrap();
        assert_eq!(k, LockKey::new("owner/repo", ".", "default", ""));
        assert_eq!(k.to_string(), "owner/repo/./default/");
        let k = LockKey::parse_with_repo("group/sub/repo/dir/staging", "group/sub/repo").unwrap();
        assert_eq!(k, LockKey::new("group/sub/repo", "dir", "staging", ""));
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        for bad in [
            "",
            "owner",
            "owner/repo",
            "owner/repo/.",
            "/repo/./default/",
            "owner//./default/",
            "owner/repo//default/",
        ] {
            assert!(LockKey::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(LockKey::parse_with_repo("owner/repo/./default/", "other/repo").is_err());
        assert!(LockKey::parse_with_repo("owner/repo/./default/", "owner").is_err());
    }
}
