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
//! | [`app`] | builds everything, owns the listeners and background tasks, graceful shutdown |
//! | [`proxy`] | the main listener's tower stack; lock traffic handed to the steps below |
//! | [`classify`] | one request → one `Operation`, exactly as Atlantis parses it |
//! | [`resolve`] | which projects a bare `atlantis plan` / autoplan locks (project table, VCS API) |
//! | [`route`] | traffic split, live routing state and its store, circuit breaker, shadow diffing |
//! | [`enhanced`] | the enhanced path: gate, queue-and-replay dispatcher, reconciler |
//! | [`engine`] | the lock engine: `LockEngine` with Redis and in-memory backends |
//! | [`upstream`] | pooled client to Atlantis, header hygiene, stored requests and replay |
//! | [`notify`] | comments on the pull request about queued commands |
//! | [`vcs`] | GitHub and GitLab REST clients (resolver, notifier) |
//! | [`admin`] | operator API and the CLI client for it |
//! | [`telemetry`] | logging, OpenTelemetry traces (OTLP), the Prometheus registry |

pub mod admin;
pub mod app;
pub mod classify;
pub mod config;
pub mod engine;
pub mod enhanced;
pub mod listener;
pub mod notify;
pub mod proxy;
pub mod resolve;
pub mod route;
pub mod supervise;
pub mod telemetry;
pub mod throttle;
pub mod upstream;
pub mod vcs;
pub mod vocab;
