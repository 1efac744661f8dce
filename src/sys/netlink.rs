//! A `NETLINK_SOCK_DIAG` socket and the dump exchange: send one request, receive datagrams into
//! the caller's buffer until `NLMSG_DONE`. The socket stays bound to the network namespace it
//! was created in, so one socket per namespace serves every later dump there.

use rustix::fd::OwnedFd;
use rustix::net::{netlink, recv, send, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::io;
use std::time::Duration;

pub struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
}

/// What a dump ended with.
#[derive(Debug)]
pub enum DumpError {
    Io(io::Error),
    /// A datagram longer than the receive buffer (`MSG_TRUNC`): the buffer is too small.
    Truncated {
        len: usize,
        buffer: usize,
    },
    /// The kernel answered `NLMSG_ERROR` (a negative errno) or sent bytes that do not parse.
    Kernel(i32),
    Malformed(&'static str),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Io(e) => write!(f, "{e}"),
            DumpError::Truncated { len, buffer } => {
                write!(f, "a {len}-byte netlink datagram does not fit the {buffer}-byte buffer")
            }
            DumpError::Kernel(errno) => write!(f, "{}", io::Error::from_raw_os_error(-errno)),
            DumpError::Malformed(why) => write!(f, "malformed netlink reply: {why}"),
        }
    }
}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> DumpError {
        DumpError::Io(e)
    }
}

impl From<rustix::io::Errno> for DumpError {
    fn from(e: rustix::io::Errno) -> DumpError {
        DumpError::Io(e.into())
    }
}

/// The kernel fills at most this much per dump datagram (`NLMSG_GOODSIZE` is below it on
/// 4 KiB-page hosts; a larger receive buffer gains nothing, see spec/perf.md §4).
pub const RECV_BUFFER: usize = 32 * 1024;

impl DiagSocket {
    /// A socket in the calling thread's current network namespace.
    pub fn open() -> io::Result<DiagSocket> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )?;
        // A dump is answered from the kernel at once; the timeout only guards against the
        // impossible, so a bug cannot hang the loop.
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(2)),
        )?;
        Ok(DiagSocket { fd, seq: 0 })
    }

    /// Sends `request` (an `nlmsghdr` + `inet_diag_req_v2`, see
    /// [`crate::parse::inet_diag::dump_request`]) and hands each received datagram to
    /// `on_datagram` until it returns `false` (the dump is complete). `buf` is the caller's reused
    /// receive buffer, at least [`RECV_BUFFER`] bytes.
    pub fn dump(
        &mut self,
        request: &mut [u8],
        buf: &mut [u8],
        mut on_datagram: impl FnMut(&[u8]) -> Result<bool, DumpError>,
    ) -> Result<(), DumpError> {
        self.seq = self.seq.wrapping_add(1);
        crate::parse::inet_diag::set_seq(request, self.seq);
        send(&self.fd, request, SendFlags::empty())?;
        loop {
            // TRUNC makes recv return the datagram's real length, so truncation is detected.
            let n = loop {
                match recv(&self.fd, buf, RecvFlags::TRUNC) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => break other?,
                }
            };
            if n > buf.len() {
                // Drain what is left of this dump so the next one starts clean.
                self.drain(buf);
                return Err(DumpError::Truncated { len: n, buffer: buf.len() });
            }
            match on_datagram(&buf[..n]) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    self.drain(buf);
                    return Err(e);
                }
            }
        }
    }

    /// Reads and discards pending datagrams (after an error mid-dump).
    fn drain(&mut self, buf: &mut [u8]) {
        while let Ok(n) = recv(&self.fd, buf, RecvFlags::DONTWAIT) {
            if n == 0 {
                break;
            }
        }
    }
}
