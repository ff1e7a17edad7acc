//! The one integration test binary: real sockets, real `redis-server`.

mod engine;
mod support;
