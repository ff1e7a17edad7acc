//! Mutual exclusion under contention and faults (DESIGN.md §10), explored two ways:
//!
//! - **seeded simulation** (`seeds`): many short runs, each a sequence of plans, unlocks, closes,
//!   pauses, queue timeouts and deadlocks drawn from a seed, against the real proxy (gate,
//!   dispatcher, reconciler, engine) and a model Atlantis that processes webhooks asynchronously
//!   with seeded delays. Redis runs add Redis pauses, Redis restarts and replica crashes (real
//!   processes, `kill -9`). The invariants are checked after every step; a failing seed prints
//!   its whole trace and how to replay it (`ALP_SIM_SEED=<seed>`).
//! - **load with faults** (`load`): two replicas on one Redis, thousands of operations over
//!   40 pulls and 15 locks, a Redis kill and restart and a replica kill with waiters queued;
//!   it reports conflicts, lost, duplicated and unanswered requests and the recovery time.
//!
//! What is a failure: an admitted request (a grant, or a replayed grant) that Atlantis refused
//! because another pull held the lock (`conflicts`); a request not answered with 200/202; a
//! queued request of a pull that never released that neither reached Atlantis nor is queued at
//! the end (`lost`); a queued command replayed for a closed pull; the engine and Atlantis naming
//! different holders once everything settled.

mod load;
mod replicas;
mod seeds;
mod world;
