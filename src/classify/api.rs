//! `/api/plan|apply` (`api_controller.go`) and `DELETE /locks?id=` (`locks_controller.go`).

use std::sync::atomic::{AtomicI64, Ordering};

use http::HeaderMap;
use serde_json::Value;

use super::comment::{lex, validate_workspace};
use super::config::ClassifyConfig;
use super::operation::{
    Acquire, CommandKind, LockSet, LockTarget, Operation, PassthroughReason as R, PullMeta, Vcs,
};
use super::webhook::{header, query_unescape};
use crate::vocab::{LockKey, PullRef};

/// The fields of Atlantis's `APIRequest` (a Go struct decoded with case-insensitive keys).
#[derive(Default)]
struct ApiRequest {
    repository: String,
    r#ref: String,
    base_branch: String,
    r#type: String,
    pr: i64,
    projects: Vec<String>,
    paths: Vec<ApiPath>,
    /// `action` of a drift remediation (`plan`, `apply`).
    action: String,
}

#[derive(Default)]
struct ApiPath {
    project_name: String,
    directory: String,
    workspace: String,
}

fn string(v: &Value) -> Result<String, ()> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        _ => Err(()),
    }
}

/// Decodes like `json.Unmarshal` into a tagless Go struct: keys match case-insensitively,
/// `null` leaves the zero value, a wrong type is an error.
fn decode(body: &[u8]) -> Result<ApiRequest, ()> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ())?;
    let Value::Object(map) = v else {
        return Err(());
    };
    let mut r = ApiRequest::default();
    for (k, v) in &map {
        match k.to_lowercase().as_str() {
            "repository" => r.repository = string(v)?,
            "ref" => r.r#ref = string(v)?,
            "base_branch" => r.base_branch = string(v)?,
            "type" => r.r#type = string(v)?,
            "action" => r.action = string(v)?,
            "pr" => {
                r.pr = if v.is_null() {
                    0
                } else {
                    v.as_i64().ok_or(())?
                }
            }
            "projects" => {
                r.projects = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a.iter().map(string).collect::<Result<_, _>>()?,
                    _ => return Err(()),
                }
            }
            "paths" => {
                r.paths = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a.iter().map(decode_path).collect::<Result<_, _>>()?,
                    _ => return Err(()),
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

fn decode_path(v: &Value) -> Result<ApiPath, ()> {
    let mut p = ApiPath::default();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                match k.to_lowercase().as_str() {
                    "project_name" => p.project_name = string(v)?,
                    "directory" => p.directory = string(v)?,
                    "workspace" => p.workspace = string(v)?,
                    _ => {}
                }
            }
        }
        _ => return Err(()),
    }
    Ok(p)
}

/// Atlantis gives a call without `PR` a fresh negative pull number; so does the proxy, so that
/// two such calls never look like one re-entrant pull.
fn synthetic_pull_number() -> i64 {
    static COUNTER: AtomicI64 = AtomicI64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::from(d.subsec_nanos()))
        .unwrap_or(0);
    -((nanos & 0x3fff_ffff) + COUNTER.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Which API call a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCall {
    /// `POST /api/plan` or `/api/apply`.
    Run(CommandKind),
    /// `POST /api/drift/detect`: a plan under a synthetic pull, its locks deleted at the end.
    DriftDetect,
    /// `POST /api/drift/remediate`: plan (and apply with `action: apply`), likewise.
    DriftRemediate,
}

/// Classifies `POST /api/plan`, `/api/apply`, `/api/drift/detect` or `/api/drift/remediate`
/// (`api_controller.go`): the drift routes run plan/apply like `/api/plan` and delete their
/// synthetic pull's locks when they end.
pub fn classify_api(
    headers: &HeaderMap,
    body: &[u8],
    cfg: &ClassifyConfig,
    call: ApiCall,
) -> Operation {
    // Gated only when the proxy knows Atlantis's API secret and the call carries it: anything
    // else is Atlantis's to refuse (401, or "API is disabled"), and is never held open.
    let Some(secret) = super::config::configured(cfg.api_secret.as_ref()) else {
        return Operation::passthrough(R::ApiNotGated);
    };
    let token = header(headers, "x-atlantis-token").unwrap_or("");
    if !secret.matches(token.as_bytes()) {
        return Operation::passthrough(R::ApiRejected);
    }
    let Ok(req) = decode(body) else {
        return Operation::passthrough(R::ApiRejected);
    };
    let command = match call {
        ApiCall::Run(c) => c,
        ApiCall::DriftDetect => CommandKind::ApiPlan,
        ApiCall::DriftRemediate if req.action == "apply" => CommandKind::ApiApply,
        ApiCall::DriftRemediate => CommandKind::ApiPlan,
    };
    let drift = !matches!(call, ApiCall::Run(_));
    if drift && req.projects.is_empty() && req.paths.is_empty() {
        // Every project of the repo (or every stored drift): only a checkout can tell which.
        return Operation::passthrough(R::DriftAllProjects);
    }
    if drift && !req.projects.is_empty() && !req.paths.is_empty() {
        return Operation::passthrough(R::ApiRejected);
    }
    let vcs = Vcs::from_api_type(&req.r#type);
    let workspaces_ok = req
        .paths
        .iter()
        .all(|p| validate_workspace(&p.workspace).is_ok());
    let (false, false, Some(vcs), true) = (
        req.repository.is_empty(),
        req.r#ref.is_empty(),
        vcs,
        workspaces_ok,
    ) else {
        return Operation::passthrough(R::ApiRejected);
    };
    let repo = req.repository.clone();
    if !cfg.allowlisted(vcs, None, &repo) {
        return Operation::passthrough(R::NotAllowlisted);
    }
    let mut targets: Vec<LockTarget> = Vec::new();
    let mut takes_lock = false;
    for name in &req.projects {
        takes_lock |= cfg.may_lock(vcs, &repo, Some(name), None, command);
        targets.push(LockTarget::Project { name: name.clone() });
    }
    for p in &req.paths {
        if !p.project_name.is_empty() {
            takes_lock |= cfg.may_lock(vcs, &repo, Some(&p.project_name), None, command);
            targets.push(LockTarget::Project {
                name: p.project_name.clone(),
            });
            continue;
        }
        let ws = if p.workspace.is_empty() {
            "default"
        } else {
            &p.workspace
        };
        let dir = p.directory.trim_end_matches('/');
        if dir.contains(['*', '?', '[']) {
            takes_lock |= cfg.may_lock_any(vcs, &repo, command);
            targets.push(LockTarget::DirGlob {
                pattern: dir.to_owned(),
                workspace: Some(ws.to_owned()),
            });
            continue;
        }
        // models.NewProject cleans the path that ends up in the key.
        let dir = match lex::clean_path(if dir.is_empty() { "." } else { dir }) {
            d if d == "/" => ".".to_owned(),
            d => d,
        };
        takes_lock |= cfg.may_lock(vcs, &repo, None, Some(&dir), command);
        targets.push(LockTarget::Key(LockKey::new(repo.clone(), dir, ws, "")));
    }
    if targets.is_empty() {
        return Operation::passthrough(R::CommandTakesNoLock);
    }
    if !takes_lock {
        return Operation::passthrough(R::LockModeExempt);
    }
    let locks = if targets.iter().all(|t| matches!(t, LockTarget::Key(_))) {
        LockSet::Resolved(
            targets
                .into_iter()
                .filter_map(|t| match t {
                    LockTarget::Key(k) => Some(k),
                    _ => None,
                })
                .collect(),
        )
    } else {
        LockSet::Unresolved { targets }
    };
    let number = if req.pr > 0 {
        req.pr
    } else {
        synthetic_pull_number()
    };
    Operation::Acquire(Acquire {
        locks,
        pull: PullRef::new(vcs, repo, number),
        user: String::new(),
        command,
        vcs,
        labels: Vec::new(),
        meta: PullMeta {
            base_branch: Some(req.base_branch).filter(|b| !b.trim().is_empty()),
            head_branch: Some(req.r#ref.clone()),
            // A synthetic pull has no pull to read: the resolver reads atlantis.yaml at `Ref`.
            head_sha: (req.pr <= 0).then(|| req.r#ref.clone()),
            api_ref: Some(req.r#ref),
            ..PullMeta::default()
        },
    })
}

/// gorilla/mux's `findFirstQueryKey`: the first `id` among `&`/`;`-separated pairs whose key
/// and value both query-unescape.
fn first_query_value(raw: &str, key: &str) -> Option<String> {
    raw.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = query_unescape(k, true).ok()?;
            if k != key {
                return None;
            }
            query_unescape(v, true).ok()
        })
}

/// Classifies `DELETE /locks?id=`.
///
/// Atlantis decodes the id exactly twice: the router query-unescapes it (`+` becomes a space)
/// and the handler path-unescapes it. That accepts raw, single- and double-encoded ids alike,
/// since decoding a decoded key changes nothing. The proxy stops there too: decoding further
/// would release a key Atlantis did not delete.
pub fn release_key(query: Option<&str>, cfg: &ClassifyConfig) -> Operation {
    let Some(once) = query.and_then(|q| first_query_value(q, "id")) else {
        return Operation::passthrough(R::BadLockId);
    };
    if once.is_empty() {
        return Operation::passthrough(R::BadLockId);
    }
    let Ok(id) = query_unescape(&once, false) else {
        return Operation::passthrough(R::BadLockId);
    };
    // Atlantis's key regex needs four separators; a legacy three-part id is not deletable.
    if id.matches('/').count() < 4 {
        return Operation::passthrough(R::BadLockId);
    }
    match LockKey::parse_with_known_repos(&id, cfg.lock_modes.known_repos()) {
        Ok(key) if key.to_string() == id => Operation::ReleaseKey { key },
        _ => Operation::passthrough(R::BadLockId),
    }
}

#[cfg(test)]
mod tests;
