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

use std::collections::HashMap;
use std::sync::Arc;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Builds one glob with path semantics (`*` and `?` stop at `/`).
fn build_glob(pattern: &str) -> Result<Glob, PatternError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| PatternError {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

/// Compiles one glob with path semantics (`*` and `?` stop at `/`).
pub(crate) fn compile_glob(pattern: &str) -> Result<GlobMatcher, PatternError> {
    Ok(build_glob(pattern)?.compile_matcher())
}

/// The patterns of a list compiled into one `GlobSet` (one pass per path, whatever the count).
#[derive(Debug)]
struct Compiled {
    set: GlobSet,
    /// `exclusion[i]`: pattern `i` had a leading `!`.
    exclusion: Vec<bool>,
}

/// Compiled `when_modified` lists shared by the projects of one config: most projects use the
/// default list, and compiling it once instead of once per project is most of the parse cost.
#[derive(Debug, Default)]
pub(crate) struct PatternCache(HashMap<Vec<(bool, String)>, Arc<Compiled>>);

/// An ordered list of inclusion/exclusion patterns.
///
/// A project's patterns are first written exactly as Atlantis writes them (each joined to the
/// project dir, then read by patternmatcher). When the dir is a literal and every pattern then
/// starts with `dir/`, the rest is compiled once without the dir and matched against the part
/// of the file path below it (`base`): "`dir/P`" and "`dir/` + a path matching `P`" are the same
/// test because the dir is a literal prefix. Other lists (`../x`, `.`, a glob dir) are matched
/// against the whole path, as Atlantis does.
#[derive(Clone, Debug)]
pub struct PatternList {
    compiled: Arc<Compiled>,
    /// Project dir the patterns are relative to; `None` = relative to the repo root.
    base: Option<String>,
}

impl PatternList {
    /// Compiles patterns already relative to the repo root (`!` prefix = exclusion).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, PatternError> {
        let normalized = patterns
            .into_iter()
            .filter_map(|p| normalize(p).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            compiled: Arc::new(compile_normalized(&normalized)?),
            base: None,
        })
    }

    /// Compiles a project's `when_modified`, relative to the project dir.
    pub fn for_project(dir: &str, when_modified: &[String]) -> Result<Self, PatternError> {
        Self::for_project_cached(dir, when_modified, &mut PatternCache::default())
    }

    pub(crate) fn for_project_cached(
        dir: &str,
        when_modified: &[String],
        cache: &mut PatternCache,
    ) -> Result<Self, PatternError> {
        let joined: Vec<String> = when_modified
            .iter()
            .map(|wm| atlantis_join(dir, wm))
            .collect();
        let normalized = joined
            .iter()
            .filter_map(|p| normalize(p).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let literal_dir = !dir.contains(['*', '?', '[', ']', '{', '}', '\\']);
        let base = (dir != ".").then(|| format!("{dir}/"));
        let relative: Option<Vec<(bool, String)>> = match &base {
            _ if !literal_dir => None,
            None => Some(normalized.clone()),
            Some(prefix) => normalized
                .iter()
                .map(|(excl, body)| {
                    body.strip_prefix(prefix.as_str())
                        .filter(|rest| !rest.is_empty())
                        .map(|rest| (*excl, rest.to_string()))
                })
                .collect(),
        };
        let Some(relative) = relative else {
            return Ok(Self {
                compiled: Arc::new(compile_normalized(&normalized)?),
                base: None,
            });
        };
        let compiled = match cache.0.get(&relative) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(compile_normalized(&relative)?);
                cache.0.insert(relative, c.clone());
                c
            }
        };
        Ok(Self {
            compiled,
            base: base.map(|_| dir.to_string()),
        })
    }

    /// patternmatcher's `MatchesOrParentMatches`: the file, or one of its parent dirs, matches.
    pub fn matches_or_parent_matches(&self, file: &str) -> bool {
        let cleaned;
        let file = if is_clean(file) {
            file
        } else {
            cleaned = clean_path(file);
            &cleaned
        };
        let rel = match &self.base {
            None => file,
            Some(base) => match file
                .strip_prefix(base.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(rel) => rel,
                // Outside the project dir nothing can match (see the type's doc).
                None => return false,
            },
        };
        let c = &self.compiled;
        let mut hit = vec![false; c.exclusion.len()];
        let mut found = Vec::new();
        for candidate in std::iter::once(rel).chain(parent_prefixes(rel)) {
            c.set.matches_into(candidate, &mut found);
            for &i in &found {
                hit[i] = true;
            }
        }
        let mut matched = false;
        for (i, &exclusion) in c.exclusion.iter().enumerate() {
            // An inclusion cannot add to a match, an exclusion cannot remove a miss.
            if exclusion != matched {
                continue;
            }
            if hit[i] {
                matched = !exclusion;
            }
        }
        matched
    }
}

/// patternmatcher's `New` for one pattern: trim, clean, and a leading `!` marks an exclusion.
/// `None` for a blank pattern (skipped, as patternmatcher does).
fn normalize(raw: &str) -> Result<Option<(bool, String)>, PatternError> {
    let p = raw.trim();
    if p.is_empty() {
        return Ok(None);
    }
    match p.strip_prefix('!') {
        Some("") => Err(PatternError {
            pattern: raw.to_string(),
            reason: "a lone '!' excludes nothing".into(),
        }),
        Some(rest) => Ok(Some((true, clean_path(rest)))),
        None => Ok(Some((false, clean_path(p)))),
    }
}

/// Atlantis's `project_finder.go`: trim, keep a leading `!` aside, `filepath.Join(dir, rest)`.
fn atlantis_join(dir: &str, wm: &str) -> String {
    let wm = wm.trim();
    match wm.strip_prefix('!') {
        Some(rest) => format!("!{}", join(dir, rest)),
        None => join(dir, wm),
    }
}

fn compile_normalized(patterns: &[(bool, String)]) -> Result<Compiled, PatternError> {
    let mut set = GlobSetBuilder::new();
    let mut exclusion = Vec::with_capacity(patterns.len());
    for (excl, body) in patterns {
        set.add(build_glob(body)?);
        exclusion.push(*excl);
    }
    let set = set.build().map_err(|e| PatternError {
        pattern: String::new(),
        reason: e.to_string(),
    })?;
    Ok(Compiled { set, exclusion })
}

/// True when `clean_path` would return the path unchanged (the API's paths always are).
fn is_clean(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.ends_with('/')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// `a/b/c.tf` → `a`, `a/b`.
fn parent_prefixes(file: &str) -> impl Iterator<Item = &str> {
    file.match_indices('/').map(|(i, _)| &file[..i])
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

    #[test]
    fn dot_and_dir_itself() {
        // "." joined to the dir is the dir: every file below it matches through its parents.
        let pl = PatternList::for_project("a", &[".".to_string()]).unwrap();
        assert!(pl.matches_or_parent_matches("a/x.md"));
        assert!(!pl.matches_or_parent_matches("ab/x.md"));
        let pl = PatternList::for_project("a", &["**".to_string()]).unwrap();
        assert!(pl.matches_or_parent_matches("a/x"));
        assert!(!pl.matches_or_parent_matches("a"));
    }

    /// Issue 14 item 11: Atlantis joins `./ x` to the dir before patternmatcher trims it, so in
    /// `proj` it is the pattern `proj/ x` (leading blank kept) and at the root it is `x`.
    #[test]
    fn blanks_after_cleaning_match_like_atlantis() {
        let wm = vec!["./ x".to_string()];
        let pl = PatternList::for_project("proj", &wm).unwrap();
        assert!(pl.matches_or_parent_matches("proj/ x"));
        assert!(!pl.matches_or_parent_matches("proj/x"));
        let root = PatternList::for_project(".", &wm).unwrap();
        assert!(root.matches_or_parent_matches("x"));
        assert!(!root.matches_or_parent_matches(" x"));
        // An empty entry is the project dir itself to Atlantis: every file below it matches.
        let pl = PatternList::for_project("proj", &[String::new()]).unwrap();
        assert!(pl.matches_or_parent_matches("proj/README.md"));
        assert!(!pl.matches_or_parent_matches("other/main.tf"));
        // And a lone "!" excludes the dir.
        let wm = vec!["**/*.tf".to_string(), "!".to_string()];
        let pl = PatternList::for_project("proj", &wm).unwrap();
        assert!(!pl.matches_or_parent_matches("proj/main.tf"));
    }

    mod equivalence {
        use super::super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("a".to_string()),
                Just(" x".to_string()),
                Just("b".to_string()),
                Just("modules".to_string()),
                Just("main.tf".to_string()),
                Just("x.tfvars".to_string()),
            ]
        }

        fn pattern_segment() -> impl Strategy<Value = String> {
            prop_oneof![
                segment(),
                Just("*".to_string()),
                Just("**".to_string()),
                Just("*.tf*".to_string()),
                Just("?".to_string()),
                Just("..".to_string()),
                Just(".".to_string()),
                Just(" x".to_string()),
                Just(" ".to_string()),
                Just(String::new()),
            ]
        }

        fn path(s: impl Strategy<Value = String>, max: usize) -> impl Strategy<Value = String> {
            prop::collection::vec(s, 1..=max).prop_map(|v| v.join("/"))
        }

        proptest! {
            /// Matching below the dir with shared patterns answers exactly like joining each
            /// pattern to the dir (what Atlantis does).
            #[test]
            fn relative_matching_equals_joined_matching(
                dir in prop_oneof![Just(".".to_string()), path(segment(), 2)],
                patterns in prop::collection::vec((any::<bool>(), path(pattern_segment(), 3)), 1..4),
                file in path(segment(), 4),
            ) {
                let wm: Vec<String> = patterns
                    .iter()
                    .map(|(excl, p)| if *excl { format!("!{p}") } else { p.clone() })
                    .collect();
                let joined: Vec<String> = wm.iter().map(|p| atlantis_join(&dir, p)).collect();
                let (Ok(relative), Ok(rooted)) = (
                    PatternList::for_project(&dir, &wm),
                    PatternList::new(joined.iter().map(String::as_str)),
                ) else {
                    return Ok(());
                };
                prop_assert_eq!(
                    relative.matches_or_parent_matches(&file),
                    rooted.matches_or_parent_matches(&file),
                    "dir {} patterns {:?} file {}", dir, wm, file
                );
            }
        }
    }
}
