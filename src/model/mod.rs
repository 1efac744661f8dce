//! Plain data: this cycle's snapshot and the previous one for deltas. Storage is reused.

pub mod connection;
pub mod container;
pub mod ddsketch;
pub mod docker;
pub mod host;
pub mod http_flows;
pub mod names;
pub mod process;
pub mod trace;
