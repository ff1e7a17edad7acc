//! Fake GitHub, GitLab and Gitea (pulls only) REST APIs on a loopback port, serving the providers' documented JSON
//! shapes: pulls/MRs, paginated changed files (`Link` / `X-Next-Page`), file contents, directory
//! listings and comments (create, edit, paginated list). Every request is recorded; delay and
//! failures (every request, or the next N) can be injected. With [`FakeVcs::enable_github_app`]
//! the GitHub fake authenticates like GitHub does for a GitHub App (`app.rs`).

#![allow(dead_code)]

mod app;
mod comments;

// The benches include this file too and use none of GitHub's messages.
#[allow(unused_imports)]
pub use app::{BAD_CREDENTIALS, EXPIRED, IAT_FUTURE, TOO_FAR, UNDECODABLE};

use comments::{
    add_comment, gh_comment, gh_edit_comment, gh_list_comments, gl_edit_note, gl_list_notes,
    gl_note,
};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use base64::Engine as _;
use serde_json::{Value, json};

/// One file of a fake pull: path plus GitHub's status (`added`, `modified`, `removed`, `renamed`).
#[derive(Clone, Debug)]
pub struct FakeFile {
    pub path: String,
    pub status: &'static str,
    pub previous: Option<String>,
}

impl FakeFile {
    pub fn modified(path: &str) -> Self {
        Self {
            path: path.into(),
            status: "modified",
            previous: None,
        }
    }
    pub fn removed(path: &str) -> Self {
        Self {
            path: path.into(),
            status: "removed",
            previous: None,
        }
    }
}

/// A pull / merge request.
#[derive(Clone, Debug)]
pub struct FakePull {
    pub head_sha: String,
    pub base_branch: String,
    pub files: Vec<FakeFile>,
}

/// What every request gets instead of a normal answer.
#[derive(Clone, Debug, Default)]
pub enum Failure {
    #[default]
    None,
    /// Answer this status with a JSON error body.
    Status(u16),
    /// GitHub-style secondary rate limit: 403, `Retry-After`, `X-RateLimit-Remaining: 0`.
    RateLimited { retry_after_secs: u64 },
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    delay: Duration,
    failure: Failure,
    page_size: usize,
    pulls: HashMap<(String, i64), FakePull>,
    /// repo → path → bytes (the same at every ref).
    files: HashMap<String, BTreeMap<String, Vec<u8>>>,
    comments: Vec<FakeComment>,
    next_comment_id: u64,
    /// The next this many requests answer this status instead.
    fail_next: (u32, u16),
    /// Pulls whose head repository belongs to another owner (GitHub `head.repo`).
    forks: std::collections::HashSet<(String, i64)>,
    /// A GitHub App: when set, every request must authenticate as it (JWT or installation token).
    app: Option<app::AppState>,
    /// Gitea: the access token every request must carry as `Authorization: token <token>`.
    gitea_token: Option<String>,
}

/// A comment (GitHub issue comment, GitLab note) as the fake stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    pub repo: String,
    pub pull: i64,
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query as sent (still percent-encoded).
    pub uri: String,
    pub auth: Option<String>,
    pub private_token: Option<String>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

/// Which API the fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Github,
    Gitlab,
    /// Gitea's REST v1, pulls only (`GET /api/v1/repos/{owner}/{repo}/pulls/{index}`).
    Gitea,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeVcs {
    pub addr: SocketAddr,
    pub flavor: Flavor,
    tls: bool,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeVcs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeVcs {
    pub async fn github() -> Self {
        Self::start(Flavor::Github).await
    }

    pub async fn gitlab() -> Self {
        Self::start(Flavor::Gitlab).await
    }

    /// The Gitea fake; every request must carry `token` (else 401, as Gitea's `reqToken`).
    pub async fn gitea(token: &str) -> Self {
        let f = Self::start(Flavor::Gitea).await;
        f.with(|i| i.gitea_token = Some(token.to_owned()));
        f
    }

    /// The server's root URL (Atlantis's `gitea-base-url`; the API is under `/api/v1`).
    pub fn root_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The GitHub fake behind HTTPS, with the test certificate in `support/tls/`.
    pub async fn github_tls() -> Self {
        Self::start_with(Flavor::Github, true).await
    }

    /// The CA that signed the TLS fake's certificate, as PEM.
    pub fn test_ca_pem() -> Vec<u8> {
        include_bytes!("../tls/ca.pem").to_vec()
    }

    async fn start(flavor: Flavor) -> Self {
        Self::start_with(flavor, false).await
    }

    async fn start_with(flavor: Flavor, tls: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                page_size: 100,
                next_comment_id: 1000,
                ..Inner::default()
            })),
            addr,
        };
        let routes = match flavor {
            Flavor::Github => github_routes(),
            Flavor::Gitlab => gitlab_routes(),
            Flavor::Gitea => gitea_routes(),
        };
        let app = routes
            .layer(middleware::from_fn_with_state(
                shared.clone(),
                app::authenticate,
            ))
            .layer(middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        let task = if tls {
            tokio::spawn(serve_tls(listener, app))
        } else {
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            })
        };
        Self {
            addr,
            flavor,
            tls,
            shared,
            task,
        }
    }

    /// The API base URL a client should be configured with.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.flavor {
            Flavor::Github => format!("{scheme}://{}/api/v3", self.addr),
            Flavor::Gitlab => format!("{scheme}://{}/api/v4", self.addr),
            Flavor::Gitea => format!("{scheme}://{}/api/v1", self.addr),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.shared.inner.lock().unwrap())
    }

    pub fn add_pull(&self, repo: &str, number: i64, pull: FakePull) {
        self.with(|i| i.pulls.insert((repo.to_string(), number), pull));
    }

    /// Makes `number` a pull from a fork: its head repository is `forker/<name>`.
    pub fn set_fork(&self, repo: &str, number: i64) {
        self.with(|i| i.forks.insert((repo.to_string(), number)));
    }

    pub fn add_file(&self, repo: &str, path: &str, content: &str) {
        self.with(|i| {
            i.files
                .entry(repo.to_string())
                .or_default()
                .insert(path.to_string(), content.as_bytes().to_vec())
        });
    }

    pub fn set_page_size(&self, n: usize) {
        self.with(|i| i.page_size = n);
    }

    pub fn set_delay(&self, d: Duration) {
        self.with(|i| i.delay = d);
    }

    pub fn set_failure(&self, f: Failure) {
        self.with(|i| i.failure = f);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|i| i.requests.clone())
    }

    /// Requests whose path contains `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.with(|i| i.requests.iter().filter(|r| r.uri.contains(needle)).count())
    }

    pub fn total(&self) -> usize {
        self.with(|i| i.requests.len())
    }

    /// Current comments as (repo, pull, body), oldest first.
    pub fn comments(&self) -> Vec<(String, i64, String)> {
        self.with(|i| {
            i.comments
                .iter()
                .map(|c| (c.repo.clone(), c.pull, c.body.clone()))
                .collect()
        })
    }

    /// Current comments with their ids and edit counts.
    pub fn comment_records(&self) -> Vec<FakeComment> {
        self.with(|i| i.comments.clone())
    }

    /// Adds a comment (someone else's, or one left by an earlier proxy); returns its id.
    pub fn add_comment(&self, repo: &str, pull: i64, body: &str) -> u64 {
        self.with(|i| add_comment(i, repo, pull, body))
    }

    /// Deletes a comment, as a user could.
    pub fn delete_comment(&self, id: u64) {
        self.with(|i| i.comments.retain(|c| c.id != id));
    }

    /// The next `n` requests answer `status` (then normal service resumes).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.with(|i| i.fail_next = (n, status));
    }

    /// From now on the GitHub API authenticates GitHub App `app_id` (whose key's public half is
    /// `public_pem`), installed as `installations`: JWTs on `/app/...`, installation tokens on
    /// everything else.
    pub fn enable_github_app(&self, app_id: u64, public_pem: &str, installations: &[u64]) {
        self.with(|i| i.app = Some(app::AppState::new(app_id, public_pem, installations)));
    }

    /// How long the installation tokens issued from now on live (GitHub: one hour).
    pub fn set_token_lifetime(&self, d: Duration) {
        self.with(|i| i.app.as_mut().expect("app enabled").set_lifetime(d));
    }

    /// Revokes every installation token issued so far.
    pub fn revoke_tokens(&self) {
        self.with(|i| i.app.as_mut().expect("app enabled").revoke());
    }

    /// The installation tokens issued, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|i| i.app.as_ref().map(|a| a.issued()).unwrap_or_default())
    }

    /// Every authentication refusal: (status, path, GitHub's message).
    pub fn auth_refusals(&self) -> Vec<(u16, String, String)> {
        self.with(|i| i.app.as_ref().map(|a| a.refusals()).unwrap_or_default())
    }

    /// Every JWT presented to the app's endpoints.
    pub fn jwts(&self) -> Vec<String> {
        self.with(|i| i.app.as_ref().map(|a| a.jwts()).unwrap_or_default())
    }

    /// Requests with this method whose path contains `needle`.
    pub fn count_method(&self, method: &str, needle: &str) -> usize {
        self.with(|i| {
            i.requests
                .iter()
                .filter(|r| r.method == method && r.uri.contains(needle))
                .count()
        })
    }
}

/// Serves `app` over TLS 1.2/1.3 with the test certificate, one task per connection.
async fn serve_tls(listener: tokio::net::TcpListener, app: Router) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tower::ServiceExt as _;

    let certs = vec![CertificateDer::from_pem_slice(include_bytes!("../tls/leaf.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../tls/leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A client that rejects our certificate ends the handshake: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(Body::new))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn record(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let rec = {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        Recorded {
            method: req.method().to_string(),
            uri: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            auth: header("authorization"),
            private_token: header("private-token"),
        }
    };
    let (delay, failure) = {
        let mut i = s.inner.lock().unwrap();
        i.requests.push(rec);
        let failure = match i.fail_next {
            (0, _) => i.failure.clone(),
            (n, status) => {
                i.fail_next = (n - 1, status);
                Failure::Status(status)
            }
        };
        (i.delay, failure)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match failure {
        Failure::None => next.run(req).await,
        Failure::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            axum::Json(json!({"message": "Server Error"})),
        )
            .into_response(),
        Failure::RateLimited { retry_after_secs } => {
            let mut r = (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"message": "You have exceeded a secondary rate limit."})),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert("retry-after", HeaderValue::from(retry_after_secs));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0));
            r
        }
    }
}

fn not_found(msg: &str) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"message": msg}))).into_response()
}

fn page_params(q: &HashMap<String, String>, page_size: usize) -> (usize, usize) {
    let per = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .min(page_size)
        .max(1);
    let page = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    (per, page)
}

/// Entries directly under `dir` (`.` = root): (name, is_dir).
fn list_dir(files: &BTreeMap<String, Vec<u8>>, dir: &str) -> Vec<(String, bool)> {
    let prefix = if dir == "." || dir.is_empty() {
        String::new()
    } else {
        format!("{}/", dir.trim_end_matches('/'))
    };
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    for path in files.keys() {
        if let Some(rest) = path.strip_prefix(&prefix) {
            match rest.split_once('/') {
                Some((d, _)) => out.insert(d.to_string(), true),
                None => out.insert(rest.to_string(), false),
            };
        }
    }
    out.into_iter().collect()
}

// ---------------------------------------------------------------- Gitea

fn gitea_routes() -> Router<Shared> {
    Router::new().route("/api/v1/repos/{owner}/{repo}/pulls/{n}", get(gitea_pull))
}

/// Gitea's `GET /repos/{owner}/{repo}/pulls/{index}` (`api.PullRequest`): 401 without the
/// token, 404 `{"message": ...}` for an unknown pull, else the pull with both repositories.
async fn gitea_pull(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((owner, repo, n)): Path<(String, String, i64)>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let expected = i.gitea_token.as_ref().map(|t| format!("token {t}"));
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if expected.is_some() && given != expected.as_deref() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "token is required", "url": format!("http://{}/api/swagger", s.addr)})),
        )
            .into_response();
    }
    let full = format!("{owner}/{repo}");
    let Some(p) = i.pulls.get(&(full.clone(), n)) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"errors": null, "message": "The target couldn't be found.",
                              "url": format!("http://{}/api/swagger", s.addr)}),
            ),
        )
            .into_response();
    };
    let head_owner = if i.forks.contains(&(full.clone(), n)) {
        "forker"
    } else {
        owner.as_str()
    };
    let repo_json = |o: &str, id: i64| {
        json!({
            "id": id, "name": repo, "full_name": format!("{o}/{repo}"),
            "owner": {"id": id, "login": o, "username": o},
            "clone_url": format!("http://{}/{o}/{repo}.git", s.addr),
            "html_url": format!("http://{}/{o}/{repo}", s.addr),
            "fork": o != owner,
        })
    };
    axum::Json(json!({
        "id": 100 + n, "number": n, "state": "open", "merged": false,
        "html_url": format!("http://{}/{full}/pulls/{n}", s.addr),
        "user": {"id": 7, "login": "author", "username": "author"},
        "title": format!("pull {n}"), "body": "",
        "head": {"label": "feature", "ref": "feature", "sha": p.head_sha,
                 "repo_id": if head_owner == owner { 1 } else { 2 },
                 "repo": repo_json(head_owner, if head_owner == owner { 1 } else { 2 })},
        "base": {"label": p.base_branch, "ref": p.base_branch,
                 "sha": "0000000000000000000000000000000000000000", "repo_id": 1,
                 "repo": repo_json(&owner, 1)},
    }))
    .into_response()
}

// ---------------------------------------------------------------- GitHub

fn github_routes() -> Router<Shared> {
    Router::new()
        .route("/api/v3/app/installations", get(app::list_installations))
        .route(
            "/api/v3/app/installations/{id}/access_tokens",
            post(app::create_access_token),
        )
        .route("/api/v3/repos/{owner}/{repo}/pulls/{n}", get(gh_pull))
        .route(
            "/api/v3/repos/{owner}/{repo}/pulls/{n}/files",
            get(gh_files),
        )
        .route(
            "/api/v3/repos/{owner}/{repo}/contents",
            get(gh_contents_root),
        )
        .route(
            "/api/v3/repos/{owner}/{repo}/contents/{*path}",
            get(gh_contents),
        )
        .route(
            "/api/v3/repos/{owner}/{repo}/issues/{n}/comments",
            post(gh_comment).get(gh_list_comments),
        )
        .route(
            "/api/v3/repos/{owner}/{repo}/issues/comments/{id}",
            patch(gh_edit_comment),
        )
}

async fn gh_pull(
    State(s): State<Shared>,
    Path((owner, repo, n)): Path<(String, String, i64)>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let full = format!("{owner}/{repo}");
    let head_repo = if i.forks.contains(&(full.clone(), n)) {
        format!("forker/{repo}")
    } else {
        full.clone()
    };
    match i.pulls.get(&(full.clone(), n)) {
        None => not_found("Not Found"),
        Some(p) => axum::Json(json!({
            "number": n, "state": "open",
            "head": {"sha": p.head_sha, "ref": "feature", "repo": {"full_name": head_repo}},
            "base": {"sha": "0000000000000000000000000000000000000000", "ref": p.base_branch,
                     "repo": {"full_name": full}},
        }))
        .into_response(),
    }
}

async fn gh_files(
    State(s): State<Shared>,
    Path((owner, repo, n)): Path<(String, String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let Some(p) = i.pulls.get(&(format!("{owner}/{repo}"), n)) else {
        return not_found("Not Found");
    };
    let (per, page) = page_params(&q, i.page_size);
    let chunk: Vec<Value> = p
        .files
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|f| {
            let mut v = json!({
                "sha": "bbcd538c8e72b8c175046e27cc8f907076331401",
                "filename": f.path, "status": f.status,
                "additions": 1, "deletions": 0, "changes": 1,
            });
            if let Some(prev) = &f.previous {
                v["previous_filename"] = json!(prev);
            }
            v
        })
        .collect();
    let last = p.files.len().div_ceil(per).max(1);
    let mut resp = axum::Json(chunk).into_response();
    if page < last {
        // Absolute URLs, as GitHub sends them.
        let url = |pg: usize| {
            format!(
                "<http://{}/api/v3/repos/{owner}/{repo}/pulls/{n}/files?per_page={per}&page={pg}>",
                s.addr
            )
        };
        let link = format!(
            "{}; rel=\"next\", {}; rel=\"last\"",
            url(page + 1),
            url(last)
        );
        resp.headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    resp
}

async fn gh_contents_root(
    State(s): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    gh_contents_at(&s, &format!("{owner}/{repo}"), ".")
}

async fn gh_contents(
    State(s): State<Shared>,
    Path((owner, repo, path)): Path<(String, String, String)>,
) -> Response {
    gh_contents_at(&s, &format!("{owner}/{repo}"), &path)
}

fn gh_contents_at(s: &Shared, repo: &str, path: &str) -> Response {
    let i = s.inner.lock().unwrap();
    let empty = BTreeMap::new();
    let files = i.files.get(repo).unwrap_or(&empty);
    if let Some(bytes) = files.get(path) {
        // GitHub wraps base64 at 60 characters.
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let wrapped: Vec<String> = b64
            .as_bytes()
            .chunks(60)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let name = path.rsplit('/').next().unwrap_or(path);
        return axum::Json(json!({
            "type": "file", "encoding": "base64", "size": bytes.len(),
            "name": name, "path": path, "content": wrapped.join("\n") + "\n",
            "sha": "3d21ec53a331a6f037a91c368710b99387d012c1",
        }))
        .into_response();
    }
    let entries = list_dir(files, path);
    if entries.is_empty() {
        return not_found("Not Found");
    }
    let arr: Vec<Value> = entries
        .into_iter()
        .map(|(name, is_dir)| {
            let full = if path == "." {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            json!({"name": name, "path": full, "type": if is_dir { "dir" } else { "file" }})
        })
        .collect();
    axum::Json(arr).into_response()
}

// ---------------------------------------------------------------- GitLab

fn gitlab_routes() -> Router<Shared> {
    Router::new()
        .route("/api/v4/projects/{id}/merge_requests/{iid}", get(gl_mr))
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/diffs",
            get(gl_diffs),
        )
        .route(
            "/api/v4/projects/{id}/repository/files/{file}/raw",
            get(gl_raw),
        )
        .route("/api/v4/projects/{id}/repository/tree", get(gl_tree))
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/notes",
            post(gl_note).get(gl_list_notes),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/notes/{note}",
            put(gl_edit_note),
        )
}

async fn gl_mr(State(s): State<Shared>, Path((id, iid)): Path<(String, i64)>) -> Response {
    let i = s.inner.lock().unwrap();
    match i.pulls.get(&(id, iid)) {
        None => not_found("404 Not found"),
        Some(p) => axum::Json(json!({
            "iid": iid, "state": "opened", "sha": p.head_sha,
            "source_branch": "feature", "target_branch": p.base_branch,
            "diff_refs": {"base_sha": "0000", "head_sha": p.head_sha, "start_sha": "0000"},
        }))
        .into_response(),
    }
}

async fn gl_diffs(
    State(s): State<Shared>,
    Path((id, iid)): Path<(String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let Some(p) = i.pulls.get(&(id, iid)) else {
        return not_found("404 Not found");
    };
    let (per, page) = page_params(&q, i.page_size);
    let chunk: Vec<Value> = p
        .files
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|f| {
            json!({
                "old_path": f.previous.clone().unwrap_or_else(|| f.path.clone()),
                "new_path": f.path,
                "a_mode": "100644", "b_mode": "100644", "diff": "@@ -1 +1 @@\n-a\n+b\n",
                "new_file": f.status == "added",
                "renamed_file": f.status == "renamed",
                "deleted_file": f.status == "removed",
                "generated_file": false,
            })
        })
        .collect();
    let total_pages = p.files.len().div_ceil(per).max(1);
    let mut headers = HeaderMap::new();
    headers.insert("x-page", HeaderValue::from(page));
    headers.insert("x-per-page", HeaderValue::from(per));
    headers.insert("x-total", HeaderValue::from(p.files.len()));
    headers.insert("x-total-pages", HeaderValue::from(total_pages));
    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    headers.insert("x-next-page", HeaderValue::from_str(&next).unwrap());
    (headers, axum::Json(chunk)).into_response()
}

async fn gl_raw(State(s): State<Shared>, Path((id, file)): Path<(String, String)>) -> Response {
    let i = s.inner.lock().unwrap();
    match i.files.get(&id).and_then(|f| f.get(&file)) {
        None => not_found("404 File Not Found"),
        Some(b) => Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from(b.clone()))
            .unwrap(),
    }
}

async fn gl_tree(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let i = s.inner.lock().unwrap();
    let empty = BTreeMap::new();
    let files = i.files.get(&id).unwrap_or(&empty);
    let dir = q.get("path").map(String::as_str).unwrap_or(".");
    let entries = list_dir(files, dir);
    if entries.is_empty() {
        return not_found("404 Tree Not Found");
    }
    let arr: Vec<Value> = entries
        .into_iter()
        .map(|(name, is_dir)| {
            json!({"id": "a1e8f8d745cc87e3a9248358d9352bb7f9a0aeba", "name": name,
                   "type": if is_dir { "tree" } else { "blob" }, "mode": "100644"})
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("x-next-page", HeaderValue::from_static(""));
    (headers, axum::Json(arr)).into_response()
}
