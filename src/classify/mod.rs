//! classify: turn one HTTP request into one [`Operation`] (DESIGN.md §2 step 1).

mod key;

pub use key::{LockKey, LockMode, Priority, PullRef};
