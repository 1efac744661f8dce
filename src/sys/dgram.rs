//! Receiving many datagrams per system call (`recvmmsg`, `MSG_DONTWAIT`) into one reused
//! buffer, with what the kernel says of each: its length, whether it was cut (`MSG_TRUNC`), the
//! sender's pid (`SCM_CREDENTIALS`, on a Unix socket with `SO_PASSCRED`) and the socket's drop
//! counter (`SO_RXQ_OVFL`). Descriptors a local sender passes (`SCM_RIGHTS`) are installed in
//! this process by the kernel; every one is closed here, before anything else sees the datagram. Neither std, mio nor rustix 0.38 wraps `recvmmsg` or these control
//! messages, so this module calls libc directly: `recvmmsg`, the `CMSG_*` walk and one
//! `setsockopt`, each with its SAFETY comment.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Control-message room per datagram, in 8-byte words: `CMSG_SPACE(sizeof(ucred))` (32) +
/// `CMSG_SPACE(sizeof(u32))` (24) + room for an unasked-for `SCM_RIGHTS` of up to 46
/// descriptors (200 bytes), which are then closed. More than fits sets `MSG_CTRUNC`.
const CTRL_WORDS: usize = 32;

/// What the kernel said of one received datagram.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    /// Longer than the buffer: the tail was lost.
    pub truncated: bool,
    /// The sender's pid (`SCM_CREDENTIALS`), when asked for and visible (not 0).
    pub pid: Option<u32>,
    /// The socket's count of datagrams dropped for want of buffer (`SO_RXQ_OVFL`), when on and
    /// not zero (the kernel attaches it only then).
    pub drops: Option<u32>,
    /// The control messages did not fit (`MSG_CTRUNC`): what came with the datagram is not
    /// known whole (the sender's credentials may be missing), so the caller drops it.
    pub control_truncated: bool,
    /// Descriptors the sender passed (`SCM_RIGHTS`) that the kernel installed; all are closed.
    pub fds_closed: u32,
}

/// Buffers for up to `n` datagrams of `size` bytes, reused by every call.
pub struct RecvBatch {
    size: usize,
    buf: Vec<u8>,
    ctrl: Vec<u64>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    got: Vec<Received>,
}

impl RecvBatch {
    pub fn new(n: usize, size: usize) -> RecvBatch {
        let n = n.max(1);
        RecvBatch {
            size,
            buf: vec![0; n * size],
            ctrl: vec![0; n * CTRL_WORDS],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; n],
            // SAFETY: `mmsghdr` is a plain C struct of integers and pointers; all-zero is a
            // valid value (null pointers, zero lengths), filled in before each use.
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            got: Vec::with_capacity(n),
        }
    }

    /// Receives what is queued, up to the batch's size, without blocking. `Ok(0)`: nothing
    /// (`WouldBlock` is not an error here).
    pub fn recv(&mut self, sock: impl AsFd) -> io::Result<usize> {
        let n = self.hdrs.len();
        let (buf, ctrl) = (self.buf.as_mut_ptr(), self.ctrl.as_mut_ptr());
        // Every iovec is written before any pointer to one is taken: a later `&mut self.iovs[i]`
        // would invalidate (Stacked Borrows) raw pointers derived from an earlier one.
        for (i, iov) in self.iovs.iter_mut().enumerate() {
            *iov = libc::iovec { iov_base: buf.wrapping_add(i * self.size).cast(), iov_len: self.size };
        }
        let iovs = self.iovs.as_mut_ptr();
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            // Pointers into `buf`, `ctrl` and `iovs`, which are not resized while the batch lives.
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = iovs.wrapping_add(i);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ctrl.wrapping_add(i * CTRL_WORDS).cast();
            // `as _`: socklen_t on musl, size_t on glibc.
            h.msg_hdr.msg_controllen = (CTRL_WORDS * 8) as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: `hdrs` holds `n` initialised headers; each points at its own iovec (into
        // `buf`, `size` bytes) and its own `CTRL_WORDS * 8` bytes of `ctrl`, all owned by `self`
        // and alive for the call. The kernel writes within those lengths only. A null timeout
        // with MSG_DONTWAIT never blocks. MSG_CMSG_CLOEXEC: a passed descriptor is never
        // inherited by a child in the moment before it is closed.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_fd().as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                // `as _`: the flags are unsigned on musl, int on glibc.
                (libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) as _,
                std::ptr::null_mut(),
            )
        };
        self.got.clear();
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        for i in 0..r as usize {
            let h = &self.hdrs[i];
            let mut got = Received {
                len: (h.msg_len as usize).min(self.size),
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                // When the control room is too small, the kernel installs the descriptors that
                // fit (they are in the walk below and closed there) and closes the excess itself
                // (`man 7 unix`, SCM_RIGHTS: "the ancillary data is truncated (or discarded) and
                // the excess file descriptors are automatically closed in the receiving
                // process").
                control_truncated: h.msg_hdr.msg_flags & libc::MSG_CTRUNC != 0,
                ..Received::default()
            };
            read_control(&h.msg_hdr, &mut got);
            self.got.push(got);
        }
        Ok(r as usize)
    }

    /// The `i`th datagram of the last [`RecvBatch::recv`] and what the kernel said of it.
    pub fn get(&self, i: usize) -> (&[u8], Received) {
        let r = self.got[i];
        (&self.buf[i * self.size..i * self.size + r.len], r)
    }

    /// The largest datagram it takes whole.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Walks every control message of a header the kernel just filled in: the sender's credentials,
/// the drop counter, and passed descriptors, which are closed.
fn read_control(hdr: &libc::msghdr, got: &mut Received) {
    let start = hdr.msg_control as usize;
    #[allow(clippy::unnecessary_cast)] // socklen_t (u32) on musl, size_t on glibc
    let end = start + hdr.msg_controllen as usize;
    // SAFETY: `hdr` is the header the kernel just filled in: `msg_control` points at this
    // datagram's control storage and `msg_controllen` says how much of it the kernel wrote.
    // `CMSG_FIRSTHDR`/`CMSG_NXTHDR` return only headers that lie within that length; a payload
    // is read (unaligned, with the type its level and type name) only when both its `cmsg_len`
    // and the written length cover it. The descriptors of `SCM_RIGHTS` were installed in this
    // process for this message alone and nothing else refers to them, so closing them is sound.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let claimed = (*c).cmsg_len as usize;
            // The payload's bytes: what the header claims, within what the kernel wrote.
            let avail = (c as usize + claimed).min(end).saturating_sub(data as usize);
            let avail = if claimed < libc::CMSG_LEN(0) as usize { 0 } else { avail };
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if avail >= std::mem::size_of::<libc::ucred>() => {
                    let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    got.pid = u32::try_from(cred.pid).ok().filter(|&p| p > 0);
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) if avail >= std::mem::size_of::<u32>() => {
                    got.drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                }
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    let fds = data.cast::<libc::c_int>();
                    for k in 0..avail / std::mem::size_of::<libc::c_int>() {
                        let fd = std::ptr::read_unaligned(fds.add(k));
                        if fd >= 0 {
                            libc::close(fd);
                            got.fds_closed += 1;
                        }
                    }
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
}

/// Asks the kernel to attach the socket's drop counter to every datagram (`SO_RXQ_OVFL`).
pub fn set_rxq_ovfl(sock: impl AsFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a plain `int` option value of its exact size, borrowed for the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn many_datagrams_per_call_with_truncation_and_credentials() {
        let (a, b) = UnixDatagram::pair().unwrap();
        rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
        a.send(b"one").unwrap();
        a.send(&[b'x'; 100]).unwrap();
        a.send(b"three").unwrap();
        let mut batch = RecvBatch::new(2, 64);
        assert_eq!(batch.recv(&b).unwrap(), 2);
        let (d, r) = batch.get(0);
        assert_eq!((d, r.truncated, r.pid), (&b"one"[..], false, Some(std::process::id())));
        let (d, r) = batch.get(1);
        assert_eq!((d.len(), r.truncated), (64, true));
        assert_eq!(batch.recv(&b).unwrap(), 1);
        assert_eq!(batch.get(0).0, b"three");
        assert_eq!(batch.recv(&b).unwrap(), 0, "nothing queued: no blocking, no error");
    }

    /// Sends `data` with `fds` as `SCM_RIGHTS`, as any local sender on the socket may.
    fn send_with_fds(sock: &UnixDatagram, data: &[u8], fds: &[libc::c_int]) {
        let payload = std::mem::size_of_val(fds);
        // SAFETY (test): a header over a stack iovec and a control buffer sized by CMSG_SPACE,
        // written through CMSG_FIRSTHDR/CMSG_DATA within that size, all alive for the call.
        unsafe {
            let space = libc::CMSG_SPACE(payload as u32) as usize;
            let mut ctrl = vec![0u64; space.div_ceil(8)];
            let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
            let mut h: libc::msghdr = std::mem::zeroed();
            h.msg_iov = &mut iov;
            h.msg_iovlen = 1;
            h.msg_control = ctrl.as_mut_ptr().cast();
            h.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&h);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
            assert_eq!(libc::sendmsg(sock.as_raw_fd(), &h, 0), data.len() as isize, "{}", io::Error::last_os_error());
        }
    }

    /// A file of this test's own (unique name, removed on drop) whose descriptors are passed: a
    /// leak is counted among the descriptors open to it alone, whatever other tests of this
    /// process open meanwhile (`/dev/null` would not do: spawning a child opens it).
    struct Marked(std::path::PathBuf, std::fs::File);

    impl Marked {
        fn new(test: &str) -> Marked {
            let path = std::env::temp_dir().join(format!("sts-test-dgram-{test}-{}", std::process::id()));
            let file = std::fs::File::create(&path).unwrap();
            Marked(path, file)
        }

        /// Descriptors of this process open to the file.
        fn open_fds(&self) -> usize {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| *target == self.0)
                .count()
        }
    }

    impl Drop for Marked {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// 1,000 rounds of 4 datagrams that each pass 10 descriptors: all 40,000 closed here, so the
    /// file passed is open exactly once afterwards, as before.
    #[test]
    fn passed_descriptors_are_closed() {
        let (a, b) = UnixDatagram::pair().unwrap();
        rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
        let marked = Marked::new("closed");
        let few = [marked.1.as_raw_fd(); 10];
        let mut batch = RecvBatch::new(4, 64);
        let before = marked.open_fds();
        assert_eq!(before, 1);
        let (mut closed, mut got) = (0u64, 0);
        for _ in 0..1000 {
            for d in [b"a:1|c", b"b:1|c", b"c:1|c", b"d:1|c"] {
                send_with_fds(&a, d, &few);
            }
            let n = batch.recv(&b).unwrap();
            assert_eq!(n, 4);
            for i in 0..n {
                let (_, r) = batch.get(i);
                got += 1;
                closed += u64::from(r.fds_closed);
                assert_eq!((r.control_truncated, r.fds_closed, r.pid), (false, 10, Some(std::process::id())));
            }
        }
        assert_eq!((got, closed), (4000, 40_000));
        assert_eq!(marked.open_fds(), before, "descriptors to the passed file leaked");
    }

    /// Rounds of 4 datagrams of which one passes 200 descriptors, more than the control room
    /// takes: that one is flagged, what fit is closed here and the kernel closed the rest, and
    /// the others are whole. Not under qemu-user: it gives the kernel twice the control room the
    /// program asked for and copies back only what fits the program's, so the descriptors
    /// between the two stay open in the process, unknown to it (qemu 7.2: 64 per round; some 140
    /// rounds on, every datagram comes flagged, with no descriptor).
    #[test]
    #[cfg_attr(qemu_user, ignore = "qemu-user leaks the passed descriptors that do not fit the program's control room")]
    fn control_truncation_is_flagged_and_the_excess_closed() {
        let (a, b) = UnixDatagram::pair().unwrap();
        rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
        let marked = Marked::new("truncated");
        let few = [marked.1.as_raw_fd(); 10];
        let many = [marked.1.as_raw_fd(); 200];
        let mut batch = RecvBatch::new(4, 64);
        let before = marked.open_fds();
        assert_eq!(before, 1);
        let (mut closed, mut ctrunc, mut got) = (0u64, 0, 0);
        // 1,000 rounds: 3,000 sends of 10 descriptors that fit, and 1,000 sends of 200 that do not.
        for _ in 0..1000 {
            send_with_fds(&a, b"a:1|c", &few);
            send_with_fds(&a, b"b:1|c", &many);
            send_with_fds(&a, b"c:1|c", &few);
            send_with_fds(&a, b"d:1|c", &few);
            let n = batch.recv(&b).unwrap();
            assert_eq!(n, 4);
            for i in 0..n {
                let (d, r) = batch.get(i);
                got += 1;
                closed += u64::from(r.fds_closed);
                if d == b"b:1|c" {
                    assert!(r.control_truncated, "{r:?}");
                    ctrunc += 1;
                } else {
                    assert_eq!((r.control_truncated, r.fds_closed, r.pid), (false, 10, Some(std::process::id())));
                }
            }
        }
        assert_eq!((got, ctrunc), (4000, 1000));
        // The truncated ones: what fit was installed and is closed here; the kernel closed the rest.
        assert!(closed >= 30_000, "{closed}");
        assert_eq!(marked.open_fds(), before, "descriptors to the passed file leaked");
    }

    #[test]
    #[cfg_attr(qemu_user, ignore = "qemu-user's setsockopt does not know SO_RXQ_OVFL (ENOPROTOOPT)")]
    fn udp_drop_counter() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_rxq_ovfl(&s).unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"m:1|c", s.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::new(4, 8192);
        let t = std::time::Instant::now();
        while batch.recv(&s).unwrap() == 0 {
            assert!(t.elapsed().as_secs() < 5);
        }
        let (d, r) = batch.get(0);
        // The kernel attaches the counter only once it is non-zero.
        assert_eq!((d, r.drops.unwrap_or(0), r.pid), (&b"m:1|c"[..], 0, None));
    }
}
