//! A fake Atlantis that behaves like ATLANTIS.md: its routes, status codes and texts, a lock table
//! keyed like `GenerateLockKey`, asynchronous webhook processing, and a record of every request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query exactly as they arrived.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// For `/events` with a GitHub secret configured: did `X-Hub-Signature-256` verify?
    pub signature_ok: Option<bool>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A lock in the fake's table.
#[derive(Clone, Debug)]
pub struct FakeLock {
    pub repo: String,
    pub path: String,
    pub workspace: String,
    pub project: String,
    pub pull: i64,
    pub user: String,
    /// The pull's web URL, Atlantis's `PullURL` (empty for `/api/*` locks, as Atlantis has it).
    pub url: String,
}

impl FakeLock {
    /// `PullURL` of a GitHub pull.
    pub fn github_url(repo: &str, pull: i64) -> String {
        format!("https://github.com/{repo}/pull/{pull}")
    }

    /// `PullURL` of a GitLab merge request (`object_attributes.url`).
    pub fn gitlab_url(repo: &str, pull: i64) -> String {
        format!("https://gitlab.com/{repo}/-/merge_requests/{pull}")
    }
}

/// A comment the fake "posted" on a pull.
#[derive(Clone, Debug)]
pub struct Comment {
    pub repo: String,
    pub pull: i64,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    received: Vec<Recorded>,
    locks: BTreeMap<String, FakeLock>,
    global_apply_lock: bool,
    comments: Vec<Comment>,
    delay: Duration,
    /// Simulate an Atlantis older than v0.34 (no `GET /api/locks`).
    no_api_locks: bool,
    /// How long after answering a webhook Atlantis acts on it: `min + [0, jitter)`.
    processing: (Duration, Duration),
    /// Seeded generator for the jitter.
    rng: u64,
    /// How long after a command's checks (the pull is open, not a fork) its plan takes the
    /// lock, `[0, max)`: Atlantis checks first, then clones and locks.
    lock_gap: Duration,
    /// `GET /api/locks` waits this long (a busy Atlantis lists its locks slowly).
    api_locks_delay: Duration,
    /// Requests the proxy marked as admitted that met another pull's lock.
    conflicts: Vec<Conflict>,
    /// Pulls closed (commands on them are refused, as Atlantis does).
    closed: std::collections::HashSet<(String, i64)>,
    /// Commands that arrived for a closed pull.
    closed_pull_runs: usize,
    /// Admitted delivery ids already run once (to count duplicates).
    admitted_runs: std::collections::HashMap<String, usize>,
    /// Pulls whose head repository has another owner (what Atlantis reads from the pull API).
    forks: std::collections::HashSet<(String, i64)>,
    /// Labels of pulls, as the VCS API would list them.
    labels: std::collections::HashMap<(String, i64), Vec<String>>,
    /// Pulls whose clean-up fails on close (Atlantis answers 403 and keeps the locks).
    failing_closes: std::collections::HashSet<(String, i64)>,
    /// The repo's atlantis.yaml projects: (dir, workspace) → (name, mode).
    projects: std::collections::HashMap<(String, String, String), (String, String)>,
    /// How the next `POST /events` is refused instead of being processed.
    refuse_next_event: Option<Refusal>,
}

/// How Atlantis refuses one webhook: an error status, or no answer at all.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// Answer this status (a text body, as Atlantis's errors have) and act on nothing.
    Status(u16),
    /// Close the connection without answering.
    Drop,
}

/// An admitted request (grant or replay) that Atlantis refused as locked: the bug §10 forbids.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub key: String,
    pub pull: i64,
    pub holder: i64,
    pub token: String,
}

/// What the proxy said about a request it forwarded.
#[derive(Clone, Debug, Default)]
struct Meta {
    admitted: Option<String>,
    handoff: bool,
    delivery: String,
    /// A GitLab webhook (else GitHub's): the pull's URL is a merge request's.
    gitlab: bool,
    /// The pull's URL when the payload states it (Azure DevOps: `resource.pullRequest.url`).
    pull_url: Option<String>,
}

impl Meta {
    fn of(headers: &HeaderMap) -> Self {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Meta {
            admitted: h("x-lock-proxy-admitted"),
            handoff: h("x-lock-proxy-handoff").is_some(),
            delivery: h("x-github-delivery")
                .or_else(|| h("request-id"))
                .unwrap_or_default(),
            gitlab: headers.contains_key("x-gitlab-event"),
            pull_url: None,
        }
    }
}

/// Handle to a running fake Atlantis.
#[derive(Clone)]
pub struct FakeAtlantis {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    github_secret: Option<String>,
    gitlab_secret: Option<String>,
    api_secret: Option<String>,
    opts: FakeOptions,
}

/// How to start the fake.
#[derive(Default, Clone)]
pub struct FakeOptions {
    pub github_secret: Option<String>,
    /// Atlantis's `--gitlab-webhook-secret`: GitLab webhooks must carry it as `X-Gitlab-Token`.
    pub gitlab_secret: Option<String>,
    /// `--gitea-webhook-secret`: Gitea webhooks must carry its HMAC as `X-Gitea-Signature`.
    /// Gitea is served only when this is set (Atlantis: when `--gitea-token` is).
    pub gitea_secret: Option<String>,
    pub api_secret: Option<String>,
    /// `--allow-fork-prs`.
    pub allow_fork_prs: bool,
    /// `--allow-commands` (None: Atlantis's default, without `import` and `state`).
    pub allow_commands: Option<Vec<String>>,
    /// `--disable-unlock-label`.
    pub disable_unlock_label: Option<String>,
    /// `--azuredevops-webhook-user` and `--azuredevops-webhook-password`: Azure DevOps webhooks
    /// must carry them as HTTP Basic auth.
    pub azuredevops_basic_auth: Option<(String, String)>,
}

impl FakeAtlantis {
    pub async fn start() -> FakeAtlantis {
        Self::start_with(FakeOptions::default()).await
    }

    pub async fn start_with(opts: FakeOptions) -> FakeAtlantis {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeAtlantis {
            addr: listener.local_addr().unwrap(),
            inner: Arc::default(),
            github_secret: opts.github_secret.clone(),
            gitlab_secret: opts.gitlab_secret.clone(),
            api_secret: opts.api_secret.clone(),
            opts,
        };
        let app = Router::new()
            .route("/events", post(events))
            .route("/api/locks", get(api_locks))
            .route("/api/plan", post(api_run))
            .route("/api/apply", post(api_run))
            .route("/api/drift/detect", post(api_run))
            .route("/api/drift/remediate", post(api_run))
            .route("/locks", delete(delete_lock))
            .route("/lock", get(lock_page))
            .route("/apply/lock", post(apply_lock))
            .route("/apply/unlock", delete(apply_unlock))
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/jobs/{id}/ws", get(job_ws))
            .fallback(any(|| async {
                (StatusCode::NOT_FOUND, "404 page not found\n")
            }))
            .layer(axum::middleware::from_fn_with_state(fake.clone(), record))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Requests to one path (query ignored).
    pub fn received_at(&self, path: &str) -> Vec<Recorded> {
        self.received()
            .into_iter()
            .filter(|r| r.uri.split('?').next() == Some(path))
            .collect()
    }

    pub fn locks(&self) -> BTreeMap<String, FakeLock> {
        self.inner.lock().unwrap().locks.clone()
    }

    pub fn comments(&self) -> Vec<Comment> {
        self.inner.lock().unwrap().comments.clone()
    }

    /// Every request waits this long before it is answered (for upstream-timeout tests).
    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = d;
    }

    pub fn set_no_api_locks(&self, on: bool) {
        self.inner.lock().unwrap().no_api_locks = on;
    }

    /// Webhooks are acted on `min + [0, jitter)` after Atlantis answered them (default 10 ms).
    pub fn set_processing(&self, min: Duration, jitter: Duration, seed: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.processing = (min, jitter);
        inner.rng = seed | 1;
    }

    /// A plan takes its lock up to `max` after the command's checks (a close in between does
    /// not stop it, as in Atlantis).
    pub fn set_lock_gap(&self, max: Duration) {
        self.inner.lock().unwrap().lock_gap = max;
    }

    fn lock_gap(&self) -> Duration {
        let mut inner = self.inner.lock().unwrap();
        let max = inner.lock_gap.as_micros() as u64;
        if max == 0 || inner.rng == 0 {
            return Duration::ZERO;
        }
        let mut x = inner.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        inner.rng = x;
        Duration::from_micros(x % max)
    }

    /// `GET /api/locks` answers after `d`.
    pub fn set_api_locks_delay(&self, d: Duration) {
        self.inner.lock().unwrap().api_locks_delay = d;
    }

    /// Admitted requests that met another pull's lock (must stay empty).
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.inner.lock().unwrap().conflicts.clone()
    }

    /// Commands that arrived for pulls already closed.
    pub fn closed_pull_runs(&self) -> usize {
        self.inner.lock().unwrap().closed_pull_runs
    }

    /// Admitted deliveries that ran more than once, counted once per extra run.
    pub fn duplicate_runs(&self) -> usize {
        self.inner
            .lock()
            .unwrap()
            .admitted_runs
            .values()
            .map(|n| n.saturating_sub(1))
            .sum()
    }

    fn processing_delay(&self) -> Duration {
        let mut inner = self.inner.lock().unwrap();
        let (min, jitter) = inner.processing;
        if inner.rng == 0 {
            return Duration::from_millis(10);
        }
        // xorshift64: deterministic for a seed.
        let mut x = inner.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        inner.rng = x;
        let j = jitter.as_micros() as u64;
        min + Duration::from_micros(if j == 0 { 0 } else { x % j })
    }

    /// Creates a lock directly, as if taken before the proxy existed.
    pub fn insert_lock(&self, lock: FakeLock) {
        let key = key_of(&lock.repo, &lock.path, &lock.workspace, &lock.project);
        self.inner.lock().unwrap().locks.insert(key, lock);
    }

    /// Drops a lock without any request (a failed plan releasing its own lock).
    pub fn drop_lock(&self, key: &str) {
        self.inner.lock().unwrap().locks.remove(key);
    }

    /// Marks a pull as coming from a fork (Atlantis learns it from the pull API).
    pub fn set_fork(&self, repo: &str, pull: i64) {
        self.inner.lock().unwrap().forks.insert((repo.into(), pull));
    }

    /// The pull's labels as the VCS API lists them.
    pub fn set_labels(&self, repo: &str, pull: i64, labels: &[&str]) {
        self.inner.lock().unwrap().labels.insert(
            (repo.into(), pull),
            labels.iter().map(|l| l.to_string()).collect(),
        );
    }

    /// The pull's clean-up fails when it is closed: 403, locks kept.
    pub fn fail_close(&self, repo: &str, pull: i64) {
        self.inner
            .lock()
            .unwrap()
            .failing_closes
            .insert((repo.into(), pull));
    }

    /// Declares a project of the repo's atlantis.yaml: `-d dir -w ws` takes the key with `name`;
    /// `mode` is `on_plan`, `on_apply` or `disabled`.
    pub fn set_project(&self, repo: &str, dir: &str, ws: &str, name: &str, mode: &str) {
        self.inner.lock().unwrap().projects.insert(
            (repo.into(), dir.into(), ws.into()),
            (name.into(), mode.into()),
        );
    }

    /// The next `POST /events` is refused as `how` and not acted on (later ones are processed).
    pub fn refuse_next_event(&self, how: Refusal) {
        self.inner.lock().unwrap().refuse_next_event = Some(how);
    }

    fn is_fork(&self, repo: &str, pull: i64) -> bool {
        self.inner
            .lock()
            .unwrap()
            .forks
            .contains(&(repo.to_owned(), pull))
    }
}

/// `GenerateLockKey`: `{repo}/{path}/{workspace}/{project}`.
pub fn key_of(repo: &str, path: &str, workspace: &str, project: &str) -> String {
    format!("{repo}/{path}/{workspace}/{project}")
}

async fn record(
    State(fake): State<FakeAtlantis>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let signature_ok = match (&fake.github_secret, parts.uri.path()) {
        (Some(secret), "/events") if parts.headers.contains_key("x-github-event") => {
            Some(github_signature_ok(secret, &parts.headers, &bytes))
        }
        _ => None,
    };
    let (delay, refusal) = {
        let mut inner = fake.inner.lock().unwrap();
        let refusal = if parts.uri.path() == "/events" {
            inner.refuse_next_event.take()
        } else {
            None
        };
        inner.received.push(Recorded {
            method: parts.method.clone(),
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            headers: parts.headers.clone(),
            body: bytes.clone(),
            signature_ok,
            at: std::time::Instant::now(),
        });
        (inner.delay, refusal)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match refusal {
        Some(Refusal::Status(code)) => {
            let code = StatusCode::from_u16(code).unwrap();
            return text(code, code.canonical_reason().unwrap_or("refused"));
        }
        // Unwinding ends this connection's task: the socket closes with no answer. (No panic
        // hook runs, so nothing is printed.)
        Some(Refusal::Drop) => std::panic::resume_unwind(Box::new("connection dropped")),
        None => {}
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

pub fn github_signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok())
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn text(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        code,
        [("content-type", "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// A comment command, once the VCS's payload is parsed (`handleCommentEvent`): Atlantis answers
/// at once and runs it asynchronously (the pull, fork included, as the VCS API gives it).
fn comment_command(
    fake: FakeAtlantis,
    headers: &HeaderMap,
    repo: String,
    pull: i64,
    user: String,
    comment: String,
) -> Response {
    let Some(cmd) = parse_comment(&comment) else {
        return text(
            StatusCode::OK,
            format!("Ignoring non-command comment: \"{}\"", comment.trim()),
        );
    };
    let allowed = fake.opts.allow_commands.clone().unwrap_or_else(|| {
        [
            "version",
            "plan",
            "apply",
            "unlock",
            "approve_policies",
            "cancel",
        ]
        .map(String::from)
        .to_vec()
    });
    if !allowed.iter().any(|a| a == cmd.name() || a == "all") {
        fake.comment(
            &repo,
            pull,
            format!("```\nError: unknown command {:?}.\n```", cmd.name()),
        );
        return text(StatusCode::OK, "Commenting back on pull request");
    }
    // Atlantis answers at once and runs the command asynchronously.
    let meta = Meta::of(headers);
    {
        let mut inner = fake.inner.lock().unwrap();
        if inner.closed.contains(&(repo.clone(), pull)) && !matches!(cmd, Cmd::Unlock) {
            inner.closed_pull_runs += 1;
        }
    }
    let delay = fake.processing_delay();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        fake.run_command(&repo, pull, &user, cmd, &meta).await;
    });
    text(StatusCode::OK, "Processing...")
}

/// `handleGiteaPost`: the signature (`X-Gitea-Signature`, hex HMAC-SHA256), then
/// `pull_request_comment` through `HandleGiteaPullRequestCommentEvent`.
fn gitea_events(fake: FakeAtlantis, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = fake.opts.gitea_secret.clone() else {
        return text(
            StatusCode::BAD_REQUEST,
            "Ignoring request since not configured to support Gitea",
        );
    };
    let sig = headers
        .get("x-gitea-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hex::decode(v).ok())
        .unwrap_or_default();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    if mac.verify_slice(&sig).is_err() {
        return text(StatusCode::BAD_REQUEST, "request did not pass validation");
    }
    let event = headers
        .get("x-gitea-event-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if event != "pull_request_comment" {
        return text(
            StatusCode::OK,
            format!("Ignoring unsupported Gitea event type: {event}"),
        );
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "Failed to parse request body");
    };
    let field = |v: &Value| v.as_str().unwrap_or("").to_string();
    comment_command(
        fake,
        &headers,
        field(&payload["repository"]["full_name"]),
        payload["issue"]["number"].as_i64().unwrap_or(0),
        field(&payload["comment"]["user"]["login"]),
        field(&payload["comment"]["body"]),
    )
}

async fn events(State(fake): State<FakeAtlantis>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.contains_key("x-gitea-event") {
        return gitea_events(fake, headers, body);
    }
    if headers.contains_key("x-gitlab-event") {
        return gitlab_events(fake, headers, body);
    }
    // `Post`'s order: GitHub, GitLab and Bitbucket headers first, then Azure DevOps's.
    if !headers.contains_key("x-github-event")
        && !headers.contains_key("x-event-key")
        && (headers.contains_key("request-id") || headers.contains_key("x-vss-activityid"))
    {
        return azure_events(fake, headers, body);
    }
    if let Some(secret) = &fake.github_secret
        && headers.contains_key("x-github-event")
        && !github_signature_ok(secret, &headers, &body)
    {
        return text(StatusCode::BAD_REQUEST, "payload signature check failed");
    }
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed parsing event: invalid JSON",
        );
    };
    let repo = payload["repository"]["full_name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    match event.as_str() {
        "issue_comment" => {
            if payload["action"] != "created" || payload["issue"]["pull_request"].is_null() {
                return text(StatusCode::OK, "Ignoring non-command comment event");
            }
            let comment = payload["comment"]["body"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let pull = payload["issue"]["number"].as_i64().unwrap_or(0);
            let user = payload["comment"]["user"]["login"]
                .as_str()
                .unwrap_or("")
                .to_string();
            comment_command(fake, &headers, repo, pull, user, comment)
        }
        "pull_request" => {
            let pull = payload["number"].as_i64().unwrap_or(0);
            let user = payload["sender"]["login"]
                .as_str()
                .unwrap_or("")
                .to_string();
            match payload["action"].as_str().unwrap_or("") {
                "closed" => {
                    if fake
                        .inner
                        .lock()
                        .unwrap()
                        .failing_closes
                        .contains(&(repo.clone(), pull))
                    {
                        return text(
                            StatusCode::FORBIDDEN,
                            "cleaning up locks: deleting locks: bolt: database not open",
                        );
                    }
                    // Atlantis cleans up a closed pull before it answers.
                    fake.inner
                        .lock()
                        .unwrap()
                        .closed
                        .insert((repo.clone(), pull));
                    fake.release_pull(&repo, pull);
                    text(StatusCode::OK, "Pull request cleaned successfully")
                }
                "opened" | "ready_for_review" | "synchronize" => {
                    let head = payload["pull_request"]["head"]["repo"]["full_name"]
                        .as_str()
                        .unwrap_or("");
                    let owner = |n: &str| n.rsplit_once('/').map(|(o, _)| o.to_owned());
                    if owner(head) != owner(&repo) {
                        fake.set_fork(&repo, pull);
                    }
                    let meta = Meta::of(&headers);
                    let delay = fake.processing_delay();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        fake.run_command(
                            &repo,
                            pull,
                            &user,
                            Cmd::Plan {
                                dir: ".".into(),
                                workspace: "default".into(),
                                project: String::new(),
                            },
                            &meta,
                        )
                        .await;
                    });
                    text(StatusCode::OK, "Processing...")
                }
                other => text(
                    StatusCode::OK,
                    format!("Ignoring pull request event since action was {other}"),
                ),
            }
        }
        _ => text(
            StatusCode::OK,
            format!("Ignoring unsupported event type {event}"),
        ),
    }
}

/// GitLab's note and merge request hooks, as Atlantis handles them (the token is checked first).
fn gitlab_events(fake: FakeAtlantis, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(secret) = &fake.gitlab_secret {
        let token = headers.get("x-gitlab-token").map(|v| v.as_bytes());
        if token != Some(secret.as_bytes()) {
            return text(
                StatusCode::BAD_REQUEST,
                "header X-Gitlab-Token's value didn't match configured secret",
            );
        }
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed parsing event: invalid JSON",
        );
    };
    let repo = payload["project"]["path_with_namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let user = payload["user"]["username"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let event = headers
        .get("x-gitlab-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match event {
        "Note Hook" => {
            let pull = payload["merge_request"]["iid"].as_i64().unwrap_or(0);
            let note = payload["object_attributes"]["note"].as_str().unwrap_or("");
            let Some(cmd) = parse_comment(note) else {
                return text(StatusCode::OK, "Ignoring non-command comment");
            };
            let meta = Meta::of(&headers);
            let delay = fake.processing_delay();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                fake.run_command(&repo, pull, &user, cmd, &meta).await;
            });
            text(StatusCode::OK, "Processing...")
        }
        "Merge Request Hook" => {
            let pull = payload["object_attributes"]["iid"].as_i64().unwrap_or(0);
            match payload["object_attributes"]["action"].as_str() {
                Some("close" | "merge") => {
                    fake.release_pull(&repo, pull);
                    text(StatusCode::OK, "Pull request cleaned successfully")
                }
                // `ParseGitlabMergeRequestEvent`: a draft is read from `work_in_progress` only
                // (GitLab's newer `draft` is not looked at); drafts are not autoplanned.
                Some("open") => {
                    if payload["object_attributes"]["work_in_progress"] == true {
                        return text(StatusCode::OK, "Ignoring draft merge request");
                    }
                    let meta = Meta::of(&headers);
                    let delay = fake.processing_delay();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let plan = Cmd::Plan {
                            dir: ".".into(),
                            workspace: "default".into(),
                            project: String::new(),
                        };
                        fake.run_command(&repo, pull, &user, plan, &meta).await;
                    });
                    text(StatusCode::OK, "Processing...")
                }
                _ => text(StatusCode::OK, "Ignoring merge request event"),
            }
        }
        other => text(
            StatusCode::OK,
            format!("Ignoring unsupported event type {other}"),
        ),
    }
}

/// Texts of `git.pullrequest.updated` events Atlantis ignores (votes and reviewer changes).
const AZURE_IGNORED_UPDATES: [&str; 6] = [
    "changed the reviewer list",
    "approved pull request",
    "has approved and left suggestions",
    "is waiting for the author",
    "rejected pull request",
    "voted on pull request",
];

/// `ParseAzureDevopsRepo`: `owner/project/repo`, the owner from the web URL (`dev.azure.com/{org}`
/// or `{org}.visualstudio.com`).
fn azure_repo(repo: &Value) -> String {
    let web = repo["webUrl"].as_str().unwrap_or("");
    let rest = web.split_once("://").map_or(web, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let owner = if host.contains("visualstudio.com") {
        host.split('.').next().unwrap_or("")
    } else {
        path.split('/').next().unwrap_or("")
    };
    format!(
        "{owner}/{}/{}",
        repo["project"]["name"].as_str().unwrap_or(""),
        repo["name"].as_str().unwrap_or("")
    )
}

/// Azure DevOps's webhooks, as `handleAzureDevopsPost` handles them: Basic auth first (401),
/// then the event type. A comment runs its command; `git.pullrequest.created` and a
/// `git.pullrequest.updated` of an active pull autoplan; an update whose status is `completed`
/// is the close (`CleanUpPull`); `git.pullrequest.merged` is an `OtherPullEvent`: nothing happens.
fn azure_events(fake: FakeAtlantis, headers: HeaderMap, body: Bytes) -> Response {
    use base64::Engine as _;
    if let Some((user, pass)) = &fake.opts.azuredevops_basic_auth {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if headers.get("authorization").map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
            return text(
                StatusCode::UNAUTHORIZED,
                "ValidatePayload authentication failed",
            );
        }
    }
    let req_id = format!(
        "Request-Id={}",
        headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    );
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Failed parsing webhook: invalid JSON {req_id}"),
        );
    };
    let event = payload["eventType"].as_str().unwrap_or("");
    let is_comment = event == "ms.vss-code.git-pullrequest-comment-event";
    let pr = if is_comment {
        &payload["resource"]["pullRequest"]
    } else {
        &payload["resource"]
    };
    let repo = azure_repo(&pr["repository"]);
    let pull = pr["pullRequestId"].as_i64().unwrap_or(0);
    // Atlantis records the pull's creator as the user, for comments too.
    let user = pr["createdBy"]["uniqueName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut meta = Meta::of(&headers);
    meta.pull_url = pr["url"].as_str().map(str::to_owned);
    let plan = || Cmd::Plan {
        dir: ".".into(),
        workspace: "default".into(),
        project: String::new(),
    };
    let run = |cmd: Cmd| {
        let delay = fake.processing_delay();
        let fake = fake.clone();
        let (repo, user) = (repo.clone(), user.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            fake.run_command(&repo, pull, &user, cmd, &meta).await;
        });
        text(StatusCode::OK, "Processing...")
    };
    match event {
        "ms.vss-code.git-pullrequest-comment-event" => {
            let content = payload["resource"]["comment"]["content"]
                .as_str()
                .unwrap_or("");
            match parse_comment(content) {
                Some(cmd) => run(cmd),
                None => text(
                    StatusCode::OK,
                    format!("Ignoring non-command comment: {:?}", content.trim()),
                ),
            }
        }
        "git.pullrequest.created" | "git.pullrequest.updated" | "git.pullrequest.merged" => {
            let msg = payload["message"]["text"].as_str().unwrap_or("");
            if AZURE_IGNORED_UPDATES.iter().any(|t| msg.contains(t)) {
                return text(
                    StatusCode::OK,
                    format!(
                        "pull request updated event is not a supported type [{}]: {req_id}",
                        AZURE_IGNORED_UPDATES.join(", ")
                    ),
                );
            }
            let completed = pr["status"] == "completed";
            match event {
                "git.pullrequest.created" => run(plan()),
                "git.pullrequest.updated" if completed => {
                    if fake
                        .inner
                        .lock()
                        .unwrap()
                        .failing_closes
                        .contains(&(repo.clone(), pull))
                    {
                        return text(
                            StatusCode::FORBIDDEN,
                            "Error cleaning pull request: cleaning up locks: bolt: database not open",
                        );
                    }
                    fake.inner
                        .lock()
                        .unwrap()
                        .closed
                        .insert((repo.clone(), pull));
                    fake.release_pull(&repo, pull);
                    text(StatusCode::OK, "Pull request cleaned successfully")
                }
                "git.pullrequest.updated" => run(plan()),
                // `git.pullrequest.merged`: an `OtherPullEvent`, no clean-up.
                _ => text(StatusCode::OK, "Ignoring non-actionable pull request event"),
            }
        }
        other => text(
            StatusCode::OK,
            format!("Ignoring unsupported event: {other} {req_id}"),
        ),
    }
}

/// The fake's small comment grammar: `atlantis plan|import|apply [-d dir] [-w ws] [-p name]`,
/// `atlantis unlock`.
#[derive(Debug, Clone)]
enum Cmd {
    Plan {
        dir: String,
        workspace: String,
        project: String,
    },
    /// `import ADDR ID`: locks under every mode but `disabled`.
    Import {
        dir: String,
        workspace: String,
    },
    Apply,
    Unlock,
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Plan { .. } => "plan",
            Cmd::Import { .. } => "import",
            Cmd::Apply => "apply",
            Cmd::Unlock => "unlock",
        }
    }
}

fn parse_comment(comment: &str) -> Option<Cmd> {
    let words: Vec<&str> = comment.split_whitespace().collect();
    if words.first().map(|w| w.to_ascii_lowercase()) != Some("atlantis".into()) {
        return None;
    }
    let (mut dir, mut workspace, mut project) =
        (".".to_string(), "default".to_string(), String::new());
    let mut i = 2;
    while i + 1 < words.len() {
        match words[i] {
            "-d" | "--dir" => dir = words[i + 1].trim_matches('/').to_string(),
            "-w" | "--workspace" => workspace = words[i + 1].to_string(),
            "-p" | "--project" => project = words[i + 1].to_string(),
            _ => {}
        }
        i += 2;
    }
    if dir.is_empty() {
        dir = ".".into();
    }
    match words.get(1).map(|w| w.to_ascii_lowercase()).as_deref() {
        Some("plan") => Some(Cmd::Plan {
            dir,
            workspace,
            project,
        }),
        Some("import") => Some(Cmd::Import { dir, workspace }),
        Some("apply") => Some(Cmd::Apply),
        Some("unlock") => Some(Cmd::Unlock),
        _ => None,
    }
}

impl FakeAtlantis {
    fn comment(&self, repo: &str, pull: i64, body: String) {
        self.inner.lock().unwrap().comments.push(Comment {
            repo: repo.into(),
            pull,
            body,
        });
    }

    /// Takes a lock like Atlantis's `TryLock`: free or held by the same pull → taken; else the holder.
    fn try_lock(&self, lock: FakeLock) -> Result<(), i64> {
        let key = key_of(&lock.repo, &lock.path, &lock.workspace, &lock.project);
        let mut inner = self.inner.lock().unwrap();
        match inner.locks.get(&key) {
            Some(held) if held.pull != lock.pull => Err(held.pull),
            _ => {
                inner.locks.insert(key, lock);
                Ok(())
            }
        }
    }

    fn release_pull(&self, repo: &str, pull: i64) {
        self.inner
            .lock()
            .unwrap()
            .locks
            .retain(|_, l| !(l.repo == repo && l.pull == pull));
    }

    async fn run_command(&self, repo: &str, pull: i64, user: &str, cmd: Cmd, meta: &Meta) {
        let closed = {
            let mut inner = self.inner.lock().unwrap();
            let closed = inner.closed.contains(&(repo.to_owned(), pull));
            if meta.admitted.is_some() && !meta.handoff && !meta.delivery.is_empty() {
                *inner
                    .admitted_runs
                    .entry(meta.delivery.clone())
                    .or_default() += 1;
            }
            closed
        };
        // `validateCtxAndComment`: forks first (every command, unlock included).
        if !self.opts.allow_fork_prs && self.is_fork(repo, pull) {
            self.comment(
                repo,
                pull,
                "Atlantis commands can't be run on fork pull requests.".into(),
            );
            return;
        }
        if closed && !matches!(cmd, Cmd::Unlock) {
            self.comment(
                repo,
                pull,
                "Atlantis commands can't be run on closed pull requests".into(),
            );
            return;
        }
        let cmd = match cmd {
            Cmd::Import { dir, workspace } => Cmd::Plan {
                dir,
                workspace,
                project: "\u{0}import".into(),
            },
            other => other,
        };
        match cmd {
            Cmd::Plan {
                dir,
                workspace,
                project,
            } => {
                let import = project == "\u{0}import";
                let mut project = if import { String::new() } else { project };
                // `FindProjectsByDirWorkspace`: the project configured there, with its name.
                let configured = self
                    .inner
                    .lock()
                    .unwrap()
                    .projects
                    .get(&(repo.to_owned(), dir.clone(), workspace.clone()))
                    .cloned();
                if let Some((name, mode)) = configured {
                    if project.is_empty() {
                        project = name;
                    }
                    let locks = match mode.as_str() {
                        "disabled" => false,
                        "on_apply" => import,
                        _ => true,
                    };
                    if !locks {
                        self.comment(
                            repo,
                            pull,
                            format!("Ran Plan for dir: `{dir}` workspace: `{workspace}` (no lock)"),
                        );
                        return;
                    }
                }
                let lock = FakeLock {
                    repo: repo.into(),
                    path: dir.clone(),
                    workspace: workspace.clone(),
                    project,
                    pull,
                    user: user.into(),
                    url: if let Some(url) = &meta.pull_url {
                        url.clone()
                    } else if meta.gitlab {
                        FakeLock::gitlab_url(repo, pull)
                    } else {
                        FakeLock::github_url(repo, pull)
                    },
                };
                let key = key_of(&lock.repo, &lock.path, &lock.workspace, &lock.project);
                let gap = self.lock_gap();
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                match self.try_lock(lock) {
                    Ok(()) => self.comment(
                        repo,
                        pull,
                        format!("Ran Plan for dir: `{dir}` workspace: `{workspace}`"),
                    ),
                    Err(holder) => {
                        // A hand-off that still took free locks carries a token too, but it is
                        // expected to meet the locks other pulls hold.
                        if let (Some(token), false) = (&meta.admitted, meta.handoff) {
                            self.inner.lock().unwrap().conflicts.push(Conflict {
                                key,
                                pull,
                                holder,
                                token: token.clone(),
                            });
                        }
                        self.comment(repo, pull, locked_text(holder))
                    }
                }
            }
            Cmd::Apply => self.comment(repo, pull, "Ran Apply".into()),
            Cmd::Import { .. } => unreachable!("mapped to a plan above"),
            Cmd::Unlock => {
                if let Some(label) = &self.opts.disable_unlock_label {
                    let labelled = self
                        .inner
                        .lock()
                        .unwrap()
                        .labels
                        .get(&(repo.to_owned(), pull))
                        .is_some_and(|l| l.contains(label));
                    if labelled {
                        self.comment(
                            repo,
                            pull,
                            format!("Not allowed to unlock PR with {label} label"),
                        );
                        return;
                    }
                }
                self.release_pull(repo, pull);
                self.comment(
                    repo,
                    pull,
                    "All Atlantis locks for this PR have been unlocked and plans discarded".into(),
                );
            }
        }
    }
}

/// Atlantis's comment for a plan that hit another pull's lock (GitHub's `#N`).
pub fn locked_text(holder: i64) -> String {
    format!(
        "**Plan Failed**: This project is currently locked by an unapplied plan from pull #{holder}. \
         To continue, delete the lock from #{holder} or apply that plan and merge the pull request.\n\n\
         Once the lock is released, comment `atlantis plan` here to re-plan."
    )
}

async fn api_locks(State(fake): State<FakeAtlantis>) -> Response {
    // A slow listing is a stale one: the table is read first, the answer comes later.
    let (wait, locks) = {
        let inner = fake.inner.lock().unwrap();
        if inner.no_api_locks {
            return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
        }
        (inner.api_locks_delay, lock_list(&inner))
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    Json(json!({ "Locks": locks })).into_response()
}

fn lock_list(inner: &Inner) -> Value {
    let locks: Vec<Value> = inner
        .locks
        .iter()
        .map(|(name, l)| {
            json!({
                "Name": name, "ProjectName": l.project, "ProjectRepo": l.repo,
                "ProjectRepoPath": l.path, "PullID": l.pull.to_string(),
                "PullURL": l.url,
                "User": l.user, "Workspace": l.workspace, "Time": "2025-02-13T16:47:42.040856-08:00",
            })
        })
        .collect();
    // Atlantis emits `null`, not `[]`, when there are no locks.
    if locks.is_empty() {
        Value::Null
    } else {
        Value::Array(locks)
    }
}

fn api_error(code: StatusCode, msg: &str) -> Response {
    (code, Json(json!({ "error": msg }))).into_response()
}

/// `/api/plan` and `/api/apply`: lock every path, "run", then delete all locks of that pull.
async fn api_run(State(fake): State<FakeAtlantis>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &fake.api_secret else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "ignoring request since API is disabled",
        );
    };
    if headers
        .get("x-atlantis-token")
        .and_then(|v| v.to_str().ok())
        != Some(secret.as_str())
    {
        return api_error(StatusCode::UNAUTHORIZED, "x-atlantis-token is invalid");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return api_error(StatusCode::BAD_REQUEST, "failed to parse request");
    };
    // Go's encoding/json matches keys case-insensitively.
    let get = |k: &str| {
        v.as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or(Value::Null)
    };
    let repo = get("Repository").as_str().unwrap_or("").to_string();
    let pull = get("PR").as_i64().filter(|p| *p > 0).unwrap_or(-1);
    let mut results = Vec::new();
    let mut failed = false;
    for p in get("Paths").as_array().cloned().unwrap_or_default() {
        let dir = p
            .get("Directory")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_string();
        let ws = p
            .get("Workspace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let configured = fake
            .inner
            .lock()
            .unwrap()
            .projects
            .get(&(repo.clone(), dir.clone(), ws.clone()))
            .cloned();
        let lock = FakeLock {
            repo: repo.clone(),
            path: dir.clone(),
            workspace: ws.clone(),
            project: configured.map(|(name, _)| name).unwrap_or_default(),
            pull,
            user: "api".into(),
            url: String::new(),
        };
        let failure = match fake.try_lock(lock) {
            Ok(()) => String::new(),
            Err(holder) => {
                failed = true;
                format!(
                    "This project is currently locked by an unapplied plan from pull #{holder}. To continue, delete the lock from #{holder} or apply that plan and merge the pull request.\n\nOnce the lock is released, comment `atlantis plan` here to re-plan."
                )
            }
        };
        results.push(json!({"Command": 1, "RepoRelDir": dir, "Workspace": ws, "Error": null, "Failure": failure, "ProjectName": ""}));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    fake.release_pull(&repo, pull);
    let code = if failed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(
            json!({"Error": null, "Failure": "", "ProjectResults": results, "PlansDeleted": false}),
        ),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct IdQuery {
    id: Option<String>,
}

/// `DELETE /locks?id=`: the query value is decoded once by the router and once more by the handler.
async fn delete_lock(State(fake): State<FakeAtlantis>, Query(q): Query<IdQuery>) -> Response {
    let Some(id) = q.id.filter(|i| !i.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "No lock id in request");
    };
    let unencoded = percent_encoding::percent_decode_str(&id)
        .decode_utf8_lossy()
        .to_string();
    let removed = {
        let mut inner = fake.inner.lock().unwrap();
        inner.locks.remove(&unencoded)
    };
    match removed {
        None => text(
            StatusCode::NOT_FOUND,
            format!("No lock found at id '{unencoded}'"),
        ),
        Some(l) => {
            fake.comment(&l.repo, l.pull, format!("**Warning**: The plan for dir: `{}` workspace: `{}` was **discarded** via the Atlantis UI.\n\nTo `apply` this plan you must run `plan` again.", l.path, l.workspace));
            text(StatusCode::OK, format!("Deleted lock id '{id}'"))
        }
    }
}

async fn lock_page(State(fake): State<FakeAtlantis>, Query(q): Query<IdQuery>) -> Response {
    let id = q.id.unwrap_or_default();
    let unencoded = percent_encoding::percent_decode_str(&id)
        .decode_utf8_lossy()
        .to_string();
    match fake.locks().get(&unencoded) {
        Some(l) => (
            StatusCode::OK,
            format!(
                "<html><body>Lock {unencoded} held by pull {}</body></html>",
                l.pull
            ),
        )
            .into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            format!("No lock found at id '{unencoded}'"),
        ),
    }
}

async fn apply_lock(State(fake): State<FakeAtlantis>) -> Response {
    let mut inner = fake.inner.lock().unwrap();
    if inner.global_apply_lock {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "creating apply lock failed with: lock already exists",
        );
    }
    inner.global_apply_lock = true;
    text(
        StatusCode::OK,
        "Apply Lock is acquired on 2025-02-13 16:47:42",
    )
}

async fn apply_unlock(State(fake): State<FakeAtlantis>) -> Response {
    let mut inner = fake.inner.lock().unwrap();
    if !inner.global_apply_lock {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "deleting apply lock failed with: no lock exists",
        );
    }
    inner.global_apply_lock = false;
    text(StatusCode::OK, "Deleted apply lock")
}

/// `/jobs/{id}/ws`: sends a greeting naming the job, then echoes every message.
async fn job_ws(Path(id): Path<String>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| echo(socket, id))
}

async fn echo(mut socket: WebSocket, id: String) {
    let _ = socket
        .send(Message::Text(format!("job {id} log start").into()))
        .await;
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Close(_) => break,
            m => {
                if socket.send(m).await.is_err() {
                    break;
                }
            }
        }
    }
}
