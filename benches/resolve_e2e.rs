//! One resolution against the fake GitHub API over loopback: cold (API calls) and cached.
//!
//! `cargo bench --bench resolve_e2e`

use std::sync::Arc;
use std::time::Duration;

use atlantis_lock_proxy::resolve::{
    CommandKind, Filters, ProjectTable, Resolution, ResolveRequest, Resolver, ResolverSettings,
};
use atlantis_lock_proxy::vcs::{ApiConfig, GithubClient, Secret, Vcs};
use criterion::{Criterion, criterion_group, criterion_main};

#[allow(clippy::unwrap_used)]
#[path = "../tests/it/support/fake_vcs/mod.rs"]
mod fake_vcs;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(fake_vcs::FakeVcs::github());
    fake.add_file(
        "acme/infra",
        "atlantis.yaml",
        "version: 3\nprojects:\n  - {name: a, dir: a}\n  - {name: b, dir: b}\n  - {name: c, dir: c}\n",
    );
    fake.add_pull(
        "acme/infra",
        7,
        fake_vcs::FakePull {
            head_sha: "abc".into(),
            base_branch: "main".into(),
            files: ["a/main.tf", "b/x.tfvars", "README.md"]
                .iter()
                .map(|f| fake_vcs::FakeFile::modified(f))
                .collect(),
        },
    );
    let client =
        GithubClient::new(ApiConfig::new(fake.base_url(), Some(Secret::new("t")))).expect("client");
    let settings = ResolverSettings {
        github: Some(Arc::new(client)),
        // No caching for the cold case.
        cache_size: 0,
        timeout: Duration::from_secs(5),
        ..ResolverSettings::default()
    };
    let cold = Resolver::new(settings.clone(), ProjectTable::default());
    let warm = Resolver::new(
        ResolverSettings {
            cache_size: 16,
            ..settings
        },
        ProjectTable::default(),
    );
    let req = ResolveRequest {
        vcs: Vcs::Github,
        repo: "acme/infra".into(),
        pull: 7,
        head_sha: Some("abc".into()),
        base_branch: None,
        command: CommandKind::Autoplan,
        filters: Filters::default(),
    };
    assert!(matches!(rt.block_on(cold.resolve(&req)), Resolution::Locks(l) if l.len() == 2));
    c.bench_function("resolve, cold (files + atlantis.yaml over loopback)", |b| {
        b.iter(|| rt.block_on(cold.resolve(&req)))
    });
    c.bench_function("resolve, cached head commit", |b| {
        b.iter(|| rt.block_on(warm.resolve(&req)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
