//! engine: the lock engine (DESIGN.md §3).
