//! `when_modified` matching with Atlantis's semantics, on `globset`.
//!
//! Atlantis (`DetermineProjectsViaConfig` in `server/events/project_finder.go`) joins each
//! `when_modified` pattern to the project dir (`filepath.Join`, which cleans `..`), keeps a leading
//! `!` as an exclusion, and asks docker's `patternmatcher.MatchesOrParentMatches` whether any
//! modified file matches. That matcher walks the patterns in order: an inclusion can only turn a
//! miss into a match and an exclusion can only turn a match into a miss (so the last relevant
//! pattern wins), and a pattern also matches a file when it matches one of the file's parent
//! directories (`modules` matches `modules/vpc/main.tf`).
//!
//! Each pattern here is one `globset` glob with `literal_separator(true)`, which gives the same
//! meaning for `*`, `?`, `[...]`, `**/`, `/**` and `/**/`. Known differences, none seen in real
//! `atlantis.yaml` files:
//! - `{a,b}` is an alternation in globset and literal braces in patternmatcher;
//! - `[!x]` negates in globset; in patternmatcher only `[^x]` negates;
//! - `**` inside a segment (`foo**`) follows globset's rules (it acts like `*`), patternmatcher
//!   turns it into "any number of directories";
//! - a leading `**foo` (no slash) is a suffix test in patternmatcher (`barfoo` matches); globset
//!   treats it like `*foo` within one segment.

use globset::{Glob, GlobBuilder, GlobMatcher};

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Compiles one glob with path semantics (`*` and `?` stop at `/`).
pub(crate) fn compile_glob(pattern: &str) -> Result<GlobMatcher, PatternError> {
    let glob: Glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| PatternError {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })?;
    Ok(glob.compile_matcher())
}

/// An ordered list of inclusion/exclusion patterns, relative to the repository root.
#[derive(Clone, Debug)]
pub struct PatternList {
    patterns: Vec<(GlobMatcher, bool)>,
}

impl PatternList {
    /// Compiles patterns already relative to the repo root (`!` prefix = exclusion).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, PatternError> {
        let mut out = Vec::new();
        for raw in patterns {
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let (exclusion, body) = match p.strip_prefix('!') {
                Some("") => {
                    return Err(PatternError {
                        pattern: raw.to_string(),
                        reason: "a lone '!' excludes nothing".into(),
                    });
                }
                Some(rest) => (true, rest),
                None => (false, p),
            };
            out.push((compile_glob(&clean_path(body))?, exclusion));
        }
        Ok(Self { patterns: out })
    }

    /// Compiles a project's `when_modified`, each pattern joined to the project dir first.
    pub fn for_project(dir: &str, when_modified: &[String]) -> Result<Self, PatternError> {
        let joined: Vec<String> = when_modified
            .iter()
            .map(|wm| {
                let wm = wm.trim();
                match wm.strip_prefix('!') {
                    Some(rest) => format!("!{}", join(dir, rest)),
                    None if wm.is_empty() => String::new(),
                    None => join(dir, wm),
                }
            })
            .collect();
        Self::new(joined.iter().map(String::as_str))
    }

    /// patternmatcher's `MatchesOrParentMatches`: the file, or one of its parent dirs, matches.
    pub fn matches_or_parent_matches(&self, file: &str) -> bool {
        let file = clean_path(file);
        let parents = parent_prefixes(&file);
        let mut matched = false;
        for (glob, exclusion) in &self.patterns {
            // An inclusion cannot add to a match, an exclusion cannot remove a miss.
            if *exclusion != matched {
                continue;
            }
            let hit = glob.is_match(&file) || parents.iter().any(|p| glob.is_match(p));
            if hit {
                matched = !exclusion;
            }
        }
        matched
    }
}

/// `a/b/c.tf` → `["a", "a/b"]`.
fn parent_prefixes(file: &str) -> Vec<&str> {
    file.match_indices('/').map(|(i, _)| &file[..i]).collect()
}

/// Go's `path.Join(dir, rel)`: joins then cleans (so `proj` + `../modules/*` = `modules/*`).
pub(crate) fn join(dir: &str, rel: &str) -> String {
    if dir.is_empty() {
        return clean_path(rel);
    }
    clean_path(&format!("{dir}/{rel}"))
}

/// Go's `path.Clean` for repo-relative paths: drops `.` and empty segments, resolves `..`,
/// strips a leading `/`, and returns `.` for the root.
pub(crate) fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(last) if *last != "..") {
                    out.pop();
                } else if !p.starts_with('/') {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        ".".to_string()
    } else {
        out.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        crate::resolve::config::default_when_modified()
    }

    #[test]
    fn clean_matches_go() {
        assert_eq!(clean_path("./a/b/"), "a/b");
        assert_eq!(clean_path("/a"), "a");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("proj/../modules/**/*.tf"), "modules/**/*.tf");
        assert_eq!(join(".", "**/*.tf*"), "**/*.tf*");
    }

    #[test]
    fn default_patterns_are_relative_to_the_project_dir() {
        let pl = PatternList::for_project("project1", &defaults()).unwrap();
        assert!(pl.matches_or_parent_matches("project1/main.tf"));
        assert!(pl.matches_or_parent_matches("project1/sub/vars.tfvars"));
        assert!(pl.matches_or_parent_matches("project1/terragrunt.hcl"));
        assert!(pl.matches_or_parent_matches("project1/.terraform.lock.hcl"));
        assert!(pl.matches_or_parent_matches("project1/x.tofu"));
        assert!(!pl.matches_or_parent_matches("project1/README.md"));
        assert!(!pl.matches_or_parent_matches("project2/main.tf"));
        assert!(!pl.matches_or_parent_matches("main.tf"));
        // `*` must not cross directories: project1x is another project.
        assert!(!pl.matches_or_parent_matches("project1x/main.tf"));
    }

    #[test]
    fn root_project_defaults_match_everywhere() {
        let pl = PatternList::for_project(".", &defaults()).unwrap();
        assert!(pl.matches_or_parent_matches("main.tf"));
        assert!(pl.matches_or_parent_matches("a/b/c.tf.json"));
        assert!(!pl.matches_or_parent_matches("docs/index.md"));
    }

    #[test]
    fn parent_dir_up_and_exclusions() {
        let wm = vec![
            "*.tf".to_string(),
            "../modules/**/*.tf".to_string(),
            "!../modules/legacy/**".to_string(),
        ];
        let pl = PatternList::for_project("envs/prod", &wm).unwrap();
        assert!(pl.matches_or_parent_matches("envs/prod/main.tf"));
        assert!(!pl.matches_or_parent_matches("envs/prod/sub/main.tf"));
        assert!(pl.matches_or_parent_matches("envs/modules/vpc/main.tf"));
        assert!(!pl.matches_or_parent_matches("envs/modules/legacy/main.tf"));
    }

    #[test]
    fn exclusion_then_inclusion_last_relevant_wins() {
        let pl = PatternList::new(["**/*.tf", "!a/**", "a/keep.tf"]).unwrap();
        assert!(pl.matches_or_parent_matches("b/x.tf"));
        assert!(!pl.matches_or_parent_matches("a/x.tf"));
        assert!(pl.matches_or_parent_matches("a/keep.tf"));
    }

    #[test]
    fn a_directory_pattern_matches_files_below_it() {
        let pl = PatternList::for_project(".", &["modules".to_string()]).unwrap();
        assert!(pl.matches_or_parent_matches("modules/vpc/main.tf"));
        assert!(!pl.matches_or_parent_matches("other/modules.tf"));
    }

    #[test]
    fn bad_patterns_are_reported() {
        assert!(PatternList::new(["!"]).is_err());
        let e = PatternList::new(["[a-"]).unwrap_err();
        assert!(e.to_string().contains("[a-"), "{e}");
    }
}
