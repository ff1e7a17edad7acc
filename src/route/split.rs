//! The per-repository traffic split: sticky, monotonic, the same on every replica and version.

use std::collections::HashSet;

pub use crate::vocab::EnginePath;

/// The repository's bucket, 0..100: FNV-1a (32-bit) of the lowercased full name, modulo 100.
///
/// This function is part of the product's contract: changing it would move repositories between
/// paths on upgrade. FNV-1a is fixed by its spec (offset basis 0x811c9dc5, prime 0x01000193), so
/// every version and replica computes the same bucket; std's `DefaultHasher` is randomly keyed and
/// must not be used here. Lowercasing makes `Acme/Infra` and `acme/infra` one repository, as the
/// VCSs treat them.
pub fn bucket(repo: &str) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for b in repo.bytes().map(|b| b.to_ascii_lowercase()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % 100) as u8
}

/// The routing rule: per-repo overrides first, then `bucket(repo) < traffic_split`.
#[derive(Clone, Debug, Default)]
pub struct SplitRule {
    always_enhanced: HashSet<String>,
    always_legacy: HashSet<String>,
}

impl SplitRule {
    /// Builds the rule from the `always-enhanced` / `always-legacy` lists.
    pub fn new(always_enhanced: &[String], always_legacy: &[String]) -> Self {
        let norm = |v: &[String]| v.iter().map(|r| r.to_ascii_lowercase()).collect();
        Self {
            always_enhanced: norm(always_enhanced),
            always_legacy: norm(always_legacy),
        }
    }

    /// The path for `repo` at a split of `percent` (0..=100).
    ///
    /// Raising `percent` only ever moves repositories from legacy to enhanced.
    pub fn path_for(&self, repo: &str, percent: u8) -> EnginePath {
        let key = repo.to_ascii_lowercase();
        if self.always_legacy.contains(&key) {
            EnginePath::Legacy
        } else if self.always_enhanced.contains(&key) || bucket(repo) < percent {
            EnginePath::Enhanced
        } else {
            EnginePath::Legacy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repos() -> Vec<String> {
        (0..1000)
            .map(|i| format!("org-{}/repo-{i}", i % 37))
            .collect()
    }

    #[test]
    fn buckets_are_fixed_values() {
        // Pinned (computed independently from the FNV-1a spec): these must never change.
        assert_eq!(bucket("a"), 20, "FNV-1a(\"a\") = 0xe40c292c");
        assert_eq!(bucket("acme/infra"), 98);
        assert_eq!(bucket("runatlantis/atlantis"), 27);
        assert_eq!(bucket("group/sub/repo"), 26);
        assert_eq!(bucket("ACME/Infra"), bucket("acme/infra"));
    }

    #[test]
    fn the_share_follows_the_setting_within_five_points() {
        let rule = SplitRule::default();
        for pct in [10u8, 30, 50, 90] {
            let n = repos()
                .iter()
                .filter(|r| rule.path_for(r, pct) == EnginePath::Enhanced)
                .count();
            let share = n as f64 / 10.0;
            assert!(
                (share - f64::from(pct)).abs() <= 5.0,
                "{pct}% setting gave {share}%"
            );
        }
    }

    #[test]
    fn raising_the_split_only_moves_legacy_to_enhanced() {
        let rule = SplitRule::default();
        for r in repos() {
            for (lo, hi) in [(0u8, 30u8), (30, 60), (60, 100)] {
                if rule.path_for(&r, lo) == EnginePath::Enhanced {
                    assert_eq!(
                        rule.path_for(&r, hi),
                        EnginePath::Enhanced,
                        "{r} moved back at {hi}%"
                    );
                }
            }
            assert_eq!(rule.path_for(&r, 0), EnginePath::Legacy);
            assert_eq!(rule.path_for(&r, 100), EnginePath::Enhanced);
        }
    }

    #[test]
    fn overrides_beat_the_split() {
        let rule = SplitRule::new(&["acme/canary".into()], &["acme/fragile".into()]);
        assert_eq!(rule.path_for("acme/canary", 0), EnginePath::Enhanced);
        assert_eq!(rule.path_for("Acme/Fragile", 100), EnginePath::Legacy);
    }
}
