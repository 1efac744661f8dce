//! Which connections are reported, and how StackState identifies them (spec/protocol.md
//! §5.3–§5.5): direction from the namespace's listening ports, the `namespace` scope, the
//! `connectionIdentifier` relation key, and the filters (owner reported, relation long-lived).
//! Pure: the table, the owners and the clock come in.

use crate::model::connection::{Conn, ConnTable};
use crate::model::process::ProcessTable;
use std::fmt::Write as _;
use std::net::IpAddr;

/// The wire enum `ConnectionDirection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    None = 0,
    Outgoing = 1,
    Incoming = 2,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::None => "none",
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }
}

/// Incoming when the local `(namespace, port)` is a listening port there, else outgoing (the
/// rule the process agent applies to connections it did not see being set up).
pub fn direction(t: &ConnTable, c: &Conn) -> Direction {
    if t.is_listening(c.ns, c.lport) {
        Direction::Incoming
    } else {
        Direction::Outgoing
    }
}

/// Loopback (127/8, ::1) or link-local (169.254/16, fe80::/10, where EC2 and ECS metadata
/// live): addresses that mean something only on this host. IPv4-mapped IPv6 counts as IPv4.
pub fn host_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_loopback() || v4.is_link_local(),
            None => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

/// The `namespace` scope: `<hostname>:<netns inode>` when both ends are host-local (so that two
/// hosts' `127.0.0.1:8080` never pair), else empty (the addresses are meaningful beyond the host).
/// The process agent also prefixes a configured cluster name; an ECS agent has none.
pub fn write_namespace(out: &mut Vec<u8>, host: &str, c: &Conn) {
    out.clear();
    if namespace_scoped(c) {
        out.extend_from_slice(host.as_bytes());
        if c.ns != 0 {
            out.push(b':');
            push_decimal(out, c.ns);
        }
    }
}

/// Whether `c`'s `namespace` names its host and network namespace (both ends host-local), so
/// that it is the same text for every such connection of that namespace.
pub fn namespace_scoped(c: &Conn) -> bool {
    host_local(c.local_ip()) && host_local(c.remote_ip())
}

/// An address as Go's `net.IP.String()` prints it (the process agent's form): dotted IPv4,
/// RFC 5952 IPv6, IPv4-mapped IPv6 as plain IPv4.
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.extend_from_slice(IpText::of(ip).as_bytes());
}

/// An address as [`write_ip`] prints it, on the stack: printed once per connection for both its
/// identifier and its address fields (each address was printed twice, 1.5 % of the agent under
/// the budget, perf).
pub struct IpText(StackStr);

impl IpText {
    pub fn of(ip: IpAddr) -> IpText {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut buf = StackStr::default();
        match ip {
            // The common case, by hand: `fmt` machinery was a tenth of the cycle's CPU (perf).
            IpAddr::V4(v4) => {
                let mut digits = Digits::<15>::default();
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        digits.push(b'.');
                    }
                    digits.octet(octet);
                }
                let _ = buf.push_bytes(digits.as_bytes());
            }
            IpAddr::V6(_) => {
                let _ = write!(buf, "{ip}");
            }
        }
        IpText(buf)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// `connectionIdentifier` (PA `checks/net_common.go`): `ns:ip` and `ns:ip:port` pieces; the
/// ephemeral side drops its port, so repeated short connections share one relation key.
/// incoming `in:<ns>:<lip>:<lport>:<ns>:<rip>`, outgoing `out:<ns>:<lip>:<ns>:<rip>:<rport>`.
pub fn write_identifier(out: &mut Vec<u8>, ns: &[u8], c: &Conn, d: Direction) {
    let (local, remote) = (IpText::of(c.local_ip()), IpText::of(c.remote_ip()));
    write_identifier_printed(out, ns, &local, &remote, c, d);
}

/// [`write_identifier`] with `c`'s local and remote addresses printed already.
pub fn write_identifier_printed(out: &mut Vec<u8>, ns: &[u8], local: &IpText, remote: &IpText, c: &Conn, d: Direction) {
    out.clear();
    let (tag, local_port, remote_port) = match d {
        Direction::Incoming => (&b"in:"[..], Some(c.lport), None),
        Direction::Outgoing => (&b"out:"[..], None, Some(c.rport)),
        Direction::None => (&b"none:"[..], None, None),
    };
    out.extend_from_slice(tag);
    endpoint(out, ns, local, local_port);
    out.push(b':');
    endpoint(out, ns, remote, remote_port);
}

fn endpoint(out: &mut Vec<u8>, ns: &[u8], ip: &IpText, port: Option<u16>) {
    out.extend_from_slice(ns);
    out.push(b':');
    out.extend_from_slice(ip.as_bytes());
    if let Some(p) = port {
        let mut d = Digits::<6>::default();
        d.push(b':');
        d.port(p);
        out.extend_from_slice(d.as_bytes());
    }
}

/// Up to `N` bytes of decimal text on the stack, copied out with one `extend_from_slice`: a
/// `Vec::push` per digit (a capacity check and a length update each) was most of what printing
/// the four addresses of every reported connection cost (perf, benches/connections_cycle.rs).
struct Digits<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Digits<N> {
    fn default() -> Self {
        Digits { buf: [0; N], len: 0 }
    }
}

impl<const N: usize> Digits<N> {
    /// Appends `b`; a byte past `N` is dropped (the callers' sizes are exact).
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// An address octet in decimal (no general formatter: [`crate::fmt::decimal`] was 3 % of the
    /// agent's CPU under the budget, perf).
    fn octet(&mut self, o: u8) {
        if o >= 100 {
            self.push(b'0' + o / 100);
        }
        if o >= 10 {
            self.push(b'0' + o / 10 % 10);
        }
        self.push(b'0' + o % 10);
    }

    /// A port in decimal.
    fn port(&mut self, p: u16) {
        let mut started = false;
        for unit in [10_000, 1_000, 100, 10] {
            let digit = (p / unit % 10) as u8;
            started |= digit != 0;
            if started {
                self.push(b'0' + digit);
            }
        }
        self.push(b'0' + (p % 10) as u8);
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; 20];
    let n = crate::fmt::decimal(v, &mut b);
    // Digit by digit: these are 1 to 5 bytes (octets, ports), and a `memcpy` call for each was
    // the largest user-space cost of the connections check in the static build (musl's memcpy
    // has a fixed start-up cost that dwarfs a 3-byte copy).
    for &d in b.get(..n).unwrap_or(&[]) {
        out.push(d);
    }
}

/// A `fmt::Write` into a fixed stack buffer (an IPv6 address is at most 45 bytes).
struct StackStr {
    buf: [u8; 48],
    len: usize,
}

impl Default for StackStr {
    fn default() -> StackStr {
        StackStr { buf: [0; 48], len: 0 }
    }
}

impl StackStr {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push_bytes(&mut self, b: &[u8]) -> std::fmt::Result {
        let end = self.len + b.len();
        self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_bytes(s.as_bytes())
    }
}

/// Multiplies and folds the 128-bit product's halves (wyhash's mixing step).
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ (r >> 64) as u64
}

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;

/// An address as `write_ip` prints it, as two words and a tag: IPv4 and IPv4-mapped IPv6 (both
/// printed as dotted IPv4) give the same key.
fn ip_key(ip: IpAddr) -> (u64, u64, u64) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => (4, 0, u64::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (6, (b >> 64) as u64, b as u64)
        }
    }
}

/// The relation cache's key: a hash of what `write_identifier` prints for `c` in direction `d`
/// (with `write_namespace`'s scope for `host`, which is fixed for the agent's life), computed from
/// the fields instead of the text: the same identifier gives the same key, and formatting and
/// hashing ~50 bytes per connection each cycle (a tenth of the check's user time) is not needed
/// to tell relations apart. Seeded per process (`seed`): the cache's order is not predictable by
/// whoever opens connections.
pub fn relation_key(c: &Conn, d: Direction, seed: u64) -> u64 {
    let (lip, rip) = (c.local_ip(), c.remote_ip());
    // `host:<ns>`, `host` (namespace 0) or nothing; inodes never reach u64::MAX.
    let scope = if host_local(lip) && host_local(rip) { c.ns } else { u64::MAX };
    let (port_l, port_r) = match d {
        Direction::Incoming => (u64::from(c.lport), 0),
        Direction::Outgoing => (0, u64::from(c.rport)),
        Direction::None => (0, 0),
    };
    let ((lt, lh, ll), (rt, rh, rl)) = (ip_key(lip), ip_key(rip));
    let head = (d as u64) | lt << 8 | rt << 16 | port_l << 24 | port_r << 40;
    let mut h = fold(head ^ seed ^ K0, scope ^ K1);
    h = fold(h ^ lh ^ K1, ll ^ seed);
    h = fold(h ^ rh ^ K0, rl ^ seed ^ K1);
    fold(h ^ K1, seed ^ K0)
}

/// When relation identifiers were first and last seen; entries unseen for `RELATION_TTL_SECS`
/// are forgotten (the process agent's relation cache expiry).
#[derive(Debug, Default)]
struct RelationCache {
    /// `(identifier hash, first seen, last seen)`, sorted by hash.
    entries: Vec<(u64, f64, f64)>,
}

pub const RELATION_TTL_SECS: f64 = 300.0;

impl RelationCache {
    /// Records `hash` as seen now and returns when it was first seen.
    fn observe(&mut self, hash: u64, now: f64, sorted: usize) -> f64 {
        match self.entries[..sorted].binary_search_by_key(&hash, |e| e.0) {
            Ok(i) => {
                self.entries[i].2 = now;
                self.entries[i].1
            }
            Err(_) => {
                // New this cycle: appended, merged in `settle`. Duplicates within a cycle share `now`.
                self.entries.push((hash, now, now));
                now
            }
        }
    }

    fn settle(&mut self, now: f64) {
        self.entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        self.entries.dedup_by_key(|e| e.0);
        self.entries.retain(|e| now - e.2 <= RELATION_TTL_SECS);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reported {
    /// Index into `ConnTable::conns`.
    pub conn: u32,
    pub pid: u32,
    pub pid_create_ms: i64,
    pub direction: Direction,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnStats {
    /// Sockets tracked this cycle (every namespace, not listening).
    pub total: u32,
    /// With a known owner that is a reported process.
    pub owned_by_reported: u32,
    /// Of those, dropped because their relation is younger than the qualifier.
    pub short_lived: u32,
    pub reported: u32,
    /// Reported, by `[ipv4, ipv6][outgoing, incoming]`.
    pub by_kind: [[u32; 2]; 2],
}

#[derive(Debug, Default)]
pub struct ConnSelection {
    pub reported: Vec<Reported>,
    pub stats: ConnStats,
    relations: RelationCache,
    /// The relation keys' seed (random, set at the first selection).
    seed: u64,
}

/// Picks the reported connections: those whose owner is a reported process (`reported_procs`
/// indexes `procs.procs`, ascending) and whose relation was first seen at least
/// `short_lived_secs` ago (0 disables that filter). `owner` maps a socket inode to
/// `(pid, start_ticks)`.
pub fn select(
    t: &ConnTable,
    owner: impl Fn(u32) -> Option<(u32, u64)>,
    procs: &ProcessTable,
    reported_procs: &[u32],
    short_lived_secs: u64,
    sel: &mut ConnSelection,
) {
    sel.reported.clear();
    sel.stats = ConnStats { total: t.conns.len() as u32, ..ConnStats::default() };
    let now = t.mono_secs;
    let sorted = sel.relations.entries.len();
    if sel.seed == 0 {
        use std::hash::BuildHasher;
        sel.seed = std::collections::hash_map::RandomState::new().hash_one(0x5e1u64) | 1;
    }
    for (k, c) in t.conns.iter().enumerate() {
        let Some((pid, start)) = (c.inode != 0).then(|| owner(c.inode)).flatten() else { continue };
        let Some(i) = procs.index_of(pid) else { continue };
        let p = &procs.procs[i];
        if p.start_ticks != start || reported_procs.binary_search(&(i as u32)).is_err() {
            continue;
        }
        sel.stats.owned_by_reported += 1;
        let d = direction(t, c);
        let first = sel.relations.observe(relation_key(c, d, sel.seed), now, sorted);
        if short_lived_secs > 0 && now - first < short_lived_secs as f64 {
            sel.stats.short_lived += 1;
            continue;
        }
        // Connections still priming (no deltas yet) wait for their second dump.
        if c.deltas.is_none() {
            continue;
        }
        sel.stats.reported += 1;
        sel.stats.by_kind[usize::from(!c.is_v4())][usize::from(d == Direction::Incoming)] += 1;
        sel.reported.push(Reported { conn: k as u32, pid, pid_create_ms: p.create_time_ms, direction: d });
    }
    sel.relations.settle(now);
}

/// A socket of namespace 4026531840, cookie 1, inode 7, for tests.
#[cfg(test)]
pub(crate) fn test_conn(family: u8, local: &str, lport: u16, remote: &str, rport: u16) -> Conn {
    let addr = |s: &str| -> [u8; 16] {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            IpAddr::V6(a) => a.octets(),
        }
    };
    Conn {
        ns: 4026531840,
        cookie: 1,
        family,
        state: 1,
        local: addr(local),
        lport,
        remote: addr(remote),
        rport,
        inode: 7,
        uid: 0,
        bytes_sent: 0,
        bytes_received: 0,
        total_retrans: 0,
        rtt_us: 0,
        rttvar_us: 0,
        deltas: None,
        first_seen_mono: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(family: u8, local: &str, lport: u16, remote: &str, rport: u16) -> Conn {
        test_conn(family, local, lport, remote, rport)
    }

    fn ident(c: &Conn, d: Direction) -> String {
        let (mut ns, mut out) = (Vec::new(), Vec::new());
        write_namespace(&mut ns, "i-0abc", c);
        write_identifier(&mut out, &ns, c, d);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn identifiers_follow_the_process_agent() {
        // The spec's example: empty namespace, the ephemeral side without its port.
        let c = conn(2, "10.0.1.5", 40000, "10.0.2.7", 8080);
        assert_eq!(ident(&c, Direction::Outgoing), "out::10.0.1.5::10.0.2.7:8080");
        let s = conn(2, "10.0.2.7", 8080, "10.0.1.5", 40000);
        assert_eq!(ident(&s, Direction::Incoming), "in::10.0.2.7:8080::10.0.1.5");
        assert_eq!(ident(&s, Direction::None), "none::10.0.2.7::10.0.1.5");
        // Loopback: scoped by host and network namespace, on both pieces.
        let l = conn(2, "127.0.0.1", 5432, "127.0.0.1", 51000);
        assert_eq!(ident(&l, Direction::Incoming), "in:i-0abc:4026531840:127.0.0.1:5432:i-0abc:4026531840:127.0.0.1");
        // IPv6, and IPv4-mapped IPv6 printed as IPv4 (as Go does).
        let v6 = conn(10, "2001:db8::1", 443, "2001:db8:0:0:1:0:0:1", 50000);
        assert_eq!(ident(&v6, Direction::Incoming), "in::2001:db8::1:443::2001:db8::1:0:0:1");
        let mapped = conn(10, "::ffff:10.0.0.1", 80, "::ffff:10.0.0.2", 50000);
        assert_eq!(ident(&mapped, Direction::Incoming), "in::10.0.0.1:80::10.0.0.2");
        let lo6 = conn(10, "::1", 80, "::1", 50000);
        assert_eq!(ident(&lo6, Direction::Incoming), "in:i-0abc:4026531840:::1:80:i-0abc:4026531840:::1");
        // Link-local (the EC2 metadata service) is host-scoped too.
        let imds = conn(2, "10.0.1.5", 40000, "169.254.169.254", 80);
        assert_eq!(ident(&imds, Direction::Outgoing), "out::10.0.1.5::169.254.169.254:80");
        let both = conn(2, "169.254.170.1", 40000, "169.254.170.2", 80);
        assert!(ident(&both, Direction::Outgoing).starts_with("out:i-0abc:4026531840:169.254.170.1:"));
    }

    /// A captured IPv6 dump: a listener on [::]:51018, a ::1 connection with 50 kB each way, and
    /// an IPv4 client accepted on the IPv6 listener (an IPv4-mapped local address).
    #[test]
    fn a_real_ipv6_dump_gets_directions_and_identifiers() {
        use crate::parse::inet_diag::{messages, Msg};
        let bytes = include_bytes!("../../tests/fixtures/netlink/debian12-6.18/tcp6-loopback-0.bin");
        let mut t = ConnTable::new(100);
        t.begin(1.0);
        for m in messages(bytes) {
            if let Ok(Msg::Socket(s)) = m {
                t.push(9, &s, false);
            }
        }
        t.finish();
        assert!(t.is_listening(9, 51018));
        let ours: Vec<(Direction, String)> = t
            .conns
            .iter()
            .filter(|c| c.lport == 51018 || c.rport == 51018)
            .map(|c| {
                let d = direction(&t, c);
                let (mut ns, mut id) = (Vec::new(), Vec::new());
                write_namespace(&mut ns, "h", c);
                write_identifier(&mut id, &ns, c, d);
                (d, String::from_utf8(id).unwrap())
            })
            .collect();
        let want = [
            (Direction::Incoming, "in:h:9:::1:51018:h:9:::1".to_string()),
            (Direction::Outgoing, "out:h:9:::1:h:9:::1:51018".to_string()),
            (Direction::Incoming, "in:h:9:127.0.0.1:51018:h:9:127.0.0.1".to_string()),
        ];
        for w in &want {
            assert!(ours.contains(w), "{w:?} not in {ours:?}");
        }
        assert_eq!(ours.len(), 3);
        let pair: Vec<_> = t.conns.iter().filter(|c| c.family == 10 && c.local_ip().is_loopback()).collect();
        assert!(pair.iter().all(|c| c.bytes_sent >= 50_000 && c.bytes_received >= 50_000), "{pair:?}");
    }

    /// Two connections get the same relation key exactly when their identifiers are the same
    /// text, over every pair from a set that differs in each piece (family, IPv4-mapped IPv6,
    /// host-local scope and namespace, ports on either side, direction).
    #[test]
    fn relation_keys_tell_identifiers_apart_as_the_text_does() {
        let mut all = Vec::new();
        for (fam, l, r) in [
            (2, "10.0.1.5", "10.0.2.7"),
            (2, "10.0.2.7", "10.0.1.5"),
            (10, "::ffff:10.0.1.5", "::ffff:10.0.2.7"),
            (10, "::ffff:10.0.1.5", "10.0.2.7"),
            (2, "127.0.0.1", "127.0.0.1"),
            (10, "::ffff:127.0.0.1", "::ffff:127.0.0.1"),
            (10, "::1", "::1"),
            (2, "127.0.0.1", "10.0.2.7"),
            (2, "169.254.170.1", "169.254.170.2"),
            (10, "2001:db8::1", "2001:db8::2"),
            (10, "2001:db8::2", "2001:db8::1"),
            (10, "::", "::"),
            (2, "0.0.0.0", "0.0.0.0"),
        ] {
            for (lport, rport) in [(8080, 40000), (8080, 40001), (8081, 40000), (40000, 8080)] {
                for ns in [0, 4026531840, 4026532001] {
                    let mut c = conn(fam, l, lport, r, rport);
                    c.ns = ns;
                    for d in [Direction::Incoming, Direction::Outgoing, Direction::None] {
                        all.push((c, d));
                    }
                }
            }
        }
        let seed = 0x1234_5678_9abc_def1;
        let keyed: Vec<(u64, String)> = all.iter().map(|(c, d)| (relation_key(c, *d, seed), ident(c, *d))).collect();
        let (mut same, mut differ) = (0, 0);
        for (i, a) in keyed.iter().enumerate() {
            for b in &keyed[i + 1..] {
                assert_eq!(a.0 == b.0, a.1 == b.1, "{} / {}", a.1, b.1);
                if a.1 == b.1 {
                    same += 1;
                } else {
                    differ += 1;
                }
            }
        }
        // Both cases occur many times (mapped and plain IPv4, unscoped namespaces, unused ports).
        assert!(same > 500 && differ > 100_000, "{same} {differ}");
        // Another seed, other keys.
        let (c, d) = &all[0];
        assert_ne!(relation_key(c, *d, seed), relation_key(c, *d, seed ^ 2));
    }

    #[test]
    fn octets_and_ports_print_as_std_does() {
        for o in 0..=u8::MAX {
            let mut d = Digits::<3>::default();
            d.octet(o);
            assert_eq!(d.as_bytes(), o.to_string().as_bytes());
        }
        for p in 0..=u16::MAX {
            let mut d = Digits::<5>::default();
            d.port(p);
            assert_eq!(d.as_bytes(), p.to_string().as_bytes());
        }
        // Full: what does not fit is dropped, never written past the buffer.
        let mut d = Digits::<2>::default();
        d.port(12345);
        assert_eq!(d.as_bytes(), b"12");
    }

    #[test]
    fn addresses_print_as_std_does() {
        for a in ["0.0.0.0", "10.0.1.5", "255.255.255.255", "127.0.0.1", "::", "::1", "2001:db8::1:0:0:1", "fe80::1"] {
            let mut out = Vec::new();
            write_ip(&mut out, a.parse().unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), a);
        }
    }

    #[test]
    fn host_local_addresses() {
        for (a, want) in [
            ("127.0.0.1", true),
            ("127.9.9.9", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("169.254.169.254", true),
            ("fe80::1", true),
            ("10.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("2001:db8::1", false),
            ("::", false),
        ] {
            assert_eq!(host_local(a.parse().unwrap()), want, "{a}");
        }
    }

    #[test]
    fn the_relation_cache_remembers_first_sight_and_expires() {
        let mut r = RelationCache::default();
        let n = r.entries.len();
        assert_eq!(r.observe(1, 10.0, n), 10.0);
        assert_eq!(r.observe(1, 10.0, n), 10.0, "twice in a cycle");
        r.settle(10.0);
        assert_eq!(r.entries.len(), 1);
        let n = r.entries.len();
        assert_eq!(r.observe(1, 40.0, n), 10.0);
        assert_eq!(r.observe(2, 40.0, n), 40.0);
        r.settle(40.0);
        assert_eq!(r.entries, vec![(1, 10.0, 40.0), (2, 40.0, 40.0)]);
        r.settle(40.0 + RELATION_TTL_SECS + 1.0);
        assert!(r.entries.is_empty(), "unseen for longer than the TTL");
    }
}
