//! The Lua scripts, each prefixed with the shared prelude; loaded once, run by EVALSHA.

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Every script the engine runs.
#[derive(Debug)]
pub struct Scripts {
    /// Acquire, acquire-or-enqueue and enqueue.
    pub acquire: Script,
    /// Release one key or a whole pull.
    pub release: Script,
    /// Remove a waiter (operator removal or deadlock victim).
    pub remove: Script,
    /// Queue timeouts, preemption, cleanup, lease re-offers, queue depth.
    pub maintain: Script,
    /// Confirm a dispatch.
    pub confirm: Script,
    /// Read one repository's holders and queues.
    pub snapshot: Script,
    /// Decide what a dispatch may send, right before it is sent.
    pub admit: Script,
    /// Repairs toward Atlantis: adopt, hand back, release a refused grant, forget a request.
    pub repair: Script,
    /// Whether a repository holds nothing (after taking it off the index).
    pub idle: Script,
    /// Refreshes this replica's lease and reads the others' (no prelude: one global key).
    pub members: Script,
    /// Moves a repository's keys from the raw-name hash tag (no prelude: other key base).
    pub migrate: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    /// Builds the scripts (hashes are computed here; Redis loads them on first NOSCRIPT).
    pub fn new() -> Self {
        Self {
            acquire: with_prelude(include_str!("lua/acquire.lua")),
            release: with_prelude(include_str!("lua/release.lua")),
            remove: with_prelude(include_str!("lua/remove.lua")),
            maintain: with_prelude(include_str!("lua/maintain.lua")),
            confirm: with_prelude(include_str!("lua/confirm.lua")),
            snapshot: with_prelude(include_str!("lua/snapshot.lua")),
            admit: with_prelude(include_str!("lua/admit.lua")),
            repair: with_prelude(include_str!("lua/repair.lua")),
            idle: with_prelude(include_str!("lua/idle.lua")),
            members: Script::new(include_str!("lua/members.lua")),
            migrate: Script::new(include_str!("lua/migrate.lua")),
        }
    }
}
