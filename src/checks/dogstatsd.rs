//! The DogStatsD aggregator (spec/dogstatsd.md §3): samples into contexts (name + sorted,
//! de-duplicated tags + host, compared exactly), 10 s buckets stamped with their start, closed
//! buckets flushed as series (gauge = last; counter = Σv/r ÷ 10 as `rate`; set = distinct count;
//! histogram/timer = `.max .median .avg .count .95percentile` with integer weights), counters
//! sending zeros for 300 s after their last sample, contexts freed 300 s after their last one.
//!
//! Memory: a known context costs nothing per sample (its key is interned once; the scratch
//! buffers that build a key are reused), except a histogram sample (16 bytes) and a new set
//! member (a 64-bit hash in a hash set, about 10 bytes a slot). What bounds them is the storage
//! allocated, not the entries: [`Limits::max_samples`] slots of the two in all (16 bytes each at
//! most: 16 MiB with the default), capacity kept for reuse after a flush included (a bucket keeps
//! its storage at its high-water mark while the context stays as busy, so a known context's
//! samples allocate nothing at any rate); a sample that would grow the storage past it first
//! takes back what flushed buckets keep, and is refused and counted (`samples_over_limit`) only
//! if it still does not fit. Past [`Limits::max_contexts`] live contexts a new one is refused and
//! counted.
//!
//! Pure: the caller passes the wall-clock second and the sink.

use crate::checks::metric::Kind;
use crate::encode::series::SeriesEncoder;
use crate::parse::dogstatsd::{self, Message, Metric, MetricType, Reject};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

pub const BUCKET_SECS: u64 = 10;
/// How long a quiet counter keeps sending zeros, and an idle context is kept
/// (`dogstatsd_expiry_seconds`, `defaultExpiry`).
pub const EXPIRY_SECS: u64 = 300;
/// Buckets a context holds at once: the open one and those waiting for a flush (a flush every
/// 15 s leaves at most three; the fourth is room for a late flush).
const SLOTS: usize = 4;
const NONE: u32 = u32::MAX;
/// A bucket's samples or members storage is kept at its high-water mark across flushes (the
/// next bucket of that slot, 40 s later, fills it again without allocating), counted against
/// [`Limits::max_samples`] all the while; a flush gives it back, down to this many slots, only
/// when the bucket it flushed used less than a quarter of it (the context got quieter).
const KEEP_SAMPLES: usize = 64;
/// The histogram aggregates and percentiles of the defaults (`histogram_aggregates`,
/// `histogram_percentiles`).
const PERCENTILE: i64 = 95;
/// The smallest sample rate taken as sent; a smaller one counts as this (and is counted as
/// `sample_rate_floored`). It bounds a histogram weight to 2^32, so that with at most
/// [`Limits::max_samples`] (2^20) samples the weights' sum and `95 * sum` stay far inside
/// `i64` (the arithmetic saturates besides). A counter's or histogram's sum can still overflow
/// to ±inf from huge finite values; such a result is dropped at flush and counted (`non_finite`).
/// The longest context key (name, explicit host and the sorted, de-duplicated tags joined,
/// origin tags included) a context is made for; a longer one is refused and counted
/// (`context_key_too_long`). With it and [`MAX_RAW_BYTES`] a context costs at most about
/// 2.6 KiB: 0.5 KiB of buckets and index entries, and the key and raw form, about 2 KiB together
/// (a key is never more than a byte longer than its raw form, which is kept only up to 1 KiB);
/// measured: 16,384 contexts of 2,012-byte keys take 41 MiB (`tests/dogstatsd.rs`).
pub const MAX_KEY_BYTES: usize = 2048;
/// The longest raw form (name, tag field as sent, origin tags) remembered to skip the tag sort;
/// a longer one is sorted on every sample instead (it costs time, not memory).
const MAX_RAW_BYTES: usize = 1024;
const MIN_RATE: f64 = 1.0 / (1u64 << 32) as f64;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Live contexts at most (`STS_DOGSTATSD_MAX_CONTEXTS`).
    pub max_contexts: usize,
    /// Histogram sample and set member slots allocated at most, all contexts together (their
    /// storage's capacity, kept capacity included).
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_contexts: 4096, max_samples: 1 << 20 }
    }
}

/// What the aggregator saw and refused (`/status`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Metric messages accepted (a packed message counts once).
    pub metrics: u64,
    pub events: u64,
    pub service_checks: u64,
    pub parse_error_metric: u64,
    pub parse_error_event: u64,
    pub parse_error_service_check: u64,
    /// Values that are not finite: refused at parse, or a flush result (a sum that overflowed
    /// to ±inf or NaN), whose point is then not sent (spec §3.7).
    pub non_finite: u64,
    pub type_conflict: u64,
    pub sample_rate_invalid: u64,
    /// Rates below [`MIN_RATE`], taken as [`MIN_RATE`].
    pub sample_rate_floored: u64,
    pub contexts_over_limit: u64,
    /// Samples refused because their context key is longer than [`MAX_KEY_BYTES`].
    pub context_key_too_long: u64,
    pub samples_over_limit: u64,
    /// Times the storage kept by flushed buckets was given back for a sample that would have
    /// passed the bound.
    pub storage_reclaims: u64,
    pub distribution_dropped: u64,
    pub service_check_dropped: u64,
    /// Buckets overwritten before a flush took them (the flush came more than 30 s late).
    pub buckets_overrun: u64,
    pub series_flushed: u64,
    pub contexts_expired: u64,
}

/// The identity hasher of maps whose keys are already hashes.
#[derive(Default)]
struct IdHasher(u64);

#[cfg(test)]
thread_local! {
    /// Calls of `IdHasher::write_u64` (tests count hash-table operations with it).
    static ID_HASHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, v: u64) {
        #[cfg(test)]
        ID_HASHES.with(|c| c.set(c.get() + 1));
        self.0 = v;
    }
}

/// Multiplies and folds the 128-bit product's halves (wyhash's mixing step).
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ (r >> 64) as u64
}

/// The context and raw-form hashes, seeded per aggregator from the process's random keys: the
/// maps' chains are then not predictable by a sender (a chosen collision would cost a chain walk
/// per sample, bounded by the context cap). 16 bytes a step, one multiply each, and the tail in
/// one step (a byte a step cost more than the rest: about 7 rounds a part).
#[derive(Debug, Clone, Copy)]
struct KeyHash(u64);

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;

impl KeyHash {
    fn random() -> KeyHash {
        use std::hash::BuildHasher;
        KeyHash(std::collections::hash_map::RandomState::new().hash_one(0x7a9u64))
    }

    /// The bytes folded into `h`, their length included.
    fn mix(self, bytes: &[u8], h: u64) -> u64 {
        let w8 = |c: &[u8], at: usize| u64::from_le_bytes(c[at..at + 8].try_into().unwrap_or_default());
        let w4 = |c: &[u8], at: usize| u64::from(u32::from_le_bytes(c[at..at + 4].try_into().unwrap_or_default()));
        let mut h = h ^ self.0 ^ (bytes.len() as u64).wrapping_mul(K1);
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            h = fold(w8(c, 0) ^ K0 ^ h, w8(c, 8) ^ self.0);
        }
        // The 1 to 15 bytes left as two words, read overlapping (the length is mixed in above).
        let r = chunks.remainder();
        let n = r.len();
        let (a, b) = match n {
            0 => return h,
            8.. => (w8(r, 0), w8(r, n - 8)),
            4.. => (w4(r, 0) << 32 | w4(r, n - 4), 0),
            _ => (u64::from(r[0]) << 16 | u64::from(r[n / 2]) << 8 | u64::from(r[n - 1]), 0),
        };
        fold(a ^ K0 ^ h, b ^ self.0 ^ K1)
    }

    fn finish(self, h: u64) -> u64 {
        fold(h ^ K1, self.0 ^ K0)
    }

    fn hash(self, bytes: &[u8], seed: u64) -> u64 {
        self.finish(self.mix(bytes, seed))
    }

    /// The hash of a raw form (name, tag field, origin tags), each part's length mixed in.
    fn raw(self, name: &[u8], tags: &[u8], origin: &[u8]) -> u64 {
        self.finish(self.mix(origin, self.mix(tags, self.mix(name, 0x7a9))))
    }
}

/// One bucket of one context.
#[derive(Debug, Default)]
struct Bucket {
    /// Bucket start (unix seconds); 0: empty.
    start: u64,
    kind: Option<MetricType>,
    /// Gauge: the last value. Counter and histogram: Σ v/r.
    value: f64,
    /// Histogram: Σ weights.
    count: i64,
    /// Counter: the time of its last sample (unix seconds), which starts its 300 s of zeros.
    last_at: u64,
    /// Histogram: (value, weight).
    samples: Vec<(f64, i64)>,
    /// Set: the members' 64-bit hashes (an insert is O(1); the storage is kept across buckets).
    members: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

impl Bucket {
    /// Slots its samples and members storage holds allocated, counted in `samples_held`.
    fn capacity(&self) -> usize {
        self.samples.capacity() + self.members.capacity()
    }
}

#[derive(Debug)]
struct Context {
    /// name, then host, then the tags joined by `,`.
    key: Box<[u8]>,
    name_len: u32,
    /// `u32::MAX`: no `host:` tag (the agent's host name); otherwise the explicit host's length.
    host_len: u32,
    hash: u64,
    /// The next context with the same hash (a chain; `NONE` ends it).
    next: u32,
    last_seen: u64,
    /// The last real counter sample (open buckets included): the context lives until its
    /// zeros end.
    last_counter: Option<u64>,
    /// The last counter sample in a bucket already flushed: the zeros of the buckets after it.
    counter_flushed: Option<u64>,
    buckets: [Bucket; SLOTS],
    /// The first raw form this context arrived in (name, the `#` field as sent, origin tags),
    /// with the tag field's length: a repeat of it skips the tag sort (clients send a context's
    /// tags in the same order every time).
    raw: Box<[u8]>,
    raw_tags_len: u32,
}

/// A context key's name, explicit host and comma-joined tags.
fn key_parts(key: &[u8], name_len: u32, host_len: u32) -> (&[u8], Option<&[u8]>, &[u8]) {
    let n = name_len as usize;
    let h = if host_len == NONE { 0 } else { host_len as usize };
    (&key[..n], (host_len != NONE).then(|| &key[n..n + h]), &key[n + h..])
}

/// Tags of one message, with the origin's tags: `host:` taken out (it sets the host),
/// `dd.internal.entity_id:` dropped, empty ones dropped, sorted bytewise and de-duplicated.
/// Reused scratch; borrowing nothing between messages.
#[derive(Debug, Default)]
pub struct TagScratch {
    bytes: Vec<u8>,
    ranges: Vec<(u32, u32)>,
}

impl TagScratch {
    /// Collects the tags; returns the explicit host (`Some(b"")`: hostless), if any.
    pub fn collect<'m>(&mut self, message: &'m [u8], origin: &[u8]) -> Option<&'m [u8]> {
        self.bytes.clear();
        self.ranges.clear();
        let mut host = None;
        for t in dogstatsd::tags(message) {
            if let Some(h) = t.strip_prefix(b"host:") {
                host = Some(h);
                continue;
            }
            if t.starts_with(b"dd.internal.entity_id:") {
                continue;
            }
            self.push(t);
        }
        for t in dogstatsd::tags(origin) {
            self.push(t);
        }
        let b = &self.bytes;
        self.ranges.sort_unstable_by(|x, y| b[x.0 as usize..x.1 as usize].cmp(&b[y.0 as usize..y.1 as usize]));
        self.ranges.dedup_by(|x, y| b[x.0 as usize..x.1 as usize] == b[y.0 as usize..y.1 as usize]);
        host
    }

    fn push(&mut self, t: &[u8]) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(t);
        self.ranges.push((start, self.bytes.len() as u32));
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|&(a, b)| &self.bytes[a as usize..b as usize])
    }

    /// Appends the tags joined by `,`.
    pub fn join_into(&self, out: &mut Vec<u8>) {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(t);
        }
    }
}

pub struct Aggregator {
    limits: Limits,
    contexts: Vec<Context>,
    /// Slots of freed contexts, for reuse.
    free: Vec<u32>,
    /// Hash → the first context of its chain.
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    /// Hash of a raw form → its context (see `Context::raw`); verified by an exact compare.
    raw_index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    tags: TagScratch,
    key: Vec<u8>,
    points: Vec<(u64, f64)>,
    /// Slots allocated for histogram samples and set members, all contexts (`Bucket::capacity`).
    samples_held: usize,
    /// Set members are hashed with SipHash under keys random per process, so a sender cannot
    /// craft colliding members (a chosen collision would cost up to 1 Mi probes a sample). The
    /// context keys' cheaper hash ([`KeyHash`]) is seeded too, though a collision there costs
    /// less (a chain walk bounded by the context cap).
    member_hasher: std::collections::hash_map::RandomState,
    key_hash: KeyHash,
    /// The cutoff of the last flush: buckets before it were flushed.
    last_cutoff: u64,
    /// The flush under way, when one was started and not every context was visited.
    pass: Option<Pass>,
    /// Some flushed bucket keeps storage beyond [`KEEP_SAMPLES`] for its slot's next bucket
    /// (set by a flush, cleared by [`Aggregator::reclaim_idle`]).
    idle_kept: bool,
    pub stats: AggregatorStats,
}

/// A flush under way ([`Aggregator::flush_start`]): the clock and cutoff it began with, which
/// every chunk keeps (samples taken between chunks land in open buckets it does not close), and
/// the next context to visit.
#[derive(Debug, Clone, Copy)]
struct Pass {
    now: u64,
    cutoff: u64,
    /// Buckets `[zeros_from, cutoff)` are closed by this flush (counter zeros go in them).
    zeros_from: u64,
    next: usize,
}

/// Series of one context at most: gauge, counter and set (one each, whatever buckets they
/// span), and a histogram's five.
const SERIES_PER_CONTEXT: usize = 8;
/// Points of one context's series at most: a point per bucket slot in each, and a counter's 30
/// zeros (300 s of buckets after a stall).
const POINTS_PER_CONTEXT: usize = SERIES_PER_CONTEXT * SLOTS + (EXPIRY_SECS / BUCKET_SECS) as usize;

/// The most a context's series can take in a payload, `host_len` being the payload's host
/// name. Each serie: its name, tags and explicit host (their bytes at most the key's) escaped
/// at most 6 to 1 (`\u00XX`), with 2 quotes and a comma per tag (a tag of 1 byte and its
/// separator: at most 3 per key byte); the agent's host name escaped; 160 bytes of field names,
/// suffix, type and interval. Each point: `[`, a u64, `,`, an f64 (24 characters at most), `]`
/// and `,`: 48 bytes.
fn context_json_bound(key_len: usize, host_len: usize) -> usize {
    SERIES_PER_CONTEXT * (9 * key_len + 6 * host_len + 160) + POINTS_PER_CONTEXT * 48
}

fn bucket_start(t: u64) -> u64 {
    t - t % BUCKET_SECS
}

fn series_kind(k: MetricType) -> Kind {
    match k {
        MetricType::Counter => Kind::Rate,
        _ => Kind::Gauge,
    }
}

impl Aggregator {
    /// `now`: unix seconds at start; buckets before it count as flushed (for counter zeros).
    pub fn new(limits: Limits, now: u64) -> Aggregator {
        Aggregator {
            limits,
            contexts: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            raw_index: HashMap::default(),
            tags: TagScratch::default(),
            key: Vec::with_capacity(1024),
            points: Vec::with_capacity(8),
            samples_held: 0,
            member_hasher: std::collections::hash_map::RandomState::new(),
            key_hash: KeyHash::random(),
            last_cutoff: bucket_start(now),
            pass: None,
            idle_kept: false,
            stats: AggregatorStats::default(),
        }
    }

    /// Live contexts.
    pub fn contexts(&self) -> usize {
        self.contexts.len() - self.free.len()
    }

    /// For the fuzz target (`fuzz/fuzz_targets/dogstatsd_aggregate.rs`): the accounting and the
    /// indexes against the contexts themselves. `samples_held` equals the slots allocated in every
    /// bucket and stays within `max_samples`; the live contexts (those not on the free list) stay
    /// within `max_contexts`, have a name, and are each found through their hash's chain, which
    /// holds only live contexts of that hash; every raw form indexed names a live context whose
    /// raw form hashes to it. `Err` says what failed.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let allocated: usize = self.contexts.iter().flat_map(|c| c.buckets.iter()).map(Bucket::capacity).sum();
        if self.samples_held != allocated || allocated > self.limits.max_samples {
            return Err(format!(
                "samples_held {}, allocated {allocated}, max {}",
                self.samples_held, self.limits.max_samples
            ));
        }
        let mut live = vec![true; self.contexts.len()];
        for &f in &self.free {
            if !std::mem::take(&mut live[f as usize]) {
                return Err(format!("slot {f} twice on the free list"));
            }
        }
        if self.contexts() > self.limits.max_contexts {
            return Err(format!("{} live contexts, max {}", self.contexts(), self.limits.max_contexts));
        }
        for (i, c) in self.contexts.iter().enumerate().filter(|(i, _)| live[*i]) {
            let (mut at, mut steps) = (self.index.get(&c.hash).copied().unwrap_or(NONE), 0);
            while at != NONE && at as usize != i && steps <= self.contexts.len() {
                at = self.contexts[at as usize].next;
                steps += 1;
            }
            if c.name_len == 0 || at as usize != i {
                return Err(format!("context {i} (name {} bytes) not in its hash's chain", c.name_len));
            }
        }
        for (&h, &head) in &self.index {
            let (mut at, mut steps) = (head, 0);
            while at != NONE {
                let c = self.contexts.get(at as usize).filter(|_| live[at as usize] && steps <= self.contexts.len());
                if c.is_none_or(|c| c.hash != h) {
                    return Err(format!("the chain of {h:#x} holds slot {at}, freed or of another hash"));
                }
                at = c.map_or(NONE, |c| c.next);
                steps += 1;
            }
        }
        for (&rh, &ci) in &self.raw_index {
            let c = self.contexts.get(ci as usize).filter(|c| live[ci as usize] && !c.raw.is_empty());
            let ok = c.is_some_and(|c| {
                let (n, t) = (c.name_len as usize, c.raw_tags_len as usize);
                self.key_hash.raw(&c.raw[..n], &c.raw[n..n + t], &c.raw[n + t..]) == rh
            });
            if !ok {
                return Err(format!("raw form {rh:#x} names slot {ci}, freed, without a raw form, or hashing apart"));
            }
        }
        Ok(())
    }

    /// Every message of one datagram, at `now` (unix seconds). `origin`: the sender's tags
    /// (comma-separated; empty for UDP). Events go to `events`.
    pub fn ingest(
        &mut self,
        datagram: &[u8],
        truncated: bool,
        origin: &[u8],
        now: u64,
        events: &mut super::dogstatsd_events::EventBuffer,
    ) {
        for m in dogstatsd::messages(datagram, truncated) {
            match m {
                Ok(Message::Metric(m)) => self.sample(&m, origin, now),
                Ok(Message::Event(e)) => {
                    self.stats.events += 1;
                    events.push(&e, origin, now, &mut self.tags);
                }
                Ok(Message::ServiceCheck(_)) => {
                    self.stats.service_checks += 1;
                    self.stats.service_check_dropped += 1;
                }
                Err(Reject::Metric) => self.stats.parse_error_metric += 1,
                Err(Reject::NonFinite) => self.stats.non_finite += 1,
                Err(Reject::Event) => self.stats.parse_error_event += 1,
                Err(Reject::ServiceCheck) => self.stats.parse_error_service_check += 1,
            }
        }
    }

    /// One metric message.
    pub fn sample(&mut self, m: &Metric<'_>, origin: &[u8], now: u64) {
        self.stats.metrics += 1;
        if m.kind == MetricType::Distribution {
            // Sketches are not sent (`enable_payloads.sketches=false`): no context, no memory.
            self.stats.distribution_dropped += 1;
            return;
        }
        let rate = match m.rate {
            None => 1.0,
            Some(r) if r.is_finite() && r > 0.0 && r < MIN_RATE => {
                self.stats.sample_rate_floored += 1;
                MIN_RATE
            }
            Some(r) if r.is_finite() && r > 0.0 && r <= 1.0 => r,
            Some(_) => {
                self.stats.sample_rate_invalid += 1;
                1.0
            }
        };
        let Some(ci) = self.context_of_raw(m.name, m.tags, origin) else {
            return; // counted by `context`
        };
        let start = bucket_start(now);
        let slot = (start / BUCKET_SECS) as usize % SLOTS;
        let c = &mut self.contexts[ci];
        c.last_seen = now;
        let b = &mut c.buckets[slot];
        if b.start != start {
            if b.start != 0 {
                self.stats.buckets_overrun += 1;
            }
            b.samples.clear();
            b.members.clear();
            b.start = start;
            b.kind = Some(m.kind);
            b.value = 0.0;
            b.count = 0;
            b.last_at = 0;
        } else if b.kind != Some(m.kind) {
            // The first sample decides the bucket's type; another type is refused (Ours, §3.1).
            self.stats.type_conflict += 1;
            return;
        }
        let scale = 1.0 / rate;
        match m.kind {
            MetricType::Gauge => {
                if let Some(v) = m.values().last() {
                    b.value = v;
                }
            }
            MetricType::Counter => {
                for v in m.values() {
                    b.value += v * scale;
                }
                b.last_at = b.last_at.max(now);
                c.last_counter = Some(c.last_counter.map_or(now, |t| t.max(now)));
            }
            MetricType::Histogram => {
                // `int64(1/r)`: truncated (r = 0.3 weighs 3).
                let weight = scale as i64;
                for v in m.values() {
                    let s = &self.contexts[ci].buckets[slot].samples;
                    let (len, cap) = (s.len(), s.capacity());
                    // A full Vec doubles (to 4 at least).
                    if len == cap && !self.may_grow(cap.max(4)) {
                        self.stats.samples_over_limit += 1;
                        continue;
                    }
                    let b = &mut self.contexts[ci].buckets[slot];
                    b.samples.push((v, weight));
                    b.value += v * scale;
                    b.count = b.count.saturating_add(weight);
                    self.samples_held += b.samples.capacity() - cap;
                }
            }
            MetricType::Set => {
                use std::hash::BuildHasher;
                let member = self.member_hasher.hash_one(m.raw_value);
                if !b.members.contains(&member) {
                    // Under the same bound as histogram samples; a full set about doubles (its
                    // growth adds at most its capacity, or 4 slots to an empty one).
                    let (len, cap) = (b.members.len(), b.members.capacity());
                    if len == cap && !self.may_grow(cap.max(4)) {
                        self.stats.samples_over_limit += 1;
                    } else {
                        let members = &mut self.contexts[ci].buckets[slot].members;
                        members.insert(member);
                        self.samples_held += members.capacity() - cap;
                    }
                }
            }
            MetricType::Distribution => {}
        }
    }

    /// Whether storage may grow by `grow` slots within [`Limits::max_samples`]: at once, or
    /// after the storage flushed buckets keep was given back ([`Aggregator::reclaim_idle`]).
    fn may_grow(&mut self, grow: usize) -> bool {
        let fits = |a: &Aggregator| a.samples_held + grow <= a.limits.max_samples;
        fits(self) || (self.reclaim_idle() && fits(self))
    }

    /// Gives back the storage that flushed buckets keep for their slot's next bucket (beyond
    /// [`KEEP_SAMPLES`]), every context's: a sample that would pass the bound takes it before it
    /// is refused, so keeping storage to spare allocations never costs a sample. Once per flush
    /// at most (a flush that keeps some storage allows the next). `false`: nothing was kept.
    fn reclaim_idle(&mut self) -> bool {
        if !self.idle_kept {
            return false;
        }
        self.idle_kept = false;
        self.stats.storage_reclaims += 1;
        for c in &mut self.contexts {
            for b in c.buckets.iter_mut().filter(|b| b.start == 0) {
                let cap = b.capacity();
                if b.samples.capacity() > KEEP_SAMPLES {
                    b.samples.shrink_to(KEEP_SAMPLES);
                }
                if b.members.capacity() > KEEP_SAMPLES {
                    b.members.shrink_to(KEEP_SAMPLES);
                }
                self.samples_held -= cap - b.capacity();
            }
        }
        true
    }

    /// The context of a raw form: found by its hash and an exact compare when seen before (no
    /// tag sort), else by the sorted key, and then remembered for this raw form.
    fn context_of_raw(&mut self, name: &[u8], tags: &[u8], origin: &[u8]) -> Option<usize> {
        let rh = self.key_hash.raw(name, tags, origin);
        if let Some(&ci) = self.raw_index.get(&rh) {
            let c = &self.contexts[ci as usize];
            let (n, t) = (name.len(), tags.len());
            if c.name_len as usize == n
                && c.raw_tags_len as usize == t
                && c.raw.len() == n + t + origin.len()
                && c.raw[..n] == *name
                && c.raw[n..n + t] == *tags
                && (origin.is_empty() || c.raw[n + t..] == *origin)
            {
                return Some(ci as usize);
            }
        }
        let ci = self.context(name, tags, origin)?;
        let c = &mut self.contexts[ci];
        let raw_len = name.len() + tags.len() + origin.len();
        if c.raw.is_empty() && raw_len <= MAX_RAW_BYTES && !self.raw_index.contains_key(&rh) {
            c.raw = [name, tags, origin].concat().into_boxed_slice();
            c.raw_tags_len = tags.len() as u32;
            self.raw_index.insert(rh, ci as u32);
        }
        Some(ci)
    }

    /// The context of (name, tags + origin, host), interned on first sight; `None` (counted) at
    /// the cap or for a key longer than [`MAX_KEY_BYTES`].
    fn context(&mut self, name: &[u8], tags: &[u8], origin: &[u8]) -> Option<usize> {
        let host = self.tags.collect(tags, origin);
        self.key.clear();
        self.key.extend_from_slice(name);
        if let Some(h) = host {
            self.key.extend_from_slice(h);
        }
        self.tags.join_into(&mut self.key);
        if self.key.len() > MAX_KEY_BYTES {
            self.stats.context_key_too_long += 1;
            return None;
        }
        let host_len = host.map_or(NONE, |h| h.len() as u32);
        let name_len = name.len() as u32;
        let h = self.key_hash.hash(&self.key, u64::from(name_len) << 32 | u64::from(host_len));
        let mut at = self.index.get(&h).copied().unwrap_or(NONE);
        let head = at;
        while at != NONE {
            let c = &self.contexts[at as usize];
            if c.name_len == name_len && c.host_len == host_len && *c.key == *self.key {
                return Some(at as usize);
            }
            at = c.next;
        }
        if self.contexts() >= self.limits.max_contexts {
            self.stats.contexts_over_limit += 1;
            return None;
        }
        let c = Context {
            key: self.key.as_slice().into(),
            name_len,
            host_len,
            hash: h,
            next: head,
            last_seen: 0,
            last_counter: None,
            counter_flushed: None,
            buckets: Default::default(),
            raw: Box::default(),
            raw_tags_len: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.contexts[i as usize] = c;
                i
            }
            None => {
                self.contexts.push(c);
                (self.contexts.len() - 1) as u32
            }
        };
        self.index.insert(h, i);
        Some(i as usize)
    }

    /// Writes the series of every bucket closed at `now` (unix seconds) into `out`, counter
    /// zeros included, and frees expired contexts, all in one payload however large (a flush
    /// under way is finished first, into the same payload). Returns how many series it wrote.
    /// The agent flushes in chunks instead ([`Aggregator::flush_start`]).
    pub fn flush(&mut self, now: u64, out: &mut SeriesEncoder<'_>) -> usize {
        let mut written = 0;
        if self.flushing() {
            written += self.flush_more(out, usize::MAX);
        }
        self.flush_start(now);
        written + self.flush_more(out, usize::MAX)
    }

    /// Starts a flush at `now` (unix seconds): the buckets closed at `now` are written, context
    /// by context, by [`Aggregator::flush_more`] calls, and contexts idle for 300 s are freed on
    /// the way. Samples may be taken between the calls. `false`, and nothing changes, when a
    /// flush is under way: it is finished first.
    pub fn flush_start(&mut self, now: u64) -> bool {
        if self.pass.is_some() {
            return false;
        }
        let cutoff = bucket_start(now);
        // Buckets [zeros_from, cutoff) are closed by this flush (at most 300 s of them after a stall).
        let zeros_from = self.last_cutoff.max(cutoff.saturating_sub(EXPIRY_SECS));
        self.pass = Some(Pass { now, cutoff, zeros_from, next: 0 });
        true
    }

    /// Whether a flush is under way (started, and some contexts not visited yet).
    pub fn flushing(&self) -> bool {
        self.pass.is_some()
    }

    /// Writes the next contexts' series of the flush under way into `out` while they fit in
    /// `max_bytes` (the payload's length, its closing `]}` included; a context whose series may
    /// not fit is left for the next call, unless `out` holds no serie yet: a payload holds one
    /// context at least). Returns how many series it wrote; when every context was visited the
    /// flush is over ([`Aggregator::flushing`] is `false`). Nothing happens without a flush
    /// under way.
    pub fn flush_more(&mut self, out: &mut SeriesEncoder<'_>, max_bytes: usize) -> usize {
        let Some(mut pass) = self.pass else { return 0 };
        let host_len = out.host_len();
        let mut written = 0;
        while pass.next < self.contexts.len() {
            let ci = pass.next;
            let c = &mut self.contexts[ci];
            if c.key.is_empty() && c.name_len == 0 {
                pass.next += 1;
                continue; // a freed slot
            }
            if out.count() > 0 && out.len() + 2 + context_json_bound(c.key.len(), host_len) > max_bytes {
                self.pass = Some(pass);
                self.stats.series_flushed += written as u64;
                return written;
            }
            pass.next += 1;
            let mut closed = [usize::MAX; SLOTS];
            let mut n = 0;
            for (i, b) in c.buckets.iter().enumerate() {
                if b.start != 0 && b.start + BUCKET_SECS <= pass.cutoff {
                    closed[n] = i;
                    n += 1;
                }
            }
            let closed = &mut closed[..n];
            closed.sort_unstable_by_key(|&i| c.buckets[i].start);
            let (zeros_from, cutoff) = (pass.zeros_from, pass.cutoff);
            written += write_context(c, closed, zeros_from, cutoff, &mut self.points, &mut self.stats.non_finite, out);
            for &i in closed.iter() {
                let b = &mut c.buckets[i];
                let cap = b.capacity();
                b.start = 0;
                b.kind = None;
                // Kept at its high-water mark while the context is as busy (no allocation for
                // the next bucket of this slot); given back once it used under a quarter.
                let used = b.samples.len();
                b.samples.clear();
                if b.samples.capacity() > KEEP_SAMPLES && used < b.samples.capacity() / 4 {
                    b.samples.shrink_to(KEEP_SAMPLES.max(2 * used));
                }
                let used = b.members.len();
                b.members.clear();
                if b.members.capacity() > KEEP_SAMPLES && used < b.members.capacity() / 4 {
                    b.members.shrink_to(KEEP_SAMPLES.max(2 * used));
                }
                self.samples_held -= cap - b.capacity();
                self.idle_kept |= b.samples.capacity() > KEEP_SAMPLES || b.members.capacity() > KEEP_SAMPLES;
            }
            let open = c.buckets.iter().any(|b| b.start != 0);
            let zeros_done = c.last_counter.is_none_or(|t| t + EXPIRY_SECS <= cutoff);
            if !open && zeros_done && c.last_seen + EXPIRY_SECS <= pass.now {
                self.free_context(ci);
            }
        }
        self.pass = None;
        self.last_cutoff = self.last_cutoff.max(pass.cutoff);
        self.stats.series_flushed += written as u64;
        written
    }

    fn free_context(&mut self, ci: usize) {
        let (h, next) = (self.contexts[ci].hash, self.contexts[ci].next);
        let me = ci as u32;
        // Unlink from its chain.
        let mut at = self.index.get(&h).copied().unwrap_or(NONE);
        if at == me {
            if next == NONE {
                self.index.remove(&h);
            } else {
                self.index.insert(h, next);
            }
        } else {
            while at != NONE {
                let n = self.contexts[at as usize].next;
                if n == me {
                    self.contexts[at as usize].next = next;
                    break;
                }
                at = n;
            }
        }
        let c = &self.contexts[ci];
        if !c.raw.is_empty() {
            let (n, t) = (c.name_len as usize, c.raw_tags_len as usize);
            let (name, tags, origin) = (&c.raw[..n], &c.raw[n..n + t], &c.raw[n + t..]);
            let rh = self.key_hash.raw(name, tags, origin);
            if self.raw_index.get(&rh) == Some(&me) {
                self.raw_index.remove(&rh);
            }
        }
        let c = &mut self.contexts[ci];
        c.raw = Box::default();
        c.key = Box::default();
        c.name_len = 0;
        c.next = NONE;
        self.samples_held -= c.buckets.iter().map(Bucket::capacity).sum::<usize>();
        c.buckets = Default::default();
        self.free.push(me);
        self.stats.contexts_expired += 1;
    }
}

/// The series of one context's closed buckets (`closed`: ascending by start).
fn write_context(
    c: &mut Context,
    closed: &[usize],
    zeros_from: u64,
    cutoff: u64,
    points: &mut Vec<(u64, f64)>,
    non_finite: &mut u64,
    out: &mut SeriesEncoder<'_>,
) -> usize {
    let mut written = 0;
    let (name, host, tags) = key_parts(&c.key, c.name_len, c.host_len);
    let buckets = &mut c.buckets;
    let tag_iter = || tags.split(|&b| b == b',').filter(|t| !t.is_empty());
    for kind in [MetricType::Gauge, MetricType::Counter, MetricType::Set] {
        points.clear();
        for &i in closed {
            let b = &buckets[i];
            if b.kind != Some(kind) {
                continue;
            }
            let v = match kind {
                MetricType::Counter => b.value / BUCKET_SECS as f64,
                MetricType::Set => b.members.len() as f64,
                _ => b.value,
            };
            // A sum can overflow to ±inf (or NaN) from finite samples; such a point is not sent.
            if !v.is_finite() {
                *non_finite += 1;
                continue;
            }
            points.push((b.start, v));
        }
        if kind == MetricType::Counter && c.last_counter.is_some() {
            // One zero per closed bucket without data for 300 s after the last sample before it
            // (Ours, §3.6: every bucket, not only those other contexts filled). The last sample
            // before a bucket is the latest of the flushed ones and of the closed buckets before
            // it: a sample in a still-open bucket does not move it.
            let data = |s: u64| {
                closed.iter().map(|&i| &buckets[i]).find(|b| b.start == s && b.kind == Some(MetricType::Counter))
            };
            let mut last = c.counter_flushed;
            for &i in closed {
                let b = &buckets[i];
                if b.kind == Some(MetricType::Counter) && b.start < zeros_from {
                    last = last.max(Some(b.last_at));
                }
            }
            let mut s = zeros_from;
            while s < cutoff {
                match (data(s), last) {
                    // A bucket with data gets no zero, even when its sum was not finite.
                    (Some(b), _) => last = last.max(Some(b.last_at)),
                    (None, Some(l)) if s > l && s < l + EXPIRY_SECS => points.push((s, 0.0)),
                    _ => {}
                }
                s += BUCKET_SECS;
            }
            c.counter_flushed = last;
            points.sort_unstable_by_key(|p| p.0);
        }
        if !points.is_empty() {
            out.serie((name, ""), series_kind(kind), points, tag_iter(), host);
            written += 1;
        }
    }
    // Histograms: five series, each with a point per closed bucket.
    let hist = |b: &Bucket| b.kind == Some(MetricType::Histogram) && b.count > 0;
    if !closed.iter().any(|&i| hist(&buckets[i])) {
        return written;
    }
    let mut stats = [[(0u64, 0f64); SLOTS]; 5];
    let mut n = [0; 5];
    for &i in closed {
        let b = &mut buckets[i];
        if !hist(b) {
            continue;
        }
        let s = histogram(b);
        for (k, v) in s.iter().enumerate() {
            // Only the avg (sum / count) can be non-finite: the sum overflowed.
            if !v.is_finite() {
                *non_finite += 1;
                continue;
            }
            stats[k][n[k]] = (b.start, *v);
            n[k] += 1;
        }
    }
    for (k, (suffix, kind)) in [
        (".max", Kind::Gauge),
        (".median", Kind::Gauge),
        (".avg", Kind::Gauge),
        (".count", Kind::Rate),
        (".95percentile", Kind::Gauge),
    ]
    .into_iter()
    .enumerate()
    {
        if n[k] > 0 {
            out.serie((name, suffix), kind, &stats[k][..n[k]], tag_iter(), host);
            written += 1;
        }
    }
    written
}

/// max, median, avg, count (per second) and the 95th percentile of a histogram bucket, with the
/// original's integer arithmetic (`histogram.go` `flush`, spec §3.5).
fn histogram(b: &mut Bucket) -> [f64; 5] {
    b.samples.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
    let count = b.count;
    let at = |target: i64| {
        let mut run = 0i64;
        for &(v, w) in &b.samples {
            run = run.saturating_add(w);
            if run > target {
                return v;
            }
        }
        b.samples.last().map_or(0.0, |s| s.0)
    };
    let max = b.samples.last().map_or(0.0, |s| s.0);
    let median = at((count - 1) / 2);
    let p95 = at((PERCENTILE.saturating_mul(count) - 1) / 100);
    [max, median, b.value / count as f64, count as f64 / BUCKET_SECS as f64, p95]
}

#[cfg(test)]
mod tests {
    use super::super::dogstatsd_events::EventBuffer;
    use super::*;
    use serde_json::Value;

    const T0: u64 = 1_700_000_000;

    fn flush(a: &mut Aggregator, now: u64) -> Vec<Value> {
        let mut buf = Vec::new();
        let mut e = SeriesEncoder::begin(&mut buf, "i-0abc", now, BUCKET_SECS);
        a.flush(now, &mut e);
        e.finish();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        v["series"].as_array().unwrap().clone()
    }

    fn feed(a: &mut Aggregator, d: &str, now: u64) {
        let mut ev = EventBuffer::new(1 << 20);
        a.ingest(d.as_bytes(), false, b"", now, &mut ev);
    }

    fn find<'a>(s: &'a [Value], name: &str) -> &'a Value {
        s.iter().find(|x| x["metric"] == name).unwrap_or_else(|| panic!("{name} in {s:?}"))
    }

    #[test]
    fn the_spec_example() {
        let mut a = Aggregator::new(Limits::default(), T0);
        for _ in 0..3 {
            feed(&mut a, "page.views:1|c|@0.5|#env:prod,b", T0 + 3);
        }
        feed(&mut a, "lat:10|ms\nlat:30|ms", T0 + 7);
        // The bucket is still open at T0 + 9.
        assert!(flush(&mut a, T0 + 9).is_empty());
        let s = flush(&mut a, T0 + 15);
        assert_eq!(s.len(), 6, "{s:?}");
        let pv = find(&s, "page.views");
        assert_eq!(pv["points"], serde_json::json!([[T0, 0.6]]));
        assert_eq!(pv["tags"], serde_json::json!(["b", "env:prod"]));
        assert_eq!(
            (pv["type"].as_str(), pv["interval"].as_u64(), pv["host"].as_str()),
            (Some("rate"), Some(10), Some("i-0abc"))
        );
        for (n, v, t) in [
            ("lat.max", 30.0, "gauge"),
            ("lat.median", 10.0, "gauge"),
            ("lat.avg", 20.0, "gauge"),
            ("lat.count", 0.2, "rate"),
            ("lat.95percentile", 30.0, "gauge"),
        ] {
            let x = find(&s, n);
            assert_eq!((x["points"][0][1].as_f64(), x["type"].as_str()), (Some(v), Some(t)), "{n}");
            assert_eq!(x["tags"], serde_json::json!([]));
        }
    }

    #[test]
    fn gauges_sets_hosts_and_two_buckets_in_one_flush() {
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "g:1|g|#b,a,b,host:web1\ng:2|g|#a,b,host:web1\ns:x|s\ns:x|s\ns:1|s\ns:1.0|s", T0 + 1);
        feed(&mut a, "g:5|g|#a,b,host:web1\ng:6|g|#a,host:", T0 + 12);
        let s = flush(&mut a, T0 + 25);
        let g: Vec<_> = s.iter().filter(|x| x["metric"] == "g").collect();
        assert_eq!(g.len(), 2);
        let web = g.iter().find(|x| x["host"] == "web1").unwrap();
        assert_eq!(web["points"], serde_json::json!([[T0, 2.0], [T0 + 10, 5.0]]));
        assert_eq!(web["tags"], serde_json::json!(["a", "b"]));
        let hostless = g.iter().find(|x| x["host"] == "").unwrap();
        assert_eq!(hostless["points"], serde_json::json!([[T0 + 10, 6.0]]));
        assert_eq!(find(&s, "s")["points"], serde_json::json!([[T0, 3.0]]));
        assert_eq!(a.contexts(), 3);
    }

    #[test]
    fn counters_send_zeros_for_300_s_then_expire() {
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "c:5|c", T0 + 1);
        let s = flush(&mut a, T0 + 15);
        assert_eq!(find(&s, "c")["points"], serde_json::json!([[T0, 0.5]]));
        let mut zeros = Vec::new();
        let mut t = T0 + 15;
        while t < T0 + 700 {
            t += 15;
            for x in flush(&mut a, t) {
                zeros.extend(
                    x["points"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())),
                );
            }
        }
        // Every bucket starting before last sample + 300 s (T0+10 … T0+300), none missing, then nothing.
        let want: Vec<_> = (1..=30).map(|i| (T0 + 10 * i, 0.0)).collect();
        assert_eq!(zeros, want);
        assert_eq!(a.contexts(), 0);
        assert_eq!(a.stats.contexts_expired, 1);
    }

    #[test]
    fn a_sample_in_the_open_bucket_keeps_the_zeros_of_the_closed_ones() {
        let points = |s: &[Value]| -> Vec<(u64, f64)> {
            let p = s.iter().filter(|x| x["metric"] == "c").flat_map(|x| x["points"].as_array().unwrap().clone());
            p.map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect()
        };
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "c:1|c", T0 + 1);
        assert_eq!(points(&flush(&mut a, T0 + 15)), [(T0, 0.1)]);
        feed(&mut a, "c:1|c", T0 + 31);
        assert_eq!(points(&flush(&mut a, T0 + 32)), [(T0 + 10, 0.0), (T0 + 20, 0.0)]);
        assert_eq!(points(&flush(&mut a, T0 + 47)), [(T0 + 30, 0.1)]);
        // Then zeros from T0+40 for 300 s after T0+31, each once, none missing.
        let mut zeros = Vec::new();
        let mut t = T0 + 47;
        while t < T0 + 700 {
            t += 15;
            zeros.extend(points(&flush(&mut a, t)));
        }
        let want: Vec<_> = (4..=33).map(|i| (T0 + 10 * i, 0.0)).collect();
        assert_eq!(zeros, want);
        assert_eq!(a.contexts(), 0);
        // Two closed buckets with a gap between them, flushed together after a stall.
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "c:1|c", T0 + 1);
        feed(&mut a, "c:1|c", T0 + 21);
        assert_eq!(points(&flush(&mut a, T0 + 35)), [(T0, 0.1), (T0 + 10, 0.0), (T0 + 20, 0.1)]);
    }

    #[test]
    fn histogram_arithmetic_matches_the_original() {
        let mut b = Bucket::default();
        for v in [4.0, 1.0, 3.0, 2.0] {
            b.samples.push((v, 1));
            b.value += v;
            b.count += 1;
        }
        // Lower median; p95 of 4 → (380-1)/100 = 3 → the 4th.
        assert_eq!(histogram(&mut b), [4.0, 2.0, 2.5, 0.4, 4.0]);
        let mut b = Bucket::default();
        for v in 1..=20 {
            b.samples.push((f64::from(v), 1));
            b.count += 1;
            b.value += f64::from(v);
        }
        assert_eq!(histogram(&mut b)[4], 19.0);
        // Sample rate 0.3: weight int64(1/0.3) = 3.
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "h:10|h|@0.3", T0);
        let s = flush(&mut a, T0 + 10);
        assert_eq!(find(&s, "h.count")["points"][0][1], 0.3);
        let avg = find(&s, "h.avg")["points"][0][1].as_f64().unwrap();
        assert!((avg - 10.0 * (1.0 / 0.3) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn tiny_rates_are_floored_and_non_finite_results_dropped() {
        let mut a = Aggregator::new(Limits::default(), T0);
        // Weight 2^32 (floored), not a saturated i64 whose 95 * count overflows.
        feed(&mut a, "h:1|h|@1e-18\nk:2|h|@1e-300\nk:3|h|@1e-300", T0);
        assert_eq!(a.stats.sample_rate_floored, 3);
        assert_eq!(a.stats.sample_rate_invalid, 0);
        let s = flush(&mut a, T0 + 10);
        let w = (1u64 << 32) as f64;
        assert_eq!(find(&s, "h.count")["points"][0][1].as_f64(), Some(w / 10.0));
        assert_eq!(find(&s, "h.95percentile")["points"][0][1].as_f64(), Some(1.0));
        assert_eq!(find(&s, "k.count")["points"][0][1].as_f64(), Some(2.0 * w / 10.0));
        assert_eq!(find(&s, "k.avg")["points"][0][1].as_f64(), Some(2.5));
        assert_eq!(find(&s, "k.median")["points"][0][1].as_f64(), Some(2.0));
        assert_eq!(a.stats.non_finite, 0);
        // Sums that overflow to ±inf or NaN from finite samples: the point is dropped and counted.
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "c:1e308|c|@0.1\nc:1e308|c\nok:1|c", T0);
        feed(&mut a, "m:1e308|h|@0.5\nm:1e308|h\nn:1e308|c\nn:-1e308|c|@0.001", T0);
        let s = flush(&mut a, T0 + 10);
        assert!(s.iter().all(|x| x["metric"] != "c" && x["metric"] != "n" && x["metric"] != "m.avg"), "{s:?}");
        assert_eq!(find(&s, "ok")["points"][0][1], 0.1);
        assert_eq!(find(&s, "m.max")["points"][0][1].as_f64(), Some(1e308));
        assert_eq!(a.stats.non_finite, 3, "c, n and m.avg");
        for x in &s {
            for p in x["points"].as_array().unwrap() {
                assert!(p[1].as_f64().unwrap().is_finite(), "{x}");
            }
        }
    }

    /// Slots allocated in every bucket: what `samples_held` must equal.
    fn allocated(a: &Aggregator) -> usize {
        a.contexts.iter().flat_map(|c| c.buckets.iter()).map(Bucket::capacity).sum()
    }

    #[test]
    fn set_members_and_samples_are_bounded_by_their_storage() {
        // 7 slots: the set takes 3 (a, b, c), then grows to 7 (d, e); the histogram's first
        // growth (4 slots) would pass the bound.
        let mut a = Aggregator::new(Limits { max_contexts: 4, max_samples: 7 }, T0);
        feed(&mut a, "s:a|s\ns:b|s\ns:a|s\ns:c|s\ns:d|s\ns:e|s\nh:1|h", T0);
        assert_eq!((a.samples_held, allocated(&a)), (7, 7));
        assert_eq!(a.stats.samples_over_limit, 1, "the histogram sample");
        feed(&mut a, "s:a|s", T0 + 1);
        assert_eq!(a.stats.samples_over_limit, 1, "a known member costs nothing");
        let s = flush(&mut a, T0 + 10);
        assert_eq!(find(&s, "s")["points"], serde_json::json!([[T0, 5.0]]));
        assert_eq!(a.samples_held, allocated(&a), "the kept capacity stays counted");
        // 400,000 distinct members of one set: every one counted, the storage counted exactly,
        // and a bounded number of hash-table operations per member (no probing storm).
        let mut a = Aggregator::new(Limits::default(), T0);
        let before = ID_HASHES.with(|c| c.get());
        let mut d = String::new();
        for chunk in 0..400 {
            d.clear();
            for i in 0..1000 {
                d.push_str(&format!("big:{}|s\n", chunk * 1000 + i));
            }
            feed(&mut a, &d, T0 + 1);
        }
        let ops = ID_HASHES.with(|c| c.get()) - before;
        let n = 400_000;
        assert!((n..=6 * n).contains(&ops), "{ops} hash-table operations for {n} members");
        assert_eq!(a.samples_held, allocated(&a));
        assert!(a.samples_held <= Limits::default().max_samples);
        assert_eq!(find(&flush(&mut a, T0 + 10), "big")["points"][0][1], 400_000.0);
        assert_eq!(a.samples_held, allocated(&a));
        // The flushed bucket used its storage: kept (and counted) for the slot's next bucket.
        let held = a.samples_held;
        assert!(held >= 400_000, "{held}");
        // That next bucket (40 s later, the same slot) holds one member: a quarter and less of
        // the storage, which its flush gives back.
        feed(&mut a, "big:x|s", T0 + 41);
        assert_eq!(a.samples_held, held, "the kept storage takes the member");
        assert_eq!(find(&flush(&mut a, T0 + 50), "big")["points"], serde_json::json!([[T0 + 40, 1.0]]));
        assert_eq!(a.samples_held, allocated(&a));
        assert!(a.samples_held <= SLOTS * KEEP_SAMPLES, "a quiet bucket's flush gives the storage back");
        // The members' hashes spread: their low 20 bits (the table's index at 1 Mi slots) and
        // their top 7 bits (hashbrown's tag) take nearly every value.
        use std::hash::BuildHasher;
        let (mut low, mut top) = (HashSet::new(), HashSet::new());
        for i in 0..n {
            let h = a.member_hasher.hash_one(i.to_string().as_bytes());
            low.insert(h & 0xf_ffff);
            top.insert(h >> 57);
        }
        assert!(low.len() > 300_000, "{}", low.len());
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn key_hashes_spread_and_tell_parts_and_lengths_apart() {
        let k = KeyHash::random();
        // Keys of every length 0..=80 that differ in one byte anywhere, or only in length
        // (a zero byte appended): all distinct.
        let mut seen = HashSet::new();
        let mut keys = 0;
        for len in 0..=80usize {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(seen.insert(k.hash(&base, 1)), "len {len}");
            let mut z = base.clone();
            z.push(0);
            assert!(seen.insert(k.hash(&z, 1)), "len {len} + NUL");
            keys += 2;
            for at in 0..len {
                let mut v = base.clone();
                v[at] ^= 1;
                assert!(seen.insert(k.hash(&v, 1)), "len {len}, byte {at}");
                keys += 1;
            }
        }
        assert_eq!(seen.len(), keys);
        // The same bytes split differently between name, tags and origin hash apart.
        let splits =
            [k.raw(b"ab", b"c", b""), k.raw(b"a", b"bc", b""), k.raw(b"a", b"b", b"c"), k.raw(b"abc", b"", b"")];
        assert_eq!(splits.iter().collect::<HashSet<_>>().len(), 4);
        // Sequential keys as clients send them spread over a table's low bits and hashbrown's
        // top-7-bit tag.
        let (mut low, mut top) = (HashSet::new(), HashSet::new());
        for i in 0..100_000 {
            let h = k.raw(format!("shop.requests.{i}").as_bytes(), b"env:prod,service:checkout", b"");
            low.insert(h & 0x3_ffff);
            top.insert(h >> 57);
        }
        assert!(low.len() > 80_000, "{}", low.len());
        assert_eq!(top.len(), 128);
        // Seeds differ per aggregator.
        assert_ne!(KeyHash::random().hash(b"x", 0), KeyHash::random().hash(b"x", 0));
    }

    #[test]
    fn histogram_samples_past_their_storage_bound_are_refused() {
        let mut a = Aggregator::new(Limits { max_contexts: 4, max_samples: 8 }, T0);
        feed(&mut a, "h:1:2:3:4:5:6:7:8:9:10|h", T0);
        assert_eq!((a.samples_held, allocated(&a)), (8, 8));
        assert_eq!(a.stats.samples_over_limit, 2);
        assert_eq!(find(&flush(&mut a, T0 + 10), "h.count")["points"][0][1], 0.8);
        assert_eq!(a.samples_held, allocated(&a));
    }

    #[test]
    fn long_context_keys_are_refused_and_long_raw_forms_not_remembered() {
        let mut a = Aggregator::new(Limits::default(), T0);
        // A key of exactly MAX_KEY_BYTES is taken; one byte more is refused.
        let name = "k".repeat(MAX_KEY_BYTES - 3);
        feed(&mut a, &format!("{name}:1|g|#a:b"), T0);
        feed(&mut a, &format!("{name}:1|g|#a:bc"), T0);
        assert_eq!((a.contexts(), a.stats.context_key_too_long, a.stats.contexts_over_limit), (1, 1, 0));
        // 4,000 tags of which ten are distinct: a short key, a raw form too long to remember.
        let tags: Vec<String> = (0..4000).map(|i| format!("{}", i % 10)).collect();
        let many = format!("many:1|c|#{}", tags.join(","));
        feed(&mut a, &many, T0);
        feed(&mut a, &many, T0 + 1);
        assert_eq!(a.contexts(), 2);
        assert!(a.contexts.iter().all(|c| c.raw.len() <= MAX_RAW_BYTES && c.key.len() <= MAX_KEY_BYTES));
        let s = flush(&mut a, T0 + 10);
        assert_eq!(find(&s, "many")["points"][0][1], 0.2);
        assert_eq!(find(&s, "many")["tags"].as_array().unwrap().len(), 10);
    }

    #[test]
    fn refusals_are_counted() {
        let mut a = Aggregator::new(Limits { max_contexts: 2, max_samples: 3 }, T0);
        feed(&mut a, "x:1|g\nx:1|c\ny:1|c|@0\ny:1|c|@2\nz:1|g\nbad\nn:nan|g\nb:1e999|g\nd:1|d\n_sc|a|0\n_e{1}:x", T0);
        feed(&mut a, "h1:1:2:3:4|h", T0);
        let st = a.stats;
        assert_eq!(st.type_conflict, 1);
        assert_eq!(st.sample_rate_invalid, 2);
        assert_eq!(st.contexts_over_limit, 2, "z and h1");
        assert_eq!((st.parse_error_metric, st.non_finite, st.parse_error_event), (2, 1, 1));
        assert_eq!((st.distribution_dropped, st.service_check_dropped), (1, 1));
        let s = flush(&mut a, T0 + 10);
        assert_eq!(find(&s, "y")["points"][0][1], 0.2);
        let mut a = Aggregator::new(Limits { max_contexts: 2, max_samples: 4 }, T0);
        feed(&mut a, "h1:1:2:3:4:5|h", T0);
        assert_eq!(a.stats.samples_over_limit, 1);
        assert_eq!(find(&flush(&mut a, T0 + 10), "h1.count")["points"][0][1], 0.4);
    }

    #[test]
    fn raw_forms_share_their_context_and_leave_with_it() {
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "m:1|g|#b,a\nm:2|g|#a,b\nm:3|g|#b,a,a\nm:4|g|#b,a", T0 + 1);
        assert_eq!((a.contexts(), a.raw_index.len()), (1, 1));
        assert_eq!(find(&flush(&mut a, T0 + 10), "m")["points"], serde_json::json!([[T0, 4.0]]));
        // Expired: both indexes forget it; a slot reused by another context is found by its own.
        flush(&mut a, T0 + 400);
        assert_eq!((a.contexts(), a.raw_index.len(), a.index.len()), (0, 0, 0));
        feed(&mut a, "n:7|g|#x\nm:8|g|#a,b", T0 + 401);
        let s = flush(&mut a, T0 + 410);
        assert_eq!(find(&s, "n")["tags"], serde_json::json!(["x"]));
        assert_eq!(find(&s, "m")["points"], serde_json::json!([[T0 + 400, 8.0]]));
        assert_eq!(a.raw_index.len(), 2);
    }

    #[test]
    fn origin_tags_join_and_device_moves() {
        let mut a = Aggregator::new(Limits::default(), T0);
        let mut ev = EventBuffer::new(1 << 20);
        a.ingest(b"m:1|g|#device:sda,z,dd.internal.entity_id:x", false, b"container_id:abc,z", T0, &mut ev);
        let s = flush(&mut a, T0 + 10);
        assert_eq!(s[0]["tags"], serde_json::json!(["container_id:abc", "z"]));
        assert_eq!(s[0]["device"], "sda");
    }

    /// Every chunk's series, each chunk checked against `max` (its bytes, closing `]}`
    /// included) and decoded; the chunks' lengths too. `between` runs after each chunk but the
    /// last (samples taken while a flush is under way).
    fn flush_chunks(
        a: &mut Aggregator,
        now: u64,
        max: usize,
        mut between: impl FnMut(&mut Aggregator),
    ) -> (Vec<Value>, Vec<usize>) {
        let (mut all, mut sizes) = (Vec::new(), Vec::new());
        assert!(a.flush_start(now));
        let mut buf = Vec::new();
        while a.flushing() {
            let mut e = SeriesEncoder::begin(&mut buf, "i-0abc", now, BUCKET_SECS);
            let n = a.flush_more(&mut e, max);
            assert_eq!(e.finish(), n);
            assert!(buf.len() <= max, "a chunk of {} bytes over {max}", buf.len());
            let v: Value = serde_json::from_slice(&buf).unwrap();
            all.extend(v["series"].as_array().unwrap().iter().cloned());
            sizes.push(buf.len());
            if a.flushing() {
                between(a);
            }
        }
        (all, sizes)
    }

    /// Series in a canonical order (metric, host, tags), for comparing flushes.
    fn sorted(mut s: Vec<Value>) -> Vec<Value> {
        s.sort_by_key(|x| x.to_string());
        s
    }

    /// Contexts whose series are as large as a context's can be: keys of 2 KiB of control bytes
    /// (escaped 6 to 1), and every kind in its own bucket (gauge, counter, set, histogram: 8
    /// series); small ones between them; counters that send zeros; contexts that expire.
    fn feed_hostile_mix(a: &mut Aggregator) {
        let ctl: String = (0..200).map(|i| char::from(1 + (i % 8) as u8)).collect();
        for i in 0..40 {
            // A key of about 2,030 bytes: a name with a control byte, 10 tags of 201 bytes.
            let name = format!("big{i}\u{1}");
            let tags = format!("{},n:{i}", (0..10).map(|j| format!("{j}{ctl}")).collect::<Vec<_>>().join(","));
            feed(a, &format!("{name}:{i}|g|#{tags}"), T0);
            feed(a, &format!("{name}:2|c|#{tags}"), T0 + 10);
            feed(a, &format!("{name}:m{i}|s|#{tags}"), T0 + 20);
            feed(a, &format!("{name}:3:4:5|h|#{tags}"), T0 + 30);
            feed(a, &format!("small.{i}:1|g|#env:prod\nsmall.c{i}:1|c"), T0 + 20);
        }
        // Quiet since T0: freed by a flush 300 s on (the counter after its zeros).
        feed(a, "old:1|g\nold.c:5|c", T0);
    }

    #[test]
    fn a_flush_in_chunks_writes_what_one_flush_writes() {
        let mut whole = Aggregator::new(Limits::default(), T0);
        let mut chunked = Aggregator::new(Limits::default(), T0);
        feed_hostile_mix(&mut whole);
        feed_hostile_mix(&mut chunked);
        assert_eq!(whole.stats.context_key_too_long, 0, "the big keys are within the limit");
        let biggest = whole.contexts.iter().map(|c| c.key.len()).max().unwrap();
        assert!(biggest > MAX_KEY_BYTES - 200 && biggest <= MAX_KEY_BYTES, "{biggest}");
        // All four buckets closed at once (a late flush), then the zeros and expiry 300 s on.
        // A context's series take up to 98 KB here (8 series of 12 KB escaped), and its bound
        // 150 KB.
        let max = 256 * 1024;
        assert!(context_json_bound(MAX_KEY_BYTES, 6) < max);
        for (now, late) in [(T0 + 45, "late.g:1|g"), (T0 + 305, "late.h:1|h")] {
            let want = flush(&mut whole, now);
            feed(&mut whole, late, now);
            let mut fed = 0;
            let (got, sizes) = flush_chunks(&mut chunked, now, max, |a| {
                // Samples between chunks land in the open bucket, which this flush leaves.
                if fed == 0 {
                    feed(a, late, now);
                }
                fed += 1;
            });
            assert!(fed > 0 && sizes.len() > 2, "several chunks: {sizes:?}");
            assert_eq!(sorted(got), sorted(want), "at {now}");
            // Each chunk but the last is full to within a context's bound of the limit.
            let bound = context_json_bound(biggest, "i-0abc".len());
            assert!(sizes[..sizes.len() - 1].iter().all(|&n| n + bound > max), "{sizes:?}");
            assert_eq!(chunked.contexts(), whole.contexts());
            assert_eq!(chunked.samples_held, allocated(&chunked));
            assert_eq!(chunked.last_cutoff, whole.last_cutoff);
        }
        assert_eq!(whole.stats.contexts_expired, 2, "old and old.c");
        assert_eq!(chunked.stats, whole.stats);
        // And the sample taken between chunks goes out with the next flush.
        let (a, b) = (flush(&mut whole, T0 + 345), flush(&mut chunked, T0 + 345));
        assert_eq!(find(&b, "late.h.count")["points"], serde_json::json!([[T0 + 300, 0.1]]));
        assert_eq!(sorted(a), sorted(b));
    }

    #[test]
    fn a_chunk_holds_one_context_at_least_and_a_flush_under_way_is_finished_first() {
        let mut a = Aggregator::new(Limits::default(), T0);
        feed(&mut a, "a:1|g\nb:2|g", T0);
        assert!(a.flush_start(T0 + 10));
        assert!(!a.flush_start(T0 + 20), "one flush at a time");
        let mut buf = Vec::new();
        let mut e = SeriesEncoder::begin(&mut buf, "h", T0, BUCKET_SECS);
        // A limit no context fits: one context a chunk all the same.
        assert_eq!(a.flush_more(&mut e, 1), 1);
        e.finish();
        assert!(a.flushing());
        // `flush` finishes it (b, of the bucket closed at T0 + 10), then flushes at its own time.
        feed(&mut a, "a:3|g", T0 + 11);
        let s = flush(&mut a, T0 + 25);
        assert_eq!(find(&s, "b")["points"], serde_json::json!([[T0, 2.0]]));
        assert_eq!(find(&s, "a")["points"], serde_json::json!([[T0 + 10, 3.0]]));
        assert!(!a.flushing());
        // Without a flush under way, nothing is written.
        let mut e = SeriesEncoder::begin(&mut buf, "h", T0, BUCKET_SECS);
        assert_eq!(a.flush_more(&mut e, usize::MAX), 0);
    }

    #[test]
    fn busy_buckets_keep_their_storage_and_quiet_ones_give_it_back() {
        let mut a = Aggregator::new(Limits::default(), T0);
        let busy = |n: usize| {
            let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("h:{}|h\ns:{}|s", v.join(":"), "x")
        };
        let members = |n: usize| (0..n).map(|i| format!("s:{i}|s")).collect::<Vec<_>>().join("\n");
        // 1,000 samples and members a bucket, every slot: the storage grows once per slot.
        for b in 0..4 {
            feed(&mut a, &busy(1000), T0 + 10 * b);
            feed(&mut a, &members(1000), T0 + 10 * b);
            flush(&mut a, T0 + 10 * b + 15);
        }
        let held = a.samples_held;
        assert_eq!(held, allocated(&a));
        assert!(held >= 4 * 2000, "{held}");
        for b in 4..12 {
            feed(&mut a, &busy(1000), T0 + 10 * b);
            feed(&mut a, &members(1000), T0 + 10 * b);
            flush(&mut a, T0 + 10 * b + 15);
            assert_eq!(a.samples_held, held, "bucket {b}: kept, not regrown");
        }
        // Quieter, a quarter and more of the storage used (1,024 sample slots, 1,792 member
        // slots): kept still.
        for b in 12..16 {
            feed(&mut a, &busy(300), T0 + 10 * b);
            feed(&mut a, &members(500), T0 + 10 * b);
            flush(&mut a, T0 + 10 * b + 15);
        }
        assert_eq!(a.samples_held, held);
        // Quiet, under a quarter: given back, the samples to twice what was used (200), the
        // members (one) to KEEP_SAMPLES (a hash set rounds up, to less than twice).
        for b in 16..20 {
            feed(&mut a, &busy(100), T0 + 10 * b);
            flush(&mut a, T0 + 10 * b + 15);
        }
        assert_eq!(a.samples_held, allocated(&a));
        assert!(a.samples_held <= 4 * (200 + 2 * KEEP_SAMPLES), "{}", a.samples_held);
    }

    /// Busy histogram contexts whose kept storage (four buckets' worth each) would pass the
    /// bound: a sample that needs room takes the storage flushed buckets keep (once per flush at
    /// most) and none is refused, as when a flush shrank every bucket. `load`: contexts of 100
    /// samples a second (1,000 a bucket, 1,024 slots), fed a second at a time for 3 minutes,
    /// flushed every 15 s; returns (refused, reclaims, the most ever held).
    fn busy_histograms(contexts: usize, max_samples: usize) -> (u64, u64, usize) {
        let mut a = Aggregator::new(Limits { max_contexts: 4096, max_samples }, T0);
        let values = vec!["1"; 100].join(":");
        let d: String = (0..contexts).map(|c| format!("h{c}:{values}|h\n")).collect();
        let mut most = 0;
        for sec in 0..180 {
            feed(&mut a, &d, T0 + sec);
            most = most.max(a.samples_held);
            assert!(a.samples_held <= max_samples && a.samples_held == allocated(&a));
            if sec % 15 == 7 {
                flush(&mut a, T0 + sec);
            }
        }
        (a.stats.samples_over_limit, a.stats.storage_reclaims, most)
    }

    #[test]
    fn kept_storage_gives_way_to_samples_near_the_bound() {
        // 20 contexts would keep 20 × 4 × 1,024 = 81,920 slots; in use at once, 3 buckets each
        // at most (the open one and two awaiting a flush): 61,440. The bound: 65,536.
        let (refused, reclaims, most) = busy_histograms(20, 64 * 1024);
        assert_eq!(refused, 0, "no sample refused for storage kept idle");
        assert!(reclaims >= 5, "{reclaims} reclaims");
        assert!(most > 61_440, "the bound was reached: {most}");
        // 12 contexts keep 49,152 slots: within the bound, nothing given back.
        let (refused, reclaims, most) = busy_histograms(12, 64 * 1024);
        assert_eq!((refused, reclaims, most), (0, 0, 12 * 4 * 1024));
    }
}
