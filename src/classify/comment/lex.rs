//! The small lexical pieces Atlantis's comment parser borrows from Go libraries:
//! `google/shlex` splitting, `path.Clean`, and `doublestar.ValidatePattern`.

/// Why a comment could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A trailing `\`.
    #[error("EOF found after escape character")]
    TrailingEscape,
    /// An unclosed `'` or `"`.
    #[error("EOF found when expecting closing quote")]
    UnclosedQuote,
}

/// Splits like `github.com/google/shlex.Split`, which differs from POSIX shells: only
/// ` \t\r\n` separate words, `\` inside double quotes escapes any character, and `#` at the
/// start of a word starts a comment that runs to the end of the line.
pub fn shell_split(s: &str) -> Result<Vec<String>, SplitError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Start,
        Word,
        Escaping,
        EscapingQuoted,
        DoubleQuoted,
        SingleQuoted,
        Comment,
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut state = State::Start;
    for c in s.chars() {
        let space = matches!(c, ' ' | '\t' | '\r' | '\n');
        state = match state {
            State::Start => match c {
                _ if space => State::Start,
                '"' => State::DoubleQuoted,
                '\'' => State::SingleQuoted,
                '\\' => State::Escaping,
                '#' => State::Comment,
                _ => {
                    word.push(c);
                    State::Word
                }
            },
            State::Word => match c {
                _ if space => {
                    words.push(std::mem::take(&mut word));
                    State::Start
                }
                '"' => State::DoubleQuoted,
                '\'' => State::SingleQuoted,
                '\\' => State::Escaping,
                _ => {
                    word.push(c);
                    State::Word
                }
            },
            State::Escaping => {
                word.push(c);
                State::Word
            }
            State::EscapingQuoted => {
                word.push(c);
                State::DoubleQuoted
            }
            State::DoubleQuoted => match c {
                '"' => State::Word,
                '\\' => State::EscapingQuoted,
                _ => {
                    word.push(c);
                    State::DoubleQuoted
                }
            },
            State::SingleQuoted => match c {
                '\'' => State::Word,
                _ => {
                    word.push(c);
                    State::SingleQuoted
                }
            },
            State::Comment if c == '\n' => State::Start,
            State::Comment => State::Comment,
        };
    }
    match state {
        State::Start | State::Comment => Ok(words),
        State::Word => {
            words.push(word);
            Ok(words)
        }
        State::Escaping | State::EscapingQuoted => Err(SplitError::TrailingEscape),
        State::DoubleQuoted | State::SingleQuoted => Err(SplitError::UnclosedQuote),
    }
}

/// Go's `path.Clean` (identical to `filepath.Clean` on Unix).
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `doublestar.ValidatePattern` with `/` as separator: brackets closed and non-empty, braces
/// balanced, no trailing escape.
pub fn valid_glob(s: &str) -> bool {
    let b = s.as_bytes();
    let mut alt_depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 1;
                if i >= b.len() {
                    return false;
                }
            }
            b'[' => {
                i += 1;
                if i < b.len() && (b[i] == b'^' || b[i] == b'!') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b']' {
                    return false;
                }
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b']' {
                        closed = true;
                        break;
                    }
                    i += 1;
                }
                if !closed {
                    return false;
                }
            }
            b'{' => alt_depth += 1,
            b'}' => {
                if alt_depth == 0 {
                    return false;
                }
                alt_depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    alt_depth == 0
}

/// Levenshtein distance over chars (agext/levenshtein with default costs).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        shell_split(s).unwrap()
    }

    #[test]
    fn splits_like_google_shlex() {
        assert_eq!(
            split("one \"two three\" four"),
            ["one", "two three", "four"]
        );
        assert_eq!(split("a 'b \\c' \"d\\\"e\\x\""), ["a", "b \\c", "d\"ex"]);
        assert_eq!(split("a#b #c d\ne"), ["a#b", "e"]);
        assert_eq!(split("x \"\" y"), ["x", "", "y"]);
        assert_eq!(split("a\u{a0}b"), ["a\u{a0}b"]);
        assert_eq!(shell_split("a 'b"), Err(SplitError::UnclosedQuote));
        assert_eq!(shell_split("a \\"), Err(SplitError::TrailingEscape));
    }

    #[test]
    fn cleans_like_go() {
        for (i, o) in [
            ("", "."),
            ("/", "/"),
            ("./", "."),
            ("./a/", "a"),
            ("a//b/./c/..", "a/b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }

    #[test]
    fn validates_globs_like_doublestar() {
        assert!(valid_glob("modules/*"));
        assert!(valid_glob("env[0-9]/*"));
        assert!(valid_glob("{a,b}/*"));
        assert!(!valid_glob("modules/[invalid"));
        assert!(!valid_glob("a/[]"));
        assert!(!valid_glob("a}"));
        assert!(!valid_glob("a\\"));
    }

    #[test]
    fn distance() {
        assert_eq!(levenshtein("atlantis", "atlantis"), 0);
        assert_eq!(levenshtein("atlantas", "atlantis"), 1);
        assert_eq!(levenshtein("atlnts", "atlantis"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
