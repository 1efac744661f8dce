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

/// The mount table's block-device filesystems as last read (the mount table is read again only
/// when the kernel says it changed: see [`HostSource::mounts_changed`]). Their sizes are not
/// kept: `statvfs` asks for them every cycle.
#[derive(Default)]
struct Mounts {
    names: Names,
    /// Source (device), mount point (unescaped, NUL-terminated), filesystem type, and the
    /// device's `major:minor`.
    list: Vec<(Span, Span, Span, (u32, u32))>,
    /// Every line of the last read parsed.
    parsed: bool,
    /// Read through the descriptor held now (a descriptor opened afresh is read at once).
    current: bool,
    /// The held descriptor is procfs's mount table, which `poll` marks `POLLPRI` after a change
    /// (mount, unmount, remount, propagation change): a table that is not (a test's fake
    /// procfs) is read every cycle.
    pollable: bool,
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
    /// How many times the mount table was read (tests).
    pub mount_table_reads: u64,
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
            mounts: Mounts::default(),
            mount_table_reads: 0,
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
    /// (not procfs), or `poll` says the table changed since the last `poll` (the kernel keeps,
    /// per open file, the mount namespace's event count as of the last `poll`, or the open:
    /// a change after a poll and before the read that follows shows at the next poll, and is
    /// read again then).
    fn mounts_changed(&self) -> bool {
        let Some(fd) = self.held[MOUNTS].as_ref() else { return true };
        if !(self.mounts.current && self.mounts.pollable) {
            return true;
        }
        let mut fds = [PollFd::new(fd, PollFlags::PRI)];
        match poll(&mut fds, 0) {
            Ok(0) => false,
            Ok(_) => fds[0].revents().intersects(PollFlags::PRI | PollFlags::ERR | PollFlags::NVAL),
            Err(_) => true,
        }
    }

    /// Reads the mount table into [`Mounts`]: its block-device filesystems (each line that is
    /// one, bind mounts included: the device is taken once, at its first mount `statvfs` reads).
    fn read_mounts(&mut self) -> bool {
        let path = if self.host_root.is_empty() { c"self/mountinfo" } else { c"1/mountinfo" };
        let opened = self.held[MOUNTS].is_none();
        self.mount_table_reads += 1;
        let m = &mut self.mounts;
        m.names.clear();
        m.list.clear();
        m.current = false;
        let Ok(bytes) = self.buf.read_held(self.root.fd(), path, &mut self.held[MOUNTS], false) else {
            return false;
        };
        m.parsed = true;
        for line in mountinfo::iter(bytes) {
            let Ok(line) = line else {
                m.parsed = false;
                continue;
            };
            if !is_device_fs(&self.device_fs, line.fs_type) {
                continue;
            }
            let device = m.names.push(line.source);
            // NUL-terminated, so statvfs can take it as a C string without copying.
            let mount_point = m.names.push_with(|v| {
                mountinfo::unescape(line.mount_point, v);
                v.push(0);
            });
            let fs_type = m.names.push(line.fs_type);
            m.list.push((device, mount_point, fs_type, (line.major, line.minor)));
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
        let mut seen_devices: smallvec::SmallVec<[(u32, u32); 16]> = smallvec::SmallVec::new();
        for &(device, mount_point, fs_type, dev) in &self.mounts.list {
            if seen_devices.contains(&dev) {
                continue;
            }
            let mount_point = self.mounts.names.get(mount_point);
            self.path.clear();
            self.path.extend_from_slice(&self.host_root);
            self.path.extend_from_slice(mount_point);
            let Some(c_path) = CStr::from_bytes_with_nul(&self.path).ok() else { continue };
            let Ok(st) = rustix::fs::statvfs(c_path) else { continue };
            if st.f_blocks == 0 {
                continue;
            }
            seen_devices.push(dev);
            let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
            s.filesystems.push(Filesystem {
                device: s.names.push(self.mounts.names.get(device)),
                mount_point: s.names.push(mount_point),
                fs_type: s.names.push(self.mounts.names.get(fs_type)),
                total_bytes: st.f_blocks.saturating_mul(frsize),
                used_bytes: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(frsize),
                free_bytes: st.f_bavail.saturating_mul(frsize),
                inodes_total: st.f_files,
                inodes_free: st.f_ffree,
            });
        }
        self.mounts.parsed
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

    /// A tmpfs mounted at a unique directory for the test, unmounted (lazily, so a failing test
    /// cannot leave it busy) and removed on drop.
    struct TmpMount(std::path::PathBuf, bool);

    impl TmpMount {
        fn dir() -> TmpMount {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let dir = std::env::temp_dir().join(format!("sts-agent-mounts-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TmpMount(dir, false)
        }

        fn mount(&mut self) {
            let out = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "sts-agent-test"])
                .arg(&self.0)
                .output()
                .expect("mount(8)");
            assert!(
                out.status.success(),
                "cannot run: mount -t tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            self.1 = true;
        }

        fn unmount(&mut self) {
            let out = std::process::Command::new("umount").arg(&self.0).output().expect("umount(8)");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            self.1 = false;
        }
    }

    impl Drop for TmpMount {
        fn drop(&mut self) {
            if self.1 {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    /// The mount table is read when first needed, then again only after the kernel marks it
    /// changed (a mount, an unmount); the filesystems of the cycles between come from the last
    /// read, with sizes asked afresh.
    #[test]
    fn the_mount_table_is_read_again_only_after_a_change() {
        let mut src = HostSource::open(Path::new("/proc")).unwrap();
        // The agent's own table (in a container, pid 1's is read: tests/host_disks.rs), where
        // this test mounts; and tmpfs counts as a disk here, so its mount shows in the list.
        src.host_root.clear();
        src.device_fs.extend_from_slice(b"tmpfs\n");
        let mut m = TmpMount::dir();
        let point = [m.0.as_os_str().as_encoded_bytes(), b"\0"].concat();
        let listed = |s: &HostSample| s.filesystems.iter().any(|f| s.names.get(f.mount_point) == point.as_slice());
        let mut s = HostSample::default();
        src.collect(&mut s, 1.0, 1);
        assert_eq!((s.problems, src.mount_table_reads), (0, 1));
        let n = s.filesystems.len();
        assert!(n > 0 && !listed(&s));
        for t in 2..5 {
            src.collect(&mut s, f64::from(t), t as u64);
            assert_eq!((s.problems, src.mount_table_reads, s.filesystems.len()), (0, 1, n), "cycle {t}");
        }
        m.mount();
        src.collect(&mut s, 5.0, 5);
        assert_eq!((src.mount_table_reads, s.filesystems.len()), (2, n + 1));
        let fs = s.filesystems.iter().find(|f| s.names.get(f.mount_point) == point.as_slice()).expect("the new mount");
        assert_eq!((s.names.get(fs.fs_type), s.names.get(fs.device)), (&b"tmpfs"[..], &b"sts-agent-test"[..]));
        assert_eq!(fs.total_bytes, 1 << 20);
        // Its use, without a change to the table: read afresh each cycle.
        std::fs::write(m.0.join("f"), vec![1u8; 256 << 10]).unwrap();
        src.collect(&mut s, 6.0, 6);
        let fs = s.filesystems.iter().find(|f| s.names.get(f.mount_point) == point.as_slice()).unwrap();
        assert_eq!(src.mount_table_reads, 2);
        assert!(fs.used_bytes >= 256 << 10, "{} bytes used", fs.used_bytes);
        m.unmount();
        src.collect(&mut s, 7.0, 7);
        assert_eq!((src.mount_table_reads, s.filesystems.len()), (3, n));
        assert!(!listed(&s));
        src.collect(&mut s, 8.0, 8);
        assert_eq!((s.problems, src.mount_table_reads), (0, 3));
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
        // A value longer than the first read is read whole all the same.
        let mut buf = ReadBuf::with_capacity(4096);
        let fd = ReadBuf::open_rendered(src.root.fd(), c"sys/fs/file-nr").unwrap();
        let whole = buf.reread(fd.as_fd()).unwrap().to_vec();
        assert_eq!(buf.reread_short(fd.as_fd(), 4).unwrap(), whole.as_slice());
        assert_eq!(buf.reread_short(fd.as_fd(), whole.len()).unwrap(), whole.as_slice());
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
