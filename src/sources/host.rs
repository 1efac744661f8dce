//! Reads the host files of one host check into a reused [`HostSample`].

use super::procfs::{on_procfs, ProcRoot, ReadBuf};
use crate::model::host::{Disk, Filesystem, HostSample, Iface, ProblemSet, SnmpFile, SNMP_RATES};
use crate::model::names::{Names, Span};
use crate::parse::{self, diskstats, mountinfo, net_dev, snmp};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::{AsFd, OwnedFd};
use std::ffi::CStr;
use std::io;
use std::path::Path;

/// Files a host check reads, in problem-bit order. Each is held open from cycle to cycle and
/// re-read from offset 0 (see [`ReadBuf::read_held`]), in this order in [`HostSource::held`].
pub const HOST_FILES: &[&str] = &[
    "stat",
    "meminfo",
    "loadavg",
    "uptime",
    "net/dev",
    "diskstats",
    "net/snmp",
    "net/netstat",
    "sys/fs/file-nr",
    "1/mountinfo",
];

/// [`HOST_FILES`]' sysctl (`sys/fs/file-nr`: three numbers), read with a short first `pread`
/// (see [`ReadBuf::reread_short`]).
const FILE_NR: usize = 8;
const FILE_NR_FIRST_READ: usize = 128;
/// [`HOST_FILES`]' mount table.
const MOUNTS: usize = 9;

/// The mount table is read again at least every this many host checks (5 minutes at the default
/// 15 s), changed or not: a path can change without a mount event (a directory above a mount
/// point renamed), and a procfs that never marks a change (another kernel's emulation) would
/// otherwise never be read again.
const MOUNTS_REREAD_CYCLES: u32 = 20;

/// Mounts of one device kept from a read: the first that `statvfs` answers is the device's
/// (bind mounts repeat a device, by the hundred on a host running containers).
const MOUNTS_PER_DEVICE: usize = 4;

/// The mount table's block-device filesystems as last read (the mount table is read again only
/// when the kernel says it changed, a path stopped answering, or at [`MOUNTS_REREAD_CYCLES`]: see
/// [`HostSource::mounts_changed`]). Their sizes are not kept: `statvfs` asks for them every cycle.
struct Mounts {
    /// `self/mountinfo`, or `1/mountinfo` when the host's mount points are reached through
    /// `1/root`.
    path: &'static CStr,
    names: Names,
    list: Vec<MountEntry>,
    /// Every line of the last read parsed.
    parsed: bool,
    /// Read through the descriptor held now (a descriptor opened afresh is read at once).
    current: bool,
    /// A listed mount point that had answered `statvfs` since the last read failed it (gone,
    /// renamed): read again next cycle. (One that never answers, a path hidden or not
    /// permitted, waits for [`MOUNTS_REREAD_CYCLES`]: else it would have the table read every
    /// cycle.)
    stale: bool,
    /// Cycles since the last read.
    age: u32,
    /// The held descriptor is procfs's mount table, which `poll` marks `POLLPRI` after a change
    /// (mount, unmount, remount, move): a table that is not (a test's fake procfs) is read
    /// every cycle.
    pollable: bool,
    /// Reused: the devices reported this cycle.
    seen: Vec<(u32, u32)>,
    /// How many times the table was read (tests).
    reads: u64,
}

/// A block-device mount of [`Mounts`]: its names in [`Mounts::names`].
#[derive(Clone, Copy)]
struct MountEntry {
    /// The mount source, e.g. `/dev/vda1`.
    device: Span,
    /// Unescaped and NUL-terminated.
    mount_point: Span,
    fs_type: Span,
    /// `major:minor`.
    dev: (u32, u32),
    /// `statvfs` has answered for it since the table was read.
    answered: bool,
}

pub struct HostSource {
    root: ProcRoot,
    buf: ReadBuf,
    /// Filesystem types that need a block device (from `/proc/filesystems`, read once).
    device_fs: Vec<u8>,
    /// `<HOST_PROC>/1/root`: the host's mount points are reached through it (`statvfs`), as
    /// they are listed in `<HOST_PROC>/1/mountinfo`: in a container, the agent's own mount table
    /// lacks the host's data volumes. Empty when pid 1's are not readable: then the agent's own
    /// (`self/mountinfo`, mount points as they are).
    host_root: Vec<u8>,
    /// `<host_root><mount point>\0`, reused.
    path: Vec<u8>,
    /// The descriptors of [`HOST_FILES`] (the mount table: whichever of `1/mountinfo` and
    /// `self/mountinfo` is read), held between cycles.
    held: [Option<OwnedFd>; 10],
    mounts: Mounts,
}

impl HostSource {
    pub fn open(host_proc: &Path) -> io::Result<HostSource> {
        let root = ProcRoot::open(host_proc)?;
        let mut buf = ReadBuf::with_capacity(64 * 1024);
        let mut device_fs = Vec::new();
        if let Ok(list) = buf.read_file(root.fd(), c"filesystems") {
            for (nodev, name) in mountinfo::filesystems(list) {
                if !nodev {
                    device_fs.extend_from_slice(name);
                    device_fs.push(b'\n');
                }
            }
        }
        let mut host_root = host_proc.join("1/root").into_os_string().into_encoded_bytes();
        let mut probe = host_root.clone();
        probe.extend_from_slice(b"/\0");
        let through_pid1 = buf.read_file(root.fd(), c"1/mountinfo").is_ok()
            && CStr::from_bytes_with_nul(&probe).is_ok_and(|p| rustix::fs::statvfs(p).is_ok());
        if !through_pid1 {
            info!(
                "host check: the host's mounts ({}/1/mountinfo and 1/root) are not readable; disk metrics cover the agent's own mount namespace",
                host_proc.display()
            );
            host_root.clear();
        }
        Ok(HostSource {
            root,
            buf,
            device_fs,
            host_root,
            path: Vec::with_capacity(256),
            held: Default::default(),
            mounts: Mounts {
                path: if through_pid1 { c"1/mountinfo" } else { c"self/mountinfo" },
                names: Names::default(),
                list: Vec::new(),
                parsed: false,
                current: false,
                stale: false,
                age: 0,
                pollable: false,
                seen: Vec::new(),
                reads: 0,
            },
        })
    }

    /// Fills `s` (cleared first). A file that cannot be read or parsed sets its problem bit and
    /// the rest is still collected.
    pub fn collect(&mut self, s: &mut HostSample, mono_secs: f64, unix_secs: u64) {
        s.clear();
        s.mono_secs = mono_secs;
        s.unix_secs = unix_secs;
        let mut problems: ProblemSet = 0;
        let mut mark = |bit: usize, ok: bool| {
            if !ok {
                problems |= 1 << bit;
            }
        };

        mark(0, self.read(0, c"stat", parse::proc_stat::parse).map(|v| s.stat = Some(v)).is_some());
        mark(1, self.read(1, c"meminfo", parse::meminfo::parse).map(|v| s.mem = Some(v)).is_some());
        mark(2, self.read(2, c"loadavg", parse::loadavg::parse_loadavg).map(|v| s.load = Some(v)).is_some());
        mark(3, self.read(3, c"uptime", parse::loadavg::parse_uptime).map(|v| s.uptime = Some(v)).is_some());
        mark(4, self.net_dev(s));
        mark(5, self.diskstats(s));
        mark(6, self.snmp(s, SnmpFile::Snmp, 6, c"net/snmp"));
        mark(7, self.snmp(s, SnmpFile::Netstat, 7, c"net/netstat"));
        mark(8, self.read(8, c"sys/fs/file-nr", parse::file_nr::parse).map(|v| s.file_nr = Some(v)).is_some());
        mark(9, self.filesystems(s));
        s.problems = problems;
        s.valid = true;
    }

    /// A file rendered in one piece (see [`ReadBuf::read_rendered`]), through held descriptor `k`.
    fn read<T>(&mut self, k: usize, path: &CStr, p: fn(&[u8]) -> Result<T, parse::ParseError>) -> Option<T> {
        p(self.file(k, path, true).ok()?).ok()
    }

    /// [`HOST_FILES`]`[k]` (`path`), through its held descriptor.
    fn file(&mut self, k: usize, path: &CStr, rendered: bool) -> io::Result<&[u8]> {
        let Some(slot) = self.held.get_mut(k) else { return self.buf.read_file(self.root.fd(), path) };
        if k == FILE_NR {
            // As `read_held`: opened on first use, dropped after a failed read.
            let fd = match slot.take() {
                Some(fd) => fd,
                None => ReadBuf::open_rendered(self.root.fd(), path)?,
            };
            let read = self.buf.reread_short(fd.as_fd(), FILE_NR_FIRST_READ);
            if read.is_ok() {
                *slot = Some(fd);
            }
            return read;
        }
        self.buf.read_held(self.root.fd(), path, slot, rendered)
    }

    fn net_dev(&mut self, s: &mut HostSample) -> bool {
        let Ok(bytes) = self.file(4, c"net/dev", false) else { return false };
        let mut ok = true;
        for d in net_dev::iter(bytes) {
            match d {
                Ok(d) => {
                    let name = s.names.push(d.name);
                    s.ifaces.push(Iface { name, counters: d.counters });
                }
                Err(_) => ok = false,
            }
        }
        ok
    }

    fn diskstats(&mut self, s: &mut HostSample) -> bool {
        let Ok(bytes) = self.file(5, c"diskstats", false) else { return false };
        let mut ok = true;
        for d in diskstats::iter(bytes) {
            match d {
                Ok(d) => {
                    let name = s.names.push(d.name);
                    s.disks.push(Disk { name, counters: d.counters });
                }
                Err(_) => ok = false,
            }
        }
        ok
    }

    fn snmp(&mut self, s: &mut HostSample, file: SnmpFile, k: usize, path: &CStr) -> bool {
        let Ok(bytes) = self.file(k, path, true) else { return false };
        for t in snmp::tables(bytes).filter_map(Result::ok) {
            for (slot, (_, f, proto, key)) in s.snmp.iter_mut().zip(SNMP_RATES) {
                if *f == file && t.proto == *proto {
                    // Counters are unsigned in the kernel; a negative one is a sentinel, not data.
                    *slot = t.get(key).and_then(|v| u64::try_from(v).ok());
                }
            }
        }
        true
    }

    /// Whether the mount table must be read this cycle: its descriptor is not held (first use,
    /// or dropped after a failed read), it was not read through this one yet, it cannot say
    /// (not procfs), a listed mount point stopped answering last cycle, it is [`MOUNTS_REREAD_CYCLES`]
    /// old, or `poll` says the table changed since the last `poll` (the kernel keeps, per open
    /// file, the mount namespace's event count as of the last `poll`, or the open: a change
    /// after a poll and before the read that follows shows at the next poll, and is read again
    /// then).
    fn mounts_changed(&self) -> bool {
        let m = &self.mounts;
        let Some(fd) = self.held[MOUNTS].as_ref() else { return true };
        if !(m.current && m.pollable) || m.stale || m.age >= MOUNTS_REREAD_CYCLES {
            return true;
        }
        let mut fds = [PollFd::new(fd, PollFlags::PRI)];
        match poll(&mut fds, 0) {
            Ok(0) => false,
            Ok(_) => fds[0].revents().intersects(PollFlags::PRI | PollFlags::ERR | PollFlags::NVAL),
            Err(_) => true,
        }
    }

    /// Reads the mount table into [`Mounts`]: its block-device filesystems, at most
    /// [`MOUNTS_PER_DEVICE`] mounts of each (in the table's order: `statvfs` takes the first
    /// that answers).
    fn read_mounts(&mut self) -> bool {
        let opened = self.held[MOUNTS].is_none();
        let m = &mut self.mounts;
        m.reads += 1;
        m.names.clear();
        m.list.clear();
        m.current = false;
        m.stale = false;
        m.age = 0;
        let Ok(bytes) = self.buf.read_held(self.root.fd(), m.path, &mut self.held[MOUNTS], false) else {
            return false;
        };
        m.parsed = true;
        for line in mountinfo::iter(bytes) {
            let Ok(line) = line else {
                m.parsed = false;
                continue;
            };
            let dev = (line.major, line.minor);
            if !is_device_fs(&self.device_fs, line.fs_type)
                || m.list.iter().filter(|e| e.dev == dev).count() >= MOUNTS_PER_DEVICE
            {
                continue;
            }
            let device = m.names.push(line.source);
            // NUL-terminated, so statvfs can take it as a C string without copying.
            let mount_point = m.names.push_with(|v| {
                mountinfo::unescape(line.mount_point, v);
                v.push(0);
            });
            let fs_type = m.names.push(line.fs_type);
            m.list.push(MountEntry { device, mount_point, fs_type, dev, answered: false });
        }
        if opened {
            m.pollable = self.held[MOUNTS].as_ref().is_some_and(on_procfs);
        }
        m.current = true;
        true
    }

    fn filesystems(&mut self, s: &mut HostSample) -> bool {
        if self.mounts_changed() && !self.read_mounts() {
            return false;
        }
        let m = &mut self.mounts;
        m.age = m.age.saturating_add(1);
        m.seen.clear();
        for k in 0..m.list.len() {
            let MountEntry { device, mount_point, fs_type, dev, answered } = m.list[k];
            if m.seen.contains(&dev) {
                continue;
            }
            let mount_point = m.names.get(mount_point);
            self.path.clear();
            self.path.extend_from_slice(&self.host_root);
            self.path.extend_from_slice(mount_point);
            let Some(c_path) = CStr::from_bytes_with_nul(&self.path).ok() else { continue };
            let Ok(st) = rustix::fs::statvfs(c_path) else {
                // It answered before: unmounted meanwhile, or its path changed. The table is
                // read again next cycle.
                m.stale |= answered;
                continue;
            };
            m.list[k].answered = true;
            if st.f_blocks == 0 {
                continue;
            }
            m.seen.push(dev);
            let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
            s.filesystems.push(Filesystem {
                device: s.names.push(m.names.get(device)),
                mount_point: s.names.push(mount_point),
                fs_type: s.names.push(m.names.get(fs_type)),
                total_bytes: st.f_blocks.saturating_mul(frsize),
                used_bytes: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(frsize),
                free_bytes: st.f_bavail.saturating_mul(frsize),
                inodes_total: st.f_files,
                inodes_free: st.f_ffree,
            });
        }
        m.parsed
    }
}

fn is_device_fs(list: &[u8], fs_type: &[u8]) -> bool {
    list.split(|b| *b == b'\n').any(|n| n == fs_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_this_machines_host_files() {
        let mut src = HostSource::open(Path::new("/proc")).unwrap();
        let mut s = HostSample::default();
        src.collect(&mut s, 1.0, 1_700_000_000);
        assert_eq!(s.problems, 0, "problems: {:b}", s.problems);
        assert!(s.stat.unwrap().cpu_count >= 1);
        assert!(s.mem.unwrap().total > 0);
        assert!(s.iface_named(b"lo").is_some());
        assert!(!s.filesystems.is_empty(), "no block-device filesystem found");
        let root = s.filesystems.iter().find(|f| s.names.get(f.mount_point) == b"/\0").unwrap();
        assert!(root.total_bytes >= root.used_bytes);
        assert!(s.snmp[0].is_some(), "Tcp InSegs");
    }

    /// Every host file is held after a cycle and read again through the same descriptor the
    /// next, with fresh figures.
    #[test]
    fn host_files_are_held_and_read_afresh() {
        use rustix::fd::AsRawFd;
        let mut src = HostSource::open(Path::new("/proc")).unwrap();
        let mut s = HostSample::default();
        src.collect(&mut s, 1.0, 1_700_000_000);
        let fds: Vec<i32> = src.held.iter().map(|f| f.as_ref().expect("held").as_raw_fd()).collect();
        let (uptime, cpu) = (s.uptime.unwrap(), s.stat.unwrap().cpu.total());
        std::thread::sleep(std::time::Duration::from_millis(50));
        src.collect(&mut s, 2.0, 1_700_000_001);
        assert_eq!(s.problems, 0, "problems: {:b}", s.problems);
        let again: Vec<i32> = src.held.iter().map(|f| f.as_ref().expect("held").as_raw_fd()).collect();
        assert_eq!(fds, again, "the same descriptors");
        assert!(s.uptime.unwrap() > uptime, "uptime {} then {}", uptime, s.uptime.unwrap());
        assert!(s.stat.unwrap().cpu.total() >= cpu);
        assert!(s.iface_named(b"lo").is_some());
        assert!(!s.filesystems.is_empty());
    }

    /// Whether the mount table behind `fd` changed since the last `poll` of `fd`.
    fn table_changed(fd: &OwnedFd) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::PRI)];
        poll(&mut fds, 0).unwrap() > 0 && fds[0].revents().contains(PollFlags::PRI)
    }

    /// The mount table is read when first needed, then again only after the kernel marks it
    /// changed (a mount, an unmount), a listed mount point stops answering, or it is
    /// [`MOUNTS_REREAD_CYCLES`] old; the filesystems of the cycles between come from the last
    /// read, with sizes asked afresh. In a mount namespace of the test's own thread, private (no
    /// propagation either way), which ends with the thread, mounts and all. A mount point
    /// removed in the parent namespace still detaches its copy here (a network namespace or a
    /// container going away elsewhere on the machine): a second descriptor on the table, polled
    /// around every cycle, tells such a change, and the run starts over (three tries).
    #[test]
    fn the_mount_table_is_read_again_only_after_a_change() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("sts-agent-mounts-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let inside = dir.clone();
        let run = std::thread::spawn(move || {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .expect("cannot run: unshare(CLONE_NEWNS) needs CAP_SYS_ADMIN (run the tests as root)");
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).unwrap();
            let oracle = std::fs::File::open("/proc/thread-self/mountinfo").unwrap().into();
            for attempt in 1..=3 {
                match mount_table_run(&inside, &oracle) {
                    Ok(()) => return,
                    Err(why) => eprintln!("mount table test, try {attempt}: {why}; again"),
                }
            }
            panic!("three tries disturbed by mount changes the test did not make");
        });
        let outcome = run.join();
        // This thread's namespace never had the mount.
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// One run of the test above; `Err` when `oracle` saw a mount change the run did not make.
    fn mount_table_run(inside: &Path, oracle: &OwnedFd) -> Result<(), &'static str> {
        use nix::mount::{mount, umount, MsFlags};
        let _ = umount(inside);
        let _ = table_changed(oracle);
        let mut src = HostSource::open(Path::new("/proc")).unwrap();
        // This thread's table (the source reads the process's, or pid 1's: tests/host_disks.rs),
        // and tmpfs counts as a disk here, so the test's mount shows in the list.
        src.host_root.clear();
        src.mounts.path = c"thread-self/mountinfo";
        src.device_fs.extend_from_slice(b"tmpfs\n");
        let point = [inside.as_os_str().as_encoded_bytes(), b"\0"].concat();
        let find = |s: &HostSample| s.filesystems.iter().position(|f| s.names.get(f.mount_point) == point.as_slice());
        let quiet = || if table_changed(oracle) { Err("the mount table changed from outside") } else { Ok(()) };
        let mut s = HostSample::default();
        let mut t = 0u32;
        let mut cycle = |src: &mut HostSource, s: &mut HostSample| -> Result<u64, &'static str> {
            quiet()?;
            t += 1;
            src.collect(s, f64::from(t), u64::from(t));
            quiet()?;
            assert_eq!(s.problems, 0, "cycle {t}");
            Ok(src.mounts.reads)
        };
        let tmpfs = |at: &Path| -> Result<(), &'static str> {
            quiet()?;
            mount(Some("sts-agent-test"), at, Some("tmpfs"), MsFlags::empty(), Some("size=1m")).unwrap();
            assert!(table_changed(oracle), "a mount marks the table changed");
            Ok(())
        };
        assert_eq!(cycle(&mut src, &mut s)?, 1);
        let n = s.filesystems.len();
        assert!(n > 0 && find(&s).is_none());
        for _ in 0..3 {
            assert_eq!((cycle(&mut src, &mut s)?, s.filesystems.len()), (1, n), "no change, no read");
        }
        tmpfs(inside)?;
        assert_eq!((cycle(&mut src, &mut s)?, s.filesystems.len()), (2, n + 1), "read after the mount");
        let fs = s.filesystems[find(&s).expect("the new mount")];
        assert_eq!((s.names.get(fs.fs_type), s.names.get(fs.device)), (&b"tmpfs"[..], &b"sts-agent-test"[..]));
        assert_eq!(fs.total_bytes, 1 << 20);
        // Its use, without a change to the table: asked afresh each cycle.
        std::fs::write(inside.join("f"), vec![1u8; 256 << 10]).unwrap();
        assert_eq!(cycle(&mut src, &mut s)?, 2);
        let used = s.filesystems[find(&s).unwrap()].used_bytes;
        assert!(used >= 256 << 10, "{used} bytes used");
        quiet()?;
        umount(inside).unwrap();
        assert!(table_changed(oracle), "an unmount marks the table changed");
        assert_eq!((cycle(&mut src, &mut s)?, s.filesystems.len()), (3, n), "read after the unmount");
        assert!(find(&s).is_none());
        // Quiet again until the table is MOUNTS_REREAD_CYCLES old.
        for _ in 0..MOUNTS_REREAD_CYCLES - 1 {
            assert_eq!(cycle(&mut src, &mut s)?, 3);
        }
        assert_eq!(cycle(&mut src, &mut s)?, 4, "read again at its age");
        // A listed mount point that answered, then fails statvfs: read again the next cycle.
        tmpfs(inside)?;
        assert_eq!(cycle(&mut src, &mut s)?, 5);
        let listed =
            src.mounts.list.iter().position(|e| src.mounts.names.get(e.mount_point) == point.as_slice()).unwrap();
        src.mounts.list[listed].mount_point = src.mounts.names.push(b"/nonexistent-sts-agent-path\0");
        assert_eq!(cycle(&mut src, &mut s)?, 5, "the cycle that finds the path gone");
        assert!(find(&s).is_none());
        assert_eq!(cycle(&mut src, &mut s)?, 6, "read again after it");
        assert!(find(&s).is_some());
        // One that never answered does not have the table read every cycle.
        let listed =
            src.mounts.list.iter().position(|e| src.mounts.names.get(e.mount_point) == point.as_slice()).unwrap();
        // (The read emptied the arena: the name again.)
        src.mounts.list[listed].mount_point = src.mounts.names.push(b"/nonexistent-sts-agent-path\0");
        src.mounts.list[listed].answered = false;
        for _ in 0..3 {
            assert_eq!(cycle(&mut src, &mut s)?, 6, "a path that never answered");
        }
        quiet()?;
        umount(inside).unwrap();
        Ok(())
    }

    /// `sys/fs/file-nr` is read with a short first `pread`, and whole.
    #[test]
    fn the_sysctl_is_read_whole_through_a_short_read() {
        let mut src = HostSource::open(Path::new("/proc")).unwrap();
        let mut s = HostSample::default();
        for t in 1..3u32 {
            src.collect(&mut s, f64::from(t), u64::from(t));
            let whole = std::fs::read_to_string("/proc/sys/fs/file-nr").unwrap();
            assert!(whole.len() < FILE_NR_FIRST_READ, "{whole:?}");
            let nr = s.file_nr.expect("file-nr parsed");
            let max: u64 = whole.split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_eq!(nr.max, max);
        }
        assert!(src.held[FILE_NR].is_some());
        // A value longer than the first read is read whole all the same (its first field, the
        // files allocated, may change between reads: the fields are compared by count and the
        // last, the limit).
        let mut buf = ReadBuf::with_capacity(4096);
        let fd = ReadBuf::open_rendered(src.root.fd(), c"sys/fs/file-nr").unwrap();
        let fields = |b: &[u8]| -> (usize, Vec<u8>) {
            let f: Vec<&[u8]> = b.split(|c| c.is_ascii_whitespace()).filter(|f| !f.is_empty()).collect();
            (f.len(), f.last().unwrap().to_vec())
        };
        let whole = fields(buf.reread(fd.as_fd()).unwrap());
        assert_eq!(whole.0, 3);
        assert!(buf.reread_short(fd.as_fd(), 4).unwrap().ends_with(b"\n"));
        assert_eq!(fields(buf.reread_short(fd.as_fd(), 4).unwrap()), whole);
        assert_eq!(fields(buf.reread_short(fd.as_fd(), 64).unwrap()), whole);
    }

    #[test]
    fn a_missing_file_is_a_problem_bit_not_a_failure() {
        let dir = std::env::temp_dir().join(format!("sts-agent-fakeproc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("loadavg"), "0.5 0.25 0.1 1/2 3\n").unwrap();
        let mut src = HostSource::open(&dir).unwrap();
        let mut s = HostSample::default();
        src.collect(&mut s, 1.0, 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.load.unwrap().one, 0.5);
        assert!(s.stat.is_none());
        assert_eq!(s.problems & (1 << 2), 0);
        assert_ne!(s.problems & 1, 0);
    }
}
