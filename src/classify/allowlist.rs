//! Atlantis's `--repo-allowlist` (`events/repo_allowlist_checker.go`): comma-separated rules over
//! `{vcs host}/{owner}/{repo}`, case-insensitive, one `*` wildcard, `!rule` omits.

/// Compiled allowlist rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoAllowlist {
    include: Vec<String>,
    omit: Vec<String>,
}

impl RepoAllowlist {
    /// Splits rules the way `NewRepoAllowlistChecker` does (`!` prefixes an omit rule).
    pub fn new<S: AsRef<str>>(rules: &[S]) -> Self {
        let mut include = Vec::new();
        let mut omit = Vec::new();
        for r in rules {
            let r = r.as_ref();
            match r.strip_prefix('!') {
                Some(rest) if !rest.is_empty() => omit.push(rest.to_lowercase()),
                _ => include.push(r.to_lowercase()),
            }
        }
        Self { include, omit }
    }

    /// `IsAllowlisted(repoFullName, vcsHostname)`.
    pub fn allows(&self, host: &str, full_name: &str) -> bool {
        let candidate = format!("{host}/{full_name}").to_lowercase();
        let any = |rules: &[String]| rules.iter().any(|r| matches_rule(r, &candidate));
        any(&self.include) && !any(&self.omit)
    }
}

/// `matchesRule`: the text before a `*` is a prefix, the text after it a suffix (the first `*`
/// only, as Atlantis reads it).
fn matches_rule(rule: &str, candidate: &str) -> bool {
    let Some(star) = rule.find('*') else {
        return candidate == rule;
    };
    if candidate.len() < star {
        return false;
    }
    if star != rule.len() - 1 {
        let tail = &rule[star + 1..];
        return match candidate.rfind(tail) {
            Some(i) => &candidate[i..] == tail,
            None => false,
        };
    }
    candidate.get(..star) == Some(&rule[..star])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_like_atlantis() {
        let a = RepoAllowlist::new(&["github.com/acme/*", "!github.com/acme/secret", "*-infra"]);
        assert!(a.allows("github.com", "acme/net"));
        assert!(a.allows("GitHub.com", "ACME/net"));
        assert!(!a.allows("github.com", "acme/secret"));
        assert!(!a.allows("github.com", "other/net"));
        assert!(a.allows("gitlab.com", "g/team-infra"));
        assert!(
            !RepoAllowlist::new(&["github.com/acme/infra"]).allows("github.com", "acme/infra2")
        );
    }
}
