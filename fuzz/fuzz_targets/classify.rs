//! The whole `classify()`: every VCS's webhooks, `/api/plan|apply` bodies and `DELETE /locks`.
//! The first byte picks the route and the headers a VCS sends; the rest is the body (or query).
#![no_main]

use atlantis_lock_proxy::classify::{ClassifyConfig, classify};
use libfuzzer_sys::fuzz_target;

/// (method, path, headers) of the requests the network can send to a lock route.
const SHAPES: &[(&str, &str, &[(&str, &str)])] = &[
    ("POST", "/events", &[("x-github-event", "issue_comment")]),
    ("POST", "/events", &[("x-github-event", "pull_request")]),
    ("POST", "/events", &[("x-gitlab-event", "Note Hook")]),
    (
        "POST",
        "/events",
        &[("x-gitlab-event", "Merge Request Hook")],
    ),
    (
        "POST",
        "/events",
        &[("x-event-key", "pullrequest:comment_created")],
    ),
    (
        "POST",
        "/events",
        &[("x-event-key", "pullrequest:fulfilled")],
    ),
    (
        "POST",
        "/events",
        &[("x-event-key", "pr:comment:added"), ("x-request-id", "1")],
    ),
    (
        "POST",
        "/events",
        &[("x-event-key", "pr:merged"), ("x-request-id", "1")],
    ),
    ("POST", "/events", &[("x-gitea-event", "issue_comment")]),
    ("POST", "/events", &[("x-gitea-event", "pull_request")]),
    (
        "POST",
        "/events",
        &[
            ("user-agent", "VSServices/16.255.1"),
            ("content-type", "application/json"),
        ],
    ),
    ("POST", "/api/plan", &[("x-atlantis-token", "t")]),
    ("POST", "/api/apply", &[("x-atlantis-token", "t")]),
    ("DELETE", "/locks", &[]),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path, headers) = SHAPES[usize::from(pick) % SHAPES.len()];
    let uri = if method == "DELETE" {
        // The body is the query string here.
        let Ok(q) = std::str::from_utf8(body) else {
            return;
        };
        format!("{path}?{q}")
    } else {
        path.to_string()
    };
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let Ok(req) = req.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    let _ = classify(&parts, body, &ClassifyConfig::default());
});
