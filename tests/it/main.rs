//! The one integration test binary: every module below shares the support harness.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

mod support;

mod admin;
mod classify;
mod compat;
mod config_cli;
mod control;
mod deploy;
mod edges;
mod engine;
mod enhanced;
mod forwarding;
mod fuzz_smoke;
mod hardening;
mod notify;
mod resolve;
mod sim;
mod telemetry;
