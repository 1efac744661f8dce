//! Reads the host files of one host check into a reused [`HostSample`].

use super::procfs::{ProcRoot, ReadBuf};
use crate::model::host::{Disk, Filesystem, HostSample, Iface, ProblemSet, SnmpFile, SNMP_RATES};
use crate::parse::{self, diskstats, mountinfo, net_dev, snmp};
use rustix::fd::OwnedFd;
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
        Ok(HostSource { root, buf, device_fs, host_root, path: Vec::with_capacity(256), held: Default::default() })
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

    fn filesystems(&mut self, s: &mut HostSample) -> bool {
        let mounts = if self.host_root.is_empty() { c"self/mountinfo" } else { c"1/mountinfo" };
        let Ok(bytes) = self.buf.read_held(self.root.fd(), mounts, &mut self.held[9], false) else { return false };
        let mut ok = true;
        let mut seen_devices: smallvec::SmallVec<[(u32, u32); 16]> = smallvec::SmallVec::new();
        for m in mountinfo::iter(bytes) {
            let Ok(m) = m else {
                ok = false;
                continue;
            };
            // Block-device filesystems only, each device once (bind mounts repeat it).
            if !is_device_fs(&self.device_fs, m.fs_type) {
                continue;
            }
            if seen_devices.contains(&(m.major, m.minor)) {
                continue;
            }
            // NUL-terminated in the arena so statvfs can take it as a C string without copying.
            let mp = s.names.push_with(|v| {
                mountinfo::unescape(m.mount_point, v);
                v.push(0);
            });
            self.path.clear();
            self.path.extend_from_slice(&self.host_root);
            self.path.extend_from_slice(s.names.get(mp));
            let Some(c_path) = CStr::from_bytes_with_nul(&self.path).ok() else { continue };
            let Ok(st) = rustix::fs::statvfs(c_path) else { continue };
            if st.f_blocks == 0 {
                continue;
            }
            seen_devices.push((m.major, m.minor));
            let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
            let device = s.names.push(m.source);
            let fs_type = s.names.push(m.fs_type);
            s.filesystems.push(Filesystem {
                device,
                mount_point: mp,
                fs_type,
                total_bytes: st.f_blocks.saturating_mul(frsize),
                used_bytes: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(frsize),
                free_bytes: st.f_bavail.saturating_mul(frsize),
                inodes_total: st.f_files,
                inodes_free: st.f_ffree,
            });
        }
        ok
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
