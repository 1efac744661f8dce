//! HTTP (and MySQL) telemetry per server-side socket, from captured segment heads: the request
//! → response matcher. Each flow is the socket that answers (its local end sends the responses),
//! keyed by its 4-tuple exactly as the connections check reports it, so the figures ride on the
//! same `Connection` and pid. A request is captured arriving in the server's namespace, and its
//! response arriving in the client's, or leaving the host: two namespaces, one exchange. So the
//! key holds no namespace, except for loopback addresses, which every namespace has its own of
//! (and whose packets never leave it).
//!
//! Per flow: the end of the last counted head segment in each direction (a segment that does not
//! go past it is a retransmission, or the same packet seen again on a second interface or in a
//! second namespace, and is skipped); the capture times of request heads not answered yet, oldest first
//! (so pipelined responses pair with their own requests); and the response times as sketch bins
//! per status code. Response time is the response head's capture time minus its request head's:
//! on the wire, where the original measures from the server's last read to its first send (spec
//! http-inspection §1.3, §7.4). An interim `1xx` (not 101) is timed from the request it answers
//! without consuming it; a response with no request seen since capture began counts as 0, as the
//! original counts untracked sockets.
//!
//! Bounded: at most `max_flows` flows (new ones beyond are counted and not tracked), at most
//! [`MAX_BINS_PER_FLOW`] bins each and [`MAX_BINS_TOTAL`] overall, plus a first bin for
//! [`RESERVED_CODES`] codes a flow (past those a code collapses its lowest bins, so counts stay
//! exact), and at most [`CAPACITY_BOUND`] bins of room kept between intervals. A flow is created
//! only for a port that listens in its namespace (packets a bridge relays for other namespaces
//! match no socket here), and removed at the first connections check that no longer sees its
//! socket (one created after that check's dump waits for the next). Storage (slots, their bin
//! vectors, the index) is reused: a steady flow set allocates nothing.

use crate::model::connection::{Conn, ConnTable};
use crate::model::ddsketch::{self, Bin};
use crate::parse::http_head::{self, Heads};
use crate::parse::packet;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

pub const MAX_BINS_PER_FLOW: usize = 1024;
pub const MAX_BINS_TOTAL: usize = 64 * 1024;
/// Codes per flow whose first bin is admitted past [`MAX_BINS_TOTAL`] (so the bound on all
/// bins is that plus this many a flow).
pub const RESERVED_CODES: usize = 8;
/// A freed slot keeps at most this much bin capacity (a flow that needed many bins does not
/// pin them after it is gone).
const KEPT_CAPACITY: usize = 64;
/// The bin room all flows may keep between intervals (2 MiB); past it unused room is given back.
const CAPACITY_BOUND: usize = 4 * MAX_BINS_TOTAL;
/// Request heads waiting for their response, per flow (past it the oldest is given up).
const PENDING: usize = 8;
/// Heads waiting to be applied in time order (see [`HttpFlows::stage`]); past it the older half
/// is applied at once (counted in `settled_early`).
pub const MAX_STAGED: usize = 4096;

/// A server-side socket: local (the answering end) and remote addresses, and the namespace for
/// a loopback one (0 for others: see the module's notes). IPv4 (also IPv4-mapped IPv6) is family
/// 2 with the address in the first 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub scope: u64,
    pub family: u8,
    pub local: [u8; 16],
    pub lport: u16,
    pub remote: [u8; 16],
    pub rport: u16,
}

/// Six words, each mixed at once by [`FlowHasher::write_u64`] (the derived hash fed 61 bytes to
/// FNV one at a time: ~80 ns a key, and while any HTTP flow is tracked the connections check
/// looks up every socket once a cycle, and each reported one again). Every field `Eq` compares
/// is hashed.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let word = |a: &[u8; 16], at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&a[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        state.write_u64(self.scope);
        state.write_u64(u64::from(self.family) | u64::from(self.lport) << 8 | u64::from(self.rport) << 24);
        state.write_u64(word(&self.local, 0));
        state.write_u64(word(&self.local, 8));
        state.write_u64(word(&self.remote, 0));
        state.write_u64(word(&self.remote, 8));
    }
}

impl FlowKey {
    /// The key of a socket of the connections table.
    pub fn of_conn(c: &Conn) -> FlowKey {
        let (family, local, remote) = match (c.family, mapped_v4(&c.local), mapped_v4(&c.remote)) {
            (10, Some(l), Some(r)) => (2, l, r),
            _ => (c.family, c.local, c.remote),
        };
        FlowKey::new(c.ns, family, local, c.lport, remote, c.rport)
    }

    /// The key of a socket of namespace `ns`.
    pub fn new(ns: u64, family: u8, local: [u8; 16], lport: u16, remote: [u8; 16], rport: u16) -> FlowKey {
        let scope = if is_loopback(family, &local) { ns } else { 0 };
        FlowKey { scope, family, local, lport, remote, rport }
    }
}

/// `127.0.0.0/8` or `::1`: an address of the namespace's own loopback.
fn is_loopback(family: u8, a: &[u8; 16]) -> bool {
    match family {
        2 => a[0] == 127,
        _ => a[..15].iter().all(|b| *b == 0) && a[15] == 1,
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
    /// Waiting requests: capture time, the client's acknowledgement number when it sent the
    /// request (how much of the responses it had received), and whether it was a HEAD (whose
    /// response has no body whatever its `Content-Length` says).
    pending: [(u64, u32, bool); PENDING],
    pending_len: usize,
    pending_first: usize,
    /// Capture time of the latest request head (0: none since capture began).
    last_request: u64,
    /// The acknowledgement number of the latest request head segment (how much of the
    /// responses the client had received when it sent it), and the sequence number of the
    /// latest counted response head: together they tell a response the capture missed.
    request_ack: Option<u32>,
    /// Where the next response starts (sequence number), when the last counted response was
    /// framed by a length. A response head that starts past it means a response in between was
    /// missed: its request, the oldest waiting, is given up. This resynchronises pipelined
    /// exchanges too, which acknowledgement numbers cannot.
    response_next: Option<u32>,
    /// Sequence numbers of the latest counted final response heads (a few: pipelined responses the
    /// client had not received yet may follow the ones it had).
    response_seqs: [u32; 4],
    responses_seen: usize,
    protocol: Option<Protocol>,
    /// Response times of this interval, sorted by (code, index).
    bins: Vec<Bin>,
    /// Seen in the latest connections check's table; reported in it.
    alive: bool,
    reported: bool,
    /// Its socket was in the latest check's table (else it may be alive by its epoch only).
    in_table: bool,
    /// Holds a flow (else it is on the free list, its key stale).
    in_use: bool,
    /// The connections dump after which it was created (see [`HttpFlows::dumped`]).
    epoch: u64,
}

impl Flow {
    fn reset(&mut self, key: FlowKey) {
        self.key = key;
        self.request_end = None;
        self.response_end = None;
        self.pending_len = 0;
        self.pending_first = 0;
        self.last_request = 0;
        self.request_ack = None;
        self.response_next = None;
        self.responses_seen = 0;
        self.protocol = None;
        self.bins.clear();
        // A new flow lives at least until the next check looks for its socket.
        self.alive = true;
        self.reported = false;
        self.in_use = true;
    }

    /// A segment carrying `n` request heads, sent with acknowledgement number `ack`.
    ///
    /// Resynchronisation when the responses' framing is not known (see [`Flow::response_next`]
    /// for when it is): if the client received response bytes since its previous request head
    /// (its acknowledgement moved) but no counted final response head starts in them, a response
    /// was missed (a ring drop, a head past the snap length): the oldest waiting request was
    /// answered by it and is given up. Without this, one missed response would pair every later
    /// response of a keep-alive connection with the request before its own.
    fn push_requests(&mut self, ts: u64, n: u8, ack: u32, first_is_head: bool) -> bool {
        let mut resynced = false;
        if let (Some(prev), None) = (self.request_ack, self.response_next) {
            let moved = (ack.wrapping_sub(prev) as i32) > 0;
            let recent = &self.response_seqs[..self.responses_seen.min(self.response_seqs.len())];
            let counted =
                recent.iter().any(|&r| (r.wrapping_sub(prev) as i32) >= 0 && (ack.wrapping_sub(r) as i32) > 0);
            if moved && !counted {
                resynced = self.give_up_oldest();
            }
        }
        for k in 0..n {
            if self.pending_len == PENDING {
                // The oldest is given up: deeper pipelines than this are not paired exactly.
                self.pending_first = (self.pending_first + 1) % PENDING;
                self.pending_len -= 1;
            }
            self.pending[(self.pending_first + self.pending_len) % PENDING] = (ts, ack, k == 0 && first_is_head);
            self.pending_len += 1;
        }
        self.last_request = ts;
        self.request_ack = Some(ack);
        resynced
    }

    fn give_up_oldest(&mut self) -> bool {
        if self.pending_len == 0 {
            return false;
        }
        self.pending_first = (self.pending_first + 1) % PENDING;
        self.pending_len -= 1;
        true
    }

    /// A response head starts at `seq`, past where the previous response ended: the responses in
    /// between were missed. Their requests are the waiting ones the client sent before it had
    /// received up to `seq` (acknowledgement below it), one for each step of the client's
    /// acknowledgement (requests sent together, pipelined, share one: only the first of those
    /// is given up; a request sent after the client received all before `seq` is this
    /// response's own and stays).
    fn give_up_answered_before(&mut self, seq: u32) -> bool {
        let mut previous: Option<u32> = None;
        let mut gave_up = false;
        while self.pending_len > 0 {
            let (_, ack, _) = self.pending[self.pending_first];
            let before = (seq.wrapping_sub(ack) as i32) > 0;
            if !before || previous.is_some_and(|p| p == ack) {
                break;
            }
            previous = Some(ack);
            gave_up |= self.give_up_oldest();
        }
        gave_up
    }

    /// The request time a response (sent with acknowledgement number `ack`) answers: the oldest
    /// waiting one (taken unless `interim`). With none waiting: the latest request head, if the
    /// server had received nothing after that head's segment (more pipelined heads in it than
    /// the snap length showed), else `None` (a request the capture did not recognise; counted as
    /// 0, as the original counts sockets it did not track).
    fn request_for(&mut self, interim: bool, ack: u32) -> Option<(u64, bool)> {
        if self.pending_len == 0 {
            let nothing_after = self.request_end.is_some_and(|end| (ack.wrapping_sub(end) as i32) <= 0);
            return (self.last_request != 0 && nothing_after).then_some((self.last_request, false));
        }
        let (t, _, head) = self.pending[self.pending_first];
        if !interim {
            self.pending_first = (self.pending_first + 1) % PENDING;
            self.pending_len -= 1;
        }
        Some((t, head))
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
    /// Waiting requests given up because their response was missed (see `push_requests`).
    pub resyncs: u64,
    /// New flows not tracked because the table was full.
    pub flows_over_limit: u64,
    /// Response times folded into a neighbouring bin because of the bin bounds.
    pub values_folded: u64,
    /// Response times lost to the bin bounds (every code of a full flow down to one bin, or all
    /// flows' bins at their global bound).
    pub values_dropped: u64,
    /// Responses of an interval whose connection was not reported (closed before the check,
    /// owner not reported, still priming), dropped at the check.
    pub responses_unreported: u64,
    /// Flows tracked now.
    pub flows: u64,
    /// Heads applied before their watermark because too many waited (see [`MAX_STAGED`]).
    pub settled_early: u64,
}

/// The flow index's hasher: a folded multiply (wyhash's and foldhash's step) per word, with a
/// basis and a multiplier drawn at random per process, then a final mix; cheaper per packet than
/// SipHash. Not a proven keyed hash: it keeps a peer that picks its own address and port from
/// computing colliding keys offline, as the seeded FNV before it did, no more. Integers of any
/// width go through [`FlowHasher::write_u64`]; bytes (no key here hashes any) through FNV-1a.
pub struct FlowHasher {
    state: u64,
    multiplier: u64,
}

/// The per-process basis and multiplier of [`FlowHasher`].
#[derive(Clone)]
pub struct FlowHashSeed {
    basis: u64,
    multiplier: u64,
}

impl Default for FlowHashSeed {
    fn default() -> FlowHashSeed {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new();
        // Odd: never 0, so no word's product is 0 for every state.
        FlowHashSeed { basis: random.hash_one(0x5eed_u64), multiplier: random.hash_one(0x6d75_u64) | 1 }
    }
}

impl std::hash::BuildHasher for FlowHashSeed {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { state: self.basis, multiplier: self.multiplier }
    }
}

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        // A final mix, so that the seed reaches every bit the table uses.
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.state;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.state = h;
    }

    fn write_u64(&mut self, w: u64) {
        let r = u128::from(self.state ^ w) * u128::from(self.multiplier);
        self.state = (r as u64) ^ (r >> 64) as u64;
    }

    fn write_u8(&mut self, w: u8) {
        self.write_u64(u64::from(w));
    }

    fn write_u16(&mut self, w: u16) {
        self.write_u64(u64::from(w));
    }

    fn write_u32(&mut self, w: u32) {
        self.write_u64(u64::from(w));
    }

    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
}

/// A captured head, parsed, waiting for its turn: heads of one exchange come from different
/// rings (the request's namespace, the response's), read in whatever order the loop gets to them.
#[derive(Debug, Clone, Copy)]
struct Staged {
    ts_ns: u64,
    /// Arrival order, for heads with the same timestamp (two copies of one packet).
    order: u64,
    /// The namespace it was seen in.
    ns: u64,
    key: FlowKey,
    server_sends: bool,
    seq: u32,
    ack: u32,
    payload_len: u32,
    heads: Heads,
    head_method: bool,
}

pub struct HttpFlows {
    index: HashMap<FlowKey, u32, FlowHashSeed>,
    /// Heads not applied yet (see [`HttpFlows::stage`]); `staged_order` numbers them. The first
    /// `staged_sorted` are in time order; `merge` is the room [`HttpFlows::sort_staged`] merges in.
    staged: Vec<Staged>,
    staged_order: u64,
    staged_sorted: usize,
    merge: Vec<Staged>,
    slots: Vec<Flow>,
    free: Vec<u32>,
    max_flows: usize,
    bins_total: usize,
    /// `(connection index, slot)` of this check's reported connections that have a flow, sorted.
    reported: Vec<(u32, u32)>,
    /// Connections dumps so far: a flow created after the latest one may belong to a socket
    /// that dump did not see yet, and is kept until the next.
    epoch: u64,
    /// One bit per port: set for the local port of some flow's key (made by
    /// [`HttpFlows::attribute`]). A socket whose local port has no bit has no flow, and is not
    /// looked up: most of a busy host's sockets have none, and a look-up hashes the whole key.
    local_ports: Vec<u64>,
    pub stats: HttpStats,
}

impl HttpFlows {
    pub fn new(max_flows: usize) -> HttpFlows {
        HttpFlows {
            index: HashMap::default(),
            staged: Vec::new(),
            staged_order: 0,
            staged_sorted: 0,
            merge: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            max_flows,
            bins_total: 0,
            reported: Vec::new(),
            epoch: 0,
            local_ports: vec![0; 65_536 / 64],
            stats: HttpStats::default(),
        }
    }

    /// The connections table was just dumped: flows created from now on are kept through the
    /// next [`HttpFlows::attribute`] even if that table does not hold their socket.
    pub fn dumped(&mut self) {
        self.epoch += 1;
    }

    /// One captured packet, applied at once: [`HttpFlows::stage`] then [`HttpFlows::settle`]
    /// with no watermark (for a single source of packets in time order).
    pub fn on_packet(&mut self, ns: u64, ts_ns: u64, bytes: &[u8], listening: &[(u64, u16)]) {
        self.stage(ns, ts_ns, bytes, listening);
        self.settle(u64::MAX, listening);
    }

    /// One captured packet of namespace `ns` (bytes from the IP header), taken at `ts_ns`: kept
    /// as a parsed head until [`HttpFlows::settle`] applies it in time order. Not a head: nothing
    /// kept. At [`MAX_STAGED`] the older half is applied first (`listening`: see `settle`).
    pub fn stage(&mut self, ns: u64, ts_ns: u64, bytes: &[u8], listening: &[(u64, u16)]) {
        self.stats.frames += 1;
        let Some(seg) = packet::tcp_segment(bytes) else { return };
        let heads = http_head::classify(seg.payload, seg.payload_len);
        let server_sends = match heads {
            Heads::None => return,
            Heads::Requests(_) => false,
            Heads::Responses { .. } | Heads::MysqlGreeting => true,
        };
        let key = if server_sends {
            FlowKey::new(ns, seg.family, seg.src, seg.sport, seg.dst, seg.dport)
        } else {
            FlowKey::new(ns, seg.family, seg.dst, seg.dport, seg.src, seg.sport)
        };
        if self.staged.len() >= MAX_STAGED {
            self.stats.settled_early += (MAX_STAGED / 2) as u64;
            self.sort_staged();
            self.apply_oldest(MAX_STAGED / 2, listening);
        }
        self.staged_order += 1;
        self.staged.push(Staged {
            ts_ns,
            order: self.staged_order,
            ns,
            key,
            server_sends,
            seq: seg.seq,
            ack: seg.ack,
            payload_len: seg.payload_len,
            heads,
            head_method: seg.payload.starts_with(b"HEAD "),
        });
    }

    /// Applies the staged heads taken up to `until_ns`, oldest first. `listening`: `(namespace,
    /// port)` of listening sockets, sorted (the connections table's). The caller picks `until_ns`
    /// so that every ring has handed over what it took before then.
    pub fn settle(&mut self, until_ns: u64, listening: &[(u64, u16)]) {
        if self.staged.is_empty() {
            return;
        }
        self.sort_staged();
        let n = self.staged.partition_point(|h| h.ts_ns <= until_ns);
        self.apply_oldest(n, listening);
    }

    /// Oldest first. What was staged since the last call is sorted on its own (it is small, and
    /// each ring's part of it already in order), then merged into the sorted rest from where it
    /// begins to interleave (new heads are recent: near the end), through reused room.
    fn sort_staged(&mut self) {
        let key = |h: &Staged| (h.ts_ns, h.order);
        let (len, sorted) = (self.staged.len(), self.staged_sorted.min(self.staged.len()));
        self.staged_sorted = len;
        if sorted == len {
            return;
        }
        self.staged[sorted..].sort_unstable_by_key(key);
        if sorted == 0 || key(&self.staged[sorted - 1]) <= key(&self.staged[sorted]) {
            return;
        }
        let first_new = key(&self.staged[sorted]);
        let from = self.staged[..sorted].partition_point(|h| key(h) <= first_new);
        self.merge.clear();
        self.merge.extend_from_slice(&self.staged[from..sorted]);
        // Writing at `w` never passes the next unread new head (`b`): w = from + taken from
        // `merge` + taken from the new ones, b = sorted + taken from the new ones.
        let (mut a, mut b, mut w) = (0, sorted, from);
        while a < self.merge.len() {
            if b < len && key(&self.staged[b]) < key(&self.merge[a]) {
                self.staged[w] = self.staged[b];
                b += 1;
            } else {
                self.staged[w] = self.merge[a];
                a += 1;
            }
            w += 1;
        }
    }

    /// Heads staged and not applied yet.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Applies the first `n` staged heads (sorted: the oldest).
    fn apply_oldest(&mut self, n: usize, listening: &[(u64, u16)]) {
        for i in 0..n.min(self.staged.len()) {
            let h = self.staged[i];
            self.apply(h, listening);
        }
        let n = n.min(self.staged.len());
        self.staged.drain(..n);
        self.staged_sorted = self.staged_sorted.saturating_sub(n);
    }

    /// One head, in its turn. A flow is created only by a head seen in a namespace where its
    /// port listens: a request arriving at its server, a response leaving it (a response seen
    /// arriving at its client only adds to a flow its request made).
    fn apply(&mut self, h: Staged, listening: &[(u64, u16)]) {
        let Staged { ts_ns, ns, key, server_sends, heads, .. } = h;
        // A greeting is the server's first word, and between two namespaces of the host it is
        // seen only arriving at the client: it may start a flow where any namespace listens on
        // its port (no request ever comes first to do it).
        let may_create = listening.binary_search(&(ns, key.lport)).is_ok()
            || (matches!(heads, Heads::MysqlGreeting) && listening.iter().any(|l| l.1 == key.lport));
        let Some(slot) = self.flow(key, may_create) else { return };
        let f = &mut self.slots[slot];
        let last_end = if server_sends { &mut f.response_end } else { &mut f.request_end };
        if let Some(last) = *last_end {
            // Starting before the end of the last counted head segment: a retransmission (maybe
            // with more data after it) or a second copy. Far behind it (more than any window):
            // a new connection on the same 4-tuple.
            let behind = last.wrapping_sub(h.seq) as i32;
            if behind > 0 && behind < (1 << 30) {
                self.stats.duplicates += 1;
                return;
            }
        }
        *last_end = Some(h.seq.wrapping_add(h.payload_len));
        self.stats.heads += 1;
        match heads {
            Heads::None => {}
            Heads::Requests(n) => {
                if f.push_requests(ts_ns, n, h.ack, h.head_method) {
                    self.stats.resyncs += 1;
                }
            }
            Heads::MysqlGreeting => f.protocol = Some(Protocol::Mysql),
            Heads::Responses { n, codes, next } => {
                f.protocol = Some(Protocol::Http);
                if let Some(expected) = f.response_next {
                    let gap = h.seq.wrapping_sub(expected) as i32;
                    if gap > 0 && gap < (1 << 30) && f.give_up_answered_before(h.seq) {
                        self.stats.resyncs += 1;
                    }
                }
                // Where the response after these starts (a length past 1 GiB is not believed).
                f.response_next = next.filter(|o| *o < (1 << 30)).map(|o| h.seq.wrapping_add(o));
                // Interim responses do not answer a request: not what the client's
                // acknowledgement is checked against.
                if codes.iter().take(usize::from(n)).any(|&c| !(100..200).contains(&c) || c == 101) {
                    let k = f.responses_seen % f.response_seqs.len();
                    f.response_seqs[k] = h.seq;
                    f.responses_seen = f.responses_seen.wrapping_add(1);
                }
                let mut answered_head = false;
                for &code in codes.iter().take(usize::from(n)) {
                    let interim = (100..200).contains(&code) && code != 101;
                    let f = &mut self.slots[slot];
                    let secs = match f.request_for(interim, h.ack) {
                        Some((req, head)) => {
                            answered_head = head;
                            ts_ns.saturating_sub(req) as f64 / 1e9
                        }
                        None => 0.0,
                    };
                    self.record(slot, code, secs);
                }
                if answered_head {
                    // A response to HEAD has no body whatever its Content-Length says: where the
                    // next one starts is not known (the acknowledgement check takes over).
                    self.slots[slot].response_next = None;
                }
            }
        }
    }

    /// The slot of `key`, created when new if `may_create` (its port listens where it was seen).
    fn flow(&mut self, key: FlowKey, may_create: bool) -> Option<usize> {
        if let Some(&slot) = self.index.get(&key) {
            return Some(slot as usize);
        }
        if !may_create {
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
                    pending: [(0, 0, false); PENDING],
                    pending_len: 0,
                    pending_first: 0,
                    last_request: 0,
                    request_ack: None,
                    response_next: None,
                    response_seqs: [0; 4],
                    responses_seen: 0,
                    protocol: None,
                    // Room for a steady flow's spread of response times, so that its first
                    // intervals do not grow the vector bin by bin.
                    bins: Vec::with_capacity(32),
                    alive: true,
                    reported: false,
                    in_table: false,
                    in_use: true,
                    epoch: 0,
                });
                self.slots.len() - 1
            }
        };
        self.slots[slot].reset(key);
        self.slots[slot].epoch = self.epoch;
        self.index.insert(key, slot as u32);
        self.stats.flows = self.index.len() as u64;
        Some(slot)
    }

    /// Adds one response time to the flow's bins. Past the bounds, resolution goes, not counts:
    /// a code at its share collapses its lowest bins (DDSketch's own collapse, so the tail that
    /// p95 reads stays exact), and a code's first bin is admitted even when all flows' bins are
    /// at their bound, for [`RESERVED_CODES`] codes a flow.
    fn record(&mut self, slot: usize, code: u16, secs: f64) {
        let Some(index) = ddsketch::index(secs) else { return };
        let room = self.bins_total < MAX_BINS_TOTAL;
        let bins = &mut self.slots[slot].bins;
        let first = bins.partition_point(|b| b.code < code);
        let of_code = bins[first..].iter().take_while(|b| b.code == code).count();
        let at = first + bins[first..first + of_code].partition_point(|b| b.index < index);
        let stored = if at < first + of_code && bins[at].index == index {
            bins[at].count = bins[at].count.saturating_add(1);
            true
        } else if room && bins.len() < MAX_BINS_PER_FLOW {
            bins.insert(at, Bin { code, index, count: 1 });
            self.bins_total += 1;
            true
        } else if of_code >= 2 {
            self.stats.values_folded += 1;
            if at == first {
                // Below the code's lowest bin: into it (where a collapsed store puts it).
                bins[first].count = bins[first].count.saturating_add(1);
            } else {
                let lowest = bins.remove(first);
                bins[first].count = bins[first].count.saturating_add(lowest.count);
                bins.insert(at - 1, Bin { code, index, count: 1 });
            }
            true
        } else if of_code == 1 {
            // One bin for the code: it keeps the highest index, as a one-bin collapsing store.
            self.stats.values_folded += 1;
            let b = &mut bins[first];
            b.index = b.index.max(index);
            b.count = b.count.saturating_add(1);
            true
        } else {
            let codes = bins.windows(2).filter(|w| w[0].code != w[1].code).count() + usize::from(!bins.is_empty());
            if codes < RESERVED_CODES && bins.len() < MAX_BINS_PER_FLOW {
                bins.insert(at, Bin { code, index, count: 1 });
                self.bins_total += 1;
                true
            } else if collapse_lowest(bins) {
                self.stats.values_folded += 1;
                let at = bins.partition_point(|b| (b.code, b.index) < (code, index));
                bins.insert(at, Bin { code, index, count: 1 });
                true
            } else {
                false
            }
        };
        if stored {
            self.stats.responses += 1;
        } else {
            self.stats.values_dropped += 1;
        }
    }

    /// Before encoding a connections check: marks the flows whose socket is in `table` alive,
    /// and remembers which reported connections (`reported`: indexes into `table.conns`,
    /// ascending or not) have one.
    pub fn attribute(&mut self, table: &ConnTable, reported: impl Iterator<Item = u32>) {
        let epoch = self.epoch;
        for f in &mut self.slots {
            f.alive = f.epoch == epoch && epoch > 0;
            f.in_table = false;
            f.reported = false;
        }
        if self.index.is_empty() {
            self.reported.clear();
            return;
        }
        self.local_ports.fill(0);
        for key in self.index.keys() {
            if let Some(w) = self.local_ports.get_mut(usize::from(key.lport / 64)) {
                *w |= 1 << (key.lport % 64);
            }
        }
        let ports = &self.local_ports;
        let may_have_flow =
            |c: &Conn| ports.get(usize::from(c.lport / 64)).is_some_and(|w| w & (1 << (c.lport % 64)) != 0);
        for c in table.conns.iter().filter(|c| may_have_flow(c)) {
            if let Some(&slot) = self.index.get(&FlowKey::of_conn(c)) {
                let f = &mut self.slots[slot as usize];
                f.alive = true;
                f.in_table = true;
            }
        }
        self.reported.clear();
        for k in reported {
            let Some(c) = table.conns.get(k as usize).filter(|c| may_have_flow(c)) else { continue };
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
        // Live flows keep their bins' room between intervals (no allocation in steady state),
        // unless all of it together passes CAPACITY_BOUND: then each gives back what it did not
        // use (a flow that once needed many bins does not pin them).
        let capacity: usize = self.slots.iter().map(|f| f.bins.capacity()).sum();
        let trim = capacity > CAPACITY_BOUND;
        for (slot, f) in self.slots.iter_mut().enumerate().filter(|(_, f)| f.in_use) {
            if f.alive && !f.in_table {
                // Created after this check's dump, its socket not seen yet: what it recorded
                // goes out with the next check's figures rather than being lost.
                continue;
            }
            if !f.reported {
                self.stats.responses_unreported += f.bins.iter().map(|b| u64::from(b.count)).sum::<u64>();
            }
            let used = f.bins.len();
            self.bins_total -= used.min(self.bins_total);
            f.bins.clear();
            if trim && f.bins.capacity() > KEPT_CAPACITY.max(2 * used) {
                f.bins.shrink_to(KEPT_CAPACITY.max(2 * used));
            }
            if !f.alive {
                self.index.remove(&f.key);
                f.in_use = false;
                if f.bins.capacity() > KEPT_CAPACITY {
                    f.bins.shrink_to(KEPT_CAPACITY);
                }
                self.free.push(slot as u32);
            }
        }
        self.reported.clear();
        self.stats.flows = self.index.len() as u64;
    }
}

/// Merges the lowest bin of the code with the most bins (at least two) into its next one;
/// `false` when every code has one bin.
fn collapse_lowest(bins: &mut Vec<Bin>) -> bool {
    let (mut best, mut best_len, mut k) = (0usize, 0usize, 0usize);
    while k < bins.len() {
        let code = bins[k].code;
        let len = bins[k..].iter().take_while(|b| b.code == code).count();
        if len > best_len {
            (best, best_len) = (k, len);
        }
        k += len;
    }
    if best_len < 2 {
        return false;
    }
    let lowest = bins.remove(best);
    bins[best].count = bins[best].count.saturating_add(lowest.count);
    true
}

#[doc(hidden)]
/// For the fuzz target: packets (separated by `0xfe`) into a small table where every port of
/// namespace 1 listens; the bounds must hold and a check with no socket must empty it.
pub fn fuzz_packets(data: &[u8]) {
    static LISTENING: std::sync::OnceLock<Vec<(u64, u16)>> = std::sync::OnceLock::new();
    let listening = LISTENING.get_or_init(|| (0..=u16::MAX).map(|p| (1, p)).collect());
    let mut flows = HttpFlows::new(64);
    // Past the 3 ms the first packet may be taken early (a start at 1 underflowed).
    let mut ts = 10_000_000u64;
    for (i, chunk) in data.split(|b| *b == 0xfe).enumerate() {
        // Out of order by up to 3 ms (heads of two rings), settled behind a 2 ms watermark.
        ts += 1_000_000;
        let taken = ts - u64::from(chunk.first().copied().unwrap_or(0) % 4) * 1_000_000;
        flows.stage(1, taken, chunk, listening);
        if i % 3 == 0 {
            flows.settle(ts.saturating_sub(2_000_000), listening);
        }
        assert!(flows.staged() <= MAX_STAGED);
    }
    flows.settle(u64::MAX, listening);
    assert_eq!(flows.staged(), 0);
    assert!(flows.index.len() <= 64);
    assert!(flows.slots.iter().all(|f| f.bins.len() <= MAX_BINS_PER_FLOW && f.pending_len <= PENDING));
    assert!(flows.bins_total <= MAX_BINS_TOTAL);
    flows.attribute(&ConnTable::new(1), std::iter::empty());
    flows.end_interval();
    assert!(flows.index.is_empty() && flows.bins_total == 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::connection::Conn;

    const NS: u64 = 7;
    const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 8080);
    const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 2], 40000);
    const MS: u64 = 1_000_000;

    fn seed(basis: u64, multiplier: u64) -> FlowHashSeed {
        FlowHashSeed { basis, multiplier }
    }

    /// Every field of a flow key reaches its hash (one changed at a time, each one bit or one
    /// port apart), one flow reached two ways hashes alike, and the seed matters.
    #[test]
    fn flow_keys_hash_by_every_field() {
        use std::hash::BuildHasher;
        let hasher = seed(0x1234_5678_9abc_def1, 0x9e37_79b9_7f4a_7c15);
        let base = FlowKey::new(NS, 10, [0xfd; 16], 8080, [0xfe; 16], 40000);
        let mut keys = vec![base];
        for i in 0..16 {
            let mut k = base;
            k.local[i] ^= 1;
            keys.push(k);
            let mut k = base;
            k.remote[i] ^= 1;
            keys.push(k);
        }
        keys.push(FlowKey { scope: NS + 1, ..base });
        keys.push(FlowKey { family: 2, ..base });
        keys.push(FlowKey { lport: 8081, ..base });
        keys.push(FlowKey { rport: 40001, ..base });
        // Ports swapped, addresses swapped: other flows (an order-blind mix would tie them).
        keys.push(FlowKey { lport: 40000, rport: 8080, ..base });
        keys.push(FlowKey { local: base.remote, remote: base.local, ..base });
        let mut hashes: Vec<u64> = keys.iter().map(|k| hasher.hash_one(k)).collect();
        // An IPv4-mapped socket of the table and the plain IPv4 key of its packets.
        let from_table = FlowKey::of_conn(&conn(SERVER, CLIENT, true));
        let from_packet = FlowKey::new(NS, 2, v4(SERVER.0), SERVER.1, v4(CLIENT.0), CLIENT.1);
        assert_eq!(from_table, from_packet);
        assert_eq!(hasher.hash_one(from_table), hasher.hash_one(from_packet));
        assert_ne!(hasher.hash_one(base), seed(0x1234_5678_9abc_def3, 0x9e37_79b9_7f4a_7c15).hash_one(base));
        assert_ne!(hasher.hash_one(base), seed(0x1234_5678_9abc_def1, 0x9e37_79b9_7f4a_7c17).hash_one(base));
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), keys.len(), "two keys hashed alike");
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    /// Keys that differ only in a client's port (IPv4: mostly zero words) or in the low word of
    /// an IPv6 address spread over the index's buckets (the hash's low bits) and its control
    /// tags (the top seven), under two seeds: 65,536 keys over 1,024 buckets, 64 expected in
    /// each, none outside 24..=128; 128 tags, 512 expected, none outside 384..=640.
    #[test]
    fn flow_keys_spread_over_buckets_and_tags() {
        use std::hash::BuildHasher;
        for hasher in [seed(0x1234_5678_9abc_def1, 0x9e37_79b9_7f4a_7c15), seed(7, 0xff51_afd7_ed55_8ccd)] {
            let by_port = (0..=u16::MAX).map(|p| FlowKey::new(0, 2, v4([10, 0, 0, 1]), 80, v4([10, 0, 0, 2]), p));
            let by_address = (0..=u16::MAX).map(|low| {
                let mut remote = [0x20; 16];
                remote[8..].copy_from_slice(&u64::from(low).to_ne_bytes());
                FlowKey::new(0, 10, [0x20; 16], 443, remote, 50_000)
            });
            for (what, keys) in [("port", by_port.collect::<Vec<_>>()), ("address", by_address.collect())] {
                let (mut buckets, mut tags) = (vec![0u32; 1024], vec![0u32; 128]);
                for k in &keys {
                    let h = hasher.hash_one(k);
                    buckets[(h & 1023) as usize] += 1;
                    tags[(h >> 57) as usize] += 1;
                }
                let (lo, hi) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
                assert!((24..=128).contains(lo) && (24..=128).contains(hi), "{what}: buckets {lo}..{hi}");
                let (lo, hi) = (tags.iter().min().unwrap(), tags.iter().max().unwrap());
                assert!((384..=640).contains(lo) && (384..=640).contains(hi), "{what}: tags {lo}..{hi}");
            }
        }
    }

    /// An IPv4 TCP segment from `from` to `to` with sequence number `seq`.
    fn segment(from: ([u8; 4], u16), to: ([u8; 4], u16), seq: u32, payload: &[u8]) -> Vec<u8> {
        segment_ack(from, to, seq, 0, payload)
    }

    fn segment_ack(from: ([u8; 4], u16), to: ([u8; 4], u16), seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let total = (20 + 20 + payload.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend(from.0);
        p.extend(to.0);
        p.extend(from.1.to_be_bytes());
        p.extend(to.1.to_be_bytes());
        p.extend(seq.to_be_bytes());
        p.extend(ack.to_be_bytes());
        p.extend([5 << 4, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn request(seq: u32, path: &str) -> Vec<u8> {
        segment(CLIENT, SERVER, seq, format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
    }

    fn response(seq: u32, code: u16) -> Vec<u8> {
        segment(SERVER, CLIENT, seq, format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
    }

    fn listening() -> Vec<(u64, u16)> {
        vec![(NS, SERVER.1)]
    }

    /// The bins as (code, index, count).
    fn bins(f: &HttpFlows) -> Vec<(u16, i16, u32)> {
        f.slots.iter().flat_map(|s| s.bins.iter().map(|b| (b.code, b.index, b.count))).collect()
    }

    fn ix(secs: f64) -> i16 {
        ddsketch::index(secs).unwrap()
    }

    #[test]
    fn keep_alive_responses_are_timed_from_their_request() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        f.on_packet(NS, 1000 * MS, &request(1, "/a"), &l);
        f.on_packet(NS, 1020 * MS, &response(1, 200), &l);
        let req2 = 1 + request(1, "/a").len() as u32 - 40;
        let resp2 = 1 + response(1, 200).len() as u32 - 40;
        f.on_packet(NS, 1500 * MS, &request(req2, "/b"), &l);
        f.on_packet(NS, 1505 * MS, &response(resp2, 404), &l);
        assert_eq!(bins(&f), vec![(200, ix(0.020), 1), (404, ix(0.005), 1)]);
        assert_eq!((f.stats.responses, f.stats.heads, f.stats.flows), (2, 4, 1));
    }

    #[test]
    fn pipelined_requests_pair_with_their_own_responses() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        let three = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
        f.on_packet(NS, 1000 * MS, &segment(CLIENT, SERVER, 1, three), &l);
        let mut seq = 1;
        for (k, code) in [200u16, 503, 200].into_iter().enumerate() {
            let r = response(seq, code);
            seq += r.len() as u32 - 40;
            f.on_packet(NS, (1010 + 10 * k as u64) * MS, &r, &l);
        }
        // The 10, 20 and 30 ms of each response since the one segment that carried all three.
        let mut want = vec![(200, ix(0.010), 1), (200, ix(0.030), 1), (503, ix(0.020), 1)];
        want.sort_unstable();
        assert_eq!(bins(&f), want);
    }

    #[test]
    fn retransmitted_or_twice_seen_heads_count_once() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        f.on_packet(NS, 1000 * MS, &request(1, "/a"), &l);
        f.on_packet(NS, 1001 * MS, &request(1, "/a"), &l);
        f.on_packet(NS, 1020 * MS, &response(1, 200), &l);
        f.on_packet(NS, 1220 * MS, &response(1, 200), &l);
        assert_eq!(bins(&f), vec![(200, ix(0.020), 1)]);
        assert_eq!(f.stats.duplicates, 2);
    }

    /// Both directions of a keep-alive connection, with real sequence and acknowledgement
    /// numbers: `exchange` sends a request and its response (or not, when the capture misses it).
    struct Conversation {
        client_seq: u32,
        server_seq: u32,
    }

    impl Conversation {
        fn request(&mut self, f: &mut HttpFlows, at_ms: u64, payload: &[u8], seen: bool) {
            let p = segment_ack(CLIENT, SERVER, self.client_seq, self.server_seq, payload);
            self.client_seq = self.client_seq.wrapping_add(payload.len() as u32);
            if seen {
                f.on_packet(NS, at_ms * MS, &p, &listening());
            }
        }

        fn response(&mut self, f: &mut HttpFlows, at_ms: u64, code: u16, seen: bool) {
            let body = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok");
            let p = segment_ack(SERVER, CLIENT, self.server_seq, self.client_seq, body.as_bytes());
            self.server_seq = self.server_seq.wrapping_add(body.len() as u32);
            if seen {
                f.on_packet(NS, at_ms * MS, &p, &listening());
            }
        }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    impl Conversation {
        /// A response head with a `Content-Length` body of `body` bytes, sent in one segment
        /// (the body's segments are not heads: not captured).
        fn long_response(&mut self, f: &mut HttpFlows, at_ms: u64, code: u16, body: u32, seen: bool) {
            let head = format!("HTTP/1.1 {code} X\r\nContent-Length: {body}\r\n\r\n");
            let p = segment_ack(SERVER, CLIENT, self.server_seq, self.client_seq, head.as_bytes());
            self.server_seq = self.server_seq.wrapping_add(head.len() as u32 + body);
            if seen {
                f.on_packet(NS, at_ms * MS, &p, &listening());
            }
        }

        fn interim(&mut self, f: &mut HttpFlows, at_ms: u64) {
            let head = b"HTTP/1.1 100 Continue\r\n\r\n";
            let p = segment_ack(SERVER, CLIENT, self.server_seq, self.client_seq, head);
            self.server_seq = self.server_seq.wrapping_add(head.len() as u32);
            f.on_packet(NS, at_ms * MS, &p, &listening());
        }
    }

    impl Conversation {
        fn chunked_response(&mut self, f: &mut HttpFlows, at_ms: u64, code: u16, seen: bool) {
            let r = format!("HTTP/1.1 {code} X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
            let p = segment_ack(SERVER, CLIENT, self.server_seq, self.client_seq, r.as_bytes());
            self.server_seq = self.server_seq.wrapping_add(r.len() as u32);
            if seen {
                f.on_packet(NS, at_ms * MS, &p, &listening());
            }
        }
    }

    #[test]
    fn without_framing_the_acknowledgement_notices_a_missed_response() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        for k in 0..6u64 {
            c.request(&mut f, 1000 * k, GET, true);
            c.chunked_response(&mut f, 1000 * k + 5, 200, k != 2);
        }
        assert_eq!(bins(&f), vec![(200, ix(0.005), 5)]);
        assert_eq!(f.stats.resyncs, 1);
    }

    #[test]
    fn a_missed_response_after_a_head_response_is_noticed() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        c.request(&mut f, 0, b"HEAD /big HTTP/1.1\r\n\r\n", true);
        // Content-Length of the resource, no body.
        c.long_response(&mut f, 5, 200, 10_000, true);
        c.server_seq -= 10_000;
        for k in 1..6u64 {
            c.request(&mut f, 1000 * k, GET, true);
            c.response(&mut f, 1000 * k + 5, 200, k != 1);
        }
        assert_eq!(bins(&f), vec![(200, ix(0.005), 5)]);
        assert_eq!(f.stats.resyncs, 1);
    }

    #[test]
    fn exchanges_lost_whole_or_twice_in_a_row_leave_later_ones_paired() {
        // A request and its response both lost (a ring drop): the next response's own request
        // is not given up for it.
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        let post = b"POST /p HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
        for k in 0..4u64 {
            c.request(&mut f, 1000 * k, post, k != 1);
            c.client_seq += 100;
            c.response(&mut f, 1000 * k + 5, 200, k != 1);
        }
        assert_eq!(bins(&f), vec![(200, ix(0.005), 3)]);
        // Two responses missed in a row: both their requests are given up.
        let mut g = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        for k in 0..8u64 {
            c.request(&mut g, 1000 * k, GET, true);
            c.response(&mut g, 1000 * k + 5, 200, k != 2 && k != 3);
        }
        assert_eq!(bins(&g), vec![(200, ix(0.005), 6)]);
    }

    #[test]
    fn a_missed_final_response_after_100_continue_is_noticed() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        c.request(&mut f, 1000, b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n", true);
        c.interim(&mut f, 1001);
        c.client_seq += 100;
        c.response(&mut f, 1010, 201, false);
        for k in 1..6u64 {
            c.request(&mut f, 1000 + 1000 * k, GET, true);
            c.response(&mut f, 1005 + 1000 * k, 200, true);
        }
        assert_eq!(bins(&f), vec![(100, ix(0.001), 1), (200, ix(0.005), 5)]);
        assert_eq!(f.stats.resyncs, 1);
    }

    #[test]
    fn a_response_missed_in_a_pipelined_exchange_is_noticed_from_the_framing() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        // Batches of two pipelined requests a second apart, each answered at +5 and +10 ms; the
        // capture misses the first response of the second batch.
        for k in 0..4u64 {
            c.request(&mut f, 1000 * k, &[GET, GET].concat(), true);
            c.response(&mut f, 1000 * k + 5, 200, k != 1);
            c.response(&mut f, 1000 * k + 10, 200, true);
        }
        assert_eq!(bins(&f), vec![(200, ix(0.005), 3), (200, ix(0.010), 4)]);
        assert_eq!(f.stats.resyncs, 1);
    }

    #[test]
    fn pipelining_during_a_long_body_gives_nothing_up() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        c.request(&mut f, 1000, GET, true);
        // A 1 MB body streams; the client sends two more requests meanwhile, having received
        // 100 kB and then 500 kB of it.
        let start = c.server_seq;
        c.long_response(&mut f, 1005, 200, 1_000_000, true);
        let end = c.server_seq;
        c.server_seq = start.wrapping_add(100_000);
        c.request(&mut f, 1100, GET, true);
        c.server_seq = start.wrapping_add(500_000);
        c.request(&mut f, 1200, GET, true);
        c.server_seq = end;
        c.response(&mut f, 1300, 404, true);
        c.response(&mut f, 1400, 503, true);
        assert_eq!(f.stats.resyncs, 0);
        assert_eq!(bins(&f), vec![(200, ix(0.005), 1), (404, ix(0.2), 1), (503, ix(0.2), 1)]);
    }

    #[test]
    fn a_deep_pipeline_partly_received_gives_nothing_up() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        c.request(&mut f, 1000, &[GET; 7].concat(), true);
        let first = c.server_seq;
        for k in 0..6u64 {
            c.response(&mut f, 1010 + k, 200, true);
        }
        // The client has received only the first response when it sends its eighth request.
        let sent = c.server_seq;
        c.server_seq = first.wrapping_add(44);
        c.request(&mut f, 1020, GET, true);
        c.server_seq = sent;
        c.response(&mut f, 1030, 200, true);
        c.response(&mut f, 1040, 200, true);
        assert_eq!(f.stats.resyncs, 0);
        assert_eq!(bins(&f).iter().map(|b| b.2).sum::<u32>(), 8);
        assert!(bins(&f).contains(&(200, ix(0.020), 1)), "{:?}", bins(&f));
    }

    #[test]
    fn a_missed_response_costs_one_sample_not_the_rest_of_the_connection() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 4_000_000_000, server_seq: 7 };
        // One request a second, each answered in 5 ms; the capture misses the second response.
        for k in 0..10u64 {
            c.request(&mut f, 1000 * k, GET, true);
            c.response(&mut f, 1000 * k + 5, 200, k != 1);
        }
        // Without the resynchronisation, responses 3..10 would each be timed from the request
        // before their own: 1.005 s.
        assert_eq!(bins(&f), vec![(200, ix(0.005), 9)]);
        assert_eq!(f.stats.resyncs, 1);
    }

    #[test]
    fn pipelining_is_not_mistaken_for_missed_responses() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        // Two requests at once; the first answered; a third sent after the client got the first
        // response (its acknowledgement moved past a counted response); then both answered.
        c.request(&mut f, 1000, &[GET, GET].concat(), true);
        c.response(&mut f, 1010, 200, true);
        c.request(&mut f, 1015, GET, true);
        c.response(&mut f, 1030, 404, true);
        c.response(&mut f, 1045, 503, true);
        assert_eq!(bins(&f), vec![(200, ix(0.010), 1), (404, ix(0.030), 1), (503, ix(0.030), 1)]);
        assert_eq!(f.stats.resyncs, 0);
    }

    #[test]
    fn a_response_to_an_unrecognised_request_is_zero_and_pipelining_past_the_snap_is_not() {
        let mut f = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        c.request(&mut f, 1000, GET, true);
        c.response(&mut f, 1005, 200, true);
        // A method the capture does not know, 10 s later: its response is not timed from the GET.
        c.request(&mut f, 11_000, b"PROPFIND / HTTP/1.1\r\n\r\n", true);
        c.response(&mut f, 11_005, 207, true);
        assert_eq!(bins(&f), vec![(200, ix(0.005), 1), (207, ddsketch::ZERO, 1)]);
        // Five pipelined requests of which the snap length showed three (classify counts what
        // it sees): the 4th and 5th responses, with nothing received after that segment, are
        // timed from it.
        let mut g = HttpFlows::new(10);
        let mut c = Conversation { client_seq: 1, server_seq: 1 };
        let five = [GET, GET, GET, GET, GET].concat();
        let p = segment_ack(CLIENT, SERVER, c.client_seq, c.server_seq, &five);
        // Cut as the snap length cuts: the IP header still says five heads' worth.
        g.on_packet(NS, 1000 * MS, &p[..40 + 3 * GET.len()], &listening());
        c.client_seq += five.len() as u32;
        assert_eq!(g.slots[0].pending_len, 3);
        for k in 0..5u64 {
            c.response(&mut g, 1010 + k, 200, true);
        }
        assert_eq!(bins(&g).iter().map(|b| b.2).sum::<u32>(), 5);
        assert!(!bins(&g).iter().any(|b| b.1 == ddsketch::ZERO), "{:?}", bins(&g));
    }

    #[test]
    fn a_retransmission_with_more_data_after_it_counts_once() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        let head = b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\n";
        f.on_packet(NS, MS, &segment(CLIENT, SERVER, 1, head), &l);
        // The kernel resends the head merged with the body that followed it.
        f.on_packet(NS, 200 * MS, &segment(CLIENT, SERVER, 1, &[&head[..], b"body"].concat()), &l);
        assert_eq!((f.stats.heads, f.stats.duplicates, f.slots[0].pending_len), (1, 1, 1));
    }

    #[test]
    fn a_new_connection_on_the_same_four_tuple_is_not_taken_for_a_retransmission() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        f.on_packet(NS, 1000 * MS, &request(3_000_000_000, "/a"), &l);
        f.on_packet(NS, 1010 * MS, &response(3_000_000_000, 200), &l);
        // The port is reused with initial sequence numbers 1.5 G below the old ones (behind them
        // in sequence space, but farther than any window).
        f.on_packet(NS, 2000 * MS, &request(1_500_000_000, "/b"), &l);
        f.on_packet(NS, 2030 * MS, &response(1_500_000_000, 200), &l);
        assert_eq!(bins(&f), vec![(200, ix(0.010), 1), (200, ix(0.030), 1)]);
        assert_eq!(f.stats.duplicates, 0);
    }

    #[test]
    fn an_interim_response_does_not_consume_its_request_and_no_request_means_zero() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        // A response before any request was seen (capture started mid-exchange): 0, as upstream.
        f.on_packet(NS, 900 * MS, &response(1, 200), &l);
        f.on_packet(NS, 1000 * MS, &request(1, "/upload"), &l);
        let r1 = response(1, 200).len() as u32 - 40;
        f.on_packet(NS, 1002 * MS, &segment(SERVER, CLIENT, 1 + r1, b"HTTP/1.1 100 Continue\r\n\r\n"), &l);
        f.on_packet(NS, 1050 * MS, &response(1 + r1 + 25, 201), &l);
        assert_eq!(bins(&f), vec![(100, ix(0.002), 1), (200, ddsketch::ZERO, 1), (201, ix(0.050), 1)]);
    }

    #[test]
    fn only_listening_ports_get_flows_and_the_table_is_capped() {
        let mut f = HttpFlows::new(2);
        f.on_packet(NS, MS, &request(1, "/"), &[]);
        f.on_packet(NS, MS, &request(1, "/"), &[(NS + 1, SERVER.1)]);
        assert_eq!(f.stats.flows, 0, "not listening in that namespace: a relayed packet");
        let l = listening();
        for port in 0..3u16 {
            f.on_packet(NS, MS, &segment(([10, 0, 0, 9], 1000 + port), SERVER, 1, b"GET / HTTP/1.1\r\n\r\n"), &l);
        }
        assert_eq!((f.stats.flows, f.stats.flows_over_limit), (2, 1));
    }

    #[test]
    fn a_response_seen_arriving_in_the_clients_namespace_pairs_with_the_request_seen_in_the_servers() {
        const CLIENT_NS: u64 = 9;
        let mut f = HttpFlows::new(10);
        let l = listening();
        // A response seen only in the client's namespace, before any request: no flow (the
        // client's namespace does not listen on the server's port).
        f.on_packet(CLIENT_NS, 900 * MS, &response(1, 200), &l);
        assert_eq!(f.stats.flows, 0);
        f.on_packet(NS, 1000 * MS, &request(1, "/a"), &l);
        f.on_packet(CLIENT_NS, 1030 * MS, &response(1, 200), &l);
        assert_eq!(bins(&f), vec![(200, ix(0.030), 1)]);
        // A second copy of it (a bridge's routed copy in the host's namespace) is skipped.
        f.on_packet(1, 1031 * MS, &response(1, 200), &l);
        assert_eq!((f.stats.responses, f.stats.duplicates, f.stats.flows), (1, 1, 1));
        // The server's socket in its own namespace carries it.
        let mut t = ConnTable::new(10);
        t.conns.push(conn(SERVER, CLIENT, false));
        f.attribute(&t, [0u32].into_iter());
        assert_eq!(f.for_conn(0).map(|(p, b)| (p, b.len())), Some((Protocol::Http, 1)));
    }

    #[test]
    fn staged_heads_are_put_in_time_order_across_reads() {
        // Two rings read in turns, each in order, their blocks overlapping in time; some heads
        // applied between reads. Whatever the interleaving, the staged heads stay in time order
        // and none is lost or repeated.
        let mut f = HttpFlows::new(10);
        let l = listening();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut ring_a, mut ring_b, mut applied_until) = (0u64, 0u64, 0u64);
        let mut staged_total = 0usize;
        for round in 0..300 {
            for _ in 0..(next() % 6) {
                ring_a += 1 + next() % 10;
                f.stage(NS, ring_a, &request(round, "/a"), &l);
                staged_total += 1;
            }
            for _ in 0..(next() % 6) {
                ring_b += 1 + next() % 10;
                f.stage(NS, ring_b, &response(round, 200), &l);
                staged_total += 1;
            }
            f.sort_staged();
            let keys: Vec<(u64, u64)> = f.staged.iter().map(|h| (h.ts_ns, h.order)).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "round {round}: {keys:?}");
            assert!(keys.first().is_none_or(|k| k.0 > applied_until || applied_until == 0));
            if round % 7 == 0 {
                applied_until = ring_a.min(ring_b);
                f.settle(applied_until, &l);
                assert!(f.staged.iter().all(|h| h.ts_ns > applied_until));
            }
        }
        let left = f.staged();
        f.settle(u64::MAX, &l);
        assert_eq!(f.staged(), 0);
        assert!(staged_total > 500 && left > 0);
        assert_eq!(f.stats.frames as usize, staged_total, "every head staged once");
    }

    #[test]
    fn a_response_leaving_the_servers_namespace_may_start_a_flow() {
        // Captured leaving an interface of the server's namespace (its request was before the
        // capture began): counted, at 0 s.
        let mut f = HttpFlows::new(10);
        f.on_packet(NS, 1000 * MS, &response(1, 503), &listening());
        assert_eq!(bins(&f), vec![(503, ix(0.0), 1)]);
    }

    #[test]
    fn loopback_addresses_are_each_namespaces_own() {
        let lo_server = ([127, 0, 0, 1], 8080);
        let lo_client = ([127, 0, 0, 1], 40000);
        let l = vec![(NS, 8080), (9, 8080)];
        let mut f = HttpFlows::new(10);
        let req = segment(lo_client, lo_server, 1, b"GET / HTTP/1.1\r\n\r\n");
        let resp = segment(lo_server, lo_client, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        // The same loopback 4-tuple in two namespaces: two flows, each paired in its own.
        f.on_packet(NS, 1000 * MS, &req, &l);
        f.on_packet(9, 1001 * MS, &req, &l);
        f.on_packet(9, 1011 * MS, &resp, &l);
        f.on_packet(NS, 1040 * MS, &resp, &l);
        assert_eq!(f.stats.flows, 2);
        assert_eq!(f.stats.duplicates, 0);
        let mut b = bins(&f);
        b.sort_unstable();
        assert_eq!(b, vec![(200, ix(0.010), 1), (200, ix(0.040), 1)]);
        let mut t = ConnTable::new(10);
        t.conns.push(conn(lo_server, lo_client, false));
        f.attribute(&t, [0u32].into_iter());
        let (_, got) = f.for_conn(0).expect("the namespace's own loopback flow");
        assert_eq!((got[0].index, got.len()), (ix(0.040), 1), "namespace {NS}'s exchange, not namespace 9's");
    }

    /// A MySQL 8 HandshakeV10 packet: length, sequence 0, protocol 10, version, the rest.
    fn mysql_greeting() -> Vec<u8> {
        let mut greeting = vec![0x0a];
        greeting.extend_from_slice(b"8.0.36\0");
        greeting.extend([0u8; 40]);
        let mut payload = (greeting.len() as u32).to_le_bytes()[..3].to_vec();
        payload.push(0);
        payload.extend(greeting);
        payload
    }

    #[test]
    fn a_mysql_greeting_seen_arriving_at_its_client_labels_the_server_socket() {
        // The server in namespace NS, the client in namespace 9: the greeting is captured only
        // arriving in 9, which does not listen on the server's port.
        let mut f = HttpFlows::new(10);
        let payload = mysql_greeting();
        f.on_packet(9, MS, &segment(SERVER, CLIENT, 1, &payload), &listening());
        let mut t = ConnTable::new(10);
        t.conns.push(conn(SERVER, CLIENT, false));
        f.attribute(&t, [0u32].into_iter());
        assert_eq!(f.for_conn(0).map(|(p, b)| (p, b.len())), Some((Protocol::Mysql, 0)));
        // Where no namespace listens on the port, a greeting-like segment makes no flow.
        let mut g = HttpFlows::new(10);
        g.on_packet(9, MS, &segment(SERVER, CLIENT, 1, &payload), &[(NS, 1)]);
        assert_eq!(g.stats.flows, 0);
    }

    #[test]
    fn a_mysql_greeting_labels_the_server_socket() {
        let mut f = HttpFlows::new(10);
        let payload = mysql_greeting();
        f.on_packet(NS, MS, &segment(SERVER, CLIENT, 1, &payload), &listening());
        assert_eq!(f.slots[0].protocol, Some(Protocol::Mysql));
        assert!(bins(&f).is_empty());
    }

    fn conn(local: ([u8; 4], u16), remote: ([u8; 4], u16), mapped: bool) -> Conn {
        let ip = |a: [u8; 4]| {
            let v4 = std::net::Ipv4Addr::from(a);
            if mapped {
                v4.to_ipv6_mapped().to_string()
            } else {
                v4.to_string()
            }
        };
        let mut c = crate::checks::connections::test_conn(
            if mapped { 10 } else { 2 },
            &ip(local.0),
            local.1,
            &ip(remote.0),
            remote.1,
        );
        c.ns = NS;
        c.inode = 1;
        c
    }

    #[test]
    fn figures_go_to_the_reported_server_socket_once_and_gone_sockets_are_forgotten() {
        let l = listening();
        for mapped in [false, true] {
            let mut f = HttpFlows::new(10);
            f.on_packet(NS, 1000 * MS, &request(1, "/a"), &l);
            f.on_packet(NS, 1020 * MS, &response(1, 200), &l);
            let mut t = ConnTable::new(10);
            // The client socket (index 0) and the server socket (index 1), both reported.
            t.conns.push(conn(CLIENT, SERVER, mapped));
            t.conns.push(conn(SERVER, CLIENT, mapped));
            f.attribute(&t, [0u32, 1].into_iter());
            assert!(f.for_conn(0).is_none(), "the client socket gets nothing");
            let (p, b) = f.for_conn(1).expect("the server socket carries the figures");
            assert_eq!((p, b.len(), b[0].count), (Protocol::Http, 1, 1));
            f.end_interval();
            assert_eq!(f.stats.responses_unreported, 0);
            // Next interval: the same socket, no traffic: the label stays, no figures.
            f.attribute(&t, [1u32].into_iter());
            assert_eq!(f.for_conn(1).map(|(p, b)| (p, b.len())), Some((Protocol::Http, 0)));
            f.end_interval();
            // Traffic, but the connection is not reported: counted as dropped.
            f.on_packet(NS, 2000 * MS, &request(100, "/a"), &l);
            f.on_packet(NS, 2020 * MS, &response(100, 200), &l);
            f.attribute(&t, std::iter::empty());
            f.end_interval();
            assert_eq!(f.stats.responses_unreported, 1);
            assert_eq!(f.stats.flows, 1);
            // The socket is gone from the table: the flow goes, its slot is reused.
            f.attribute(&ConnTable::new(10), std::iter::empty());
            f.end_interval();
            assert_eq!((f.stats.flows, f.free.len(), f.bins_total), (0, 1, 0));
        }
    }

    #[test]
    fn bins_are_bounded_and_counts_stay_exact() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        let (mut req, mut resp) = (1u32, 1u32);
        // Six codes, each with 300 response times 2.05 % apart (1 µs to ~430 µs): 1,800
        // distinct bins wanted, 1,024 allowed.
        let mut t = 1_000 * MS;
        for i in 0..1800u32 {
            let r = request(req, "/");
            req += r.len() as u32 - 40;
            f.on_packet(NS, t, &r, &l);
            let code = 200 + (i / 300) as u16;
            let s = response(resp, code);
            resp += s.len() as u32 - 40;
            let latency = (1000.0 * 1.0205f64.powi((i % 300) as i32)) as u64;
            f.on_packet(NS, t + latency, &s, &l);
            t += MS;
        }
        let b = &f.slots[0].bins;
        assert_eq!(b.len(), MAX_BINS_PER_FLOW);
        assert_eq!(b.iter().map(|b| u64::from(b.count)).sum::<u64>(), 1800);
        assert_eq!(f.stats.responses, 1800);
        assert!(f.stats.values_folded >= 700, "{}", f.stats.values_folded);
        assert_eq!(f.stats.values_dropped, 0);
        assert!(b.windows(2).all(|w| (w[0].code, w[0].index) < (w[1].code, w[1].index)), "sorted, unique");
        // Every code still has its own bins (the first ones kept their place).
        for code in 200..206 {
            assert!(b.iter().any(|x| x.code == code), "code {code}");
        }
    }

    #[test]
    fn at_the_global_bound_counts_stay_exact_and_freed_slots_give_capacity_back() {
        let mut f = HttpFlows::new(1000);
        let l = listening();
        // 70 flows × 1,000 distinct response times: past the 65,536 bins of all flows.
        for port in 0..70u16 {
            let client = ([10, 0, 1, 1], 20_000 + port);
            let (mut req, mut resp) = (1u32, 1u32);
            for i in 0..1000u32 {
                let r = segment(client, SERVER, req, b"GET / HTTP/1.1\r\n\r\n");
                req += 18;
                f.on_packet(NS, 1_000 * MS, &r, &l);
                let s = segment(SERVER, client, resp, b"HTTP/1.1 200 X\r\n\r\n");
                resp += 18;
                let latency = (1000.0 * 1.0205f64.powi(i as i32)) as u64;
                f.on_packet(NS, 1_000 * MS + latency, &s, &l);
            }
        }
        // Past the bound, flows created after it get their code's first bin from the reserve.
        assert!(f.bins_total <= MAX_BINS_TOTAL + 5, "{}", f.bins_total);
        assert_eq!(f.stats.responses, 70_000, "every response counted");
        assert_eq!(f.stats.values_dropped, 0);
        // A new flow's codes still get bins (its 503 counts), within the reserve.
        let late = ([10, 0, 2, 2], 30_000);
        f.on_packet(NS, 5_000 * MS, &segment(late, SERVER, 1, b"GET / HTTP/1.1\r\n\r\n"), &l);
        f.on_packet(NS, 5_001 * MS, &segment(SERVER, late, 1, b"HTTP/1.1 503 X\r\n\r\n"), &l);
        assert!(bins(&f).contains(&(503, ix(0.001), 1)));
        assert!(f.bins_total <= MAX_BINS_TOTAL + 6);
        // All gone at the next check: no slot keeps more than KEPT_CAPACITY bins of room.
        f.attribute(&ConnTable::new(1), std::iter::empty());
        f.end_interval();
        assert!(f.slots.iter().all(|s| s.bins.capacity() <= KEPT_CAPACITY));
        assert_eq!(f.bins_total, 0);
    }

    #[test]
    fn a_flow_born_after_the_dump_waits_for_the_next_one() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        f.dumped();
        f.on_packet(NS, MS, &request(1, "/"), &l);
        f.on_packet(NS, 6 * MS, &response(1, 200), &l);
        // The dump before it could not hold its socket: kept, and so is what it recorded.
        f.attribute(&ConnTable::new(10), std::iter::empty());
        f.end_interval();
        assert_eq!(f.stats.flows, 1);
        assert_eq!((f.stats.responses_unreported, bins(&f)), (0, vec![(200, ix(0.005), 1)]));
        // The next dump does not hold it either: gone, its figures counted as unreported.
        f.dumped();
        f.attribute(&ConnTable::new(10), std::iter::empty());
        f.end_interval();
        assert_eq!((f.stats.flows, f.stats.responses_unreported), (0, 1));
    }

    #[test]
    fn live_flows_give_back_room_they_stopped_using_past_the_bound() {
        let mut f = HttpFlows::new(1000);
        let l = listening();
        let mut t = ConnTable::new(1000);
        // Four intervals; in each, 70 new connections answer 1,000 distinct response times, and
        // the older ones stay open, idle.
        for round in 0..4u16 {
            for k in 0..70u16 {
                let client = ([10, 0, 3, round as u8], 20_000 + k);
                t.conns.push(conn(SERVER, client, false));
                let (mut req, mut resp) = (1u32, 1u32);
                for i in 0..1000u32 {
                    f.on_packet(NS, 1_000 * MS, &segment(client, SERVER, req, b"GET / HTTP/1.1\r\n\r\n"), &l);
                    req += 18;
                    let latency = (1000.0 * 1.0205f64.powi(i as i32)) as u64;
                    f.on_packet(
                        NS,
                        1_000 * MS + latency,
                        &segment(SERVER, client, resp, b"HTTP/1.1 200 X\r\n\r\n"),
                        &l,
                    );
                    resp += 18;
                }
            }
            f.attribute(&t, std::iter::empty());
            f.end_interval();
        }
        assert_eq!(f.stats.flows, 280);
        let room: usize = f.slots.iter().map(|s| s.bins.capacity()).sum();
        assert!(room <= CAPACITY_BOUND, "{room} bins of room kept by idle flows");
    }

    #[test]
    fn a_freed_slot_never_removes_a_live_flow() {
        let mut f = HttpFlows::new(10);
        let l = listening();
        let other = ([10, 0, 0, 3], 40001);
        f.on_packet(NS, MS, &request(1, "/"), &l);
        f.on_packet(NS, MS, &segment(other, SERVER, 1, b"GET / HTTP/1.1\r\n\r\n"), &l);
        // Both sockets gone: both slots freed, their keys stale.
        f.attribute(&ConnTable::new(10), std::iter::empty());
        f.end_interval();
        assert_eq!(f.free.len(), 2);
        // The first flow comes back in the other slot; the slot that held it is still free.
        f.on_packet(NS, 2 * MS, &request(100, "/"), &l);
        let mut t = ConnTable::new(10);
        t.conns.push(conn(SERVER, CLIENT, false));
        f.attribute(&t, [0u32].into_iter());
        f.end_interval();
        assert_eq!(f.stats.flows, 1, "the live flow keeps its index entry");
        f.on_packet(NS, 3 * MS, &request(200, "/"), &l);
        f.on_packet(NS, 3 * MS + 5 * MS, &response(1, 200), &l);
        f.attribute(&t, [0u32].into_iter());
        assert_eq!(f.for_conn(0).map(|(_, b)| b.len()), Some(1));
    }

    #[test]
    fn the_fuzz_driver_holds_its_bounds_on_real_shapes() {
        let mut data = request(1, "/a");
        data.push(0xfe);
        data.extend(response(1, 200));
        fuzz_packets(&data);
        fuzz_packets(&[]);
        fuzz_packets(&[0xfe; 10]);
    }
}
