//! Deadlock detection on the wait-for graph between pulls of one repository.
//!
//! A waiter waits for the holder of each of its locks and, because the queue is strict (a waiter
//! is granted only at the head of every queue it is in), for every waiter ahead of it — except on
//! locks its own pull already holds, which never block it. A cycle of
//! pulls in that graph never resolves on its own; it is broken by failing the waiter of the lowest
//! priority, youngest first.

use std::collections::{BTreeMap, BTreeSet};

use crate::vocab::{Priority, PullId};

/// One queued waiter as the detector sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitNode {
    /// Per-repo waiter sequence (larger = younger).
    pub seq: u64,
    /// Its pull.
    pub pull: PullId,
    /// Its priority.
    pub priority: Priority,
}

/// A repository's lock state: holders (only unexpired ones block) and queues in grant order.
#[derive(Clone, Debug, Default)]
pub struct WaitGraphInput {
    /// Lock field → holder pull.
    pub holders: BTreeMap<String, PullId>,
    /// Lock field → waiters, head first.
    pub queues: BTreeMap<String, Vec<WaitNode>>,
}

/// A cycle and the waiter chosen to break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    /// Pulls around the cycle, starting at the victim's pull.
    pub cycle: Vec<PullId>,
    /// The waiter to fail.
    pub waiter: WaitNode,
}

/// Finds a wait-for cycle, if any, and picks its victim.
pub fn find_victim(input: &WaitGraphInput) -> Option<Victim> {
    // pull -> (pull it waits for -> waiters creating that edge)
    let mut edges: BTreeMap<PullId, BTreeMap<PullId, Vec<&WaitNode>>> = BTreeMap::new();
    for (field, queue) in &input.queues {
        for (i, w) in queue.iter().enumerate() {
            let holder = input.holders.get(field).copied();
            if holder == Some(w.pull) {
                continue; // its own lock: neither the holder nor those ahead block it here
            }
            let ahead = queue[..i].iter().map(|u| u.pull);
            for target in holder.into_iter().chain(ahead) {
                if target != w.pull {
                    edges
                        .entry(w.pull)
                        .or_default()
                        .entry(target)
                        .or_default()
                        .push(w);
                }
            }
        }
    }
    let cycle = find_cycle(&edges)?;
    let mut candidates: Vec<&WaitNode> = Vec::new();
    for (i, from) in cycle.iter().enumerate() {
        let to = cycle[(i + 1) % cycle.len()];
        if let Some(ws) = edges.get(from).and_then(|m| m.get(&to)) {
            candidates.extend(ws.iter().copied());
        }
    }
    let victim = candidates
        .into_iter()
        .min_by(|a, b| a.priority.cmp(&b.priority).then(b.seq.cmp(&a.seq)))?
        .clone();
    let start = cycle.iter().position(|p| *p == victim.pull).unwrap_or(0);
    let mut rotated = cycle[start..].to_vec();
    rotated.extend_from_slice(&cycle[..start]);
    Some(Victim {
        cycle: rotated,
        waiter: victim,
    })
}

/// Removes a waiter from the model so the next search sees the graph after the victim is failed.
pub fn remove_waiter(input: &mut WaitGraphInput, seq: u64) {
    for queue in input.queues.values_mut() {
        queue.retain(|w| w.seq != seq);
    }
}

fn find_cycle<V>(edges: &BTreeMap<PullId, BTreeMap<PullId, V>>) -> Option<Vec<PullId>> {
    let mut done: BTreeSet<PullId> = BTreeSet::new();
    for &start in edges.keys() {
        if done.contains(&start) {
            continue;
        }
        // Iterative DFS keeping the current path so a back edge yields the cycle itself.
        let mut path: Vec<PullId> = vec![start];
        let mut iters = vec![neighbours(edges, start)];
        let mut on_path: BTreeSet<PullId> = BTreeSet::from([start]);
        while let Some(it) = iters.last_mut() {
            match it.pop() {
                Some(next) if on_path.contains(&next) => {
                    let pos = path.iter().position(|p| *p == next).unwrap_or(0);
                    return Some(path[pos..].to_vec());
                }
                Some(next) if !done.contains(&next) => {
                    path.push(next);
                    on_path.insert(next);
                    iters.push(neighbours(edges, next));
                }
                Some(_) => {}
                None => {
                    iters.pop();
                    if let Some(p) = path.pop() {
                        on_path.remove(&p);
                        done.insert(p);
                    }
                }
            }
        }
    }
    None
}

fn neighbours<V>(edges: &BTreeMap<PullId, BTreeMap<PullId, V>>, node: PullId) -> Vec<PullId> {
    edges
        .get(&node)
        .map(|m| m.keys().rev().copied().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Vcs;

    fn p(n: i64) -> PullId {
        PullId::new(Vcs::Github, n)
    }

    fn node(seq: u64, pull: i64, priority: Priority) -> WaitNode {
        WaitNode {
            seq,
            pull: p(pull),
            priority,
        }
    }

    #[test]
    fn no_cycle_when_waiters_only_wait_for_a_free_running_holder() {
        let mut g = WaitGraphInput::default();
        g.holders.insert("x".into(), p(1));
        g.queues.insert(
            "x".into(),
            vec![node(1, 2, Priority::Normal), node(2, 3, Priority::Normal)],
        );
        assert_eq!(find_victim(&g), None);
    }

    #[test]
    fn two_pull_cycle_fails_the_lower_priority_waiter() {
        let mut g = WaitGraphInput::default();
        g.holders.insert("x".into(), p(1));
        g.holders.insert("y".into(), p(2));
        g.queues
            .insert("y".into(), vec![node(1, 1, Priority::High)]);
        g.queues.insert("x".into(), vec![node(2, 2, Priority::Low)]);
        let v = find_victim(&g).expect("cycle");
        assert_eq!(v.waiter.seq, 2);
        assert_eq!(v.cycle, vec![p(2), p(1)]);
    }

    #[test]
    fn equal_priorities_fail_the_youngest() {
        let mut g = WaitGraphInput::default();
        for (f, n) in [("a", 1), ("b", 2), ("c", 3)] {
            g.holders.insert(f.into(), p(n));
        }
        g.queues
            .insert("b".into(), vec![node(5, 1, Priority::Normal)]);
        g.queues
            .insert("c".into(), vec![node(9, 2, Priority::Normal)]);
        g.queues
            .insert("a".into(), vec![node(7, 3, Priority::Normal)]);
        let v = find_victim(&g).expect("cycle");
        assert_eq!(v.waiter.seq, 9);
        assert_eq!(v.cycle.len(), 3);
        remove_waiter(&mut g, 9);
        assert_eq!(find_victim(&g), None);
    }

    #[test]
    fn waiting_behind_a_queued_pull_counts_as_an_edge() {
        // Pull 1 holds x and queues for f behind pull 2, which queues for x: a real deadlock
        // because the strict queue reserves f for pull 2.
        let mut g = WaitGraphInput::default();
        g.holders.insert("x".into(), p(1));
        g.holders.insert("f".into(), p(9));
        g.queues.insert(
            "f".into(),
            vec![node(1, 2, Priority::Normal), node(2, 1, Priority::Normal)],
        );
        g.queues
            .insert("x".into(), vec![node(1, 2, Priority::Normal)]);
        let v = find_victim(&g).expect("cycle");
        assert_eq!(v.waiter.seq, 2);
    }

    #[test]
    fn queueing_on_a_lock_the_pull_holds_is_no_edge() {
        // Pull 1 holds a and queues for a and b; pull 2 waits for a ahead of it.
        let mut g = WaitGraphInput::default();
        g.holders.insert("a".into(), p(1));
        g.holders.insert("b".into(), p(3));
        g.queues.insert(
            "a".into(),
            vec![node(1, 2, Priority::High), node(2, 1, Priority::Normal)],
        );
        g.queues
            .insert("b".into(), vec![node(2, 1, Priority::Normal)]);
        assert_eq!(find_victim(&g), None);
    }

    #[test]
    fn pulls_of_two_vcss_with_one_number_are_two_nodes() {
        // GitHub pull 1 holds x and waits for y; GitLab MR 1 holds y and waits for x: a real
        // cycle between two pulls, not one pull re-entering its own locks.
        let gl = |n| PullId::new(Vcs::Gitlab, n);
        let mut g = WaitGraphInput::default();
        g.holders.insert("x".into(), p(1));
        g.holders.insert("y".into(), gl(1));
        g.queues
            .insert("y".into(), vec![node(1, 1, Priority::Normal)]);
        g.queues.insert(
            "x".into(),
            vec![WaitNode {
                seq: 2,
                pull: gl(1),
                priority: Priority::Low,
            }],
        );
        let v = find_victim(&g).expect("cycle");
        assert_eq!((v.waiter.seq, v.cycle), (2, vec![gl(1), p(1)]));
    }
}
