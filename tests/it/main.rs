//! Integration tests: one binary, one module per area.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used)]

mod resolve;
mod support;
