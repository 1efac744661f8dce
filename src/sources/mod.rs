//! Sources own file descriptors and reused scratch buffers and call the pure parsers.

pub mod cgroups;
pub mod connections;
pub mod docker;
pub mod docker_events;
pub mod dogstatsd;
pub mod ecs;
pub mod host;
pub mod meta;
pub mod new_pids;
pub mod process;
pub mod procfs;
pub mod sysinfo;
pub mod trace_intake;

/// When a metadata source asked to refresh early (an unknown container appeared) may start: now,
/// but no sooner than two seconds after its previous start, so a burst of new containers costs one
/// look-up.
pub(crate) fn refresh_soon(last_start: Option<std::time::Instant>, now: std::time::Instant) -> std::time::Instant {
    last_start.map_or(now, |t| (t + std::time::Duration::from_secs(2)).max(now))
}
