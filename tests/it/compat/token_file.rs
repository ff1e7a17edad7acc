//! Issue 15: Atlantis reads `gh-token-file` again on every GitHub call (`UserCredentials.GetToken`
//! in `server/events/vcs/github/credentials.go`), so a rotated token is used at once. So does
//! the proxy.

use super::{ATLANTIS_YAML, REPO, SECRET, base_yaml};
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::fake_vcs::{FakeFile, FakePull, FakeVcs};
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::github_comment;

#[tokio::test]
async fn a_rotated_gh_token_file_is_used_on_the_next_call() {
    let dir = std::env::temp_dir().join(format!("alp-token-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("gh-token");
    std::fs::write(&token_file, "ghp_first\n").unwrap();
    let server = dir.join("atlantis-server.yaml");
    std::fs::write(
        &server,
        format!("gh-user: ci-bot\ngh-token-file: {}\n", token_file.display()),
    )
    .unwrap();

    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let vcs = FakeVcs::github().await;
    vcs.add_file(REPO, "atlantis.yaml", ATLANTIS_YAML);
    for n in 1..=2 {
        vcs.add_pull(
            REPO,
            n,
            FakePull {
                head_sha: format!("{n:040x}"),
                base_branch: "main".into(),
                files: vec![FakeFile::modified("net/main.tf")],
            },
        );
    }
    let extra = format!(
        "  server-config: {}\n  vcs-tokens:\n    github-api-url: {}\n",
        server.display(),
        vcs.base_url()
    );
    let proxy = spawn_proxy(&fake.url(), &base_yaml(None, "", &extra)).await;
    // Each pull plans its own directory: both are granted, each after reading atlantis.yaml.
    let plan = |n: i64| {
        github_comment(
            SECRET,
            REPO,
            n,
            &format!("user{n}"),
            &format!("atlantis plan -d dir{n}"),
        )
    };

    assert_eq!(plan(1).send_to(&proxy.url("/events")).await.status, 200);
    let first: Vec<Option<String>> = vcs.requests().into_iter().map(|r| r.auth).collect();
    assert!(!first.is_empty(), "the resolver read atlantis.yaml");
    assert!(
        first
            .iter()
            .all(|a| a.as_deref() == Some("Bearer ghp_first")),
        "{first:?}"
    );

    // Rotated in place, with the whitespace Atlantis trims.
    std::fs::write(&token_file, " ghp_second \n").unwrap();
    assert_eq!(plan(2).send_to(&proxy.url("/events")).await.status, 200);
    let after: Vec<Option<String>> = vcs.requests()[first.len()..]
        .iter()
        .map(|r| r.auth.clone())
        .collect();
    assert!(!after.is_empty(), "pull 2's atlantis.yaml was read too");
    assert!(
        after
            .iter()
            .all(|a| a.as_deref() == Some("Bearer ghp_second")),
        "the rotated token is used at once: {after:?}"
    );
    proxy.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
