//! Per-process procfs files: `stat`, `statm`, `status`, `io`, `cmdline` (proc(5)).

use super::cursor::{fields, i64_dec, lines, split_key, u64_dec, ParseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat<'a> {
    pub pid: u32,
    /// The command name between the parentheses; it may itself contain `)`, `(`, spaces, newlines.
    pub comm: &'a [u8],
    pub state: u8,
    pub ppid: i32,
    /// Kernel `PF_*` flags; [`PF_KTHREAD`] marks kernel threads.
    pub flags: u64,
    pub utime: u64,
    pub stime: u64,
    pub nice: i64,
    pub num_threads: i64,
    /// Clock ticks after boot.
    pub start_time: u64,
    pub vsize: u64,
    pub rss_pages: u64,
    /// CPU last run on (field 39); absent on very old kernels.
    pub processor: Option<u32>,
    /// `startcode` and `startstack` (fields 26 and 28): set by `execve` (the stack randomised on
    /// every exec), so a change means the process exec'd. 0 or 1 without ptrace access to the
    /// process, 0 for kernel threads and zombies.
    pub start_code: u64,
    pub start_stack: u64,
}

/// `PF_KTHREAD` (include/linux/sched.h): the process is a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// `/proc/<pid>/stat`. The command name is found by the *last* `)`, so any name parses.
pub fn parse_stat(buf: &[u8]) -> Result<PidStat<'_>, ParseError> {
    let bad = ParseError::new("/proc/<pid>/stat", "malformed");
    let open = memchr::memchr(b'(', buf).ok_or(bad)?;
    let close = memchr::memrchr(b')', buf).ok_or(bad)?;
    if close < open {
        return Err(bad);
    }
    let pid = buf.get(..open).and_then(|p| fields(p).next()).and_then(u64_dec).ok_or(bad)?;
    let comm = buf.get(open + 1..close).ok_or(bad)?;
    let rest = buf.get(close + 1..).ok_or(bad)?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let mut f = fields(rest);
    let state = *f.next().and_then(|s| s.first()).ok_or(bad)?;
    // Fields after the state, numbered from 0 (ppid) as in proc(5) minus 4.
    let mut cols = [0i64; 36];
    let mut n = 0;
    for (slot, v) in cols.iter_mut().zip(f) {
        *slot = i64_dec(v).or_else(|| u64_dec(v).map(|u| u as i64)).ok_or(bad)?;
        n += 1;
    }
    // Everything up to rss (field 24) has been there since Linux 2.6.
    if n < 21 {
        return Err(bad);
    }
    let u = |i: usize| cols[i] as u64;
    Ok(PidStat {
        pid: u32::try_from(pid).map_err(|_| bad)?,
        comm,
        state,
        ppid: i32::try_from(cols[0]).map_err(|_| bad)?,
        flags: u(5),
        utime: u(10),
        stime: u(11),
        nice: cols[15],
        num_threads: cols[16],
        start_time: u(18),
        vsize: u(19),
        rss_pages: u(20),
        processor: if n > 35 { u32::try_from(cols[35]).ok() } else { None },
        start_code: if n > 22 { u(22) } else { 0 },
        start_stack: if n > 24 { u(24) } else { 0 },
    })
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PidStatm {
    pub size: u64,
    pub resident: u64,
    pub shared: u64,
    pub text: u64,
    pub lib: u64,
    pub data: u64,
    pub dirty: u64,
}

/// `/proc/<pid>/statm`: sizes in pages.
pub fn parse_statm(buf: &[u8]) -> Result<PidStatm, ParseError> {
    let bad = ParseError::new("/proc/<pid>/statm", "expected seven page counts");
    let mut f = fields(buf.strip_suffix(b"\n").unwrap_or(buf));
    let mut next = || f.next().and_then(u64_dec).ok_or(bad);
    Ok(PidStatm {
        size: next()?,
        resident: next()?,
        shared: next()?,
        text: next()?,
        lib: next()?,
        data: next()?,
        dirty: next()?,
    })
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PidStatus {
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub vm_swap_kib: Option<u64>,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// How many pids `NSpid` lists (Linux 4.1+): one per pid namespace from the procfs's own down
    /// to the process's; 1 when the process lives in the procfs's pid namespace.
    pub ns_pids: Option<usize>,
}

/// `/proc/<pid>/status`: the ids, swap and context switches.
pub fn parse_status(buf: &[u8]) -> Result<PidStatus, ParseError> {
    let bad = ParseError::new("/proc/<pid>/status", "malformed value");
    let mut s = PidStatus::default();
    let (mut seen_uid, mut seen_gid) = (false, false);
    for line in lines(buf) {
        let Some((key, rest)) = split_key(line) else { continue };
        match key {
            b"Uid" | b"Gid" => {
                let mut ids = [0u32; 4];
                for (slot, v) in ids.iter_mut().zip(fields(rest)) {
                    *slot = u64_dec(v).and_then(|x| u32::try_from(x).ok()).ok_or(bad)?;
                }
                if key == b"Uid" {
                    s.uid = ids;
                    seen_uid = true;
                } else {
                    s.gid = ids;
                    seen_gid = true;
                }
            }
            b"VmSwap" => s.vm_swap_kib = Some(fields(rest).next().and_then(u64_dec).ok_or(bad)?),
            b"voluntary_ctxt_switches" => {
                s.voluntary_ctxt_switches = Some(fields(rest).next().and_then(u64_dec).ok_or(bad)?)
            }
            b"nonvoluntary_ctxt_switches" => {
                s.nonvoluntary_ctxt_switches = Some(fields(rest).next().and_then(u64_dec).ok_or(bad)?)
            }
            b"NSpid" => s.ns_pids = Some(fields(rest).count()),
            _ => {}
        }
    }
    if !(seen_uid && seen_gid) {
        return Err(ParseError::new("/proc/<pid>/status", "no Uid or Gid line"));
    }
    Ok(s)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PidIo {
    pub syscr: u64,
    pub syscw: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// `/proc/<pid>/io`. Empty for kernel threads; unreadable without ptrace access.
pub fn parse_io(buf: &[u8]) -> Result<PidIo, ParseError> {
    let bad = ParseError::new("/proc/<pid>/io", "malformed value");
    let mut io = PidIo::default();
    let mut seen = 0u8;
    for line in lines(buf) {
        let Some((key, rest)) = split_key(line) else { continue };
        let (bit, slot) = match key {
            b"syscr" => (1, &mut io.syscr),
            b"syscw" => (2, &mut io.syscw),
            b"read_bytes" => (4, &mut io.read_bytes),
            b"write_bytes" => (8, &mut io.write_bytes),
            _ => continue,
        };
        *slot = fields(rest).next().and_then(u64_dec).ok_or(bad)?;
        seen |= bit;
    }
    if seen != 15 {
        return Err(ParseError::new("/proc/<pid>/io", "missing counters"));
    }
    Ok(io)
}

/// `/proc/<pid>/cmdline`: NUL-separated arguments. The trailing NUL does not make an empty last
/// argument; empty arguments in the middle are kept. Kernel threads have no arguments.
pub fn cmdline_args(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = buf.strip_suffix(b"\0").unwrap_or(buf);
    let mut parts = trimmed.split(|b| *b == 0);
    let empty = trimmed.is_empty();
    std::iter::from_fn(move || if empty { None } else { parts.next() })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fix {
        ($p:literal) => {
            include_bytes!(concat!("../../tests/fixtures/proc/debian12-6.18/pid/", $p))
        };
    }

    #[test]
    fn stat_of_a_process_named_to_break_parsers() {
        let s = parse_stat(fix!("evil/stat")).unwrap();
        assert_eq!(s.comm, b") x) (\n");
        assert_eq!((s.pid, s.state, s.ppid), (1310, b'R', 1308));
        assert_eq!((s.utime, s.stime, s.num_threads, s.start_time), (4, 2, 1, 329341));
        assert_eq!((s.vsize, s.rss_pages, s.processor), (17154048, 3411, Some(1)));
        assert_eq!((s.start_code, s.start_stack), (93928609751040, 140727899361936));
    }

    #[test]
    fn stat_of_init_and_edge_cases() {
        let s = parse_stat(fix!("1/stat")).unwrap();
        assert_eq!((s.pid, s.ppid), (1, 0));
        // Read without ptrace access: the kernel hides the addresses.
        assert_eq!((s.start_code, s.start_stack), (1, 0));
        assert!(parse_stat(b"").is_err());
        assert!(parse_stat(b"12 (x) S 1 2 3").is_err());
        assert!(parse_stat(b"12 )x( S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21").is_err());
        let ok = b"12 (a b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -5 17 18 19 20 21\n";
        let s = parse_stat(ok).unwrap();
        assert_eq!((s.comm, s.nice, s.rss_pages, s.processor), (&b"a b"[..], -5, 21, None));
        assert_eq!((s.start_code, s.start_stack), (0, 0), "fields absent: unknown");
        assert!(parse_stat(b"99999999999 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21").is_err());
    }

    #[test]
    fn statm_status_io() {
        let m = parse_statm(fix!("self/statm")).unwrap();
        assert!(m.size >= m.resident && m.resident > 0);
        let st = parse_status(fix!("evil/status")).unwrap();
        assert_eq!(st.uid, [0; 4]);
        assert_eq!(st.ns_pids, Some(1), "the fixture's process, in its procfs's namespace");
        let nested = parse_status(b"Uid: 0 0 0 0\nGid: 0 0 0 0\nNSpid:\t4321\t7\t1\n").unwrap();
        assert_eq!(nested.ns_pids, Some(3));
        assert_eq!(parse_status(b"Uid: 0 0 0 0\nGid: 0 0 0 0\n").unwrap().ns_pids, None, "before 4.1");
        assert!(st.voluntary_ctxt_switches.is_some() && st.vm_swap_kib.is_some());
        let io = parse_io(fix!("self/io")).unwrap();
        assert_eq!((io.syscr, io.read_bytes, io.write_bytes), (10, 122880, 4096));
        assert!(parse_io(b"").is_err(), "kernel threads have an empty io file");
        assert!(parse_statm(b"1 2 3").is_err());
        assert!(parse_status(b"Name: x\n").is_err());
        assert!(parse_status(b"Uid: 0 x 0 0\nGid: 0 0 0 0\n").is_err());
    }

    #[test]
    fn cmdline() {
        let args: Vec<&[u8]> = cmdline_args(fix!("evil/cmdline")).collect();
        assert_eq!(args[0], b"/root/.pyenv/versions/3.11.7/bin/python3");
        assert_eq!(&args[args.len() - 3..], &[&b"--password"[..], b"hunter2", b"arg with space"]);
        assert_eq!(cmdline_args(b"").count(), 0);
        assert_eq!(cmdline_args(b"a\0\0b\0").collect::<Vec<_>>(), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(cmdline_args(b"nginx: worker").collect::<Vec<_>>(), vec![&b"nginx: worker"[..]]);
    }
}
