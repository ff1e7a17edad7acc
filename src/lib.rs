#![forbid(unsafe_code)]
//! atlantis-lock-proxy: a reverse proxy in front of Atlantis.

pub mod classify;
pub mod engine;
pub mod resolve;
pub mod vcs;
