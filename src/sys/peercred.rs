//! The pid of a Unix socket's peer (`SO_PEERCRED`), read into a plain `libc::ucred`.
//!
//! rustix 0.38's `sockopt::get_socket_peercred` reads the kernel's `struct ucred` straight into a
//! `UCred` whose `pid` is a `Pid` (a `NonZeroI32`). The kernel writes pid 0 when the peer's process
//! is not visible in the reader's pid namespace (the agent in a container's pid namespace and a
//! client outside it), and a zero `NonZero` is undefined behaviour. Here the pid is a plain integer
//! and 0 (or any non-positive value) means "unknown".

// The one `unsafe` here is the `getsockopt` call; see the SAFETY comment.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The peer's pid as the kernel reports it for this process's pid namespace; `Ok(None)` when it
/// is not visible here (the kernel reports 0).
pub fn peer_pid(sock: impl AsFd) -> io::Result<Option<u32>> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `sock` is an open descriptor borrowed for the call; `cred` is a plain-integer
    // `struct ucred` and `len` its exact size, so the kernel writes at most `len` bytes into
    // storage that is valid for every bit pattern.
    let r = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(cred.pid).ok().filter(|&p| p > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_in_this_pid_namespace_has_its_pid() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_pid(&a).unwrap(), Some(std::process::id()));
    }

    /// The agent in a container's pid namespace and a client outside it: the kernel reports pid 0,
    /// read here as "unknown". This test runs itself again as pid 1 of a new pid namespace
    /// (`unshare`, root needed), where it accepts a connection from this process.
    #[test]
    fn a_peer_outside_this_pid_namespace_has_no_pid() {
        use std::io::Write;
        const INNER: &str = "STS_PEERCRED_TEST_SOCKET";
        if let Some(path) = std::env::var_os(INNER) {
            let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
            let (s, _) = l.accept().unwrap();
            println!("peer_pid={:?} own_pid={}", peer_pid(&s).unwrap(), std::process::id());
            std::io::stdout().flush().unwrap();
            return;
        }
        let path = std::env::temp_dir().join(format!("sts-peercred-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut unshare = std::process::Command::new("unshare");
        unshare.args(["--pid", "--fork", "--kill-child"]);
        if cfg!(qemu_user) {
            // Under qemu-user (packaging/test-aarch64.sh) the kernel cannot exec this binary (no
            // binfmt_misc entry for its architecture; unshare's execvp then hands it to /bin/sh,
            // which makes files of its bytes): it runs again through cargo's runner, or when run
            // by hand, Debian's qemu-user-static.
            let arch = std::env::consts::ARCH;
            let runner = std::env::var_os(format!("CARGO_TARGET_{}_UNKNOWN_LINUX_MUSL_RUNNER", arch.to_uppercase()));
            unshare.arg(runner.unwrap_or_else(|| format!("qemu-{arch}-static").into()));
        }
        let mut child = unshare
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "sys::peercred::tests::a_peer_outside_this_pid_namespace_has_no_pid", "--nocapture"])
            .env(INNER, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let t = std::time::Instant::now();
        let s = loop {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
                break s;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(20), "the inner test did not listen (root needed)");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out);
        let _ = child.wait();
        drop(s);
        let line = out.lines().find(|l| l.starts_with("peer_pid=")).unwrap_or_else(|| panic!("no answer: {out}"));
        let _ = std::fs::remove_file(&path);
        assert_eq!(line, "peer_pid=None own_pid=1", "seen from inside the new pid namespace");
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(peer_pid(&f).is_err());
    }
}
