//! The operator CLI's side of the admin API: one HTTP call per command, tables or JSON out.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

/// An operator command, named after the migration guide's.
#[derive(Debug, Clone)]
pub enum CliCommand {
    /// Split, breaker, backend health, lock and queue counts.
    Status,
    /// Set the traffic split percentage.
    SplitSet(u8),
    /// Turn shadow mode on or off.
    Shadow(bool),
    /// Split 0, shadow off, at once.
    Rollback,
    /// List engine locks.
    LocksList,
    /// Force-release one lock (engine and Atlantis).
    LocksRelease(String),
    /// List queues.
    QueueList,
    /// Remove one waiter from its queue (it is forwarded to Atlantis like a timeout).
    QueueRemove(String),
    /// Shadow-mode decision diffs.
    Diffs,
}

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The admin API could not be reached.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// Admin URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The admin API answered with an error.
    #[error("admin API answered {status}: {message}")]
    Api {
        /// Status.
        status: StatusCode,
        /// Its `error` field.
        message: String,
    },
}

/// Where the admin API is and how to authenticate.
pub struct AdminClient {
    base: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:9464`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
        }
    }

    /// Runs one command; returns what to print.
    pub async fn run(&self, cmd: &CliCommand, as_json: bool) -> Result<String, CliError> {
        let out = match cmd {
            CliCommand::Status => {
                let split = self.call(Method::GET, "/admin/split", None).await?;
                let locks = self.call(Method::GET, "/admin/locks", None).await?;
                let queues = self.call(Method::GET, "/admin/queues", None).await?;
                let ready = self.call_any(Method::GET, "/readyz", None).await?;
                let waiting: usize = queues["queues"]
                    .as_array()
                    .map(|qs| {
                        qs.iter()
                            .map(|q| q["waiters"].as_array().map_or(0, Vec::len))
                            .sum()
                    })
                    .unwrap_or(0);
                let summary = json!({
                    "split": split,
                    "ready": ready,
                    "locks": locks["locks"].as_array().map_or(0, Vec::len),
                    "waiters": waiting,
                });
                return Ok(if as_json {
                    pretty(&summary)
                } else {
                    render_status(&summary)
                });
            }
            CliCommand::SplitSet(pct) => {
                self.call(
                    Method::PUT,
                    "/admin/split",
                    Some(json!({"traffic_split": pct})),
                )
                .await?
            }
            CliCommand::Shadow(on) => {
                self.call(
                    Method::PUT,
                    "/admin/split",
                    Some(json!({"monitor_only": on})),
                )
                .await?
            }
            CliCommand::Rollback => self.call(Method::POST, "/admin/rollback", None).await?,
            CliCommand::LocksList => self.call(Method::GET, "/admin/locks", None).await?,
            CliCommand::LocksRelease(key) => {
                let path = format!(
                    "/admin/locks/{}",
                    utf8_percent_encode(key, NON_ALPHANUMERIC)
                );
                self.call(Method::DELETE, &path, None).await?
            }
            CliCommand::QueueList => self.call(Method::GET, "/admin/queues", None).await?,
            CliCommand::QueueRemove(id) => {
                let path = format!(
                    "/admin/queues/{}",
                    utf8_percent_encode(id, NON_ALPHANUMERIC)
                );
                self.call(Method::DELETE, &path, None).await?
            }
            CliCommand::Diffs => self.call(Method::GET, "/admin/shadow/diffs", None).await?,
        };
        if as_json {
            return Ok(pretty(&out));
        }
        Ok(match cmd {
            CliCommand::SplitSet(_) | CliCommand::Shadow(_) | CliCommand::Rollback => {
                render_split(&out)
            }
            CliCommand::LocksList => render_locks(&out),
            CliCommand::QueueList => render_queues(&out),
            CliCommand::Diffs => render_diffs(&out),
            _ => pretty(&out),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let (status, value) = self.send(method, path, body).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(CliError::Api {
                status,
                message: value["error"].as_str().unwrap_or("").to_string(),
            })
        }
    }

    /// Like `call`, but any status is an answer (readiness reports 503 with a body).
    async fn call_any(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        Ok(self.send(method, path, body).await?.1)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), CliError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String| CliError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        if !bytes.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| unreachable(e.to_string()))?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| unreachable("no answer within 10s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or_else(
            |_| json!({"error": String::from_utf8_lossy(&body).trim().to_string()}),
        );
        Ok((status, value))
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn render_split(v: &Value) -> String {
    format!(
        "traffic split: {}% enhanced\nshadow (monitor-only): {}\nenabled: {}\nbreaker: {}\nbackend: {}\nupdated: {}\n",
        s(&v["traffic_split"]),
        s(&v["monitor_only"]),
        s(&v["enabled"]),
        s(&v["breaker"]),
        s(&v["backend"]),
        s(&v["updated_at"])
    )
}

fn render_status(v: &Value) -> String {
    let mut out = render_split(&v["split"]);
    let _ = writeln!(out, "ready: {}", s(&v["ready"]["status"]));
    if let Some(checks) = v["ready"]["checks"].as_object() {
        for (k, c) in checks {
            let _ = writeln!(out, "  {k}: {}", s(c));
        }
    }
    let _ = writeln!(
        out,
        "locks held: {}\nwaiters queued: {}",
        s(&v["locks"]),
        s(&v["waiters"])
    );
    out
}

fn render_locks(v: &Value) -> String {
    let mut out = format!(
        "{:<48} {:>6} {:<12} {:<9} {:<22} {:>8}\n",
        "KEY", "PULL", "USER", "PRIORITY", "EXPIRES", "FENCING"
    );
    for l in v["locks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<48} {:>6} {:<12} {:<9} {:<22} {:>8}",
            s(&l["key"]),
            s(&l["pull"]),
            s(&l["user"]),
            s(&l["priority"]),
            s(&l["expires_at"]),
            s(&l["fencing_token"])
        );
    }
    out
}

fn render_queues(v: &Value) -> String {
    let mut out = String::new();
    for q in v["queues"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", s(&q["key"]));
        for w in q["waiters"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:>3}. pull {:<6} {:<9} {:<12} since {}  (id {})",
                s(&w["position"]),
                s(&w["pull"]),
                s(&w["priority"]),
                s(&w["user"]),
                s(&w["enqueued_at"]),
                s(&w["id"])
            );
        }
    }
    if out.is_empty() {
        out.push_str("no queued requests\n");
    }
    out
}

fn render_diffs(v: &Value) -> String {
    let mut out = format!(
        "compared: {}  mismatched: {}  dropped: {}\n",
        s(&v["compared"]),
        s(&v["mismatched"]),
        s(&v["dropped"])
    );
    if let Some(kinds) = v["by_kind"].as_object() {
        for (k, n) in kinds {
            let _ = writeln!(out, "  {k}: {}", s(n));
        }
    }
    // `{"outcome": "denied_held_by", "pull": 12}` reads as `denied_held_by #12`.
    let side = |d: &Value, tag: &str| match d["pull"].as_i64() {
        Some(n) => format!("{} #{n}", s(&d[tag])),
        None => s(&d[tag]),
    };
    let recent = v["recent"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !recent.is_empty() {
        out.push_str("recent (newest first):\n");
    }
    for d in recent {
        let pull = d["pull"]
            .as_i64()
            .map(|n| format!("#{n}"))
            .unwrap_or_default();
        let locks: Vec<String> = d["locks"].as_array().into_iter().flatten().map(s).collect();
        let _ = writeln!(
            out,
            "- {} {} {}{} {}: legacy {}, enhanced {} [{}]",
            s(&d["at"]),
            s(&d["kind"]),
            s(&d["repo"]),
            pull,
            s(&d["operation"]),
            side(&d["legacy"], "outcome"),
            side(&d["enhanced"], "decision"),
            locks.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_read_as_one_line_per_disagreement() {
        let v = serde_json::json!({
            "compared": 3, "mismatched": 1, "dropped": 0,
            "by_kind": {"match": 2, "legacy_denied_enhanced_would_grant": 1},
            "recent": [{
                "at": "2026-11-26T17:00:00.000Z", "kind": "legacy_denied_enhanced_would_grant",
                "operation": "acquire", "repo": "acme/infra", "pull": 5,
                "locks": ["acme/infra/./default/"],
                "legacy": {"outcome": "denied_held_by", "pull": 9},
                "enhanced": {"decision": "granted"}
            }]
        });
        let text = render_diffs(&v);
        assert!(
            text.starts_with("compared: 3  mismatched: 1  dropped: 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "acme/infra#5 acquire: legacy denied_held_by #9, enhanced granted [acme/infra/./default/]"
            ),
            "{text}"
        );
    }
}
