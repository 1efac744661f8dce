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
            match rustix::io::read(&fd, spare) {
                Ok(0) => break,
                Ok(r) => n += r,
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
}
