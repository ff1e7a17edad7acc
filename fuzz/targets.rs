//! The fuzz targets' bodies, one function each: the cargo-fuzz binaries in `fuzz_targets/` call
//! them, and the proxy's own `cargo test` runs them over the seeds and mutations of them for a
//! bounded time (`tests/it/fuzz_smoke.rs`), so CI exercises every target without building
//! libFuzzer. Each returns normally for any input; a panic is a finding.
#![allow(dead_code)]

use atlantis_lock_proxy::classify::Vcs;
use atlantis_lock_proxy::classify::classify as classify_request;
use atlantis_lock_proxy::classify::comment::{Grammar, parse};
use atlantis_lock_proxy::classify::{ClassifyConfig, LockKey, Operation};
use atlantis_lock_proxy::resolve::PatternList;
use atlantis_lock_proxy::resolve::parse_atlantis_yaml;
use atlantis_lock_proxy::upstream::replay::StoredRequest;

/// A request shape: method, path, the headers a VCS sends.
type Shape = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The requests the network can send to a lock route.
const SHAPES: &[Shape] = &[
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

/// The whole `classify()`: every VCS's webhooks, `/api/plan|apply` bodies and `DELETE /locks`.
/// The first byte picks the route and the headers a VCS sends; the rest is the body (or query).
pub fn classify(data: &[u8]) {
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
    let _ = classify_request(&parts, body, &ClassifyConfig::default());
}

/// Atlantis's comment grammar (`atlantis plan -d ... -- extra args`), as comments reach it.
pub fn comment(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bots = ["atlantis-bot".to_string()];
    let blocked = ["-chdir".to_string(), "--chdir".to_string()];
    let g = Grammar {
        executable_name: "atlantis",
        bot_users: &bots,
        allow_commands: &atlantis_lock_proxy::classify::CommentCommandName::ALL,
        blocked_extra_args: &blocked,
    };
    for vcs in [Vcs::Github, Vcs::Gitlab] {
        let _ = parse(text, vcs, &g);
    }
}

/// `DELETE /locks?id=...`: Atlantis's two decodings and the lock key's parse.
pub fn lock_id(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    // A key that parses prints back to what it parsed from (what a release relies on).
    if let Ok(k) = LockKey::parse(q) {
        let again = LockKey::parse(&k.to_string()).expect("a printed key parses");
        assert_eq!(again, k);
    }
    let Ok(req) = http::Request::delete(format!("/locks?{q}")).body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    if let Ok(Operation::ReleaseKey { key }) =
        classify_request(&parts, b"", &ClassifyConfig::default())
    {
        assert!(key.to_string().matches('/').count() >= 4, "{key}");
    }
}

/// A pull's `atlantis.yaml` (untrusted: any pull request writes it), bounded then parsed.
pub fn atlantis_yaml(data: &[u8]) {
    let _ = parse_atlantis_yaml(data);
}

/// `when_modified` patterns joined to a project dir and matched, like Atlantis. Input lines: the
/// dir, then patterns up to an empty line, then file paths to match.
pub fn when_modified(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let dir = lines.next().unwrap_or(".");
    let patterns: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .take(64)
        .map(String::from)
        .collect();
    let Ok(list) = PatternList::for_project(dir, &patterns) else {
        return;
    };
    for file in lines.take(64) {
        let _ = list.matches_or_parent_matches(file);
    }
}

/// A queued request read back from Redis (another replica, or an old version, wrote it).
pub fn stored_request(data: &[u8]) {
    let Ok(stored) = StoredRequest::decode(data) else {
        return;
    };
    let _ = stored.body();
    let _ = stored.to_request();
}
