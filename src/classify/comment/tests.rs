//! Atlantis's `comment_parser_test.go` cases, same inputs, same results.

use super::*;
use crate::classify::config::CommentCommandName as N;

fn users() -> Vec<String> {
    vec!["github-user".into(), "gitlab-user".into()]
}

fn blocked() -> Vec<String> {
    ["-chdir", "--chdir", "-plugin-dir", "--plugin-dir"]
        .map(String::from)
        .to_vec()
}

/// The test file's package-level `commentParser`: all comment commands allowed.
fn p(comment: &str) -> CommentParse {
    let (u, b) = (users(), blocked());
    let g = Grammar {
        executable_name: "atlantis",
        bot_users: &u,
        allow_commands: &N::ALL,
        blocked_extra_args: &b,
    };
    parse(comment, Vcs::Github, &g)
}

fn cmd(comment: &str) -> CommentCommand {
    match p(comment) {
        CommentParse::Command(c) => c,
        other => panic!("{comment:?} should parse as a command, got {other:?}"),
    }
}

fn response(comment: &str) -> String {
    match p(comment) {
        CommentParse::Response(e) => e.to_string(),
        other => panic!("{comment:?} should get a response, got {other:?}"),
    }
}

#[test]
fn parse_ignored() {
    for c in [
        "",
        "a",
        "abc",
        "atlantis plan\nbut with newlines",
        "terraform plan\nbut with newlines",
        "This shouldn't error, but it does.",
    ] {
        assert_eq!(p(c), CommentParse::Ignore, "{c:?}");
    }
}

#[test]
fn parse_executable_name() {
    let users = vec!["github-user".to_string()];
    for (user, exp_ignore) in [
        ("custom-executable-name", false),
        ("run", false),
        ("@github-user", false),
        ("github-user", true),
        ("atlantis", true),
    ] {
        let g = Grammar {
            executable_name: "custom-executable-name",
            bot_users: &users,
            allow_commands: &[],
            blocked_extra_args: &[],
        };
        let r = parse(&format!("{user} help"), Vcs::Github, &g);
        assert_eq!(r == CommentParse::Ignore, exp_ignore, "{user}: {r:?}");
    }
}

#[test]
fn parse_help_and_trimming() {
    for c in [
        "run",
        "atlantis",
        "@github-user",
        "atlantis help",
        "atlantis --help",
        "atlantis -h",
        "atlantis help something else",
        "atlantis help plan",
        "`atlantis help`",
        "`  atlantis help  `",
        "`atlantis help`  ",
        "  `atlantis help",
        "@gitlab-user help",
    ] {
        assert_eq!(p(c), CommentParse::Response(CommentError::Help), "{c:?}");
    }
}

#[test]
fn parse_did_you_mean() {
    for c in [
        "terraform",
        "terraform help",
        "terraform --help",
        "terraform -h",
        "terraform plan",
        "terraform apply",
        "terraform plan -w workspace -d . -- test",
    ] {
        assert_eq!(
            response(c),
            "Did you mean to use `atlantis` instead of `terraform`?"
        );
    }
    assert!(response("atlantas plan").starts_with("Did you mean"));
    // no misspelling warning with a custom executable name
    let g = Grammar {
        executable_name: "atlantis-sec",
        bot_users: &[],
        allow_commands: &N::ALL,
        blocked_extra_args: &[],
    };
    assert_eq!(
        parse("atlantis-dev unlock", Vcs::Github, &g),
        CommentParse::Ignore
    );
}

#[test]
fn parse_invalid_command_and_allow_list() {
    let allow = [N::Version, N::Unlock, N::Apply, N::Plan];
    let g = Grammar {
        executable_name: "atlantis",
        bot_users: &[],
        allow_commands: &allow,
        blocked_extra_args: &[],
    };
    for (c, word) in [
        ("atlantis paln", "paln"),
        ("atlantis appely apply", "appely"),
    ] {
        assert_eq!(
            parse(c, Vcs::Github, &g),
            CommentParse::Response(CommentError::UnknownCommand(word.into()))
        );
    }
    // import is a real command but not allowed here
    assert!(matches!(
        parse("atlantis import a b", Vcs::Github, &g),
        CommentParse::Response(CommentError::UnknownCommand(_))
    ));
}

#[test]
fn parse_unused_arguments() {
    for (command, args, unused) in [
        ("plan", "-d . arg", "arg"),
        ("plan", "arg -d .", "arg"),
        ("plan", "arg", "arg"),
        ("plan", "arg arg2", "arg arg2"),
        ("plan", "-d . arg -w kjj arg2", "arg arg2"),
        ("apply", "-d . arg", "arg"),
        ("apply", "arg arg2", "arg arg2"),
        ("apply", "arg arg2 -- useful", "arg arg2"),
        ("apply", "arg arg2 --", "arg arg2"),
        ("approve_policies", "arg arg2 arg3 --", "arg arg2 arg3"),
        ("import", "arg --", "arg"),
        ("import", "arg1 arg2 arg3 --", "arg1 arg2 arg3"),
    ] {
        let c = format!("atlantis {command} {args}");
        assert_eq!(
            response(&c),
            format!("Error: unknown argument(s) – {unused}."),
            "{c}"
        );
    }
}

#[test]
fn parse_unlock_with_flags_gets_usage() {
    assert_eq!(
        p("atlantis unlock -d ."),
        CommentParse::Response(CommentError::UnlockUsage)
    );
    assert_eq!(cmd("atlantis unlock").name, N::Unlock);
}

#[test]
fn parse_subcommand_usage() {
    for (c, usage) in [
        ("atlantis plan -h", "plan"),
        ("atlantis plan --help", "plan"),
        ("atlantis apply -h", "apply"),
        ("atlantis apply --help", "apply"),
        ("atlantis approve_policies -h", "approve_policies"),
        ("atlantis approve_policies --help", "approve_policies"),
        ("atlantis import -h", "import ADDRESS ID"),
        ("atlantis import --help", "import ADDRESS ID"),
        ("atlantis state -h", "state [rm ADDRESS...]"),
        ("atlantis state --help", "state [rm ADDRESS...]"),
    ] {
        let r = response(c);
        assert!(
            r.contains(&format!("Usage of {usage}")) && !r.contains("Error:"),
            "{c}: {r}"
        );
    }
}

#[test]
fn parse_invalid_flags() {
    for (c, exp) in [
        (
            "atlantis plan -e",
            "Error: unknown shorthand flag: 'e' in -e",
        ),
        ("atlantis plan --abc", "Error: unknown flag: --abc"),
        (
            "atlantis apply -e",
            "Error: unknown shorthand flag: 'e' in -e",
        ),
        ("atlantis apply --abc", "Error: unknown flag: --abc"),
        ("atlantis import --abc", "Error: unknown flag: --abc"),
        ("atlantis state rm --abc", "Error: unknown flag: --abc"),
    ] {
        assert!(response(c).contains(exp), "{c}: {}", response(c));
    }
}

#[test]
fn parse_relative_dir_path() {
    for c in [
        "atlantis plan -d ..",
        "atlantis apply -d ..",
        "atlantis import -d .. address id",
        "atlantis state -d .. rm address",
        "atlantis plan -d ./..",
        "atlantis apply -d ./..",
        "atlantis import -d ./.. address id",
        "atlantis state -d ./.. rm address",
        "atlantis plan -d a/b/../../..",
        "atlantis apply -d a/../..",
        "atlantis import -d a/../.. address id",
        "atlantis state -d a/../.. rm address id",
    ] {
        assert!(response(c).contains("Error: using a relative path"), "{c}");
    }
}

#[test]
fn parse_glob_dirs() {
    for (c, dir) in [
        ("atlantis plan -d modules/*", "modules/*"),
        ("atlantis plan -d modules/**", "modules/**"),
        (
            "atlantis plan -d environments/*/apps",
            "environments/*/apps",
        ),
        ("atlantis plan -d 'env[0-9]/*'", "env[0-9]/*"),
        ("atlantis plan -d stacks/prod-?-*", "stacks/prod-?-*"),
        ("atlantis apply -d modules/**", "modules/**"),
        ("atlantis import -d modules/* address id", "modules/*"),
        ("atlantis state -d modules/* rm address", "modules/*"),
    ] {
        let r = cmd(c);
        assert_eq!(r.dir, dir, "{c}");
        assert!(r.dir_is_glob());
    }
    for c in [
        "atlantis plan -d '../*'",
        "atlantis plan -d 'modules/../*'",
        "atlantis plan -d '../**'",
        "atlantis apply -d '../apps/*'",
        "atlantis import -d '../*' address id",
        "atlantis state -d '../*' rm address",
    ] {
        assert!(response(c).contains("using '..' in glob pattern"), "{c}");
    }
    for c in [
        "atlantis plan -d 'modules/[invalid'",
        "atlantis apply -d 'apps/[unclosed'",
    ] {
        assert!(response(c).contains("invalid glob pattern"), "{c}");
    }
}

/// Issue 14 item 11: `-d` cleaning as Atlantis v0.47.1 does it, step by step. `validateDir` trims
/// one `./` then one `/` from a glob and runs `filepath.Clean` → `filepath.Join(".", …)` →
/// `filepath.Clean` on anything else; `NewCommentCommand` then runs `path.Clean` and maps `/` to
/// `.`. So `-d //*` stays the absolute `/*` in Atlantis too (and matches no project there, nor
/// here: the proxy leaves it to Atlantis), while every non-glob dir comes out repo-relative.
#[test]
fn dir_cleaning_matches_atlantis_exactly() {
    for (flag, dir) in [
        // Globs: one "./", then one "/", then path.Clean.
        ("//*", "/*"),
        (".//*", "*"),
        (".//*", "*"),
        ("/./*", "*"),
        ("./*", "*"),
        ("././*", "*"),
        ("/*", "*"),
        ("a//*/", "a/*"),
        ("./a/./b*", "a/b*"),
        ("/modules/**/", "modules/**"),
        ("*/", "*"),
        // Plain dirs: always relative, `/..` is the root.
        ("/", "."),
        ("//", "."),
        ("/..", "."),
        ("//a//b/", "a/b"),
        ("./a/", "a"),
        ("a/../b", "b"),
        ("a/./b/.", "a/b"),
        (".", "."),
        ("./", "."),
    ] {
        let c = cmd(&format!("atlantis plan -d '{flag}'"));
        assert_eq!(c.dir, dir, "-d {flag}");
    }
}

#[test]
fn parse_valid_command_multi_line_rules() {
    for c in [
        "atlantis plan\n",
        "atlantis plan\n\n",
        "atlantis plan\r\n",
        "atlantis plan\r\n\r\n",
        "\natlantis plan",
        "\r\natlantis plan",
        "\natlantis plan\n",
        "\r\natlantis plan\r\n",
        "atlantis plan",
        "Atlantis plan",
        "Atlantis Plan",
        "ATLANTIS PLAN",
    ] {
        let r = cmd(c);
        assert_eq!(
            (
                r.name,
                r.dir.as_str(),
                r.workspace.as_str(),
                r.project.as_str(),
                r.verbose
            ),
            (N::Plan, "", "", "", false),
            "{c:?}"
        );
        assert!(r.extra_args.is_empty());
    }
}

#[test]
fn parse_invalid_workspaces() {
    for c in [
        "atlantis plan -w ..",
        "atlantis apply -w ..",
        "atlantis import -w .. address id",
        "atlantis plan -w /",
        "atlantis apply -w /",
        "atlantis import -w / address id",
        "atlantis state -w / rm address",
        "atlantis plan -w ..abc",
        "atlantis apply -w abc..",
        "atlantis import -w abc.. address id",
        "atlantis state -w abc.. rm address",
        "atlantis plan -w abc..abc",
        "atlantis apply -w ../../../etc/passwd",
        "atlantis plan -w ~",
        "atlantis apply -w ~root",
        "atlantis state -w ~ rm address",
        "atlantis plan -w a$HOME",
        "atlantis plan -w a$(id)b",
    ] {
        assert!(
            response(c).contains("Error: invalid workspace"),
            "{c}: {}",
            response(c)
        );
    }
    for c in [
        "atlantis plan -w a;id",
        "atlantis plan -w a&&id",
        "atlantis plan -w a|id",
        "atlantis plan -w a`id`b",
        "atlantis plan -w a>b",
        "atlantis plan -w a+b",
        "atlantis plan -w _foo",
        "atlantis plan -w .hidden",
    ] {
        assert!(matches!(p(c), CommentParse::Command(_)), "{c}");
    }
}

#[test]
fn parse_blocked_extra_args() {
    for (c, msg) in [
        (
            "atlantis plan -- -chdir=../other",
            r#"flag "-chdir=../other" is not allowed in extra args"#,
        ),
        (
            "atlantis plan -- --chdir=/tmp",
            r#"flag "--chdir=/tmp" is not allowed in extra args"#,
        ),
        (
            "atlantis plan -- -chdir",
            r#"flag "-chdir" is not allowed in extra args"#,
        ),
        (
            "atlantis plan -- -plugin-dir=/tmp/evil",
            r#"flag "-plugin-dir=/tmp/evil" is not allowed in extra args"#,
        ),
        (
            "atlantis apply -- -chdir=../sensitive",
            r#"flag "-chdir=../sensitive" is not allowed in extra args"#,
        ),
        (
            "atlantis import address id -- -chdir=..",
            r#"flag "-chdir=.." is not allowed in extra args"#,
        ),
    ] {
        assert!(response(c).contains(msg), "{c}: {}", response(c));
    }
    assert_eq!(cmd("atlantis plan -- -chdirx").extra_args, ["-chdirx"]);
}

#[test]
fn parse_project_exclusive_with_dir_and_workspace() {
    for c in [
        "atlantis plan -w workspace -p project",
        "atlantis plan -d dir -p project",
        "atlantis plan -d dir -w workspace -p project",
    ] {
        assert!(
            response(c).contains(
                "Error: cannot use -p/--project at same time as -d/--dir or -w/--workspace"
            )
        );
    }
}

#[test]
fn parse_auto_merge_method_rules() {
    assert_eq!(
        cmd("atlantis apply --auto-merge-method squash").auto_merge_method,
        "squash"
    );
    assert!(
        response("atlantis apply --auto-merge-method squash --auto-merge-disabled")
            .contains("cannot use --auto-merge-method")
    );
    let g = Grammar {
        executable_name: "atlantis",
        bot_users: &[],
        allow_commands: &N::ALL,
        blocked_extra_args: &[],
    };
    assert!(matches!(
        parse("atlantis apply --auto-merge-method squash", Vcs::Gitlab, &g),
        CommentParse::Response(CommentError::Invalid(_))
    ));
}

/// `TestParse_Parsing`: every flag row against plan, apply, import and state rm.
#[test]
fn parse_parsing_table() {
    let rows: &[(&str, &str, &str, bool, &str, &str)] = &[
        // flags, workspace, dir, verbose, extra args, project
        ("", "", "", false, "", ""),
        ("-w workspace", "workspace", "", false, "", ""),
        ("-d dir", "", "dir", false, "", ""),
        ("-p project", "", "", false, "", "project"),
        ("--verbose", "", "", true, "", ""),
        ("--workspace workspace", "workspace", "", false, "", ""),
        ("--dir dir", "", "dir", false, "", ""),
        ("--project project", "", "", false, "", "project"),
        (
            "-w workspace -d dir --verbose",
            "workspace",
            "dir",
            true,
            "",
            "",
        ),
        (
            "-d dir -w workspace --verbose",
            "workspace",
            "dir",
            true,
            "",
            "",
        ),
        (
            "--verbose -w workspace -d dir",
            "workspace",
            "dir",
            true,
            "",
            "",
        ),
        ("-p project --verbose", "", "", true, "", "project"),
        ("--verbose -p project", "", "", true, "", "project"),
        (
            "-w workspace -d dir -- --verbose",
            "workspace",
            "dir",
            false,
            "--verbose",
            "",
        ),
        (
            "-w workspace -- -d dir --verbose",
            "workspace",
            "",
            false,
            "-d dir --verbose",
            "",
        ),
        ("--", "", "", false, "", ""),
        (
            "-w workspace -d dir --verbose -- arg one -two --three &&",
            "workspace",
            "dir",
            true,
            "arg one -two --three &&",
            "",
        ),
        (
            "\t-w\tworkspace\t-d\tdir\t--verbose\t--\targ\tone\t-two\t--three\t&&",
            "workspace",
            "dir",
            true,
            "arg one -two --three &&",
            "",
        ),
        (
            "   -w   workspace   -d   dir   --verbose   --   arg   one   -two   --three   &&",
            "workspace",
            "dir",
            true,
            "arg one -two --three &&",
            "",
        ),
        ("-d /", "", ".", false, "", ""),
        ("-d /adir", "", "adir", false, "", ""),
        ("-d .", "", ".", false, "", ""),
        ("-d ./", "", ".", false, "", ""),
        ("-d ./adir", "", "adir", false, "", ""),
        ("-d \"dir with space\"", "", "dir with space", false, "", ""),
    ];
    for &(flags, ws, dir, verbose, extra, project) in rows {
        for command in [
            "plan",
            "apply",
            "import 'some[\"addr\"]' id",
            "state rm 'some[\"addr\"]'",
        ] {
            let comment = format!("atlantis {command} {flags}");
            let c = cmd(&comment);
            assert_eq!(c.dir, dir, "{comment:?}");
            assert_eq!(c.workspace, ws, "{comment:?}");
            assert_eq!(c.verbose, verbose, "{comment:?}");
            assert_eq!(c.project, project, "{comment:?}");
            let actual = c.extra_args.join(" ");
            let join = |own: &str| {
                if extra.is_empty() {
                    own.to_owned()
                } else {
                    format!("{extra} {own}")
                }
            };
            let (name, expected) = match command {
                "plan" => (N::Plan, extra.to_owned()),
                "apply" => (N::Apply, extra.to_owned()),
                c if c.starts_with("import") => (N::Import, join("some[\"addr\"] id")),
                _ => (N::State, join("some[\"addr\"]")),
            };
            assert_eq!(c.name, name, "{comment:?}");
            assert_eq!(actual, expected, "{comment:?}");
            if name == N::State {
                assert_eq!(c.sub_name, "rm");
            }
        }
    }
}
