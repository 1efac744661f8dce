//! Every process on the host, from `HOST_PROC`: pids from `getdents` on a held directory fd, or,
//! on most cycles, the known ones and those the kernel allocated since (see [`NewPids`]);
//! per-process files through a per-pid `O_PATH` directory fd, one reused read buffer.
//! Each cycle reads `stat` and `io` of every process that ran since its last read (its CPU
//! clock moved; one that did not keeps its last sample, and is read at least every
//! [`FULL_READ_CYCLES`] cycles: see [`ProcessSource::probe`]). By default (`STS_PROCESS_HOLD_FILES=stat`) each
//! process's `stat` is held open from cycle to cycle and re-read with one `pread`, within a
//! kernel-memory budget (see [`HoldFiles`]); `io`, and `stat` beyond the budget or when
//! descriptors are short (see [`hold_ceiling`]), are opened, read and closed each cycle.
//! Memory size and resident come from `stat` (`vsize`, `rss`) whenever it is read;
//! `statm`'s other figures (shared, text, lib, data, dirty) are read when a process is found or
//! execs, then only for reported processes with `status` (see [`ProcessSource::enrich`]), and
//! kept in between: at most [`STATUS_REFRESH_CYCLES`] − 1 cycles old when sent. With
//! `STS_PROCESS_HOLD_FILES=all` `statm` is held and read every cycle (see [`set_statm_detail`]
//! for why the resident figure is always `stat`'s). `cmdline`, `status`, `cgroup`, `exe` and `cwd`
//! are read once per new `(pid, start time)`, and again when it execs (`comm` or the image
//! addresses in `stat` change). A process that vanishes mid-read is counted and
//! skipped; one that cannot be read for want of file descriptors is counted, and skipped when new
//! or kept with its last sample when known. Kernel threads are listed (their CPU counts) but their `statm`/`io` are not read.

use super::new_pids::{Counters, NewPids, Plan};
use super::procfs::{on_procfs, ReadBuf};
use crate::checks::scrub::scrub_args;
use crate::model::names::{Names, Span};
use crate::model::process::{HeldFiles, Proc, ProcSample, ProcessTable, SpareTexts};
use crate::parse::pid::{PidIo, PidStatm};
use crate::parse::{cgroup, cursor::u64_dec, loadavg, meminfo, passwd, pid, proc_stat};
use crate::sys::cpu_clock;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, Mode, OFlags, RawDir, CWD};
use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::path::Path;

/// `<pid>` as a NUL-terminated name, formatted on the stack (no heap).
struct PidPath {
    buf: [u8; 12],
}

impl PidPath {
    fn new(pid: u32) -> PidPath {
        let mut buf = [0u8; 12];
        crate::fmt::decimal(u64::from(pid), &mut buf[..11]);
        PidPath { buf }
    }

    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// uid → user name, from the host's passwd file, re-read when it changes.
struct Users {
    path: Option<CString>,
    mtime: Option<(i64, i64)>,
    names: Names,
    by_uid: Vec<(u32, Span)>,
}

impl Users {
    fn new(host_proc: &Path) -> Users {
        // Inside the agent's container, the host's passwd is reachable through pid 1's root.
        let candidates = [host_proc.join("1/root/etc/passwd"), Path::new("/etc/passwd").to_path_buf()];
        let path =
            candidates.iter().find(|p| p.is_file()).and_then(|p| CString::new(p.as_os_str().as_encoded_bytes()).ok());
        let mut u = Users { path, mtime: None, names: Names::default(), by_uid: Vec::new() };
        u.refresh();
        u
    }

    fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        let Ok(st) = rustix::fs::statat(CWD, path.as_c_str(), rustix::fs::AtFlags::empty()) else { return };
        let mtime = (st.st_mtime as i64, st.st_mtime_nsec as i64);
        if self.mtime == Some(mtime) {
            return;
        }
        use std::os::unix::ffi::OsStrExt;
        let Ok(bytes) = std::fs::read(std::ffi::OsStr::from_bytes(path.to_bytes())) else { return };
        self.mtime = Some(mtime);
        self.names.clear();
        self.by_uid.clear();
        for (name, uid) in passwd::users(&bytes) {
            if !self.by_uid.iter().any(|(u, _)| *u == uid) {
                let span = self.names.push(name);
                self.by_uid.push((uid, span));
            }
        }
    }

    fn name(&self, uid: u32) -> Option<&[u8]> {
        self.by_uid.iter().find(|(u, _)| *u == uid).map(|(_, s)| self.names.get(*s))
    }
}

/// `STS_PROCESS_HOLD_FILES`: which per-process files are held open between cycles. Each held,
/// read procfs file pins kernel memory (its seq_file buffer, `struct file`, ...: 5.7 KiB
/// measured here, [`HELD_FILE_BYTES`] assumed) charged to the agent's cgroup, unreclaimable, so
/// holding is bounded by `STS_PROCESS_HELD_FILES_MAX_KIB` too (see [`ProcessSource::held_files_max`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldFiles {
    /// `stat` only (the default): one syscall a cycle instead of three for the file read for
    /// every process; `io` is opened, read and closed each cycle, `statm` only when a process is
    /// found or execs and for reported processes every [`STATUS_REFRESH_CYCLES`] cycles.
    Stat,
    /// `stat`, `statm` and `io`: one `pread` each whenever the process is read (`statm` too),
    /// three times the kernel memory; the held files of a process left unread are counted
    /// against [`ProcessSource::held_files_max`] as if read.
    All,
    /// Nothing held: every file opened, read and closed each cycle.
    None,
}

impl HoldFiles {
    /// The value's accepted forms (for the configuration error).
    pub const FORMS: &'static str =
        "stat (hold each process's stat open; the default), all (stat, statm and io) or none";

    pub fn parse(v: &str) -> Option<HoldFiles> {
        match v.trim().to_ascii_lowercase().as_str() {
            "stat" => Some(HoldFiles::Stat),
            "all" => Some(HoldFiles::All),
            "none" => Some(HoldFiles::None),
            _ => None,
        }
    }
}

/// Kernel memory assumed per held file, for `STS_PROCESS_HELD_FILES_MAX_KIB`: 5.7 KiB was
/// measured here (cgroup v1 `memory.kmem.usage_in_bytes`, 1,500 held files), rounded up.
pub const HELD_FILE_BYTES: u64 = 6 * 1024;

/// Default `STS_PROCESS_HELD_FILES_MAX_KIB`: the spec's 2 MiB of kernel memory for the agent
/// (341 held files at [`HELD_FILE_BYTES`]).
pub const HELD_FILES_MAX_KIB: u64 = 2048;

/// How many more files this cycle may hold, and the descriptor numbers they must stay under.
#[derive(Default)]
struct HoldRoom {
    left: u64,
    ceiling: u64,
}

/// Reported processes get `status` and `statm` re-read once every this many cycles (see
/// [`ProcessSource::enrich`]).
pub const STATUS_REFRESH_CYCLES: u64 = 4;

pub struct ProcessSource {
    root: OwnedFd,
    dents: Vec<MaybeUninit<u8>>,
    link: Vec<MaybeUninit<u8>>,
    pids: Vec<u32>,
    buf: ReadBuf,
    args: Vec<u8>,
    exe: Vec<u8>,
    clk_tck: u64,
    page_size: u64,
    boot_time: u64,
    /// Counts [`ProcessSource::collect`]s: the round-robin's clock (see [`ProcessSource::enrich`]).
    cycle: u64,
    /// Processes seen to exec into another program this cycle.
    execs: u32,
    users: Users,
    /// Processes skipped for want of file descriptors (`EMFILE`/`ENFILE`): since start, since the
    /// last log line, and when that line was written (at most one per [`NO_FDS_LOG_SECS`]).
    pub no_fds_total: u64,
    /// Descriptor counts taken (`fd/` of reported processes, read) since the agent started.
    pub fd_counts_total: u64,
    no_fds_unlogged: u64,
    no_fds_logged_at: Option<f64>,
    /// Descriptors numbered from here up are left to the rest of the agent (see [`fd_ceiling`]).
    fd_ceiling: u64,
    /// This cycle's room for held files (see [`ProcessSource::held_files_max`]).
    room: HoldRoom,
    /// `STS_PROCESS_HOLD_FILES` (forced to `None` when no process is reported).
    pub hold_files: HoldFiles,
    /// `STS_PROCESS_HELD_FILES_MAX_KIB`.
    pub held_files_max_kib: u64,
    /// The agent's own container when it runs in a private cgroup namespace (processes there read
    /// `/`); set by the caller from [`super::cgroups::ContainerSource::own_namespace`].
    pub own_namespace: Option<super::cgroups::OwnNamespace>,
    /// Known processes kept with their last sample this cycle for want of descriptors
    /// (see [`ProcessSource::keep_last`]).
    kept_no_fds: u32,
    /// `STS_PROCESS_SKIP_IDLE`: a process that has not run since its last read is not read again
    /// (see [`ProcessSource::probe`]).
    pub skip_idle: bool,
    /// `HOST_PROC`'s pids are the agent's (the same pid namespace: CPU clocks are looked up by
    /// pid in the caller's), and the agent's own clock reads (see [`clocks_work`]).
    clocks_work: bool,
    /// Text buffers of processes that ended, for the next ones found (see [`SpareTexts`]).
    spare_texts: SpareTexts,
    /// Whether to list `HOST_PROC` this cycle or probe the pids allocated since the last one.
    pub new_pids: NewPids,
    /// `HOST_PROC/loadavg`, held: its last field is the pid cursor (see [`NewPids`]).
    loadavg: Option<OwnedFd>,
    /// The leaders this cycle's probe found among the pids allocated since the last one (sorted).
    fresh: Vec<u32>,
    /// `HOST_PROC/stat` and `meminfo`, held (see [`ReadBuf::read_held`]).
    host_files: [Option<OwnedFd>; 2],
}

/// `status` and `statm` of a reported process that has not run and kept its resident size are read
/// at least once in this many cycles all the same, and its descriptors counted (see
/// [`ProcessSource::enrich`]).
pub const DETAIL_STANDING_CYCLES: u64 = 4 * STATUS_REFRESH_CYCLES;

/// A process left unread while idle (see [`ProcessSource::probe`]) is read in full at least once
/// every this many cycles (round-robin by pid), for what may change while it does not run.
pub const FULL_READ_CYCLES: u64 = STATUS_REFRESH_CYCLES;

/// Whether processes' CPU clocks can stand for their `HOST_PROC` pids: `HOST_PROC/self` names
/// the agent's own pid (so that procfs belongs to the agent's pid namespace, as with the ECS
/// task's `pidMode: host`; a procfs of another pid namespace has no `self` for the agent, or
/// another number), and the agent's own clock reads. Otherwise every process is read in full.
/// `NSpid` in `HOST_PROC/self/status` says it exactly (one pid: the agent lives in that procfs's
/// namespace; more: in a namespace below it); kernels before 4.1 have no `NSpid`, and then the
/// pid `self` names must be the agent's.
fn clocks_work(root: BorrowedFd<'_>, link: &mut [MaybeUninit<u8>], buf: &mut ReadBuf) -> bool {
    let me = std::process::id();
    let listed = rustix::fs::readlinkat_raw(root, c"self", link).ok().and_then(|(b, _)| u64_dec(b));
    let ns_pids = buf.read_rendered(root, c"self/status").ok().and_then(|b| pid::parse_status(b).ok()?.ns_pids);
    listed == Some(u64::from(me))
        && ns_pids.is_none_or(|n| n == 1)
        && cpu_clock::process_cpu_ns(me).is_some_and(|ns| ns > 0)
}

/// Running out of file descriptors is logged at most once per this many seconds.
pub const NO_FDS_LOG_SECS: f64 = 300.0;

enum Gone {
    /// ENOENT/ESRCH: the process exited (normal).
    Vanished,
    /// A known process ended, and no new one was listed or probed under its pid (normal; not a
    /// process vanished mid-read).
    Ended,
    /// EMFILE/ENFILE: the agent (or the host) is out of file descriptors; counted and logged. A
    /// new process is skipped this cycle; a known one keeps its last sample
    /// ([`ProcessSource::keep_last`]).
    NoFds,
    /// Anything else; skipped this cycle.
    Other,
}

/// What refreshing a known process found (see [`ProcessSource::refresh_known`]).
enum Known {
    /// The same process: refreshed in place.
    Kept,
    /// Gone, or its pid names another process now.
    Ended,
}

fn classify(e: io::Error) -> Gone {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => Gone::NoFds,
        _ if e.kind() == io::ErrorKind::NotFound => Gone::Vanished,
        _ => Gone::Other,
    }
}

/// `Err(NoFds)` when `r` failed for want of file descriptors; any other outcome is `Ok`.
fn fds_left<T>(r: &io::Result<T>) -> Result<(), Gone> {
    match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => Err(Gone::NoFds),
        _ => Ok(()),
    }
}

impl ProcessSource {
    pub fn open(host_proc: &Path) -> io::Result<ProcessSource> {
        let root = openat(CWD, host_proc, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let mut source = ProcessSource {
            root,
            dents: vec![MaybeUninit::uninit(); 32 * 1024],
            link: vec![MaybeUninit::uninit(); 4096],
            pids: Vec::with_capacity(1024),
            buf: ReadBuf::with_capacity(16 * 1024),
            args: Vec::with_capacity(4096),
            exe: Vec::with_capacity(256),
            clk_tck: rustix::param::clock_ticks_per_second().max(1),
            page_size: (rustix::param::page_size() as u64).max(1),
            boot_time: 0,
            cycle: 0,
            execs: 0,
            users: Users::new(host_proc),
            no_fds_total: 0,
            fd_counts_total: 0,
            no_fds_unlogged: 0,
            no_fds_logged_at: None,
            fd_ceiling: u64::MAX,
            room: HoldRoom::default(),
            hold_files: HoldFiles::Stat,
            held_files_max_kib: HELD_FILES_MAX_KIB,
            own_namespace: None,
            kept_no_fds: 0,
            skip_idle: true,
            clocks_work: false,
            spare_texts: SpareTexts::default(),
            new_pids: NewPids::new(0, false),
            loadavg: None,
            fresh: Vec::with_capacity(64),
            host_files: Default::default(),
        };
        source.clocks_work = clocks_work(source.root.as_fd(), &mut source.link, &mut source.buf);
        // The cursor in `loadavg` is the reader's pid namespace's: it stands for `HOST_PROC`'s
        // pids when the CPU clocks do (the same namespace, see `clocks_work`).
        let pid_max = source
            .buf
            .read_rendered(source.root.as_fd(), c"sys/kernel/pid_max")
            .ok()
            .and_then(|b| u64_dec(b.strip_suffix(b"\n").unwrap_or(b)).and_then(|v| u32::try_from(v).ok()));
        // The kernel's own file (not one a FUSE overlay such as lxcfs serves in its place, with
        // another namespace's numbers), and a `pidfd_open` that takes the agent itself.
        source.loadavg = ReadBuf::open_rendered(source.root.as_fd(), c"loadavg").ok().filter(on_procfs);
        let pidfd_works = rustix::process::Pid::from_raw(std::process::id() as i32)
            .is_some_and(|me| rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).is_ok());
        source.new_pids =
            NewPids::new(pid_max.unwrap_or(0), source.clocks_work && source.loadavg.is_some() && pidfd_works);
        Ok(source)
    }

    /// The agent's own pid as the host sees it: `HOST_PROC/self` names the reader in that
    /// procfs's pid namespace, which differs from `getpid()` when the agent has its own.
    pub fn self_pid(&mut self) -> u32 {
        match rustix::fs::readlinkat_raw(&self.root, c"self", &mut self.link) {
            Ok((b, _)) => u64_dec(b).and_then(|p| u32::try_from(p).ok()).unwrap_or_else(std::process::id),
            Err(_) => std::process::id(),
        }
    }

    pub fn user_name(&self, uid: u32) -> Option<&[u8]> {
        self.users.name(uid)
    }

    /// Refreshes `t` to the processes alive now.
    pub fn collect(&mut self, t: &mut ProcessTable, mono_secs: f64, unix_ms: i64) {
        self.cycle = self.cycle.wrapping_add(1);
        t.prev_mono_secs = if t.procs.is_empty() && t.host_cpu_total == 0 { None } else { Some(t.mono_secs) };
        t.mono_secs = mono_secs;
        t.unix_ms = unix_ms;
        t.vanished = 0;
        t.discovered = 0;
        t.no_fds = 0;
        t.unread = 0;
        self.kept_no_fds = 0;
        self.execs = 0;
        t.page_size = self.page_size;
        t.clk_tck = self.clk_tck;
        self.users.refresh();
        // The cursor before the fork counter: a task created between the two reads has its pid
        // beyond the cursor read, and is found next cycle (the counter only bounds the probe).
        let last_pid = match &self.loadavg {
            Some(fd) => self.buf.reread(fd.as_fd()).ok().and_then(|b| loadavg::parse_last_pid(b).ok()),
            None => None,
        };
        let mut forks = None;
        if let Ok(Ok(s)) =
            self.buf.read_held(self.root.as_fd(), c"stat", &mut self.host_files[0], true).map(proc_stat::parse)
        {
            let total = s.cpu.total();
            t.host_cpu_delta = total.saturating_sub(t.host_cpu_total);
            t.host_cpu_total = total;
            t.cpu_count = s.cpu_count.max(1);
            self.boot_time = s.boot_time;
            forks = Some(s.processes_created);
        }
        if let Ok(Ok(m)) =
            self.buf.read_held(self.root.as_fd(), c"meminfo", &mut self.host_files[1], true).map(meminfo::parse)
        {
            t.mem_total_kib = m.total;
            t.mem_available_kib = m.available.unwrap_or(m.free + m.buffers + m.cached);
        }
        let counters = last_pid.zip(forks).map(|(last_pid, forks)| Counters { last_pid, forks });
        // Whether each pid in `self.pids` is known to name a live process now (listed, or a
        // leader the probe found), or only known from the last cycle (it may have ended).
        let listed = match self.new_pids.plan(counters, mono_secs, t.procs.len()) {
            Plan::List(_) => {
                self.list_pids();
                true
            }
            Plan::Probe { after, upto } => match self.known_and_new(&t.procs, after, upto) {
                Ok(()) => false,
                Err(refused) => {
                    self.new_pids.probe_failed(mono_secs, refused);
                    self.list_pids();
                    true
                }
            },
        };
        self.keep_retries(t.procs.len());
        self.fd_ceiling = fd_ceiling();
        let ceiling = hold_ceiling(self.fd_ceiling, self.pids.len());
        self.room = HoldRoom { left: self.held_files_max(ceiling), ceiling };

        let mut old = std::mem::take(&mut t.procs);
        t.next.clear();
        let mut skipped = 0u32;
        {
            let mut old_iter = old.drain(..).peekable();
            for i in 0..self.pids.len() {
                let pid = self.pids[i];
                while let Some(ended) = old_iter.next_if(|o| o.pid < pid) {
                    self.spare_texts.retire(ended);
                }
                let existing = old_iter.next_if(|o| o.pid == pid);
                let known = existing.is_some();
                // Probed, a known pid names a new process only if the probe found it a leader.
                let maybe_new = listed || self.fresh.binary_search(&pid).is_ok();
                match self.refresh_one(pid, existing, mono_secs, &t.next, maybe_new) {
                    Ok(p) => {
                        t.unread += u32::from(p.unread);
                        t.discovered += u32::from(!known || p.prev.is_none());
                        t.next.push(p);
                    }
                    Err(Gone::Vanished) => t.vanished += 1,
                    Err(Gone::Ended) => {}
                    Err(Gone::NoFds) => {
                        t.no_fds += 1;
                        skipped += 1;
                    }
                    Err(Gone::Other) => skipped += 1,
                }
            }
            for ended in old_iter {
                self.spare_texts.retire(ended);
            }
        }
        t.procs = std::mem::replace(&mut t.next, old);
        t.reindex();
        // Without a listing a process skipped now would not be looked at again.
        self.new_pids.relist |= skipped > 0;
        t.no_fds += self.kept_no_fds;
        // An exec'd process is new as far as its text goes (it may allocate once, like a new pid).
        t.discovered += self.execs;
        self.note_no_fds(t.no_fds, mono_secs, t.procs.len());
    }

    /// How many files this cycle may hold: none with `STS_PROCESS_HOLD_FILES=none`, else
    /// `STS_PROCESS_HELD_FILES_MAX_KIB` / [`HELD_FILE_BYTES`], and at most half the descriptor
    /// numbers left under `hold_ceiling` once the agent's own low ones are counted, so held files
    /// never take more than half of the room the process directories, new processes and the rest
    /// of the agent (trace intake, DogStatsD, connections) have. Counted in pid order as files
    /// are read: past the count (or the ceiling) a file is opened, read and closed, and a
    /// descriptor held from an earlier cycle is closed when next read, which is every cycle.
    fn held_files_max(&self, ceiling: u64) -> u64 {
        if self.hold_files == HoldFiles::None {
            return 0;
        }
        let budget = self.held_files_max_kib.saturating_mul(1024) / HELD_FILE_BYTES;
        let used = self.pids.len() as u64 + 64;
        budget.min(ceiling.saturating_sub(used) / 2)
    }

    /// Counts processes skipped for want of file descriptors and logs it, at most once per
    /// [`NO_FDS_LOG_SECS`] (with the count since the previous line).
    fn note_no_fds(&mut self, n: u32, mono: f64, held: usize) {
        self.no_fds_total += u64::from(n);
        self.no_fds_unlogged += u64::from(n);
        if self.no_fds_unlogged == 0 || self.no_fds_logged_at.is_some_and(|at| mono - at < NO_FDS_LOG_SECS) {
            return;
        }
        warn!(
            "processes: out of file descriptors opening HOST_PROC/<pid> files (EMFILE/ENFILE, or into the \
             reserve the agent keeps for its other work): {n} failed ({} since the previous report, {} in \
             all), new processes are skipped and known ones keep their last sample until it recovers; the agent holds one descriptor per \
             process ({held} now): raise its open-file limit (RLIMIT_NOFILE; `ulimits` nofile in the ECS \
             task)",
            self.no_fds_unlogged, self.no_fds_total
        );
        self.no_fds_unlogged = 0;
        self.no_fds_logged_at = Some(mono);
    }

    /// Reads what is only needed for reported processes: the number of open file descriptors
    /// (entries of `fd/`) every cycle for one that ran since it was counted, else every
    /// [`DETAIL_STANDING_CYCLES`] cycles (round-robin by pid, or when the count is that old);
    /// context switches and swap from `status`, and shared,
    /// text, lib, data and dirty from `statm` (unless `STS_PROCESS_HOLD_FILES=all` read it this
    /// cycle), for a quarter of them per cycle (round-robin by pid), and for one whose last read
    /// is [`STATUS_REFRESH_CYCLES`] cycles old or more (one just selected, not reported for a
    /// while). So what is sent was read this cycle or one of the three before (when the process
    /// was found or exec'd, or here). `status` is the costliest file; reading it for every
    /// reported process every cycle would double the cycle's cost (measured in
    /// `benches/process_cycle.rs`); `statm` every cycle for every process was about 30 % of the
    /// process check's syscalls (`benches/README.md`, "Held procfs files").
    pub fn enrich(&mut self, t: &mut ProcessTable, indices: &[u32]) {
        let mut no_fds = 0;
        let statm_read = self.hold_files == HoldFiles::All;
        let hold_fd_dirs = (self.hold_files != HoldFiles::None).then_some(self.room.ceiling);
        for &i in indices {
            let Some(p) = t.procs.get_mut(i as usize) else { continue };
            // Read this cycle already (found or exec'd just now): not again.
            let fresh = p.detail_cycle == self.cycle;
            let due = (u64::from(p.pid) + self.cycle) % STATUS_REFRESH_CYCLES == 0
                || self.cycle.wrapping_sub(p.detail_cycle) >= STATUS_REFRESH_CYCLES;
            // Not run since they were read, and the same resident size: what the kernel may
            // change meanwhile (swap, shared pages: reclaim) would have moved the resident size,
            // read on the same turn (see `ProcessSource::probe`). Their figures stand, as good
            // as read now.
            // Bounded: `stat`'s resident size is the kernel's approximate per-CPU sum, which a
            // reclaim within the per-CPU batch does not move (`statm` and `status` render the
            // exact sums since Linux 6.16): read anyway once in [`DETAIL_STANDING_CYCLES`].
            let standing = p.detail_basis.is_some_and(|(rss, at)| {
                rss == p.cur.statm.resident && self.cycle.wrapping_sub(at) < DETAIL_STANDING_CYCLES
            });
            if due && !fresh && standing {
                p.detail_cycle = self.cycle;
            } else if due && !fresh {
                let status = self.buf.read_rendered(p.dir.as_fd(), c"status");
                let mut short = fds_left(&status).is_err();
                if let Ok(Ok(st)) = status.map(pid::parse_status) {
                    set_status_detail(p, &st);
                }
                // Nothing mapped (a kernel thread, a zombie): `statm` is all zeros.
                if !statm_read && p.cur.statm.size != 0 {
                    let statm = self.buf.read_rendered(p.dir.as_fd(), c"statm");
                    short |= fds_left(&statm).is_err();
                    if let Ok(Ok(m)) = statm.map(pid::parse_statm) {
                        set_statm_detail(&mut p.cur.statm, &m);
                    }
                }
                no_fds += u32::from(short);
                // Without descriptors the figures were not read: tried again next cycle (the
                // last read stays more than three cycles old), not at the next turn.
                if !short {
                    p.detail_cycle = self.cycle;
                    p.detail_basis = Some((p.cur.statm.resident, self.cycle));
                }
            }
            // A process that has not run has opened and closed nothing (one that ran had its
            // count dropped): counted again every [`DETAIL_STANDING_CYCLES`] cycles only (round-
            // robin by pid; or when older, for a process not reported on its turn), for a
            // descriptor table shared with another process (`clone` with `CLONE_FILES`, not a
            // thread), which may change while this one does not run.
            let fds_turn = (u64::from(p.pid) + self.cycle) % DETAIL_STANDING_CYCLES == 0;
            let fds_old = self.cycle.wrapping_sub(p.fds_cycle) >= DETAIL_STANDING_CYCLES;
            if p.detail.open_fds.is_none() || fds_turn || fds_old {
                p.detail.open_fds = count_fds(p.dir.as_fd(), &mut p.held.fd_dir, hold_fd_dirs, &mut self.dents);
                if p.detail.open_fds.is_some() {
                    p.fds_cycle = self.cycle;
                    self.fd_counts_total += 1;
                }
            }
        }
        t.no_fds += no_fds;
        self.note_no_fds(no_fds, t.mono_secs, t.procs.len());
    }

    fn list_pids(&mut self) {
        self.pids.clear();
        if rustix::fs::seek(&self.root, rustix::fs::SeekFrom::Start(0)).is_err() {
            return;
        }
        let mut dir = RawDir::new(&self.root, &mut self.dents);
        while let Some(Ok(entry)) = dir.next() {
            if let Some(pid) = u64_dec(entry.file_name().to_bytes()).and_then(|p| u32::try_from(p).ok()) {
                self.pids.push(pid);
            }
        }
        // procfs lists pids in ascending order; sorting keeps the merge right if it ever does not.
        self.pids.sort_unstable();
    }

    /// This cycle's pids without a listing: the known ones, and the thread-group leaders among
    /// the pids allocated in `after + 1 ..= upto` (see [`NewPids`]). A pid is a leader when
    /// `pidfd_open` takes it (a thread's pid it refuses with `EINVAL`, or `ENOENT` since Linux
    /// 6.15; a gone one with `ESRCH`; the descriptor is closed at once). `Err(refused)` when a `pidfd_open` failed otherwise:
    /// the cycle lists instead, and for good when the call is refused (`ENOSYS`, `EPERM`).
    fn known_and_new(&mut self, known: &[Proc], after: u32, upto: u32) -> Result<(), bool> {
        self.fresh.clear();
        let retry = std::mem::take(&mut self.new_pids.retry);
        let probed = retry.iter().copied().filter(|&pid| pid <= after).chain(after.saturating_add(1)..=upto);
        for pid in probed {
            let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { continue };
            match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
                Ok(_closed) => self.fresh.push(pid),
                // A thread (EINVAL; ENOENT since Linux 6.15), or gone (ESRCH).
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT | rustix::io::Errno::SRCH) => {}
                Err(e) => {
                    self.new_pids.retry = retry;
                    return Err(matches!(e, rustix::io::Errno::NOSYS | rustix::io::Errno::PERM));
                }
            }
        }
        self.new_pids.retry = retry;
        self.fresh.sort_unstable();
        self.pids.clear();
        self.pids.extend(known.iter().map(|p| p.pid));
        self.pids.extend_from_slice(&self.fresh);
        self.pids.sort_unstable();
        self.pids.dedup();
        Ok(())
    }

    /// Keeps as [`NewPids::retry`] the pids of the range just covered (listed or probed) that
    /// named no leader: one whose fork was still on its way is found next cycle.
    fn keep_retries(&mut self, known: usize) {
        let mut retry = std::mem::take(&mut self.new_pids.retry);
        retry.clear();
        if let Some((first, last)) = self.new_pids.last_range(known) {
            retry.extend((first..=last).filter(|pid| self.pids.binary_search(pid).is_err()));
        }
        self.new_pids.retry = retry;
    }

    /// `done`: the processes refreshed so far this cycle (lower pids: see [`ProcessSource::probe`]).
    /// `maybe_new`: `pid` was listed this cycle, or found by the probe, so a process that ended
    /// may have left it to a new one (discovered at once); otherwise an ended process is
    /// [`Gone::Ended`].
    fn refresh_one(
        &mut self,
        pid: u32,
        existing: Option<Proc>,
        mono: f64,
        done: &[Proc],
        maybe_new: bool,
    ) -> Result<Proc, Gone> {
        if let Some(mut p) = existing {
            match self.refresh_known(&mut p, done) {
                Ok(Known::Kept) => return Ok(p),
                Ok(Known::Ended) if !maybe_new => {
                    self.spare_texts.retire(p);
                    return Err(Gone::Ended);
                }
                // Gone, or its pid is another process's now: that one is discovered at once.
                Ok(Known::Ended) => self.spare_texts.retire(p),
                Err(e) => {
                    self.spare_texts.retire(p);
                    return Err(e);
                }
            }
        }
        self.discover(pid, mono)
    }

    /// Refreshes a known process in place: [`Known::Kept`] (read, left unread while idle, or kept
    /// with its last sample for want of descriptors), or [`Known::Ended`] (its directory says
    /// it is gone, or its pid now names a younger process). An ended one's descriptors are
    /// closed (and its text kept as a spare) before the process now listed under its pid is
    /// discovered, so that one may take the lower descriptor numbers.
    fn refresh_known(&mut self, p: &mut Proc, done: &[Proc]) -> Result<Known, Gone> {
        p.unread = false;
        // Through the held directory: ENOENT/ESRCH when that process is gone. Its pid is
        // listed this cycle, so a new process may have it now: discovered by the caller, at once.
        let idle = self.probe(p, done);
        if self.skip_idle && self.clocks_work && p.cpu_ns.is_none() {
            // No process has this pid now (its CPU clock did not read): it ended. Known without
            // reading its files, which a cycle short of descriptors could not open (it would be
            // kept with its last sample, on cycles without a listing until the next one).
            return Ok(Known::Ended);
        }
        if p.ran {
            p.detail_basis = None;
            // Counted for reported processes only: one that ran may have opened or closed
            // descriptors since (counted again when next reported, idle or not).
            p.detail.open_fds = None;
        }
        if idle {
            self.unchanged(p);
            return Ok(Known::Kept);
        }
        let held = read_held(&mut self.buf, p.dir.as_fd(), &mut p.held.stat, c"stat", true, &mut self.room);
        let stat = match held.map_err(classify) {
            Ok(stat) => stat,
            Err(Gone::Vanished) => return Ok(Known::Ended),
            Err(Gone::NoFds) => return Ok(self.keep_last(p)),
            Err(e) => return Err(e),
        };
        let (base, start, kthread, comm, image) = stat_core(stat, self.page_size)?;
        if start == p.start_ticks {
            // `statm`'s slow figures carried over, unless the process exec'd (below).
            let mut kept = Some(p.cur.statm);
            // A new name, or a new image (startstack is randomised per exec). `[0, 0]`: no
            // memory map (exiting, a zombie); `[1, 0]`: hidden (no ptrace access), and a change
            // to or from hidden means new credentials, which are worth reading again too.
            let new_image = image[0] != 0 && p.image[0] != 0 && image != p.image;
            if comm != p.comm || new_image {
                // Same process, new program (`sh entrypoint.sh` → `exec java …`, or a
                // runtime that joins the container's cgroup and drops privileges before it
                // execs the entrypoint): its command line, exe, user, container and network
                // namespace may all have changed, and so may the blacklist's verdict.
                let old_comm = std::mem::replace(&mut p.comm, comm);
                match self.read_again(p, kthread) {
                    Ok(()) => {}
                    // With the old name and image the exec is seen again next cycle, and
                    // all of it read then.
                    Err(Gone::NoFds) => {
                        p.comm = old_comm;
                        return Ok(self.keep_last(p));
                    }
                    Err(e) => return Err(e),
                }
                p.blacklisted = None;
                p.detail_cycle = self.cycle;
                kept = None;
                self.execs += 1;
            }
            if image[0] != 0 {
                p.image = image;
            }
            // Read on its turn (or as an orphan) without having run: its I/O counters are
            // as they were (a process moves them only by its own reads and writes).
            let io_kept = (!p.ran && kept.is_some()).then_some(p.cur.io);
            let sample = match self.fill_sample(p.dir.as_fd(), &mut p.held, base, kthread, kept, io_kept) {
                Ok(sample) => sample,
                Err(Gone::NoFds) => return Ok(self.keep_last(p)),
                Err(e) => return Err(e),
            };
            // After a cycle without a sample, this one follows the last two intervals
            // later: no rates from that pair (they would count two intervals as one).
            p.prev = if std::mem::take(&mut p.missed) { None } else { Some(p.cur) };
            p.cur = sample;
            if p.detail_cycle == self.cycle {
                // Exec'd: `status` and `statm` read just now.
                p.detail_basis = Some((p.cur.statm.resident, self.cycle));
            }
            return Ok(Known::Kept);
        }
        // The pid was reused by a new process: forget the old one.
        Ok(Known::Ended)
    }

    /// Whether a known process may be left unread this cycle: its CPU clock (one
    /// `clock_gettime`, no file: a tenth of what reading `stat` and `io` costs, see
    /// [`cpu_clock`]) has not moved since its last read, so none of its threads has been on a
    /// CPU, and its CPU times, I/O counters, state, threads, image, descriptors and context
    /// switches are as that read found them: a process changes them only by running. What
    /// another process or the kernel may change meanwhile is read at least every
    /// [`FULL_READ_CYCLES`] cycles (round-robin by pid, as `status` and `statm` are): its
    /// resident size (reclaim, swapping, or another process writing to its memory) and nice
    /// value (`setpriority`). Its parent changes when the parent exits (re-parenting): a process
    /// whose parent's pid is not listed this cycle is read. A pid whose process exited and was
    /// reused reads another clock: read, and found new through the held directory.
    fn probe(&mut self, p: &mut Proc, done: &[Proc]) -> bool {
        let now = if self.skip_idle && self.clocks_work { cpu_clock::process_cpu_ns(p.pid) } else { None };
        // Read before `stat`: a run after that read shows at the next probe.
        let before = std::mem::replace(&mut p.cpu_ns, now);
        // A baseline of 0 is a process that had not run yet: a pid reused by another such
        // process would read 0 too.
        let (Some(now), Some(before @ 1..)) = (now, before) else {
            p.ran = true;
            return false;
        };
        p.ran = now != before;
        let due = (u64::from(p.pid) + self.cycle) % FULL_READ_CYCLES == 0;
        !p.ran && !due && !p.missed && !self.orphaned(p, done)
    }

    /// Whether `p`'s parent as last read may be gone: its pid is not listed this cycle, or (a
    /// lower pid, so refreshed already: `done` is in pid order) it is a zombie now (children are
    /// re-parented when their parent exits, before it is reaped), younger than `p` (its pid was
    /// reused), or was not read this cycle. A parent with a higher pid (after the pids wrapped)
    /// is checked by listing, or on a cycle without one by its CPU clock (a zombie parent with a
    /// higher pid is not seen either way); the turn reads `p` within [`FULL_READ_CYCLES`] anyway.
    fn orphaned(&self, p: &Proc, done: &[Proc]) -> bool {
        let Ok(ppid) = u32::try_from(p.cur.ppid) else { return false };
        if ppid == 0 {
            return false;
        }
        if self.pids.binary_search(&ppid).is_err() {
            return true;
        }
        if ppid > p.pid {
            // Not refreshed yet this cycle. A listed pid names a live process; without a listing
            // the known pids stand in for the listed ones, so the parent's CPU clock says whether
            // a process has its pid, and a pid the probe found names a new one.
            // (`last_listing` is `None` exactly on a cycle that probed.)
            return self.new_pids.last_listing.is_none()
                && (self.fresh.binary_search(&ppid).is_ok() || cpu_clock::process_cpu_ns(ppid).is_none());
        }
        match done.binary_search_by_key(&ppid, |q| q.pid) {
            Ok(i) => done[i].cur.state == b'Z' || done[i].start_ticks > p.start_ticks,
            Err(_) => true,
        }
    }

    /// A process [`ProcessSource::probe`] found idle: its last sample stands for this cycle too
    /// (so its rates are zero). Its held files stay held, counted against this cycle's room as if
    /// read (they pin their kernel memory all the same), and closed past it.
    fn unchanged(&mut self, p: &mut Proc) {
        for slot in [&mut p.held.stat, &mut p.held.statm, &mut p.held.io] {
            if let Some(fd) = slot.take() {
                if keep_held(fd.as_fd(), &mut self.room) {
                    *slot = Some(fd);
                }
            }
        }
        p.prev = Some(p.cur);
        p.unread = true;
    }

    /// A known process whose files could not be read for want of file descriptors: it keeps its
    /// place in the table (its held descriptor, text, verdict and first-seen time, so it is not
    /// discovered again as new when descriptors are back) and its last sample. The first such
    /// cycle it is reported with the figures of its last cycle (both of its last two samples
    /// kept as they were); a second cycle in a row without a sample, and the cycle after one,
    /// it has no rates and is not reported: the process agent's rates come from two samples one
    /// interval apart, and none is made up. Counted with the processes skipped for want of
    /// descriptors.
    fn keep_last(&mut self, p: &mut Proc) -> Known {
        self.kept_no_fds += 1;
        // The clock was read this cycle, the files were not: it is no baseline for them.
        p.cpu_ns = None;
        if p.missed {
            p.prev = None;
        }
        p.missed = true;
        Known::Kept
    }

    /// What is read again when a known process execs: its user, container, network namespace
    /// and text.
    fn read_again(&mut self, p: &mut Proc, kthread: bool) -> Result<(), Gone> {
        if !kthread {
            self.read_ids(p)?;
            p.net_ns = crate::sys::netns::inode_at(p.dir.as_fd()).unwrap_or(0);
        }
        self.read_text(p, kthread)
    }

    /// Adds `io` and `statm`'s slow figures to what `stat` gave, through the descriptors held in
    /// `held`: `kept`, the process's figures from its last read, or (`None`: a new or exec'd
    /// process; and every cycle with `STS_PROCESS_HOLD_FILES=all`) `statm` read now; `io_kept`,
    /// the I/O counters of a process that has not run since they were read (a held `io` then
    /// stays held, counted as if read), or `None`: `io` read now.
    fn fill_sample(
        &mut self,
        dir: BorrowedFd<'_>,
        held: &mut HeldFiles,
        mut out: ProcSample,
        kthread: bool,
        kept: Option<PidStatm>,
        io_kept: Option<Option<PidIo>>,
    ) -> Result<ProcSample, Gone> {
        if kthread {
            return Ok(out);
        }
        let all = self.hold_files == HoldFiles::All;
        match kept {
            Some(m) if !all => set_statm_detail(&mut out.statm, &m),
            _ => {
                let statm = read_held(&mut self.buf, dir, &mut held.statm, c"statm", all, &mut self.room);
                let m = pid::parse_statm(statm.map_err(classify)?).map_err(|_| Gone::Other)?;
                set_statm_detail(&mut out.statm, &m);
            }
        }
        if let Some(io) = io_kept {
            if let Some(fd) = held.io.take() {
                if keep_held(fd.as_fd(), &mut self.room) {
                    held.io = Some(fd);
                }
            }
            out.io = io;
            return Ok(out);
        }
        // No ptrace access (another user's process without CAP_SYS_PTRACE) is normal: rates are -1
        // (checked when read, so the held descriptor reads EACCES while access is denied).
        let io = read_held(&mut self.buf, dir, &mut held.io, c"io", all, &mut self.room);
        fds_left(&io)?;
        out.io = io.ok().and_then(|b| pid::parse_io(b).ok());
        Ok(out)
    }

    fn discover(&mut self, pid: u32, mono: f64) -> Result<Proc, Gone> {
        let name = PidPath::new(pid);
        let dir = openat(&self.root, name.as_cstr(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| classify(e.into()))?;
        // Descriptors are numbered lowest-free first: a number this high means the table would
        // take the last descriptors the trace intake, the forwarder and the other checks need.
        if u64::try_from(rustix::fd::AsRawFd::as_raw_fd(&dir)).unwrap_or(u64::MAX) >= self.fd_ceiling {
            return Err(Gone::NoFds);
        }
        let mut held = HeldFiles::default();
        // The clock before `stat`: the baseline of the next cycle's probe.
        let cpu_ns = if self.skip_idle && self.clocks_work { cpu_clock::process_cpu_ns(pid) } else { None };
        let stat = read_held(&mut self.buf, dir.as_fd(), &mut held.stat, c"stat", true, &mut self.room);
        let (base, start, kthread, comm, image) = stat_core(stat.map_err(classify)?, self.page_size)?;
        let create_ms = (self.boot_time * 1000 + start * 1000 / self.clk_tck) as i64;
        let sample = self.fill_sample(dir.as_fd(), &mut held, base, kthread, None, None)?;
        let mut p = Proc::new(pid, start, create_ms, dir, mono);
        p.held = held;
        p.cpu_ns = cpu_ns;
        p.detail_cycle = self.cycle;
        p.cur = sample;
        p.comm = comm;
        p.image = image;
        if !kthread {
            p.net_ns = crate::sys::netns::inode_at(p.dir.as_fd()).unwrap_or(0);
            self.read_ids(&mut p)?;
            // `status` read (and `statm`, by `fill_sample`); a kernel thread's is read on its turn.
            p.detail_basis = p.detail.voluntary_ctxt_switches.map(|_| (p.cur.statm.resident, self.cycle));
        }
        // Without descriptors the command line would read as empty and be judged as such for
        // good: the process is skipped (and counted) instead, and discovered again next cycle.
        self.read_text(&mut p, kthread)?;
        Ok(p)
    }

    /// Reads the user and group (and the `status` counters) and the container from the cgroup.
    fn read_ids(&mut self, p: &mut Proc) -> Result<(), Gone> {
        let status = self.buf.read_rendered(p.dir.as_fd(), c"status");
        fds_left(&status)?;
        if let Ok(Ok(st)) = status.map(pid::parse_status) {
            p.uid = st.uid[0];
            p.gid = st.gid[0];
            set_status_detail(p, &st);
        }
        let cg = self.buf.read_file(p.dir.as_fd(), c"cgroup");
        fds_left(&cg)?;
        if let Ok(cg) = cg {
            // Processes in the agent's own cgroup namespace read `/`: its container, if any.
            let own = self.own_namespace.as_ref();
            p.container_id = cgroup::process_container(cg, own.map(|o| (&o.id, o.hierarchy())))
                .and_then(|id| <[u8; 64]>::try_from(id).ok());
        }
        Ok(())
    }

    /// Reads the command line (scrubbed), exe and cwd into the process's text.
    fn read_text(&mut self, p: &mut Proc, kthread: bool) -> Result<(), Gone> {
        self.args.clear();
        self.exe.clear();
        if !kthread {
            let cmd = self.buf.read_file(p.dir.as_fd(), c"cmdline");
            fds_left(&cmd)?;
            if let Ok(cmd) = cmd {
                scrub_args(pid::cmdline_args(cmd), &mut self.args);
            }
            // Unreadable links (no ptrace access, kernel threads) leave exe/cwd empty.
            if let Ok((exe, _)) = rustix::fs::readlinkat_raw(p.dir.as_fd(), c"exe", &mut self.link) {
                self.exe.extend_from_slice(exe);
            }
        }
        let cwd: &[u8] = match (kthread, rustix::fs::readlinkat_raw(p.dir.as_fd(), c"cwd", &mut self.link)) {
            (false, Ok((cwd, _))) => cwd,
            _ => &[],
        };
        p.set_text(&self.args, &self.exe, cwd, &mut self.spare_texts);
        Ok(())
    }
}

/// The first descriptor number the process table may not hold: the soft open-file limit less a
/// reserve (an eighth of it, 48 to 512) for the rest of the agent, which holds a handful of its
/// own and opens more as it works (files it reads, receiver and trace client connections).
fn fd_ceiling() -> u64 {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    soft.saturating_sub((soft / 8).clamp(48, 512))
}

/// A process's open file descriptors, from its `/proc/<pid>` directory: since Linux 6.2 the size
/// `stat` gives for `fd/` is their count (one syscall, a bitmap count in the kernel). Listing the
/// directory instead builds a dentry per descriptor, which for a process holding thousands of
/// sockets was a sixth of the agent's CPU (perf, benches/budget.sh). Older kernels say 0: then
/// the directory is listed.
///
/// `held` keeps an `O_PATH` handle on `fd/` once a count came that way, and later cycles `fstat`
/// it: one lookup fewer each cycle (`fstatat` of `fd` walks the name and revalidates the pid's
/// dentries: about 1 µs more per process here). Held only when `hold_below` allows (the
/// descriptor numbered below it: see [`hold_ceiling`]); a handle numbered at or above it, or
/// that gives no count (the process closed every descriptor, or is exiting), is closed and the
/// path is used.
fn count_fds(
    dir: BorrowedFd<'_>,
    held: &mut Option<OwnedFd>,
    hold_below: Option<u64>,
    dents: &mut [MaybeUninit<u8>],
) -> Option<u32> {
    let below =
        |fd: &OwnedFd, ceiling: u64| u64::try_from(rustix::fd::AsRawFd::as_raw_fd(fd)).is_ok_and(|n| n < ceiling);
    if let Some(fd) = held.take() {
        if let (Some(ceiling), Ok(st)) = (hold_below, rustix::fs::fstat(&fd)) {
            if st.st_size > 0 && below(&fd, ceiling) {
                *held = Some(fd);
                return u32::try_from(st.st_size).ok();
            }
        }
    }
    let st = rustix::fs::statat(dir, c"fd", rustix::fs::AtFlags::empty()).ok()?;
    if st.st_size > 0 {
        if let Some(ceiling) = hold_below {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            *held = openat(dir, c"fd", flags, Mode::empty()).ok().filter(|fd| below(fd, ceiling));
        }
        return u32::try_from(st.st_size).ok();
    }
    list_fds(dir, dents)
}

fn list_fds(dir: BorrowedFd<'_>, dents: &mut [MaybeUninit<u8>]) -> Option<u32> {
    let fd = openat(dir, c"fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut n = 0u32;
    let mut entries = RawDir::new(&fd, dents);
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            n += 1;
        }
    }
    Some(n)
}

/// The descriptor number from which held files are given up. The process table's `O_PATH`
/// directories come first (one per process, and a process without one is not reported), so held
/// files leave room under [`fd_ceiling`] for a directory and an `fd/` handle (see [`count_fds`])
/// per listed pid and an eighth more (new processes) plus 64; [`ProcessSource::held_files_max`] then holds at most half of what is
/// left. Above it a file is opened, read and closed each cycle; a held descriptor numbered above
/// it (the process count grew) is closed when next read, in the same cycle.
fn hold_ceiling(fd_ceiling: u64, pids: usize) -> u64 {
    let dirs = 2 * pids as u64;
    fd_ceiling.saturating_sub(dirs + dirs / 8 + 64)
}

/// Reads a rendered per-process file through the descriptor held in `slot` (one `pread`),
/// opening one to hold if none is (`openat` relative to `dir`). Not held (closed after the read,
/// or opened, read and closed): when `hold` is false, when `room` has no count left, or when the
/// descriptor is numbered at or above its ceiling (see [`hold_ceiling`]).
fn read_held<'b>(
    buf: &'b mut ReadBuf,
    dir: BorrowedFd<'_>,
    slot: &mut Option<OwnedFd>,
    name: &CStr,
    hold: bool,
    room: &mut HoldRoom,
) -> io::Result<&'b [u8]> {
    let fd = match slot.take() {
        Some(fd) => fd,
        None if hold && room.left > 0 => ReadBuf::open_rendered(dir, name)?,
        None => return buf.read_rendered(dir, name),
    };
    if !(hold && keep_held(fd.as_fd(), room)) {
        // Read, then closed here: beyond the count, the ceiling, or not held in this mode.
        return buf.reread(fd.as_fd());
    }
    buf.reread(slot.insert(fd).as_fd())
}

/// Whether a held file may stay held this cycle: room is left (it is taken) and its number is
/// under the ceiling.
fn keep_held(fd: BorrowedFd<'_>, room: &mut HoldRoom) -> bool {
    let below = u64::try_from(rustix::fd::AsRawFd::as_raw_fd(&fd)).is_ok_and(|n| n < room.ceiling);
    if room.left == 0 || !below {
        return false;
    }
    room.left -= 1;
    true
}

/// `statm`'s shared, text, lib, data and dirty into `m`, whose size and resident came from
/// `stat` this cycle (all zero when nothing is mapped, as `statm` then says: a kernel thread, a
/// zombie). The resident figure is always `stat`'s `rss`, also on cycles `statm` is read and
/// with `STS_PROCESS_HOLD_FILES=all`: up to Linux 6.15 (AL2's 5.10, AL2023's 6.1 and 6.12) both
/// files render the same approximate per-CPU counters, and since 6.16 `statm`'s is their exact
/// sum, `stat`'s still the approximate one (421 against 449 pages for a sleeping `sleep` here).
/// Taking `statm`'s every fourth cycle would make one process's RSS series jump between two
/// counters on 6.16 and later; `stat`'s is read whenever the process is read (every cycle for
/// one that ran, see [`ProcessSource::probe`]), which the selection by memory needs anyway. Size is the same `total_vm` in both (`vsize` in bytes).
fn set_statm_detail(m: &mut PidStatm, from: &PidStatm) {
    if m.size == 0 {
        *m = PidStatm::default();
        return;
    }
    m.shared = from.shared;
    m.text = from.text;
    m.lib = from.lib;
    m.data = from.data;
    m.dirty = from.dirty;
}

fn set_status_detail(p: &mut Proc, st: &pid::PidStatus) {
    p.detail.voluntary_ctxt_switches = st.voluntary_ctxt_switches;
    p.detail.nonvoluntary_ctxt_switches = st.nonvoluntary_ctxt_switches;
    p.detail.swap_kib = st.vm_swap_kib;
}

/// The per-cycle fields of `stat` (memory size and resident in pages), its start time, whether
/// it is a kernel thread, `comm`, and `[startcode, startstack]` (see [`Proc::image`]).
#[allow(clippy::type_complexity)]
fn stat_core(stat: &[u8], page_size: u64) -> Result<(ProcSample, u64, bool, [u8; 16], [u64; 2]), Gone> {
    let s = pid::parse_stat(stat).map_err(|_| Gone::Other)?;
    let mut comm = [0u8; 16];
    let n = s.comm.len().min(16);
    comm[..n].copy_from_slice(&s.comm[..n]);
    let sample = ProcSample {
        state: s.state,
        ppid: s.ppid,
        threads: s.num_threads,
        nice: s.nice,
        processor: s.processor,
        utime: s.utime,
        stime: s.stime,
        statm: PidStatm { size: s.vsize / page_size, resident: s.rss_pages, ..Default::default() },
        ..Default::default()
    };
    Ok((sample, s.start_time, s.flags & pid::PF_KTHREAD != 0, comm, [s.start_code, s.start_stack]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A real child with stdin, stdout, stderr and 40 more descriptors (inherited
    /// without CLOEXEC through bash's redirections): both ways of counting agree.
    /// An `O_PATH` handle on `/proc/<pid>`, as the source holds one.
    fn pid_dir(pid: u32) -> OwnedFd {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        openat(rustix::fs::CWD, format!("/proc/{pid}").as_str(), flags, Mode::empty()).unwrap()
    }

    #[test]
    fn open_fd_count_from_stat_and_from_listing_agree() {
        let script = (3..43).map(|n| format!("exec {n}</dev/null; ")).collect::<String>() + "exec sleep 5";
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the exec into sleep (its comm changes).
        let stat_path = format!("/proc/{}/comm", child.id());
        for _ in 0..200 {
            if std::fs::read_to_string(&stat_path).is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let dir = pid_dir(child.id());
        let mut dents = vec![MaybeUninit::uninit(); 32 * 1024];
        let counted = count_fds(dir.as_fd(), &mut None, None, &mut dents);
        let listed = list_fds(dir.as_fd(), &mut dents);
        let _ = child.kill();
        let _ = child.wait();
        // 43 and whatever the test harness leaked into the child without CLOEXEC.
        assert!(listed.is_some_and(|n| n >= 43), "{listed:?}");
        assert_eq!(counted, listed);
    }

    /// The held `fd/` handle: taken at the first count, then `fstat`ed; it follows the process's
    /// descriptors as they change, gives way above the ceiling, and gives no count once the
    /// process is gone.
    #[test]
    fn a_held_fd_directory_follows_the_count_and_lets_go() {
        use std::io::{BufRead, Write};
        let script = "import os,sys\nprint('ready',flush=True)\nsys.stdin.readline()\n\
                      fs=[os.open('/dev/null',os.O_RDONLY) for _ in range(25)]\nprint('more',flush=True)\nsys.stdin.readline()";
        let mut child =
            Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let dir = pid_dir(child.id());
        let mut dents = vec![MaybeUninit::uninit(); 32 * 1024];
        let mut held = None;
        let first = count_fds(dir.as_fd(), &mut held, Some(u64::MAX), &mut dents);
        assert!(held.is_some(), "a count came from the size: the handle is held");
        assert_eq!(first, list_fds(dir.as_fd(), &mut dents));
        assert_eq!(count_fds(dir.as_fd(), &mut held, Some(u64::MAX), &mut dents), first, "through the handle");
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "more");
        let more = count_fds(dir.as_fd(), &mut held, Some(u64::MAX), &mut dents);
        assert!(held.is_some());
        assert_eq!(more, first.map(|n| n + 25), "the held handle sees the new descriptors");
        assert_eq!(more, list_fds(dir.as_fd(), &mut dents));
        // A ceiling below the handle's number: counted by path, not held.
        assert_eq!(count_fds(dir.as_fd(), &mut held, Some(0), &mut dents), more);
        assert!(held.is_none(), "numbered above the ceiling: let go");
        // Not held when holding is off.
        assert_eq!(count_fds(dir.as_fd(), &mut held, None, &mut dents), more);
        assert!(held.is_none());
        let _ = count_fds(dir.as_fd(), &mut held, Some(u64::MAX), &mut dents);
        assert!(held.is_some());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(count_fds(dir.as_fd(), &mut held, Some(u64::MAX), &mut dents), None, "reaped: no count");
        assert!(held.is_none(), "and the handle is closed");
    }

    /// A sleeping child through the source (`all`): `stat`, `statm` and `io` held open
    /// (descriptors are plentiful) and re-read, each as opening the file afresh gives it, and once
    /// it is reaped, gone from the table: its held `stat` reads ESRCH.
    #[test]
    fn held_files_give_statm_figures_and_a_reaped_process_leaves() {
        let mut child = Reaped(Command::new("sleep").arg("30").spawn().unwrap());
        let pid = child.0.id();
        // Asleep with its memory still: a child that has just exec'd may still be faulting pages
        // in (state R, `stat`'s minflt and rss moving between the two reads compared below).
        settle(pid);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        src.hold_files = HoldFiles::All;
        // Files are held in pid order within the kernel-memory budget (341 files by default, three
        // per process) and half the free descriptors: on a busy machine (a build beside the
        // tests) both can run out before the child's pid. Room for every process: the soft
        // open-file limit raised to the hard one, as the agent does when it starts, and no budget.
        raise_nofile();
        src.held_files_max_kib = u64::MAX / 1024;
        let mut t = ProcessTable::default();
        src.collect(&mut t, 1.0, 1_000);
        src.collect(&mut t, 2.0, 2_000);
        let i = t.index_of(pid).expect("the child is in the table");
        let n = src.pids.len();
        assert!(
            src.held_files_max(hold_ceiling(fd_ceiling(), n)) >= 3 * n as u64,
            "{n} processes: more than the open-file limit lets this test hold three files of each"
        );
        {
            // Through the held descriptors and through files opened afresh: the same bytes for a
            // sleeping process (its CPU time, memory and I/O do not move).
            let p = &t.procs[i];
            let mut fresh = ReadBuf::with_capacity(4096);
            for (fd, name) in [(&p.held.stat, c"stat"), (&p.held.statm, c"statm"), (&p.held.io, c"io")] {
                let held = src.buf.reread(fd.as_ref().expect("held").as_fd()).unwrap().to_vec();
                assert_eq!(held, fresh.read_file(p.dir.as_fd(), name).unwrap(), "{name:?}");
            }
        }
        let held_stat = t.procs[i].held.stat.as_ref().map(|fd| rustix::io::dup(fd).unwrap()).unwrap();
        let (statm, rss) = fresh_memory(pid);
        let p = &t.procs[i];
        assert!(
            p.held.stat.is_some() && p.held.statm.is_some() && p.held.io.is_some(),
            "held while descriptors are plentiful"
        );
        let ours = p.cur.statm;
        assert_eq!(
            (ours.size, ours.resident, ours.shared, ours.text, ours.data),
            (statm.size, rss, statm.shared, statm.text, statm.data),
            "a sleeping process's statm (its resident figure: stat's rss)"
        );
        assert!(ours.resident > 0 && ours.text > 0);
        let _ = child.0.kill();
        let _ = child.0.wait();
        assert_eq!(src.buf.reread(held_stat.as_fd()).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound), "reaped");
        src.collect(&mut t, 3.0, 3_000);
        assert!(t.procs.binary_search_by_key(&pid, |p| p.pid).is_err(), "reaped: not in the table");
    }

    /// The soft open-file limit raised to the hard one, as the agent does when it starts.
    fn raise_nofile() {
        let mut l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if l.current < l.maximum {
            l.current = l.maximum;
            rustix::process::setrlimit(rustix::process::Resource::Nofile, l).unwrap();
        }
    }

    /// `/proc/<pid>/statm` and `stat`'s `rss` (pages), read afresh.
    fn fresh_memory(pid: u32) -> (PidStatm, u64) {
        let statm = pid::parse_statm(std::fs::read(format!("/proc/{pid}/statm")).unwrap().as_slice()).unwrap();
        let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
        (statm, pid::parse_stat(&stat).unwrap().rss_pages)
    }

    /// Waits until `pid` sleeps with its memory still (state S, `statm` the same 20 ms apart): a
    /// child that has just said something, or exec'd, may still be mapping and touching memory.
    fn settle(pid: u32) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let a = std::fs::read(format!("/proc/{pid}/statm")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
            if pid::parse_stat(&stat).unwrap().state == b'S'
                && std::fs::read(format!("/proc/{pid}/statm")).unwrap() == a
            {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{pid} did not settle within 10 s");
        }
    }

    /// `statm`'s slow figures of a sample (shared, text, lib, data, dirty).
    fn slow(m: &PidStatm) -> [u64; 5] {
        [m.shared, m.text, m.lib, m.data, m.dirty]
    }

    /// A real Python child that touches 50 MiB more of its own memory (written, so resident,
    /// and anonymous, so counted in `statm`'s data) each time it is sent SIGUSR1, and says so.
    struct Grower {
        child: std::process::Child,
        out: std::io::BufReader<std::process::ChildStdout>,
    }

    impl Grower {
        fn spawn() -> Grower {
            let code = "import signal\n\
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n\
                keep = []\n\
                print('ready', flush=True)\n\
                while True:\n    \
                    signal.sigwait({signal.SIGUSR1})\n    \
                    keep.append(b'\\x01' * (50 << 20))\n    \
                    print('grown', flush=True)\n";
            let mut child = Command::new("python3")
                .args(["-c", code])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let out = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut g = Grower { child, out };
            g.expect("ready");
            g
        }

        fn expect(&mut self, what: &str) {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut self.out, &mut line).unwrap();
            assert_eq!(line.trim(), what, "the python child");
            settle(self.child.id());
        }

        fn grow(&mut self) {
            let st = Command::new("kill").args(["-USR1", &self.child.id().to_string()]).status().unwrap();
            assert!(st.success());
            self.expect("grown");
        }
    }

    impl Drop for Grower {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// One cycle as the process check runs it (collect, then enrich with `pid` reported or not):
    /// the child's sample.
    fn cycle(src: &mut ProcessSource, t: &mut ProcessTable, pid: u32, reported: bool) -> PidStatm {
        let n = src.cycle + 1;
        src.collect(t, n as f64, n as i64 * 1000);
        let i = t.index_of(pid).expect("the child is in the table");
        let one = [i as u32];
        src.enrich(t, if reported { &one[..] } else { &[] });
        t.procs[i].cur.statm
    }

    /// The default mode: size and resident are `stat`'s, fresh every cycle, so 50 MiB touched
    /// show in the very next cycle; `statm`'s slow figures are read when the process is found,
    /// then only while it is reported, once every four cycles (the 50 MiB are data: old for the
    /// three cycles before the child's turn, `statm`'s at it), and for a process reported again
    /// after a while at once.
    #[test]
    fn statm_is_read_when_found_and_for_reported_processes_every_fourth_cycle() {
        let mut g = Grower::spawn();
        let pid = g.child.id();
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        assert_eq!(src.hold_files, HoldFiles::Stat, "the default");
        let mut t = ProcessTable::default();
        let page = rustix::param::page_size() as u64;
        let grown = (50 << 20) / page;

        let ours = cycle(&mut src, &mut t, pid, true);
        let (before, rss) = fresh_memory(pid);
        assert!(before.shared > 0 && before.text > 0 && before.data > 0, "{before:?}");
        assert_eq!((ours.size, ours.resident, slow(&ours)), (before.size, rss, slow(&before)), "found");
        // The next cycle to read is three cycles after the first with the child's 50 MiB.
        let due = |c: u64| (u64::from(pid) + c) % STATUS_REFRESH_CYCLES == 0;
        while !due(src.cycle + 4) {
            let ours = cycle(&mut src, &mut t, pid, true);
            assert_eq!((ours.size, ours.resident, slow(&ours)), (before.size, rss, slow(&before)));
        }
        g.grow();
        let (after, rss) = fresh_memory(pid);
        assert!(after.data >= before.data + grown && rss >= before.resident + grown / 2, "{after:?} rss {rss}");
        for k in 0..3 {
            let ours = cycle(&mut src, &mut t, pid, true);
            assert_eq!((ours.size, ours.resident), (after.size, rss), "cycle {k} after: stat's figures");
            assert_eq!(slow(&ours), slow(&before), "cycle {k} after: statm not due, its figures kept");
        }
        let ours = cycle(&mut src, &mut t, pid, true);
        assert_eq!((ours.size, ours.resident, slow(&ours)), (after.size, rss, slow(&after)), "its turn");

        // Not reported: statm is not read, however long.
        g.grow();
        let (again, rss) = fresh_memory(pid);
        assert!(again.data >= after.data + grown, "{again:?}");
        for k in 0..6 {
            let ours = cycle(&mut src, &mut t, pid, false);
            assert_eq!((ours.size, ours.resident, slow(&ours)), (again.size, rss, slow(&after)), "unreported {k}");
        }
        while due(src.cycle + 1) {
            cycle(&mut src, &mut t, pid, false);
        }
        // Reported again, not its turn: read at once (its figures were 4 cycles old or more).
        let ours = cycle(&mut src, &mut t, pid, true);
        assert_eq!((ours.size, ours.resident, slow(&ours)), (again.size, rss, slow(&again)), "reported again");
    }

    /// A process that execs (bash into sleep: another program text) has its `statm` read in
    /// that cycle, reported or not.
    #[test]
    fn statm_is_read_again_when_a_process_execs() {
        let mut child = Command::new("bash")
            .args(["-c", "read x; exec sleep 60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        // Bash still starting faults in pages of its libraries (statm's shared moves): wait until
        // it is blocked in `read`.
        settle(pid);
        let bash = cycle(&mut src, &mut t, pid, false);
        assert_eq!(slow(&bash), slow(&fresh_memory(pid).0), "bash, found");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
        let comm = format!("/proc/{pid}/comm");
        for _ in 0..500 {
            if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        settle(pid);
        let sleep = cycle(&mut src, &mut t, pid, false);
        let (fresh, rss) = fresh_memory(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_ne!(fresh.text, bash.text, "another program");
        assert_eq!((sleep.size, sleep.resident, slow(&sleep)), (fresh.size, rss, slow(&fresh)), "sleep, exec'd");
    }

    /// `STS_PROCESS_HOLD_FILES=none`: no file held, the same figures read.
    #[test]
    fn with_holding_off_no_file_is_held() {
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        src.hold_files = HoldFiles::None;
        let mut t = ProcessTable::default();
        src.collect(&mut t, 1.0, 1_000);
        src.collect(&mut t, 2.0, 2_000);
        let me = t.procs.iter().find(|p| p.pid == std::process::id()).expect("this test process");
        assert!(me.cur.statm.resident > 0 && me.prev.is_some());
        assert!(t.procs.iter().all(|p| p.held.stat.is_none() && p.held.statm.is_none() && p.held.io.is_none()));
    }

    /// The child's entry in the table.
    fn entry(t: &ProcessTable, pid: u32) -> &Proc {
        t.procs.iter().find(|p| p.pid == pid).expect("the child is in the table")
    }

    /// A child killed and reaped when dropped, also when the test fails.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A process killed by pid when dropped (one that is not our child any more).
    struct KilledByPid(u32);

    impl Drop for KilledByPid {
        fn drop(&mut self) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.0 as i32).expect("a pid"),
                rustix::process::Signal::Kill,
            );
        }
    }

    /// A child blocked in `read` on a pipe until it is told to go on.
    fn waiting_child(script: &str) -> Reaped {
        Reaped(
            Command::new("bash")
                .args(["-c", script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// A settled `read x` child, and a fresh source whose table has it after one cycle.
    fn known_child() -> (Reaped, u32, ProcessSource, ProcessTable) {
        let child = waiting_child("read x");
        let pid = child.0.id();
        settle(pid);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        src.collect(&mut t, 1.0, 1_000);
        (child, pid, src, t)
    }

    /// A process that ended leaves its text buffer to the next one found (see
    /// [`SpareTexts`]): the merge retires a known process that ended (not listed any more, or
    /// found ended through its held directory on a cycle without a listing).
    #[test]
    fn an_ended_process_leaves_its_text_buffer_to_the_spares() {
        let (child, pid, mut src, mut t) = known_child();
        let p = t.procs.iter().find(|p| p.pid == pid).expect("the child is in the table");
        assert!(p.args().any(|a| a == b"read x"), "{:?}", p.args_raw());
        let buffer = p.args_raw().as_ptr();
        drop(child); // killed and reaped: its pid is not listed any more
        src.collect(&mut t, 2.0, 2_000);
        assert!(t.procs.iter().all(|p| p.pid != pid));
        assert!(src.spare_texts.holds(buffer), "its buffer is a spare ({} spares)", src.spare_texts.len());
    }

    /// After the first cycle's listing, a cycle probes the pids allocated since the last one
    /// (see [`NewPids`]) instead of listing `/proc`: a child started in between is found, a
    /// thread started in between is not taken for a process, and a child that ended is gone
    /// without being counted as vanished mid-read. Other tests start processes and threads
    /// meanwhile; a cycle that met more than the probe takes lists instead (`Why::Many`), so each
    /// step is tried until a cycle probed, at most 20 times.
    #[test]
    fn a_cycle_without_a_listing_finds_new_processes_and_not_threads() {
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        assert!(src.new_pids.usable, "this procfs is the test's pid namespace; pidfd_open and loadavg work");
        let mut t = ProcessTable::default();
        src.collect(&mut t, 1.0, 1_000);
        assert_eq!(src.new_pids.last_listing, Some(super::super::new_pids::Why::First));
        let mut mono = 1.0;
        let mut probed = |src: &mut ProcessSource, t: &mut ProcessTable| {
            mono += 1.0;
            src.collect(t, mono, (mono * 1000.0) as i64);
            src.new_pids.last_listing.is_none()
        };
        let mut found = None;
        for _ in 0..20 {
            let child = waiting_child("read x");
            // Exec'd and waiting (found before its exec it would have the test's command line).
            settle(child.0.id());
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32).unwrap();
                let _ = stop_rx.recv();
            });
            let tid = tid_rx.recv().unwrap();
            let got = probed(&mut src, &mut t);
            let child_listed = t.index_of(child.0.id()).is_some();
            let thread_listed = t.index_of(tid).is_some();
            stop_tx.send(()).unwrap();
            thread.join().unwrap();
            if got {
                found = Some((child, tid, child_listed, thread_listed));
                break;
            }
        }
        let (child, tid, child_listed, thread_listed) = found.expect("a cycle in 20 probed");
        assert!(child_listed, "the child started since the last cycle is in the table");
        assert!(!thread_listed, "thread {tid} is not a process");
        let pid = child.0.id();
        assert!(t.procs[t.index_of(pid).unwrap()].args().any(|a| a == b"read x"));
        drop(child); // killed and reaped
        let mut gone = false;
        for _ in 0..20 {
            if probed(&mut src, &mut t) {
                assert!(t.index_of(pid).is_none(), "the ended child left the table");
                gone = true;
                break;
            }
        }
        assert!(gone, "a cycle in 20 probed");
        assert!(src.new_pids.probes >= 2 && src.new_pids.listings >= 1);
    }

    /// A known process that ended, on a cycle without a listing, is `Gone::Ended` (not a process
    /// vanished mid-read), found by its CPU clock; when its pid was listed or probed it may name
    /// a new process, which is looked for (and, here, not found: `Gone::Vanished`).
    #[test]
    fn an_ended_process_is_ended_not_vanished() {
        let (child, pid, mut src, mut t) = known_child();
        let p = t.procs.remove(t.index_of(pid).expect("the child is in the table"));
        let q = t.procs.iter().position(|q| q.pid != pid).map(|i| t.procs.remove(i)).unwrap();
        drop(child); // killed and reaped
        assert!(matches!(src.refresh_one(pid, Some(p), 2.0, &[], false), Err(Gone::Ended)));
        // The same with the pid listed: looked for as a new process, which is not there.
        let child = waiting_child("read x");
        let pid = child.0.id();
        settle(pid);
        src.collect(&mut t, 3.0, 3_000);
        let p = t.procs.remove(t.index_of(pid).expect("the child is in the table"));
        drop(child);
        assert!(matches!(src.refresh_one(pid, Some(p), 4.0, &[], true), Err(Gone::Vanished)));
        drop(q);
    }

    /// The pids a probe could not see as leaders are probed once more the next cycle (a fork
    /// takes its pid before `pidfd_open` sees it): a retried pid is found although it is below
    /// this cycle's range.
    #[test]
    fn a_pid_to_retry_is_probed_below_the_range() {
        let child = waiting_child("read x");
        let pid = child.0.id();
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        src.new_pids.retry = vec![pid];
        src.known_and_new(&[], pid + 10, pid + 10).map_err(|_| "probe failed").unwrap();
        assert_eq!(src.fresh, vec![pid]);
        assert_eq!(src.new_pids.retry, vec![pid], "kept until keep_retries replaces it");
        src.new_pids.retry.clear();
        src.known_and_new(&[], pid + 10, pid + 10).map_err(|_| "probe failed").unwrap();
        assert!(src.fresh.is_empty());
        drop(child);
    }

    /// A parent with a higher pid than its child (here made with `ns_last_pid`, as after the pids
    /// wrap) that exits leaves an idle child re-parented: on a cycle without a listing the
    /// parent's CPU clock says it is gone, and the child is read at once (its new parent). Needs
    /// root (CAP_SYS_ADMIN), as CI runs.
    #[test]
    fn an_idle_child_of_a_higher_parent_that_exits_is_read_at_once() {
        let _one_at_a_time = NS_LAST_PID.lock().unwrap_or_else(|e| e.into_inner());
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        let high = pid_max - 5_000;
        std::fs::write("/proc/sys/kernel/ns_last_pid", high.to_string())
            .expect("writing ns_last_pid needs root (CAP_SYS_ADMIN): run the tests as CI does");
        let script = format!("echo {} > /proc/sys/kernel/ns_last_pid; sleep 1000 & echo $!; read x", high - 3_000);
        let mut parent = waiting_child(&script);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(parent.0.stdout.as_mut().unwrap()), &mut line)
            .unwrap();
        let child: u32 = line.trim().parse().unwrap();
        let _killed = KilledByPid(child);
        let ppid = parent.0.id();
        assert!(child < ppid, "the child ({child}) has a lower pid than its parent ({ppid})");
        settle(child);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        let mut mono = 0.0;
        let mut cycle = |src: &mut ProcessSource, t: &mut ProcessTable| {
            mono += 1.0;
            src.collect(t, mono, (mono * 1000.0) as i64);
        };
        cycle(&mut src, &mut t);
        cycle(&mut src, &mut t);
        assert_eq!(entry(&t, child).cur.ppid, ppid as i32);
        // The next cycle is not the child's turn (on which it is read anyway).
        while (u64::from(child) + src.cycle + 1) % FULL_READ_CYCLES == 0 {
            cycle(&mut src, &mut t);
        }
        let _ = parent.0.kill();
        let _ = parent.0.wait();
        cycle(&mut src, &mut t);
        assert_eq!(src.new_pids.last_listing, None, "the cycle after the parent exited probed");
        assert_ne!(entry(&t, child).cur.ppid, ppid as i32, "the child's parent is read again");
    }

    /// The tests that set the pid cursor, one at a time.
    static NS_LAST_PID: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A cursor set back (here by a write to `ns_last_pid`, as checkpoint/restore tools do; a
    /// wrap at `pid_max` looks the same) makes the next cycle list `/proc`, which finds the child
    /// given a pid below the last cycle's cursor. Needs root (CAP_SYS_ADMIN), as CI runs.
    #[test]
    fn a_cursor_set_back_is_listed() {
        let _one_at_a_time = NS_LAST_PID.lock().unwrap_or_else(|e| e.into_inner());
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        src.collect(&mut t, 1.0, 1_000);
        src.collect(&mut t, 2.0, 2_000);
        let last = std::fs::read_to_string("/proc/loadavg").unwrap();
        let last: u32 = last.split_whitespace().nth(4).unwrap().parse().unwrap();
        // Well below the cursor (which other tests move meanwhile), above the reserved pids.
        let low = last.checked_sub(2_000).filter(|l| *l > 400).unwrap_or(400);
        std::fs::write("/proc/sys/kernel/ns_last_pid", low.to_string())
            .expect("writing ns_last_pid needs root (CAP_SYS_ADMIN): run the tests as CI does");
        let child = waiting_child("read x");
        let pid = child.0.id();
        assert!(pid < last, "the child ({pid}) has a pid below the last cursor ({last})");
        src.collect(&mut t, 3.0, 3_000);
        assert_eq!(src.new_pids.last_listing, Some(super::super::new_pids::Why::Wrapped));
        assert!(t.index_of(pid).is_some(), "the child is found by the listing");
    }

    /// A process that does not run is left unread, with the sample of its last read (so rates
    /// of zero), on every cycle but its round-robin turn, when it is read in full; every process
    /// of the host is read at least once in [`FULL_READ_CYCLES`] cycles.
    #[test]
    fn an_idle_process_is_read_on_its_turn_only() {
        // The soft open-file limit raised to the hard one, as the agent does at start: under a
        // low one, descriptors bind before the held-file budget below.
        raise_nofile();
        let child = waiting_child("read x");
        let pid = child.0.id();
        settle(pid);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        assert!(src.skip_idle && src.clocks_work, "the default, and the clocks read here");
        let mut t = ProcessTable::default();
        cycle(&mut src, &mut t, pid, true);
        // A held-file budget that binds: half the host's processes (each holds its `stat`).
        let budget = t.procs.len() as u64 / 2;
        src.held_files_max_kib = budget * HELD_FILE_BYTES / 1024;
        let found = entry(&t, pid).cur;
        let mut last_read = std::collections::HashMap::new();
        let (mut unread, mut read) = (0, 0);
        for _ in 0..3 * FULL_READ_CYCLES {
            cycle(&mut src, &mut t, pid, true);
            let p = entry(&t, pid);
            let turn = (u64::from(pid) + src.cycle) % FULL_READ_CYCLES == 0;
            assert_eq!(p.unread, !turn, "cycle {}: unread except on its turn", src.cycle);
            assert_eq!(p.cur, found, "the same figures, read or not");
            assert_eq!(p.prev, Some(found), "so its rates are zero");
            // Held files of processes left unread count against the budget as read ones do: the
            // budget is all held, and no more.
            let held: usize = t
                .procs
                .iter()
                .map(|q| [&q.held.stat, &q.held.statm, &q.held.io].iter().filter(|f| f.is_some()).count())
                .sum();
            // The budget, or less where descriptors are short (see `held_files_max`), as the
            // cycle computed it.
            let room = src.held_files_max(hold_ceiling(fd_ceiling(), src.pids.len()));
            assert!(room <= budget, "room {room}, budget {budget}");
            // At most the room (an uncounted held file of an unread process exceeds it); a
            // process that exits mid-cycle may leave its share of the room unused.
            let held = held as u64;
            assert!(held <= room && held * 2 >= room, "{held} files held, room {room}, cycle {}", src.cycle);
            if p.unread {
                unread += 1;
            } else {
                read += 1;
            }
            for q in t.procs.iter().filter(|q| !q.unread) {
                last_read.insert(q.pid, src.cycle);
            }
            assert!(t.unread > 0 && t.unread as usize <= t.procs.len());
            // Every process still listed was read within the last FULL_READ_CYCLES cycles.
            for q in &t.procs {
                let at = last_read.get(&q.pid).copied().unwrap_or(src.cycle);
                assert!(src.cycle - at < FULL_READ_CYCLES, "pid {} last read at {at}, now {}", q.pid, src.cycle);
            }
        }
        drop(child);
        assert_eq!((unread, read), (9, 3), "three turns in twelve cycles");
    }

    /// A process that runs between cycles is read every cycle: its CPU times move.
    #[test]
    fn a_running_process_is_read_every_cycle() {
        let child = Reaped(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        cycle(&mut src, &mut t, pid, true);
        let first = entry(&t, pid).cur;
        for _ in 0..6 {
            std::thread::sleep(std::time::Duration::from_millis(60));
            cycle(&mut src, &mut t, pid, true);
            assert!(!entry(&t, pid).unread, "cycle {}: a spinning process left unread", src.cycle);
        }
        let last = entry(&t, pid).cur;
        drop(child);
        assert!(last.utime + last.stime > first.utime + first.stime, "{first:?} then {last:?}");
    }

    /// A `sleep` child of a waiting bash, in a table where it was found, then left unread (idle,
    /// off its turn), and the next cycle is not its turn either: (the parent, the sleeper's pid,
    /// its guard, the source, the table).
    fn sleeper_left_unread() -> (Reaped, u32, KilledByPid, ProcessSource, ProcessTable) {
        let mut parent = waiting_child("sleep 60 </dev/null >/dev/null & echo $!; read x");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(parent.0.stdout.as_mut().unwrap()), &mut line)
            .unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        let guard = KilledByPid(sleeper);
        settle(sleeper);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        cycle(&mut src, &mut t, sleeper, true);
        assert_eq!(entry(&t, sleeper).cur.ppid, parent.0.id() as i32);
        // The next cycle must not be the sleeper's turn (it would be read anyway).
        while (u64::from(sleeper) + src.cycle + 1) % FULL_READ_CYCLES == 0 {
            cycle(&mut src, &mut t, sleeper, true);
        }
        cycle(&mut src, &mut t, sleeper, true);
        assert!(entry(&t, sleeper).unread, "idle, not its turn");
        while (u64::from(sleeper) + src.cycle + 1) % FULL_READ_CYCLES == 0 {
            cycle(&mut src, &mut t, sleeper, true);
        }
        (parent, sleeper, guard, src, t)
    }

    /// A sleeping process whose parent exits is re-parented without running: it is read in the
    /// next cycle (its parent's pid is no longer listed), turn or not, and shows its new parent.
    #[test]
    fn an_orphan_is_read_at_once() {
        let (mut parent, sleeper, _sleeper, mut src, mut t) = sleeper_left_unread();
        std::io::Write::write_all(parent.0.stdin.as_mut().unwrap(), b"go\n").unwrap();
        parent.0.wait().unwrap();
        let stat = std::fs::read(format!("/proc/{sleeper}/stat")).unwrap();
        let new_parent = pid::parse_stat(&stat).unwrap().ppid;
        assert_ne!(new_parent, parent.0.id() as i32, "re-parented");
        cycle(&mut src, &mut t, sleeper, true);
        let p = entry(&t, sleeper);
        assert!(!p.unread, "an orphan is read");
        assert_eq!(p.cur.ppid, new_parent);
    }

    /// `STS_PROCESS_SKIP_IDLE=false`: every process read every cycle.
    #[test]
    fn with_skipping_off_every_process_is_read() {
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        src.skip_idle = false;
        let mut t = ProcessTable::default();
        for n in 1..=5 {
            src.collect(&mut t, n as f64, n * 1000);
            assert_eq!(t.unread, 0);
            assert!(t.procs.iter().all(|p| !p.unread && p.cpu_ns.is_none()));
        }
    }

    /// Entries of `/proc/<pid>/fd`, listed afresh.
    fn fd_count(pid: u32) -> u32 {
        std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u32
    }

    /// The descriptor count is taken for reported processes only: one counted while reported,
    /// that then runs (opens 50 descriptors) while not reported, goes idle and is reported again
    /// off its turn gets a fresh count, not the one from before the gap (found in review).
    #[test]
    fn an_idle_process_reported_again_gets_a_fresh_descriptor_count() {
        let mut child = waiting_child("read x; for i in $(seq 10 59); do eval \"exec $i</dev/null\"; done; read y");
        let pid = child.0.id();
        settle(pid);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        cycle(&mut src, &mut t, pid, true);
        let first = entry(&t, pid).detail.open_fds;
        assert_eq!(first, Some(fd_count(pid)));
        std::io::Write::write_all(child.0.stdin.as_mut().unwrap(), b"go\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fd_count(pid) < first.unwrap() + 45 {
            assert!(std::time::Instant::now() < deadline, "first {first:?} now {}", fd_count(pid));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        settle(pid);
        // Not reported while it runs.
        cycle(&mut src, &mut t, pid, false);
        assert!(!entry(&t, pid).unread, "it ran: read");
        while (u64::from(pid) + src.cycle + 1) % FULL_READ_CYCLES == 0 {
            cycle(&mut src, &mut t, pid, false);
        }
        // Reported again, idle, off its turn.
        cycle(&mut src, &mut t, pid, true);
        let p = entry(&t, pid);
        assert!(p.unread, "idle, off its turn");
        assert_eq!(p.detail.open_fds, Some(fd_count(pid)), "open_fds as sent");
    }

    /// A reported process that does not run is read on its turn (every fourth cycle), but its
    /// descriptors are counted again only every fourth turn: over 32 idle cycles, two counts,
    /// each on a cycle where `(pid + cycle) % 16 == 0`, and the count as sent stays right.
    #[test]
    fn an_idle_process_has_its_descriptors_counted_every_fourth_turn() {
        let (_child, pid, mut src, mut t) = known_child();
        // Counted once while it runs no more (its first count, or after it ran at start).
        cycle(&mut src, &mut t, pid, true);
        cycle(&mut src, &mut t, pid, true);
        let (mut turns, mut counted_on) = (0, Vec::new());
        for _ in 0..32 {
            let before = src.fd_counts_total;
            cycle(&mut src, &mut t, pid, true);
            let p = entry(&t, pid);
            assert!(!p.ran, "cycle {}: the child stays idle", src.cycle);
            turns += u32::from(!p.unread);
            if src.fd_counts_total > before {
                counted_on.push(src.cycle);
            }
            assert_eq!(p.detail.open_fds, Some(fd_count(pid)), "cycle {}: the count as sent", src.cycle);
        }
        assert_eq!(turns, 8, "read on its turn, one cycle in four");
        assert_eq!(counted_on.len(), 2, "counted on every fourth turn only: {counted_on:?}");
        assert!(counted_on.iter().all(|c| (u64::from(pid) + c) % DETAIL_STANDING_CYCLES == 0), "{counted_on:?}");
        // Reported on every cycle but its counting turns (a top-N inclusion coming and going):
        // counted all the same once its count is 16 cycles old, so never older than 15 when sent.
        let mut counted = 0;
        for _ in 0..48 {
            let before = src.fd_counts_total;
            let turn = (u64::from(pid) + src.cycle + 1) % DETAIL_STANDING_CYCLES == 0;
            cycle(&mut src, &mut t, pid, !turn);
            counted += src.fd_counts_total - before;
            let p = entry(&t, pid);
            assert!(!p.ran, "cycle {}: the child stays idle", src.cycle);
            if !turn {
                assert!(
                    src.cycle - p.fds_cycle < DETAIL_STANDING_CYCLES,
                    "cycle {}: counted at {}",
                    src.cycle,
                    p.fds_cycle
                );
                assert_eq!(p.detail.open_fds, Some(fd_count(pid)), "cycle {}: the count as sent", src.cycle);
            }
        }
        // Every 16 cycles from the last count: two or three in 48, by where the last one fell.
        assert!((2..=3).contains(&counted), "{counted} counts in 48 cycles");
        // Not reported for 20 cycles, then reported off its turn: its count is that old, so
        // taken at once.
        for _ in 0..20 {
            cycle(&mut src, &mut t, pid, false);
        }
        while (u64::from(pid) + src.cycle + 1) % DETAIL_STANDING_CYCLES == 0 {
            cycle(&mut src, &mut t, pid, false);
        }
        let before = src.fd_counts_total;
        cycle(&mut src, &mut t, pid, true);
        assert_eq!(src.fd_counts_total, before + 1, "an old count is taken again when next reported");
        assert_eq!(entry(&t, pid).fds_cycle, src.cycle);
    }

    /// A parent that exits is a zombie until reaped, still listed, and its children are
    /// re-parented already: a child whose parent is a zombie is read at once (found in review).
    #[test]
    fn the_child_of_a_zombie_is_read_at_once() {
        let (mut parent, sleeper, _sleeper, mut src, mut t) = sleeper_left_unread();
        std::io::Write::write_all(parent.0.stdin.as_mut().unwrap(), b"go\n").unwrap();
        // Not reaped (the test does not wait for it yet): a zombie, listed.
        let ppath = format!("/proc/{}/stat", parent.0.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pid::parse_stat(&std::fs::read(&ppath).unwrap()).unwrap().state != b'Z' {
            assert!(std::time::Instant::now() < deadline, "the parent never became a zombie");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let new_parent = pid::parse_stat(&std::fs::read(format!("/proc/{sleeper}/stat")).unwrap()).unwrap().ppid;
        assert_ne!(new_parent, parent.0.id() as i32, "re-parented before the parent is reaped");
        cycle(&mut src, &mut t, sleeper, true);
        let p = entry(&t, sleeper);
        assert!(!p.unread, "the child of a zombie is read");
        assert_eq!(p.cur.ppid, new_parent, "ppid as sent");
    }

    /// A reported process that runs without changing its resident size (it reads a line from a
    /// pipe: its context switches move) has `status` read again on its turn: the figures of an
    /// idle process stand only while it has not run.
    #[test]
    fn a_process_that_ran_has_status_read_on_its_turn() {
        let mut child = waiting_child("while read x; do :; done");
        let pid = child.0.id();
        settle(pid);
        let mut src = ProcessSource::open(Path::new("/proc")).unwrap();
        let mut t = ProcessTable::default();
        cycle(&mut src, &mut t, pid, true);
        let switches = |pid: u32| {
            let st = std::fs::read(format!("/proc/{pid}/status")).unwrap();
            pid::parse_status(&st).unwrap().voluntary_ctxt_switches
        };
        assert_eq!(entry(&t, pid).detail.voluntary_ctxt_switches, switches(pid));
        // Up to the cycle before its turn, then wake it (it reads a line and sleeps again).
        while (u64::from(pid) + src.cycle + 2) % STATUS_REFRESH_CYCLES != 0 {
            cycle(&mut src, &mut t, pid, true);
        }
        cycle(&mut src, &mut t, pid, true);
        let before = entry(&t, pid).detail.voluntary_ctxt_switches;
        for _ in 0..3 {
            std::io::Write::write_all(child.0.stdin.as_mut().unwrap(), b"line\n").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        settle(pid);
        let now = switches(pid);
        assert!(now > before, "the child woke: {before:?} then {now:?}");
        cycle(&mut src, &mut t, pid, true);
        assert_eq!((src.cycle + u64::from(pid)) % STATUS_REFRESH_CYCLES, 0, "its turn");
        assert_eq!(entry(&t, pid).detail.voluntary_ctxt_switches, now, "status read again on its turn");
    }
}
