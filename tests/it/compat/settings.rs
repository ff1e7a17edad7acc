//! Atlantis's own configuration — its `--config` file, its repos.yaml and `ATLANTIS_*` variables
//! (passed as a map, never set on the process) — read by the proxy, each setting changing what a
//! request means for locks.

use std::collections::HashMap;
use std::path::PathBuf;

use atlantis_lock_proxy::classify::{
    ClassifyConfig, CommandKind, LockModeTable, Operation, PassthroughReason, classify,
};
use atlantis_lock_proxy::config::{CliOverrides, Config};
use serde_json::json;

use crate::support::webhooks::{
    Webhook, github_comment, github_comment_labeled, github_fork_pull, github_pull,
};

const SECRET: &str = "gh-hook-secret";

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("alp-compat-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads a proxy config pointing at Atlantis's files, with `vars` as the environment.
fn load(files: &Files, proxy_yaml: &str, vars: &[(&str, &str)]) -> (Config, ClassifyConfig) {
    let path = files.write("proxy.yaml", proxy_yaml);
    let config = Config::load(Some(&path), &env(vars), &CliOverrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = ClassifyConfig::from_config(
        &config.atlantis,
        LockModeTable::from_projects(&config.repos),
    );
    (config, cfg)
}

fn op(hook: &Webhook, cfg: &ClassifyConfig) -> Operation {
    let mut b = http::Request::post("/events");
    for (k, v) in &hook.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    classify(&parts, &hook.body, cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn reason(o: &Operation) -> Option<PassthroughReason> {
    match o {
        Operation::Passthrough { reason } => Some(*reason),
        _ => None,
    }
}

fn acquires(o: &Operation) -> bool {
    matches!(o, Operation::Acquire(_))
}

fn gitlab_note(host_path: &str, note: &str) -> Webhook {
    let project = json!({"path_with_namespace": "g/infra",
                         "git_http_url": format!("https://{host_path}/g/infra.git")});
    let body = json!({
        "object_kind": "note", "user": {"username": "bob"}, "project": project,
        "merge_request": {"iid": 3, "state": "opened", "source": project, "target_branch": "main"},
        "object_attributes": {"note": note, "noteable_type": "MergeRequest"}
    });
    Webhook {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-gitlab-event".into(), "Note Hook".into()),
            ("x-gitlab-token".into(), "gl-secret".into()),
        ],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

#[test]
fn each_atlantis_setting_changes_a_decision() {
    let files = Files::new("settings");
    let server = files.write(
        "atlantis-server.yaml",
        &format!(
            "gh-webhook-secret: {SECRET}\n\
             gitlab-webhook-secret: gl-secret\n\
             allow-fork-prs: true\n\
             repo-allowlist: github.com/acme/*,gitlab.example.com/*\n\
             gh-user: ci-bot\n\
             gitlab-hostname: gitlab.example.com/gl\n\
             disable-autoplan-label: no-autoplan\n\
             disable-unlock-label: keep-locks\n\
             disable-apply-all: true\n\
             port: 4141\n"
        ),
    );
    let repos = files.write(
        "repos.yaml",
        "repos:\n\
         \x20 - id: /.*/\n\
         \x20 - id: github.com/acme/infra\n\
         \x20   repo_locks: {mode: on_apply}\n\
         \x20 - id: github.com/acme/legacy\n\
         \x20   repo_locking: false\n\
         workflows: {}\n",
    );
    let proxy_yaml = format!(
        "atlantis:\n  server-config: {}\n  repo-config: {}\n",
        server.display(),
        repos.display()
    );
    let vars = [
        // The environment beats Atlantis's file, as viper reads them.
        ("ATLANTIS_ALLOW_FORK_PRS", "false"),
        ("ATLANTIS_ALLOW_COMMANDS", "plan,apply,unlock,import"),
        ("ATLANTIS_ALLOW_DRAFT_PRS", "true"),
    ];
    let (config, cfg) = load(&files, &proxy_yaml, &vars);
    let (_, defaults) = load(
        &files,
        "atlantis:\n  allow-unsigned-webhooks: [github, gitlab]\n",
        &[],
    );

    // Where each value came from is reported.
    let report = config.atlantis_settings_report().join("\n");
    assert!(
        report.contains("environment ATLANTIS_ALLOW_FORK_PRS"),
        "{report}"
    );
    assert!(
        report.contains(&format!("Atlantis config {}", server.display())),
        "{report}"
    );
    assert!(report.contains("gh-webhook-secret"), "{report}");
    assert!(
        !report.contains(SECRET),
        "secrets are never printed: {report}"
    );

    // allow-fork-prs (false from the environment): a fork's autoplan locks nothing.
    let fork = github_fork_pull(SECRET, "acme/apps", 2, "mallory", "opened", "forker");
    assert_eq!(reason(&op(&fork, &cfg)), Some(PassthroughReason::ForkPull));
    let (_, fork_ok) = load(&files, &proxy_yaml, &[("ATLANTIS_ALLOW_FORK_PRS", "true")]);
    assert!(acquires(&op(&fork, &fork_ok)));

    // allow-commands (environment): `import` is allowed here, refused by Atlantis's default.
    let import = github_comment(
        SECRET,
        "acme/apps",
        2,
        "alice",
        "atlantis import -d net aws_s3.b b",
    );
    match op(&import, &cfg) {
        Operation::Acquire(a) => assert_eq!(a.command, CommandKind::Import),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reason(&op(&import, &defaults)),
        Some(PassthroughReason::CommentRejected)
    );

    // repo-allowlist: a repository outside it runs nothing (Atlantis answers 403).
    let outside = github_comment(SECRET, "other/apps", 2, "alice", "atlantis plan -d net");
    assert_eq!(
        reason(&op(&outside, &cfg)),
        Some(PassthroughReason::NotAllowlisted)
    );
    assert!(acquires(&op(&outside, &defaults)));
    let close_outside = github_pull(SECRET, "other/apps", 2, "alice", "closed");
    assert_eq!(
        reason(&op(&close_outside, &cfg)),
        Some(PassthroughReason::NotAllowlisted)
    );

    // gh-user: `@ci-bot` invokes Atlantis on GitHub only.
    let at_bot = github_comment(SECRET, "acme/apps", 2, "alice", "@ci-bot plan -d net");
    assert!(acquires(&op(&at_bot, &cfg)));
    assert_eq!(
        reason(&op(&at_bot, &defaults)),
        Some(PassthroughReason::NotACommand)
    );

    // gitlab-hostname: host and base path must match exactly.
    let right_host = gitlab_note("gitlab.example.com/gl", "atlantis plan -d net");
    assert!(
        acquires(&op(&right_host, &cfg)),
        "{:?}",
        op(&right_host, &cfg)
    );
    let gitlab_com = gitlab_note("gitlab.com", "atlantis plan -d net");
    assert_eq!(
        reason(&op(&gitlab_com, &cfg)),
        Some(PassthroughReason::MissingField)
    );
    assert!(acquires(&op(&gitlab_com, &defaults)));
    let at_bot_gitlab = gitlab_note("gitlab.example.com/gl", "@ci-bot plan -d net");
    assert_eq!(
        reason(&op(&at_bot_gitlab, &cfg)),
        Some(PassthroughReason::NotACommand)
    );

    // disable-autoplan-label.
    let mut labelled = github_pull(SECRET, "acme/apps", 2, "alice", "opened");
    relabel(&mut labelled, &["no-autoplan"]);
    assert_eq!(
        reason(&op(&labelled, &cfg)),
        Some(PassthroughReason::AutoplanDisabled)
    );
    assert!(acquires(&op(&labelled, &defaults)));

    // allow-draft-prs (environment).
    let draft = draft_pull("acme/apps");
    assert!(acquires(&op(&draft, &cfg)));
    assert_eq!(
        reason(&op(&draft, &defaults)),
        Some(PassthroughReason::DraftPull)
    );

    // disable-unlock-label: an unlock on a labelled pull deletes nothing.
    let unlock = github_comment_labeled(
        SECRET,
        "acme/apps",
        2,
        "alice",
        "atlantis unlock",
        &["keep-locks"],
    );
    assert_eq!(
        reason(&op(&unlock, &cfg)),
        Some(PassthroughReason::UnlockLabel)
    );
    assert!(matches!(
        op(&unlock, &defaults),
        Operation::ReleasePull { .. }
    ));

    // repos.yaml repo_locks: acme/infra is on_apply, so plans take no lock and applies do.
    let plan_infra = github_comment(SECRET, "acme/infra", 2, "alice", "atlantis plan -d net");
    assert_eq!(
        reason(&op(&plan_infra, &cfg)),
        Some(PassthroughReason::LockModeExempt)
    );
    assert!(acquires(&op(&plan_infra, &defaults)));
    let apply_infra = github_comment(SECRET, "acme/infra", 2, "alice", "atlantis apply -d net");
    assert!(acquires(&op(&apply_infra, &cfg)));
    // disable-apply-all: a bare apply is refused even where apply locks.
    let bare_apply = github_comment(SECRET, "acme/infra", 2, "alice", "atlantis apply");
    assert_eq!(
        reason(&op(&bare_apply, &cfg)),
        Some(PassthroughReason::ApplyAllDisabled)
    );
    // Deprecated repo_locking: false = disabled.
    let plan_legacy = github_comment(SECRET, "acme/legacy", 2, "alice", "atlantis plan -d net");
    assert_eq!(
        reason(&op(&plan_legacy, &cfg)),
        Some(PassthroughReason::LockModeExempt)
    );

    // disable-repo-locking: nothing ever locks.
    let (_, no_locking) = load(
        &files,
        &proxy_yaml,
        &[("ATLANTIS_DISABLE_REPO_LOCKING", "true")],
    );
    let plan_apps = github_comment(SECRET, "acme/apps", 2, "alice", "atlantis plan -d net");
    assert!(acquires(&op(&plan_apps, &cfg)));
    assert_eq!(
        reason(&op(&plan_apps, &no_locking)),
        Some(PassthroughReason::LockModeExempt)
    );

    // disable-autoplan.
    let (_, no_autoplan) = load(&files, &proxy_yaml, &[("ATLANTIS_DISABLE_AUTOPLAN", "1")]);
    let opened = github_pull(SECRET, "acme/apps", 2, "alice", "opened");
    assert!(acquires(&op(&opened, &cfg)));
    assert_eq!(
        reason(&op(&opened, &no_autoplan)),
        Some(PassthroughReason::AutoplanDisabled)
    );

    // The proxy's own `atlantis:` key wins over Atlantis's.
    let (config, own) = load(
        &files,
        &format!("{proxy_yaml}  allow-fork-prs: true\n"),
        &vars,
    );
    assert!(acquires(&op(&fork, &own)));
    assert!(
        config
            .atlantis_settings_report()
            .iter()
            .any(|l| l.starts_with("allow-fork-prs")
                && l.contains("proxy config atlantis.allow-fork-prs")),
        "{:?}",
        config.atlantis_settings_report()
    );
}

#[test]
fn the_vcs_token_atlantis_is_given_is_the_proxys_and_check_config_says_what_works() {
    let files = Files::new("tokens");
    let (config, _) = load(&files, "", &[]);
    let said: Vec<String> = config.capabilities().into_iter().map(|c| c.text).collect();
    let said = said.join("\n");
    assert!(said.contains("queued commands are SILENT"), "{said}");
    assert!(said.contains("legacy path"), "{said}");
    assert!(said.contains("traffic split 0%"), "{said}");
    let (config, _) = load(
        &files,
        "",
        &[
            ("ATLANTIS_GH_TOKEN", "ghp_example"),
            ("ATLANTIS_GH_HOSTNAME", "ghe.example.com"),
        ],
    );
    let t = &config.atlantis.vcs_tokens;
    assert_eq!(
        t.github.as_ref().map(|s| s.expose().to_owned()).as_deref(),
        Some("ghp_example")
    );
    assert_eq!(
        t.github_api_url
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("https://ghe.example.com/api/v3")
    );
    let said: Vec<String> = config.capabilities().into_iter().map(|c| c.text).collect();
    let said = said.join("\n");
    assert!(
        said.contains("announced on pulls of GitHub (token from environment ATLANTIS_GH_TOKEN)"),
        "{said}"
    );
    assert!(!said.contains("ghp_example"), "{said}");
}

fn relabel(hook: &mut Webhook, labels: &[&str]) {
    let mut body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    body["pull_request"]["labels"] = labels.iter().map(|l| json!({"name": l})).collect();
    resign(hook, body);
}

fn draft_pull(repo: &str) -> Webhook {
    let mut hook = github_pull(SECRET, repo, 2, "alice", "opened");
    let mut body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    body["pull_request"]["draft"] = json!(true);
    resign(&mut hook, body);
    hook
}

fn resign(hook: &mut Webhook, body: serde_json::Value) {
    hook.body = serde_json::to_vec(&body).unwrap();
    let sig = crate::support::webhooks::sign(SECRET, &hook.body);
    for (k, v) in &mut hook.headers {
        if k == "x-hub-signature-256" {
            *v = sig.clone();
        }
    }
}
