//! Sources own file descriptors and reused scratch buffers and call the pure parsers.

pub mod cgroups;
pub mod docker;
pub mod ecs;
pub mod host;
pub mod meta;
pub mod process;
pub mod procfs;
pub mod sysinfo;
