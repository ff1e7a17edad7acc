//! The pull-request comment grammar, as Atlantis's `comment_parser.go` reads it (ATLANTIS.md §4).

mod flags;
pub mod lex;
#[cfg(test)]
mod tests;

use self::flags::{Field, FlagError};
use super::config::CommentCommandName;
use super::operation::Vcs;

/// What Atlantis does with a comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommentParse {
    /// Not addressed to Atlantis (or multi-line): Atlantis says "Ignoring non-command comment".
    Ignore,
    /// Atlantis answers with a comment (help, usage, an error) and runs nothing.
    Response(CommentError),
    /// A command Atlantis runs.
    Command(CommentCommand),
}

/// A command Atlantis would run, with its flags as Atlantis keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentCommand {
    /// The command word.
    pub name: CommentCommandName,
    /// `rm` for `state rm`, else empty.
    pub sub_name: String,
    /// `-d` after cleaning; empty when not given.
    pub dir: String,
    /// `-w`; empty when not given.
    pub workspace: String,
    /// `-p`; empty when not given.
    pub project: String,
    /// `--verbose`.
    pub verbose: bool,
    /// Words after `--`, then the command's own arguments (import `ADDR ID`, state rm `ADDR...`).
    pub extra_args: Vec<String>,
    /// `--auto-merge-disabled`.
    pub auto_merge_disabled: bool,
    /// `--auto-merge-method`.
    pub auto_merge_method: String,
    /// `--policy-set`.
    pub policy_set: String,
    /// `--clear-policy-approval`.
    pub clear_policy_approval: bool,
}

impl CommentCommand {
    /// True when `-d` holds a glob (Atlantis then matches project dirs against it).
    pub fn dir_is_glob(&self) -> bool {
        is_glob(&self.dir)
    }
}

/// Why Atlantis answers a comment instead of running it; the text follows Atlantis's reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommentError {
    /// `terraform ...` or a near-miss of `atlantis`.
    #[error("Did you mean to use `{executable}` instead of `{typed}`?")]
    DidYouMean {
        /// The configured executable name.
        executable: String,
        /// What was typed.
        typed: String,
    },
    /// The executable alone, or `help`/`-h`/`--help`.
    #[error("help")]
    Help,
    /// The comment could not be split with shell quoting.
    #[error("Error parsing command: {0}")]
    ShellSplit(String),
    /// A command word not in `--allow-commands`.
    #[error("Error: unknown command {0:?}.")]
    UnknownCommand(String),
    /// `<command> -h`.
    #[error("Usage of {0}")]
    CommandHelp(&'static str),
    /// `unlock` with any flag.
    #[error("Usage of unlock: arguments or flags are not supported")]
    UnlockUsage,
    /// A flag or argument error.
    #[error("Error: {0}.")]
    Invalid(String),
}

/// The parts of the configuration the grammar reads.
#[derive(Clone, Copy, Debug)]
pub struct Grammar<'a> {
    /// `--executable-name`.
    pub executable_name: &'a str,
    /// Bot users; `@user` invokes Atlantis.
    pub bot_users: &'a [String],
    /// `--allow-commands`.
    pub allow_commands: &'a [CommentCommandName],
    /// `--blocked-extra-args`.
    pub blocked_extra_args: &'a [String],
}

/// Atlantis's multi-line rule (`.*\r?\n[^\r\n]+`): some newline is followed by a character
/// that is not a newline.
fn is_multi_line(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(2)
        .any(|w| w[0] == b'\n' && w[1] != b'\n' && w[1] != b'\r')
}

fn is_glob(dir: &str) -> bool {
    dir.contains(['*', '?', '['])
}

/// Parses a comment exactly as Atlantis's `CommentParser.Parse` would.
pub fn parse(raw: &str, vcs: Vcs, g: &Grammar<'_>) -> CommentParse {
    let comment = raw.trim().trim_matches('`');
    if is_multi_line(comment) {
        return CommentParse::Ignore;
    }
    let Some(first) = comment.split_whitespace().next() else {
        return CommentParse::Ignore;
    };
    let executable = first.to_lowercase();
    if executable == "terraform" && g.executable_name != "terraform" {
        return did_you_mean(g, "terraform");
    }
    if g.executable_name == "atlantis" {
        let d = lex::levenshtein(&executable, g.executable_name);
        if d > 0 && d < 3 {
            return did_you_mean(g, first);
        }
    }
    if !invokes_atlantis(&executable, g) {
        return CommentParse::Ignore;
    }
    let args = match lex::shell_split(comment) {
        Ok(a) => a,
        Err(e) => return CommentParse::Response(CommentError::ShellSplit(e.to_string())),
    };
    match args.len() {
        0 => return CommentParse::Ignore,
        1 => return CommentParse::Response(CommentError::Help),
        _ => {}
    }
    let cmd = args[1].to_lowercase();
    if matches!(cmd.as_str(), "help" | "-h" | "--help") {
        return CommentParse::Response(CommentError::Help);
    }
    let Some(name) = CommentCommandName::parse(&cmd).filter(|n| g.allow_commands.contains(n))
    else {
        return CommentParse::Response(CommentError::UnknownCommand(cmd));
    };
    match parse_command(name, &args[2..], vcs, g) {
        Ok(c) => CommentParse::Command(c),
        Err(e) => CommentParse::Response(e),
    }
}

fn did_you_mean(g: &Grammar<'_>, typed: &str) -> CommentParse {
    CommentParse::Response(CommentError::DidYouMean {
        executable: g.executable_name.to_owned(),
        typed: typed.to_owned(),
    })
}

fn invokes_atlantis(executable: &str, g: &Grammar<'_>) -> bool {
    if executable == "run" || executable == g.executable_name {
        return true;
    }
    let Some(user) = executable.strip_prefix('@') else {
        return false;
    };
    // Atlantis builds "@" + its configured user; with no user configured a bare "@" matches.
    if g.bot_users.is_empty() {
        return user.is_empty();
    }
    g.bot_users.iter().any(|u| u == user)
}

fn usage_name(name: CommentCommandName) -> &'static str {
    match name {
        CommentCommandName::Import => "import ADDRESS ID",
        CommentCommandName::State => "state [rm ADDRESS...]",
        other => other.as_str(),
    }
}

fn parse_command(
    name: CommentCommandName,
    args: &[String],
    vcs: Vcs,
    g: &Grammar<'_>,
) -> Result<CommentCommand, CommentError> {
    use CommentCommandName as N;
    let spec = match name {
        N::Plan | N::Version | N::Import | N::State => flags::PLAN_FLAGS,
        N::Apply => flags::APPLY_FLAGS,
        N::ApprovePolicies => flags::APPROVE_FLAGS,
        N::Unlock | N::Cancel => flags::NO_FLAGS,
    };
    let parsed = match flags::parse(args, spec) {
        Ok(p) => p,
        Err(FlagError::Help) => return Err(CommentError::CommandHelp(usage_name(name))),
        Err(FlagError::Invalid(_)) if name == N::Unlock => return Err(CommentError::UnlockUsage),
        Err(FlagError::Invalid(m)) => return Err(CommentError::Invalid(m)),
    };
    let (mut command_args, extra) = match parsed.dash_at {
        Some(i) => (parsed.args[..i].to_vec(), parsed.args[i..].to_vec()),
        None => (parsed.args.clone(), Vec::new()),
    };
    let mut sub_name = String::new();
    if name == N::State {
        if command_args.is_empty() {
            return Err(CommentError::Invalid("subcommand required".into()));
        }
        sub_name = command_args.remove(0);
        if sub_name != "rm" {
            return Err(CommentError::Invalid(format!(
                "invalid subcommand {sub_name} (not rm)"
            )));
        }
    }
    let count_ok = match name {
        N::Import => command_args.len() == 2,
        N::State => !command_args.is_empty(),
        _ => command_args.is_empty(),
    };
    if !count_ok {
        return Err(CommentError::Invalid(format!(
            "unknown argument(s) – {}",
            command_args.join(" ")
        )));
    }
    let mut extra_args = extra;
    extra_args.extend(command_args);
    if let Some(bad) = extra_args.iter().find(|a| {
        g.blocked_extra_args.iter().any(|b| {
            *a == b
                || a.strip_prefix(b.as_str())
                    .is_some_and(|r| r.starts_with('='))
        })
    }) {
        return Err(CommentError::Invalid(format!(
            "flag {bad:?} is not allowed in extra args"
        )));
    }
    let dir = validate_dir(&parsed.string(Field::Dir))?;
    let workspace = parsed.string(Field::Workspace);
    if let Err(why) = validate_workspace(&workspace) {
        return Err(CommentError::Invalid(format!(
            "invalid workspace {workspace:?}: {why}"
        )));
    }
    let project = parsed.string(Field::Project);
    if !project.is_empty() && (!workspace.is_empty() || !dir.is_empty()) {
        return Err(CommentError::Invalid(
            "cannot use -p/--project at same time as -d/--dir or -w/--workspace".into(),
        ));
    }
    let auto_merge_method = parsed.string(Field::AutoMergeMethod);
    let auto_merge_disabled = parsed.boolean(Field::AutoMergeDisabled);
    if !auto_merge_method.is_empty() {
        if auto_merge_disabled {
            return Err(CommentError::Invalid(
                "cannot use --auto-merge-method at the same time as --auto-merge-disabled".into(),
            ));
        }
        if vcs != Vcs::Github {
            return Err(CommentError::Invalid(format!(
                "--auto-merge-method is not currently implemented for {vcs}"
            )));
        }
    }
    // NewCommentCommand cleans the dir once more (keeps "" meaning "not given").
    let dir = if dir.is_empty() {
        dir
    } else {
        match lex::clean_path(&dir) {
            d if d == "/" => ".".to_owned(),
            d => d,
        }
    };
    Ok(CommentCommand {
        name,
        sub_name,
        dir,
        workspace,
        project,
        verbose: parsed.boolean(Field::Verbose),
        extra_args,
        auto_merge_disabled,
        auto_merge_method,
        policy_set: parsed.string(Field::PolicySet),
        clear_policy_approval: parsed.boolean(Field::ClearPolicyApproval),
    })
}

/// `validateDir`: a glob loses one leading `./`, then one leading `/`, and keeps its shape
/// otherwise (so `-d //*` gives `/*`, as in Atlantis); plain dirs are cleaned to repo-relative
/// form; anything escaping the repo is refused. The caller then cleans once more, as
/// `NewCommentCommand` does.
fn validate_dir(dir: &str) -> Result<String, CommentError> {
    if dir.is_empty() {
        return Ok(String::new());
    }
    if is_glob(dir) {
        if dir.contains("..") {
            return Err(CommentError::Invalid(format!(
                "using '..' in glob pattern {dir:?} with -d/--dir is not allowed"
            )));
        }
        if !lex::valid_glob(dir) {
            return Err(CommentError::Invalid(format!(
                "invalid glob pattern {dir:?} with -d/--dir"
            )));
        }
        let d = dir.strip_prefix("./").unwrap_or(dir);
        let d = d.strip_prefix('/').unwrap_or(d);
        return Ok(if d.is_empty() { ".".into() } else { d.into() });
    }
    let cleaned = lex::clean_path(&format!("./{}", lex::clean_path(dir)));
    if cleaned.starts_with("..") {
        return Err(CommentError::Invalid(format!(
            "using a relative path {dir:?} with -d/--dir is not allowed"
        )));
    }
    Ok(cleaned)
}

/// Atlantis's `valid.ValidateWorkspaceName`.
pub fn validate_workspace(ws: &str) -> Result<(), &'static str> {
    if ws.is_empty() {
        return Ok(());
    }
    if ws.contains(['/', '\\']) {
        return Err("cannot contain '/' or '\\'");
    }
    if ws.contains("..") {
        return Err("cannot contain '..'");
    }
    if ws == "." {
        return Err("cannot be '.'");
    }
    if ws.starts_with('-') {
        return Err("cannot start with '-'");
    }
    if ws.starts_with('~') {
        return Err("cannot start with '~'");
    }
    if ws.contains('$') {
        return Err("cannot contain '$'");
    }
    if ws.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("cannot contain whitespace or control characters");
    }
    Ok(())
}
