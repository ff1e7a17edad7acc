//! A pull's identity: the VCS serving it, its repository and its number.
//!
//! Atlantis's lock keys and its lock table know a pull only by repository and number
//! (`UnlockByPull(repoFullName, pullNum)`, ATLANTIS.md §2): a GitLab merge request and a GitHub
//! pull of repositories with the same full name share the lock keys, and Atlantis takes them for
//! the same holder. The engine keeps the VCS too, so a merge request never releases, re-enters or
//! inherits a GitHub pull's locks; the keys themselves stay exactly Atlantis's.

use std::fmt;

use super::command::Vcs;

/// A pull request as the engine identifies it: VCS, repository and number.
///
/// The number is signed because Atlantis's API uses synthetic negative numbers when `PR` is omitted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PullRef {
    /// The VCS serving the pull (for `/api/*` calls, their `Type`).
    pub vcs: Vcs,
    /// Full repository name.
    pub repo: String,
    /// Pull/merge request number.
    pub number: i64,
}

impl PullRef {
    /// The pull `number` of `repo` on `vcs`.
    pub fn new(vcs: Vcs, repo: impl Into<String>, number: i64) -> Self {
        Self {
            vcs,
            repo: repo.into(),
            number,
        }
    }

    /// The pull inside its repository's lock state.
    pub fn id(&self) -> PullId {
        PullId {
            vcs: self.vcs,
            number: self.number,
        }
    }
}

impl fmt::Display for PullRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{} ({})", self.repo, self.number, self.vcs)
    }
}

/// A pull inside one repository's lock state (whose repository is implied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PullId {
    /// The VCS serving the pull.
    pub vcs: Vcs,
    /// Pull/merge request number.
    pub number: i64,
}

/// Separates the VCS from the number in [`PullId::encode`]'s form (no VCS name contains it).
const VCS_SEP: char = ':';

impl PullId {
    /// The pull `number` on `vcs`.
    pub fn new(vcs: Vcs, number: i64) -> Self {
        Self { vcs, number }
    }

    /// The pull with its repository.
    pub fn in_repo(self, repo: &str) -> PullRef {
        PullRef::new(self.vcs, repo, self.number)
    }

    /// How the engine stores the pull: the bare number for a pull of `unmarked`, else
    /// `{vcs}:{number}` (`gitlab:7`). Versions before pulls had a VCS stored every pull as its
    /// bare number, so their state reads back unchanged as pulls of `unmarked`, and a
    /// single-VCS deployment stores exactly the bytes it stored before.
    pub fn encode(self, unmarked: Vcs) -> String {
        if self.vcs == unmarked {
            self.number.to_string()
        } else {
            format!("{}{VCS_SEP}{}", self.vcs.as_str(), self.number)
        }
    }

    /// Reads [`PullId::encode`]'s form back; a bare number is a pull of `unmarked`.
    pub fn decode(stored: &str, unmarked: Vcs) -> Result<Self, ParsePullError> {
        let bad = || ParsePullError(stored.to_owned());
        let (vcs, number) = match stored.split_once(VCS_SEP) {
            Some((name, number)) => (Vcs::from_name(name).ok_or_else(bad)?, number),
            None => (unmarked, stored),
        };
        // `i64::from_str` would take a leading `+`, which `encode` never writes.
        if number.starts_with('+') {
            return Err(bad());
        }
        let number = number.parse().map_err(|_| bad())?;
        Ok(Self { vcs, number })
    }
}

/// A stored pull that [`PullId::decode`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stored pull: {0:?}")]
pub struct ParsePullError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unmarked_vcs_is_stored_as_the_bare_number_as_before() {
        for n in [1, 42, -17, i64::MAX] {
            let p = PullId::new(Vcs::Github, n);
            assert_eq!(p.encode(Vcs::Github), n.to_string());
            assert_eq!(PullId::decode(&n.to_string(), Vcs::Github), Ok(p));
        }
        let p = PullId::new(Vcs::Gitlab, 3);
        assert_eq!(p.encode(Vcs::Gitlab), "3", "a GitLab-only deployment");
    }

    #[test]
    fn other_vcss_are_marked_and_read_back() {
        for vcs in Vcs::ALL {
            for unmarked in Vcs::ALL {
                let p = PullId::new(vcs, -5);
                let stored = p.encode(unmarked);
                assert_eq!(stored.contains(':'), vcs != unmarked, "{stored}");
                assert_eq!(PullId::decode(&stored, unmarked), Ok(p), "{stored}");
            }
        }
        assert_eq!(PullId::new(Vcs::Gitlab, 7).encode(Vcs::Github), "gitlab:7");
        assert_eq!(
            PullId::new(Vcs::BitbucketServer, 7).encode(Vcs::Github),
            "bitbucket_server:7"
        );
    }

    #[test]
    fn state_written_before_pulls_had_a_vcs_reads_as_the_unmarked_vcs() {
        // The previous version stored `req.pull.number.to_string()` for every pull.
        assert_eq!(
            PullId::decode("12", Vcs::Gitlab),
            Ok(PullId::new(Vcs::Gitlab, 12))
        );
        assert_eq!(
            PullId::decode("-3", Vcs::Github),
            Ok(PullId::new(Vcs::Github, -3))
        );
        // A marked form of the unmarked VCS (written under another configuration) means the same.
        assert_eq!(
            PullId::decode("github:12", Vcs::Github),
            Ok(PullId::new(Vcs::Github, 12))
        );
    }

    #[test]
    fn malformed_stored_pulls_are_refused() {
        for bad in [
            "",
            "x",
            "gitlab:",
            ":3",
            "svn:3",
            "gitlab:3:4",
            "+3",
            "gitlab:+3",
            "3 ",
        ] {
            assert!(PullId::decode(bad, Vcs::Github).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_pull_is_told_apart_by_its_vcs() {
        let gh = PullRef::new(Vcs::Github, "acme/infra", 1);
        let gl = PullRef::new(Vcs::Gitlab, "acme/infra", 1);
        assert_ne!(gh, gl);
        assert_ne!(gh.id(), gl.id());
        assert_eq!(gl.id().in_repo("acme/infra"), gl);
        assert_eq!(gl.to_string(), "acme/infra#1 (gitlab)");
    }
}
