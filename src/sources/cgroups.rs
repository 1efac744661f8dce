//! Containers from cgroups: the layout under `HOST_SYS/fs/cgroup` (v1 controller directories,
//! combined like `cpu,cpuacct` or not, whatever the host mounted them from — `/cgroup/` on the
//! original Amazon Linux AMI — or the v2 unified tree), the containers' directories found from
//! their processes' `/proc/<pid>/cgroup`, and their stats each cycle. Directories are held as
//! `O_PATH` fds opened once per container; files are read into one reused buffer.

use super::procfs::ReadBuf;
use crate::model::container::{CgroupDirs, Container, ContainerTable, CtrSample};
use crate::model::process::ProcessTable;
use crate::parse::{cgroup, cgroup_stats as cs, net_dev};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, AtFlags, Mode, OFlags, CWD};
use std::ffi::CStr;
use std::io;
use std::path::Path;

/// Above this, a v1 memory limit means "no limit" (the kernel prints PAGE_COUNTER_MAX pages).
const V1_NO_LIMIT: u64 = 1 << 62;

#[derive(Debug, Default)]
pub struct V1Roots {
    memory: Option<OwnedFd>,
    cpuacct: Option<OwnedFd>,
    cpu: Option<OwnedFd>,
    blkio: Option<OwnedFd>,
}

#[derive(Debug)]
pub enum Layout {
    V1(V1Roots),
    V2(OwnedFd),
    Absent,
}

impl Layout {
    pub fn name(&self) -> &'static str {
        match self {
            Layout::V1(_) => "cgroup v1",
            Layout::V2(_) => "cgroup v2",
            Layout::Absent => "no cgroups",
        }
    }
}

fn open_dir(at: BorrowedFd<'_>, path: &Path) -> Option<OwnedFd> {
    openat(at, path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()
}

/// Detects the layout under `<host_sys>/fs/cgroup`. Any v1 controller directory means v1 (the
/// hybrid layout keeps the controllers on v1); else `cgroup.controllers` at the root means v2.
pub fn detect(host_sys: &Path) -> Layout {
    let root = host_sys.join("fs/cgroup");
    let mut v1 = V1Roots::default();
    let mut any = false;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !e.path().is_dir() {
                continue;
            }
            for ctl in name.split(',') {
                let slot = match ctl {
                    "memory" => &mut v1.memory,
                    "cpuacct" => &mut v1.cpuacct,
                    "cpu" => &mut v1.cpu,
                    "blkio" => &mut v1.blkio,
                    _ => continue,
                };
                if slot.is_none() {
                    *slot = open_dir(CWD, &e.path());
                    any |= slot.is_some();
                }
            }
        }
    }
    if any {
        return Layout::V1(v1);
    }
    if root.join("cgroup.controllers").is_file() {
        if let Some(fd) = open_dir(CWD, &root) {
            return Layout::V2(fd);
        }
    }
    Layout::Absent
}

/// The layout is detected again every this many cycles (hosts rarely change it; a remount does).
const REDETECT_EVERY: u64 = 20;

pub struct ContainerSource {
    proc_root: OwnedFd,
    host_sys: std::path::PathBuf,
    /// `<root>/memory` (v1 always has it) and `<root>/cgroup.controllers` (v2), as C strings
    /// made once, so the periodic probe allocates nothing.
    probe_v1: std::ffi::CString,
    probe_v2: std::ffi::CString,
    layout: Layout,
    buf: ReadBuf,
    user_hz: u64,
}

impl ContainerSource {
    pub fn open(host_proc: &Path, host_sys: &Path) -> io::Result<ContainerSource> {
        let proc_root = openat(CWD, host_proc, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let layout = detect(host_sys);
        info!("containers: {} under {}", layout.name(), host_sys.join("fs/cgroup").display());
        let c =
            |p: std::path::PathBuf| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).unwrap_or_default();
        Ok(ContainerSource {
            proc_root,
            probe_v1: c(host_sys.join("fs/cgroup/memory")),
            probe_v2: c(host_sys.join("fs/cgroup/cgroup.controllers")),
            host_sys: host_sys.to_path_buf(),
            layout,
            buf: ReadBuf::with_capacity(8 * 1024),
            user_hz: rustix::param::clock_ticks_per_second().max(1),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Finds this cycle's containers from the processes' container ids and samples each.
    pub fn update(&mut self, t: &mut ContainerTable, procs: &ProcessTable) {
        t.cycle += 1;
        if t.cycle % REDETECT_EVERY == 0 {
            self.redetect(t);
        }
        t.prev_mono_secs = if t.cycle > 1 { Some(t.mono_secs) } else { None };
        t.mono_secs = procs.mono_secs;
        let cycle = t.cycle;
        for p in &procs.procs {
            let Some(id) = &p.container_id else { continue };
            match t.containers.iter_mut().find(|c| c.id == *id) {
                Some(c) => {
                    if c.seen_cycle != cycle {
                        c.seen_cycle = cycle;
                        c.member_pid = p.pid;
                    }
                }
                None => {
                    if let Some(c) = self.discover(*id, p.pid, p.dir.as_fd(), cycle) {
                        t.containers.push(c);
                    }
                }
            }
        }
        t.containers.retain(|c| c.seen_cycle == cycle);
        for c in &mut t.containers {
            let sample = self.sample(c);
            c.prev = (c.samples > 0).then_some(c.cur);
            c.cur = sample;
            c.samples += 1;
        }
    }

    /// Probes the layout's kind; if it changed, detects it again and finds containers anew.
    fn redetect(&mut self, t: &mut ContainerTable) {
        let exists = |p: &std::ffi::CStr| rustix::fs::statat(CWD, p, AtFlags::empty()).is_ok();
        let kind = if exists(&self.probe_v1) {
            1
        } else if exists(&self.probe_v2) {
            2
        } else {
            0
        };
        let current = match self.layout {
            Layout::V1(_) => 1,
            Layout::V2(_) => 2,
            Layout::Absent => 0,
        };
        if kind == current {
            return;
        }
        let now = detect(&self.host_sys);
        if std::mem::discriminant(&now) != std::mem::discriminant(&self.layout) {
            info!("containers: the cgroup layout changed from {} to {}", self.layout.name(), now.name());
            self.layout = now;
            t.containers.clear();
        }
    }

    fn discover(&mut self, id: [u8; 64], pid: u32, proc_dir: BorrowedFd<'_>, cycle: u64) -> Option<Container> {
        let cg = self.buf.read_file(proc_dir, c"cgroup").ok()?;
        let mut dirs = CgroupDirs::default();
        let mut runtime = "";
        for line in cgroup::iter(cg).filter_map(Result::ok) {
            if cgroup::container_id(line.path) != Some(&id[..]) {
                continue;
            }
            let p = line.path;
            runtime = if contains(p, b"docker") {
                "docker"
            } else if contains(p, b"containerd") {
                "containerd"
            } else if contains(p, b"crio") {
                "cri-o"
            } else {
                runtime
            };
            // Paths are absolute within the hierarchy; open them relative to its root.
            let rel = std::ffi::OsStr::new(std::str::from_utf8(p.strip_prefix(b"/").unwrap_or(p)).ok()?);
            let rel = Path::new(rel);
            match &self.layout {
                Layout::V1(roots) => {
                    for ctl in line.controllers.split(|b| *b == b',') {
                        let (slot, root) = match ctl {
                            b"memory" => (&mut dirs.memory, &roots.memory),
                            b"cpuacct" => (&mut dirs.cpuacct, &roots.cpuacct),
                            b"cpu" => (&mut dirs.cpu, &roots.cpu),
                            b"blkio" => (&mut dirs.blkio, &roots.blkio),
                            _ => continue,
                        };
                        if let Some(root) = root {
                            *slot = open_dir(root.as_fd(), rel);
                        }
                    }
                }
                Layout::V2(root) if line.hierarchy == b"0" => dirs.unified = open_dir(root.as_fd(), rel),
                _ => {}
            }
        }
        let stamp_dir = dirs.cpuacct.as_ref().or(dirs.unified.as_ref()).or(dirs.memory.as_ref());
        let created_ms = stamp_dir
            .and_then(|d| rustix::fs::statat(d, c"", AtFlags::EMPTY_PATH).ok())
            .map_or(0, |st| st.st_mtime as i64 * 1000 + st.st_mtime_nsec as i64 / 1_000_000);
        Some(Container {
            id,
            runtime,
            dirs,
            member_pid: pid,
            seen_cycle: cycle,
            created_ms,
            cur: CtrSample::default(),
            prev: None,
            samples: 0,
        })
    }

    fn read(&mut self, dir: Option<&OwnedFd>, file: &CStr) -> Option<&[u8]> {
        self.buf.read_file(dir?.as_fd(), file).ok()
    }

    fn sample(&mut self, c: &Container) -> CtrSample {
        let mut s = CtrSample::default();
        let d = &c.dirs;
        if d.unified.is_some() {
            let u = d.unified.as_ref();
            if let Some(b) = self.read(u, c"cpu.stat") {
                let us = |k: &[u8]| cs::get(b, k).unwrap_or(0).saturating_mul(1000);
                s.cpu_total_ns = us(b"usage_usec");
                s.cpu_user_ns = us(b"user_usec");
                s.cpu_system_ns = us(b"system_usec");
                s.throttled_periods = cs::get(b, b"nr_throttled").unwrap_or(0);
                s.throttled_ns = us(b"throttled_usec");
            }
            if let Some((Some(q), period)) = self.read(u, c"cpu.max").and_then(cs::cpu_max) {
                s.cpu_limit_pct = Some(q as f64 / period.max(1) as f64 * 100.0);
            }
            if let Some(b) = self.read(u, c"memory.stat") {
                s.mem_rss = cs::get(b, b"anon").unwrap_or(0);
                s.mem_cache = cs::get(b, b"file").unwrap_or(0);
            }
            s.mem_usage = self.read(u, c"memory.current").and_then(cs::single).unwrap_or(0);
            s.mem_limit = self.read(u, c"memory.max").and_then(cs::max_or_value).flatten();
            s.mem_failcnt = self.read(u, c"memory.events").and_then(|b| cs::get(b, b"max")).unwrap_or(0);
            (s.io_read_bytes, s.io_write_bytes) = self.read(u, c"io.stat").map(cs::io_stat_bytes).unwrap_or((0, 0));
        } else {
            let hz = self.user_hz;
            if let Some(b) = self.read(d.cpuacct.as_ref(), c"cpuacct.stat") {
                let ns = |k: &[u8]| cs::get(b, k).unwrap_or(0).saturating_mul(1_000_000_000) / hz;
                s.cpu_user_ns = ns(b"user");
                s.cpu_system_ns = ns(b"system");
            }
            s.cpu_total_ns = self
                .read(d.cpuacct.as_ref(), c"cpuacct.usage")
                .and_then(cs::single)
                .unwrap_or(s.cpu_user_ns + s.cpu_system_ns);
            if let Some(b) = self.read(d.cpu.as_ref(), c"cpu.stat") {
                s.throttled_periods = cs::get(b, b"nr_throttled").unwrap_or(0);
                s.throttled_ns = cs::get(b, b"throttled_time").unwrap_or(0);
            }
            let quota = self.read(d.cpu.as_ref(), c"cpu.cfs_quota_us").and_then(cs::signed_single);
            let period = self.read(d.cpu.as_ref(), c"cpu.cfs_period_us").and_then(cs::single);
            if let (Some(q), Some(p)) = (quota, period) {
                s.cpu_limit_pct = Some(q as f64 / p.max(1) as f64 * 100.0);
            }
            if let Some(b) = self.read(d.memory.as_ref(), c"memory.stat") {
                // total_* include child cgroups; a container's cgroup is normally a leaf.
                s.mem_rss = cs::get(b, b"total_rss").or_else(|| cs::get(b, b"rss")).unwrap_or(0);
                s.mem_cache = cs::get(b, b"total_cache").or_else(|| cs::get(b, b"cache")).unwrap_or(0);
            }
            s.mem_usage = self.read(d.memory.as_ref(), c"memory.usage_in_bytes").and_then(cs::single).unwrap_or(0);
            s.mem_limit = self
                .read(d.memory.as_ref(), c"memory.limit_in_bytes")
                .and_then(cs::single)
                .filter(|&l| l < V1_NO_LIMIT);
            s.mem_failcnt = self.read(d.memory.as_ref(), c"memory.failcnt").and_then(cs::single).unwrap_or(0);
            (s.io_read_bytes, s.io_write_bytes) = self
                .read(d.blkio.as_ref(), c"blkio.throttle.io_service_bytes")
                .map(cs::blkio_service_bytes)
                .unwrap_or((0, 0));
        }
        // The container's network, as one member process sees it.
        let mut path = [0u8; 24];
        let n = crate::fmt::decimal(u64::from(c.member_pid), &mut path[..11]);
        path[n..n + 8].copy_from_slice(b"/net/dev");
        if let Ok(name) = CStr::from_bytes_until_nul(&path) {
            if let Ok(b) = self.buf.read_file(self.proc_root.as_fd(), name) {
                for dev in net_dev::iter(b).filter_map(Result::ok).filter(|d| d.name != b"lo") {
                    s.net_rx_bytes += dev.counters.rx_bytes;
                    s.net_tx_bytes += dev.counters.tx_bytes;
                    s.net_rx_packets += dev.counters.rx_packets;
                    s.net_tx_packets += dev.counters.tx_packets;
                }
            }
        }
        s
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::process::{Proc, ProcessTable};
    use crate::parse::cgroup_stats as cs;

    const ID: &[u8; 64] = b"3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup").join(name)
    }

    /// One process, as the process source would have it, whose `/proc/<pid>` is the fixture's.
    fn run(name: &str, pid: u32) -> (ContainerTable, Layout) {
        let root = fixture(name);
        let dir = open_dir(CWD, &root.join(format!("proc/{pid}"))).unwrap();
        let mut p = Proc::new(pid, 1, 0, dir, 0.0);
        p.container_id = Some(*ID);
        let procs = ProcessTable { procs: vec![p], mono_secs: 10.0, ..Default::default() };
        let mut src = ContainerSource::open(&root.join("proc"), &root.join("sys")).unwrap();
        let mut t = ContainerTable::default();
        src.update(&mut t, &procs);
        let layout = std::mem::replace(&mut src.layout, Layout::Absent);
        (t, layout)
    }

    fn v1_fixture(file: &str) -> Vec<u8> {
        std::fs::read(fixture("debian12-v1").join(file)).unwrap()
    }

    #[test]
    fn al2023_cgroup_v2_ecstasks_layout() {
        let (t, layout) = run("al2023-v2", 4242);
        assert!(matches!(layout, Layout::V2(_)));
        let c = &t.containers[0];
        assert_eq!((c.runtime, c.member_pid, c.samples), ("docker", 4242, 1));
        let s = c.cur;
        assert_eq!((s.cpu_total_ns, s.cpu_user_ns, s.cpu_system_ns), (2_000_000_000, 1_500_000_000, 500_000_000));
        assert_eq!((s.throttled_periods, s.throttled_ns), (5, 250_000_000));
        assert_eq!(
            (s.mem_rss, s.mem_cache, s.mem_usage, s.mem_limit, s.mem_failcnt),
            (41_943_040, 10_485_760, 53_477_376, Some(268_435_456), 3)
        );
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (1_048_576, 2_097_152));
        assert_eq!(s.cpu_limit_pct, Some(50.0));
        assert!(s.net_rx_bytes > 0, "net/dev of the member pid");
    }

    #[test]
    fn v1_with_separate_and_combined_controllers() {
        let hz = rustix::param::clock_ticks_per_second();
        for name in ["al1-v1", "al2-v1"] {
            let (t, layout) = run(name, 4243);
            let Layout::V1(roots) = layout else { panic!("{name}: not v1") };
            assert!(
                roots.memory.is_some() && roots.cpu.is_some() && roots.cpuacct.is_some() && roots.blkio.is_some(),
                "{name}"
            );
            let c = &t.containers[0];
            assert_eq!(c.runtime, "docker");
            let s = c.cur;
            let acct = v1_fixture("cpuacct/cpuacct.stat");
            assert_eq!(s.cpu_user_ns, cs::get(&acct, b"user").unwrap() * 1_000_000_000 / hz, "{name}");
            assert_eq!(s.cpu_system_ns, cs::get(&acct, b"system").unwrap() * 1_000_000_000 / hz);
            assert_eq!(s.cpu_total_ns, cs::single(&v1_fixture("cpuacct/cpuacct.usage")).unwrap());
            assert_eq!(s.throttled_periods, 14);
            assert_eq!(s.mem_limit, Some(268_435_456));
            assert_eq!((s.mem_rss, s.mem_cache), (0, 37_408_768));
            assert_eq!(s.mem_usage, cs::single(&v1_fixture("memory/memory.usage_in_bytes")).unwrap());
            assert_eq!(s.cpu_limit_pct, Some(50.0));
        }
    }

    #[test]
    fn a_changed_layout_is_noticed() {
        let dir = std::env::temp_dir().join(format!("sts-agent-redetect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sys/fs/cgroup")).unwrap();
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        let mut src = ContainerSource::open(&dir.join("proc"), &dir.join("sys")).unwrap();
        assert!(matches!(src.layout(), Layout::Absent));
        // The host now mounts the v2 hierarchy.
        std::fs::write(dir.join("sys/fs/cgroup/cgroup.controllers"), "cpu io memory\n").unwrap();
        let mut t = ContainerTable::default();
        let procs = ProcessTable::default();
        for _ in 0..REDETECT_EVERY {
            src.update(&mut t, &procs);
        }
        assert!(matches!(src.layout(), Layout::V2(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_cgroups_is_absent_not_an_error() {
        let dir = std::env::temp_dir().join(format!("sts-agent-nocg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("fs/cgroup")).unwrap();
        assert!(matches!(detect(&dir), Layout::Absent));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
