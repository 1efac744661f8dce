//! Checks turn snapshots into what StackState wants. Pure: no I/O, no clock.

pub mod connections;
pub mod docker;
pub mod docker_events;
pub mod dogstatsd;
pub mod dogstatsd_events;
pub mod host_metrics;
pub mod metric;
pub mod obfuscate;
pub mod otel_interpret;
pub mod process;
pub mod sampling;
pub mod scrub;
pub mod traces;
pub mod truncate;
