//! Encoders append bytes to a caller's buffer; nothing here does I/O.

pub mod compress;
pub mod connections_msg;
pub mod container_topology;
pub mod docker_events;
pub mod http_metrics;
pub mod intake;
pub mod json;
pub mod process_intake;
pub mod process_json;
pub mod process_msg;
pub mod proto;
pub mod series;
pub mod split;
pub mod trace_json;
pub mod trace_payload;
