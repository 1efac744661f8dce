//! Name resolution that never blocks the loop: a stub resolver for the one host name of an
//! [`super::client::HttpClient`], on non-blocking UDP sockets registered under the client's own
//! token, so the client's event dispatch reaches it and its deadline is folded into the client's.
//!
//! - IP literals and `localhost` (and `*.localhost`, RFC 6761) never touch DNS.
//! - `/etc/hosts` first, then DNS, as nsswitch's `hosts: files dns`.
//! - `/etc/resolv.conf`: up to three nameservers, `options timeout:/attempts:/ndots:`, `search`.
//!   Both files are read at construction (before the loop) and re-read when their modification time
//!   (or size, or inode) changes, checked at most every [`RECHECK_EVERY`] and only when a name is
//!   about to be looked up.
//! - A and AAAA are asked in parallel, each query with a random id from a fresh random source port;
//!   an answer counts only from the server the query went to, with the query's id and question.
//!   A query that times out (or gets SERVFAIL/REFUSED) is sent again to the next nameserver,
//!   `attempts` rounds over every nameserver, as glibc does.
//! - Answers are cached for their TTL (at least [`MIN_TTL`], at most [`MAX_TTL`]). An expired answer
//!   is still used for the connect that finds it expired while a refresh runs alongside, and it is
//!   kept for as long as lookups fail: the last good addresses outlive a resolver that is down.
//! - IPv4 addresses come first, then IPv6 (most ECS hosts have no IPv6 route); the client tries
//!   every address in turn.
//! - A truncated (TC) answer is used as far as it goes; there is no TCP fallback (a receiver name
//!   with more addresses than fit 512 bytes is not a case the agent needs).

use crate::parse::dns::{self, MAX_NAME, MAX_QUERY, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use smallvec::SmallVec;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
pub const HOSTS: &str = "/etc/hosts";
/// The files' metadata is looked at no more often than this.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Addresses kept per family, and per name.
const PER_FAMILY: usize = 8;
pub const MAX_ADDRS: usize = 2 * PER_FAMILY;
/// A UDP answer without EDNS is at most 512 bytes; room for a server that ignores that.
const RX_BUF: usize = 1500;
/// Datagrams read per readiness event (one busy or hostile sender cannot hold the loop).
const RX_BUDGET: usize = 16;
/// Files larger than this are read only this far.
const MAX_FILE: u64 = 1 << 20;

pub type Addrs = SmallVec<[SocketAddr; MAX_ADDRS]>;

/// resolv.conf, with glibc's defaults for what it does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub nameservers: SmallVec<[SocketAddr; dns::MAX_NAMESERVERS]>,
    pub timeout: Duration,
    pub attempts: u32,
    pub ndots: u32,
    pub search: Vec<String>,
}

impl DnsConfig {
    pub fn from_resolv_conf(buf: &[u8]) -> DnsConfig {
        let c = dns::resolv_conf(buf);
        let mut nameservers: SmallVec<[SocketAddr; dns::MAX_NAMESERVERS]> =
            c.nameservers().map(|ip| SocketAddr::new(ip, 53)).collect();
        if nameservers.is_empty() {
            // resolv.conf(5): no nameserver line means the local one.
            nameservers.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        DnsConfig {
            nameservers,
            timeout: Duration::from_secs(u64::from(c.timeout_s.unwrap_or(5))),
            attempts: c.attempts.unwrap_or(2),
            ndots: c.ndots.unwrap_or(1),
            search: c.search().iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect(),
        }
    }
}

/// Where the two files are, and what they looked like when last read.
struct Files {
    resolv: PathBuf,
    hosts: PathBuf,
    /// (mtime, len, inode) of each; `None` when missing.
    seen: [Option<(std::time::SystemTime, u64, u64)>; 2],
    checked_at: Option<Instant>,
}

fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn read_bounded(path: &std::path::Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_FILE).read_to_end(&mut buf);
    }
    buf
}

/// One query (A or AAAA) of the lookup in flight.
#[derive(Debug, Clone, Copy)]
struct Query {
    qtype: u16,
    id: u16,
    /// The nameserver it was sent to last, and how many sends so far.
    server: SocketAddr,
    sends: u32,
    /// `None` once answered (or given up).
    deadline: Option<Instant>,
    outcome: QueryOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryOutcome {
    Waiting,
    /// NOERROR: this many addresses (maybe none), valid this long.
    Answer {
        count: usize,
        ttl: u32,
    },
    NoSuchName,
    /// Every send timed out or was refused; the last rcode (if any answer came).
    Failed {
        rcode: Option<u8>,
    },
}

struct Lookup {
    /// Index into `candidates`.
    candidate: usize,
    queries: [Query; 2],
    v4: [IpAddr; PER_FAMILY],
    v6: [IpAddr; PER_FAMILY],
}

pub struct Resolver {
    host: String,
    port: u16,
    token: Token,
    /// An IP literal or localhost: `cache` holds its addresses for good.
    fixed: bool,
    files: Files,
    config: DnsConfig,
    /// The names to ask for, in wire form, in order (search domains and ndots applied).
    candidates: Vec<Vec<u8>>,
    /// What /etc/hosts says for `host` (empty: ask DNS).
    hosts: Addrs,
    /// The last good DNS answer and when it expires.
    cache: Addrs,
    expires: Option<Instant>,
    /// Bumped whenever `cache` changes.
    generation: u64,
    lookup: Option<Lookup>,
    sock4: Option<UdpSocket>,
    sock6: Option<UdpSocket>,
    rx: Vec<u8>,
    /// The read budget ran out with datagrams maybe still queued: run again at once.
    rx_more: Option<Instant>,
    rng: &'static dyn rustls::crypto::SecureRandom,
    /// A failure was logged and no success since.
    down_logged: bool,
}

/// `host` is an IP literal or a name that never goes to DNS: its addresses.
fn fixed(host: &str, port: u16) -> Option<Addrs> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(std::iter::once(SocketAddr::new(ip, port)).collect());
    }
    let h = host.strip_suffix('.').unwrap_or(host);
    let local = h.eq_ignore_ascii_case("localhost")
        || h.len() > 10 && h.get(h.len() - 10..).is_some_and(|t| t.eq_ignore_ascii_case(".localhost"));
    local.then(|| {
        [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()
    })
}

impl Resolver {
    /// A resolver for `host` reading the system's `/etc/resolv.conf` and `/etc/hosts` now.
    pub fn new(host: &str, port: u16, token: Token) -> Resolver {
        Resolver::with_files(host, port, token, PathBuf::from(RESOLV_CONF), PathBuf::from(HOSTS))
    }

    /// The same with other files (tests).
    pub fn with_files(host: &str, port: u16, token: Token, resolv: PathBuf, hosts: PathBuf) -> Resolver {
        let literal = fixed(host, port);
        let mut r = Resolver {
            host: host.to_string(),
            port,
            token,
            fixed: literal.is_some(),
            files: Files { resolv, hosts, seen: [None, None], checked_at: None },
            config: DnsConfig::from_resolv_conf(b""),
            candidates: Vec::new(),
            hosts: Addrs::new(),
            cache: literal.unwrap_or_default(),
            expires: None,
            generation: 0,
            lookup: None,
            sock4: None,
            sock6: None,
            rx: Vec::new(),
            rx_more: None,
            rng: rustls::crypto::ring::default_provider().secure_random,
            down_logged: false,
        };
        if !r.fixed {
            r.rx = vec![0; RX_BUF];
            r.reload(None, true);
        }
        r
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Changes whenever the addresses [`Self::addresses`] gives change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Re-reads the files if they changed (looked at no more than every [`RECHECK_EVERY`]).
    fn reload(&mut self, now: Option<Instant>, force: bool) {
        if let (Some(now), Some(at)) = (now, self.files.checked_at) {
            if !force && now.saturating_duration_since(at) < RECHECK_EVERY {
                return;
            }
        }
        self.files.checked_at = now.or(self.files.checked_at);
        let stamps = [stamp(&self.files.resolv), stamp(&self.files.hosts)];
        if force || stamps[0] != self.files.seen[0] {
            let config = DnsConfig::from_resolv_conf(&read_bounded(&self.files.resolv));
            if !force {
                info!("{}: {} changed; nameservers {:?}", self.host, self.files.resolv.display(), config.nameservers);
            }
            self.candidates = candidates(&self.host, &config);
            self.config = config;
        }
        if force || stamps[1] != self.files.seen[1] {
            let buf = read_bounded(&self.files.hosts);
            let mut ips = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); MAX_ADDRS];
            let n = dns::hosts_lookup(&buf, self.host.as_bytes(), &mut ips);
            let mut hosts: Addrs = ips.iter().take(n).map(|&ip| SocketAddr::new(ip, self.port)).collect();
            // IPv4 first, as for DNS answers.
            hosts.sort_by_key(|a| a.is_ipv6());
            if hosts != self.hosts {
                self.hosts = hosts;
                self.generation += 1;
            }
        }
        self.files.seen = stamps;
    }

    /// The addresses to connect to now: `Ok(Some(..))` (fresh, or the last good ones while a refresh
    /// runs); `Ok(None)` while the first lookup is under way (the client waits for
    /// [`Self::on_event`] or [`Self::on_timeout`] to report it done); `Err` if no lookup can start.
    pub fn addresses(&mut self, registry: &Registry, now: Instant) -> Result<Option<&[SocketAddr]>, String> {
        if self.fixed {
            return Ok(Some(&self.cache));
        }
        if self.lookup.is_none() {
            self.reload(Some(now), false);
        }
        if !self.hosts.is_empty() {
            return Ok(Some(&self.hosts));
        }
        let fresh = self.expires.is_some_and(|t| now < t);
        if !fresh && self.lookup.is_none() {
            if let Err(e) = self.start(registry, now) {
                if self.cache.is_empty() {
                    return Err(e);
                }
                self.log_down(&e);
            }
        }
        if self.cache.is_empty() {
            return Ok(None);
        }
        Ok(Some(&self.cache))
    }

    /// Whether a lookup is in flight.
    pub fn busy(&self) -> bool {
        self.lookup.is_some()
    }

    /// When [`Self::on_timeout`] must run: the earliest query timeout (always ahead of `now` once
    /// `on_timeout` has run).
    pub fn deadline(&self) -> Option<Instant> {
        let l = self.lookup.as_ref()?;
        l.queries.iter().filter_map(|q| q.deadline).chain(self.rx_more).min()
    }

    fn start(&mut self, registry: &Registry, now: Instant) -> Result<(), String> {
        if self.candidates.is_empty() {
            return Err(format!("{}: not a valid host name", self.host));
        }
        let Some(&first) = self.config.nameservers.first() else {
            return Err(format!("{}: no nameserver", self.host));
        };
        let blank =
            Query { qtype: TYPE_A, id: 0, server: first, sends: 0, deadline: None, outcome: QueryOutcome::Waiting };
        self.lookup = Some(Lookup {
            candidate: 0,
            queries: [blank, Query { qtype: TYPE_AAAA, ..blank }],
            v4: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); PER_FAMILY],
            v6: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); PER_FAMILY],
        });
        for i in 0..2 {
            self.send(registry, i, now);
        }
        Ok(())
    }

    /// Sends query `i` (again) to its next nameserver; gives it up after `attempts` rounds.
    fn send(&mut self, registry: &Registry, i: usize, now: Instant) {
        let max = self.config.attempts.max(1) * self.config.nameservers.len().max(1) as u32;
        loop {
            let Some(l) = self.lookup.as_mut() else { return };
            let q = &mut l.queries[i];
            if q.sends >= max {
                q.deadline = None;
                if q.outcome == QueryOutcome::Waiting {
                    q.outcome = QueryOutcome::Failed { rcode: None };
                }
                return;
            }
            let ns = &self.config.nameservers;
            let Some(&server) = ns.get(q.sends as usize % ns.len().max(1)) else { return };
            q.sends += 1;
            q.server = server;
            q.outcome = QueryOutcome::Waiting;
            q.deadline = Some(now + self.config.timeout);
            let mut id = [0u8; 2];
            let _ = self.rng.fill(&mut id);
            q.id = u16::from_ne_bytes(id);
            let qtype = q.qtype;
            let id = q.id;
            let Some(qname) = self.candidates.get(l.candidate) else { return };
            let mut msg = [0u8; MAX_QUERY];
            let Some(n) = dns::write_query(&mut msg, id, qname, qtype) else { return };
            match self.socket(registry, server.is_ipv6()).and_then(|s| s.send_to(msg.get(..n).unwrap_or(&[]), server)) {
                Ok(_) => return,
                // No route, no socket: this server cannot be asked; the next one at once.
                Err(e) => debug!("{}: DNS query to {server}: {e}", self.host),
            }
        }
    }

    /// The UDP socket for one address family, opened (on a random port) and registered on first use.
    fn socket(&mut self, registry: &Registry, v6: bool) -> io::Result<&UdpSocket> {
        let slot = if v6 { &mut self.sock6 } else { &mut self.sock4 };
        if slot.is_none() {
            let any = if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
            let mut s = UdpSocket::bind(SocketAddr::new(any, 0))?;
            registry.register(&mut s, self.token, Interest::READABLE)?;
            *slot = Some(s);
        }
        slot.as_ref().ok_or_else(|| io::Error::other("no socket"))
    }

    fn close_sockets(&mut self, registry: &Registry) {
        self.rx_more = None;
        for s in [self.sock4.take(), self.sock6.take()].into_iter().flatten() {
            let mut s = s;
            let _ = registry.deregister(&mut s);
        }
    }

    /// Drops the lookup in flight and its sockets (shutdown).
    pub fn cancel(&mut self, registry: &Registry) {
        self.lookup = None;
        self.rx_more = None;
        self.close_sockets(registry);
    }

    /// Reads what arrived. `Some(result)` when the lookup in flight ended with it.
    pub fn on_event(&mut self, registry: &Registry, now: Instant) -> Option<Result<(), String>> {
        self.lookup.as_ref()?;
        self.read(registry, now);
        self.settle(registry, now)
    }

    /// Reads at most [`RX_BUDGET`] datagrams per socket; if more may wait, asks to run again now.
    fn read(&mut self, registry: &Registry, now: Instant) {
        self.rx_more = None;
        for v6 in [false, true] {
            let mut budget = RX_BUDGET;
            loop {
                let sock = if v6 { self.sock6.as_ref() } else { self.sock4.as_ref() };
                let Some(sock) = sock else { break };
                if budget == 0 {
                    self.rx_more = Some(now);
                    break;
                }
                budget -= 1;
                let (n, from) = match sock.recv_from(&mut self.rx) {
                    Ok(x) => x,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // An ICMP error (port unreachable) surfaces here: the query's timeout moves on.
                    Err(e) => {
                        debug!("{}: DNS socket: {e}", self.host);
                        continue;
                    }
                };
                self.on_datagram(registry, n, from, now);
                if self.lookup.is_none() {
                    return;
                }
            }
        }
    }

    fn on_datagram(&mut self, registry: &Registry, n: usize, from: SocketAddr, now: Instant) {
        let Some(l) = self.lookup.as_mut() else { return };
        let Some(qname) = self.candidates.get(l.candidate) else { return };
        let msg = self.rx.get(..n).unwrap_or(&[]);
        let mut answered = None;
        for (i, q) in l.queries.iter_mut().enumerate() {
            if q.outcome != QueryOutcome::Waiting || q.server != from {
                continue;
            }
            let out = if q.qtype == TYPE_A { &mut l.v4 } else { &mut l.v6 };
            let r = match dns::read_response(msg, q.id, qname, q.qtype, out) {
                Ok(r) => r,
                Err(dns::DnsError::WrongId) => continue,
                Err(e) => {
                    debug!("{}: ignored a DNS message from {from}: {e}", self.host);
                    continue;
                }
            };
            q.deadline = None;
            q.outcome = match r.rcode {
                RCODE_NOERROR => QueryOutcome::Answer { count: r.count, ttl: r.ttl },
                RCODE_NXDOMAIN => QueryOutcome::NoSuchName,
                rcode => QueryOutcome::Failed { rcode: Some(rcode) },
            };
            answered = Some((i, q.outcome));
            break;
        }
        match answered {
            Some((i, QueryOutcome::Failed { rcode: Some(rcode) })) => {
                // Another server may know: the next one now (the outcome stays Failed if none is left).
                debug!("{}: {from} answered rcode {rcode}; asking the next nameserver", self.host);
                self.send(registry, i, now);
            }
            Some((i, QueryOutcome::Answer { count, .. })) if count > 0 => {
                // One family has addresses: the other gets no more retries than the one in flight.
                if let Some(other) = self.lookup.as_mut().and_then(|l| l.queries.get_mut(1 - i)) {
                    other.sends = u32::MAX;
                }
            }
            _ => {}
        }
    }

    /// Resends what timed out. `Some(result)` when the lookup in flight ended with it.
    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) -> Option<Result<(), String>> {
        self.lookup.as_ref()?;
        if self.rx_more.is_some() {
            self.read(registry, now);
        }
        let l = self.lookup.as_ref()?;
        let due: SmallVec<[usize; 2]> = (0..2).filter(|&i| l.queries[i].deadline.is_some_and(|d| now >= d)).collect();
        for i in due {
            self.send(registry, i, now);
        }
        self.settle(registry, now)
    }

    /// Once both queries are done: the answer, the next candidate name, or the failure.
    fn settle(&mut self, registry: &Registry, now: Instant) -> Option<Result<(), String>> {
        let l = self.lookup.as_mut()?;
        if l.queries.iter().any(|q| q.outcome == QueryOutcome::Waiting) {
            return None;
        }
        let mut addrs = Addrs::new();
        let mut ttl = u32::MAX;
        for (q, ips) in l.queries.iter().zip([&l.v4, &l.v6]) {
            if let QueryOutcome::Answer { count, ttl: t } = q.outcome {
                addrs.extend(ips.iter().take(count).map(|&ip| SocketAddr::new(ip, self.port)));
                if count > 0 {
                    ttl = ttl.min(t);
                }
            }
        }
        if !addrs.is_empty() {
            self.lookup = None;
            self.close_sockets(registry);
            let ttl = Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL);
            if self.down_logged {
                info!("{}: the resolver answers again", self.host);
                self.down_logged = false;
            }
            if addrs != self.cache {
                debug!("{}: resolved to {:?} for {}s", self.host, addrs.as_slice(), ttl.as_secs());
                self.cache = addrs;
                self.generation += 1;
            }
            self.expires = Some(now + ttl);
            return Some(Ok(()));
        }
        // The name does not exist (or has no address) as asked: the next search candidate.
        let absent =
            l.queries.iter().all(|q| matches!(q.outcome, QueryOutcome::NoSuchName | QueryOutcome::Answer { .. }));
        if absent && l.candidate + 1 < self.candidates.len() {
            l.candidate += 1;
            for q in &mut l.queries {
                q.sends = 0;
                q.outcome = QueryOutcome::Waiting;
            }
            for i in 0..2 {
                self.send(registry, i, now);
            }
            return self.settle(registry, now);
        }
        let why = if absent {
            if l.queries.iter().any(|q| q.outcome == QueryOutcome::NoSuchName) {
                "no such name (NXDOMAIN)".to_string()
            } else {
                "no A or AAAA record".to_string()
            }
        } else {
            let rcode = l.queries.iter().find_map(|q| match q.outcome {
                QueryOutcome::Failed { rcode: Some(r) } => Some(r),
                _ => None,
            });
            let servers: Vec<String> = self.config.nameservers.iter().map(ToString::to_string).collect();
            match rcode {
                Some(r) => format!("the nameservers ({}) answered rcode {r}", servers.join(", ")),
                None => format!(
                    "no answer from {} ({:?} timeout, {} attempts)",
                    servers.join(", "),
                    self.config.timeout,
                    self.config.attempts
                ),
            }
        };
        self.lookup = None;
        self.close_sockets(registry);
        let why = format!("{}: {why}", self.host);
        if !self.cache.is_empty() {
            self.log_down(&why);
        }
        Some(Err(why))
    }

    fn log_down(&mut self, why: &str) {
        if !self.down_logged {
            warn!("{why}; keeping the last good addresses {:?}", self.cache.as_slice());
            self.down_logged = true;
        }
    }
}

/// The names to ask for, in wire form: resolv.conf(5)'s search rule (a name with at least `ndots`
/// dots is tried as is first, others after the search domains; a final dot means as is only).
fn candidates(host: &str, c: &DnsConfig) -> Vec<Vec<u8>> {
    let mut names: Vec<String> = Vec::new();
    if host.ends_with('.') {
        names.push(host.to_string());
    } else {
        let searched = c.search.iter().map(|d| format!("{host}.{d}"));
        if host.matches('.').count() as u32 >= c.ndots {
            names.push(host.to_string());
            names.extend(searched);
        } else {
            names.extend(searched);
            names.push(host.to_string());
        }
    }
    names
        .iter()
        .filter_map(|n| {
            let mut b = [0u8; MAX_NAME];
            dns::encode_name(n.as_bytes(), &mut b).and_then(|len| b.get(..len)).map(<[u8]>::to_vec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::net::UdpSocket as StdUdp;
    use std::sync::mpsc;

    fn cfg(nameservers: &[SocketAddr], search: &[&str], ndots: u32) -> DnsConfig {
        DnsConfig {
            nameservers: nameservers.iter().copied().collect(),
            timeout: Duration::from_millis(300),
            attempts: 2,
            ndots,
            search: search.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn wire_names(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|n| {
                let mut s = String::new();
                let mut i = 0;
                while n[i] != 0 {
                    let l = n[i] as usize;
                    s.push_str(std::str::from_utf8(&n[i + 1..i + 1 + l]).unwrap());
                    s.push('.');
                    i += 1 + l;
                }
                s
            })
            .collect()
    }

    #[test]
    fn search_domains_follow_ndots() {
        let c = cfg(&[], &["a.test", "b.test"], 1);
        assert_eq!(wire_names(&candidates("recv", &c)), ["recv.a.test.", "recv.b.test.", "recv."]);
        assert_eq!(
            wire_names(&candidates("recv.example", &c)),
            ["recv.example.", "recv.example.a.test.", "recv.example.b.test."]
        );
        assert_eq!(wire_names(&candidates("recv.example.", &c)), ["recv.example."]);
        let c5 = cfg(&[], &["a.test"], 5);
        assert_eq!(wire_names(&candidates("x.y.z", &c5)), ["x.y.z.a.test.", "x.y.z."]);
        assert!(candidates("bad name", &c).is_empty());
    }

    #[test]
    fn literals_and_localhost_never_touch_dns() {
        for (host, want) in [
            ("10.1.2.3", vec!["10.1.2.3:80"]),
            ("::1", vec!["[::1]:80"]),
            ("localhost", vec!["127.0.0.1:80", "[::1]:80"]),
            ("LocalHost.", vec!["127.0.0.1:80", "[::1]:80"]),
            ("ecs.localhost", vec!["127.0.0.1:80", "[::1]:80"]),
        ] {
            let got: Vec<String> = fixed(host, 80).unwrap().iter().map(ToString::to_string).collect();
            assert_eq!(got, want, "{host}");
        }
        assert!(fixed("notlocalhost", 80).is_none() && fixed("receiver.example", 80).is_none());
        // Files that do not exist are not read for a literal, and nothing is ever sent.
        let poll = Poll::new().unwrap();
        let mut r = Resolver::with_files("127.0.0.9", 7, Token(1), "/nonexistent".into(), "/nonexistent".into());
        let got = r.addresses(poll.registry(), Instant::now()).unwrap().unwrap().to_vec();
        assert_eq!(got, ["127.0.0.9:7".parse::<SocketAddr>().unwrap()]);
        assert!(r.deadline().is_none() && !r.busy());
    }

    /// A real UDP nameserver on loopback answering A queries for names in `table` with `ttl`;
    /// AAAA gets NOERROR with no record; unknown names NXDOMAIN. Each query is reported on `seen`.
    /// `answer` false: read and drop.
    fn nameserver(
        table: Vec<(&'static str, Vec<Ipv4Addr>)>,
        ttl: u32,
        answer: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> (SocketAddr, mpsc::Receiver<(String, u16)>) {
        let s = StdUdp::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let q = &buf[..n];
                let mut i = 12;
                let mut name = String::new();
                while q[i] != 0 {
                    let l = q[i] as usize;
                    name.push_str(std::str::from_utf8(&q[i + 1..i + 1 + l]).unwrap());
                    name.push('.');
                    i += 1 + l;
                }
                let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
                let qend = i + 5;
                if tx.send((name.clone(), qtype)).is_err() {
                    return;
                }
                if !answer.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let hit = table.iter().find(|(n, _)| format!("{n}.") == name);
                let mut r = q[..qend].to_vec();
                r[2] = 0x81;
                r[3] = if hit.is_some() { 0x80 } else { 0x83 };
                let ips: &[Ipv4Addr] = match (hit, qtype) {
                    (Some((_, ips)), 1) => ips,
                    _ => &[],
                };
                r[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
                for ip in ips {
                    r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
                    r.extend_from_slice(&ttl.to_be_bytes());
                    r.extend_from_slice(&[0, 4]);
                    r.extend_from_slice(&ip.octets());
                }
                let _ = s.send_to(&r, from);
            }
        });
        (addr, rx)
    }

    fn files(tag: &str, resolv: &str, hosts: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sts-resolve-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (r, h) = (dir.join("resolv.conf"), dir.join("hosts"));
        std::fs::write(&r, resolv).unwrap();
        std::fs::write(&h, hosts).unwrap();
        (r, h)
    }

    /// Drives `r` like the loop does until its lookup ends.
    fn run(r: &mut Resolver, poll: &mut Poll) -> Result<(), String> {
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(10), "lookup never ended");
            let timeout = r.deadline().map(|d| d.saturating_duration_since(Instant::now()));
            poll.poll(&mut events, timeout).unwrap();
            let now = Instant::now();
            if !events.is_empty() {
                if let Some(res) = r.on_event(poll.registry(), now) {
                    return res;
                }
            }
            if let Some(res) = r.on_timeout(poll.registry(), now) {
                return res;
            }
            if let Some(d) = r.deadline() {
                assert!(d > now, "deadline left in the past");
            }
        }
    }

    fn dns_resolver(ns: &[SocketAddr], hosts: Option<(PathBuf, PathBuf)>, name: &str) -> Resolver {
        let (rp, hp) = hosts.unwrap_or_else(|| files(name, "", ""));
        let mut r = Resolver::with_files(name, 443, Token(3), rp, hp);
        let c = cfg(ns, &[], 1);
        r.candidates = candidates(name, &c);
        r.config = c;
        r
    }

    #[test]
    fn answers_are_cached_for_their_ttl_then_refreshed() {
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (ns, seen) =
            nameserver(vec![("recv.test", vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])], 2, on);
        let mut poll = Poll::new().unwrap();
        let mut r = dns_resolver(&[ns], None, "recv.test");
        let t0 = Instant::now();
        assert_eq!(r.addresses(poll.registry(), t0), Ok(None));
        assert!(r.deadline().is_some_and(|d| d > t0));
        assert_eq!(run(&mut r, &mut poll), Ok(()));
        let want: Vec<SocketAddr> = vec!["10.0.0.1:443".parse().unwrap(), "10.0.0.2:443".parse().unwrap()];
        let now = Instant::now();
        assert_eq!(r.addresses(poll.registry(), now).unwrap().unwrap(), want);
        let mut asked: Vec<(String, u16)> = seen.try_iter().collect();
        asked.sort();
        assert_eq!(asked, [("recv.test.".to_string(), 1), ("recv.test.".to_string(), 28)]);
        // Within the TTL: from the cache, nothing sent, no socket left open.
        assert_eq!(r.addresses(poll.registry(), now + Duration::from_millis(1900)).unwrap().unwrap(), want);
        assert!(!r.busy() && r.sock4.is_none());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(seen.try_iter().count(), 0);
        // Past it: the old answer serves this connect while a refresh runs.
        let later = now + Duration::from_millis(2100);
        assert_eq!(r.addresses(poll.registry(), later).unwrap().unwrap(), want);
        assert!(r.busy());
        assert_eq!(run(&mut r, &mut poll), Ok(()));
        assert_eq!(seen.try_iter().count(), 2);
    }

    #[test]
    fn the_last_good_answer_outlives_a_resolver_that_stops_answering() {
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (ns, seen) = nameserver(vec![("recv.test", vec![Ipv4Addr::new(10, 0, 0, 5)])], 1, on.clone());
        let (ns2, seen2) = nameserver(vec![], 1, on.clone());
        let mut poll = Poll::new().unwrap();
        let mut r = dns_resolver(&[ns, ns2], None, "recv.test");
        assert_eq!(r.addresses(poll.registry(), Instant::now()), Ok(None));
        assert_eq!(run(&mut r, &mut poll), Ok(()));
        let gen = r.generation();
        on.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = seen.try_iter().count();
        // Expired; the refresh times out against both servers, two rounds each.
        r.expires = Some(Instant::now());
        let want = vec!["10.0.0.5:443".parse::<SocketAddr>().unwrap()];
        assert_eq!(r.addresses(poll.registry(), Instant::now()).unwrap().unwrap(), want);
        assert!(r.busy());
        let t = Instant::now();
        let e = run(&mut r, &mut poll).unwrap_err();
        assert!(e.contains("no answer from"), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(4 * 300 - 50), "gave up after {:?}", t.elapsed());
        // Each query went to each server twice (attempts 2), each time with a fresh id.
        assert_eq!(seen.try_iter().count(), 4);
        assert_eq!(seen2.try_iter().count(), 4);
        // Still the last good address, unchanged.
        assert_eq!(r.addresses(poll.registry(), Instant::now() + Duration::from_secs(3)).unwrap().unwrap(), want);
        assert_eq!(r.generation(), gen);
        r.cancel(poll.registry());
    }

    #[test]
    fn no_answer_and_no_last_good_is_a_failure() {
        let off = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, _seen) = nameserver(vec![], 1, off);
        let mut poll = Poll::new().unwrap();
        let mut r = dns_resolver(&[ns], None, "recv.test");
        assert_eq!(r.addresses(poll.registry(), Instant::now()), Ok(None));
        assert!(run(&mut r, &mut poll).unwrap_err().contains("no answer"));
    }

    #[test]
    fn nxdomain_moves_to_the_next_search_domain() {
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (ns, seen) = nameserver(vec![("recv.b.test", vec![Ipv4Addr::new(10, 0, 0, 9)])], 60, on);
        let mut poll = Poll::new().unwrap();
        let mut r = dns_resolver(&[ns], None, "recv");
        let c = cfg(&[ns], &["a.test", "b.test"], 1);
        r.candidates = candidates("recv", &c);
        r.config = c;
        assert_eq!(r.addresses(poll.registry(), Instant::now()), Ok(None));
        assert_eq!(run(&mut r, &mut poll), Ok(()));
        assert_eq!(r.addresses(poll.registry(), Instant::now()).unwrap().unwrap(), ["10.0.0.9:443".parse().unwrap()]);
        let names: std::collections::BTreeSet<String> = seen.try_iter().map(|(n, _)| n).collect();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["recv.a.test.", "recv.b.test."]);
    }

    #[test]
    fn hosts_file_wins_and_is_reread_when_it_changes() {
        let off = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, seen) = nameserver(vec![], 1, off);
        let (rp, hp) =
            files("hosts", "nameserver 127.0.0.1\n", "10.0.0.1 recv.test\n::2 recv.test\n10.0.0.3 recv.test\n");
        let poll = Poll::new().unwrap();
        let mut r = dns_resolver(&[ns], Some((rp, hp.clone())), "recv.test");
        let t0 = Instant::now();
        let got = r.addresses(poll.registry(), t0).unwrap().unwrap().to_vec();
        let want: Vec<SocketAddr> =
            ["10.0.0.1:443", "10.0.0.3:443", "[::2]:443"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(got, want);
        std::fs::write(&hp, "# moved\n10.0.0.4 recv.test\n").unwrap();
        // Not looked at again before RECHECK_EVERY.
        assert_eq!(r.addresses(poll.registry(), t0 + Duration::from_secs(1)).unwrap().unwrap(), want);
        let got = r.addresses(poll.registry(), t0 + RECHECK_EVERY).unwrap().unwrap().to_vec();
        assert_eq!(got, ["10.0.0.4:443".parse::<SocketAddr>().unwrap()]);
        assert_eq!(seen.try_iter().count(), 0, "DNS asked for a name in /etc/hosts");
    }

    #[test]
    fn resolv_conf_is_read_at_construction_and_reread_when_it_changes() {
        let (rp, hp) = files("conf", "nameserver 10.9.9.9\noptions timeout:2 attempts:3\nsearch x.test\n", "");
        let mut r = Resolver::with_files("recv", 443, Token(1), rp.clone(), hp);
        assert_eq!(r.config().nameservers.as_slice(), ["10.9.9.9:53".parse().unwrap()]);
        assert_eq!((r.config().timeout, r.config().attempts), (Duration::from_secs(2), 3));
        assert_eq!(wire_names(&r.candidates), ["recv.x.test.", "recv."]);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&rp, "nameserver 10.8.8.8\nnameserver 10.7.7.7\n").unwrap();
        let t0 = Instant::now();
        r.files.checked_at = Some(t0);
        r.reload(Some(t0 + RECHECK_EVERY), false);
        assert_eq!(r.config().nameservers.len(), 2);
        assert_eq!(wire_names(&r.candidates), ["recv."]);
    }

    #[test]
    fn answers_from_elsewhere_or_with_another_id_are_ignored() {
        let silent = StdUdp::bind("127.0.0.1:0").unwrap();
        // A broken resolver must fail the test, not hang it.
        silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ns = silent.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let mut r = dns_resolver(&[ns], None, "recv.test");
        assert_eq!(r.addresses(poll.registry(), Instant::now()), Ok(None));
        let mut buf = [0u8; 512];
        let (n, client) = silent.recv_from(&mut buf).unwrap();
        let (m, _) = silent.recv_from(&mut buf[n..]).unwrap();
        let mut q = buf[..n].to_vec();
        if u16::from_be_bytes([q[n - 4], q[n - 3]]) != 1 {
            q = buf[n..n + m].to_vec();
        }
        let mut answer = q.clone();
        answer[2] = 0x81;
        answer[3] = 0x80;
        answer[7] = 1;
        // The forgeries carry another address than the real answer, so accepting one shows.
        let mut forged = answer.clone();
        answer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 6, 6, 6, 6]);
        forged.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 7, 7, 7, 7]);
        // From another socket (a spoofer guessing the port): ignored.
        let other = StdUdp::bind("127.0.0.1:0").unwrap();
        other.send_to(&forged, client).unwrap();
        // From the server but with the wrong id: ignored.
        let mut wrong = forged.clone();
        wrong[0] ^= 0xFF;
        silent.send_to(&wrong, client).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_millis(10))).unwrap();
        assert_eq!(r.on_event(poll.registry(), Instant::now()), None);
        assert!(r.busy());
        let l = r.lookup.as_ref().unwrap();
        assert!(!l.v4.contains(&IpAddr::from([7, 7, 7, 7])), "a forged address was taken");
        for q in &l.queries {
            assert_eq!(q.outcome, QueryOutcome::Waiting, "qtype {} no longer waits", q.qtype);
        }
        // The right one: accepted (AAAA still waits, then times out with no address: A is enough).
        silent.send_to(&answer, client).unwrap();
        assert_eq!(run(&mut r, &mut poll), Ok(()));
        assert_eq!(r.addresses(poll.registry(), Instant::now()).unwrap().unwrap(), ["6.6.6.6:443".parse().unwrap()]);
    }
}
