//! Decoding of script replies (`redis::Value`) into engine types.

use redis::Value;

use crate::engine::deadlock::{WaitGraphInput, WaitNode};
use crate::engine::types::{lock_field, lock_key};
use crate::engine::{
    Dispatch, DispatchReason, EngineError, EngineResult, LockInfo, Preempted, WaiterId, WaiterInfo,
    from_unix_ms, priority_of,
};
use crate::vocab::{PullId, PullRef, Vcs};

/// Shorthand for a malformed reply.
pub fn bad(what: &str) -> EngineError {
    EngineError::Protocol(what.to_owned())
}

/// The elements of an array reply.
pub fn array(v: &Value) -> Result<&[Value], EngineError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(bad("expected an array")),
    }
}

/// A bulk string as bytes.
pub fn bytes(v: &Value) -> Result<Vec<u8>, EngineError> {
    match v {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad("expected a string")),
    }
}

/// A bulk string as UTF-8 text.
pub fn text(v: &Value) -> Result<String, EngineError> {
    String::from_utf8(bytes(v)?).map_err(|_| bad("expected UTF-8 text"))
}

/// An integer, given as an integer or as decimal text.
pub fn int(v: &Value) -> Result<i64, EngineError> {
    match v {
        Value::Int(i) => Ok(*i),
        _ => text(v)?
            .trim()
            .parse()
            .map_err(|_| bad("expected an integer")),
    }
}

/// An optional integer: empty text is `None`.
pub fn opt_int(v: &Value) -> Result<Option<i64>, EngineError> {
    match v {
        Value::Int(i) => Ok(Some(*i)),
        _ => {
            let t = text(v)?;
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse().map(Some).map_err(|_| bad("expected an integer"))
            }
        }
    }
}

/// A pull of `repo` as the scripts store it (`PullId::encode`; a bare number is `unmarked`'s).
pub fn stored_pull(repo: &str, stored: &str, unmarked: Vcs) -> EngineResult<PullRef> {
    PullId::decode(stored, unmarked)
        .map(|p| p.in_repo(repo))
        .map_err(|_| bad("stored pull"))
}

/// Element `i` of an array reply.
pub fn at(items: &[Value], i: usize) -> Result<&Value, EngineError> {
    items.get(i).ok_or_else(|| bad("short reply"))
}

/// Decodes one dispatch record emitted by the scripts.
pub fn decode_dispatch(repo: &str, f: &[Value], unmarked: Vcs) -> EngineResult<Dispatch> {
    decode_dispatch_fields(repo, f, unmarked)
}

/// The preempted entries of a dispatch record (`field\tpull` lines).
pub fn decode_preempted(
    repo: &str,
    text_value: &str,
    unmarked: Vcs,
) -> EngineResult<Vec<Preempted>> {
    let mut preempted = Vec::new();
    for line in text_value.split('\n').filter(|l| !l.is_empty()) {
        let (field, p) = line
            .split_once('\t')
            .ok_or_else(|| bad("preempted entry"))?;
        preempted.push(Preempted {
            key: lock_key(repo, field),
            pull: stored_pull(repo, p, unmarked)?,
        });
    }
    Ok(preempted)
}

fn decode_dispatch_fields(repo: &str, f: &[Value], unmarked: Vcs) -> EngineResult<Dispatch> {
    let seq = int(at(f, 0)?)? as u64;
    let reason = DispatchReason::parse(&text(at(f, 1)?)?).ok_or_else(|| bad("dispatch reason"))?;
    let pull = stored_pull(repo, &text(at(f, 2)?)?, unmarked)?;
    let locks_text = text(at(f, 5)?)?;
    let preempted = decode_preempted(repo, &text(at(f, 8)?)?, unmarked)?;
    Ok(Dispatch {
        id: WaiterId {
            repo: repo.to_owned(),
            seq,
        },
        reason,
        pull,
        user: text(at(f, 3)?)?,
        priority: priority_of(int(at(f, 4)?)?),
        locks: locks_text
            .split('\n')
            .filter(|l| !l.is_empty())
            .map(|l| lock_key(repo, l))
            .collect(),
        payload: bytes(at(f, 6)?)?,
        fencing_token: opt_int(at(f, 7)?)?.map(|t| t as u64),
        preempted,
        enqueued_at: from_unix_ms(int(at(f, 9)?)?),
        attempt: f.get(10).map(int).transpose()?.unwrap_or(0).max(0) as u32,
    })
}

/// One repository's state as read by the snapshot script.
pub struct Snapshot {
    /// Server time of the read (unix ms).
    pub now: i64,
    /// Held locks.
    pub locks: Vec<LockInfo>,
    /// Lock field → waiters in grant order.
    pub queues: Vec<(String, Vec<WaiterInfo>)>,
}

impl Snapshot {
    /// Decodes the snapshot script reply.
    pub fn decode(repo: &str, v: &Value, unmarked: Vcs) -> EngineResult<Self> {
        let items = array(v)?;
        let now = int(at(items, 0)?)?;
        let in_flight: Vec<String> = match items.get(3) {
            Some(v) => array(v)?.iter().map(text).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let mut locks = Vec::new();
        for pair in array(at(items, 1)?)?.chunks(2) {
            let [f, val] = pair else {
                return Err(bad("holder pair"));
            };
            let val = text(val)?;
            let p: Vec<&str> = val.splitn(6, '\t').collect();
            let [pull, token, acq, exp, r, user] = p.as_slice() else {
                return Err(bad("holder record"));
            };
            let num = |s: &str| s.parse::<i64>().map_err(|_| bad("holder number"));
            let field = text(f)?;
            locks.push(LockInfo {
                dispatching: in_flight.contains(&field),
                key: lock_key(repo, &field),
                pull: stored_pull(repo, pull, unmarked)?,
                user: (*user).to_owned(),
                priority: priority_of(num(r)?),
                acquired_at: from_unix_ms(num(acq)?),
                expires_at: from_unix_ms(num(exp)?),
                fencing_token: num(token)? as u64,
            });
        }
        let mut queues = Vec::new();
        for q in array(at(items, 2)?)? {
            let q = array(q)?;
            let field = text(at(q, 0)?)?;
            let mut waiters = Vec::new();
            for (i, w) in q[1..].iter().enumerate() {
                let w = array(w)?;
                waiters.push(WaiterInfo {
                    id: WaiterId {
                        repo: repo.to_owned(),
                        seq: int(at(w, 0)?)? as u64,
                    },
                    pull: stored_pull(repo, &text(at(w, 1)?)?, unmarked)?,
                    user: text(at(w, 2)?)?,
                    priority: priority_of(int(at(w, 3)?)?),
                    enqueued_at: from_unix_ms(int(at(w, 4)?)?),
                    position: i as u64 + 1,
                });
            }
            queues.push((field, waiters));
        }
        Ok(Self { now, locks, queues })
    }

    /// The repository as the deadlock detector sees it.
    pub fn wait_graph(&self) -> WaitGraphInput {
        let now = from_unix_ms(self.now);
        WaitGraphInput {
            holders: self
                .locks
                .iter()
                .filter(|l| l.expires_at > now)
                .map(|l| (lock_field(&l.key), l.pull.id()))
                .collect(),
            queues: self
                .queues
                .iter()
                .map(|(f, ws)| {
                    let nodes = ws
                        .iter()
                        .map(|w| WaitNode {
                            seq: w.id.seq,
                            pull: w.pull.id(),
                            priority: w.priority,
                        })
                        .collect();
                    (f.clone(), nodes)
                })
                .collect(),
        }
    }
}
