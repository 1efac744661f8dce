//! HTTP (and MySQL) telemetry per server-side socket, from captured segment heads: the request
//! → response matcher. Each flow is the socket that answers (its local end sends the responses),
//! keyed by namespace and 4-tuple exactly as the connections check reports it, so the figures
//! ride on the same `Connection` and pid.
//!
//! Per flow: the end of the last counted head segment in each direction (a segment that does not
//! go past it is a retransmission, or the same packet seen again on a second interface of the
//! namespace, and is skipped); the capture times of request heads not answered yet, oldest first
//! (so pipelined responses pair with their own requests); and the response times as sketch bins
//! per status code. Response time is the response head's capture time minus its request head's:
//! on the wire, where the original measures from the server's last read to its first send (spec
//! http-inspection §1.3, §7.4). An interim `1xx` (not 101) is timed from the request it answers
//! without consuming it; a response with no request seen since capture began counts as 0, as the
//! original counts untracked sockets.
//!
//! Bounded: at most `max_flows` flows (new ones beyond are counted and not tracked), at most
//! [`MAX_BINS_PER_FLOW`] bins each and [`MAX_BINS_TOTAL`] overall (a value that would need a new
//! bin past those folds into its code's nearest bin, so counts stay exact). A flow is created
//! only for a port that listens in its namespace (packets a bridge relays for other namespaces
//! match no socket here), and removed at the first connections check that no longer sees its
//! socket. Storage (slots, their bin vectors, the index) is reused: a steady flow set allocates
//! nothing.

use crate::model::connection::{Conn, ConnTable};
use crate::model::ddsketch::{self, Bin};
use crate::parse::http_head::{self, Heads};
use crate::parse::packet;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub const MAX_BINS_PER_FLOW: usize = 1024;
pub const MAX_BINS_TOTAL: usize = 64 * 1024;
/// Request heads waiting for their response, per flow (deeper pipelines pair the rest with the
/// latest request).
const PENDING: usize = 8;

/// A server-side socket: namespace, and local (the answering end) and remote addresses. IPv4
/// (also IPv4-mapped IPv6) is family 2 with the address in the first 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ns: u64,
    pub family: u8,
    pub local: [u8; 16],
    pub lport: u16,
    pub remote: [u8; 16],
    pub rport: u16,
}

impl FlowKey {
    /// The key of a socket of the connections table.
    pub fn of_conn(c: &Conn) -> FlowKey {
        let (family, local, remote) = match (c.family, mapped_v4(&c.local), mapped_v4(&c.remote)) {
            (10, Some(l), Some(r)) => (2, l, r),
            _ => (c.family, c.local, c.remote),
        };
        FlowKey { ns: c.ns, family, local, lport: c.lport, remote, rport: c.rport }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d` in the first four bytes.
fn mapped_v4(a: &[u8; 16]) -> Option<[u8; 16]> {
    if a[..10].iter().all(|b| *b == 0) && a[10] == 0xff && a[11] == 0xff {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&a[12..16]);
        Some(v4)
    } else {
        None
    }
}

/// The application protocol a flow was recognised as (`Connection.applicationProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Mysql,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Mysql => "mysql",
        }
    }
}

#[derive(Debug)]
struct Flow {
    key: FlowKey,
    /// End (sequence number) of the last counted head segment: requests, responses.
    request_end: Option<u32>,
    response_end: Option<u32>,
    pending: [u64; PENDING],
    pending_len: usize,
    pending_first: usize,
    /// Capture time of the latest request head (0: none since capture began).
    last_request: u64,
    protocol: Option<Protocol>,
    /// Response times of this interval, sorted by (code, index).
    bins: Vec<Bin>,
    /// Seen in the latest connections check's table; reported in it.
    alive: bool,
    reported: bool,
}

impl Flow {
    fn reset(&mut self, key: FlowKey) {
        self.key = key;
        self.request_end = None;
        self.response_end = None;
        self.pending_len = 0;
        self.pending_first = 0;
        self.last_request = 0;
        self.protocol = None;
        self.bins.clear();
        // A new flow lives at least until the next check looks for its socket.
        self.alive = true;
        self.reported = false;
    }

    fn push_request(&mut self, ts: u64) {
        if self.pending_len == PENDING {
            // The oldest is given up: its response will pair with a later request.
            self.pending_first = (self.pending_first + 1) % PENDING;
            self.pending_len -= 1;
        }
        self.pending[(self.pending_first + self.pending_len) % PENDING] = ts;
        self.pending_len += 1;
        self.last_request = ts;
    }

    /// The request time a response answers: the oldest pending one (taken unless `interim`), or
    /// else the latest request; `None` if no request was ever seen.
    fn request_for(&mut self, interim: bool) -> Option<u64> {
        if self.pending_len == 0 {
            return (self.last_request != 0).then_some(self.last_request);
        }
        let t = self.pending[self.pending_first];
        if !interim {
            self.pending_first = (self.pending_first + 1) % PENDING;
            self.pending_len -= 1;
        }
        Some(t)
    }
}

/// Counters for `/status` and the self-metrics, since the agent started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HttpStats {
    /// Frames the capture handed over, and those that were a head this table counted.
    pub frames: u64,
    pub heads: u64,
    /// Responses counted into a flow.
    pub responses: u64,
    /// Head segments skipped as retransmitted or seen twice.
    pub duplicates: u64,
    /// New flows not tracked because the table was full.
    pub flows_over_limit: u64,
    /// Response times folded into a neighbouring bin because of the bin bounds.
    pub values_folded: u64,
    /// Responses of an interval whose connection was not reported (closed before the check,
    /// owner not reported, still priming), dropped at the check.
    pub responses_unreported: u64,
    /// Flows tracked now.
    pub flows: u64,
}

/// FNV-1a over the key's bytes: the table is the agent's own (no untrusted keys choose buckets
/// beyond what a peer's port choice can), and SipHash was a measurable share per packet.
#[derive(Default)]
pub struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub struct HttpFlows {
    index: HashMap<FlowKey, u32, BuildHasherDefault<FnvHasher>>,
    slots: Vec<Flow>,
    free: Vec<u32>,
    max_flows: usize,
    bins_total: usize,
    /// `(connection index, slot)` of this check's reported connections that have a flow, sorted.
    reported: Vec<(u32, u32)>,
    pub stats: HttpStats,
}

impl HttpFlows {
    pub fn new(max_flows: usize) -> HttpFlows {
        HttpFlows {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            max_flows,
            bins_total: 0,
            reported: Vec::new(),
            stats: HttpStats::default(),
        }
    }

    /// One captured packet of namespace `ns` (bytes from the IP header), taken at `ts_ns`.
    /// `listening`: `(namespace, port)` of listening sockets, sorted (the connections table's).
    pub fn on_packet(&mut self, ns: u64, ts_ns: u64, bytes: &[u8], listening: &[(u64, u16)]) {
        self.stats.frames += 1;
        let Some(seg) = packet::tcp_segment(bytes) else { return };
        let heads = http_head::classify(seg.payload, seg.payload_len);
        let server_sends = match heads {
            Heads::None => return,
            Heads::Requests(_) => false,
            Heads::Responses { .. } | Heads::MysqlGreeting => true,
        };
        let key = if server_sends {
            FlowKey { ns, family: seg.family, local: seg.src, lport: seg.sport, remote: seg.dst, rport: seg.dport }
        } else {
            FlowKey { ns, family: seg.family, local: seg.dst, lport: seg.dport, remote: seg.src, rport: seg.sport }
        };
        let Some(slot) = self.flow(key, listening) else { return };
        let end = seg.seq.wrapping_add(seg.payload_len);
        let f = &mut self.slots[slot];
        let last_end = if server_sends { &mut f.response_end } else { &mut f.request_end };
        if let Some(last) = *last_end {
            // Not past the last counted head segment: a retransmission or a second copy.
            if (end.wrapping_sub(last) as i32) <= 0 {
                self.stats.duplicates += 1;
                return;
            }
        }
        *last_end = Some(end);
        self.stats.heads += 1;
        match heads {
            Heads::None => {}
            Heads::Requests(n) => {
                for _ in 0..n {
                    f.push_request(ts_ns);
                }
            }
            Heads::MysqlGreeting => f.protocol = Some(Protocol::Mysql),
            Heads::Responses { n, codes } => {
                f.protocol = Some(Protocol::Http);
                for &code in codes.iter().take(usize::from(n)) {
                    let interim = (100..200).contains(&code) && code != 101;
                    let f = &mut self.slots[slot];
                    let secs = match f.request_for(interim) {
                        Some(req) => ts_ns.saturating_sub(req) as f64 / 1e9,
                        None => 0.0,
                    };
                    self.record(slot, code, secs);
                }
            }
        }
    }

    /// The slot of `key`, created when new and its port listens in its namespace.
    fn flow(&mut self, key: FlowKey, listening: &[(u64, u16)]) -> Option<usize> {
        if let Some(&slot) = self.index.get(&key) {
            return Some(slot as usize);
        }
        if listening.binary_search(&(key.ns, key.lport)).is_err() {
            return None;
        }
        if self.index.len() >= self.max_flows {
            self.stats.flows_over_limit += 1;
            return None;
        }
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                self.slots.push(Flow {
                    key,
                    request_end: None,
                    response_end: None,
                    pending: [0; PENDING],
                    pending_len: 0,
                    pending_first: 0,
                    last_request: 0,
                    protocol: None,
                    bins: Vec::new(),
                    alive: true,
                    reported: false,
                });
                self.slots.len() - 1
            }
        };
        self.slots[slot].reset(key);
        self.index.insert(key, slot as u32);
        self.stats.flows = self.index.len() as u64;
        Some(slot)
    }

    fn record(&mut self, slot: usize, code: u16, secs: f64) {
        let Some(index) = ddsketch::index(secs) else { return };
        let full = self.bins_total >= MAX_BINS_TOTAL;
        let bins = &mut self.slots[slot].bins;
        let at = bins.partition_point(|b| (b.code, b.index) < (code, index));
        let target = if bins.get(at).is_some_and(|b| b.code == code && b.index == index) {
            Some(at)
        } else if !full && bins.len() < MAX_BINS_PER_FLOW {
            bins.insert(at, Bin { code, index, count: 0 });
            self.bins_total += 1;
            Some(at)
        } else {
            // Bounded: into the nearest bin of the same code (the count stays exact). A code
            // with no bin yet cannot get one: that response is lost, and counted.
            self.stats.values_folded += 1;
            let below = at.checked_sub(1).filter(|&i| bins[i].code == code);
            let above = Some(at).filter(|&i| bins.get(i).is_some_and(|b| b.code == code));
            match (below, above) {
                (Some(b), Some(a)) => {
                    let (db, da) = (i32::from(index) - i32::from(bins[b].index), i32::from(bins[a].index) - i32::from(index));
                    Some(if db <= da { b } else { a })
                }
                (b, a) => b.or(a),
            }
        };
        if let Some(i) = target {
            bins[i].count = bins[i].count.saturating_add(1);
            self.stats.responses += 1;
        }
    }

    /// Before encoding a connections check: marks the flows whose socket is in `table` alive,
    /// and remembers which reported connections (`reported`: indexes into `table.conns`,
    /// ascending or not) have one.
    pub fn attribute(&mut self, table: &ConnTable, reported: impl Iterator<Item = u32>) {
        for f in &mut self.slots {
            f.alive = false;
            f.reported = false;
        }
        if self.index.is_empty() {
            self.reported.clear();
            return;
        }
        for c in &table.conns {
            if let Some(&slot) = self.index.get(&FlowKey::of_conn(c)) {
                self.slots[slot as usize].alive = true;
            }
        }
        self.reported.clear();
        for k in reported {
            let Some(c) = table.conns.get(k as usize) else { continue };
            if let Some(&slot) = self.index.get(&FlowKey::of_conn(c)) {
                self.reported.push((k, slot));
                self.slots[slot as usize].reported = true;
            }
        }
        self.reported.sort_unstable();
    }

    /// The protocol and this interval's bins of reported connection `conn` (an index into the
    /// table given to [`HttpFlows::attribute`]).
    pub fn for_conn(&self, conn: u32) -> Option<(Protocol, &[Bin])> {
        let i = self.reported.binary_search_by_key(&conn, |r| r.0).ok()?;
        let f = &self.slots[self.reported[i].1 as usize];
        Some((f.protocol?, &f.bins))
    }

    /// After encoding: this interval's figures are cleared (those of unreported connections
    /// counted as dropped), and flows whose socket is gone are removed.
    pub fn end_interval(&mut self) {
        for (slot, f) in self.slots.iter_mut().enumerate() {
            if !f.reported {
                self.stats.responses_unreported += f.bins.iter().map(|b| u64::from(b.count)).sum::<u64>();
            }
            self.bins_total -= f.bins.len().min(self.bins_total);
            f.bins.clear();
            if !f.alive && self.index.remove(&f.key).is_some() {
                self.free.push(slot as u32);
            }
        }
        self.reported.clear();
        self.stats.flows = self.index.len() as u64;
    }
}

/// For the fuzz target: packets (separated by `0xfe`) into a small table where every port of
/// namespace 1 listens; the bounds must hold and a check with no socket must empty it.
pub fn fuzz_packets(data: &[u8]) {
    static LISTENING: std::sync::OnceLock<Vec<(u64, u16)>> = std::sync::OnceLock::new();
    let listening = LISTENING.get_or_init(|| (0..=u16::MAX).map(|p| (1, p)).collect());
    let mut flows = HttpFlows::new(64);
    let mut ts = 1u64;
    for chunk in data.split(|b| *b == 0xfe) {
        ts += 1_000_000;
        flows.on_packet(1, ts, chunk, listening);
    }
    assert!(flows.index.len() <= 64);
    assert!(flows.slots.iter().all(|f| f.bins.len() <= MAX_BINS_PER_FLOW && f.pending_len <= PENDING));
    assert!(flows.bins_total <= MAX_BINS_TOTAL);
    flows.attribute(&ConnTable::new(1), std::iter::empty());
    flows.end_interval();
    assert!(flows.index.is_empty() && flows.bins_total == 0);
}
