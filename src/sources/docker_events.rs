//! The Docker Engine's container event stream: one `GET /events?filters={"type":["container"]}`
//! request held open on the Docker socket, read as the loop reports it readable (no polling:
//! while nothing happens, the agent does not wake for it). The chunked JSON body is parsed
//! incrementally (`parse::docker_events`), each event handed to the caller.
//!
//! When the stream ends or fails (Docker restarted, framing broken, the chunked body complete),
//! it is opened again after a backoff (1 s, doubling to 10 s) with `since=<newest event seen>`.
//! The backoff starts again from 1 s only once the stream proved healthy (a valid event handed
//! over, or [`HEALTHY_AFTER`] without a fault), not at a mere `200`: a daemon that answers and
//! hangs up at once is retried ever more slowly, and logged once per outage (then a summary
//! when it recovers), not at every attempt.
//!
//! Docker replays the events of its in-memory log (its last 256) from `since` on, so events
//! that happened while the agent was not connected still arrive. `since` is inclusive, so the
//! events at that very instant come again: each event's key (time, id, action) is remembered in
//! a ring of the last 256, and one seen before is not handed over twice. On the first
//! connection `since` is 60 s back, as the original's first check run reports the last minute.

use crate::parse::docker_events::{event, format_timestamp, Dechunker, Event, Line, LineFramer};
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `filters={"type":["container"]}`, URL-encoded.
const FILTER: &str = "%7B%22type%22%3A%5B%22container%22%5D%7D";
/// An event longer than this (Docker's are a few hundred bytes, more with many labels) is
/// dropped and counted; the buffer never holds more.
pub const MAX_EVENT: usize = 64 * 1024;
const MAX_HEAD: usize = 16 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Reads per readiness: a busy stream cannot hold the loop (the rest is read at once after).
const READS_PER_CALL: u32 = 64;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A stream open this long without a fault is healthy again (even without an event).
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// How long the daemon may take to answer the request (a starting daemon accepts connections
/// before it serves them).
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// The first connection's look-back, as the original's first run (now − 60 s).
const FIRST_LOOK_BACK_NS: i64 = 60_000_000_000;
/// Remembered event keys: Docker keeps its last 256 events for `since`, so a replay is never
/// longer.
const RECENT: usize = 256;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStreamStats {
    /// The stream is open and Docker answered 200.
    pub connected: bool,
    /// Container events handed over.
    pub received: u64,
    /// Events not handed over: too long, or not a valid event object.
    pub dropped: u64,
    /// Replayed events already handed over (the `since` boundary), not handed over again.
    pub duplicates: u64,
    /// Connections opened after the first.
    pub reconnects: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected; connect at `next_connect`.
    Idle,
    /// Writing the request, then reading the response head.
    Head,
    /// Reading events.
    Body,
}

/// Failed attempts since the stream was last healthy (logged once, summed up at the recovery).
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    failures: u32,
}

pub struct DockerEventStream {
    socket: PathBuf,
    token: Token,
    conn: Option<UnixStream>,
    phase: Phase,
    request: Vec<u8>,
    written: usize,
    head: Vec<u8>,
    read_buf: Vec<u8>,
    chunked: bool,
    dechunk: Dechunker,
    lines: LineFramer,
    next_connect: Option<Instant>,
    head_by: Option<Instant>,
    backoff: Duration,
    /// The newest event time seen (ns), for `since=`.
    newest_ns: Option<i64>,
    recent: Box<[u64; RECENT]>,
    recent_at: usize,
    connects: u64,
    errors_logged: u32,
    /// When the current body began (the head was accepted).
    body_since: Option<Instant>,
    outage: Option<Outage>,
    pub stats: EventStreamStats,
}

impl DockerEventStream {
    pub fn new(socket: PathBuf, token: Token, now: Instant) -> DockerEventStream {
        DockerEventStream {
            socket,
            token,
            conn: None,
            phase: Phase::Idle,
            request: Vec::with_capacity(256),
            written: 0,
            head: Vec::with_capacity(1024),
            read_buf: vec![0; READ_CHUNK],
            chunked: false,
            dechunk: Dechunker::default(),
            lines: LineFramer::new(MAX_EVENT),
            next_connect: Some(now),
            head_by: None,
            backoff: FIRST_BACKOFF,
            newest_ns: None,
            recent: Box::new([0; RECENT]),
            recent_at: 0,
            connects: 0,
            errors_logged: 0,
            body_since: None,
            outage: None,
            stats: EventStreamStats::default(),
        }
    }

    /// When [`Self::on_timeout`] must run: a (re)connection, or the response head's timeout,
    /// or (once, after an outage) the moment a quiet reopened stream counts as healthy. None
    /// while the stream is open and healthy, quiet or not (its readiness wakes the loop).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle => self.next_connect,
            Phase::Head => self.head_by,
            Phase::Body => self.outage.and(self.body_since).map(|t| t + HEALTHY_AFTER),
        }
    }

    /// `unix_ns`: the wall clock, for the first connection's `since`.
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant, unix_ns: i64, f: &mut dyn FnMut(&Event<'_>)) {
        match self.phase {
            Phase::Idle if self.next_connect.is_some_and(|t| t <= now) => self.connect(registry, now, unix_ns, f),
            Phase::Head if self.head_by.is_some_and(|t| t <= now) => {
                self.fail(registry, now, "no response to GET /events");
            }
            Phase::Body if self.deadline().is_some_and(|t| t <= now) => self.recovered(now),
            _ => {}
        }
    }

    /// Readiness of the socket: writes the request, reads the head, hands over events.
    pub fn on_ready(&mut self, registry: &Registry, now: Instant, f: &mut dyn FnMut(&Event<'_>)) {
        if self.conn.is_none() {
            return;
        }
        if self.written < self.request.len() {
            let conn = self.conn.as_mut().expect("checked");
            loop {
                match conn.write(&self.request[self.written..]) {
                    Ok(0) => return self.fail(registry, now, "the socket closed while writing"),
                    Ok(n) => {
                        self.written += n;
                        if self.written == self.request.len() {
                            // Sent: from now on only its readability matters.
                            let _ = registry.reregister(conn, self.token, Interest::READABLE);
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.fail(registry, now, &format!("write: {e}")),
                }
            }
        }
        for _ in 0..READS_PER_CALL {
            let conn = self.conn.as_mut().expect("open while reading");
            let n = match conn.read(&mut self.read_buf) {
                Ok(0) => return self.ended(registry, now),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(registry, now, &format!("read: {e}")),
            };
            let mut start = 0;
            if self.phase == Phase::Head {
                match self.take_head(n, now) {
                    Ok(Some(body_at)) => start = body_at,
                    Ok(None) => continue,
                    Err(why) => return self.fail(registry, now, &why),
                }
            }
            match self.body(start, n, f) {
                Ok(handed) => {
                    if handed {
                        self.recovered(now);
                    }
                    // The final chunk: Docker ended the body and may keep the connection open
                    // (nothing more will come on it).
                    if self.chunked && self.dechunk.done() {
                        return self.ended(registry, now);
                    }
                }
                // Framing broken: nothing after it can be trusted; catch up from a new stream.
                Err(e) => return self.fail(registry, now, e.0),
            }
        }
        // The budget ran out with data perhaps left: re-arming the edge-triggered registration
        // makes the next poll report the socket again at once if it is still readable, so the
        // rest is read after the other sources had their turn.
        if let Some(conn) = self.conn.as_mut() {
            let _ = registry.reregister(conn, self.token, Interest::READABLE);
        }
    }

    fn connect(&mut self, registry: &Registry, now: Instant, unix_ns: i64, f: &mut dyn FnMut(&Event<'_>)) {
        self.next_connect = None;
        let mut conn = match UnixStream::connect(&self.socket) {
            Ok(c) => c,
            Err(e) => return self.fail(registry, now, &format!("connect: {e}")),
        };
        if let Err(e) = registry.register(&mut conn, self.token, Interest::READABLE | Interest::WRITABLE) {
            return self.fail(registry, now, &format!("register: {e}"));
        }
        if self.connects > 0 {
            self.stats.reconnects += 1;
        }
        self.connects += 1;
        let since = self.newest_ns.unwrap_or(unix_ns - FIRST_LOOK_BACK_NS);
        let mut ts = [0; 32];
        let ts = format_timestamp(since, &mut ts);
        self.request.clear();
        let _ = write!(
            self.request,
            "GET /events?filters={FILTER}&since={ts} HTTP/1.1\r\nHost: docker\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        debug!("docker events: GET /events since {ts}");
        self.written = 0;
        self.body_since = None;
        self.head.clear();
        self.dechunk = Dechunker::default();
        self.lines.reset();
        self.conn = Some(conn);
        self.phase = Phase::Head;
        self.head_by = Some(now + HEAD_TIMEOUT);
        self.on_ready(registry, now, f);
    }

    /// Adds the `n` bytes read to the head; the offset in `read_buf` where the body starts once
    /// the head is complete (and accepted).
    fn take_head(&mut self, n: usize, now: Instant) -> Result<Option<usize>, String> {
        let before = self.head.len();
        self.head.extend_from_slice(&self.read_buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.head) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.head.len() < MAX_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => return Err("response head too long".into()),
            Err(e) => return Err(format!("bad response head: {e}")),
        };
        if resp.code != Some(200) {
            return Err(format!("GET /events: HTTP {}", resp.code.unwrap_or(0)));
        }
        self.chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && std::str::from_utf8(h.value).is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
        self.phase = Phase::Body;
        self.head_by = None;
        // Not healthy yet (the backoff stands): see `recovered`.
        self.body_since = Some(now);
        self.stats.connected = true;
        debug!("docker events: streaming from {}", self.socket.display());
        Ok(Some(len - before))
    }

    /// Hands over the events in `read_buf[start..n]`; whether it handed over (or recognised as
    /// already handed over) a valid event.
    fn body(
        &mut self,
        start: usize,
        n: usize,
        f: &mut dyn FnMut(&Event<'_>),
    ) -> Result<bool, crate::parse::docker_events::FramingError> {
        let Self { read_buf, chunked, dechunk, lines, recent, recent_at, newest_ns, stats, errors_logged, .. } = self;
        let mut valid = false;
        let mut on_line = |l: Line<'_>| {
            let line = match l {
                Line::Whole(w) => w,
                Line::TooLong(len) => {
                    stats.dropped += 1;
                    log_dropped(errors_logged, &format!("an event of {len} bytes (more than {MAX_EVENT})"));
                    return;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            match event(line) {
                Ok(e) => {
                    valid = true;
                    let key = key(&e);
                    if recent.contains(&key) {
                        stats.duplicates += 1;
                        return;
                    }
                    recent[*recent_at] = key;
                    *recent_at = (*recent_at + 1) % RECENT;
                    let ns = e.nanos();
                    if newest_ns.is_none_or(|t| ns > t) {
                        *newest_ns = Some(ns);
                    }
                    stats.received += 1;
                    f(&e);
                }
                Err(err) => {
                    stats.dropped += 1;
                    log_dropped(errors_logged, &format!("a malformed event ({err})"));
                }
            }
        };
        let data = &read_buf[start..n];
        let fed = if *chunked {
            dechunk.feed(data, |d| lines.push(d, &mut on_line))
        } else {
            lines.push(data, &mut on_line);
            Ok(())
        };
        fed.map(|()| valid)
    }

    /// The daemon ended the stream (it stopped, or restarted, or ended the body): reconnect,
    /// catching up — soon after a healthy stream, later after a string of short-lived ones.
    fn ended(&mut self, registry: &Registry, now: Instant) {
        if self.phase == Phase::Body {
            self.fail(registry, now, "the stream ended");
        } else {
            self.fail(registry, now, "the socket closed before a response");
        }
    }

    /// The stream proved healthy: the backoff starts again from the first step, and the outage
    /// (if any) is summed up.
    fn recovered(&mut self, now: Instant) {
        self.backoff = FIRST_BACKOFF;
        if let Some(o) = self.outage.take() {
            info!(
                "docker events: streaming from {} again, after {} failed attempt(s) over {}s",
                self.socket.display(),
                o.failures,
                now.saturating_duration_since(o.since).as_secs()
            );
        }
    }

    fn fail(&mut self, registry: &Registry, now: Instant, why: &str) {
        // A stream that ran long enough without a fault was healthy: this is a new outage.
        if self.body_since.is_some_and(|t| now.saturating_duration_since(t) >= HEALTHY_AFTER) {
            self.recovered(now);
        }
        match &mut self.outage {
            None => {
                let socket = self.socket.display();
                if self.stats.received > 0 || self.connects > 1 {
                    warn!("docker events: the stream from {socket} broke ({why}); reconnecting with backoff");
                } else {
                    info!("docker events: {socket} unavailable ({why}); retrying with backoff");
                }
                self.outage = Some(Outage { since: now, failures: 1 });
            }
            Some(o) => {
                o.failures += 1;
                debug!("docker events: {why} (attempt {} of this outage)", o.failures);
            }
        }
        self.close(registry);
        self.next_connect = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Closes the stream (the agent stops; nothing is reconnected).
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut c) = self.conn.take() {
            let _ = registry.deregister(&mut c);
        }
        self.phase = Phase::Idle;
        self.head_by = None;
        self.body_since = None;
        self.stats.connected = false;
    }
}

/// The first ten drops are warnings; later ones are counted (in `/status`) and logged at debug.
fn log_dropped(logged: &mut u32, what: &str) {
    if *logged < 10 {
        *logged += 1;
        warn!("docker events: dropped {what}");
    } else {
        debug!("docker events: dropped {what}");
    }
}

/// An event's identity for de-duplication: its time, container and action (FNV-1a).
fn key(e: &Event<'_>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |b: &[u8]| {
        for &c in b {
            h = (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    };
    add(&e.nanos().to_le_bytes());
    add(e.id.raw());
    add(e.action.raw());
    add(e.kind.raw());
    // 0 marks an empty slot of the ring.
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn line(id: &str, action: &str, ns: i64) -> String {
        format!(
            r#"{{"Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"image":"i","name":"n"}}}},"time":{},"timeNano":{ns}}}"#,
            ns / 1_000_000_000
        )
    }

    fn chunk(s: &str) -> String {
        format!("{:x}\r\n{s}\n\r\n", s.len() + 1)
    }

    /// A stand-in daemon on a Unix socket: each connection reads the request, answers with
    /// `reply`, and is closed when `close` says so. Drives the source through a real mio poll.
    #[test]
    fn reconnects_with_since_and_hands_over_each_event_once() {
        let dir = std::env::temp_dir().join(format!("sts-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let t0 = Instant::now();
        let mut s = DockerEventStream::new(path.clone(), Token(3), t0);
        let mut got: Vec<(String, i64)> = Vec::new();
        let mut take = |e: &Event<'_>| got.push((String::from_utf8_lossy(e.action.raw()).into_owned(), e.nanos()));
        let unix_ns = 1_700_000_100_000_000_000;
        s.on_timeout(poll.registry(), t0, unix_ns, &mut take);
        let (mut peer, _) = listener.accept().unwrap();
        let mut req = [0; 1024];
        let n = std::io::Read::read(&mut peer, &mut req).unwrap();
        let req = String::from_utf8_lossy(&req[..n]).into_owned();
        assert!(
            req.starts_with(&format!("GET /events?filters={FILTER}&since=1700000040.000000000 HTTP/1.1\r\n")),
            "{req}"
        );
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let a = line("c1", "start", 1_700_000_050_000_000_001);
        let b = line("c1", "die", 1_700_000_051_000_000_002);
        // The second event split mid-object across two writes.
        let first = format!("{head}{}{}", chunk(&a), &chunk(&b)[..20]);
        std::io::Write::write_all(&mut peer, first.as_bytes()).unwrap();
        let mut pump = |poll: &mut mio::Poll, s: &mut DockerEventStream, take: &mut dyn FnMut(&Event<'_>)| {
            poll.poll(&mut events, Some(Duration::from_millis(200))).unwrap();
            s.on_ready(poll.registry(), t0, take);
        };
        pump(&mut poll, &mut s, &mut take);
        std::io::Write::write_all(&mut peer, &chunk(&b).as_bytes()[20..]).unwrap();
        pump(&mut poll, &mut s, &mut take);
        assert!(s.stats.connected);
        assert_eq!(s.deadline(), None, "no wake-up while the stream is quiet");
        // The daemon restarts: the stream ends.
        drop(peer);
        pump(&mut poll, &mut s, &mut take);
        assert!(!s.stats.connected);
        let at = s.deadline().expect("a reconnection");
        s.on_timeout(poll.registry(), at, unix_ns, &mut take);
        let (mut peer, _) = listener.accept().unwrap();
        let mut req = [0; 1024];
        let n = std::io::Read::read(&mut peer, &mut req).unwrap();
        let req = String::from_utf8_lossy(&req[..n]).into_owned();
        // `since` is the newest event seen (`die`), to the nanosecond, not the first look-back.
        assert!(
            req.starts_with(&format!("GET /events?filters={FILTER}&since=1700000051.000000002 HTTP/1.1\r\n")),
            "{req}"
        );
        // It replays from `since` = the newest seen (inclusive): `die` again, then a new one.
        let c = line("c2", "create", 1_700_000_052_000_000_000);
        let replay = format!("{head}{}{}", chunk(&b), chunk(&c));
        std::io::Write::write_all(&mut peer, replay.as_bytes()).unwrap();
        pump(&mut poll, &mut s, &mut take);
        assert_eq!(
            got,
            [
                ("start".to_string(), 1_700_000_050_000_000_001),
                ("die".to_string(), 1_700_000_051_000_000_002),
                ("create".to_string(), 1_700_000_052_000_000_000)
            ]
        );
        assert_eq!((s.stats.received, s.stats.duplicates, s.stats.reconnects), (3, 1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stand-in daemon's socket in a directory of the test's own (removed on drop).
    struct StandIn {
        dir: PathBuf,
        listener: UnixListener,
    }

    impl StandIn {
        fn new(what: &str) -> StandIn {
            let dir = std::env::temp_dir().join(format!("sts-events-{what}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("docker.sock");
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            StandIn { dir, listener }
        }

        fn path(&self) -> PathBuf {
            self.dir.join("docker.sock")
        }

        /// Accepts the agent's connection and reads its request.
        fn accept(&self) -> (std::os::unix::net::UnixStream, String) {
            let (mut peer, _) = self.listener.accept().unwrap();
            let mut req = [0; 1024];
            let n = std::io::Read::read(&mut peer, &mut req).unwrap();
            (peer, String::from_utf8_lossy(&req[..n]).into_owned())
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// Waits for the socket's readiness and lets the source read, at the instant `now`.
    fn pump(poll: &mut mio::Poll, s: &mut DockerEventStream, now: Instant, f: &mut dyn FnMut(&Event<'_>)) {
        let mut events = mio::Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_millis(200))).unwrap();
        s.on_ready(poll.registry(), now, f);
    }

    #[test]
    fn a_body_ended_by_its_final_chunk_reconnects_though_the_connection_stays_open() {
        let d = StandIn::new("final");
        let mut poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut s = DockerEventStream::new(d.path(), Token(3), t0);
        let mut n = 0;
        let mut take = |_: &Event<'_>| n += 1;
        s.on_timeout(poll.registry(), t0, 1_700_000_100_000_000_000, &mut take);
        let (mut peer, req) = d.accept();
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        let body = format!("{HEAD}{}0\r\n\r\n", chunk(&line("c1", "start", 1_700_000_050_000_000_001)));
        std::io::Write::write_all(&mut peer, body.as_bytes()).unwrap();
        pump(&mut poll, &mut s, t0, &mut take);
        // `peer` is still open: only the final chunk says the stream is over.
        assert!(!s.stats.connected, "the ended body was noticed");
        assert!(s.deadline().is_some_and(|t| t > t0), "a reconnection is scheduled");
        let at = s.deadline().unwrap();
        s.on_timeout(poll.registry(), at, 0, &mut take);
        let (_peer2, req) = d.accept();
        assert!(req.contains("&since=1700000050.000000001 "), "{req}");
        drop(peer);
        assert_eq!(n, 1);
    }

    #[test]
    fn a_stream_that_answers_and_hangs_up_is_retried_ever_more_slowly_until_it_delivers() {
        let d = StandIn::new("flaky");
        let mut poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut s = DockerEventStream::new(d.path(), Token(3), t0);
        let mut n = 0;
        let mut take = |_: &Event<'_>| n += 1;
        let mut at = t0;
        let mut delays = Vec::new();
        for _ in 0..5 {
            s.on_timeout(poll.registry(), at, 1_700_000_100_000_000_000, &mut take);
            let (mut peer, _) = d.accept();
            // 200, then the connection closes at once.
            std::io::Write::write_all(&mut peer, HEAD.as_bytes()).unwrap();
            drop(peer);
            pump(&mut poll, &mut s, at, &mut take);
            assert!(!s.stats.connected);
            let next = s.deadline().expect("a reconnection");
            delays.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(delays, [1, 2, 4, 8, 10]);
        // A stream that delivers an event is healthy: the next break is retried after 1 s again.
        s.on_timeout(poll.registry(), at, 0, &mut take);
        let (mut peer, _) = d.accept();
        let body = format!("{HEAD}{}", chunk(&line("c1", "start", 1_700_000_050_000_000_001)));
        std::io::Write::write_all(&mut peer, body.as_bytes()).unwrap();
        pump(&mut poll, &mut s, at, &mut take);
        assert!(s.stats.connected);
        assert_eq!(s.deadline(), None, "healthy: no wake-up while quiet");
        drop(peer);
        pump(&mut poll, &mut s, at, &mut take);
        assert_eq!(s.deadline().map(|t| (t - at).as_secs()), Some(1));
        assert_eq!((n, s.stats.reconnects), (1, 5));
    }

    #[test]
    fn a_quiet_reopened_stream_is_healthy_after_a_while_without_an_event() {
        let d = StandIn::new("quiet");
        let mut poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut s = DockerEventStream::new(d.path(), Token(3), t0);
        let mut take = |_: &Event<'_>| {};
        s.on_timeout(poll.registry(), t0, 0, &mut take);
        let (peer, _) = d.accept();
        drop(peer);
        pump(&mut poll, &mut s, t0, &mut take);
        let at = s.deadline().unwrap();
        s.on_timeout(poll.registry(), at, 0, &mut take);
        let (mut peer, _) = d.accept();
        std::io::Write::write_all(&mut peer, HEAD.as_bytes()).unwrap();
        pump(&mut poll, &mut s, at, &mut take);
        assert!(s.stats.connected);
        // One wake-up to close the outage, then none.
        assert_eq!(s.deadline(), Some(at + HEALTHY_AFTER));
        s.on_timeout(poll.registry(), at + HEALTHY_AFTER, 0, &mut take);
        assert_eq!(s.deadline(), None);
        assert!(s.stats.connected);
        assert_eq!(s.backoff, FIRST_BACKOFF);
    }

    #[test]
    fn a_broken_frame_reconnects_and_a_bad_event_is_counted() {
        let dir = std::env::temp_dir().join(format!("sts-events-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let t0 = Instant::now();
        let mut s = DockerEventStream::new(path.clone(), Token(3), t0);
        let mut n = 0;
        let mut take = |_: &Event<'_>| n += 1;
        s.on_timeout(poll.registry(), t0, 0, &mut take);
        let (mut peer, _) = listener.accept().unwrap();
        let _ = std::io::Read::read(&mut peer, &mut [0; 1024][..]).unwrap();
        let body = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}{}zz\r\n",
            chunk("{not json"),
            chunk(&line("c", "start", 5))
        );
        std::io::Write::write_all(&mut peer, body.as_bytes()).unwrap();
        poll.poll(&mut events, Some(Duration::from_millis(200))).unwrap();
        s.on_ready(poll.registry(), t0, &mut take);
        assert_eq!((s.stats.dropped, s.stats.received, s.stats.connected), (1, 1, false));
        assert!(s.deadline().is_some_and(|t| t > t0), "reconnects after a backoff, not at once");
        assert_eq!(n, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
