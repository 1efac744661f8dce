//! Receiving many datagrams per system call (`recvmmsg`, `MSG_DONTWAIT`) into one reused
//! buffer, with what the kernel says of each: its length, whether it was cut (`MSG_TRUNC`), the
//! sender's pid (`SCM_CREDENTIALS`, on a Unix socket with `SO_PASSCRED`) and the socket's drop
//! counter (`SO_RXQ_OVFL`). Neither std, mio nor rustix 0.38 wraps `recvmmsg` or these control
//! messages, so this module calls libc directly: `recvmmsg`, the `CMSG_*` walk and one
//! `setsockopt`, each with its SAFETY comment.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Control-message room per datagram, in 8-byte words: `CMSG_SPACE(sizeof(ucred))` (32) +
/// `CMSG_SPACE(sizeof(u32))` (24), rounded up.
const CTRL_WORDS: usize = 8;

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
        for i in 0..n {
            // Pointers into `buf` and `ctrl`, which are not resized while the batch lives.
            self.iovs[i] = libc::iovec { iov_base: buf.wrapping_add(i * self.size).cast(), iov_len: self.size };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ctrl.wrapping_add(i * CTRL_WORDS).cast();
            h.msg_hdr.msg_controllen = CTRL_WORDS * 8;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: `hdrs` holds `n` initialised headers; each points at its own iovec (into
        // `buf`, `size` bytes) and its own `CTRL_WORDS * 8` bytes of `ctrl`, all owned by `self`
        // and alive for the call. The kernel writes within those lengths only. A null timeout
        // with MSG_DONTWAIT never blocks.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_fd().as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
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
                ..Received::default()
            };
            // SAFETY: `msg_hdr` is the header the kernel just filled in: `msg_control` points at
            // this datagram's control storage and `msg_controllen` says how much of it the kernel
            // wrote. `CMSG_FIRSTHDR`/`CMSG_NXTHDR` stay within that length; each payload is read
            // unaligned, with the type its level and type name.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                            let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                            got.pid = u32::try_from(cred.pid).ok().filter(|&p| p > 0);
                        }
                        (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                            got.drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
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

    #[test]
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
