//! The flag parsing Atlantis gets from `spf13/pflag` (`ContinueOnError`, interspersed args),
//! reduced to what comment commands use: string and bool flags with optional one-letter forms.

/// What a flag fills in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Workspace,
    Dir,
    Project,
    Verbose,
    AutoMergeDisabled,
    AutoMergeMethod,
    PolicySet,
    ClearPolicyApproval,
}

/// One defined flag.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<u8>,
    pub is_bool: bool,
    pub field: Field,
}

const fn string(long: &'static str, short: Option<u8>, field: Field) -> Flag {
    Flag {
        long,
        short,
        is_bool: false,
        field,
    }
}

const fn boolean(long: &'static str, field: Field) -> Flag {
    Flag {
        long,
        short: None,
        is_bool: true,
        field,
    }
}

const W: Flag = string("workspace", Some(b'w'), Field::Workspace);
const D: Flag = string("dir", Some(b'd'), Field::Dir);
const P: Flag = string("project", Some(b'p'), Field::Project);
const VERBOSE: Flag = boolean("verbose", Field::Verbose);

/// `plan`, `version`, `import`, `state`.
pub const PLAN_FLAGS: &[Flag] = &[W, D, P, VERBOSE];
/// `apply`.
pub const APPLY_FLAGS: &[Flag] = &[
    W,
    D,
    P,
    boolean("auto-merge-disabled", Field::AutoMergeDisabled),
    string("auto-merge-method", None, Field::AutoMergeMethod),
    VERBOSE,
];
/// `approve_policies`.
pub const APPROVE_FLAGS: &[Flag] = &[
    W,
    D,
    P,
    string("policy-set", None, Field::PolicySet),
    boolean("clear-policy-approval", Field::ClearPolicyApproval),
    VERBOSE,
];
/// `unlock`, `cancel`.
pub const NO_FLAGS: &[Flag] = &[];

/// A flag parse failure, with pflag's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// `-h`/`--help` (not defined, so pflag returns `ErrHelp`).
    Help,
    /// Anything else; the text is pflag's error message.
    Invalid(String),
}

/// The outcome of a successful parse.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// Values set, in order (a later value for the same field wins).
    pub values: Vec<(Field, String)>,
    /// Positional arguments, including everything after `--`.
    pub args: Vec<String>,
    /// Index in `args` where `--` was, if it was.
    pub dash_at: Option<usize>,
}

impl Parsed {
    /// The last value set for a string field, or "".
    pub fn string(&self, field: Field) -> String {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The last value set for a bool field (already validated), or false.
    pub fn boolean(&self, field: Field) -> bool {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| *f == field)
            .is_some_and(|(_, v)| parse_go_bool(v) == Some(true))
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn set(out: &mut Parsed, flag: &Flag, value: String) -> Result<(), FlagError> {
    if flag.is_bool && parse_go_bool(&value).is_none() {
        let name = match flag.short {
            Some(s) => format!("-{}, --{}", s as char, flag.long),
            None => format!("--{}", flag.long),
        };
        return Err(FlagError::Invalid(format!(
            "invalid argument {value:?} for {name:?} flag: must be true or false"
        )));
    }
    out.values.push((flag.field, value));
    Ok(())
}

/// Parses `args` against `flags` as `pflag.FlagSet.Parse` would.
pub fn parse(args: &[String], flags: &[Flag]) -> Result<Parsed, FlagError> {
    let mut out = Parsed::default();
    let mut rest = args.iter();
    while let Some(s) = rest.next() {
        if s.len() <= 1 || !s.starts_with('-') {
            out.args.push(s.clone());
            continue;
        }
        if let Some(name) = s.strip_prefix("--") {
            if name.is_empty() {
                out.dash_at = Some(out.args.len());
                out.args.extend(rest.cloned());
                break;
            }
            if name.starts_with('-') || name.starts_with('=') {
                return Err(FlagError::Invalid(format!("bad flag syntax: {s}")));
            }
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (name, None),
            };
            let Some(flag) = flags.iter().find(|f| f.long == name) else {
                if name == "help" {
                    return Err(FlagError::Help);
                }
                return Err(FlagError::Invalid(format!("unknown flag: --{name}")));
            };
            let value = match inline {
                Some(v) => v,
                None if flag.is_bool => "true".to_owned(),
                None => rest.next().cloned().ok_or_else(|| {
                    FlagError::Invalid(format!("flag needs an argument: --{name}"))
                })?,
            };
            set(&mut out, flag, value)?;
        } else {
            let shorthands = &s[1..];
            // pflag skips Go test flags such as `-test.v` without a word.
            if shorthands.starts_with("test.") {
                continue;
            }
            let c = shorthands.as_bytes()[0];
            let Some(flag) = flags.iter().find(|f| f.short == Some(c)) else {
                if c == b'h' {
                    return Err(FlagError::Help);
                }
                let ch = shorthands.chars().next().unwrap_or('?');
                return Err(FlagError::Invalid(format!(
                    "unknown shorthand flag: '{ch}' in -{shorthands}"
                )));
            };
            // Every defined shorthand is a string flag, so it consumes the rest or the next word.
            let value = if shorthands.len() > 2 && shorthands.as_bytes()[1] == b'=' {
                shorthands[2..].to_owned()
            } else if shorthands.len() > 1 {
                shorthands[1..].to_owned()
            } else {
                rest.next().cloned().ok_or_else(|| {
                    FlagError::Invalid(format!(
                        "flag needs an argument: '{}' in -{shorthands}",
                        c as char
                    ))
                })?
            };
            set(&mut out, flag, value)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Parsed, FlagError> {
        let args: Vec<String> = s
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        parse(&args, APPLY_FLAGS)
    }

    #[test]
    fn forms_pflag_accepts() {
        let r = p("-wstaging --dir=a -p=x --verbose=false --auto-merge-method squash").unwrap();
        assert_eq!(r.string(Field::Workspace), "staging");
        assert_eq!(r.string(Field::Dir), "a");
        assert_eq!(r.string(Field::Project), "x");
        assert!(!r.boolean(Field::Verbose));
        assert_eq!(r.string(Field::AutoMergeMethod), "squash");
        let r = p("-w a -w b pos -- -w c").unwrap();
        assert_eq!(r.string(Field::Workspace), "b");
        assert_eq!(r.args, ["pos", "-w", "c"]);
        assert_eq!(r.dash_at, Some(1));
        // a value may itself start with '-'
        assert_eq!(p("-d -x").unwrap().string(Field::Dir), "-x");
    }

    #[test]
    fn errors_pflag_reports() {
        assert_eq!(p("-h"), Err(FlagError::Help));
        assert_eq!(p("--help"), Err(FlagError::Help));
        assert!(
            matches!(p("-e"), Err(FlagError::Invalid(m)) if m == "unknown shorthand flag: 'e' in -e")
        );
        assert!(matches!(p("--abc"), Err(FlagError::Invalid(m)) if m == "unknown flag: --abc"));
        assert!(
            matches!(p("-w"), Err(FlagError::Invalid(m)) if m.starts_with("flag needs an argument"))
        );
        assert!(matches!(p("--verbose=maybe"), Err(FlagError::Invalid(_))));
        assert!(matches!(p("---x"), Err(FlagError::Invalid(m)) if m == "bad flag syntax: ---x"));
    }

    impl PartialEq for Parsed {
        fn eq(&self, o: &Self) -> bool {
            self.values == o.values && self.args == o.args && self.dash_at == o.dash_at
        }
    }
}
