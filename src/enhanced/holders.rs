//! Atlantis's lock holders as the engine compares them with its own.
//!
//! Atlantis knows a holder by repository and pull number only: `GET /api/locks` gives `PullID`
//! and `PullURL`, `TryLock` refuses a lock only to another pull *number*, and `UnlockByPull`
//! deletes by repository and number (`server/core/locking/locking.go`,
//! `server/events/project_locker.go`, `server/core/redis/redis.go`). The engine's holders also
//! carry their VCS. So a listed holder's VCS is read from its `PullURL` (host and path shape,
//! against Atlantis's configured hostnames); when the URL does not tell (an `/api/*` lock has
//! none), the holder is matched by number alone, and adopted as a pull of the engine's unmarked
//! VCS.

use crate::classify::{LockKey, PullRef, Vcs};
use crate::upstream::atlantis_api::AtlantisLock;

use super::Enhanced;

/// A pull holding a lock in Atlantis's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Listed {
    /// The lock's repository.
    pub repo: String,
    /// `PullID`.
    pub number: i64,
    /// The VCS of `PullURL`, when it tells.
    pub vcs: Option<Vcs>,
}

impl Listed {
    /// Whether this is `pull` (same repository and number, and the same VCS unless Atlantis's
    /// URL did not say).
    pub fn is(&self, pull: &PullRef) -> bool {
        self.repo == pull.repo
            && self.number == pull.number
            && self.vcs.is_none_or(|v| v == pull.vcs)
    }

    /// Whether Atlantis refuses `pull` the lock this holds. Its `TryLock` compares pull numbers
    /// only: a merge request with the holder's number is let in (another VCS or not), so a
    /// hand-off counts on a refusal only from a holder of another number.
    pub fn refuses(&self, pull: &PullRef) -> bool {
        self.number != pull.number
    }

    /// The holder as the engine keeps it (an unknown VCS is the engine's unmarked one).
    pub fn pull(&self, unmarked: Vcs) -> PullRef {
        PullRef::new(self.vcs.unwrap_or(unmarked), self.repo.clone(), self.number)
    }
}

impl std::fmt::Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.vcs {
            Some(v) => write!(f, "{}#{} ({v})", self.repo, self.number),
            None => write!(f, "{}#{}", self.repo, self.number),
        }
    }
}

impl Enhanced {
    /// Atlantis's locks as (key, holder, user); unreadable entries skipped.
    pub(super) fn parse_locks(&self, locks: &[AtlantisLock]) -> Vec<(LockKey, Listed, String)> {
        locks
            .iter()
            .filter_map(|l| {
                let number = l.pull()?;
                let key = if l.project_repo.is_empty() {
                    LockKey::parse(&l.name).ok()?
                } else {
                    LockKey::parse_with_repo(&l.name, &l.project_repo).ok()?
                };
                let holder = Listed {
                    repo: key.repo.clone(),
                    number,
                    vcs: self.settings.hosts.vcs_of_pull_url(&l.pull_url),
                };
                Some((key, holder, l.user.clone()))
            })
            .collect()
    }

    /// Holders of Atlantis's as the engine adopts them.
    pub(super) fn engine_holders(
        &self,
        listed: Vec<(LockKey, Listed, String)>,
    ) -> Vec<(LockKey, PullRef, String)> {
        let unmarked = self.engine.settings().unmarked_vcs;
        listed
            .into_iter()
            .map(|(k, h, u)| (k, h.pull(unmarked), u))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(number: i64, vcs: Option<Vcs>) -> Listed {
        Listed {
            repo: "acme/infra".into(),
            number,
            vcs,
        }
    }

    #[test]
    fn a_listed_holder_is_a_pull_of_its_url_vcs_or_any_vcs_with_its_number() {
        let gh = PullRef::new(Vcs::Github, "acme/infra", 1);
        let gl = PullRef::new(Vcs::Gitlab, "acme/infra", 1);
        assert!(listed(1, Some(Vcs::Github)).is(&gh));
        assert!(!listed(1, Some(Vcs::Github)).is(&gl));
        assert!(listed(1, None).is(&gh) && listed(1, None).is(&gl));
        assert!(!listed(2, None).is(&gh));
        assert!(!listed(1, None).is(&PullRef::new(Vcs::Github, "acme/other", 1)));
    }

    #[test]
    fn atlantis_refuses_only_another_pull_number() {
        let gl = PullRef::new(Vcs::Gitlab, "acme/infra", 1);
        assert!(!listed(1, Some(Vcs::Github)).refuses(&gl));
        assert!(listed(2, Some(Vcs::Gitlab)).refuses(&gl));
    }

    #[test]
    fn a_holder_without_a_vcs_is_adopted_as_the_unmarked_vcs() {
        assert_eq!(
            listed(4, None).pull(Vcs::Gitlab),
            PullRef::new(Vcs::Gitlab, "acme/infra", 4)
        );
        assert_eq!(
            listed(4, Some(Vcs::Github)).pull(Vcs::Gitlab),
            PullRef::new(Vcs::Github, "acme/infra", 4)
        );
    }
}
