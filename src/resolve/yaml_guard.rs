//! Bounds on a pull's `atlantis.yaml` checked before the YAML parser sees it.
//!
//! The file comes from the pull's head commit, so anyone who can open a pull request writes it.
//! libyaml (under `serde_norway`) spends time quadratic in the nesting of flow collections
//! (`[[[[...`: 2.7 s at 16 KB), and 3,000 `when_modified` patterns take 2.2 s to compile. [`prescan`] refuses such files in one linear pass; the limits are far above
//! any real `atlantis.yaml` (a monorepo with 1,000 projects is about 100 KB, with one or two flow
//! collections per project, nested two deep).
//!
//! The scan is a cheap approximation of libyaml's tokenizer, not a copy of it: a quote or a
//! comment hides opening brackets only in comments, and inside a quote closing brackets only
//! balance the ones opened in that quote, so hand-made files that confuse it mostly push the
//! count up. Whatever hides a close from libyaml
//! but not from the scan, the total number of opening brackets stays bounded by
//! [`MAX_FLOW_COLLECTIONS`], which bounds libyaml's worst case (about 0.2 s), and the resolver
//! parses off the async workers, a few files at a time, under its budget.

/// Largest `atlantis.yaml` read (bytes).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of flow collections (`[` / `{`).
pub const MAX_FLOW_DEPTH: usize = 32;
/// Most flow collections opened in one file.
pub const MAX_FLOW_COLLECTIONS: usize = 8192;
/// Most `when_modified` patterns of one project.
pub const MAX_PATTERNS_PER_PROJECT: usize = 128;
/// Most `when_modified` and `ignore_paths` patterns in one file, all projects together: compiling
/// a glob costs about 0.7 ms (release build), so this bounds a file's compile time near 0.4 s.
pub const MAX_PATTERNS_PER_FILE: usize = 512;
/// Longest single `when_modified` pattern (bytes).
pub const MAX_PATTERN_BYTES: usize = 1024;

/// Why a file was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooComplex {
    /// Bigger than [`MAX_FILE_BYTES`].
    #[error("is {0} bytes, more than the {MAX_FILE_BYTES} bytes the proxy reads")]
    TooBig(usize),
    /// Flow collections nested deeper than [`MAX_FLOW_DEPTH`].
    #[error("nests flow collections ([ or {{) more than {MAX_FLOW_DEPTH} deep")]
    TooDeep,
    /// More than [`MAX_FLOW_COLLECTIONS`] flow collections.
    #[error("has more than {MAX_FLOW_COLLECTIONS} flow collections ([ or {{)")]
    TooManyCollections,
}

/// One linear pass over the bytes: size, flow depth and flow collection count.
pub fn prescan(bytes: &[u8]) -> Result<(), TooComplex> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(TooComplex::TooBig(bytes.len()));
    }
    let mut depth = 0usize;
    let mut opened = 0usize;
    // The open quote, if any, and the depth when it opened: closes inside it never go below.
    let mut quote: Option<(u8, usize)> = None;
    let mut prev = b'\n';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        let open = matches!(b, b'[' | b'{');
        if open {
            // Counted everywhere but in comments: a quote the scan sees may be none to libyaml.
            opened += 1;
            depth += 1;
            if depth > MAX_FLOW_DEPTH {
                return Err(TooComplex::TooDeep);
            }
            if opened > MAX_FLOW_COLLECTIONS {
                return Err(TooComplex::TooManyCollections);
            }
        }
        if let Some((q, floor)) = quote {
            if q == b'"' && b == b'\\' {
                i += 1; // an escaped character, `\"` included
            } else if b == q {
                quote = None;
            } else if matches!(b, b']' | b'}') {
                depth = depth.saturating_sub(1).max(floor);
            }
            prev = b;
            continue;
        }
        let at_token_start = matches!(
            prev,
            b' ' | b'\t' | b'\n' | b'\r' | b'[' | b']' | b'{' | b'}' | b',' | b':' | b'?' | b'-'
        );
        match b {
            b'#' if at_token_start => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' | b'"' if at_token_start => quote = Some((b, depth)),
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = b;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_pass() {
        let ok = br#"
version: 3
# a comment with [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
projects:
  - name: "it's [not] a {problem}"
    dir: env[0-9]
    autoplan: {when_modified: ["*.tf", '../modules/**/*.tf', "[ab]/**"]}
    repo_locks: {mode: on_plan}
"#;
        assert_eq!(prescan(ok), Ok(()));
    }

    #[test]
    fn the_bracket_bomb_is_refused() {
        let mut bomb = b"version: 3\nprojects: ".to_vec();
        bomb.extend(std::iter::repeat_n(b'[', 16 * 1024));
        assert_eq!(prescan(&bomb), Err(TooComplex::TooDeep));
        let mut braces = b"version: 3\nprojects: ".to_vec();
        braces.extend(std::iter::repeat_n(b'{', 40));
        assert_eq!(prescan(&braces), Err(TooComplex::TooDeep));
    }

    #[test]
    fn quotes_and_comments_cannot_hide_a_bomb() {
        // Opening brackets count inside a quote; closing ones there do not.
        let mut s = Vec::new();
        for _ in 0..40 {
            s.extend_from_slice(b"[ 'x\n]'\n");
        }
        assert_eq!(prescan(&s), Err(TooComplex::TooDeep));
        assert_eq!(
            prescan(br#"a: "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[""#),
            Err(TooComplex::TooDeep)
        );
        // Brackets balanced inside quotes are fine however often they occur.
        let globs = "  - {dir: x, autoplan: {when_modified: [\"[ab]/*.tf\", '{x}']}}\n".repeat(200);
        assert_eq!(prescan(globs.as_bytes()), Ok(()));
        // An escaped quote does not end a double-quoted scalar.
        let mut s = Vec::new();
        for _ in 0..40 {
            s.extend_from_slice(b"[ \"\\\"]\"\n");
        }
        assert_eq!(prescan(&s), Err(TooComplex::TooDeep));
        // Closing brackets in a comment or a quote do not count.
        let mut s = Vec::new();
        for _ in 0..40 {
            s.extend_from_slice(b"[ # ]\n");
        }
        assert_eq!(prescan(&s), Err(TooComplex::TooDeep));
        let mut s = Vec::new();
        for _ in 0..40 {
            s.extend_from_slice(b"[ \"]\"\n");
        }
        assert_eq!(prescan(&s), Err(TooComplex::TooDeep));
        // Many closed collections are fine up to the total cap.
        let many = "[a], ".repeat(MAX_FLOW_COLLECTIONS + 1);
        assert_eq!(
            prescan(many.as_bytes()),
            Err(TooComplex::TooManyCollections)
        );
    }

    #[test]
    fn size_is_bounded() {
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        assert!(matches!(prescan(&big), Err(TooComplex::TooBig(_))));
    }
}
