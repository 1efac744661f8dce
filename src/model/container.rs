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
    /// Tasks (threads) in the container: `pids.current`.
    pub threads: u64,
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
    pub pids: Option<OwnedFd>,
    pub unified: Option<OwnedFd>,
    /// The ECS task's cgroup above the container (v1 `cpu`, or v2), when the CPU limit is set
    /// there and not on the container: its `cpu.stat` is where throttling shows.
    pub task: Option<OwnedFd>,
}

impl CgroupDirs {
    pub fn iter(&self) -> impl Iterator<Item = &OwnedFd> {
        [&self.memory, &self.cpuacct, &self.cpu, &self.blkio, &self.pids, &self.unified, &self.task]
            .into_iter()
            .flatten()
    }

    /// None could be opened.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
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
    /// Its member shares the host's network namespace (`--network host`): no network figures.
    pub host_network: bool,
    /// Its cgroup could not be opened, and that was logged.
    pub warned: bool,
    /// The docker check pass's samples of it (see [`super::docker`]).
    pub docker: super::docker::DockerState,
}

impl Container {
    /// A container seen for the first time in `cycle`, through its process `pid`.
    pub fn new(id: [u8; 64], pid: u32, cycle: u64) -> Container {
        Container {
            id,
            runtime: "",
            dirs: CgroupDirs::default(),
            member_pid: pid,
            seen_cycle: cycle,
            created_ms: 0,
            cur: CtrSample::default(),
            prev: None,
            samples: 0,
            host_network: false,
            warned: false,
            docker: super::docker::DockerState::default(),
        }
    }
}

#[derive(Debug, Default)]
pub struct ContainerTable {
    pub containers: Vec<Container>,
    pub cycle: u64,
    pub mono_secs: f64,
    pub prev_mono_secs: Option<f64>,
    /// Known containers Docker said were started again (restarted in place) since the last
    /// update: their cgroup directories are checked, and found anew if they were replaced.
    pub started: Vec<[u8; 64]>,
    /// Set when the docker pass runs right after this cycle (the same loop turn): the cycle then
    /// also reads, from the same file reads, what the pass needs ([`super::docker::DockerSample`]),
    /// so no file is read twice in that moment.
    pub docker_wanted: bool,
}

impl ContainerTable {
    /// Docker started container `id`; if the table knows it, it was restarted in place.
    pub fn mark_started(&mut self, id: &[u8]) {
        if let Some(c) = self.containers.iter().find(|c| c.id[..] == *id) {
            if !self.started.contains(&c.id) {
                self.started.push(c.id);
            }
        }
    }

    pub fn get(&self, id: &[u8]) -> Option<&Container> {
        self.containers.iter().find(|c| c.id[..] == *id)
    }
}

/// The counters behind [`rates`], in its order.
fn counters(s: &CtrSample) -> [u64; 9] {
    [
        s.io_read_bytes,
        s.io_write_bytes,
        s.net_rx_packets,
        s.net_tx_packets,
        s.net_rx_bytes,
        s.net_tx_bytes,
        s.cpu_user_ns,
        s.cpu_system_ns,
        s.cpu_total_ns,
    ]
}

/// The container's rates: `[rbps, wbps, netRcvdPs, netSentPs, netRcvdBps, netSentBps, userPct,
/// systemPct, totalPct]`; zeros until two samples exist (none of them is sent then: see
/// [`metric_applies`]).
pub fn rates(c: &Container, t: &ContainerTable) -> [f64; 9] {
    let (Some(p), Some(prev_t)) = (c.prev, t.prev_mono_secs) else { return [0.0; 9] };
    let dt = t.mono_secs - prev_t;
    if dt <= 0.0 {
        return [0.0; 9];
    }
    let (a, b) = (counters(&p), counters(&c.cur));
    let mut out = [0.0; 9];
    for i in 0..9 {
        let d = b[i].saturating_sub(a[i]) as f64;
        // CPU in percent of one core.
        out[i] = if i >= 6 { d / (dt * 1e9) * 100.0 } else { d / dt };
    }
    out
}

/// The process agent's throttling metrics (spec/docker-check.md §4), in the order of
/// [`THROTTLING_NAMES`]: centiseconds throttled per second and throttled periods per second
/// (`cpu.stat`; 0 until two samples exist, and when a counter went back: a restart; neither is
/// sent then, see [`throttling_applies`]), and the container's tasks now (`pids.current`).
pub fn throttling(c: &Container, t: &ContainerTable) -> [f64; 3] {
    let threads = c.cur.threads as f64;
    let (Some(p), Some(prev_t)) = (c.prev, t.prev_mono_secs) else { return [0.0, 0.0, threads] };
    let dt = t.mono_secs - prev_t;
    if dt <= 0.0 {
        return [0.0, 0.0, threads];
    }
    let s = c.cur;
    let r = |a: u64, b: u64| b.checked_sub(a).map_or(0.0, |d| d as f64 / dt);
    [r(p.throttled_ns, s.throttled_ns) / 1e7, r(p.throttled_periods, s.throttled_periods), threads]
}

/// Whether the throttling metric `THROTTLING_NAMES[i]` is sent for `c`: the two rates only from a
/// previous sample whose counter is not above the current one (see [`metric_applies`]); the
/// thread count always.
pub fn throttling_applies(c: &Container, i: usize) -> bool {
    let went_on = |p: &CtrSample| match i {
        0 => c.cur.throttled_ns >= p.throttled_ns,
        1 => c.cur.throttled_periods >= p.throttled_periods,
        _ => true,
    };
    i >= 2 || c.prev.as_ref().is_some_and(went_on)
}

pub const THROTTLING_NAMES: [&str; 3] = ["cpuThrottledTime", "cpuNrThrottled", "cpuThreadCount"];

/// Whether the raw metric `METRIC_NAMES[i]` is sent for `c`:
/// - the network ones are not for a container in the host's network namespace (they would be
///   the host's totals);
/// - a rate (the first nine) needs a previous sample, and a counter that did not go back since:
///   a container's first observation, on first sight or right after a restart in place (new
///   cgroup, counters from 0), only primes its rates, and that point is skipped rather than sent
///   as 0 (spec/docker-check.md §5.1: "that one point is dropped").
pub fn metric_applies(c: &Container, i: usize) -> bool {
    if c.host_network && (2..=5).contains(&i) {
        return false;
    }
    i >= 9 || c.prev.as_ref().is_some_and(|p| counters(&c.cur)[i] >= counters(p)[i])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prev: CtrSample, cur: CtrSample) -> (Container, ContainerTable) {
        let mut c = Container::new([b'a'; 64], 1, 2);
        (c.prev, c.cur) = (Some(prev), cur);
        (c, ContainerTable { cycle: 2, mono_secs: 12.0, prev_mono_secs: Some(10.0), ..Default::default() })
    }

    #[test]
    fn throttling_rates_in_the_process_agents_units() {
        let prev = CtrSample { throttled_ns: 1_000_000_000, throttled_periods: 10, threads: 3, ..Default::default() };
        let cur = CtrSample { throttled_ns: 1_500_000_000, throttled_periods: 30, threads: 4, ..Default::default() };
        let (c, t) = table(prev, cur);
        // 0.5 s throttled over 2 s: 25 centiseconds per second; 20 periods over 2 s.
        assert_eq!(throttling(&c, &t), [25.0, 10.0, 4.0]);
        // A restart in place resets the counters: 0, not a wrapped subtraction.
        let (c, t) = table(cur, prev);
        assert_eq!(throttling(&c, &t), [0.0, 0.0, 3.0]);
        // First sighting: no rate yet, the thread count already.
        let (mut c, t) = table(prev, cur);
        c.prev = None;
        assert_eq!(throttling(&c, &t), [0.0, 0.0, 4.0]);
    }

    #[test]
    fn a_first_observation_only_primes_the_rates() {
        let prev =
            CtrSample { cpu_total_ns: 1_000_000_000, throttled_periods: 10, net_rx_bytes: 500, ..Default::default() };
        let cur =
            CtrSample { cpu_total_ns: 1_500_000_000, throttled_periods: 12, net_rx_bytes: 900, ..Default::default() };
        let sent = |c: &Container| {
            let m: Vec<_> =
                (0..METRIC_NAMES.len()).filter(|&i| metric_applies(c, i)).map(|i| METRIC_NAMES[i]).collect();
            let t: Vec<_> = (0..THROTTLING_NAMES.len())
                .filter(|&i| throttling_applies(c, i))
                .map(|i| THROTTLING_NAMES[i])
                .collect();
            (m, t)
        };
        let (mut c, t) = table(prev, cur);
        assert_eq!(sent(&c), (METRIC_NAMES.to_vec(), THROTTLING_NAMES.to_vec()));
        assert_eq!(rates(&c, &t)[8], 25.0);
        // First sight, or the first sample after a restart in place: gauges only.
        c.prev = None;
        assert_eq!(sent(&c), (vec!["memRss", "memCache"], vec!["cpuThreadCount"]));
        // A counter that went back (a restart not noticed from the directories): that point of
        // that metric is skipped, not sent as 0.
        let (c, _) = table(cur, prev);
        let (m, t) = sent(&c);
        assert!(!m.contains(&"totalPct") && !m.contains(&"netRcvdBps") && m.contains(&"rbps"), "{m:?}");
        assert_eq!(t, ["cpuThrottledTime", "cpuThreadCount"]);
    }

    #[test]
    fn host_network_containers_have_no_network_metrics() {
        let (mut c, _) = table(CtrSample::default(), CtrSample::default());
        assert!((0..METRIC_NAMES.len()).all(|i| metric_applies(&c, i)));
        c.host_network = true;
        let sent: Vec<_> =
            (0..METRIC_NAMES.len()).filter(|&i| metric_applies(&c, i)).map(|i| METRIC_NAMES[i]).collect();
        assert_eq!(sent, ["rbps", "wbps", "userPct", "systemPct", "totalPct", "memRss", "memCache"]);
    }
}

#[cfg(test)]
mod started_tests {
    use super::*;

    #[test]
    fn only_known_containers_are_marked_started_and_once() {
        let mut t = ContainerTable::default();
        t.containers.push(Container::new([b'a'; 64], 1, 1));
        t.mark_started(&[b'a'; 64]);
        t.mark_started(&[b'a'; 64]);
        t.mark_started(&[b'b'; 64]);
        t.mark_started(b"short");
        assert_eq!(t.started, vec![[b'a'; 64]]);
    }
}
