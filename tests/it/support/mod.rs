//! Shared integration-test helpers.

pub mod redis;
