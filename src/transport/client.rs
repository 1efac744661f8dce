//! One HTTP/1.1 keep-alive connection to one origin, over a non-blocking mio `TcpStream` (or a
//! Unix stream, for the Docker Engine API), with
//! rustls in between for `https://`. It carries one request at a time and never blocks: the loop
//! calls [`HttpClient::on_ready`] on readiness and [`HttpClient::on_timeout`] at [`HttpClient::deadline`].
//!
//! Connecting goes Resolving → Connecting (address i of n) → on failure the next address → … The
//! origin's host name is resolved by the client's own [`Resolver`] (non-blocking UDP, its sockets
//! under the client's token, its deadline folded into [`HttpClient::deadline`]); every address of
//! the name (A, then AAAA) is tried in turn, starting with the one that last connected.

use super::http1::{self, parse_response};
use super::resolve::{Addrs, Resolver};
use super::tls_stream::{TlsError, TlsStream};
use crate::url::{Scheme, Url};
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// With several addresses, each gets `CONNECT_TIMEOUT / n` for its TCP connect, but at least
/// this; once TCP is connected, the TLS handshake gets the whole `CONNECT_TIMEOUT`.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Resolve,
    Connect,
    Tls,
    Io,
    Timeout,
    Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            FailureKind::Resolve => "name resolution failed",
            FailureKind::Connect => "connect failed",
            FailureKind::Tls => "TLS failed",
            FailureKind::Io => "connection error",
            FailureKind::Timeout => "timed out",
            FailureKind::Protocol => "bad HTTP response",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response {
        status: u16,
        retry_after: Option<u64>,
        body_excerpt: String,
        /// The whole (de-chunked) body, only for clients that keep bodies.
        body: Vec<u8>,
    },
    Failed(Failure),
}

/// The byte stream under HTTP: TCP, or a Unix socket.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Sock {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(b),
            Sock::Unix(s) => s.read(b),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(b),
            Sock::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.flush(),
            Sock::Unix(s) => s.flush(),
        }
    }
}

impl Sock {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }

    /// Whether a non-blocking connect has completed.
    fn connected(&self) -> io::Result<bool> {
        match self {
            Sock::Tcp(s) => match s.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
            // A local connect completes (or fails) at once.
            Sock::Unix(_) => Ok(true),
        }
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = match self {
            Sock::Tcp(s) => registry.deregister(s),
            Sock::Unix(s) => registry.deregister(s),
        };
    }
}

struct Conn {
    sock: Sock,
    tls: Option<TlsStream>,
    tcp_connected: bool,
    /// Served at least one response, so a failure before any reply may just be a stale keep-alive.
    reused: bool,
}

impl Conn {
    fn ready(&self) -> bool {
        self.tcp_connected && self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
    }
}

pub struct HttpClient {
    origin: Url,
    /// `origin`'s Host header, made once (a request must not allocate).
    host_header: String,
    /// Connect here instead of `origin`'s host and port (the Docker socket).
    unix_path: Option<PathBuf>,
    /// Keep the response body (metadata look-ups); the forwarder does not need it.
    want_body: bool,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    token: Token,
    conn: Option<Conn>,
    tx: Vec<u8>,
    tx_off: usize,
    rx: Vec<u8>,
    busy: bool,
    /// The server said `Connection: close` (or closed): drop the connection once the outcome is out.
    close_after_response: bool,
    retried_stale: bool,
    deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    /// Name resolution for `origin`'s host (none for a Unix socket).
    resolver: Option<Resolver>,
    /// The request waits for the resolver before it can connect.
    resolving: bool,
    /// The addresses of this connect, tried in turn from `next_addr`; the resolver's generation
    /// they came from; the one being tried; the one that last connected (tried first next time).
    addrs: Addrs,
    next_addr: usize,
    addrs_generation: u64,
    current: Option<SocketAddr>,
    preferred: Option<SocketAddr>,
}

fn fail(kind: FailureKind, detail: impl std::fmt::Display) -> Failure {
    Failure { kind, detail: detail.to_string() }
}

impl HttpClient {
    pub fn new(origin: Url, tls_config: Option<Arc<ClientConfig>>, token: Token) -> Result<HttpClient, String> {
        let tls = match (origin.scheme, tls_config) {
            (Scheme::Https, Some(cfg)) => {
                let name = ServerName::try_from(origin.host.clone()).map_err(|e| format!("{}: {e}", origin.host))?;
                Some((cfg, name))
            }
            (Scheme::Https, None) => return Err("https URL without a TLS configuration".into()),
            (Scheme::Http, _) => None,
        };
        Ok(HttpClient {
            host_header: origin.host_header(),
            // Reads /etc/resolv.conf and /etc/hosts now, before the loop (not for an IP literal).
            resolver: Some(Resolver::new(&origin.host, origin.port, token)),
            origin,
            unix_path: None,
            want_body: false,
            tls,
            token,
            conn: None,
            tx: Vec::with_capacity(64 * 1024),
            tx_off: 0,
            rx: Vec::with_capacity(4096),
            busy: false,
            close_after_response: false,
            retried_stale: false,
            deadline: None,
            connect_deadline: None,
            resolving: false,
            addrs: Addrs::new(),
            next_addr: 0,
            addrs_generation: 0,
            current: None,
            preferred: None,
        })
    }

    /// A plain-HTTP client on a Unix socket (`Host: localhost`) that keeps response bodies.
    pub fn unix(path: PathBuf, token: Token) -> HttpClient {
        let origin = Url::parse("http://localhost").expect("literal URL parses");
        let mut c = HttpClient::new(origin, None, token).expect("plain http needs no TLS");
        c.unix_path = Some(path);
        c.resolver = None;
        c.want_body = true;
        c
    }

    /// Keeps whole response bodies (for metadata look-ups).
    pub fn keeping_bodies(mut self) -> HttpClient {
        self.want_body = true;
        self
    }

    pub fn token(&self) -> Token {
        self.token
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }

    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// The earliest time [`Self::on_timeout`] must be called.
    pub fn deadline(&self) -> Option<Instant> {
        [self.deadline, self.connect_deadline, self.resolver.as_ref().and_then(Resolver::deadline)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts a request. Any outcome arrives later through `on_ready`/`on_timeout`, except an
    /// immediate failure (name resolution, socket creation), which is returned here.
    pub fn send(
        &mut self,
        registry: &Registry,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: Instant,
    ) -> Result<(), Failure> {
        debug_assert!(!self.busy);
        self.tx.clear();
        self.tx_off = 0;
        http1::write_request_head(&mut self.tx, method, path, &self.host_header, headers, body.len());
        self.tx.extend_from_slice(body);
        self.busy = true;
        self.retried_stale = false;
        self.deadline = Some(now + REQUEST_TIMEOUT);
        if self.conn.is_none() {
            if let Err(f) = self.connect(registry, now) {
                self.finish_request();
                return Err(f);
            }
        }
        Ok(())
    }

    /// Starts connecting: at once to a Unix socket or to the first address of the name if it is
    /// known, else after the resolver's answer (`resolving`).
    fn connect(&mut self, registry: &Registry, now: Instant) -> Result<(), Failure> {
        if let Some(path) = &self.unix_path {
            let sock = UnixStream::connect(path)
                .map_err(|e| fail(FailureKind::Connect, format!("{}: {e}", path.display())))?;
            return self.attach(registry, Sock::Unix(sock), now, CONNECT_TIMEOUT);
        }
        let Some(r) = self.resolver.as_mut() else {
            return Err(fail(FailureKind::Resolve, format!("{}: no resolver", self.origin.host)));
        };
        match r.addresses(registry, now) {
            Ok(Some(list)) => {
                self.addrs.clear();
                self.addrs.extend_from_slice(list);
                self.addrs_generation = r.generation();
                if let Some(i) = self.preferred.and_then(|p| self.addrs.iter().position(|a| *a == p)) {
                    self.addrs.rotate_left(i);
                }
                self.next_addr = 0;
                self.resolving = false;
                self.connect_next(registry, now, None)
            }
            Ok(None) => {
                self.resolving = true;
                Ok(())
            }
            Err(e) => Err(fail(FailureKind::Resolve, e)),
        }
    }

    /// Connects to the next address not tried yet; `Err` (the last failure) when none is left.
    fn connect_next(&mut self, registry: &Registry, now: Instant, mut last: Option<Failure>) -> Result<(), Failure> {
        let n = self.addrs.len().max(1) as u32;
        let timeout = (CONNECT_TIMEOUT / n).clamp(MIN_CONNECT_TIMEOUT, CONNECT_TIMEOUT);
        while let Some(&addr) = self.addrs.get(self.next_addr) {
            self.next_addr += 1;
            self.current = Some(addr);
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    match self.attach(registry, Sock::Tcp(s), now, timeout) {
                        Ok(()) => return Ok(()),
                        Err(f) => last = Some(f),
                    }
                }
                Err(e) => last = Some(fail(FailureKind::Connect, format!("{addr}: {e}"))),
            }
            if let Some(f) = &last {
                if self.next_addr < self.addrs.len() {
                    debug!("{}: {f}; trying the next address", self.origin);
                }
            }
        }
        Err(last.unwrap_or_else(|| fail(FailureKind::Connect, format!("{}: no address", self.origin.host))))
    }

    fn attach(&mut self, registry: &Registry, mut sock: Sock, now: Instant, timeout: Duration) -> Result<(), Failure> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match &mut sock {
            Sock::Tcp(s) => registry.register(s, self.token, interest),
            Sock::Unix(s) => registry.register(s, self.token, interest),
        }
        .map_err(|e| fail(FailureKind::Connect, e))?;
        let tls = match &self.tls {
            Some((cfg, name)) => match TlsStream::new(cfg.clone(), name.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    sock.deregister(registry);
                    return Err(fail(FailureKind::Tls, e));
                }
            },
            None => None,
        };
        self.rx.clear();
        self.conn = Some(Conn { sock, tls, tcp_connected: false, reused: false });
        self.connect_deadline = Some(now + timeout);
        Ok(())
    }

    /// The connect to the current address failed (`f`): the next address, or, when every one
    /// failed, a newer answer if the resolver has one; else the request fails with `f`.
    fn next_address(&mut self, registry: &Registry, now: Instant, f: Failure) -> Option<Outcome> {
        self.close(registry);
        if self.next_addr < self.addrs.len() {
            debug!("{}: {f}; trying the next address", self.origin);
        }
        let mut result = self.connect_next(registry, now, Some(f));
        if result.is_err() && self.resolver.as_ref().is_some_and(|r| r.generation() != self.addrs_generation) {
            // The walk began on an expired answer and the refresh brought new addresses.
            result = self.connect(registry, now);
        }
        match result {
            Ok(()) => None,
            Err(f) => {
                self.finish_request();
                Some(Outcome::Failed(f))
            }
        }
    }

    /// The resolver's lookup ended with `done`: connect if the request was waiting for it.
    fn resolved(&mut self, registry: &Registry, done: Result<(), String>, now: Instant) -> Option<Outcome> {
        if !self.resolving {
            // A refresh in the background: its answer is cached for the next connect.
            return None;
        }
        self.resolving = false;
        if !self.busy {
            return None;
        }
        let outcome = match done {
            Ok(()) => self.connect(registry, now).err(),
            Err(e) => Some(fail(FailureKind::Resolve, e)),
        };
        let f = outcome?;
        self.finish_request();
        Some(Outcome::Failed(f))
    }

    /// Drops the connection (the loop calls this at shutdown, and it happens on any failure).
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut c) = self.conn.take() {
            if let Some(tls) = c.tls.as_mut() {
                tls.close(&mut c.sock);
            }
            c.sock.deregister(registry);
        }
        self.connect_deadline = None;
        self.rx.clear();
    }

    fn finish_request(&mut self) {
        self.busy = false;
        self.resolving = false;
        self.deadline = None;
        // Forget the request itself: a later readiness event on the idle connection must not
        // write it again.
        self.tx.clear();
        self.tx_off = 0;
    }

    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) -> Option<Outcome> {
        if let Some(done) = self.resolver.as_mut().and_then(|r| r.on_timeout(registry, now)) {
            if let Some(o) = self.resolved(registry, done, now) {
                return Some(o);
            }
        }
        let connecting = self.connect_deadline.is_some_and(|d| now >= d);
        let request = self.deadline.is_some_and(|d| now >= d);
        if !connecting && !request {
            return None;
        }
        if connecting && !request && self.busy && self.conn.as_ref().is_some_and(|c| !c.tcp_connected) {
            let addr = self.current.map_or_else(|| self.origin.host.clone(), |a| a.to_string());
            return self.next_address(registry, now, fail(FailureKind::Timeout, format!("connecting to {addr}")));
        }
        let resolving = self.resolving;
        self.close(registry);
        if !self.busy {
            return None;
        }
        self.finish_request();
        let what = if resolving {
            "resolving the host name of"
        } else if connecting {
            "connecting or TLS handshake to"
        } else {
            "waiting for the response from"
        };
        Some(Outcome::Failed(fail(FailureKind::Timeout, format!("{what} {}", self.origin))))
    }

    /// Handles readiness of this client's socket.
    pub fn on_ready(&mut self, registry: &Registry, now: Instant) -> Option<Outcome> {
        self.progress(registry, now, true)
    }

    /// Writes the request [`HttpClient::send`] queued, at once: readiness is edge-triggered,
    /// and a kept-alive socket that is already writable gives no new event. Once the connection
    /// is ready (connected, TLS established), its socket is not read here: every event reads it
    /// until it is empty, so whatever arrives after that (the reply, a close) raises an event of
    /// its own; a read now would find nothing (one `recvfrom` a request, answered `EAGAIN`).
    /// Before that, as [`HttpClient::on_ready`] (the resolver's socket is read as there).
    pub fn write_now(&mut self, registry: &Registry, now: Instant) -> Option<Outcome> {
        self.progress(registry, now, false)
    }

    /// [`HttpClient::on_ready`], or with `read` false [`HttpClient::write_now`].
    fn progress(&mut self, registry: &Registry, now: Instant, read: bool) -> Option<Outcome> {
        // The resolver's sockets share this client's token.
        if let Some(done) = self.resolver.as_mut().and_then(|r| r.on_event(registry, now)) {
            if let Some(o) = self.resolved(registry, done, now) {
                return Some(o);
            }
        }
        let connecting = self.conn.as_ref().is_some_and(|c| !c.tcp_connected);
        match self.drive(now, read) {
            Ok(Some(outcome)) => {
                if std::mem::take(&mut self.close_after_response) {
                    self.close(registry);
                }
                Some(outcome)
            }
            Ok(None) => None,
            Err(f) if connecting && self.busy && f.kind == FailureKind::Connect => self.next_address(registry, now, f),
            Err(f) => {
                let stale = self.conn.as_ref().is_some_and(|c| c.reused) && self.rx.is_empty();
                self.close(registry);
                if !self.busy {
                    return None;
                }
                // A kept-alive connection the server closed while idle: retry once on a new one.
                if stale && !self.retried_stale && matches!(f.kind, FailureKind::Io) {
                    debug!(
                        "{}: kept-alive connection failed before any reply ({f}); resending on a new one",
                        self.origin
                    );
                    self.retried_stale = true;
                    self.tx_off = 0;
                    match self.connect(registry, now) {
                        Ok(()) => return None,
                        Err(f) => {
                            self.finish_request();
                            return Some(Outcome::Failed(f));
                        }
                    }
                }
                self.finish_request();
                Some(Outcome::Failed(f))
            }
        }
    }

    fn drive(&mut self, now: Instant, read: bool) -> Result<Option<Outcome>, Failure> {
        let Some(conn) = self.conn.as_mut() else { return Ok(None) };
        if !conn.tcp_connected {
            if let Ok(Some(e)) | Err(e) = conn.sock.take_error() {
                let to = self.current.map_or_else(|| self.origin.to_string(), |a| a.to_string());
                return Err(fail(FailureKind::Connect, format!("{to}: {e}")));
            }
            match conn.sock.connected() {
                Ok(true) => {
                    conn.tcp_connected = true;
                    self.preferred = self.current;
                    // The per-address share was for the TCP connect; the TLS handshake gets the
                    // whole allowance from here, however many addresses the name has.
                    self.connect_deadline = Some(now + CONNECT_TIMEOUT);
                }
                Ok(false) => return Ok(None),
                Err(e) => return Err(fail(FailureKind::Connect, format!("{}: {e}", self.origin))),
            }
        }
        flush(conn, &self.tx, &mut self.tx_off)?;
        if !read && conn.ready() {
            self.connect_deadline = None;
            return Ok(None);
        }
        let eof = fill(conn, &mut self.rx)?;
        flush(conn, &self.tx, &mut self.tx_off)?;
        if conn.ready() {
            self.connect_deadline = None;
        }
        if !self.busy {
            if eof {
                return Err(fail(FailureKind::Io, "closed by the server while idle"));
            }
            return Ok(None);
        }
        if eof && self.rx.is_empty() {
            return Err(fail(FailureKind::Io, "closed by the server before responding"));
        }
        match parse_response(&self.rx, eof) {
            Ok(None) => {
                if self.rx.len() > MAX_RESPONSE {
                    return Err(fail(FailureKind::Protocol, "response larger than 1 MiB"));
                }
                Ok(None)
            }
            Ok(Some(r)) => {
                let excerpt = if (200..300).contains(&r.status) {
                    String::new()
                } else {
                    let body = self.rx.get(r.body_excerpt.clone()).unwrap_or(&[]);
                    String::from_utf8_lossy(body.get(..body.len().min(256)).unwrap_or(&[])).into_owned()
                };
                let mut body = Vec::new();
                if self.want_body {
                    http1::body_into(&self.rx, &r, &mut body);
                }
                self.rx.drain(..r.consumed.min(self.rx.len()));
                if let Some(c) = self.conn.as_mut() {
                    c.reused = true;
                }
                self.finish_request();
                let worn = self.conn.as_ref().and_then(|c| c.tls.as_ref()).is_some_and(TlsStream::worn);
                self.close_after_response = !r.keep_alive || eof || worn;
                Ok(Some(Outcome::Response {
                    status: r.status,
                    retry_after: r.retry_after,
                    body_excerpt: excerpt,
                    body,
                }))
            }
            Err(e) => Err(fail(FailureKind::Protocol, e)),
        }
    }
}

fn tls_failure(e: TlsError) -> Failure {
    match e {
        TlsError::Io(e) => fail(FailureKind::Io, e),
        TlsError::Tls(e) => fail(FailureKind::Tls, e),
    }
}

/// Writes as much of `tx[*off..]` as the socket (and TLS) will take now.
fn flush(conn: &mut Conn, tx: &[u8], off: &mut usize) -> Result<(), Failure> {
    if !conn.tcp_connected {
        return Ok(());
    }
    let io_err = |e: io::Error| fail(FailureKind::Io, e);
    match conn.tls.as_mut() {
        Some(tls) => tls.flush(&mut conn.sock, tx, off).map_err(tls_failure),
        None => {
            while let Some(rest) = tx.get(*off..).filter(|r| !r.is_empty()) {
                match conn.sock.write(rest) {
                    Ok(0) => return Err(fail(FailureKind::Io, "socket accepted no bytes")),
                    Ok(n) => *off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Ok(())
        }
    }
}

/// Reads everything available into `rx`; returns whether the peer has closed.
fn fill(conn: &mut Conn, rx: &mut Vec<u8>) -> Result<bool, Failure> {
    if !conn.tcp_connected {
        return Ok(false);
    }
    let mut chunk = [0u8; 16 * 1024];
    match conn.tls.as_mut() {
        Some(tls) => tls.fill(&mut conn.sock, rx).map_err(tls_failure),
        None => loop {
            match conn.sock.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => rx.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(FailureKind::Io, e)),
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};

    /// A loopback HTTP server that records request lines and answers 202 with keep-alive.
    fn server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with("POST") {
                    seen2.lock().unwrap().push(line.trim().to_string());
                }
                if line == "\r\n" {
                    // Body: "hi" (Content-Length: 2).
                    let mut body = [0u8; 2];
                    r.read_exact(&mut body).unwrap();
                    w.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").unwrap();
                }
                line.clear();
            }
        });
        (addr, seen)
    }

    fn until_outcome(c: &mut HttpClient, poll: &mut Poll) -> Outcome {
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        loop {
            if let Some(o) = c.on_ready(poll.registry(), Instant::now()) {
                return o;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no outcome");
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        }
    }

    #[test]
    fn an_idle_kept_alive_connection_never_resends_the_last_request() {
        let (addr, seen) = server();
        let mut poll = Poll::new().unwrap();
        let url = Url::parse(&format!("http://{addr}/base")).unwrap();
        let mut c = HttpClient::new(url, None, Token(1)).unwrap();
        for path in ["/one", "/two"] {
            c.send(poll.registry(), "POST", path, &[], b"hi", Instant::now()).unwrap();
            assert!(matches!(until_outcome(&mut c, &mut poll), Outcome::Response { status: 202, .. }));
            // Spurious readiness on the idle connection (as edge-triggered polls deliver).
            for _ in 0..5 {
                assert_eq!(c.on_ready(poll.registry(), Instant::now()), None);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(*seen.lock().unwrap(), ["POST /one HTTP/1.1", "POST /two HTTP/1.1"]);
    }

    /// A client of `addr` that has sent `POST /one` and had its 202.
    fn first_reply(addr: std::net::SocketAddr) -> (Poll, HttpClient) {
        let mut poll = Poll::new().unwrap();
        let url = Url::parse(&format!("http://{addr}/base")).unwrap();
        let mut c = HttpClient::new(url, None, Token(1)).unwrap();
        c.send(poll.registry(), "POST", "/one", &[], b"hi", Instant::now()).unwrap();
        c.write_now(poll.registry(), Instant::now());
        assert!(matches!(until_outcome(&mut c, &mut poll), Outcome::Response { status: 202, .. }));
        (poll, c)
    }

    /// `write_now` writes and does not read: a reply already waiting in the socket (here one the
    /// server sent ahead, unasked) is left to the readiness event its arrival raised, which
    /// still comes (the socket was read until empty before it arrived) and yields it.
    #[test]
    fn a_request_is_written_at_once_and_its_reply_read_on_the_event() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (heard, second) = std::sync::mpsc::channel();
        let (early, sent_early) = std::sync::mpsc::channel();
        let (read_first, go) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let (mut line, mut heads) = (String::new(), 0);
            while heads < 2 && r.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    heads += 1;
                    r.read_exact(&mut [0u8; 2]).unwrap();
                    if heads == 1 {
                        w.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").unwrap();
                        // The next reply, ahead of its request, once the client has read the first.
                        go.recv().unwrap();
                        w.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").unwrap();
                        early.send(()).unwrap();
                    } else {
                        heard.send(()).unwrap();
                    }
                }
                line.clear();
            }
        });
        let (mut poll, mut c) = first_reply(addr);
        read_first.send(()).unwrap();
        // The early reply is in the client's socket (loopback delivers within the write).
        sent_early.recv_timeout(Duration::from_secs(5)).expect("the server never sent the early reply");
        std::thread::sleep(Duration::from_millis(20));
        c.send(poll.registry(), "POST", "/two", &[], b"hi", Instant::now()).unwrap();
        assert_eq!(c.write_now(poll.registry(), Instant::now()), None, "write_now read the socket");
        // Written by `write_now` itself: the server has the request before the client runs again.
        second.recv_timeout(Duration::from_secs(5)).expect("the second request never reached the server");
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        let outcome = loop {
            assert!(start.elapsed() < Duration::from_secs(10), "no event for the reply");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            if let Some(o) = events
                .iter()
                .any(|e| e.token() == Token(1))
                .then(|| c.on_ready(poll.registry(), Instant::now()))
                .flatten()
            {
                break o;
            }
        };
        assert!(matches!(outcome, Outcome::Response { status: 201, .. }), "{outcome:?}");
    }

    /// A kept-alive connection the server closed while idle, found only after the next request
    /// was written to it (`write_now` does not read first): the close's event fails it before
    /// any reply, and the request is sent once more on a new connection.
    #[test]
    fn a_request_written_to_a_connection_the_server_closed_is_sent_again_on_a_new_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (read_first, go) = std::sync::mpsc::channel();
        let (closed, is_closed) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for k in 0..2 {
                let (s, _) = l.accept().unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if line.starts_with("POST") {
                        lines.push(format!("{k} {}", line.trim()));
                    }
                    if line == "\r\n" {
                        r.read_exact(&mut [0u8; 2]).unwrap();
                        w.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").unwrap();
                        break;
                    }
                    line.clear();
                }
                if k == 0 {
                    // Idle, then closed by the server (its keep-alive timeout).
                    go.recv().unwrap();
                    drop((w, r));
                    closed.send(()).unwrap();
                }
            }
            lines
        });
        let (mut poll, mut c) = first_reply(addr);
        read_first.send(()).unwrap();
        is_closed.recv_timeout(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        c.send(poll.registry(), "POST", "/two", &[], b"hi", Instant::now()).unwrap();
        assert_eq!(c.write_now(poll.registry(), Instant::now()), None);
        // The close raises an event of its own.
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        while !events.iter().any(|e| e.token() == Token(1)) {
            assert!(start.elapsed() < Duration::from_secs(10), "no event for the close");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        }
        let outcome = until_outcome_within(&mut c, &mut poll, Duration::from_secs(10));
        assert!(matches!(outcome, Outcome::Response { status: 202, .. }), "{outcome:?}");
        assert_eq!(server.join().unwrap(), ["0 POST /one HTTP/1.1", "1 POST /two HTTP/1.1"]);
    }

    /// Like `until_outcome`, but also runs the client's timers; fails after `limit`.
    fn until_outcome_within(c: &mut HttpClient, poll: &mut Poll, limit: Duration) -> Outcome {
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        loop {
            let now = Instant::now();
            if let Some(o) = c.on_ready(poll.registry(), now) {
                return o;
            }
            if c.deadline().is_some_and(|d| now >= d) {
                if let Some(o) = c.on_timeout(poll.registry(), now) {
                    return o;
                }
            }
            assert!(start.elapsed() < limit, "no outcome within {limit:?}");
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        }
    }

    /// A hosts file under a fresh directory naming `multi.test` with `ips`, in order.
    fn hosts_dir(tag: &str, ips: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sts-client-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = ips.iter().map(|ip| format!("{ip} multi.test\n")).collect();
        std::fs::write(dir.join("hosts"), text).unwrap();
        dir
    }

    /// A listener on `ip:port` whose accept queue is full (backlog 0, one connection never
    /// accepted): the kernel drops every further SYN, so a connect to it neither succeeds nor
    /// fails. Returns the listener and the connections that fill it.
    fn syn_dropping_listener(ip: [u8; 4], port: u16) -> (rustix::fd::OwnedFd, Vec<std::net::TcpStream>) {
        use rustix::net::{AddressFamily, SocketType};
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        rustix::net::bind_v4(&fd, &std::net::SocketAddrV4::new(ip.into(), port)).unwrap();
        rustix::net::listen(&fd, 0).unwrap();
        let addr = SocketAddr::from((ip, port));
        let mut held = Vec::new();
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => held.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return (fd, held),
                Err(e) => panic!("filling the accept queue of {addr}: {e}"),
            }
        }
        panic!("the accept queue of {addr} never filled");
    }

    /// A name with two addresses, the first dropping SYNs (no answer at all): after the
    /// per-address share of the connect timeout (10 s / 2) the request goes to the second, well
    /// within the whole allowance.
    #[test]
    fn a_connect_that_times_out_moves_on_to_the_next_address() {
        let (addr, seen) = server();
        let (_dropper, _held) = syn_dropping_listener([127, 0, 0, 2], addr.port());
        let dir = hosts_dir("syn", &["127.0.0.2", "127.0.0.1"]);
        let mut poll = Poll::new().unwrap();
        let url = Url::parse(&format!("http://multi.test:{}/", addr.port())).unwrap();
        let mut c = HttpClient::new(url, None, Token(1)).unwrap();
        c.resolver =
            Some(Resolver::with_files("multi.test", addr.port(), Token(1), dir.join("none"), dir.join("hosts")));
        let t0 = Instant::now();
        c.send(poll.registry(), "POST", "/one", &[], b"hi", t0).unwrap();
        let o = until_outcome_within(&mut c, &mut poll, CONNECT_TIMEOUT);
        assert!(matches!(o, Outcome::Response { status: 202, .. }), "{o:?}");
        // The first address had its share, and only that.
        let took = t0.elapsed();
        assert!(took >= CONNECT_TIMEOUT / 2 - Duration::from_millis(100), "{took:?}");
        assert!(took < CONNECT_TIMEOUT / 2 + Duration::from_secs(2), "{took:?}");
        assert_eq!(c.preferred, Some(addr));
        assert_eq!(*seen.lock().unwrap(), ["POST /one HTTP/1.1"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A name with five addresses (2 s each for the TCP connect) whose first accepts at once but
    /// starts the TLS handshake only after 3 s: the handshake has the whole connect allowance
    /// from the TCP connect on, so the request is delivered there.
    #[test]
    fn a_slow_tls_handshake_gets_the_whole_connect_allowance() {
        let key = rcgen::generate_simple_self_signed(vec!["multi.test".to_string()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![key.cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into()),
                )
                .unwrap(),
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let delay = Duration::from_secs(3);
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(delay);
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), s);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.ends_with(b"\r\n\r\nhi") {
                match tls.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let _ = tls.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
            let _ = tls.flush();
            std::thread::sleep(Duration::from_secs(1));
        });
        let dir = hosts_dir("tls", &["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]);
        let mut poll = Poll::new().unwrap();
        let url = Url::parse(&format!("https://multi.test:{port}/")).unwrap();
        let tls = crate::transport::tls::client_config(true).unwrap();
        let mut c = HttpClient::new(url, Some(tls), Token(1)).unwrap();
        c.resolver = Some(Resolver::with_files("multi.test", port, Token(1), dir.join("none"), dir.join("hosts")));
        let t0 = Instant::now();
        c.send(poll.registry(), "POST", "/one", &[], b"hi", t0).unwrap();
        let o = until_outcome_within(&mut c, &mut poll, CONNECT_TIMEOUT);
        assert!(matches!(o, Outcome::Response { status: 202, .. }), "{o:?}");
        assert!(t0.elapsed() >= delay, "{:?}", t0.elapsed());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A name with two addresses, the first refusing connections: the request goes to the second,
    /// and the next connect starts with the one that worked.
    #[test]
    fn every_address_of_a_name_is_tried_in_turn() {
        let (addr, seen) = server();
        let dir = std::env::temp_dir().join(format!("sts-client-multi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.2 multi.test\n127.0.0.1 multi.test\n").unwrap();
        let mut poll = Poll::new().unwrap();
        let url = Url::parse(&format!("http://multi.test:{}/", addr.port())).unwrap();
        let mut c = HttpClient::new(url, None, Token(1)).unwrap();
        c.resolver = Some(Resolver::with_files("multi.test", addr.port(), Token(1), dir.join("none"), hosts));
        c.send(poll.registry(), "POST", "/one", &[], b"hi", Instant::now()).unwrap();
        assert!(matches!(until_outcome(&mut c, &mut poll), Outcome::Response { status: 202, .. }));
        assert_eq!(c.preferred, Some(addr));
        assert_eq!(*seen.lock().unwrap(), ["POST /one HTTP/1.1"]);
        // Every address refusing: one Connect failure naming the last one tried.
        let url = Url::parse("http://multi.test:9/").unwrap();
        let mut c = HttpClient::new(url, None, Token(2)).unwrap();
        let hosts = dir.join("hosts2");
        std::fs::write(&hosts, "127.0.0.2 multi.test\n127.0.0.3 multi.test\n").unwrap();
        c.resolver = Some(Resolver::with_files("multi.test", 9, Token(2), dir.join("none"), hosts));
        c.send(poll.registry(), "POST", "/x", &[], b"hi", Instant::now()).unwrap();
        match until_outcome(&mut c, &mut poll) {
            Outcome::Failed(f) => {
                assert_eq!(f.kind, FailureKind::Connect);
                assert!(f.detail.starts_with("127.0.0.3:9: "), "{f}");
            }
            o => panic!("{o:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
