//! Cost of mapping a pull's changed files to projects (the CPU part of a resolution).
//!
//! `cargo bench --bench resolve_mapping`

use std::hint::black_box;

use atlantis_lock_proxy::classify::LockMode;
use atlantis_lock_proxy::resolve::mapping::{
    CommandKind, DirIndex, Filters, MapInput, MapOutcome, ServerDefaults, map_projects,
};
use atlantis_lock_proxy::resolve::{
    AutoDiscoverMode, DEFAULT_AUTOPLAN_FILE_LIST, PatternList, parse_atlantis_yaml,
};
use atlantis_lock_proxy::vcs::ChangedFile;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let mut yaml = String::from("version: 3\nprojects:\n");
    for i in 0..50 {
        yaml.push_str(&format!("  - name: p{i}\n    dir: stacks/p{i}\n"));
    }
    let cfg = parse_atlantis_yaml(yaml.as_bytes()).expect("bench config parses");
    let files: Vec<ChangedFile> = (0..300)
        .map(|i| ChangedFile::modified(format!("stacks/p{}/file{i}.tf", i % 60)))
        .collect();
    let server = ServerDefaults {
        autodiscover: AutoDiscoverMode::Auto,
        autoplan_file_list: PatternList::new(DEFAULT_AUTOPLAN_FILE_LIST.split(','))
            .expect("default list compiles"),
        lock_mode: LockMode::OnPlan,
    };
    let filters = Filters::default();
    let dirs = DirIndex::new();
    let input = |config| MapInput {
        repo: "acme/infra",
        config,
        files: &files,
        command: CommandKind::Plan,
        filters: &filters,
        base_branch: None,
        server: &server,
        dirs: &dirs,
        server_locks: None,
    };
    let configured = input(Some(&cfg));
    assert!(matches!(map_projects(&configured), MapOutcome::Projects(p) if p.len() == 50));
    c.bench_function("map 300 files onto 50 configured projects", |b| {
        b.iter(|| map_projects(black_box(&configured)))
    });
    let discovered = input(None);
    assert!(matches!(map_projects(&discovered), MapOutcome::Projects(p) if p.len() == 60));
    c.bench_function("autodiscover 300 files in 60 dirs", |b| {
        b.iter(|| map_projects(black_box(&discovered)))
    });
    c.bench_function("parse a 50-project atlantis.yaml", |b| {
        b.iter(|| parse_atlantis_yaml(black_box(yaml.as_bytes())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
