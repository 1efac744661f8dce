//! Containers from cgroups: the layout under `HOST_SYS/fs/cgroup` (v1 controller directories,
//! combined like `cpu,cpuacct` or not, whatever the host mounted them from — `/cgroup/` on the
//! original Amazon Linux AMI — or the v2 unified tree), the containers' directories found from
//! their processes' `/proc/<pid>/cgroup`, and their stats each cycle. Directories are held as
//! `O_PATH` fds opened once per container (again when a restart in place removed them); files are
//! read into one reused buffer. The agent may see those paths from a private cgroup namespace
//! (`/../../<rest>`): see [`Anchors`]; its own processes then read `/`, the root of that namespace,
//! which is its container's cgroup: see [`ContainerSource::own_namespace`].

use super::procfs::ReadBuf;
use crate::model::container::{CgroupDirs, Container, ContainerTable, CtrSample};
use crate::model::docker::{DockerSample, IfaceNet};
use crate::model::process::ProcessTable;
use crate::parse::{cgroup, cgroup_stats as cs, net_dev};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Above this, a v1 memory limit means "no limit" (the kernel prints PAGE_COUNTER_MAX pages).
const V1_NO_LIMIT: u64 = 1 << 62;
/// The docker check's bound for a limit that means something (spec/docker-check.md §2.3).
const NO_LIMIT_2_60: u64 = 1 << 60;

#[derive(Debug, Default)]
pub struct V1Roots {
    memory: Option<OwnedFd>,
    cpuacct: Option<OwnedFd>,
    cpu: Option<OwnedFd>,
    blkio: Option<OwnedFd>,
    pids: Option<OwnedFd>,
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

/// The hierarchies a container's directories are held in (v1 controllers, the v2 tree): the
/// index of [`Anchors::depth`].
const MEMORY: usize = 0;
const CPUACCT: usize = 1;
const CPU: usize = 2;
const BLKIO: usize = 3;
const PIDS: usize = 4;
const UNIFIED: usize = 5;
const SLOTS: usize = 6;

const DIR_FLAGS: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

fn open_dir(at: BorrowedFd<'_>, path: &Path) -> Option<OwnedFd> {
    openat(at, path, DIR_FLAGS, Mode::empty()).ok()
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
                    "pids" => &mut v1.pids,
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

/// Where the agent's own cgroup namespace sits in each hierarchy, learnt from the first path
/// that climbs out of it (see [`cgroup::relative`]). A path `/../../<rest>` names
/// `<A>/<rest>`, `A` being the namespace root's ancestor two levels up: the same directory for
/// every such path in that hierarchy, so it is found once (a bounded walk of the hierarchy
/// from its root, looking for the directory under which `<rest>` exists) and held open.
#[derive(Debug, Default)]
struct Anchors {
    /// The depth of the namespace root, per hierarchy, once known.
    depth: [Option<usize>; SLOTS],
    /// `(hierarchy, ups)` → the directory `ups` levels above the namespace root, and its path
    /// from the hierarchy's root.
    dirs: Vec<(usize, usize, OwnedFd, PathBuf)>,
    /// The namespace root itself and its path, per hierarchy, once found (see
    /// [`ContainerSource::find_own_namespace`]): paths that climb out of nothing (`/`, `/<rest>`)
    /// are relative to it. The hierarchy's root when the agent is in the host's namespace; not
    /// known, the hierarchy's root is assumed.
    ns: [Option<(OwnedFd, PathBuf)>; SLOTS],
}

/// The walk that finds an anchor visits at most this many directories, this deep.
const SEARCH_MAX_DIRS: usize = 4096;
const SEARCH_MAX_DEPTH: usize = 8;

impl Anchors {
    fn get(&self, slot: usize, ups: usize) -> Option<BorrowedFd<'_>> {
        self.dirs.iter().find(|(s, u, _, _)| *s == slot && *u == ups).map(|(_, _, fd, _)| fd.as_fd())
    }

    /// The path from its hierarchy's root of the directory that `path` climbs to (the namespace
    /// root for a path that climbs out of nothing), if known.
    fn climbed_to(&self, slot: usize, path: &[u8]) -> Option<&Path> {
        let (ups, _) = cgroup::relative(path)?;
        if ups == 0 {
            return self.ns[slot].as_ref().map(|(_, p)| p.as_path());
        }
        self.dirs.iter().find(|(s, u, _, _)| *s == slot && *u == ups).map(|(_, _, _, p)| p.as_path())
    }

    /// Whether the cgroup `path` names sits in an ECS task's cgroup ([`cgroup::ecs_task_parent`]
    /// of its path from the hierarchy's root, where known: `/` in the agent's own namespace
    /// names nothing by itself). Allocates nothing (it runs when a container is found again).
    fn in_ecs_task(&self, slot: usize, path: &[u8]) -> bool {
        if cgroup::ecs_task_parent(path) {
            return true;
        }
        let (Some((_, rest)), Some(prefix)) = (cgroup::relative(path), self.climbed_to(slot, path)) else {
            return false;
        };
        let prefix = prefix.as_os_str().as_bytes();
        let mut full = [0u8; 1024];
        let n = prefix.len() + if rest.is_empty() { 0 } else { 1 + rest.len() };
        let Some(buf) = full.get_mut(..n) else { return false };
        buf[..prefix.len()].copy_from_slice(prefix);
        if !rest.is_empty() {
            buf[prefix.len()] = b'/';
            buf[prefix.len() + 1..].copy_from_slice(rest);
        }
        cgroup::ecs_task_parent(buf)
    }

    /// Opens the cgroup directory `path` (as `/proc/<pid>/cgroup` shows it) of hierarchy
    /// `slot`, whose root is `root`.
    fn open(&mut self, root: BorrowedFd<'_>, slot: usize, path: &[u8]) -> Result<OwnedFd, Errno> {
        let (ups, rest) = cgroup::relative(path).ok_or(Errno::INVAL)?;
        if ups == 0 {
            // Within the namespace: from its root (the agent's container's cgroup, when the
            // agent has a private namespace).
            let base = self.ns[slot].as_ref().map_or(root, |(fd, _)| fd.as_fd());
            let rest = if rest.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(rest)) };
            return openat(base, rest, DIR_FLAGS, Mode::empty());
        }
        if rest.is_empty() {
            // An ancestor of the namespace root: not a container's cgroup, nor named from here.
            return Err(Errno::INVAL);
        }
        let rest = Path::new(OsStr::from_bytes(rest));
        if let Some(anchor) = self.get(slot, ups) {
            match openat(anchor, rest, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) => {} // gone, or the anchor moved: look again
                other => return other,
            }
        }
        let want = match self.depth[slot] {
            Some(d) => Some(d.checked_sub(ups).ok_or(Errno::NOENT)?),
            None => None,
        };
        let found = search(root, want, |dir| openat(dir, rest, DIR_FLAGS, Mode::empty()).ok());
        let (anchor, path, at, fd) = found.ok_or(Errno::NOENT)?;
        debug!("cgroups: paths climbing {ups} out of the namespace start at {}", path.display());
        self.depth[slot] = Some(at + ups);
        self.dirs.retain(|(s, u, _, _)| (*s, *u) != (slot, ups));
        self.dirs.push((slot, ups, anchor, path));
        Ok(fd)
    }
}

/// Walks the hierarchy breadth first from `root` (only the level `want` when given) for the
/// first directory `found` accepts: `(that directory, its path, its depth, what found gave)`.
fn search(
    root: BorrowedFd<'_>,
    want: Option<usize>,
    mut found: impl FnMut(&OwnedFd) -> Option<OwnedFd>,
) -> Option<(OwnedFd, PathBuf, usize, OwnedFd)> {
    let mut level = vec![PathBuf::from(".")];
    let mut visited = 0usize;
    for depth in 0..=SEARCH_MAX_DEPTH {
        if want.is_none_or(|w| w == depth) {
            for d in level.iter() {
                let Some(dir) = open_dir(root, d) else { continue };
                if let Some(fd) = found(&dir) {
                    return Some((dir, d.clone(), depth, fd));
                }
            }
            if want.is_some() {
                return None;
            }
        }
        let mut next = Vec::new();
        for d in &level {
            let Ok(fd) = openat(root, d, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
                continue;
            };
            let Ok(mut entries) = rustix::fs::Dir::read_from(&fd) else { continue };
            while let Some(Ok(e)) = entries.read() {
                let name = e.file_name().to_bytes();
                let maybe_dir =
                    matches!(e.file_type(), rustix::fs::FileType::Directory | rustix::fs::FileType::Unknown);
                if !maybe_dir || name == b"." || name == b".." {
                    continue;
                }
                visited += 1;
                if visited > SEARCH_MAX_DIRS {
                    return None;
                }
                next.push(d.join(OsStr::from_bytes(name)));
            }
        }
        if next.is_empty() {
            return None;
        }
        level = next;
    }
    None
}

/// The container whose cgroup is the root of the agent's own cgroup namespace (see
/// [`ContainerSource::own_namespace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnNamespace {
    pub id: [u8; 64],
    /// The hierarchy (its number in `/proc/<pid>/cgroup`) where the root was found to be it.
    hierarchy: [u8; 10],
    hierarchy_len: u8,
}

impl OwnNamespace {
    pub fn hierarchy(&self) -> &[u8] {
        &self.hierarchy[..usize::from(self.hierarchy_len)]
    }
}

/// The layout is detected again every this many cycles (hosts rarely change it; a remount does).
/// A container none of whose cgroup directories could be opened is looked for again as often.
const REDETECT_EVERY: u64 = 20;

pub struct ContainerSource {
    proc_root: OwnedFd,
    host_sys: std::path::PathBuf,
    /// `<root>/memory` (v1 always has it) and `<root>/cgroup.controllers` (v2), as C strings
    /// made once, so the periodic probe allocates nothing.
    probe_v1: std::ffi::CString,
    probe_v2: std::ffi::CString,
    layout: Layout,
    anchors: Anchors,
    buf: ReadBuf,
    user_hz: u64,
    /// The host's network namespace (`HOST_PROC/1/ns/net`, else the agent's own); 0 when unknown.
    host_net_ns: u64,
    /// Set by a read that found its file gone (see [`ContainerSource::sample`]).
    missing: bool,
    /// The container whose cgroup is the root of the agent's own cgroup namespace, if any.
    own: Option<OwnNamespace>,
    /// Tests: every cgroup file read, as `(directory fd, name)`.
    #[cfg(test)]
    reads: Vec<(i32, String)>,
}

impl ContainerSource {
    pub fn open(host_proc: &Path, host_sys: &Path) -> io::Result<ContainerSource> {
        let proc_root = openat(CWD, host_proc, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let layout = detect(host_sys);
        info!("containers: {} under {}", layout.name(), host_sys.join("fs/cgroup").display());
        let c =
            |p: std::path::PathBuf| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).unwrap_or_default();
        // pid 1's; if that is not readable, the agent's own (its ECS task has `networkMode: host`).
        let net_ns = |dir: &CStr, at: BorrowedFd<'_>| {
            openat(at, dir, DIR_FLAGS, Mode::empty()).ok().and_then(|d| crate::sys::netns::inode_at(d.as_fd()).ok())
        };
        let host_net_ns = net_ns(c"1", proc_root.as_fd()).or_else(|| net_ns(c"/proc/self", CWD)).unwrap_or(0);
        let mut src = ContainerSource {
            proc_root,
            probe_v1: c(host_sys.join("fs/cgroup/memory")),
            probe_v2: c(host_sys.join("fs/cgroup/cgroup.controllers")),
            host_sys: host_sys.to_path_buf(),
            layout,
            anchors: Anchors::default(),
            buf: ReadBuf::with_capacity(8 * 1024),
            user_hz: rustix::param::clock_ticks_per_second().max(1),
            host_net_ns,
            missing: false,
            own: None,
            #[cfg(test)]
            reads: Vec::new(),
        };
        src.locate_own_namespace();
        Ok(src)
    }

    /// Finds the agent's own cgroup namespace root (from `/proc/self/cgroup` and its pid) and
    /// publishes its container, if it is one, for the process source ([`ContainerSource::own_namespace`]).
    fn locate_own_namespace(&mut self) {
        let own = std::fs::read("/proc/self/cgroup")
            .ok()
            .and_then(|me| self.find_own_namespace(&me, rustix::process::getpid().as_raw_nonzero().get() as u32));
        self.own = own;
    }

    /// The agent's own container when the agent runs in a private cgroup namespace rooted at
    /// that container's cgroup (an ECS task on AL2023: Docker gives every container one on cgroup
    /// v2, and a task cannot ask for the host's). Its processes read `/` as their cgroup path,
    /// which names no container: the process source gives them this one
    /// ([`cgroup::process_container`]). Found when the source opens and when the layout changes.
    pub fn own_namespace(&self) -> Option<OwnNamespace> {
        self.own
    }

    /// Finds, in each hierarchy, the root of the cgroup namespace the agent is in: the directory
    /// `D` such that `D/<path>` (`path` being the agent's own in `self_cgroup`, its
    /// `/proc/self/cgroup`, written relative to that root) lists `pid` in its `cgroup.procs`. In
    /// the host's namespace that is the hierarchy's root, the first directory the walk looks at;
    /// in a private one, the container's cgroup the namespace was made in (a bounded walk, once).
    /// Returns that container, if the root is a container's cgroup.
    fn find_own_namespace(&mut self, self_cgroup: &[u8], pid: u32) -> Option<OwnNamespace> {
        let mut digits = [0u8; 10];
        let n = crate::fmt::decimal(u64::from(pid), &mut digits);
        let pid = &digits[..n];
        let Self { buf, layout, anchors, .. } = self;
        let hierarchies: Vec<(usize, &OwnedFd, &[u8])> = match &*layout {
            Layout::V1(r) => [
                (MEMORY, &r.memory, &b"memory"[..]),
                (CPUACCT, &r.cpuacct, b"cpuacct"),
                (CPU, &r.cpu, b"cpu"),
                (BLKIO, &r.blkio, b"blkio"),
                (PIDS, &r.pids, b"pids"),
            ]
            .into_iter()
            .filter_map(|(slot, fd, name)| Some((slot, fd.as_ref()?, name)))
            .collect(),
            Layout::V2(root) => vec![(UNIFIED, root, &b""[..])],
            Layout::Absent => Vec::new(),
        };
        let (mut own, mut logged) = (None, false);
        let mut unfound: Vec<&[u8]> = Vec::new();
        let mut known: Option<(PathBuf, usize)> = None;
        for (slot, root, name) in hierarchies {
            let line = cgroup::iter(self_cgroup).filter_map(Result::ok).find(|l| {
                if name.is_empty() {
                    l.hierarchy == b"0"
                } else {
                    l.controllers.split(|b| *b == b',').any(|c| c == name)
                }
            });
            // The agent's own path climbs out of its namespace only if it was moved after the
            // namespace was made: the root cannot be told then.
            let Some(line) = line else { continue };
            let Some((0, rest)) = cgroup::relative(line.path) else { continue };
            let rest = if rest.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(rest)) };
            let mut holds_me = |dir: &OwnedFd| {
                let cg = openat(dir, rest, DIR_FLAGS, Mode::empty()).ok()?;
                let procs = buf.read_file(cg.as_fd(), c"cgroup.procs").ok()?;
                procs.split(|b| *b == b'\n').any(|l| l == pid).then_some(cg)
            };
            // With cgroupfs-style layouts the namespace root has the same path in every
            // hierarchy: try the one found in an earlier hierarchy first (one open and one read
            // instead of a walk of the tree), and walk only if it does not hold the agent.
            let at_known = known.as_ref().and_then(|(p, depth): &(PathBuf, usize)| {
                let dir = open_dir(root.as_fd(), p)?;
                let cg = holds_me(&dir)?;
                Some((dir, p.clone(), *depth, cg))
            });
            let Some((dir, path, depth, _)) = at_known.or_else(|| search(root.as_fd(), None, holds_me)) else {
                unfound.push(if name.is_empty() { b"unified" } else { name });
                continue;
            };
            if depth > 0 && !logged {
                let shown = path.strip_prefix(".").unwrap_or(&path);
                info!("containers: the agent is in a private cgroup namespace rooted at /{}", shown.display());
                logged = true;
            }
            if own.is_none() {
                if let Some(id) = cgroup::container_id(path.as_os_str().as_bytes()) {
                    let mut o = OwnNamespace { id: [0; 64], hierarchy: [0; 10], hierarchy_len: 0 };
                    o.id.copy_from_slice(id);
                    let h = line.hierarchy.get(..10).unwrap_or(line.hierarchy);
                    o.hierarchy[..h.len()].copy_from_slice(h);
                    o.hierarchy_len = h.len() as u8;
                    own = Some(o);
                }
            }
            known = Some((path.clone(), depth));
            anchors.depth[slot] = Some(depth);
            anchors.ns[slot] = Some((dir, path));
        }
        // A hierarchy where the agent's cgroup is not found reads as the host's root: in a
        // private namespace, its figures of the agent's own container then read 0. Say which.
        if !unfound.is_empty() && (own.is_some() || logged) {
            let names: Vec<_> = unfound.iter().map(|n| String::from_utf8_lossy(n)).collect();
            warn!(
                "containers: the agent's own cgroup was not found in the {} hierarchy; its container's figures from it read 0",
                names.join(", ")
            );
        }
        own
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Finds this cycle's containers from the processes' container ids and samples each.
    pub fn update(&mut self, t: &mut ContainerTable, procs: &ProcessTable) {
        t.cycle += 1;
        let retry = t.cycle % REDETECT_EVERY == 0;
        if retry {
            self.redetect(t);
        }
        t.prev_mono_secs = if t.cycle > 1 { Some(t.mono_secs) } else { None };
        t.mono_secs = procs.mono_secs;
        let cycle = t.cycle;
        for p in &procs.procs {
            let Some(id) = &p.container_id else { continue };
            let host_network = self.host_net_ns != 0 && p.net_ns == self.host_net_ns;
            match t.containers.iter_mut().find(|c| c.id == *id) {
                Some(c) => {
                    if c.seen_cycle != cycle {
                        c.seen_cycle = cycle;
                        c.member_pid = p.pid;
                        c.host_network = host_network;
                    } else if c.dirs.is_empty() && c.samples == 0 && !c.warned {
                        // Found this cycle by a process that exited before its `cgroup` file was
                        // read (pids wrap: the lowest may be a short-lived one): another member's
                        // file names the same cgroups.
                        c.member_pid = p.pid;
                        self.open_dirs(c, p.dir.as_fd(), true);
                    }
                }
                None => {
                    let mut c = Container::new(*id, p.pid, cycle);
                    c.host_network = host_network;
                    self.open_dirs(&mut c, p.dir.as_fd(), true);
                    t.containers.push(c);
                }
            }
        }
        t.containers.retain(|c| c.seen_cycle == cycle);
        for c in &mut t.containers {
            if retry && c.dirs.is_empty() {
                self.rediscover(c, procs, true);
            }
            // For the docker pass of this same moment, from the same reads (see `docker_wanted`).
            let mut dk = t.docker_wanted.then_some(c.docker.cur);
            let mut sample = self.sample(c, dk.as_mut());
            // A `start` event of a known container: check its directories even if every read
            // succeeded (they are checked anyway when a file was missing).
            let started = t.started.contains(&c.id);
            if (self.missing || started) && self.stale(&c.dirs) {
                // Restarted in place (same id, new cgroup directories): find them again and
                // start its rates afresh, as for a new container.
                debug!("containers: {} has new cgroup directories (restarted)", short(&c.id));
                // Quietly: a container on its way out looks the same until its processes are gone.
                self.rediscover(c, procs, false);
                c.samples = 0;
                c.docker.prev = None;
                sample = self.sample(c, dk.as_mut());
            }
            c.prev = (c.samples > 0).then_some(c.cur);
            c.cur = sample;
            c.samples += 1;
            if let Some(dk) = dk {
                c.docker.cur = dk;
                c.docker.cur_at = Some(t.mono_secs);
            }
        }
        t.started.clear();
    }

    /// The docker pass's sample of `c` at `mono_secs`, read now (the process check did not read
    /// it in this moment). `false` when its cgroup directories are gone (restarted in place, not
    /// yet found again by the process check): nothing is sampled, and its rates start afresh.
    pub fn docker_sample(&mut self, c: &mut Container, mono_secs: f64) -> bool {
        let mut dk = c.docker.cur;
        self.sample(c, Some(&mut dk));
        if self.missing && self.stale(&c.dirs) {
            c.docker.prev = None;
            c.docker.cur_at = None;
            return false;
        }
        c.docker.cur = dk;
        c.docker.cur_at = Some(mono_secs);
        true
    }

    /// Opens the container's directories again, from its member process of this cycle.
    fn rediscover(&mut self, c: &mut Container, procs: &ProcessTable, warn: bool) {
        let Some(i) = procs.index_of(c.member_pid) else { return };
        c.dirs = CgroupDirs::default();
        self.open_dirs(c, procs.procs[i].dir.as_fd(), warn);
    }

    /// Whether a held directory is gone (its `cgroup.procs`, which every cgroup has, is).
    fn stale(&self, d: &CgroupDirs) -> bool {
        d.iter().any(|fd| matches!(rustix::fs::statat(fd, c"cgroup.procs", AtFlags::empty()), Err(Errno::NOENT)))
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
            self.anchors = Anchors::default();
            self.locate_own_namespace();
            t.containers.clear();
        }
    }

    /// Opens the container's cgroup directories from `/proc/<member>/cgroup`; says once (per
    /// container) when one of them cannot be opened, since its figures then read 0.
    fn open_dirs(&mut self, c: &mut Container, proc_dir: BorrowedFd<'_>, warn: bool) {
        let Self { buf, layout, anchors, .. } = self;
        let Ok(cg) = buf.read_file(proc_dir, c"cgroup") else { return };
        let dirs = &mut c.dirs;
        let mut failed: Option<(Errno, &[u8])> = None;
        let mut matched = false;
        let mut in_task = false;
        for line in cgroup::iter(cg).filter_map(Result::ok) {
            let p = line.path;
            // A path that names the container, or one within the agent's own namespace, whose
            // root may be the container's cgroup (checked per hierarchy below).
            let named = cgroup::container_id(p) == Some(&c.id[..]);
            if !named && (cgroup::container_id(p).is_some() || cgroup::relative(p).is_none_or(|(u, _)| u != 0)) {
                continue;
            }
            let cpu_line = line.hierarchy == b"0" || line.controllers.split(|b| *b == b',').any(|c| c == b"cpu");
            if cpu_line && !matches!(layout, Layout::Absent) {
                let slot = if matches!(layout, Layout::V2(_)) { UNIFIED } else { CPU };
                in_task = anchors.in_ecs_task(slot, p);
            }
            let mut open = |root: Option<&OwnedFd>, slot: usize, into: &mut Option<OwnedFd>| {
                let Some(root) = root else { return };
                let ns_root = anchors.climbed_to(slot, p).map(|a| a.as_os_str().as_bytes());
                if !named && ns_root.and_then(cgroup::container_id) != Some(&c.id[..]) {
                    return;
                }
                matched = true;
                match anchors.open(root.as_fd(), slot, p) {
                    Ok(fd) => *into = Some(fd),
                    Err(e) => {
                        failed.get_or_insert((e, p));
                    }
                }
                // The runtime, from the path (`/../<id>` names none: then from where it climbs to).
                let climbed = anchors.climbed_to(slot, p).map_or(&[][..], |a| a.as_os_str().as_bytes());
                c.runtime = runtime(p).or_else(|| runtime(climbed)).unwrap_or(c.runtime);
            };
            match &*layout {
                Layout::V1(roots) => {
                    for ctl in line.controllers.split(|b| *b == b',') {
                        match ctl {
                            b"memory" => open(roots.memory.as_ref(), MEMORY, &mut dirs.memory),
                            b"cpuacct" => open(roots.cpuacct.as_ref(), CPUACCT, &mut dirs.cpuacct),
                            b"cpu" => open(roots.cpu.as_ref(), CPU, &mut dirs.cpu),
                            b"blkio" => open(roots.blkio.as_ref(), BLKIO, &mut dirs.blkio),
                            b"pids" => open(roots.pids.as_ref(), PIDS, &mut dirs.pids),
                            _ => {}
                        }
                    }
                }
                Layout::V2(root) if line.hierarchy == b"0" => open(Some(root), UNIFIED, &mut dirs.unified),
                _ => {}
            }
        }
        if warn && !c.warned {
            let what = match (failed, matched) {
                (Some((e, p)), _) => Some(format!("{} ({e})", String::from_utf8_lossy(p))),
                (None, false) if !matches!(layout, Layout::Absent) => Some(format!("none under the {}", layout.name())),
                _ => None,
            };
            if let Some(what) = what {
                warn!("containers: cannot open the cgroup of {}: {what}; its figures read 0", short(&c.id));
                c.warned = true;
            }
        }
        // Throttling: ECS sets the task's CPU limit on the task's cgroup, and containers only
        // get shares; then throttling shows only there (spec/docker-check.md §4.3).
        let v2 = dirs.unified.is_some();
        let has_quota = |buf: &mut ReadBuf, dir: &OwnedFd| {
            let file = if v2 { c"cpu.max" } else { c"cpu.cfs_quota_us" };
            buf.read_file(dir.as_fd(), file).ok().is_some_and(|b| {
                if v2 {
                    cs::cpu_max(b).is_some_and(|(q, _)| q.is_some())
                } else {
                    cs::signed_single(b).is_some()
                }
            })
        };
        if let Some(own) = dirs.unified.as_ref().or(dirs.cpu.as_ref()).filter(|_| in_task) {
            if !has_quota(buf, own) {
                dirs.task = openat(own, c"..", DIR_FLAGS, Mode::empty()).ok().filter(|t| has_quota(buf, t));
            }
        }
        let stamp_dir = dirs.cpuacct.as_ref().or(dirs.unified.as_ref()).or(dirs.memory.as_ref());
        c.created_ms = stamp_dir
            .and_then(|d| rustix::fs::statat(d, c"", AtFlags::EMPTY_PATH).ok())
            .map_or(0, |st| st.st_mtime as i64 * 1000 + st.st_mtime_nsec as i64 / 1_000_000);
    }

    /// Reads `file` in `dir`; a file that is not there sets [`Self::missing`].
    fn read(&mut self, dir: Option<&OwnedFd>, file: &CStr) -> Option<&[u8]> {
        #[cfg(test)]
        self.reads.push((rustix::fd::AsRawFd::as_raw_fd(dir?), file.to_string_lossy().into_owned()));
        match self.buf.read_file(dir?.as_fd(), file) {
            Ok(b) => Some(b),
            Err(e) => {
                self.missing |= e.kind() == io::ErrorKind::NotFound;
                None
            }
        }
    }

    /// Reads `file` in `dir` when it may be absent (a controller feature the kernel may not
    /// have, swap accounting): its absence says nothing about the directory.
    fn read_optional(&mut self, dir: Option<&OwnedFd>, file: &CStr) -> Option<&[u8]> {
        #[cfg(test)]
        self.reads.push((rustix::fd::AsRawFd::as_raw_fd(dir?), file.to_string_lossy().into_owned()));
        self.buf.read_file(dir?.as_fd(), file).ok()
    }

    /// Reads the container's figures; with `dk`, also what the docker pass needs
    /// ([`DockerSample`]) from the same reads: every file is read at most once, the process
    /// check's files parsed for both, and the files only the pass needs read only then.
    fn sample(&mut self, c: &Container, mut dk: Option<&mut DockerSample>) -> CtrSample {
        self.missing = false;
        let mut s = CtrSample::default();
        if let Some(k) = dk.as_deref_mut() {
            *k = DockerSample::default();
        }
        let d = &c.dirs;
        let below_2_60 = |v: &u64| *v > 0 && *v < NO_LIMIT_2_60;
        if d.unified.is_some() {
            let u = d.unified.as_ref();
            if let Some(b) = self.read(u, c"cpu.stat") {
                if let Some(k) = dk.as_deref_mut() {
                    k.cpu_read = cs::get(b, b"usage_usec").is_some();
                }
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
                if let Some(k) = dk.as_deref_mut() {
                    k.mem_read = true;
                    k.kmem = match (cs::get(b, b"kernel_stack"), cs::get(b, b"slab")) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
                    };
                }
            }
            s.mem_usage = self.read(u, c"memory.current").and_then(cs::single).unwrap_or(0);
            s.mem_limit = self.read(u, c"memory.max").and_then(cs::max_or_value).flatten();
            s.mem_failcnt = self.read(u, c"memory.events").and_then(|b| cs::get(b, b"max")).unwrap_or(0);
            if let Some(b) = self.read(u, c"io.stat") {
                (s.io_read_bytes, s.io_write_bytes) = cs::io_stat_bytes(b);
                if let Some(k) = dk.as_deref_mut() {
                    let mut n = 0;
                    cs::io_stat_per_device(b, &mut k.devices, &mut n);
                    k.n_devices = n as u8;
                }
            }
            s.threads = self.read(u, c"pids.current").and_then(cs::single).unwrap_or(0);
            if let Some(k) = dk.as_deref_mut() {
                k.cpu_shares = self.read_optional(u, c"cpu.weight").and_then(cs::single).map(cs::weight_to_shares);
                k.thread_limit = self.read_optional(u, c"pids.max").and_then(cs::max_or_value).flatten();
                k.mem_swap = self.read_optional(u, c"memory.swap.current").and_then(cs::single);
                // The ECS task's limit is on the task's slice, the container's parent.
                let parent = self.read_optional(u, c"../memory.max").and_then(cs::max_or_value).flatten();
                k.mem_limit = [s.mem_limit, parent].into_iter().flatten().min().filter(below_2_60);
                let swap_max = self.read_optional(u, c"memory.swap.max").and_then(cs::max_or_value).flatten();
                k.mem_sw_limit = s.mem_limit.zip(swap_max).map(|(m, w)| m.saturating_add(w)).filter(below_2_60);
                k.mem_soft_limit = self.read_optional(u, c"memory.low").and_then(cs::single).filter(below_2_60);
            }
        } else {
            let hz = self.user_hz;
            if let Some(b) = self.read(d.cpuacct.as_ref(), c"cpuacct.stat") {
                let ns = |k: &[u8]| cs::get(b, k).unwrap_or(0).saturating_mul(1_000_000_000) / hz;
                s.cpu_user_ns = ns(b"user");
                s.cpu_system_ns = ns(b"system");
            }
            let usage = self.read(d.cpuacct.as_ref(), c"cpuacct.usage").and_then(cs::single);
            if let Some(k) = dk.as_deref_mut() {
                k.cpu_read = usage.is_some();
            }
            s.cpu_total_ns = usage.unwrap_or(s.cpu_user_ns + s.cpu_system_ns);
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
                if let Some(k) = dk.as_deref_mut() {
                    k.mem_read = true;
                    // `swap` is there only with swap accounting (`swapaccount=1`).
                    k.mem_swap = cs::get(b, b"total_swap").or_else(|| cs::get(b, b"swap"));
                    // The least limit of the cgroup and its ancestors: the ECS task's included.
                    k.mem_limit = cs::get(b, b"hierarchical_memory_limit").filter(below_2_60);
                    k.mem_sw_limit = cs::get(b, b"hierarchical_memsw_limit").filter(below_2_60);
                }
            }
            s.mem_usage = self.read(d.memory.as_ref(), c"memory.usage_in_bytes").and_then(cs::single).unwrap_or(0);
            s.mem_limit = self
                .read(d.memory.as_ref(), c"memory.limit_in_bytes")
                .and_then(cs::single)
                .filter(|&l| l < V1_NO_LIMIT);
            s.mem_failcnt = self.read(d.memory.as_ref(), c"memory.failcnt").and_then(cs::single).unwrap_or(0);
            if let Some(b) = self.read(d.blkio.as_ref(), c"blkio.throttle.io_service_bytes") {
                (s.io_read_bytes, s.io_write_bytes) = cs::blkio_service_bytes(b);
                if let Some(k) = dk.as_deref_mut() {
                    let mut n = 0;
                    cs::blkio_per_device(b, false, &mut k.devices, &mut n);
                    k.n_devices = n as u8;
                }
            }
            s.threads = self.read(d.pids.as_ref(), c"pids.current").and_then(cs::single).unwrap_or(0);
            if let Some(k) = dk.as_deref_mut() {
                if let Some(b) = self.read_optional(d.blkio.as_ref(), c"blkio.throttle.io_serviced") {
                    let mut n = usize::from(k.n_devices);
                    cs::blkio_per_device(b, true, &mut k.devices, &mut n);
                    k.n_devices = n as u8;
                }
                k.cpu_shares = self.read_optional(d.cpu.as_ref(), c"cpu.shares").and_then(cs::single);
                k.thread_limit = self.read_optional(d.pids.as_ref(), c"pids.max").and_then(cs::max_or_value).flatten();
                k.mem_soft_limit = self
                    .read_optional(d.memory.as_ref(), c"memory.soft_limit_in_bytes")
                    .and_then(cs::single)
                    .filter(below_2_60);
                k.kmem = self.read_optional(d.memory.as_ref(), c"memory.kmem.usage_in_bytes").and_then(cs::single);
            }
        }
        if let Some(b) = self.read(d.task.as_ref(), c"cpu.stat") {
            s.throttled_periods = cs::get(b, b"nr_throttled").unwrap_or(0);
            s.throttled_ns = match cs::get(b, b"throttled_usec") {
                Some(us) => us.saturating_mul(1000),
                None => cs::get(b, b"throttled_time").unwrap_or(0),
            };
        }
        if let Some(k) = dk.as_deref_mut() {
            // The container's own quota, else its ECS task's (the cgroup its throttling is read in).
            k.cpu_limit_pct = s.cpu_limit_pct.or_else(|| self.task_cpu_limit(d.task.as_ref(), d.unified.is_some()));
            k.open_fds = self.open_fds(c);
        }
        // The container's network, as one member process sees it; none when that is the
        // host's network namespace (`--network host`): the host's totals are not the container's.
        if c.host_network {
            if let Some(k) = dk {
                k.base = s;
            }
            return s;
        }
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
                    if let Some(k) = dk.as_deref_mut() {
                        k.push_iface(IfaceNet::new(dev.name, dev.counters.rx_bytes, dev.counters.tx_bytes));
                    }
                }
            }
        }
        if let Some(k) = dk {
            k.base = s;
        }
        s
    }

    /// The CPU limit set on the ECS task's cgroup (held only when it has one), in percent of
    /// one core: from the layout's file (`v2`: `cpu.max`; v1: `cpu.cfs_quota_us` and
    /// `cpu.cfs_period_us`), as `open_dirs` found the task's quota.
    fn task_cpu_limit(&mut self, task: Option<&OwnedFd>, v2: bool) -> Option<f64> {
        let task = task?;
        if v2 {
            let (q, period) = self.read_optional(Some(task), c"cpu.max").and_then(cs::cpu_max)?;
            return q.map(|q| q as f64 / period.max(1) as f64 * 100.0);
        }
        let q = self.read_optional(Some(task), c"cpu.cfs_quota_us").and_then(cs::signed_single)?;
        let p = self.read_optional(Some(task), c"cpu.cfs_period_us").and_then(cs::single)?;
        Some(q as f64 / p.max(1) as f64 * 100.0)
    }

    /// Descriptors open in the container's processes: the entries of `/proc/<pid>/fd` of each
    /// pid in its `cgroup.procs`, listed into a stack buffer (no allocation).
    fn open_fds(&mut self, c: &Container) -> u64 {
        let d = &c.dirs;
        let dir = d.unified.as_ref().or(d.pids.as_ref()).or(d.memory.as_ref()).or(d.cpuacct.as_ref());
        let Self { buf, proc_root, .. } = self;
        let Some(procs) = dir.and_then(|dir| buf.read_file(dir.as_fd(), c"cgroup.procs").ok()) else { return 0 };
        let mut total = 0u64;
        let mut listing = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        for pid in procs.split(|b| *b == b'\n').filter(|l| !l.is_empty() && l.iter().all(u8::is_ascii_digit)) {
            // `<pid>/fd` and a NUL: a line too long for a pid is not one.
            let mut path = [0u8; 32];
            let Some(dst) = path.get_mut(..pid.len() + 4) else { continue };
            dst[..pid.len()].copy_from_slice(pid);
            dst[pid.len()..pid.len() + 3].copy_from_slice(b"/fd");
            let Ok(name) = CStr::from_bytes_until_nul(&path) else { continue };
            // A process that ended since the list was read is normal.
            let Ok(fd) = openat(&*proc_root, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            else {
                continue;
            };
            let mut entries = rustix::fs::RawDir::new(fd, &mut listing);
            while let Some(Ok(e)) = entries.next() {
                let n = e.file_name().to_bytes();
                total += u64::from(n != b"." && n != b"..");
            }
        }
        total
    }
}

/// The first 12 digits of an id, as `docker ps` shows it.
fn short(id: &[u8; 64]) -> &str {
    std::str::from_utf8(&id[..12]).unwrap_or("?")
}

/// The container runtime a cgroup path names (`/docker/<id>`, `docker-<id>.scope`, ...).
fn runtime(path: &[u8]) -> Option<&'static str> {
    let has = |needle: &[u8]| memchr::memmem::find(path, needle).is_some();
    if has(b"docker") {
        Some("docker")
    } else if has(b"containerd") {
        Some("containerd")
    } else if has(b"crio") {
        Some("cri-o")
    } else {
        None
    }
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

    /// The docker pass's figures: from the fixtures (v1, both Amazon Linux layouts, and v2), each
    /// cgroup file read once; in a cycle that reads them for the pass, the pass reads nothing.
    #[test]
    fn docker_samples_read_each_file_once_and_share_the_process_checks_reads() {
        for (name, pid) in [("al2023-v2", 4242), ("al1-v1", 4243), ("al2-v1", 4243)] {
            let root = fixture(name);
            let dir = open_dir(CWD, &root.join(format!("proc/{pid}"))).unwrap();
            let mut p = Proc::new(pid, 1, 0, dir, 0.0);
            p.container_id = Some(*ID);
            let procs = ProcessTable { procs: vec![p], mono_secs: 10.0, ..Default::default() };
            let mut src = ContainerSource::open(&root.join("proc"), &root.join("sys")).unwrap();
            let mut t = ContainerTable::default();
            // A cycle alone, then one that the pass shares.
            src.update(&mut t, &procs);
            let alone = std::mem::take(&mut src.reads);
            t.docker_wanted = true;
            src.update(&mut t, &procs);
            let shared = std::mem::take(&mut src.reads);
            let c = &mut t.containers[0];
            assert_eq!(c.docker.cur_at, Some(10.0), "{name}");
            assert_eq!(c.docker.cur.base, c.cur, "{name}: the same figures, from the same reads");
            let mut sorted = shared.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), shared.len(), "{name}: a file read twice in one cycle: {shared:?}");
            assert!(alone.iter().all(|r| shared.contains(r)), "{name}: the cycle's reads are the pass's too");
            // The pass alone at another moment reads the same files once each.
            assert!(src.docker_sample(c, 12.0), "{name}");
            let pass = std::mem::take(&mut src.reads);
            let mut p2 = pass.clone();
            p2.sort();
            p2.dedup();
            assert_eq!(p2.len(), pass.len(), "{name}: {pass:?}");
            assert_eq!(c.docker.cur_at, Some(12.0));
            let k = c.docker.cur;
            assert!(k.base.cpu_total_ns > 0 && k.base.mem_cache > 0, "{name}: {k:?}");
            assert_eq!(k.cpu_limit_pct, Some(50.0), "{name}");
            assert_eq!(k.mem_limit, Some(268_435_456), "{name}: the least limit of the hierarchy");
            // The v1 fixtures have `cpu.shares`; the v2 one has no `cpu.weight`.
            assert_eq!(k.cpu_shares.is_some(), name.ends_with("v1"), "{name}: {k:?}");
            if name.ends_with("v2") {
                let dev = k.devices()[0];
                assert_eq!((dev.read_bytes, dev.write_bytes), (1_048_576, 2_097_152));
            }
            assert!(!k.ifaces().is_empty(), "{name}: net/dev of the member pid");
        }
    }

    #[test]
    fn paths_from_a_private_cgroup_namespace_open_the_same_cgroup() {
        // 4242/4243: `/proc/<pid>/cgroup` as the host's namespace shows it; 4244: as the agent's
        // own private namespace does (an ECS task on AL2023: `0::/../../ecstasks-<task>.slice/
        // docker-<id>.scope`; `docker run --cgroupns private` on v1: `4:memory:/../<id>`).
        for (name, host_view) in [("al2023-v2", 4242), ("al2-v1", 4243)] {
            let (host, _) = run(name, host_view);
            let (private, _) = run(name, 4244);
            let (a, b) = (&host.containers[0], &private.containers[0]);
            assert!(!b.dirs.is_empty() && !b.warned, "{name}: the cgroup was opened");
            assert!(b.cur.cpu_total_ns > 0 && b.cur.mem_cache > 0, "{name}: {:?}", b.cur);
            assert_eq!(a.cur, b.cur, "{name}: the same figures from either view");
            assert_eq!((a.created_ms, a.runtime), (b.created_ms, b.runtime));
        }
    }

    #[test]
    fn a_cgroup_that_cannot_be_opened_is_flagged_for_one_warning() {
        // The path climbs out of the namespace to a task slice that is not there.
        let (t, _) = run("al2023-v2", 4245);
        let c = &t.containers[0];
        assert!(c.dirs.is_empty() && c.warned, "{c:?}");
        assert_eq!(c.cur.cpu_total_ns, 0);
    }

    /// The process a new container is found by exited before its `cgroup` file was read (its
    /// `/proc/<pid>` has none): the next process of the container gives its cgroups.
    #[test]
    fn a_container_found_by_a_vanished_process_is_opened_by_the_next() {
        let tmp = std::env::temp_dir().join(format!("sts-agent-vanished-member-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let ok = std::process::Command::new("cp").arg("-a").arg(fixture("al2023-v2")).arg(&tmp).status().unwrap();
        assert!(ok.success());
        std::fs::create_dir(tmp.join("proc/4241")).unwrap();
        let member = |pid: u32| {
            let mut p = Proc::new(pid, 1, 0, open_dir(CWD, &tmp.join(format!("proc/{pid}"))).unwrap(), 0.0);
            p.container_id = Some(*ID);
            p
        };
        let procs = ProcessTable { procs: vec![member(4241), member(4242)], mono_secs: 10.0, ..Default::default() };
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        let mut t = ContainerTable::default();
        src.update(&mut t, &procs);
        std::fs::remove_dir_all(&tmp).unwrap();
        let c = &t.containers[0];
        assert!(!c.dirs.is_empty() && !c.warned, "{c:?}");
        assert_eq!((c.cur.cpu_total_ns, c.member_pid), (2_000_000_000, 4242));
    }

    /// `cgroup.procs` lines too long for a pid (none is) are skipped, not a panic.
    #[test]
    fn open_descriptors_skip_a_line_too_long_for_a_pid() {
        let tmp = std::env::temp_dir().join(format!("sts-agent-longpid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let ok = std::process::Command::new("cp").arg("-a").arg(fixture("al2023-v2")).arg(&tmp).status().unwrap();
        assert!(ok.success());
        let scope = tmp.join(format!(
            "sys/fs/cgroup/ecstasks.slice/ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{}.scope",
            std::str::from_utf8(ID).unwrap()
        ));
        let dir = open_dir(CWD, &tmp.join("proc/4242")).unwrap();
        let mut p = Proc::new(4242, 1, 0, dir, 0.0);
        p.container_id = Some(*ID);
        let procs = ProcessTable { procs: vec![p], mono_secs: 10.0, ..Default::default() };
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        let mut t = ContainerTable::default();
        src.update(&mut t, &procs);
        std::fs::write(scope.join("cgroup.procs"), "4242\n").unwrap();
        let c = &mut t.containers[0];
        assert!(src.docker_sample(c, 11.0));
        let plain = c.docker.cur.open_fds;
        for long in [28, 29, 31, 40] {
            std::fs::write(scope.join("cgroup.procs"), format!("4242\n{}\n", "1".repeat(long))).unwrap();
            assert!(src.docker_sample(c, 12.0), "{long}");
            assert_eq!(c.docker.cur.open_fds, plain, "a {long}-digit line");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_cgroup_recreated_in_place_is_opened_again() {
        // `docker restart`: the same id, new directories; the old ones are gone.
        let tmp = std::env::temp_dir().join(format!("sts-agent-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let ok = std::process::Command::new("cp").arg("-a").arg(fixture("al2023-v2")).arg(&tmp).status().unwrap();
        assert!(ok.success());
        let dir = open_dir(CWD, &tmp.join("proc/4242")).unwrap();
        let mut p = Proc::new(4242, 1, 0, dir, 0.0);
        p.container_id = Some(*ID);
        let mut procs = ProcessTable { procs: vec![p], mono_secs: 10.0, ..Default::default() };
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        let mut t = ContainerTable::default();
        src.update(&mut t, &procs);
        procs.mono_secs = 11.0;
        src.update(&mut t, &procs);
        assert_eq!((t.containers[0].cur.cpu_total_ns, t.containers[0].samples), (2_000_000_000, 2));
        let scope = tmp.join(format!(
            "sys/fs/cgroup/ecstasks.slice/ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{}.scope",
            std::str::from_utf8(ID).unwrap()
        ));
        std::fs::remove_dir_all(&scope).unwrap();
        std::fs::create_dir(&scope).unwrap();
        std::fs::write(scope.join("cgroup.procs"), "4242\n").unwrap();
        std::fs::write(scope.join("cpu.stat"), "usage_usec 7000\nuser_usec 5000\nsystem_usec 2000\n").unwrap();
        procs.mono_secs = 12.0;
        src.update(&mut t, &procs);
        let c = &t.containers[0];
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(c.cur.cpu_total_ns, 7_000_000, "read from the new directory");
        assert_eq!((c.samples, c.prev), (1, None), "rates start afresh, as for a new container");
    }

    #[test]
    fn the_agents_own_container_from_its_private_namespace() {
        // The agent in its ECS task's container on AL2023: its own cgroup reads `0::/`; the
        // container's scope lists its pid (4242 here).
        let tmp = std::env::temp_dir().join(format!("sts-agent-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let ok = std::process::Command::new("cp").arg("-a").arg(fixture("al2023-v2")).arg(&tmp).status().unwrap();
        assert!(ok.success());
        std::fs::create_dir_all(tmp.join("proc/4246")).unwrap();
        std::fs::write(tmp.join("proc/4246/cgroup"), "0::/\n").unwrap();
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        let own = src.find_own_namespace(b"0::/\n", 4242).expect("the namespace root is the container's scope");
        assert_eq!((&own.id, own.hierarchy()), (ID, &b"0"[..]));
        // A process in the agent's namespace (`0::/`) is in that container ...
        let file = std::fs::read(tmp.join("proc/4246/cgroup")).unwrap();
        assert_eq!(cgroup::process_container(&file, Some((&own.id, own.hierarchy()))), Some(&ID[..]));
        // ... whose cgroup is opened through it, `/` being the scope.
        let mut p = Proc::new(4246, 1, 0, open_dir(CWD, &tmp.join("proc/4246")).unwrap(), 0.0);
        p.container_id = Some(own.id);
        let procs = ProcessTable { procs: vec![p], mono_secs: 10.0, ..Default::default() };
        let mut t = ContainerTable::default();
        src.update(&mut t, &procs);
        let c = &t.containers[0];
        assert!(c.dirs.unified.is_some() && !c.warned, "{c:?}");
        assert_eq!((c.runtime, c.cur.cpu_total_ns, c.cur.mem_limit), ("docker", 2_000_000_000, Some(268_435_456)));
        // Another container's path climbs from there (to the root's grandparent, looked for at
        // the depth the root gives).
        let ContainerSource { layout: Layout::V2(root), anchors, .. } = &mut src else { panic!("v2") };
        let path = format!(
            "/../../ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{}.scope",
            std::str::from_utf8(ID).unwrap()
        );
        let other = anchors.open(root.as_fd(), UNIFIED, path.as_bytes());
        assert_eq!(anchors.climbed_to(UNIFIED, path.as_bytes()), Some(Path::new("./ecstasks.slice")));
        // With shares only, its throttling is its ECS task's (the slice above `/`).
        let task = tmp.join("sys/fs/cgroup/ecstasks.slice/ecstasks-0123456789abcdef0123456789abcdef.slice");
        std::fs::write(task.join(format!("docker-{}.scope/cpu.max", std::str::from_utf8(ID).unwrap())), "max 100000\n")
            .unwrap();
        std::fs::write(task.join("cpu.max"), "100000 100000\n").unwrap();
        std::fs::write(task.join("cpu.stat"), "usage_usec 9\nnr_throttled 42\nthrottled_usec 1500000\n").unwrap();
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        assert!(src.find_own_namespace(b"0::/\n", 4242).is_some());
        let mut t = ContainerTable::default();
        src.update(&mut t, &procs);
        assert_eq!(t.containers[0].cur.throttled_periods, 42, "{:?}", t.containers[0]);
        assert!(other.is_ok());

        // In the host's namespace (the agent at the root, or at a path that names its container):
        // the root is the hierarchy's, and no container is the agent's by default.
        std::fs::write(tmp.join("sys/fs/cgroup/cgroup.procs"), "1\n4247\n").unwrap();
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        assert_eq!(src.find_own_namespace(b"0::/\n", 4247), None);
        assert_eq!(src.anchors.ns[UNIFIED].as_ref().map(|(_, p)| p.clone()), Some(PathBuf::from(".")));
        let named = format!(
            "0::/ecstasks.slice/ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{}.scope\n",
            std::str::from_utf8(ID).unwrap()
        );
        assert_eq!(src.find_own_namespace(named.as_bytes(), 4242), None);
        assert_eq!(src.anchors.depth[UNIFIED], Some(0));
        // Not found at all (the agent moved out of its namespace): nothing assumed.
        let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
        assert_eq!(src.find_own_namespace(b"0::/../x\n", 4242), None);
        assert_eq!(src.find_own_namespace(b"0::/\n", 999_999), None);
        assert!(src.anchors.ns[UNIFIED].is_none());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn throttling_of_a_container_without_a_quota_is_its_ecs_tasks() {
        let tmp = std::env::temp_dir().join(format!("sts-agent-task-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let ok = std::process::Command::new("cp").arg("-a").arg(fixture("al2023-v2")).arg(&tmp).status().unwrap();
        assert!(ok.success());
        let task = tmp.join("sys/fs/cgroup/ecstasks.slice/ecstasks-0123456789abcdef0123456789abcdef.slice");
        let scope = task.join(format!("docker-{}.scope", std::str::from_utf8(ID).unwrap()));
        let dir = open_dir(CWD, &tmp.join("proc/4244")).unwrap();
        let mut p = Proc::new(4244, 1, 0, dir, 0.0);
        p.container_id = Some(*ID);
        let procs = ProcessTable { procs: vec![p], mono_secs: 10.0, ..Default::default() };
        let sample = |task_limit: &str| {
            std::fs::write(task.join("cpu.max"), task_limit).unwrap();
            let mut src = ContainerSource::open(&tmp.join("proc"), &tmp.join("sys")).unwrap();
            let mut t = ContainerTable::default();
            src.update(&mut t, &procs);
            t.containers.pop().unwrap().cur
        };
        std::fs::write(task.join("cpu.stat"), "usage_usec 9\nnr_periods 90\nnr_throttled 42\nthrottled_usec 1500000\n")
            .unwrap();
        // The container has its own quota (the fixture's 50000 100000): its own counters.
        assert_eq!((sample("100000 100000\n").throttled_periods, sample("max 100000\n").throttled_periods), (5, 5));
        // Shares only: the task's limit, and the task's counters.
        std::fs::write(scope.join("cpu.max"), "max 100000\n").unwrap();
        let s = sample("100000 100000\n");
        assert_eq!((s.throttled_periods, s.throttled_ns), (42, 1_500_000_000));
        assert_eq!(s.cpu_total_ns, 2_000_000_000, "the container's own usage still");
        // No limit anywhere: the container's own (zero or not).
        assert_eq!(sample("max 100000\n").throttled_periods, 5);
        std::fs::remove_dir_all(&tmp).unwrap();
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
