//! The operator CLI's side of the admin API: one HTTP call per command, tables or JSON out.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::route::shadow::{EnhancedDecision, LegacyOutcome};

use super::api::{
    ErrorBody, LockList, QueueList, Readiness, Released, Removed, ShadowDiffs, SplitUpdate,
    SplitView,
};

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
    /// Remove one waiter from its queue (its pull-request comment says an operator removed it).
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
        let out = |text: String, value: &dyn erased::Json| {
            if as_json { value.pretty() } else { text }
        };
        Ok(match cmd {
            CliCommand::Status => {
                let split: SplitView = self.call(Method::GET, "/admin/split", None).await?;
                let locks: LockList = self.call(Method::GET, "/admin/locks", None).await?;
                let queues: QueueList = self.call(Method::GET, "/admin/queues", None).await?;
                // Readiness reports 503 with the same body.
                let (status, ready) = self.send::<Readiness>(Method::GET, "/readyz", None).await?;
                let ready = ready.map_err(|message| CliError::Api { status, message })?;
                let summary = StatusSummary {
                    waiters: queues.queues.iter().map(|q| q.waiters.len()).sum(),
                    locks: locks.locks.len(),
                    split,
                    ready,
                };
                out(render_status(&summary), &summary)
            }
            CliCommand::SplitSet(pct) => {
                let update = SplitUpdate {
                    traffic_split: Some(i64::from(*pct)),
                    ..SplitUpdate::default()
                };
                let v: SplitView = self
                    .call(Method::PUT, "/admin/split", Some(&update))
                    .await?;
                out(render_split(&v), &v)
            }
            CliCommand::Shadow(on) => {
                let update = SplitUpdate {
                    monitor_only: Some(*on),
                    ..SplitUpdate::default()
                };
                let v: SplitView = self
                    .call(Method::PUT, "/admin/split", Some(&update))
                    .await?;
                out(render_split(&v), &v)
            }
            CliCommand::Rollback => {
                let v: SplitView = self.call(Method::POST, "/admin/rollback", None).await?;
                out(render_split(&v), &v)
            }
            CliCommand::LocksList => {
                let v: LockList = self.call(Method::GET, "/admin/locks", None).await?;
                out(render_locks(&v), &v)
            }
            CliCommand::LocksRelease(key) => {
                let path = format!(
                    "/admin/locks/{}",
                    utf8_percent_encode(key, NON_ALPHANUMERIC)
                );
                let v: Released = self.call(Method::DELETE, &path, None).await?;
                out(v.pretty(), &v)
            }
            CliCommand::QueueList => {
                let v: QueueList = self.call(Method::GET, "/admin/queues", None).await?;
                out(render_queues(&v), &v)
            }
            CliCommand::QueueRemove(id) => {
                let path = format!(
                    "/admin/queues/{}",
                    utf8_percent_encode(id, NON_ALPHANUMERIC)
                );
                let v: Removed = self.call(Method::DELETE, &path, None).await?;
                out(v.pretty(), &v)
            }
            CliCommand::Diffs => {
                let v: ShadowDiffs = self.call(Method::GET, "/admin/shadow/diffs", None).await?;
                out(render_diffs(&v), &v)
            }
        })
    }

    /// One call whose success body is a `T`; any other status is the API's error.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&dyn erased::Json>,
    ) -> Result<T, CliError> {
        let (status, parsed) = self.send::<T>(method, path, body).await?;
        match parsed {
            Ok(v) if status.is_success() => Ok(v),
            Ok(_) => Err(CliError::Api {
                status,
                message: String::new(),
            }),
            Err(message) => Err(CliError::Api { status, message }),
        }
    }

    /// Sends one call: its status and its body as a `T`, or the error text it carried.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&dyn erased::Json>,
    ) -> Result<(StatusCode, Result<T, String>), CliError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String| CliError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = body.map(|b| Bytes::from(b.compact())).unwrap_or_default();
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
        let text = || String::from_utf8_lossy(&body).trim().to_string();
        let parsed = if status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE {
            serde_json::from_slice::<T>(&body).map_err(|_| error_text(&body).unwrap_or_else(text))
        } else {
            Err(error_text(&body).unwrap_or_else(text))
        };
        Ok((status, parsed))
    }
}

/// The `error` of an [`ErrorBody`], if the body is one.
fn error_text(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|e| e.error)
}

/// What `status` prints: the split, readiness, and how much is held and queued.
#[derive(Serialize)]
struct StatusSummary {
    split: SplitView,
    ready: Readiness,
    locks: usize,
    waiters: usize,
}

/// Any answer, printable as JSON (`--json`) or sent as a request body.
mod erased {
    pub trait Json {
        fn pretty(&self) -> String;
        fn compact(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_default()
        }

        fn compact(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

use erased::Json as _;

fn render_split(v: &SplitView) -> String {
    format!(
        "traffic split: {}% enhanced\nshadow (monitor-only): {}\nenabled: {}\nbreaker: {}\nbackend: {}\nupdated: {}\n",
        v.traffic_split, v.monitor_only, v.enabled, v.breaker, v.backend, v.updated_at
    )
}

fn render_status(v: &StatusSummary) -> String {
    let mut out = render_split(&v.split);
    let _ = writeln!(out, "ready: {}", v.ready.status);
    for (k, c) in &v.ready.checks {
        let _ = writeln!(out, "  {k}: {c}");
    }
    let _ = writeln!(
        out,
        "locks held: {}\nwaiters queued: {}",
        v.locks, v.waiters
    );
    out
}

fn render_locks(v: &LockList) -> String {
    let mut out = format!(
        "{:<48} {:>6} {:<12} {:<9} {:<22} {:>8}\n",
        "KEY", "PULL", "USER", "PRIORITY", "EXPIRES", "FENCING"
    );
    for l in &v.locks {
        let _ = writeln!(
            out,
            "{:<48} {:>6} {:<12} {:<9} {:<22} {:>8}",
            l.key, l.pull, l.user, l.priority, l.expires_at, l.fencing_token
        );
    }
    out
}

fn render_queues(v: &QueueList) -> String {
    let mut out = String::new();
    for q in &v.queues {
        let _ = writeln!(out, "{}", q.key);
        for w in &q.waiters {
            let _ = writeln!(
                out,
                "  {:>3}. pull {:<6} {:<9} {:<12} since {}  (id {})",
                w.position, w.pull, w.priority, w.user, w.enqueued_at, w.id
            );
        }
    }
    if out.is_empty() {
        out.push_str("no queued requests\n");
    }
    out
}

fn render_diffs(v: &ShadowDiffs) -> String {
    let mut out = format!(
        "compared: {}  mismatched: {}  dropped: {}\n",
        v.compared, v.mismatched, v.dropped
    );
    for (k, n) in &v.by_kind {
        let _ = writeln!(out, "  {k}: {n}");
    }
    if !v.recent.is_empty() {
        out.push_str("recent (newest first):\n");
    }
    for d in &v.recent {
        let pull = d.pull.map(|n| format!("#{n}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "- {} {} {}{} {}: legacy {}, enhanced {} [{}]",
            d.at,
            d.kind.as_str(),
            d.repo,
            pull,
            d.operation,
            legacy_text(d.legacy),
            enhanced_text(d.enhanced),
            d.locks.join(", ")
        );
    }
    out
}

/// `denied_held_by #12`, `granted`, ...
fn legacy_text(o: LegacyOutcome) -> String {
    match o {
        LegacyOutcome::Granted => "granted".into(),
        LegacyOutcome::DeniedHeldBy(n) => format!("denied_held_by #{n}"),
        LegacyOutcome::Released => "released".into(),
        LegacyOutcome::NoOp => "no_op".into(),
        LegacyOutcome::Unknown => "unknown".into(),
    }
}

/// `would_queue_behind #12`, `granted`, ...
fn enhanced_text(d: EnhancedDecision) -> String {
    match d {
        EnhancedDecision::Granted => "granted".into(),
        EnhancedDecision::WouldQueueBehind(Some(n)) => format!("would_queue_behind #{n}"),
        EnhancedDecision::WouldQueueBehind(None) => "would_queue_behind".into(),
        EnhancedDecision::Released => "released".into(),
        EnhancedDecision::NoOp => "no_op".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::DiffView;
    use crate::vocab::DiffKind;

    #[test]
    fn diffs_read_as_one_line_per_disagreement() {
        let v = ShadowDiffs {
            compared: 3,
            mismatched: 1,
            dropped: 0,
            by_kind: [
                ("match".to_owned(), 2),
                ("legacy_denied_enhanced_would_grant".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
            recent: vec![DiffView {
                at: "2026-11-26T17:00:00.000Z".into(),
                kind: DiffKind::LegacyDeniedEnhancedWouldGrant,
                operation: "acquire".into(),
                repo: "acme/infra".into(),
                pull: Some(5),
                locks: vec!["acme/infra/./default/".into()],
                legacy: LegacyOutcome::DeniedHeldBy(9),
                enhanced: EnhancedDecision::Granted,
                trace_id: None,
            }],
        };
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
        // What the server sends is what the client reads.
        let wire = serde_json::to_string(&v).unwrap();
        assert!(
            wire.contains(r#""legacy":{"outcome":"denied_held_by","pull":9}"#),
            "{wire}"
        );
        assert_eq!(serde_json::from_str::<ShadowDiffs>(&wire).unwrap(), v);
    }
}
