//! sts-agent: reports a host's topology, telemetry, connections and traces to StackState,
//! from one thread and one `mio` event loop. See `README.md` and `../shared/design.md`.
#![deny(unsafe_code)]

#[macro_use]
pub mod log;
pub mod alloc_count;
pub mod app;
pub mod checks;
pub mod config;
pub mod control;
pub mod encode;
pub mod fmt;
pub mod model;
pub mod outbox;
pub mod parse;
pub mod sources;
pub mod sys;
#[cfg(test)]
mod testing;
pub mod transport;
pub mod url;
