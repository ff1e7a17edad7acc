//! One notification worker: turns events into a created or edited comment, one at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::messages::{marker, render};
use super::{NotifyEvent, Shared};
use crate::vcs::{VcsClient, VcsError};

/// Serves one shard of the queue until the [`Notifier`](super::Notifier) is dropped.
pub(super) async fn run(
    mut rx: mpsc::Receiver<NotifyEvent>,
    shared: Arc<Shared>,
    cache_capacity: usize,
) {
    let mut ids = CommentIds::new(cache_capacity);
    while let Some(event) = rx.recv().await {
        handle(&shared, &mut ids, &event).await;
        shared.counters.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Rate-limit waits per event before it counts as failed.
const RATE_LIMIT_WAITS: u32 = 2;
/// Longest single wait for a rate limit (GitHub's hourly reset can be far off).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// What happened to one event.
enum Sent {
    Created,
    Edited,
}

async fn handle(shared: &Shared, ids: &mut CommentIds, event: &NotifyEvent) {
    let target = event.target();
    let vcs = target.vcs;
    let Some(client) = shared.client(vcs) else {
        return; // Checked before queueing; the settings cannot change since.
    };
    let c = &shared.counters;
    let mut waits = 0;
    let result = loop {
        match send(client, ids, event, &shared.executable_name).await {
            // The client sleeps through short limits itself but fails fast while another call
            // has the client blocked: wait here too, since the event is worth little later.
            Err(VcsError::RateLimited { retry_after }) if waits < RATE_LIMIT_WAITS => {
                waits += 1;
                c.rate_limited.fetch_add(1, Ordering::Relaxed);
                let wait = retry_after
                    .unwrap_or(MAX_RATE_LIMIT_WAIT)
                    .clamp(Duration::from_millis(100), MAX_RATE_LIMIT_WAIT);
                tracing::debug!(
                    vcs = vcs.as_str(),
                    ?wait,
                    "VCS rate limit: notification waits"
                );
                tokio::time::sleep(wait).await;
            }
            other => break other,
        }
    };
    match result {
        Ok(Sent::Created) => {
            c.created.fetch_add(1, Ordering::Relaxed);
            shared.count(vcs, "created");
        }
        Ok(Sent::Edited) => {
            c.edited.fetch_add(1, Ordering::Relaxed);
            shared.count(vcs, "edited");
        }
        Err(e) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            shared.count(vcs, "error");
            // VcsError names the endpoint and status only, never the token.
            tracing::warn!(
                vcs = vcs.as_str(),
                repo = %target.repo,
                pull = target.pull,
                waiter = %target.waiter_id,
                error = %e,
                kind = e.kind(),
                "could not comment on the pull request about its queued command"
            );
        }
    }
}

/// Edits the waiter's comment when one exists (remembered, or found by its marker), else posts it.
async fn send(
    client: &VcsClient,
    ids: &mut CommentIds,
    event: &NotifyEvent,
    exe: &str,
) -> Result<Sent, VcsError> {
    let t = event.target();
    let body = render(event, exe);
    let known = match ids.get(&t.waiter_id) {
        Some(id) => Some(id),
        None => {
            client
                .find_comment(&t.repo, t.pull, &marker(&t.waiter_id))
                .await?
        }
    };
    let (id, sent) = match known {
        Some(id) if client.edit_comment(&t.repo, t.pull, id, &body).await? => (id, Sent::Edited),
        // Never posted, or deleted by someone since: post it (again).
        _ => (
            client.create_comment(&t.repo, t.pull, &body).await?,
            Sent::Created,
        ),
    };
    if event.is_final() {
        ids.remove(&t.waiter_id);
    } else {
        ids.insert(t.waiter_id.clone(), id);
    }
    Ok(sent)
}

/// Waiter id → comment id, forgetting the oldest entries past a bound (a miss only costs a listing).
struct CommentIds {
    map: HashMap<String, u64>,
    order: VecDeque<String>,
    capacity: usize,
}

impl CommentIds {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, waiter: &str) -> Option<u64> {
        self.map.get(waiter).copied()
    }

    fn insert(&mut self, waiter: String, id: u64) {
        if self.map.insert(waiter.clone(), id).is_none() {
            self.order.push_back(waiter);
        }
        // `order` may hold ids already removed; bounding it too keeps memory bounded under churn.
        while self.map.len() > self.capacity || self.order.len() > 2 * self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn remove(&mut self, waiter: &str) {
        self.map.remove(waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_ids_stay_bounded_and_forget_the_oldest() {
        let mut ids = CommentIds::new(2);
        ids.insert("a".into(), 1);
        ids.insert("b".into(), 2);
        ids.insert("a".into(), 10);
        assert_eq!(ids.get("a"), Some(10));
        ids.insert("c".into(), 3);
        assert_eq!(ids.get("a"), None);
        assert_eq!((ids.get("b"), ids.get("c")), (Some(2), Some(3)));
        for n in 0..100 {
            ids.insert(format!("w{n}"), n);
            ids.remove(&format!("w{n}"));
        }
        assert!(ids.order.len() <= 4 && ids.map.len() <= 2);
    }
}
