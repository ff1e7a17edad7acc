//! The `202 Accepted` body a queued webhook is answered with (DESIGN.md §4).

use std::fmt::Display;

use serde::{Serialize, Serializer};

use crate::engine::{Enqueued, QueuePosition, WaiterId};
use crate::vocab::{LockKey, Priority};

/// What a queued request is told: where it waits and behind whom.
///
/// Fields are declared in alphabetical order: the body was first written as a `serde_json::Value`
/// (whose map sorts its keys), and clients may have kept its bytes, so they stay the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedReply {
    /// The request's place on each of its locks.
    pub locks: Vec<QueuedLock>,
    /// The priority it waits with.
    pub priority: Priority,
    /// Always `queued`.
    pub status: ReplyStatus,
    /// The waiter, for `/admin/queues` and removal.
    #[serde(serialize_with = "as_display")]
    pub waiter_id: WaiterId,
}

/// The `status` of a [`QueuedReply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    /// Waiting in the engine's queue; replayed to Atlantis when granted.
    Queued,
}

/// One lock of a [`QueuedReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedLock {
    /// The pull holding the lock now, if any.
    pub held_by_pull: Option<i64>,
    /// The Atlantis lock key.
    #[serde(serialize_with = "as_display")]
    pub key: LockKey,
    /// 1 = granted next.
    pub position: u64,
}

impl QueuedReply {
    /// The reply for a waiter the engine queued with `priority`.
    pub fn new(q: &Enqueued, priority: Priority) -> Self {
        Self {
            locks: q.positions.iter().map(QueuedLock::from).collect(),
            priority,
            status: ReplyStatus::Queued,
            waiter_id: q.waiter_id.clone(),
        }
    }

    /// The request's place on its first lock (the one the span reports).
    pub fn first_position(&self) -> Option<u64> {
        self.locks.first().map(|l| l.position)
    }

    /// The body as sent: compact JSON and a newline.
    pub fn to_body(&self) -> String {
        // Strings, integers and unit variants: serializing cannot fail.
        let mut body = serde_json::to_string(self).unwrap_or_default();
        body.push('\n');
        body
    }
}

impl From<&QueuePosition> for QueuedLock {
    fn from(p: &QueuePosition) -> Self {
        Self {
            held_by_pull: p.held_by.as_ref().map(|h| h.number),
            key: p.key.clone(),
            position: p.position,
        }
    }
}

fn as_display<S: Serializer>(v: &impl Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::vocab::{PullRef, Vcs};

    fn enqueued() -> Enqueued {
        Enqueued {
            waiter_id: WaiterId {
                repo: "acme/infra".into(),
                seq: 7,
            },
            positions: vec![
                QueuePosition {
                    key: LockKey::new("acme/infra", "net", "default", "prod"),
                    position: 1,
                    held_by: Some(PullRef::new(Vcs::Github, "acme/infra", 12)),
                },
                QueuePosition {
                    key: LockKey::new("acme/infra", ".", "default", ""),
                    position: 3,
                    held_by: None,
                },
            ],
        }
    }

    #[test]
    fn serializes_to_the_bytes_of_the_untyped_body() {
        let q = enqueued();
        // The body as it was built before it had a type.
        let locks: Vec<serde_json::Value> = q
            .positions
            .iter()
            .map(|p| {
                json!({
                    "key": p.key.to_string(),
                    "position": p.position,
                    "held_by_pull": p.held_by.as_ref().map(|h| h.number),
                })
            })
            .collect();
        let untyped = json!({
            "status": "queued",
            "waiter_id": q.waiter_id.to_string(),
            "priority": Priority::High.as_str(),
            "locks": locks,
        });
        let reply = QueuedReply::new(&q, Priority::High);
        assert_eq!(reply.to_body(), format!("{untyped}\n"));
        assert_eq!(
            reply.to_body(),
            "{\"locks\":[{\"held_by_pull\":12,\"key\":\"acme/infra/net/default/prod\",\"position\":1},\
             {\"held_by_pull\":null,\"key\":\"acme/infra/./default/\",\"position\":3}],\
             \"priority\":\"high\",\"status\":\"queued\",\"waiter_id\":\"acme/infra:7\"}\n"
        );
    }

    #[test]
    fn every_priority_reads_as_its_label() {
        for p in Priority::ALL {
            let reply = QueuedReply::new(&enqueued(), p);
            let v: serde_json::Value = serde_json::from_str(&reply.to_body()).unwrap();
            assert_eq!(v["priority"], p.as_str());
        }
    }

    #[test]
    fn first_position_reads_the_first_lock() {
        assert_eq!(
            QueuedReply::new(&enqueued(), Priority::Normal).first_position(),
            Some(1)
        );
        let none = Enqueued {
            positions: Vec::new(),
            ..enqueued()
        };
        assert_eq!(
            QueuedReply::new(&none, Priority::Normal).first_position(),
            None
        );
    }
}
