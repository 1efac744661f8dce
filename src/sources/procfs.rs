//! A procfs (or sysfs) root held open as a directory fd, and a reusable read buffer. Files are
//! reached with `openat` relative to the root and read with as few syscalls as the file allows
//! (`openat`, `read` until EOF, `close`), never with `std::fs::read`.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::ffi::CStr;
use std::io;
use std::path::Path;

pub struct ProcRoot {
    dir: OwnedFd,
}

impl ProcRoot {
    pub fn open(path: &Path) -> io::Result<ProcRoot> {
        let dir = openat(CWD, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(ProcRoot { dir })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// Whether `fd` is a file of the kernel's procfs (`PROC_SUPER_MAGIC`).
// `f_type`'s type differs by target and libc (i64 here, u32 or u64 elsewhere).
#[allow(clippy::unnecessary_cast)]
pub fn on_procfs(fd: &OwnedFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|st| st.f_type as i64 == 0x9fa0)
}

/// A read buffer that grows (rarely) and is never shrunk or dropped between cycles.
pub struct ReadBuf {
    buf: Vec<u8>,
}

impl ReadBuf {
    pub fn with_capacity(n: usize) -> ReadBuf {
        ReadBuf { buf: vec![0; n.max(64)] }
    }

    /// Reads the whole file `path` under `dir`. `ENOENT`/`ESRCH` come back as `io::ErrorKind::NotFound`
    /// so callers can treat a vanished process as normal.
    pub fn read_file(&mut self, dir: BorrowedFd<'_>, path: &CStr) -> io::Result<&[u8]> {
        self.read(dir, path, false)
    }

    /// Reads a file the kernel renders in one piece (`single_open` seq_files: a pid's `stat`,
    /// `statm`, `io`, `status`; `/proc/stat`, `/proc/meminfo`): a read larger than the content
    /// returns all of it, so a short read is the end and the EOF read `read_file` makes is
    /// skipped. That is one syscall in four per file: three per process per cycle
    /// (benches/budget.sh: about 1,700 of 5,900 a cycle at 570 processes).
    pub fn read_rendered(&mut self, dir: BorrowedFd<'_>, path: &CStr) -> io::Result<&[u8]> {
        self.read(dir, path, true)
    }

    /// Opens a rendered file (see [`ReadBuf::read_rendered`]) to be held and re-read with
    /// [`ReadBuf::reread`]. `ESRCH` comes back as `NotFound`.
    pub fn open_rendered(dir: BorrowedFd<'_>, path: &CStr) -> io::Result<OwnedFd> {
        loop {
            match openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty()) {
                Err(Errno::INTR) => continue,
                Err(Errno::SRCH) => return Err(io::ErrorKind::NotFound.into()),
                other => return Ok(other?),
            }
        }
    }

    /// [`ReadBuf::reread`] for a file whose content is short (a sysctl's value): the first
    /// `pread` asks for `first` bytes only (the whole buffer when that fills). A sysctl read
    /// makes the kernel allocate and zero a buffer of the size asked (`proc_sys_call_handler`),
    /// 64 KiB with this buffer's usual size; a seq_file does not.
    pub fn reread_short(&mut self, fd: BorrowedFd<'_>, first: usize) -> io::Result<&[u8]> {
        let first = first.min(self.buf.len());
        loop {
            match rustix::io::pread(fd, &mut self.buf[..first], 0) {
                Ok(0) => return Err(io::ErrorKind::NotFound.into()),
                Ok(n) if n < first => return Ok(self.buf.get(..n).unwrap_or(&[])),
                Ok(_) => return self.reread(fd),
                Err(Errno::INTR) => continue,
                Err(Errno::SRCH) => return Err(io::ErrorKind::NotFound.into()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Re-reads a rendered file held open, with one `pread` at offset 0: a procfs seq_file
    /// renders afresh on a read at offset 0 (`seq_read_iter` resets its iterator there), so a
    /// held descriptor costs one syscall a cycle instead of `openat`, `read`, `close`. The
    /// descriptor pins the process it was opened for (its `struct pid`, not the number): once
    /// that process is reaped it reads `ESRCH`, never a new process that reuses the pid;
    /// `ESRCH` and an empty read come back as `NotFound`.
    pub fn reread(&mut self, fd: BorrowedFd<'_>) -> io::Result<&[u8]> {
        loop {
            match rustix::io::pread(fd, &mut self.buf, 0) {
                Ok(0) => return Err(io::ErrorKind::NotFound.into()),
                Ok(n) if n < self.buf.len() => return Ok(self.buf.get(..n).unwrap_or(&[])),
                // Filled: it may be longer. Grow and render it again from the start (a read at
                // another offset would render it again anyway, perhaps with other figures).
                Ok(_) => {
                    let new_len = self.buf.len() * 2;
                    self.buf.resize(new_len, 0);
                }
                Err(Errno::INTR) => continue,
                Err(Errno::SRCH) => return Err(io::ErrorKind::NotFound.into()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads the whole file `path` under `dir` through the descriptor held in `slot` (opened
    /// there on first use, dropped after a failed read so the next call opens it again):
    /// `pread`s from offset 0, which makes a procfs seq_file or sysctl render afresh, so a file
    /// read every cycle costs its reads and no `openat`/`close`. `rendered`: the file renders in
    /// one piece (see [`ReadBuf::read_rendered`]), so one short `pread` is all of it; else
    /// (files of many records, which a seq_file renders a page at a time) `pread`s follow until
    /// one returns nothing.
    pub fn read_held(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &CStr,
        slot: &mut Option<OwnedFd>,
        rendered: bool,
    ) -> io::Result<&[u8]> {
        let fd = match slot.take() {
            Some(fd) => fd,
            None => ReadBuf::open_rendered(dir, path)?,
        };
        let n = if rendered { self.reread(fd.as_fd()).map(<[u8]>::len) } else { self.pread_all(fd.as_fd()) };
        let n = n?;
        *slot = Some(fd);
        Ok(self.buf.get(..n).unwrap_or(&[]))
    }

    /// `pread`s from offset 0 until a read returns nothing; the length read.
    fn pread_all(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let mut n = 0;
        loop {
            if n == self.buf.len() {
                let new_len = self.buf.len() * 2;
                self.buf.resize(new_len, 0);
            }
            let spare = self.buf.get_mut(n..).unwrap_or(&mut []);
            match rustix::io::pread(fd, spare, n as u64) {
                Ok(0) => return Ok(n),
                Ok(r) => n += r,
                Err(Errno::INTR) => continue,
                Err(Errno::SRCH) => return Err(io::ErrorKind::NotFound.into()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read(&mut self, dir: BorrowedFd<'_>, path: &CStr, short_is_end: bool) -> io::Result<&[u8]> {
        let fd = loop {
            match openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty()) {
                Err(Errno::INTR) => continue,
                Err(Errno::SRCH) => return Err(io::ErrorKind::NotFound.into()),
                other => break other?,
            }
        };
        let mut n = 0;
        loop {
            if n == self.buf.len() {
                // procfs gives no size up front; double and go on (only on the first big read).
                let new_len = self.buf.len() * 2;
                self.buf.resize(new_len, 0);
            }
            let spare = self.buf.get_mut(n..).unwrap_or(&mut []);
            let room = spare.len();
            match rustix::io::read(&fd, spare) {
                Ok(0) => break,
                Ok(r) => {
                    n += r;
                    if short_is_end && r < room {
                        break;
                    }
                }
                Err(Errno::INTR) => continue,
                Err(Errno::SRCH) => return Err(io::ErrorKind::NotFound.into()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.buf.get(..n).unwrap_or(&[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_procfs_files_of_any_size() {
        let root = ProcRoot::open(Path::new("/proc")).unwrap();
        // A tiny initial buffer forces the growth path on a multi-KiB file.
        let mut buf = ReadBuf::with_capacity(64);
        let stat = buf.read_file(root.fd(), c"stat").unwrap().to_vec();
        assert!(stat.starts_with(b"cpu "));
        let mi = buf.read_file(root.fd(), c"self/mountinfo").unwrap();
        assert!(mi.len() > 64);
        let e = buf.read_file(root.fd(), c"no-such-file").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    /// A sleeping child's files do not change between reads: one read (with a buffer that must
    /// grow, and with a large one) gives what reading to EOF gives.
    #[test]
    fn rendered_files_read_in_one_piece_match_reads_to_eof() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let root = ProcRoot::open(Path::new("/proc")).unwrap();
        let dir = openat(
            root.fd(),
            format!("{}", child.id()).as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        for file in [c"stat", c"statm", c"status"] {
            let whole = ReadBuf::with_capacity(64 * 1024).read_file(dir.as_fd(), file).unwrap().to_vec();
            assert!(whole.len() > 20, "{file:?}");
            let mut small = ReadBuf::with_capacity(64);
            assert_eq!(
                small.read_rendered(dir.as_fd(), file).unwrap(),
                &whole[..],
                "{file:?} through a growing buffer"
            );
            let mut big = ReadBuf::with_capacity(64 * 1024);
            assert_eq!(big.read_rendered(dir.as_fd(), file).unwrap(), &whole[..], "{file:?}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A held descriptor re-read at offset 0 gives the file as it is now (a busy child's CPU
    /// time moves between reads), what opening it afresh gives, also through a buffer that
    /// must grow; once the child is reaped it reads as gone.
    #[test]
    fn held_rendered_files_render_afresh_and_read_gone_after_exit() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let root = ProcRoot::open(Path::new("/proc")).unwrap();
        let dir = openat(
            root.fd(),
            format!("{}", child.id()).as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let held = ReadBuf::open_rendered(dir.as_fd(), c"stat").unwrap();
        let mut buf = ReadBuf::with_capacity(64);
        let cpu = |stat: &[u8]| {
            let s = crate::parse::pid::parse_stat(stat).unwrap();
            s.utime + s.stime
        };
        let first = cpu(buf.reread(held.as_fd()).unwrap());
        let mut later = first;
        for _ in 0..300 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            later = cpu(buf.reread(held.as_fd()).unwrap());
            if later > first {
                break;
            }
        }
        assert!(later > first, "a spinning child's CPU time did not move through the held fd: {first} {later}");
        let status = ReadBuf::open_rendered(dir.as_fd(), c"status").unwrap();
        let via_held = buf.reread(status.as_fd()).unwrap().to_vec();
        let fresh = ReadBuf::with_capacity(64 * 1024).read_rendered(dir.as_fd(), c"status").unwrap().to_vec();
        let name = |b: &[u8]| b.split(|&c| c == b'\n').take(2).map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(name(&via_held), name(&fresh), "Name and Umask lines");
        let _ = child.kill();
        let _ = child.wait();
        for fd in [&held, &status] {
            let e = buf.reread(fd.as_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
        }
    }

    /// A seq_file of many records renders a page or so per read: a held one is read to its end,
    /// from the start each time (`/proc/kallsyms`: megabytes that do not change).
    #[test]
    fn a_held_file_of_many_records_is_read_whole_each_time() {
        let root = ProcRoot::open(Path::new("/proc")).unwrap();
        let mut buf = ReadBuf::with_capacity(4096);
        let mut slot = None;
        let want = std::fs::read("/proc/kallsyms").unwrap();
        assert!(want.len() > 64 * 1024, "{} bytes", want.len());
        for _ in 0..2 {
            let got = buf.read_held(root.fd(), c"kallsyms", &mut slot, false).unwrap();
            assert!(got == want, "{} bytes read, {} expected", got.len(), want.len());
        }
        assert!(slot.is_some());
        // One rendered in one piece: one read, fresh each time.
        let mut uptime = None;
        let a = buf.read_held(root.fd(), c"uptime", &mut uptime, true).unwrap().to_vec();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = buf.read_held(root.fd(), c"uptime", &mut uptime, true).unwrap().to_vec();
        assert!(a.ends_with(b"\n") && b.ends_with(b"\n"));
        assert_ne!(a, b);
        // A failed read lets the descriptor go (opened again next time).
        let mut missing = None;
        assert!(buf.read_held(root.fd(), c"no-such-file", &mut missing, true).is_err());
        assert!(missing.is_none());
    }
}
