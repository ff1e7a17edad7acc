//! Hardened edges (issue 14): who may move a lock, and what a hostile client can cost, through
//! the real HTTP path.

mod fds;
mod forwarded;
mod gating;
mod raw;
mod slow;
mod upgrade;
