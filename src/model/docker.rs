//! What the docker check's pass reads of a container (spec/docker-check.md §2.3): the process
//! check's figures ([`CtrSample`]) and what only the `docker.*` series need (shares, limits,
//! swap, kernel memory, per-device I/O, per-interface network, open descriptors). Fixed-size and
//! `Copy`, held in each [`Container`](super::container::Container), so a pass allocates nothing.

use super::container::CtrSample;
pub use crate::parse::cgroup_stats::DeviceIo;

/// At most this many block devices and network interfaces per container are reported.
pub const MAX_DEVICES: usize = 8;
pub const MAX_IFACES: usize = 8;

/// One network interface of the container's network namespace (`lo` excluded).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct IfaceNet {
    name: [u8; 16],
    name_len: u8,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl IfaceNet {
    /// `name` is cut at 16 bytes (IFNAMSIZ, NUL included, so never cut in practice).
    pub fn new(name: &[u8], rx_bytes: u64, tx_bytes: u64) -> IfaceNet {
        let mut n = [0u8; 16];
        let len = name.len().min(16);
        n[..len].copy_from_slice(&name[..len]);
        IfaceNet { name: n, name_len: len as u8, rx_bytes, tx_bytes }
    }

    pub fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len)]
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct DockerSample {
    /// The figures the process check reads too (CPU, throttling, memory, threads).
    pub base: CtrSample,
    /// v1 `cpu.shares`, v2 `cpu.weight` mapped to shares.
    pub cpu_shares: Option<u64>,
    /// The CPU limit in percent of one core: the container's quota, else its ECS task's; `None`:
    /// none (the pass then reports the host's CPUs × 100).
    pub cpu_limit_pct: Option<f64>,
    /// `pids.max` unless `max`.
    pub thread_limit: Option<u64>,
    /// v1 `memory.stat` `swap` (only with swap accounting), v2 `memory.swap.current`.
    pub mem_swap: Option<u64>,
    /// The limit that applies (v1 `hierarchical_memory_limit`, v2 the least `memory.max` of the
    /// container and its parent, the ECS task), when below 2^60.
    pub mem_limit: Option<u64>,
    /// v1 `hierarchical_memsw_limit`, v2 `memory.max` + `memory.swap.max` (both numeric).
    pub mem_sw_limit: Option<u64>,
    /// v1 `memory.soft_limit_in_bytes`, v2 `memory.low` (> 0).
    pub mem_soft_limit: Option<u64>,
    /// v1 `memory.kmem.usage_in_bytes`, v2 `memory.stat` `kernel_stack` + `slab`.
    pub kmem: Option<u64>,
    pub devices: [DeviceIo; MAX_DEVICES],
    pub n_devices: u8,
    pub ifaces: [IfaceNet; MAX_IFACES],
    pub n_ifaces: u8,
    /// Its CPU accounting file (v1 `cpuacct.usage`, v2 `cpu.stat`) and `memory.stat` were read:
    /// without them (a v2 tree without the memory controller, a hybrid host's) there is no such
    /// series, rather than a 0 that says nothing.
    pub cpu_read: bool,
    pub mem_read: bool,
    /// Descriptors open in the container's processes (`/proc/<pid>/fd` of each pid in
    /// `cgroup.procs`).
    pub open_fds: u64,
}

impl DockerSample {
    pub fn devices(&self) -> &[DeviceIo] {
        &self.devices[..usize::from(self.n_devices)]
    }

    pub fn ifaces(&self) -> &[IfaceNet] {
        &self.ifaces[..usize::from(self.n_ifaces)]
    }

    pub fn push_iface(&mut self, i: IfaceNet) {
        if let Some(slot) = self.ifaces.get_mut(usize::from(self.n_ifaces)) {
            *slot = i;
            self.n_ifaces += 1;
        }
    }
}

/// The docker pass's state of one container: the last sample read and the one before (for
/// rates), with the monotonic time each was read at.
#[derive(Debug, Default, Clone, Copy)]
pub struct DockerState {
    pub cur: DockerSample,
    /// When `cur` was read (monotonic seconds); compared with the pass's time to tell a sample
    /// the process check read for this pass in the same turn.
    pub cur_at: Option<f64>,
    /// The previous pass's sample, its time, and the container's start then (epoch ms).
    pub prev: Option<(DockerSample, f64, i64)>,
}
