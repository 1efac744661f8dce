//! The trace intake's sockets: a TCP listener (127.0.0.1:8126, or every interface when allowed)
//! and an optional Unix socket, their connections, and the bytes in and out. Framing is the pure
//! code of `transport::http_server`; what a request means is the caller's (`on_request`).
//!
//! Defences: at most `max_conns` connections (past it an idle one, the least recently active,
//! is closed to make room, so a flood of idle sockets can neither lock out a new client nor cut
//! off one in the middle of its request); each request must arrive within `read_timeout` of its
//! first byte and an idle keep-alive connection is closed after `idle_timeout`; bodies above
//! `max_body` get 413 from the head alone; the bytes of the requests under way on all connections
//! together stay under `held_budget` (429 past it; an idle connection holds no buffer and counts
//! nothing); one readiness event serves at most `EVENT_REQUESTS` requests and reads at most
//! `EVENT_BYTES` (a pipelining or fast client cannot hold the loop); `/status` is answered only to
//! loopback TCP peers and Unix-socket clients. Buffers are pooled.

use crate::transport::http_server::{
    write_response, ConnMachine, RequestHead, Route, Step, AGENT_HEADERS, HEALTH_HEADERS,
};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub tcp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub max_body: usize,
    pub max_conns: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub held_budget: usize,
}

/// Who sent a request, as far as the socket tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's pid (Unix socket peer credentials), in the agent's pid namespace; `None` when
    /// the client is outside it (the kernel reports pid 0).
    pub pid: Option<u32>,
    pub unix: bool,
    /// A TCP client from a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x).
    pub loopback: bool,
}

impl Peer {
    /// On this host's loopback or the Unix socket: may read `/status`.
    pub fn local(&self) -> bool {
        self.unix || self.loopback
    }
}

/// What answers a complete request: given its head, body and peer, it writes the reply body
/// and returns the status and content type.
pub type Handler<'h> = dyn FnMut(&RequestHead, &[u8], Peer, &mut Vec<u8>) -> (u16, &'static str) + 'h;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IntakeCounters {
    pub connections_accepted: u64,
    pub connections_evicted: u64,
    pub requests: u64,
    pub timeouts: u64,
    pub too_large: u64,
    pub bad_requests: u64,
    pub forbidden: u64,
    pub busy: u64,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Conn {
    stream: Stream,
    m: ConnMachine,
    out_pos: usize,
    deadline: Instant,
    peer: Peer,
    /// The last event's budget ran out with work left (requests buffered or bytes unread).
    more: bool,
}

/// Buffers larger than this go back to the allocator after their request.
const KEEP_CAPACITY: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Idle buffers kept for reuse (each at most `KEEP_CAPACITY`); the rest are freed.
const POOL_BUFFERS: usize = 32;
/// Requests answered per readiness event of one connection.
const EVENT_REQUESTS: usize = 32;
/// Bytes read per readiness event of one connection.
const EVENT_BYTES: usize = 256 * 1024;
/// Replies not yet taken by a client past which its requests wait (a pipelining client that
/// does not read its replies is not served further until it does).
const OUT_HIGH_WATER: usize = 256 * 1024;

pub struct TraceIntake {
    cfg: IntakeConfig,
    tcp: Option<TcpListener>,
    /// `tcp`'s bound address, taken once at open (health reads it on every request).
    tcp_addr: Option<SocketAddr>,
    unix: Option<UnixListener>,
    conns: Vec<Option<Conn>>,
    /// Buffers of idle and closed connections, for reuse.
    pool: Vec<Vec<u8>>,
    /// Every read lands here first (`READ_CHUNK`, zeroed once).
    chunk: Vec<u8>,
    token_base: usize,
    /// The reply body the request handler writes (reused).
    reply: Vec<u8>,
    pub counters: IntakeCounters,
    /// When to try `accept` again after it failed (see [`ACCEPT_RETRY`]).
    accept_retry_at: Option<Instant>,
}

/// After `accept` fails (EMFILE/ENFILE: out of descriptors), the listeners are tried again this
/// much later: their registrations are edge-triggered, so a client already queued would not be
/// reported again until another one connects.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);

/// The token of the TCP listener is `base`, of the Unix one `base + 1`, of connections `base + 2 + i`.
impl TraceIntake {
    pub fn open(cfg: IntakeConfig, registry: &Registry, token_base: usize) -> io::Result<TraceIntake> {
        let mut tcp = match cfg.tcp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("trace intake on {addr}: {e}")))?,
            ),
            None => None,
        };
        let mut unix = match &cfg.unix {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };
        if let Some(l) = tcp.as_mut() {
            registry.register(l, Token(token_base), Interest::READABLE)?;
        }
        let tcp_addr = tcp.as_ref().map(|l| l.local_addr()).transpose()?;
        if let Some(l) = unix.as_mut() {
            registry.register(l, Token(token_base + 1), Interest::READABLE)?;
        }
        Ok(TraceIntake {
            cfg,
            tcp,
            tcp_addr,
            unix,
            conns: Vec::new(),
            pool: Vec::with_capacity(POOL_BUFFERS),
            chunk: vec![0; READ_CHUNK],
            token_base,
            reply: Vec::with_capacity(1024),
            counters: IntakeCounters::default(),
            accept_retry_at: None,
        })
    }

    /// Closes the listeners and every connection (at shutdown).
    pub fn close_all(&mut self, registry: &Registry) {
        for i in 0..self.conns.len() {
            self.close(registry, i);
        }
        if let Some(mut l) = self.tcp.take() {
            let _ = registry.deregister(&mut l);
        }
        if let Some(mut l) = self.unix.take() {
            let _ = registry.deregister(&mut l);
            if let Some(p) = &self.cfg.unix {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// The TCP address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn owns(&self, t: Token) -> bool {
        t.0 >= self.token_base && t.0 < self.token_base + 2 + self.conns.len().max(self.cfg.max_conns)
    }

    pub fn open_connections(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    /// The earliest connection deadline (for the loop's poll timeout).
    pub fn deadline(&self) -> Option<Instant> {
        self.conns.iter().flatten().map(|c| c.deadline).chain(self.accept_retry_at).min()
    }

    pub fn on_event(&mut self, registry: &Registry, t: Token, now: Instant, on_request: &mut Handler<'_>) {
        if t.0 == self.token_base || t.0 == self.token_base + 1 {
            self.accept(registry, t.0 == self.token_base + 1, now);
            return;
        }
        let i = t.0 - self.token_base - 2;
        // Out of its slot while driven, so the rest of `self` stays usable.
        let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) else { return };
        let close = self.drive(&mut c, now, on_request);
        // Re-registering re-arms the edge-triggered registration: if the socket is still readable
        // (bytes left unread by the budget) or writable (always, unless the client stopped
        // reading), the next poll reports it again at once, so work left by the budget resumes
        // after the other ready connections and the rest of the loop had their turn.
        let want = if c.more || c.out_pos < c.m.out.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if !close {
            let _ = registry.reregister(c.stream.source(), t, want);
        }
        self.conns[i] = Some(c);
        if close {
            self.close(registry, i);
        }
    }

    /// Closes connections past their deadline (408 when a request was under way).
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        if self.accept_retry_at.is_some_and(|at| now >= at) {
            self.accept_retry_at = None;
            self.accept(registry, false, now);
            self.accept(registry, true, now);
        }
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else { continue };
            if now < c.deadline {
                continue;
            }
            if c.m.in_request() {
                self.counters.timeouts += 1;
                c.m.out.clear();
                c.out_pos = 0;
                write_response(
                    &mut c.m.out,
                    408,
                    "text/plain",
                    b"request not received in time\n",
                    false,
                    &AGENT_HEADERS,
                );
                let _ = c.stream.write(&c.m.out);
            }
            self.close(registry, i);
        }
    }

    fn accept(&mut self, registry: &Registry, unix: bool, now: Instant) {
        loop {
            let (stream, peer) = match (unix, self.tcp.as_ref(), self.unix.as_ref()) {
                (false, Some(l), _) => match l.accept() {
                    Ok((s, addr)) => {
                        let _ = s.set_nodelay(true);
                        (Stream::Tcp(s), Peer { pid: None, unix: false, loopback: is_loopback(addr.ip()) })
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        debug!("trace intake: accept failed: {e}; trying again in {ACCEPT_RETRY:?}");
                        self.accept_retry_at = Some(now + ACCEPT_RETRY);
                        return;
                    }
                },
                (true, _, Some(l)) => match l.accept() {
                    Ok((s, _)) => {
                        let pid = crate::sys::peercred::peer_pid(&s).ok().flatten();
                        (Stream::Unix(s), Peer { pid, unix: true, loopback: false })
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        debug!("trace intake: accept failed: {e}; trying again in {ACCEPT_RETRY:?}");
                        self.accept_retry_at = Some(now + ACCEPT_RETRY);
                        return;
                    }
                },
                _ => return,
            };
            self.counters.connections_accepted += 1;
            if self.open_connections() >= self.cfg.max_conns {
                // Make room: an idle connection (never sent a byte, or between requests), the
                // least recently active first (its idle deadline is the earliest). Only when every
                // connection is in the middle of a request does one of those go: the one whose
                // request has been under way longest (slow-loris sockets before fresh clients).
                let victim = (0..self.conns.len())
                    .filter_map(|i| self.conns[i].as_ref().map(|c| (c.m.in_request(), c.deadline, i)))
                    .min()
                    .map(|(_, _, i)| i);
                if let Some(victim) = victim {
                    self.counters.connections_evicted += 1;
                    self.close(registry, victim);
                }
            }
            let slot = match self.conns.iter().position(Option::is_none) {
                Some(s) => s,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            // No buffer yet: one is taken from the pool when the first bytes arrive.
            let mut c = Conn {
                stream,
                m: ConnMachine::default(),
                out_pos: 0,
                deadline: now + self.cfg.idle_timeout,
                peer,
                more: false,
            };
            if registry.register(c.stream.source(), Token(self.token_base + 2 + slot), Interest::READABLE).is_err() {
                continue;
            }
            self.conns[slot] = Some(c);
        }
    }

    fn close(&mut self, registry: &Registry, i: usize) {
        if let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) {
            let _ = registry.deregister(c.stream.source());
            c.m.reset();
            self.give_back(&mut c.m);
        }
    }

    /// Returns a machine's buffers to the pool (shrunk to `KEEP_CAPACITY`; freed when the pool is
    /// full). The machine must hold nothing (reset, or idle with everything written).
    fn give_back(&mut self, m: &mut ConnMachine) {
        for v in [&mut m.input, &mut m.body, &mut m.out] {
            let mut v = std::mem::take(v);
            if v.capacity() == 0 || self.pool.len() >= POOL_BUFFERS {
                continue;
            }
            v.clear();
            if v.capacity() > KEEP_CAPACITY {
                v.shrink_to(KEEP_CAPACITY);
            }
            self.pool.push(v);
        }
    }

    /// Gives a connection about to work buffers from the pool (so a keep-alive client's steady
    /// state allocates nothing).
    fn equip(&mut self, m: &mut ConnMachine) {
        for v in [&mut m.input, &mut m.body, &mut m.out] {
            if v.capacity() == 0 {
                if let Some(b) = self.pool.pop() {
                    *v = b;
                }
            }
        }
    }

    /// Bytes received and held for requests under way on the other connections (the one being
    /// driven is out of its slot). Idle connections count nothing.
    fn held_by_others(&self) -> usize {
        self.conns.iter().flatten().map(|c| c.m.held()).sum::<usize>()
    }

    /// Reads, frames, answers within one event's budget; `true` when the connection should close.
    fn drive(&mut self, c: &mut Conn, now: Instant, on_request: &mut Handler<'_>) -> bool {
        let close = self.drive_inner(c, now, on_request);
        if !close && !c.more && !c.m.in_request() && c.m.input.is_empty() && c.m.out.is_empty() && !c.m.closing() {
            // Idle between requests: its buffers go back to the pool.
            self.give_back(&mut c.m);
        }
        close
    }

    fn drive_inner(&mut self, c: &mut Conn, now: Instant, on_request: &mut Handler<'_>) -> bool {
        self.equip(&mut c.m);
        c.more = false;
        if !flush(c) {
            return true;
        }
        if c.m.closing() {
            return c.out_pos >= c.m.out.len();
        }
        let mut requests = EVENT_REQUESTS;
        let mut bytes = EVENT_BYTES;
        let mut eof = false;
        loop {
            if c.m.out.len() - c.out_pos > OUT_HIGH_WATER {
                // The client is not taking its replies: wait until it does (writable).
                break;
            }
            // Requests already received first (pipelined, or left by the last event's budget).
            if self.process(c, now, on_request, &mut requests) {
                c.more = true;
                break;
            }
            if c.m.closing() {
                break;
            }
            if !flush(c) {
                return true;
            }
            if bytes == 0 {
                c.more = true;
                break;
            }
            // Read into the shared chunk and append what came: reading into the input's spare
            // capacity would mean zero-filling it first, and after a large body's `reserve` that
            // was the whole remaining body at every read (quadratic in the body's size).
            let want = READ_CHUNK.min(bytes);
            match c.stream.read(&mut self.chunk[..want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    bytes -= n.min(bytes);
                    c.m.input.extend_from_slice(self.chunk.get(..n).unwrap_or(&[]));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        if !flush(c) {
            return true;
        }
        if eof && !c.m.in_request() && c.out_pos < c.m.out.len() {
            // The client is done sending (a half-close) but has replies still to take.
            c.m.finish();
        }
        if c.m.closing() {
            return c.out_pos >= c.m.out.len();
        }
        eof
    }

    /// Answers the complete requests in the input, at most `requests` of them; `true` when it
    /// stopped at that budget with input left.
    fn process(&mut self, c: &mut Conn, now: Instant, on_request: &mut Handler<'_>, requests: &mut usize) -> bool {
        let was_idle = !c.m.in_request();
        // What this connection may hold in all (it compares its own bytes with it).
        let room = self.cfg.held_budget.saturating_sub(self.held_by_others());
        let mut stopped = false;
        loop {
            if *requests == 0 {
                stopped = !c.m.input.is_empty();
                break;
            }
            match c.m.step(self.cfg.max_body, room) {
                Step::NeedMore => break,
                Step::Rejected(status) => {
                    match status {
                        413 => self.counters.too_large += 1,
                        403 => self.counters.forbidden += 1,
                        429 => self.counters.busy += 1,
                        _ => self.counters.bad_requests += 1,
                    }
                    break;
                }
                Step::Request(head, body) => {
                    *requests -= 1;
                    // The agent's own endpoints (probes every few seconds) are not trace requests.
                    if !matches!(head.route, Route::Status | Route::Health | Route::Live | Route::Ready) {
                        self.counters.requests += 1;
                    }
                    self.reply.clear();
                    if matches!(head.route, Route::Status | Route::Health) && !c.peer.local() {
                        // The agent's status is for this host only, whatever interface the
                        // intake listens on: the handler is not asked.
                        self.reply.extend_from_slice(b"not found\n");
                        c.m.respond(404, "text/plain", &self.reply);
                    } else {
                        let (status, ctype) = on_request(&head, body, c.peer, &mut self.reply);
                        // `/health` answered 200 or 503 is the agent's report (`app::health`; a
                        // port that does not serve it, OTLP's, answers 404): marked as such.
                        let headers: &[(&str, &str)] = match (head.route, status) {
                            (Route::Health, 200 | 503) => &HEALTH_HEADERS,
                            _ => &AGENT_HEADERS,
                        };
                        c.m.respond_with(status, ctype, &self.reply, headers);
                    }
                    c.deadline = now + self.cfg.idle_timeout;
                }
            }
        }
        if c.m.in_request() && (was_idle || c.deadline > now + self.cfg.read_timeout) {
            // A request began: it must be complete within the read timeout of its first byte.
            c.deadline = now + self.cfg.read_timeout;
        }
        // Storage a large request left behind is given back after its reply, even when the next
        // request has begun (its first bytes would otherwise keep a 10 MiB buffer that the budget,
        // counting bytes held, does not see). Only while little is held: a large body being
        // received keeps its buffer (shrinking it at every read would copy it again and again).
        if c.m.input.capacity() > KEEP_CAPACITY && c.m.input.len() < KEEP_CAPACITY {
            c.m.input.shrink_to(KEEP_CAPACITY);
        }
        if c.m.body.capacity() > KEEP_CAPACITY && c.m.body.len() < KEEP_CAPACITY {
            c.m.body.shrink_to(KEEP_CAPACITY);
        }
        stopped
    }
}

/// A loopback address, IPv4-mapped IPv6 included.
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// Writes pending output; `false` on a broken connection.
fn flush(c: &mut Conn) -> bool {
    while c.out_pos < c.m.out.len() {
        match c.stream.write(&c.m.out[c.out_pos..]) {
            Ok(0) => return false,
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    c.m.out.clear();
    c.out_pos = 0;
    true
}

/// Binds the Unix socket; a stale socket file is replaced, anything else at the path is an error.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("STS_APM_RECEIVER_SOCKET={}: exists and is not a socket; not touching it", path.display()),
            ));
        }
    }
    let l = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("STS_APM_RECEIVER_SOCKET={}: {e}", path.display())))?;
    // Any local user may send traces (as the Datadog agent's socket allows); only root reads.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o722))?;
    Ok(l)
}
