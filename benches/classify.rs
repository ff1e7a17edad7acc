//! Classifying a typical GitHub `issue_comment` webhook (`atlantis plan -d infra -w staging`),
//! unsigned and signed with `X-Hub-Signature-256`.
//!
//! Run: `cargo bench --bench classify`.

use std::hint::black_box;

use atlantis_lock_proxy::classify::{ClassifyConfig, Operation, Secret, WebhookSecrets, classify};
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

/// A repository object with the ~90 fields GitHub sends (URLs, flags, counters).
fn repository() -> Value {
    let mut repo = serde_json::Map::new();
    repo.insert("id".into(), json!(123_456_789));
    repo.insert("full_name".into(), json!("acme/infrastructure"));
    repo.insert("name".into(), json!("infrastructure"));
    repo.insert(
        "clone_url".into(),
        json!("https://github.com/acme/infrastructure.git"),
    );
    repo.insert(
        "owner".into(),
        json!({"login": "acme", "id": 1, "type": "Organization",
        "url": "https://api.github.com/users/acme", "html_url": "https://github.com/acme"}),
    );
    for k in [
        "archive",
        "assignees",
        "blobs",
        "branches",
        "collaborators",
        "comments",
        "commits",
        "compare",
        "contents",
        "contributors",
        "deployments",
        "downloads",
        "events",
        "forks",
        "git_commits",
        "git_refs",
        "git_tags",
        "hooks",
        "issue_comment",
        "issue_events",
        "issues",
        "keys",
        "labels",
        "languages",
        "merges",
        "milestones",
        "notifications",
        "pulls",
        "releases",
        "stargazers",
        "statuses",
        "subscribers",
        "subscription",
        "tags",
        "teams",
        "trees",
    ] {
        repo.insert(
            format!("{k}_url"),
            json!(format!(
                "https://api.github.com/repos/acme/infrastructure/{k}{{/id}}"
            )),
        );
    }
    for (k, v) in [
        ("private", json!(true)),
        ("fork", json!(false)),
        ("has_issues", json!(true)),
        ("has_projects", json!(true)),
        ("has_wiki", json!(false)),
        ("archived", json!(false)),
        ("forks_count", json!(3)),
        ("stargazers_count", json!(42)),
        ("open_issues_count", json!(7)),
        ("default_branch", json!("main")),
        ("created_at", json!("2021-03-04T05:06:07Z")),
        ("visibility", json!("private")),
        ("topics", json!(["terraform", "aws"])),
    ] {
        repo.insert(k.into(), v);
    }
    Value::Object(repo)
}

fn payload() -> Vec<u8> {
    json!({
        "action": "created",
        "issue": {
            "url": "https://api.github.com/repos/acme/infrastructure/issues/1234",
            "html_url": "https://github.com/acme/infrastructure/pull/1234",
            "id": 987_654_321, "number": 1234, "title": "Add staging VPC peering",
            "user": {"login": "bob", "id": 2, "type": "User"},
            "labels": [{"id": 1, "name": "priority:high", "color": "d73a4a", "default": false},
                       {"id": 2, "name": "terraform", "color": "0e8a16", "default": false}],
            "state": "open", "locked": false, "comments": 3,
            "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T04:05:06Z",
            "author_association": "MEMBER",
            "pull_request": {"url": "https://api.github.com/repos/acme/infrastructure/pulls/1234",
                             "html_url": "https://github.com/acme/infrastructure/pull/1234",
                             "diff_url": "https://github.com/acme/infrastructure/pull/1234.diff",
                             "patch_url": "https://github.com/acme/infrastructure/pull/1234.patch"},
            "body": "This adds the peering between the staging VPC and the shared services VPC."
        },
        "comment": {"id": 555, "body": "atlantis plan -d infra -w staging",
                    "user": {"login": "alice", "id": 3, "type": "User"},
                    "created_at": "2025-01-02T04:05:06Z", "author_association": "MEMBER"},
        "repository": repository(),
        "organization": {"login": "acme", "id": 1},
        "sender": {"login": "alice", "id": 3, "type": "User"}
    })
    .to_string()
    .into_bytes()
}

fn parts(signature: Option<&str>) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method("POST")
        .uri("/events")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header("content-type", "application/json");
    if let Some(s) = signature {
        b = b.header("x-hub-signature-256", s);
    }
    b.body(()).expect("valid request").into_parts().0
}

fn bench(c: &mut Criterion) {
    let body = payload();
    let unsigned = ClassifyConfig::accepting_unsigned();
    let req = parts(None);
    assert!(matches!(
        classify(&req, &body, &unsigned),
        Ok(Operation::Acquire(_))
    ));
    let mut group = c.benchmark_group("classify");
    group.throughput(criterion::Throughput::Bytes(body.len() as u64));
    group.bench_function("github_issue_comment", |b| {
        b.iter(|| classify(black_box(&req), black_box(&body), &unsigned))
    });

    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"webhook-secret").expect("any key");
    mac.update(&body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let signed_cfg = ClassifyConfig {
        webhook_secrets: WebhookSecrets {
            github: Some(Secret::new("webhook-secret")),
            ..Default::default()
        },
        ..ClassifyConfig::accepting_unsigned()
    };
    let signed = parts(Some(&sig));
    assert!(matches!(
        classify(&signed, &body, &signed_cfg),
        Ok(Operation::Acquire(_))
    ));
    group.bench_function("github_issue_comment_signed", |b| {
        b.iter(|| classify(black_box(&signed), black_box(&body), &signed_cfg))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
