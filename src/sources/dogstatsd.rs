//! The DogStatsD listeners (spec/dogstatsd.md §6): a UDP socket (`STS_BIND_HOST`, or every
//! interface, dual-stack, with non-local traffic) and an optional Unix datagram socket, both
//! non-blocking and registered with the loop. A readiness event drains the socket with
//! `recvmmsg` into one reused batch; each datagram is handed to the caller with the sender's
//! origin tags (Unix socket with origin detection: its pid → its container → `container_id:`
//! and the container's task tags).

use crate::sys::dgram::{set_rxq_ovfl, RecvBatch};
use mio::net::{UdpSocket, UnixDatagram};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 32;
/// Datagrams read per readiness event at most before the loop's other work gets a turn; the rest
/// is read at once after it (a deadline of now + [`RESUME_AFTER`]).
const MAX_PER_TURN: usize = 1024;
const RESUME_AFTER: Duration = Duration::from_millis(1);
/// How long a pid's origin tags are kept (`pidToEntityCacheDuration`), and how many pids at most.
const ORIGIN_TTL: Duration = Duration::from_secs(60);
const ORIGIN_CACHE: usize = 512;

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `None`: no UDP.
    pub udp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub origin_detection: bool,
    pub so_rcvbuf: usize,
    pub buffer_size: usize,
}

/// The listeners' counters (`/status`; `dogstatsd-udp`/`dogstatsd-uds` of the original).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenerStats {
    pub udp_packets: u64,
    pub udp_bytes: u64,
    pub uds_packets: u64,
    pub uds_bytes: u64,
    pub read_errors: u64,
    /// Datagrams longer than the buffer (their last line is dropped).
    pub truncated: u64,
    /// Unix-socket datagrams whose control messages did not fit (`MSG_CTRUNC`: a sender passed
    /// more than credentials): dropped whole, since their origin is not known.
    pub control_truncated: u64,
    /// Descriptors senders passed with datagrams (`SCM_RIGHTS`), all closed on receipt.
    pub passed_fds_closed: u64,
    /// Unix-socket datagrams whose sender could not be placed (no pid, or its cgroup unread).
    pub origin_detection_errors: u64,
    /// The kernel's count of datagrams it dropped for want of receive buffer (`SO_RXQ_OVFL`).
    pub kernel_drops_udp: u64,
    pub kernel_drops_uds: u64,
    /// `STS_DOGSTATSD_SO_RCVBUF` (0: the kernel's default), and the receive buffers the kernel
    /// granted the sockets (`SO_RCVBUF` read back: twice a request it took whole, the kernel's
    /// bookkeeping share included; 0 for a socket not open).
    pub rcvbuf_requested: u64,
    pub udp_rcvbuf: u64,
    pub unix_rcvbuf: u64,
}

/// Why a configured socket did not open (`None`: it opened, or it was not configured).
#[derive(Debug, Default)]
pub struct OpenErrors {
    pub udp: Option<io::Error>,
    pub unix: Option<io::Error>,
}

/// What a datagram came with.
pub struct Datagram<'a> {
    pub bytes: &'a [u8],
    pub truncated: bool,
    /// The sender's tags, comma-separated (empty when unknown).
    pub origin: &'a [u8],
}

/// A pid's container tags, as found at `at`.
struct Origin {
    pid: u32,
    at: Instant,
    tags: Vec<u8>,
}

pub struct DogStatsdListener {
    udp: Option<UdpSocket>,
    unix: Option<(UnixDatagram, PathBuf)>,
    origin_detection: bool,
    batch: RecvBatch,
    first_token: usize,
    resume_at: Option<Instant>,
    origins: Vec<Origin>,
    cgroup_buf: Vec<u8>,
    pub stats: ListenerStats,
}

/// Looks up a container's tags by id (Docker's and ECS's metadata): the tags to add after
/// `container_id:`.
pub type ContainerTags<'a> = dyn Fn(&[u8], &mut Vec<u8>) + 'a;

impl DogStatsdListener {
    /// Binds and registers each configured socket on its own (token `first_token` for UDP, `+1`
    /// for the Unix socket): one that fails to open leaves the other working, as the original's
    /// `NewServer` keeps whichever listener opened. Returns the listener, holding the sockets that
    /// opened ([`DogStatsdListener::is_open`] says whether any did), and each socket's error.
    pub fn open(cfg: &ListenerConfig, registry: &Registry, first_token: usize) -> (DogStatsdListener, OpenErrors) {
        let mut errors = OpenErrors::default();
        let udp = cfg.udp.and_then(|addr| {
            open_udp(addr, cfg.so_rcvbuf, registry, Token(first_token)).map_err(|e| errors.udp = Some(e)).ok()
        });
        let unix = cfg.unix.as_ref().and_then(|path| {
            let s = open_unix(path, cfg, registry, Token(first_token + 1)).map_err(|e| errors.unix = Some(e)).ok()?;
            Some((s, path.clone()))
        });
        // Read back whatever was asked: the kernel's default when nothing was.
        let granted = |s: Option<std::os::fd::BorrowedFd<'_>>| {
            s.and_then(|s| rustix::net::sockopt::get_socket_recv_buffer_size(s).ok()).unwrap_or(0) as u64
        };
        use std::os::fd::AsFd;
        let stats = ListenerStats {
            rcvbuf_requested: cfg.so_rcvbuf as u64,
            udp_rcvbuf: granted(udp.as_ref().map(|s| s.as_fd())),
            unix_rcvbuf: granted(unix.as_ref().map(|(s, _)| s.as_fd())),
            ..ListenerStats::default()
        };
        let listener = DogStatsdListener {
            udp,
            unix,
            origin_detection: cfg.origin_detection,
            batch: RecvBatch::new(BATCH, cfg.buffer_size),
            first_token,
            resume_at: None,
            origins: Vec::new(),
            cgroup_buf: Vec::with_capacity(4096),
            stats,
        };
        (listener, errors)
    }

    /// Whether a socket opened (with none, DogStatsD has nothing to read).
    pub fn is_open(&self) -> bool {
        self.udp.is_some() || self.unix.is_some()
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// When the listener wants to read again without an event (it stopped at its per-turn limit).
    pub fn deadline(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Reads what is queued on both sockets (at most [`MAX_PER_TURN`] datagrams each) and hands
    /// every datagram to `f`. `host_proc`: where `/proc/<pid>/cgroup` is read for origins.
    pub fn drain(
        &mut self,
        now: Instant,
        host_proc: &Path,
        container_tags: &ContainerTags<'_>,
        f: &mut dyn FnMut(Datagram<'_>),
    ) {
        self.resume_at = None;
        let mut more = false;
        if self.udp.is_some() {
            more |= self.drain_one(false, now, host_proc, container_tags, f);
        }
        if self.unix.is_some() {
            more |= self.drain_one(true, now, host_proc, container_tags, f);
        }
        if more {
            self.resume_at = Some(now + RESUME_AFTER);
        }
    }

    /// Whether `t` is one of this listener's tokens.
    pub fn owns(&self, t: Token) -> bool {
        t.0 == self.first_token || t.0 == self.first_token + 1
    }

    /// Returns whether datagrams may be left (the per-turn limit was reached).
    fn drain_one(
        &mut self,
        unix: bool,
        now: Instant,
        host_proc: &Path,
        container_tags: &ContainerTags<'_>,
        f: &mut dyn FnMut(Datagram<'_>),
    ) -> bool {
        let mut read = 0;
        while read < MAX_PER_TURN {
            let r = match (unix, &self.udp, &self.unix) {
                (false, Some(s), _) => self.batch.recv(s),
                (true, _, Some((s, _))) => self.batch.recv(s),
                _ => return false,
            };
            let n = match r {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.stats.read_errors += 1;
                    return false;
                }
            };
            read += n;
            for i in 0..n {
                let (bytes, got) = self.batch.get(i);
                let st = &mut self.stats;
                if unix {
                    st.uds_packets += 1;
                    st.uds_bytes += bytes.len() as u64;
                    if let Some(d) = got.drops {
                        st.kernel_drops_uds = u64::from(d);
                    }
                } else {
                    st.udp_packets += 1;
                    st.udp_bytes += bytes.len() as u64;
                    if let Some(d) = got.drops {
                        st.kernel_drops_udp = u64::from(d);
                    }
                }
                st.truncated += u64::from(got.truncated);
                st.passed_fds_closed += u64::from(got.fds_closed);
                if got.control_truncated {
                    st.control_truncated += 1;
                    continue;
                }
                let origin: &[u8] = if unix && self.origin_detection {
                    match got.pid {
                        Some(pid) => origin_of(
                            &mut self.origins,
                            &mut self.cgroup_buf,
                            &mut self.stats,
                            pid,
                            now,
                            host_proc,
                            container_tags,
                        ),
                        None => {
                            self.stats.origin_detection_errors += 1;
                            b""
                        }
                    }
                } else {
                    b""
                };
                f(Datagram { bytes, truncated: got.truncated, origin });
            }
        }
        true
    }
}

/// The origin tags of `pid`, cached for [`ORIGIN_TTL`] (the oldest entry makes room).
fn origin_of<'c>(
    cache: &'c mut Vec<Origin>,
    buf: &mut Vec<u8>,
    stats: &mut ListenerStats,
    pid: u32,
    now: Instant,
    host_proc: &Path,
    container_tags: &ContainerTags<'_>,
) -> &'c [u8] {
    if let Some(i) = cache.iter().position(|o| o.pid == pid && now.saturating_duration_since(o.at) < ORIGIN_TTL) {
        return &cache[i].tags;
    }
    let mut tags = Vec::new();
    buf.clear();
    match std::fs::File::open(host_proc.join(pid.to_string()).join("cgroup"))
        .and_then(|mut f| std::io::Read::read_to_end(&mut f, buf))
    {
        Ok(_) => {
            if let Some(id) = crate::parse::cgroup::process_container(buf, None) {
                tags.extend_from_slice(b"container_id:");
                tags.extend_from_slice(id);
                let before = tags.len();
                tags.push(b',');
                container_tags(id, &mut tags);
                if tags.len() == before + 1 {
                    tags.pop();
                }
            }
        }
        Err(_) => stats.origin_detection_errors += 1,
    }
    let i = match cache.iter().position(|o| o.pid == pid) {
        Some(i) => i,
        None if cache.len() < ORIGIN_CACHE => {
            cache.push(Origin { pid, at: now, tags: Vec::new() });
            cache.len() - 1
        }
        None => cache.iter().enumerate().min_by_key(|(_, o)| o.at).map_or(0, |(i, _)| i),
    };
    cache[i] = Origin { pid, at: now, tags };
    &cache[i].tags
}

/// Asks for a receive buffer of `bytes` and returns what the kernel granted (`SO_RCVBUF` read
/// back: twice the request, the kernel's bookkeeping share included). `SO_RCVBUF` is capped at
/// `net.core.rmem_max` (212,992 on a stock kernel, less than `bytes` by default), so when the
/// grant falls short `SO_RCVBUFFORCE` is tried, which passes the cap with `CAP_NET_ADMIN` and
/// fails harmlessly without it (the capped buffer stays). The buffer is kernel memory charged
/// only while datagrams wait in it (to the agent's cgroup), not a reservation.
fn set_rcvbuf(sock: impl std::os::fd::AsFd, bytes: usize) -> io::Result<usize> {
    use rustix::net::sockopt;
    sockopt::set_socket_recv_buffer_size(&sock, bytes)?;
    let granted = sockopt::get_socket_recv_buffer_size(&sock)?;
    if granted / 2 < bytes && sockopt::set_socket_recv_buffer_size_force(&sock, bytes).is_ok() {
        return Ok(sockopt::get_socket_recv_buffer_size(&sock)?);
    }
    Ok(granted)
}

/// Binds the UDP socket. The IPv6 unspecified address (`::`, non-local traffic) is bound
/// dual-stack (`IPV6_V6ONLY` off whatever `net.ipv6.bindv6only` says: IPv4 senders reach it too,
/// as they reach Go's `:8125`); where the kernel has no IPv6, `0.0.0.0` instead.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let SocketAddr::V6(v6) = addr else { return UdpSocket::bind(addr) };
    if !v6.ip().is_unspecified() {
        return UdpSocket::bind(addr);
    }
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd = match rustix::net::socket_with(AddressFamily::INET6, SocketType::DGRAM, flags, None) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::AFNOSUPPORT) => {
            return UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], addr.port())));
        }
        Err(e) => return Err(e.into()),
    };
    rustix::net::sockopt::set_ipv6_v6only(&fd, false)?;
    rustix::net::bind_v6(&fd, &v6)?;
    Ok(UdpSocket::from_std(std::net::UdpSocket::from(fd)))
}

/// Binds the UDP socket, sets its receive buffer and registers it.
fn open_udp(addr: SocketAddr, so_rcvbuf: usize, registry: &Registry, token: Token) -> io::Result<UdpSocket> {
    let mut s = bind_udp(addr)?;
    if so_rcvbuf > 0 {
        set_rcvbuf(&s, so_rcvbuf).map_err(|e| io::Error::new(e.kind(), format!("SO_RCVBUF {so_rcvbuf}: {e}")))?;
    }
    // Best effort: the drop counter is only for `/status`.
    let _ = set_rxq_ovfl(&s);
    registry.register(&mut s, token, Interest::READABLE)?;
    Ok(s)
}

/// Binds the Unix datagram socket and registers it: a stale socket at `path` is replaced, any
/// other file is an error; mode 0722 so that any user may write (the original's
/// `set-unix-socket-rights`). A step failing after the bind removes the file it made.
fn open_unix(path: &Path, cfg: &ListenerConfig, registry: &Registry, token: Token) -> io::Result<UnixDatagram> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket")),
        Err(_) => {}
    }
    let mut s = UnixDatagram::bind(path)?;
    let set_up = |s: &mut UnixDatagram| -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o722))?;
        if cfg.so_rcvbuf > 0 {
            set_rcvbuf(&*s, cfg.so_rcvbuf)
                .map_err(|e| io::Error::new(e.kind(), format!("SO_RCVBUF {}: {e}", cfg.so_rcvbuf)))?;
        }
        if cfg.origin_detection {
            rustix::net::sockopt::set_socket_passcred(&*s, true)
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("SO_PASSCRED: {e}")))?;
        }
        let _ = set_rxq_ovfl(&*s);
        registry.register(s, token, Interest::READABLE)
    };
    if let Err(e) = set_up(&mut s) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(s)
}

impl Drop for DogStatsdListener {
    fn drop(&mut self) {
        // The socket file is removed on stop, as the original does.
        if let Some((_, p)) = &self.unix {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        let p = format!("/proc/sys/net/core/{name}");
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")).trim().parse().unwrap()
    }

    /// Whether this process may pass `net.core.rmem_max` (`CAP_NET_ADMIN`, bit 12 of `CapEff`).
    fn has_net_admin() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
        u64::from_str_radix(eff, 16).unwrap() & (1 << 12) != 0
    }

    fn open(so_rcvbuf: usize, unix: Option<PathBuf>) -> DogStatsdListener {
        let cfg = ListenerConfig {
            udp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            unix,
            origin_detection: false,
            so_rcvbuf,
            buffer_size: 8192,
        };
        let poll = mio::Poll::new().unwrap();
        let (l, e) = DogStatsdListener::open(&cfg, poll.registry(), 0);
        assert!(e.udp.is_none() && e.unix.is_none(), "{e:?}");
        l
    }

    /// Every datagram `l` reads within 2 s, once `n` arrived.
    fn read(l: &mut DogStatsdListener, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let t = Instant::now();
        while got.len() < n && t.elapsed() < Duration::from_secs(2) {
            l.drain(Instant::now(), Path::new("/proc"), &|_, _| {}, &mut |d| got.push(d.bytes.to_vec()));
            std::thread::sleep(Duration::from_millis(10));
        }
        got
    }

    #[test]
    fn each_socket_opens_on_its_own() {
        let poll = mio::Poll::new().unwrap();
        let dir = std::env::temp_dir().join(format!("sts-dsd-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("dsd.socket");
        let cfg = |udp: SocketAddr, unix: &Path| ListenerConfig {
            udp: Some(udp),
            unix: Some(unix.to_path_buf()),
            origin_detection: true,
            so_rcvbuf: 0,
            buffer_size: 8192,
        };
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        // The socket's directory does not exist: UDP opens all the same, and reads.
        let (mut l, e) =
            DogStatsdListener::open(&cfg(any, Path::new("/nonexistent/dir/dsd.socket")), poll.registry(), 0);
        assert_eq!(e.unix.as_ref().map(io::Error::kind), Some(io::ErrorKind::NotFound), "{e:?}");
        assert!(e.udp.is_none() && l.is_open() && l.unix.is_none(), "{e:?}");
        let c = std::net::UdpSocket::bind(any).unwrap();
        c.send_to(b"a:1|c", l.udp_addr().unwrap()).unwrap();
        assert_eq!(read(&mut l, 1), [b"a:1|c".to_vec()]);
        assert_eq!(l.stats.udp_packets, 1);
        // The UDP port is taken: the Unix socket opens all the same, and reads.
        let holder = std::net::UdpSocket::bind(any).unwrap();
        let busy = holder.local_addr().unwrap();
        let (mut l, e) = DogStatsdListener::open(&cfg(busy, &sock), poll.registry(), 2);
        assert_eq!(e.udp.as_ref().map(io::Error::kind), Some(io::ErrorKind::AddrInUse), "{e:?}");
        assert!(e.unix.is_none() && l.is_open() && l.udp.is_none(), "{e:?}");
        let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
        c.send_to(b"b:2|g", &sock).unwrap();
        assert_eq!(read(&mut l, 1), [b"b:2|g".to_vec()]);
        assert_eq!((l.stats.uds_packets, l.stats.udp_packets), (1, 0));
        drop(l);
        assert!(!sock.exists(), "the socket file is removed with the listener");
        // Neither: nothing open. A regular file where the socket goes is kept, not replaced.
        std::fs::write(&sock, b"not a socket").unwrap();
        let (l, e) = DogStatsdListener::open(&cfg(busy, &sock), poll.registry(), 4);
        assert!(!l.is_open(), "{e:?}");
        assert_eq!(e.unix.as_ref().map(io::Error::kind), Some(io::ErrorKind::AlreadyExists), "{e:?}");
        assert!(e.udp.is_some(), "{e:?}");
        drop(l);
        assert_eq!(std::fs::read(&sock).unwrap(), b"not a socket");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn receive_buffer_past_rmem_max_is_forced_with_net_admin_and_read_back() {
        let (rmem_max, rmem_default) = (sysctl("rmem_max"), sysctl("rmem_default"));
        let want = 2 * rmem_max;
        let path = std::env::temp_dir().join(format!("sts-dsd-rcvbuf-{}.sock", std::process::id()));
        let l = open(want, Some(path.clone()));
        let _ = std::fs::remove_file(&path);
        let st = &l.stats;
        assert_eq!(st.rcvbuf_requested, want as u64);
        // The kernel reports twice what it took: all of it with SO_RCVBUFFORCE, rmem_max without.
        let expect = if has_net_admin() { 2 * want } else { 2 * rmem_max } as u64;
        assert_eq!((st.udp_rcvbuf, st.unix_rcvbuf), (expect, expect), "rmem_max {rmem_max}");
        // Nothing asked: the kernel's default is read back all the same.
        let l = open(0, None);
        assert_eq!((l.stats.rcvbuf_requested, l.stats.udp_rcvbuf, l.stats.unix_rcvbuf), (0, rmem_default as u64, 0));
    }
}
