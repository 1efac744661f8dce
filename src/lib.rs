//! sts-agent: reports a host's topology, telemetry, connections and traces to StackState,
//! from one thread and one `mio` event loop. See `README.md` and `../shared/design.md`.
#![deny(unsafe_code)]

pub mod parse;
