//! The resolver against fake GitHub and GitLab APIs.

use std::sync::Arc;
use std::time::Duration;

use atlantis_lock_proxy::classify::{LockMode, Priority};
use atlantis_lock_proxy::resolve::{
    CommandKind, Filters, ProjectTable, RawRepo, Resolution, ResolveRequest, Resolver,
    ResolverSettings, UnresolvedKind,
};
use atlantis_lock_proxy::vcs::{ApiConfig, GithubClient, GitlabClient, Secret, Vcs, VcsClient};
use tokio::time::Instant;

use crate::support::fake_vcs::{Failure, FakeFile, FakePull, FakeVcs, Flavor};

const REPO: &str = "acme/infra";
const SHA: &str = "8d2c1f0e6b3a4c5d9e7f1a2b3c4d5e6f7a8b9c0d";

const THREE_PROJECTS: &str = "version: 3
projects:
  - name: network
    dir: network
  - name: database
    dir: database
    workspace: prod
    repo_locks: {priority: critical, timeout: 45m}
  - name: apps
    dir: apps
";

fn api(fake: &FakeVcs) -> ApiConfig {
    let mut cfg = ApiConfig::new(fake.base_url(), Some(Secret::new("t0ken-sekrit")));
    cfg.request_timeout = Duration::from_millis(500);
    cfg.backoff = Duration::from_millis(20);
    cfg
}

fn resolver_with(
    fake: &FakeVcs,
    cfg: ApiConfig,
    table: ProjectTable,
    budget: Duration,
) -> Resolver {
    let mut settings = ResolverSettings {
        timeout: budget,
        ..ResolverSettings::default()
    };
    match fake.flavor {
        Flavor::Github => settings.github = Some(Arc::new(GithubClient::new(cfg).unwrap())),
        Flavor::Gitlab => settings.gitlab = Some(Arc::new(GitlabClient::new(cfg).unwrap())),
        Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
    }
    Resolver::new(settings, table)
}

fn resolver(fake: &FakeVcs) -> Resolver {
    resolver_with(
        fake,
        api(fake),
        ProjectTable::default(),
        Duration::from_secs(2),
    )
}

fn request(fake: &FakeVcs, command: CommandKind, head_sha: Option<&str>) -> ResolveRequest {
    ResolveRequest {
        vcs: match fake.flavor {
            Flavor::Github => Vcs::Github,
            Flavor::Gitlab => Vcs::Gitlab,
            Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
        },
        repo: REPO.to_string(),
        pull: 7,
        head_sha: head_sha.map(String::from),
        base_branch: None,
        command,
        filters: Filters::default(),
    }
}

fn pull(files: &[&str]) -> FakePull {
    FakePull {
        head_sha: SHA.to_string(),
        base_branch: "main".to_string(),
        files: files.iter().map(|f| FakeFile::modified(f)).collect(),
    }
}

fn keys(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Locks(l) => {
            let mut k: Vec<String> = l.iter().map(|p| p.key.to_string()).collect();
            k.sort();
            k
        }
        other => panic!("expected locks, got {other:?}"),
    }
}

async fn both() -> [FakeVcs; 2] {
    [FakeVcs::github().await, FakeVcs::gitlab().await]
}

#[tokio::test]
async fn autoplan_touching_two_projects_resolves_both() {
    for fake in both().await {
        fake.add_file(REPO, "atlantis.yaml", THREE_PROJECTS);
        fake.add_pull(
            REPO,
            7,
            pull(&["network/main.tf", "apps/variables.tf", "README.md"]),
        );
        let r = resolver(&fake)
            .resolve(&request(&fake, CommandKind::Autoplan, Some(SHA)))
            .await;
        assert_eq!(
            keys(&r),
            vec![
                "acme/infra/apps/default/apps",
                "acme/infra/network/default/network"
            ],
            "{:?}",
            fake.flavor
        );
        // The head commit came with the webhook: no pull lookup was needed.
        assert_eq!(fake.count("/merge_requests/7?"), 0);
        assert_eq!(fake.count("/pulls/7?"), 0);
    }
}

#[tokio::test]
async fn bare_plan_locks_only_the_touched_project_with_its_settings() {
    for fake in both().await {
        fake.add_file(REPO, "atlantis.yaml", THREE_PROJECTS);
        fake.add_pull(REPO, 7, pull(&["database/main.tf", "docs/runbook.md"]));
        // A comment webhook has no head commit: the resolver looks it up.
        let r = resolver(&fake)
            .resolve(&request(&fake, CommandKind::Plan, None))
            .await;
        let Resolution::Locks(locks) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(locks.len(), 1, "{:?}", fake.flavor);
        assert_eq!(
            locks[0].key.to_string(),
            "acme/infra/database/prod/database"
        );
        assert_eq!(locks[0].priority, Some(Priority::Critical));
        assert_eq!(locks[0].timeout, Some(Duration::from_secs(45 * 60)));
        assert_eq!(locks[0].mode, LockMode::OnPlan);
        // The config was read at the head commit the pull lookup returned.
        let cfg_req = fake
            .requests()
            .into_iter()
            .find(|r| r.uri.contains("atlantis.yaml"))
            .unwrap();
        assert!(
            cfg_req.uri.contains(&format!("ref={SHA}")),
            "{}",
            cfg_req.uri
        );
    }
}

#[tokio::test]
async fn tokens_are_sent_the_way_each_provider_expects() {
    for fake in both().await {
        fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
        let r = resolver(&fake)
            .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
            .await;
        assert_eq!(keys(&r), vec!["acme/infra/a/default/"]);
        for rec in fake.requests() {
            match fake.flavor {
                Flavor::Github => assert_eq!(rec.auth.as_deref(), Some("Bearer t0ken-sekrit")),
                Flavor::Gitlab => assert_eq!(rec.private_token.as_deref(), Some("t0ken-sekrit")),
                Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
            }
        }
    }
}

#[tokio::test]
async fn pagination_is_followed_to_the_last_page() {
    for fake in both().await {
        fake.set_page_size(2);
        fake.add_file(REPO, "atlantis.yaml", THREE_PROJECTS);
        // The only Terraform change is on the third page.
        fake.add_pull(
            REPO,
            7,
            pull(&["a.md", "b.md", "c.md", "d.md", "apps/main.tf"]),
        );
        let r = resolver(&fake)
            .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
            .await;
        assert_eq!(
            keys(&r),
            vec!["acme/infra/apps/default/apps"],
            "{:?}",
            fake.flavor
        );
        let pages = match fake.flavor {
            Flavor::Github => fake.count("/pulls/7/files"),
            Flavor::Gitlab => fake.count("/merge_requests/7/diffs"),
            Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
        };
        assert_eq!(pages, 3, "{:?}", fake.flavor);
    }
}

#[tokio::test]
async fn the_cache_avoids_a_second_api_call_for_the_same_head_commit() {
    for fake in both().await {
        fake.add_file(REPO, "atlantis.yaml", THREE_PROJECTS);
        fake.add_pull(REPO, 7, pull(&["network/main.tf"]));
        let resolver = resolver(&fake);
        let req = request(&fake, CommandKind::Autoplan, Some(SHA));
        let first = resolver.resolve(&req).await;
        let calls = fake.total();
        assert!(calls >= 2, "files and atlantis.yaml were fetched");
        let second = resolver.resolve(&req).await;
        assert_eq!(first, second);
        assert_eq!(fake.total(), calls, "{:?}: no new API call", fake.flavor);
        // A different command on the same commit reuses the data too.
        let apply = resolver
            .resolve(&request(&fake, CommandKind::Apply, Some(SHA)))
            .await;
        assert_eq!(
            apply,
            Resolution::NoLocks,
            "on_plan projects do not lock on apply"
        );
        assert_eq!(fake.total(), calls);
        let stats = resolver.stats().snapshot();
        assert_eq!((stats.cache_misses, stats.cache_hits), (1, 2));
        // A new head commit is fetched again.
        resolver
            .resolve(&request(&fake, CommandKind::Autoplan, Some("feedface")))
            .await;
        assert!(fake.total() > calls);
    }
}

#[tokio::test]
async fn a_500_is_unresolved_within_the_budget() {
    for fake in both().await {
        fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
        fake.set_failure(Failure::Status(500));
        let budget = Duration::from_millis(800);
        let resolver = resolver_with(&fake, api(&fake), ProjectTable::default(), budget);
        let started = Instant::now();
        let r = resolver
            .resolve(&request(&fake, CommandKind::Autoplan, Some(SHA)))
            .await;
        let took = started.elapsed();
        assert!(
            matches!(
                r,
                Resolution::Unresolved {
                    kind: UnresolvedKind::ApiError,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(took < budget, "took {took:?}");
        // One attempt plus the configured two retries.
        assert_eq!(fake.total(), 3, "{:?}", fake.flavor);
        assert_eq!(
            resolver
                .stats()
                .snapshot()
                .unresolved(UnresolvedKind::ApiError),
            1
        );
    }
}

#[tokio::test]
async fn a_slow_api_is_unresolved_at_the_budget() {
    for fake in both().await {
        fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
        fake.set_delay(Duration::from_secs(10));
        let budget = Duration::from_millis(300);
        let mut cfg = api(&fake);
        cfg.request_timeout = Duration::from_secs(5);
        let resolver = resolver_with(&fake, cfg, ProjectTable::default(), budget);
        let started = Instant::now();
        let r = resolver
            .resolve(&request(&fake, CommandKind::Plan, None))
            .await;
        let took = started.elapsed();
        assert!(
            matches!(
                r,
                Resolution::Unresolved {
                    kind: UnresolvedKind::Budget,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(
            took >= budget && took < budget + Duration::from_millis(400),
            "took {took:?}"
        );
    }
}

#[tokio::test]
async fn a_per_call_timeout_is_retried_then_unresolved() {
    let fake = FakeVcs::github().await;
    fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
    fake.set_delay(Duration::from_secs(10));
    let mut cfg = api(&fake);
    cfg.request_timeout = Duration::from_millis(100);
    cfg.max_retries = 1;
    let resolver = resolver_with(&fake, cfg, ProjectTable::default(), Duration::from_secs(2));
    let started = Instant::now();
    let r = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert!(
        matches!(
            r,
            Resolution::Unresolved {
                kind: UnresolvedKind::ApiTimeout,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_rate_limit_fails_fast_and_is_remembered() {
    let fake = FakeVcs::github().await;
    fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
    fake.set_failure(Failure::RateLimited {
        retry_after_secs: 60,
    });
    let resolver = resolver(&fake);
    let started = Instant::now();
    let r = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert!(
        matches!(
            r,
            Resolution::Unresolved {
                kind: UnresolvedKind::RateLimited,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    let seen = fake.total();
    assert_eq!(seen, 1, "a 60 s Retry-After is not waited for");
    // Until the window passes, the client does not even ask.
    let r = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some("other-sha")))
        .await;
    assert!(matches!(
        r,
        Resolution::Unresolved {
            kind: UnresolvedKind::RateLimited,
            ..
        }
    ));
    assert_eq!(fake.total(), seen);
}

#[tokio::test]
async fn repo_locks_mode_decides_whether_the_command_locks() {
    let fake = FakeVcs::gitlab().await;
    fake.add_file(
        REPO,
        "atlantis.yaml",
        "version: 3\nprojects:\n  - dir: prod\n    repo_locks: {mode: on_apply, priority: high}\n  - dir: off\n    repo_locks: {mode: disabled}\n",
    );
    fake.add_pull(REPO, 7, pull(&["prod/main.tf", "off/main.tf"]));
    let resolver = resolver(&fake);
    let plan = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert_eq!(plan, Resolution::NoLocks);
    let apply = resolver
        .resolve(&request(&fake, CommandKind::Apply, Some(SHA)))
        .await;
    assert_eq!(keys(&apply), vec!["acme/infra/prod/default/"]);
}

#[tokio::test]
async fn autodiscovery_reads_module_parents_from_the_api() {
    for fake in both().await {
        // No atlantis.yaml. stacks/app uses a module inside it; modules/ at the root is shared.
        fake.add_file(
            REPO,
            "stacks/app/main.tf",
            "module \"x\" { source = \"./modules/x\" }",
        );
        fake.add_file(REPO, "stacks/app/modules/x/main.tf", "");
        fake.add_file(REPO, "modules/shared/main.tf", "");
        fake.add_file(REPO, "README.md", "");
        fake.add_pull(
            REPO,
            7,
            pull(&["stacks/app/modules/x/main.tf", "modules/shared/main.tf"]),
        );
        let r = resolver(&fake)
            .resolve(&request(&fake, CommandKind::Autoplan, Some(SHA)))
            .await;
        assert_eq!(
            keys(&r),
            vec!["acme/infra/stacks/app/default/"],
            "{:?}",
            fake.flavor
        );
    }
}

#[tokio::test]
async fn the_project_table_answers_targeted_commands_without_the_api() {
    let fake = FakeVcs::github().await;
    let raw: Vec<RawRepo> = serde_norway::from_str(
        "- name: acme/infra\n  projects:\n    - {name: core, dir: core, repo_locks: {priority: low}}\n    - {name: edge, dir: edge, when_modified: ['*.tf', '../shared/**']}\n",
    )
    .unwrap();
    let table = ProjectTable::from_raw(&raw).unwrap();
    let resolver = resolver_with(&fake, api(&fake), table, Duration::from_secs(2));
    let mut req = request(&fake, CommandKind::Plan, None);
    req.filters.project = Some("core".into());
    // A GitHub comment does not say whether the pull is a fork: the pull itself is read (as
    // Atlantis does), never atlantis.yaml.
    fake.add_pull(REPO, 7, pull(&[]));
    let r = resolver.resolve(&req).await;
    assert_eq!(keys(&r), vec!["acme/infra/core/default/core"]);
    assert_eq!(fake.total(), 1);
    assert_eq!(fake.count("atlantis.yaml"), 0);
    assert_eq!(resolver.stats().snapshot().from_table, 1);

    // A bare plan still needs the changed files, but not atlantis.yaml.
    fake.add_pull(REPO, 7, pull(&["shared/vars.tf"]));
    let _ = &fake;
    let r = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert_eq!(keys(&r), vec!["acme/infra/edge/default/edge"]);
    assert_eq!(fake.count("atlantis.yaml"), 0);
}

#[tokio::test]
async fn an_invalid_atlantis_yaml_is_left_to_atlantis() {
    let fake = FakeVcs::github().await;
    fake.add_file(REPO, "atlantis.yaml", "projects: [{dir: a}]\n");
    fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
    let r = resolver(&fake)
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert!(
        matches!(&r, Resolution::Unresolved { kind: UnresolvedKind::BadRepoConfig, reason } if reason.contains("version")),
        "{r:?}"
    );
}

/// Issue 14 item 10: a pull's `atlantis.yaml` of 16 KB of `[` took 2.7 s of libyaml (release
/// build; far longer here) on a runtime worker. It is refused before parsing, at once.
#[tokio::test]
async fn a_bracket_bomb_atlantis_yaml_is_refused_at_once() {
    let fake = FakeVcs::github().await;
    let bomb = format!("version: 3\nprojects: {}", "[".repeat(16 * 1024));
    fake.add_file(REPO, "atlantis.yaml", &bomb);
    fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
    let resolver = resolver_with(
        &fake,
        api(&fake),
        ProjectTable::default(),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let r = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    let took = started.elapsed();
    assert!(
        matches!(&r, Resolution::Unresolved { kind: UnresolvedKind::BadRepoConfig, reason } if reason.contains("nests flow collections")),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(500), "took {took:?}");
    // A second webhook for the same commit reuses the verdict: no second download.
    let r2 = resolver
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert_eq!(r2, r);
    assert_eq!(fake.count("atlantis.yaml"), 1);
}

#[tokio::test]
async fn gitlab_subgroup_paths_are_encoded() {
    let fake = FakeVcs::gitlab().await;
    let repo = "group/sub/infra";
    fake.add_pull(repo, 7, pull(&["x/main.tf"]));
    let mut req = request(&fake, CommandKind::Plan, Some(SHA));
    req.repo = repo.to_string();
    let r = resolver(&fake).resolve(&req).await;
    assert_eq!(keys(&r), vec!["group/sub/infra/x/default/"]);
    assert!(fake.count("/projects/group%2Fsub%2Finfra/merge_requests/7/diffs") > 0);
}

#[tokio::test]
async fn clients_post_comments_for_the_notifier() {
    for fake in both().await {
        let client = match fake.flavor {
            Flavor::Github => VcsClient::Github(Arc::new(GithubClient::new(api(&fake)).unwrap())),
            Flavor::Gitlab => VcsClient::Gitlab(Arc::new(GitlabClient::new(api(&fake)).unwrap())),
            Flavor::Gitea => unreachable!("the Gitea fake serves pulls only"),
        };
        client.comment(REPO, 7, "queued behind #12").await.unwrap();
        assert_eq!(
            fake.comments(),
            vec![(REPO.to_string(), 7, "queued behind #12".to_string())]
        );
    }
}

#[tokio::test]
async fn renamed_and_deleted_project_dirs() {
    for fake in both().await {
        // `old` was renamed to `new`: Atlantis plans `new`, and `old` no longer exists.
        fake.add_file(REPO, "new/main.tf", "");
        fake.add_pull(
            REPO,
            7,
            FakePull {
                head_sha: SHA.into(),
                base_branch: "main".into(),
                files: vec![FakeFile {
                    path: "new/main.tf".into(),
                    status: "renamed",
                    previous: Some("old/main.tf".into()),
                }],
            },
        );
        let r = resolver(&fake)
            .resolve(&request(&fake, CommandKind::Autoplan, Some(SHA)))
            .await;
        assert_eq!(
            keys(&r),
            vec!["acme/infra/new/default/"],
            "{:?}",
            fake.flavor
        );
    }
    let fake = FakeVcs::github().await;
    fake.add_pull(
        REPO,
        7,
        FakePull {
            head_sha: SHA.into(),
            base_branch: "main".into(),
            files: vec![FakeFile::removed("gone/main.tf")],
        },
    );
    let r = resolver(&fake)
        .resolve(&request(&fake, CommandKind::Autoplan, Some(SHA)))
        .await;
    assert_eq!(r, Resolution::NoLocks);
}

#[tokio::test]
async fn concurrent_requests_for_one_commit_share_the_fetches() {
    let fake = FakeVcs::github().await;
    fake.add_file(REPO, "atlantis.yaml", THREE_PROJECTS);
    fake.add_pull(REPO, 7, pull(&["network/main.tf"]));
    fake.set_delay(Duration::from_millis(100));
    let resolver = resolver(&fake);
    let req = request(&fake, CommandKind::Autoplan, Some(SHA));
    let (a, b) = tokio::join!(resolver.resolve(&req), resolver.resolve(&req));
    assert_eq!(a, b);
    assert_eq!(keys(&a), vec!["acme/infra/network/default/network"]);
    assert_eq!(fake.count("/pulls/7/files"), 1);
    assert_eq!(fake.count("atlantis.yaml"), 1);
}

#[tokio::test]
async fn a_custom_autoplan_file_list_limits_autodiscovery() {
    let fake = FakeVcs::github().await;
    fake.add_pull(REPO, 7, pull(&["a/main.tf", "b/terraform.tfvars"]));
    let mut settings = ResolverSettings::default();
    settings.set_autoplan_file_list("**/*.tf").unwrap();
    settings.github = Some(Arc::new(GithubClient::new(api(&fake)).unwrap()));
    let resolver = Resolver::new(settings, ProjectTable::default());
    let r = resolver
        .resolve(&request(&fake, CommandKind::Autoplan, Some(SHA)))
        .await;
    assert_eq!(keys(&r), vec!["acme/infra/a/default/"]);
}

#[tokio::test]
async fn https_with_a_private_ca_is_verified() {
    let fake = FakeVcs::github_tls().await;
    fake.add_pull(REPO, 7, pull(&["a/main.tf"]));
    assert!(fake.base_url().starts_with("https://"));
    // Trusting the private CA: the call goes through.
    let mut cfg = api(&fake);
    cfg.extra_ca_pem = Some(FakeVcs::test_ca_pem());
    let trusted = resolver_with(&fake, cfg, ProjectTable::default(), Duration::from_secs(2));
    let r = trusted
        .resolve(&request(&fake, CommandKind::Plan, Some(SHA)))
        .await;
    assert_eq!(keys(&r), vec!["acme/infra/a/default/"]);
    let served = fake.total();
    assert!(served >= 2);
    // Public roots only: the certificate is refused and nothing reaches the API.
    let untrusted = resolver(&fake);
    let r = untrusted
        .resolve(&request(&fake, CommandKind::Plan, Some("other")))
        .await;
    assert!(
        matches!(&r, Resolution::Unresolved { kind: UnresolvedKind::ApiError, reason } if reason.contains("unreachable")),
        "{r:?}"
    );
    assert_eq!(fake.total(), served);
}
