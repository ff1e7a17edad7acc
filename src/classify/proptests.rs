//! Properties: whatever arrives, classification returns (never panics) and yields an operation;
//! only a configured secret can turn a request into an error.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::comment::{self, Grammar};
use super::testutil::run;
use super::{ClassifyConfig, CommentCommandName, Operation, Secret, Vcs, WebhookSecrets};

const KEYS: &[&str] = &[
    "action",
    "issue",
    "comment",
    "body",
    "number",
    "pull_request",
    "repository",
    "full_name",
    "clone_url",
    "user",
    "login",
    "labels",
    "name",
    "head",
    "base",
    "sha",
    "ref",
    "repo",
    "html_url",
    "state",
    "draft",
    "merged",
    "object_attributes",
    "note",
    "noteable_type",
    "merge_request",
    "iid",
    "project",
    "path_with_namespace",
    "git_http_url",
    "source",
    "oldrev",
    "pullrequest",
    "pullRequest",
    "actor",
    "account_id",
    "links",
    "href",
    "id",
    "fromRef",
    "toRef",
    "slug",
    "key",
    "displayId",
    "latestCommit",
    "version",
    "text",
    "eventType",
    "resource",
    "message",
    "status",
    "createdBy",
    "uniqueName",
    "webUrl",
    "Repository",
    "Ref",
    "Type",
    "PR",
    "Paths",
    "Projects",
    "Directory",
    "Workspace",
];

const HEADER_SETS: &[&[(&str, &str)]] = &[
    &[
        ("x-github-event", "issue_comment"),
        ("content-type", "application/json"),
    ],
    &[
        ("x-github-event", "pull_request"),
        ("content-type", "application/json"),
    ],
    &[
        ("x-github-event", "issue_comment"),
        ("content-type", "application/x-www-form-urlencoded"),
    ],
    &[("x-gitlab-event", "Merge Request Hook")],
    &[("x-gitlab-event", "Note Hook")],
    &[
        ("x-event-key", "pullrequest:comment_created"),
        ("x-request-uuid", "1"),
    ],
    &[
        ("x-event-key", "pullrequest:created"),
        ("x-request-uuid", "1"),
    ],
    &[("x-event-key", "pr:comment:added"), ("x-request-id", "1")],
    &[("x-event-key", "pr:merged"), ("x-request-id", "1")],
    &[("request-id", "1"), ("content-type", "application/json")],
    &[
        ("x-gitea-event", "x"),
        ("x-gitea-event-type", "pull_request_comment"),
    ],
    &[
        ("x-gitea-event", "x"),
        ("x-gitea-event-type", "pull_request"),
    ],
    &[],
];

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/events"),
    ("POST", "/api/plan"),
    ("POST", "/api/apply"),
    ("DELETE", "/locks?id=o%2Fr%2F.%2Fdefault%2F"),
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "(atlantis|run|@bot|terraform)? ?(plan|apply|unlock|import|state rm)? ?[ -~\t\n`'\"]{0,30}"
            .prop_map(Value::String),
        "[a-z/.]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn secret_cfg() -> ClassifyConfig {
    ClassifyConfig {
        webhook_secrets: WebhookSecrets {
            github: Some(Secret::new("a")),
            gitlab: Some(Secret::new("b")),
            bitbucket: Some(Secret::new("c")),
            gitea: Some(Secret::new("d")),
            azuredevops: None,
        },
        allow_commands: CommentCommandName::ALL.to_vec(),
        vcs_bot_users: vec!["bot".into()],
        ..ClassifyConfig::accepting_unsigned()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_always_classify(
        body in prop::collection::vec(any::<u8>(), 0..512),
        headers in prop::sample::select(HEADER_SETS),
        route in prop::sample::select(ROUTES),
    ) {
        let op = run(route.0, route.1, headers, &body, &ClassifyConfig::accepting_unsigned());
        prop_assert!(op.is_ok());
        // With secrets the only other outcome is a signature rejection.
        let _ = run(route.0, route.1, headers, &body, &secret_cfg());
    }

    #[test]
    fn arbitrary_json_always_classifies(
        v in json_value(),
        headers in prop::sample::select(HEADER_SETS),
        route in prop::sample::select(ROUTES),
    ) {
        let body = v.to_string();
        let cfg = ClassifyConfig { allow_commands: CommentCommandName::ALL.to_vec(), ..ClassifyConfig::accepting_unsigned() };
        let op = run(route.0, route.1, headers, body.as_bytes(), &cfg);
        prop_assert!(op.is_ok());
    }

    #[test]
    fn arbitrary_comments_parse_without_panicking(
        c in "(atlantis|run|@bot|terraform|Atlantis)? ?(plan|apply|unlock|import|state|approve_policies|version)? ?[ -~\t\r\n`'\"\\\\é]{0,60}",
        vcs in prop::sample::select(&[Vcs::Github, Vcs::Gitlab, Vcs::AzureDevops][..]),
    ) {
        let users = vec!["bot".to_string()];
        let g = Grammar { executable_name: "atlantis", bot_users: &users, allow_commands: &CommentCommandName::ALL, blocked_extra_args: &[] };
        let _ = comment::parse(&c, vcs, &g);
    }

    #[test]
    fn arbitrary_delete_ids_always_classify(id in "[ -~]{0,60}") {
        let q = format!("/locks?id={}", id.replace(' ', "%20").replace('#', "%23"));
        // Only URIs a client can actually send reach the proxy.
        if q.parse::<http::Uri>().is_ok() {
            let op = run("DELETE", &q, &[], b"", &ClassifyConfig::accepting_unsigned());
            prop_assert!(op.is_ok());
            if let Ok(Operation::ReleaseKey { key }) = op {
                prop_assert!(key.to_string().matches('/').count() >= 4);
            }
        }
    }
}
