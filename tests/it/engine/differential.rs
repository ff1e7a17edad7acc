//! Differential check: random operation sequences give the same observable results on the memory
//! engine and on Redis (grants, tokens, blockers, queue positions, dispatches, deadlock victims).

use std::sync::Arc;

use atlantis_lock_proxy::classify::Priority;
use atlantis_lock_proxy::engine::{
    AcquireOutcome, Dispatch, DispatchReceiver, EngineSettings, LockEngine, MemoryEngine,
    QueueOutcome, WaiterId,
};
use proptest::prelude::*;

use super::ctx::{Backend, Ctx, key, pull, req};

#[derive(Clone, Debug)]
enum Op {
    Acquire(i64, Vec<usize>, Priority),
    AcquireOrEnqueue(i64, Vec<usize>, Priority),
    Enqueue(i64, Vec<usize>, Priority),
    Release(usize, Option<i64>),
    ReleasePull(i64),
    RemoveWaiter(usize),
    CheckDeadlocks,
}

const DIRS: [&str; 4] = ["a", "b", "c", "d"];

fn locks() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=2)
}

fn priority() -> impl Strategy<Value = Priority> {
    proptest::sample::select(Priority::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..5i64, locks(), priority()).prop_map(|(p, l, r)| Op::Acquire(p, l, r)),
        4 => (1..5i64, locks(), priority()).prop_map(|(p, l, r)| Op::AcquireOrEnqueue(p, l, r)),
        1 => (1..5i64, locks(), priority()).prop_map(|(p, l, r)| Op::Enqueue(p, l, r)),
        2 => (0..4usize, proptest::option::of(1..5i64)).prop_map(|(k, p)| Op::Release(k, p)),
        2 => (1..5i64).prop_map(Op::ReleasePull),
        1 => (0..8usize).prop_map(Op::RemoveWaiter),
        1 => Just(Op::CheckDeadlocks),
    ]
}

fn request(p: i64, l: &[usize], r: Priority) -> atlantis_lock_proxy::engine::AcquireRequest {
    let dirs: Vec<&str> = l.iter().map(|i| DIRS[*i]).collect();
    req(p, r, &dirs)
}

/// Applies one op and renders everything observable, without wall-clock times.
async fn apply(
    e: &dyn LockEngine,
    rx: &mut DispatchReceiver,
    op: &Op,
    waiters: &[WaiterId],
) -> String {
    let out = match op {
        Op::Acquire(p, l, r) => match e.acquire(request(*p, l, *r)).await {
            Ok(AcquireOutcome::Granted(g)) => {
                format!("granted {} {:?}", g.fencing_token, g.preempted)
            }
            Ok(AcquireOutcome::Held { by }) => format!("held {by:?}"),
            Err(err) => format!("error {err}"),
        },
        Op::AcquireOrEnqueue(p, l, r) => {
            match e
                .acquire_or_enqueue(request(*p, l, *r), vec![*p as u8])
                .await
            {
                Ok(QueueOutcome::Granted(g)) => {
                    format!("granted {} {:?}", g.fencing_token, g.preempted)
                }
                Ok(QueueOutcome::Queued(q)) => format!("queued {} {:?}", q.waiter_id, q.positions),
                Ok(QueueOutcome::Forgotten) => "forgotten".to_owned(),
                Err(err) => format!("error {err}"),
            }
        }
        Op::Enqueue(p, l, r) => match e.enqueue(request(*p, l, *r), vec![*p as u8]).await {
            Ok(q) => format!("queued {} {:?}", q.waiter_id, q.positions),
            Err(err) => format!("error {err}"),
        },
        Op::Release(k, by) => format!(
            "{:?}",
            e.release(key(DIRS[*k]), by.map(pull))
                .await
                .expect("release")
        ),
        Op::ReleasePull(p) => {
            let mut s = e.release_pull(pull(*p)).await.expect("release pull");
            s.released.sort();
            s.removed_waiters.sort();
            format!("{s:?}")
        }
        Op::RemoveWaiter(i) => match waiters.get(*i) {
            Some(id) => format!(
                "removed {}",
                e.remove_waiter(id.clone()).await.expect("remove")
            ),
            None => "no waiter".to_owned(),
        },
        Op::CheckDeadlocks => {
            let found = e.check_deadlocks().await.expect("check");
            format!(
                "deadlocks {:?}",
                found
                    .iter()
                    .map(|d| (&d.victim, &d.cycle))
                    .collect::<Vec<_>>()
            )
        }
    };
    let mut dispatched: Vec<Dispatch> = Vec::new();
    while let Ok(d) = rx.try_recv() {
        e.confirm(&d).await.expect("confirm");
        dispatched.push(d);
    }
    dispatched.sort_by(|a, b| a.id.cmp(&b.id));
    let rendered: Vec<String> = dispatched
        .iter()
        .map(|d| {
            format!(
                "{} {:?} pull {} token {:?} preempted {:?} locks {:?} payload {:?}",
                d.id, d.reason, d.pull.number, d.fencing_token, d.preempted, d.locks, d.payload
            )
        })
        .collect();
    format!("{out} | dispatched {rendered:?}")
}

fn settings() -> EngineSettings {
    EngineSettings {
        enable_events: false,
        max_queue_size: 3,
        ..EngineSettings::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_redis_agree(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let mut ctx = Ctx::new(Backend::Redis).await;
            *ctx.settings() = settings();
            let redis = ctx.engine().await;
            let memory: Arc<dyn LockEngine> = Arc::new(MemoryEngine::new(settings()));
            let mut rx_r = redis.take_dispatches().expect("dispatches");
            let mut rx_m = memory.take_dispatches().expect("dispatches");
            let mut waiters: Vec<WaiterId> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let m = apply(&*memory, &mut rx_m, op, &waiters).await;
                let r = apply(&*redis, &mut rx_r, op, &waiters).await;
                assert_eq!(m, r, "step {i}: {op:?} diverged\nops: {ops:?}");
                if let Some(id) = m.strip_prefix("queued ").and_then(|s| s.split_whitespace().next()) {
                    waiters.push(id.parse().expect("waiter id"));
                }
            }
            let locks = |v: Vec<atlantis_lock_proxy::engine::LockInfo>| {
                v.into_iter().map(|l| (l.key, l.pull, l.fencing_token)).collect::<Vec<_>>()
            };
            assert_eq!(locks(memory.list_locks().await.expect("m")), locks(redis.list_locks().await.expect("r")));
            let queues = |v: Vec<atlantis_lock_proxy::engine::QueueInfo>| {
                v.into_iter()
                    .map(|q| (q.key, q.waiters.into_iter().map(|w| (w.id, w.position)).collect::<Vec<_>>()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(queues(memory.list_queues().await.expect("m")), queues(redis.list_queues().await.expect("r")));
        });
    }
}
