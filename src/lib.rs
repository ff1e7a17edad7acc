#![forbid(unsafe_code)]
//! atlantis-lock-proxy: a reverse proxy in front of Atlantis that intercepts its lock traffic.
//!
//! One request flows through the modules in this order (DESIGN.md §2):
//!
//! ```text
//! client ─► proxy (stack: errors → responses, body limits/timeouts)
//!        ─► classify (Operation)  ─► resolve (which project locks)  ─► route (legacy | enhanced | shadow)
//!        ─► engine (grant → upstream | queue → 202)  ─► upstream (Atlantis)
//! ```
//!
//! | module | role |
//! |---|---|
//! | [`config`] | YAML + `ALP_*` env + CLI flags → validated [`config::Config`] |
//! | [`app`] | builds everything, owns the listeners, graceful shutdown |
//! | [`proxy`] | the main listener's tower stack and request handling |
//! | [`route`] | traffic split (sticky per-repo hash), runtime state stored in the backend, circuit breaker, shadow diffing |
//! | [`classify`] | lock keys, pulls, priorities; later the `Operation` parser |
//! | [`engine`] | the lock engine |
//! | [`upstream`] | pooled client to Atlantis, header hygiene |
//! | [`admin`] | operator API: health, readiness, metrics, `/admin/*` |
//! | [`telemetry`] | logging, OpenTelemetry traces (OTLP), the Prometheus registry |

pub mod admin;
pub mod app;
pub mod classify;
pub mod config;
pub mod engine;
pub mod proxy;
pub mod resolve;
pub mod route;
pub mod telemetry;
pub mod upstream;
pub mod vcs;
