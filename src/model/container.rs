//! Containers found through their processes' cgroups, carried from cycle to cycle.

use rustix::fd::OwnedFd;

/// What one cycle reads from a container's cgroup and one member's `net/dev`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CtrSample {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cpu_total_ns: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    pub mem_rss: u64,
    pub mem_cache: u64,
    pub mem_usage: u64,
    /// `None`: no limit.
    pub mem_limit: Option<u64>,
    pub mem_failcnt: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_packets: u64,
    pub net_tx_packets: u64,
    /// CPU limit in percent of one core (quota / period × 100); `None`: no limit.
    pub cpu_limit_pct: Option<f64>,
}

/// `O_PATH` handles on the container's cgroup directories (v1: one per controller; v2: one).
#[derive(Debug, Default)]
pub struct CgroupDirs {
    pub memory: Option<OwnedFd>,
    pub cpuacct: Option<OwnedFd>,
    pub cpu: Option<OwnedFd>,
    pub blkio: Option<OwnedFd>,
    pub unified: Option<OwnedFd>,
}

#[derive(Debug)]
pub struct Container {
    pub id: [u8; 64],
    /// `docker`, `containerd`, … as the cgroup path suggests; empty when unknown.
    pub runtime: &'static str,
    pub dirs: CgroupDirs,
    /// A process in the container this cycle (its `net/dev` is the container's network).
    pub member_pid: u32,
    pub seen_cycle: u64,
    /// Creation time in epoch ms (the cgroup directory's mtime, as the original agent does).
    pub created_ms: i64,
    pub cur: CtrSample,
    pub prev: Option<CtrSample>,
    /// How many times it has been sampled.
    pub samples: u32,
}

#[derive(Debug, Default)]
pub struct ContainerTable {
    pub containers: Vec<Container>,
    pub cycle: u64,
    pub mono_secs: f64,
    pub prev_mono_secs: Option<f64>,
}

impl ContainerTable {
    pub fn get(&self, id: &[u8]) -> Option<&Container> {
        self.containers.iter().find(|c| c.id[..] == *id)
    }
}

/// The container's rates: `[rbps, wbps, netRcvdPs, netSentPs, netRcvdBps, netSentBps, userPct,
/// systemPct, totalPct]`; zeros until two samples exist.
pub fn rates(c: &Container, t: &ContainerTable) -> [f64; 9] {
    let (Some(p), Some(prev_t)) = (c.prev, t.prev_mono_secs) else { return [0.0; 9] };
    let dt = t.mono_secs - prev_t;
    if dt <= 0.0 {
        return [0.0; 9];
    }
    let s = c.cur;
    let r = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt;
    let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 / (dt * 1e9) * 100.0;
    [
        r(p.io_read_bytes, s.io_read_bytes),
        r(p.io_write_bytes, s.io_write_bytes),
        r(p.net_rx_packets, s.net_rx_packets),
        r(p.net_tx_packets, s.net_tx_packets),
        r(p.net_rx_bytes, s.net_rx_bytes),
        r(p.net_tx_bytes, s.net_tx_bytes),
        pct(p.cpu_user_ns, s.cpu_user_ns),
        pct(p.cpu_system_ns, s.cpu_system_ns),
        pct(p.cpu_total_ns, s.cpu_total_ns),
    ]
}

/// Names of the raw metrics, in the order of [`rates`] followed by `memRss`, `memCache`.
pub const METRIC_NAMES: [&str; 11] = [
    "rbps",
    "wbps",
    "netRcvdPs",
    "netSentPs",
    "netRcvdBps",
    "netSentBps",
    "userPct",
    "systemPct",
    "totalPct",
    "memRss",
    "memCache",
];
