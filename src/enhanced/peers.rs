//! Replica leases: replicas sharing one engine never decide a lock two ways at once (§10.1).
//!
//! A replica out of step with Atlantis (its engine calls failed, or its repair has not run yet)
//! may forward lock traffic past the engine, and Atlantis then takes locks the engine does not
//! know. Another replica granting from the engine meanwhile would send a plan into such a lock.
//! During an outage the replica cannot say so through the engine, so silence speaks for it:
//!
//! 1. Every replica refreshes a lease in the engine every [`PERIOD`], saying whether it is in
//!    step, and reads the others' leases.
//! 2. A replica sends a grant (direct or replayed) only while every other replica's lease says
//!    in step and will still for [`MARGIN`] (so its view is fresh, too).
//! 3. A replica forwards lock traffic past the engine only once no other replica can still
//!    count on it: [`LEASE`] after its last in-step refresh, or [`PERIOD`] after it said it is out
//!    of step, plus [`MARGIN`].
//! 4. A replica that saw another out of step and then lost sight of it (a crash, or cut off for
//!    [`FORGET`]) repairs itself from Atlantis before it grants again: what that one forwarded
//!    past the engine is in Atlantis's lock table, not in the engine.
//!
//! The in-memory engine has no other replica: its leases are always clear.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::engine::PeerState;

/// How long a lease counts after its refresh (on the engine's clock).
pub(crate) const LEASE: Duration = Duration::from_millis(1500);
/// How often each replica refreshes its lease and reads the others'.
pub(crate) const PERIOD: Duration = Duration::from_millis(250);
/// Time kept between a grant's last check and the moment another replica may bypass: a grant
/// reaches Atlantis within it.
pub(crate) const MARGIN: Duration = Duration::from_millis(500);
/// A lease not refreshed for this long is forgotten (its replica stopped or is cut off).
pub(crate) const FORGET: Duration = Duration::from_secs(3);
/// How long a lock request waits for this replica's repair and the others' leases before it
/// goes to Atlantis on the legacy path.
pub(crate) const STEP_WAIT: Duration = Duration::from_secs(5);

/// This replica's view of the others.
#[derive(Default)]
pub(crate) struct Peers {
    view: Mutex<View>,
    /// Wakes the lease task early (this replica just fell out of step).
    pub(crate) wake: Notify,
}

#[derive(Default)]
struct View {
    /// No other replica can share the engine (in-memory).
    alone: bool,
    /// Until when grants may be sent, as far as the others go (`None`: not known yet).
    safe_until: Option<Instant>,
    /// When the last refresh saying "in step" was answered.
    live_ok: Option<Instant>,
    /// When the last refresh saying "out of step" was answered.
    out_ok: Option<Instant>,
    /// When the first refresh saying "out of step" after the last in-step one was answered.
    out_since: Option<Instant>,
    /// The last refresh failed: the engine's backend does not answer this replica.
    unreachable: bool,
    /// Others seen out of step (or with a lapsed lease) in the last view.
    lagging: HashSet<String>,
}

impl Peers {
    /// The view of a replica whose engine `shared` with others (or not: always clear).
    pub(crate) fn new(shared: bool) -> Self {
        let p = Self::default();
        p.view().alone = !shared;
        p
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a grant may be sent now, as far as the other replicas go.
    pub(crate) fn clear(&self) -> bool {
        let v = self.view();
        v.alone || v.safe_until.is_some_and(|t| Instant::now() < t)
    }

    /// Whether no other replica can still count on this one being in step (rule 3).
    pub(crate) fn bypass_ready(&self) -> bool {
        let v = self.view();
        if v.alone {
            return true;
        }
        // Once its in-step lease is FORGET old, the others may have forgotten this replica and
        // grant as if it were gone (they cannot while the backend is down for everyone): it is
        // safe only once it has been seen out of step again, for longer than the others' grant
        // window.
        let now = Instant::now();
        if let Some(l) = v.live_ok
            && now >= l + FORGET
            && !v.unreachable
        {
            return v
                .out_since
                .is_some_and(|o| o >= l && now >= o + LEASE + MARGIN);
        }
        let live = v.live_ok.map(|t| t + LEASE);
        let out = v
            .out_ok
            .filter(|o| v.live_ok.is_none_or(|l| *o >= l))
            .map(|t| t + PERIOD);
        let bound = match (live, out) {
            (Some(l), Some(o)) => l.min(o),
            (Some(t), None) | (None, Some(t)) => t,
            // Never announced: nobody counts on it.
            (None, None) => return true,
        };
        Instant::now() >= bound + MARGIN
    }

    /// The last refresh failed.
    pub(crate) fn unreachable(&self) {
        self.view().unreachable = true;
    }

    /// Records a refresh sent at `sent` (saying `in_step`) and answered now with `peers`.
    /// True when a replica seen out of step is gone (rule 4: this one must repair).
    pub(crate) fn observe(&self, sent: Instant, in_step: bool, peers: Vec<PeerState>) -> bool {
        let now = Instant::now();
        let mut v = self.view();
        v.unreachable = false;
        if in_step {
            v.live_ok = Some(now);
        } else {
            v.out_ok = Some(now);
            if v.out_since.is_none_or(|o| v.live_ok.is_some_and(|l| o < l)) {
                v.out_since = Some(now);
            }
        }
        // The view is as old as the request: every lease is counted from when it was sent.
        let mut until = sent + LEASE.saturating_sub(MARGIN);
        let mut lagging = HashSet::new();
        for p in &peers {
            let left = LEASE.saturating_sub(p.age);
            if !p.in_step || left <= MARGIN {
                lagging.insert(p.id.clone());
                until = sent;
            } else {
                until = until.min(sent + left - MARGIN);
            }
        }
        let gone = v
            .lagging
            .iter()
            .any(|id| !peers.iter().any(|p| &p.id == id));
        v.safe_until = Some(until);
        v.lagging = lagging;
        gone
    }

    /// The replicas seen out of step in the last view, for logs and status.
    pub(crate) fn lagging(&self) -> Vec<String> {
        let mut l: Vec<String> = self.view().lagging.iter().cloned().collect();
        l.sort();
        l
    }
}

impl super::Enhanced {
    /// Whether a grant may be sent to Atlantis now: this replica is in step with Atlantis and
    /// so is every other replica sharing the engine (rule 2).
    pub(crate) fn may_grant(&self) -> bool {
        self.synced() && self.peers.clear()
    }

    /// Waits up to `max` for [`Self::may_grant`]; true when it holds.
    pub(crate) async fn wait_may_grant(&self, max: Duration) -> bool {
        let until = Instant::now() + max;
        loop {
            if self.may_grant() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Before lock traffic goes to Atlantis past the engine: this replica counts as out of step
    /// (it repairs before granting again), and waits until no other replica can still count on
    /// it (rule 3).
    /// Grants this replica sent before it fell out of step get [`MARGIN`] to reach Atlantis
    /// first, and its repair waits until the request is on its way (its settle window starts
    /// when the request leaves).
    pub(crate) async fn before_bypass(&self) {
        use std::sync::atomic::Ordering;
        self.bypassing.fetch_add(1, Ordering::AcqRel);
        self.engine_lost_sync();
        self.peers.wake.notify_one();
        let lost = self
            .lost_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or_else(Instant::now);
        let until = Instant::now() + LEASE + PERIOD + MARGIN;
        while (!self.peers.bypass_ready() || Instant::now() < lost + MARGIN)
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The request leaves now: the repair's settle window counts from here.
        self.forwarded_past_engine();
        self.bypassing.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether lock requests are waiting to go past the engine (the repair waits for them).
    pub(crate) fn bypass_pending(&self) -> bool {
        self.bypassing.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// The lease task: refreshes this replica's lease every [`PERIOD`] (at once when it falls
    /// out of step), reads the others', and takes the lease away on a clean stop.
    pub fn spawn_lease(
        self: &std::sync::Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if !this.engine.shared() {
                stop.cancelled().await;
                return;
            }
            let mut failing = false;
            loop {
                let in_step = this.synced();
                let sent = Instant::now();
                match this.engine.heartbeat(in_step, FORGET).await {
                    Ok(peers) => {
                        if failing {
                            tracing::info!("replica lease refreshed again");
                            failing = false;
                        }
                        let before = this.peers.lagging();
                        if this.peers.observe(sent, in_step, peers) {
                            tracing::warn!(
                                replicas = ?before,
                                "a replica seen out of step is gone: repairing from Atlantis's lock table before granting"
                            );
                            this.engine_lost_sync();
                        }
                        let after = this.peers.lagging();
                        if after != before && !after.is_empty() {
                            tracing::info!(replicas = ?after, "replicas out of step: grants wait for them");
                        }
                    }
                    Err(e) => {
                        this.peers.unreachable();
                        if !failing {
                            tracing::warn!(error = %e, "cannot refresh the replica lease; will keep trying");
                            failing = true;
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(PERIOD) => {}
                    () = this.peers.wake.notified() => {}
                }
            }
            if let Err(e) = this.engine.leave().await {
                tracing::warn!(error = %e, "could not take the replica lease away");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, in_step: bool, age_ms: u64) -> PeerState {
        PeerState {
            id: id.into(),
            in_step,
            age: Duration::from_millis(age_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn grants_only_while_every_other_lease_says_in_step() {
        let p = Peers::default();
        assert!(!p.clear(), "nothing known yet");
        assert!(!p.observe(Instant::now(), true, vec![peer("b", true, 100)]));
        assert!(p.clear());
        // The view ages: without a refresh the grant window closes before b's lease could lapse.
        tokio::time::advance(LEASE - MARGIN - Duration::from_millis(100)).await;
        assert!(!p.clear());
        assert!(!p.observe(Instant::now(), true, vec![peer("b", false, 10)]));
        assert!(!p.clear(), "b is out of step");
        assert_eq!(p.lagging(), vec!["b".to_string()]);
        // b comes back in step: clear again; b forgotten while out of step: repair.
        assert!(!p.observe(Instant::now(), true, vec![peer("b", true, 10)]));
        assert!(p.clear());
        assert!(!p.observe(Instant::now(), true, vec![peer("b", true, 1400)]));
        assert!(!p.clear(), "b's lease is about to lapse");
        assert!(
            p.observe(Instant::now(), true, vec![]),
            "b gone while lagging"
        );
        assert!(p.clear());
    }

    #[tokio::test(start_paused = true)]
    async fn bypass_waits_until_nobody_counts_on_this_replica() {
        let p = Peers::default();
        assert!(p.bypass_ready(), "never announced");
        p.observe(Instant::now(), true, vec![]);
        assert!(!p.bypass_ready());
        tokio::time::advance(LEASE + MARGIN - Duration::from_millis(1)).await;
        assert!(!p.bypass_ready());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(p.bypass_ready());
        // Saying "out of step" shortens the wait to one period.
        p.observe(Instant::now(), true, vec![]);
        p.observe(Instant::now(), false, vec![]);
        tokio::time::advance(PERIOD + MARGIN).await;
        assert!(p.bypass_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn alone_is_always_clear() {
        let p = Peers::new(false);
        assert!(p.clear());
        assert!(p.bypass_ready());
    }
}
