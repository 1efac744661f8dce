//! Pure parsers: `&[u8]` in, borrowed views or caller-owned fixed structs out. No I/O, no clock,
//! no allocation, no panic on any input (each has a fuzz target in `fuzz/`).

pub mod cgroup;
pub mod cgroup_stats;
pub mod cursor;
pub mod diskstats;
pub mod dns;
pub mod docker;
pub mod docker_events;
pub mod dogstatsd;
pub mod ecs;
pub mod features;
pub mod file_nr;
pub mod gzip;
pub mod http_head;
pub mod inet_diag;
pub mod json_reader;
pub mod keyval;
pub mod loadavg;
pub mod meminfo;
pub mod mountinfo;
pub mod msgpack;
pub mod net_dev;
pub mod otlp;
pub mod packet;
pub mod passwd;
pub mod pid;
pub mod proc_stat;
pub mod protobuf;
pub mod rtnl_link;
pub mod smaps;
pub mod snmp;
pub mod sockstat;
pub mod traces;

pub use cursor::ParseError;

#[cfg(test)]
mod reference;
