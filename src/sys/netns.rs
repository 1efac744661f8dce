//! Network namespaces: `setns` into one for the duration of a guard, and back.
//! `setns` changes only the calling thread's namespace; the agent has one thread.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, statat, AtFlags, Mode, OFlags, CWD};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use std::ffi::CStr;
use std::io;

/// The inode of the network namespace behind `ns/net` under `dir` (a `/proc/<pid>` directory),
/// which identifies the namespace for as long as it lives.
pub fn inode_at(dir: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(statat(dir, c"ns/net", AtFlags::empty())?.st_ino)
}

/// Opens the namespace file for `setns` (an `O_PATH` descriptor is not accepted by `setns`).
pub fn open_at(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(openat(dir, c"ns/net", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The calling thread's own network namespace, to return to after visiting another.
pub struct Home {
    fd: OwnedFd,
    pub inode: u64,
}

impl Home {
    pub fn current() -> io::Result<Home> {
        // The agent's own /proc (not HOST_PROC): this is about the calling thread.
        let path: &CStr = c"/proc/thread-self/ns/net";
        let fd = openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let inode = rustix::fs::fstat(&fd)?.st_ino;
        Ok(Home { fd, inode })
    }

    /// Runs `f` inside the namespace `ns`, then returns to this one. If returning fails the
    /// thread would be stranded in a foreign namespace, so that is fatal for the process.
    pub fn visit<T>(&self, ns: BorrowedFd<'_>, f: impl FnOnce() -> T) -> io::Result<T> {
        move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))?;
        let out = f();
        if let Err(e) = move_into_link_name_space(self.fd.as_fd(), Some(LinkNameSpaceType::Network)) {
            error!("could not return to the agent's own network namespace: {e}");
            std::process::abort();
        }
        Ok(out)
    }
}
