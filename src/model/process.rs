//! The process table: one entry per live `(pid, start time)`, sorted by pid, carried from cycle
//! to cycle (entries move between two vectors; nothing is cloned). What changes only when a
//! process execs (command line, exe, cwd, ids, container) is read then and kept in one buffer.

use crate::parse::pid::{PidIo, PidStatm};
use rustix::fd::OwnedFd;

/// What is read every cycle.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub state: u8,
    pub ppid: i32,
    pub threads: i64,
    pub nice: i64,
    pub processor: Option<u32>,
    pub utime: u64,
    pub stime: u64,
    /// In pages. Size and resident from `stat` whenever the process is read; shared, text, lib, data and dirty
    /// from `statm`, read now and then and carried from sample to sample in between (see
    /// `sources::process`).
    pub statm: PidStatm,
    /// `None`: not readable (no ptrace access) or a kernel thread.
    pub io: Option<PidIo>,
}

/// Read only for reported processes, after filtering.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcDetail {
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
    pub swap_kib: Option<u64>,
    pub open_fds: Option<u32>,
}

/// The files read every cycle, held open and re-read with one `pread` each (see
/// `sources::process::read_held`); `None` when not held (descriptors short; a kernel thread's
/// `statm` and `io`, which are not read; `statm` unless `STS_PROCESS_HOLD_FILES=all`): then
/// opened, read and closed when read. Each held
/// file also holds the kernel's page-sized seq_file buffer, charged to the agent's cgroup.
#[derive(Debug, Default)]
pub struct HeldFiles {
    pub stat: Option<OwnedFd>,
    pub statm: Option<OwnedFd>,
    pub io: Option<OwnedFd>,
    /// `O_PATH` handle on `fd/`, whose size `fstat` gives as the open-descriptor count (Linux
    /// 6.2+): no path walk a cycle, and no seq_file buffer (about 0.1 KiB of kernel memory, like
    /// the process's directory handle). Not counted against the held files' kernel-memory budget.
    pub fd_dir: Option<OwnedFd>,
}

#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    pub start_ticks: u64,
    pub create_time_ms: i64,
    /// `O_PATH` handle on `/proc/<pid>`: later opens are relative to it, and a reused pid cannot
    /// be confused with this process (its files then fail with ESRCH).
    pub dir: OwnedFd,
    pub held: HeldFiles,
    /// Scrubbed arguments joined by NUL, then exe, then cwd; see the accessors.
    text: Vec<u8>,
    args_end: u32,
    exe_end: u32,
    pub uid: u32,
    pub gid: u32,
    /// `comm` from `stat` (the kernel keeps 15 bytes): when it changes, the process exec'd.
    pub comm: [u8; 16],
    /// `startcode` and `startstack` from `stat`: new on every exec, also one that keeps `comm`
    /// (`sh` running `exec sh other.sh`). `[1, 0]` without ptrace access, `[0, 0]` without a
    /// memory map (kernel threads, zombies).
    pub image: [u64; 2],
    pub container_id: Option<[u8; 64]>,
    /// The inode of the process's network namespace (0: unknown, or a kernel thread); read when
    /// the process is discovered and again when it execs (runtimes join a container's namespace
    /// before exec'ing its entrypoint).
    pub net_ns: u64,
    pub first_seen_mono: f64,
    /// Set by the process check the first time it sees the process.
    pub blacklisted: Option<bool>,
    pub cur: ProcSample,
    /// The sample of the previous cycle, when the process was seen then.
    pub prev: Option<ProcSample>,
    /// This cycle's files could not be read for want of file descriptors: `cur` is the last
    /// sample read, a cycle or more ago (see `ProcessSource::keep_last`).
    pub missed: bool,
    pub detail: ProcDetail,
    /// The process source's cycle in which `status` and `statm` were last read (found, exec'd,
    /// or re-read for a reported process; see `ProcessSource::enrich`).
    pub detail_cycle: u64,
    /// The process's CPU clock (ns, all its threads) as last read, before the last read of its
    /// files (so a run after that read shows as a change); `None` when not read (skipping off,
    /// or the clock unreadable). See `sources::process::ProcessSource::probe`.
    pub cpu_ns: Option<u64>,
    /// Whether the last clock read found the process had run (its `stat` is held then: it will
    /// likely be read again next cycle).
    pub ran: bool,
    /// `stat`'s resident size, and the cycle, when `status` and `statm` were last read, while the
    /// process has not run since (`None` once it has): with the same resident size now, their
    /// figures (context switches, swap, shared, text, data) are still theirs, for a while (see
    /// `sources::process::ProcessSource::enrich`).
    pub detail_basis: Option<(u64, u64)>,
    /// Not read this cycle: it had not run since its last read, so `cur` is that read's sample
    /// (see `sources::process::ProcessSource::probe`).
    pub unread: bool,
    /// The process source's cycle in which `detail.open_fds` was counted.
    pub fds_cycle: u64,
}

impl Proc {
    #[allow(clippy::too_many_arguments)]
    pub fn new(pid: u32, start_ticks: u64, create_time_ms: i64, dir: OwnedFd, first_seen_mono: f64) -> Proc {
        Proc {
            pid,
            start_ticks,
            create_time_ms,
            dir,
            held: HeldFiles::default(),
            text: Vec::new(),
            args_end: 0,
            exe_end: 0,
            uid: 0,
            gid: 0,
            comm: [0; 16],
            image: [0; 2],
            container_id: None,
            net_ns: 0,
            first_seen_mono,
            blacklisted: None,
            cur: ProcSample::default(),
            prev: None,
            missed: false,
            detail: ProcDetail::default(),
            detail_cycle: 0,
            fds_cycle: 0,
            cpu_ns: None,
            ran: true,
            detail_basis: None,
            unread: false,
        }
    }

    /// Stores the text fields; `args` are NUL-joined already. A buffer too small for them is
    /// swapped for one of `spares` that fits, or else for a new one of the size class (see
    /// [`SpareTexts::class`]); the smaller one goes back to `spares`. So a process found after
    /// another of about its text's length ended (a health check's, a cron job's) allocates
    /// nothing.
    pub fn set_text(&mut self, args: &[u8], exe: &[u8], cwd: &[u8], spares: &mut SpareTexts) {
        let need = args.len() + exe.len() + cwd.len();
        if self.text.capacity() < need {
            let fits = spares.take(need).unwrap_or_else(|| Vec::with_capacity(SpareTexts::class(need)));
            let small = std::mem::replace(&mut self.text, fits);
            spares.put(small);
        }
        self.text.clear();
        self.text.extend_from_slice(args);
        self.args_end = self.text.len() as u32;
        self.text.extend_from_slice(exe);
        self.exe_end = self.text.len() as u32;
        self.text.extend_from_slice(cwd);
    }

    /// The arguments, NUL-separated (empty for kernel threads).
    pub fn args_raw(&self) -> &[u8] {
        self.text.get(..self.args_end as usize).unwrap_or(&[])
    }

    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        let raw = self.args_raw();
        raw.split(|b| *b == 0).take(if raw.is_empty() { 0 } else { usize::MAX })
    }

    pub fn exe(&self) -> &[u8] {
        self.text.get(self.args_end as usize..self.exe_end as usize).unwrap_or(&[])
    }

    pub fn cwd(&self) -> &[u8] {
        self.text.get(self.exe_end as usize..).unwrap_or(&[])
    }
}

/// Text buffers of processes that ended, for those found next (see [`Proc::set_text`]): on a
/// host where processes come and go every cycle (health checks, cron jobs, shell scripts), a
/// process found after one of its text's size class ended allocates nothing. Texts are stored
/// in buffers of 64-byte classes, so `sleep 0.3` and `sleep 0.05`, or a health check's command
/// with another timestamp, share one; a new process whose class has no spare (nor one of up to
/// twice its class) allocates, as does one found, at a pid wrap, before those that ended are
/// met in the same cycle's merge. Bounded: at most [`SpareTexts::MAX_BUFFERS`] spares of at most
/// [`SpareTexts::MAX_BUFFER_BYTES`] each (a larger one is freed), 128 KiB in all; a process keeps
/// at most twice its class (a short text does not keep a long one's buffer).
#[derive(Debug)]
pub struct SpareTexts {
    spare: Vec<Vec<u8>>,
}

impl Default for SpareTexts {
    fn default() -> SpareTexts {
        SpareTexts { spare: Vec::with_capacity(SpareTexts::MAX_BUFFERS) }
    }
}

impl SpareTexts {
    pub const MAX_BUFFERS: usize = 32;
    pub const MAX_BUFFER_BYTES: usize = 4096;
    /// Texts are stored in buffers of a multiple of this.
    pub const CLASS_BYTES: usize = 64;

    /// The capacity a new buffer gets for `need` bytes: the next multiple of
    /// [`SpareTexts::CLASS_BYTES`] (at least one), or `need` itself past
    /// [`SpareTexts::MAX_BUFFER_BYTES`] (never kept as a spare).
    pub fn class(need: usize) -> usize {
        if need > Self::MAX_BUFFER_BYTES {
            return need;
        }
        need.max(1).next_multiple_of(Self::CLASS_BYTES)
    }

    /// Keeps the text buffer of a process that ended (or of a pid now another process's).
    pub fn retire(&mut self, p: Proc) {
        self.put(p.text);
    }

    fn put(&mut self, mut text: Vec<u8>) {
        let cap = text.capacity();
        if cap == 0 || cap > Self::MAX_BUFFER_BYTES {
            return;
        }
        text.clear();
        if self.spare.len() < Self::MAX_BUFFERS {
            self.spare.push(text);
        } else if let Some(smallest) = self.spare.iter_mut().min_by_key(|b| b.capacity()) {
            // Full: the larger buffer fits more of the processes to come.
            if smallest.capacity() < cap {
                *smallest = text;
            }
        }
    }

    /// The smallest spare buffer with room for `need` bytes, and at most twice its class.
    fn take(&mut self, need: usize) -> Option<Vec<u8>> {
        let most = 2 * Self::class(need);
        let (i, _) = self
            .spare
            .iter()
            .enumerate()
            .filter(|(_, b)| (need..=most).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity())?;
        Some(self.spare.swap_remove(i))
    }

    pub fn len(&self) -> usize {
        self.spare.len()
    }

    /// Whether the buffer starting at `ptr` is one of the spares.
    pub fn holds(&self, ptr: *const u8) -> bool {
        self.spare.iter().any(|b| b.as_ptr() == ptr)
    }

    pub fn is_empty(&self) -> bool {
        self.spare.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Sorted by pid.
    pub procs: Vec<Proc>,
    /// The other half of the double buffer (empty between cycles).
    pub(crate) next: Vec<Proc>,
    pub mono_secs: f64,
    pub prev_mono_secs: Option<f64>,
    pub unix_ms: i64,
    /// Host CPU jiffies (all CPUs) since the previous cycle: the denominator of CPU percentages.
    pub host_cpu_delta: u64,
    pub host_cpu_total: u64,
    pub cpu_count: u32,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    pub page_size: u64,
    pub clk_tck: u64,
    /// Processes that vanished between listing and reading this cycle (normal, counted).
    pub vanished: u32,
    /// Reads of `/proc/<pid>` files that failed for want of file descriptors this cycle (new
    /// processes are skipped, known ones keep their last sample; see
    /// `ProcessSource::no_fds_total`).
    pub no_fds: u32,
    /// Processes first seen this cycle (each may allocate once for its text, and scratch buffers
    /// may grow past their high-water mark for an unusually long command line).
    pub discovered: u32,
    /// Known processes not read this cycle because they had not run since their last read
    /// (their CPU clock unchanged; see `ProcessSource::probe`).
    pub unread: u32,
    /// The pids of `procs`, in order (see [`ProcessTable::index_of`]).
    pub(crate) pids: Vec<u32>,
}

impl ProcessTable {
    /// Makes [`ProcessTable::index_of`]'s compact copy of the pids again, after `procs` changed.
    pub fn reindex(&mut self) {
        self.pids.clear();
        self.pids.extend(self.procs.iter().map(|p| p.pid));
    }

    /// The index in `procs` of the process with `pid`. Searched in a compact copy of the pids (4
    /// bytes an entry: 2 KiB for 500 processes, where the first steps of every search hit the
    /// same few lines) rather than in `procs` (about 600 bytes an entry: a cache miss at every
    /// step); the connections check looks up the owner of every socket, and those searches were
    /// the larger part of its own user time (perf under benches/budget.sh). Only
    /// `ProcessSource::collect` replaces `procs`, and it makes the copy again. A table whose
    /// `procs` changed since (built by hand, in tests) has a copy of another length, and `procs`
    /// itself is searched then; a hit is checked against `procs` (the caller reads that entry
    /// next anyway); a miss in a stale copy of the same length is not noticed.
    pub fn index_of(&self, pid: u32) -> Option<usize> {
        if self.pids.len() != self.procs.len() {
            return self.procs.binary_search_by_key(&pid, |p| p.pid).ok();
        }
        let i = self.pids.binary_search(&pid).ok()?;
        match self.procs.get(i) {
            Some(p) if p.pid == pid => Some(i),
            _ => self.procs.binary_search_by_key(&pid, |p| p.pid).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32) -> Proc {
        let dir =
            rustix::fs::openat(rustix::fs::CWD, "/proc/self", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty())
                .unwrap();
        Proc::new(pid, 1, 0, dir, 0.0)
    }

    fn with_text(pid: u32, cap: usize) -> Proc {
        let mut p = proc(pid);
        p.text = Vec::with_capacity(cap);
        p.text.push(b'x');
        p
    }

    #[test]
    fn a_process_found_after_another_ended_takes_its_buffer() {
        let mut spares = SpareTexts::default();
        let mut ended = proc(10);
        ended.set_text(b"sleep\x001", b"/usr/bin/sleep", b"/", &mut spares);
        let (ptr, cap) = (ended.text.as_ptr(), ended.text.capacity());
        spares.retire(ended);
        assert_eq!(spares.len(), 1);
        let mut found = proc(11);
        found.set_text(b"sleep\x002", b"/usr/bin/sleep", b"/", &mut spares);
        assert_eq!((found.text.as_ptr(), found.text.capacity()), (ptr, cap), "the same buffer, not a new one");
        assert!(spares.is_empty());
        assert_eq!(found.args().collect::<Vec<_>>(), [&b"sleep"[..], b"2"]);
        assert_eq!((found.exe(), found.cwd()), (&b"/usr/bin/sleep"[..], &b"/"[..]));
    }

    #[test]
    fn the_smallest_buffer_that_fits_is_taken() {
        let mut spares = SpareTexts::default();
        for cap in [256, 16, 64, 40] {
            spares.retire(with_text(1, cap));
        }
        let mut p = proc(2);
        p.set_text(&[b'a'; 30], b"/bin/a", b"/", &mut spares); // 37 bytes
        assert_eq!(p.text.capacity(), 40);
        let mut caps: Vec<usize> = spares.spare.iter().map(Vec::capacity).collect();
        caps.sort_unstable();
        assert_eq!(caps, [16, 64, 256]);
        assert!(spares.spare.iter().all(Vec::is_empty), "spares are kept cleared");
    }

    #[test]
    fn text_that_outgrows_its_buffer_trades_it_for_a_spare_one() {
        let mut spares = SpareTexts::default();
        spares.retire(with_text(1, 512));
        let mut p = with_text(2, 8);
        let small = p.text.as_ptr();
        // An exec to a longer command line.
        p.set_text(&[b'j'; 300], b"/usr/bin/java", b"/srv", &mut spares);
        assert_eq!(p.text.capacity(), 512);
        assert_eq!(spares.len(), 1);
        assert_eq!((spares.spare[0].as_ptr(), spares.spare[0].capacity()), (small, 8), "the small one kept");
        // Nothing fits: a new buffer of the size class, the spares untouched.
        let mut q = proc(3);
        q.set_text(&[b'k'; 100], b"", b"", &mut spares);
        assert_eq!((q.text.len(), q.text.capacity()), (100, 128));
        assert_eq!(spares.len(), 1);
    }

    #[test]
    fn texts_of_one_size_class_share_buffers() {
        let mut spares = SpareTexts::default();
        let cwd = b"/srv/app";
        // Three ended processes of three lengths (9, 10 and 50 bytes of arguments).
        for (pid, args) in [(1, &b"sleep\x000.3"[..]), (2, b"sleep\x000.05"), (3, &[b'c'; 50])] {
            let mut p = proc(pid);
            p.set_text(args, b"", cwd, &mut spares);
            assert_eq!(p.text.capacity(), 64, "{args:?}");
            spares.retire(p);
        }
        // Found in another order: each takes one of them, none allocates.
        for (pid, args) in [(4, &[b'd'; 50][..]), (5, b"sleep\x000.3"), (6, b"sleep\x000.05")] {
            let mut p = proc(pid);
            p.set_text(args, b"", cwd, &mut spares);
            assert_eq!(p.text.capacity(), 64);
            assert_eq!((p.args_raw(), p.cwd()), (args, &cwd[..]));
        }
        assert!(spares.is_empty());
    }

    #[test]
    fn a_short_text_does_not_take_a_long_ones_buffer() {
        let mut spares = SpareTexts::default();
        spares.retire(with_text(1, 4096));
        let mut p = proc(2);
        p.set_text(b"sleep\x001", b"/usr/bin/sleep", b"/", &mut spares);
        assert_eq!(p.text.capacity(), 64, "its own class, not the 4 KiB spare");
        assert_eq!(spares.spare[0].capacity(), 4096);
        // Twice its class is still taken.
        spares.retire(with_text(3, 128));
        let mut q = proc(4);
        q.set_text(b"sleep\x001", b"", b"", &mut spares);
        assert_eq!(q.text.capacity(), 128);
    }

    #[test]
    fn processes_are_found_by_pid_in_the_compact_copy_and_without_it() {
        let mut t = ProcessTable::default();
        t.procs.extend([3, 7, 11, 400].map(proc));
        // Built by hand, no copy: `procs` is searched.
        assert_eq!([3, 7, 11, 400, 5].map(|pid| t.index_of(pid)), [Some(0), Some(1), Some(2), Some(3), None]);
        t.reindex();
        assert_eq!(t.pids, [3, 7, 11, 400]);
        assert_eq!(
            [3, 7, 11, 400, 5, 0, 401].map(|pid| t.index_of(pid)),
            [Some(0), Some(1), Some(2), Some(3), None, None, None]
        );
        // Changed since: a copy of another length is not used.
        t.procs.insert(1, proc(5));
        assert_eq!([5, 7, 400].map(|pid| t.index_of(pid)), [Some(1), Some(2), Some(4)]);
        // Of the same length but stale: a hit that names another process is searched again
        // (in `procs`, which has no 7 now). Only `collect` changes a table outside tests, and
        // it makes the copy again.
        t.reindex();
        t.procs[2].pid = 8;
        assert_eq!(t.index_of(7), None);
        assert_eq!(t.index_of(11), Some(3));
        // A miss in such a copy is not noticed (documented: only `collect` replaces `procs`).
        assert_eq!(t.index_of(8), None);
    }

    #[test]
    fn size_classes() {
        assert_eq!(SpareTexts::class(0), 64);
        assert_eq!(SpareTexts::class(1), 64);
        assert_eq!(SpareTexts::class(64), 64);
        assert_eq!(SpareTexts::class(65), 128);
        assert_eq!(SpareTexts::class(4096), 4096);
        assert_eq!(SpareTexts::class(4097), 4097);
    }

    #[test]
    fn spares_are_bounded_in_number_and_size() {
        let mut spares = SpareTexts::default();
        spares.retire(proc(1)); // no buffer yet: nothing kept
        spares.retire(with_text(1, SpareTexts::MAX_BUFFER_BYTES + 1));
        assert!(spares.is_empty(), "empty and oversized buffers are freed");
        for i in 0..2 * SpareTexts::MAX_BUFFERS {
            spares.retire(with_text(i as u32, 16 + i));
        }
        assert_eq!(spares.len(), SpareTexts::MAX_BUFFERS);
        assert!(spares.spare.capacity() <= SpareTexts::MAX_BUFFERS, "the list itself never grew");
        // Full, the larger buffers are the ones kept.
        let smallest = spares.spare.iter().map(Vec::capacity).min().unwrap();
        assert_eq!(smallest, 16 + SpareTexts::MAX_BUFFERS);
        let total: usize = spares.spare.iter().map(Vec::capacity).sum();
        assert!(total <= SpareTexts::MAX_BUFFERS * SpareTexts::MAX_BUFFER_BYTES);
    }
}
