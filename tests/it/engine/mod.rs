//! The engine conformance suite: the same cases against memory, a real `redis-server` and a real
//! 6-node Redis Cluster, plus a multi-instance concurrency check.

mod cases;
mod ctx;
mod differential;
mod hammer;
mod keys;
mod limits;
mod outage;

/// Instantiates every conformance case for one backend.
macro_rules! conformance {
    ($name:ident, $backend:expr) => {
        mod $name {
            use super::cases;
            use super::ctx::{Backend, Ctx};

            async fn ctx() -> Ctx {
                Ctx::new($backend).await
            }

            #[tokio::test]
            async fn release_pull_keeps_landing_grants() {
                cases::release_pull_keeping(ctx().await).await;
            }
            #[tokio::test]
            async fn hand_back_after_release_is_dropped() {
                cases::hand_back_after_release(ctx().await).await;
            }
            #[tokio::test]
            async fn defer_leaves_a_grant_admitted_elsewhere() {
                cases::defer_leaves_a_grant_admitted_elsewhere(ctx().await).await;
            }
            #[tokio::test]
            async fn release_fence_holds_back_hand_offs() {
                cases::release_fence_holds_back_hand_offs(ctx().await).await;
            }
            #[tokio::test]
            async fn mutual_exclusion() {
                cases::mutual_exclusion(ctx().await).await;
            }
            #[tokio::test]
            async fn all_or_nothing() {
                cases::all_or_nothing(ctx().await).await;
            }
            #[tokio::test]
            async fn reentrant_for_the_same_pull() {
                cases::reentrant(ctx().await).await;
            }
            #[tokio::test]
            async fn priority_order_with_fifo_ties() {
                cases::priority_order(ctx().await).await;
            }
            #[tokio::test]
            async fn aging_lets_low_priority_overtake() {
                cases::aging(ctx().await).await;
            }
            #[tokio::test]
            async fn queue_limit_rejects() {
                cases::queue_limit(ctx().await).await;
            }
            #[tokio::test]
            async fn queue_timeout_dispatches_the_request() {
                cases::queue_timeout(ctx().await).await;
            }
            #[tokio::test]
            async fn expired_lock_is_preempted() {
                cases::preemption(ctx().await).await;
            }
            #[tokio::test]
            async fn fencing_tokens_increase() {
                cases::fencing(ctx().await).await;
            }
            #[tokio::test]
            async fn deadlock_broken_with_the_right_victim() {
                cases::deadlock(ctx().await).await;
            }
            #[tokio::test]
            async fn multi_lock_waiter_needs_all_locks() {
                cases::multi_lock_waiter(ctx().await).await;
            }
            #[tokio::test]
            async fn release_pull_and_remove_waiter() {
                cases::release_pull_and_remove(ctx().await).await;
            }
            #[tokio::test]
            async fn unconfirmed_dispatch_is_reoffered() {
                cases::reoffer(ctx().await).await;
            }
            #[tokio::test]
            async fn newcomer_outranks_a_reserving_waiter() {
                cases::newcomer_outranks_reservation(ctx().await).await;
            }
            #[tokio::test]
            async fn shadow_keyspace_is_separate() {
                cases::shadow_keyspace_is_separate(ctx().await).await;
            }
            #[tokio::test]
            async fn scripts_reload_after_flush() {
                cases::scripts_reload_after_flush(ctx().await).await;
            }
            #[tokio::test]
            async fn own_lock_never_blocks_a_waiter() {
                cases::own_lock_never_blocks_a_waiter(ctx().await).await;
            }
            #[tokio::test]
            async fn hold_timeouts_by_priority_and_cap() {
                cases::hold_timeouts(ctx().await).await;
            }
            #[tokio::test]
            async fn fifo_without_priority_queue() {
                cases::fifo_without_priority_queue(ctx().await).await;
            }
            #[tokio::test]
            async fn periodic_deadlock_check() {
                cases::periodic_deadlock_check(ctx().await).await;
            }
            #[tokio::test]
            async fn memory_caps_on_stored_requests() {
                super::limits::memory_caps(ctx().await).await;
            }
            #[tokio::test]
            async fn pulls_of_two_vcss_are_two_holders() {
                cases::pulls_of_two_vcss_are_two_holders(ctx().await).await;
            }
            #[tokio::test]
            async fn waiters_survive_restart() {
                cases::restart(ctx().await).await;
            }
        }
    };
}

conformance!(memory, Backend::Memory);
conformance!(redis, Backend::Redis);
conformance!(cluster, Backend::Cluster);
