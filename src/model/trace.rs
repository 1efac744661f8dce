//! Decoded trace payloads, stored without lifetimes so the storage is reused from request to
//! request: strings are [`Str`] ranges into the request body, or into the batch's own `side`
//! buffer (JSON strings with escapes, and what the agent adds). Spans of one trace are contiguous.

/// A string: `len` bytes at `off` in the request body, or in `Batch::side` when `off` has the
/// high bit set. Always valid UTF-8 (checked when decoded or written).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Str {
    off: u32,
    len: u32,
}

const SIDE: u32 = 1 << 31;

impl Str {
    pub const EMPTY: Str = Str { off: 0, len: 0 };

    pub fn body(off: usize, len: usize) -> Str {
        Str { off: off as u32, len: len as u32 }
    }

    /// `len` bytes at `off` in the side buffer.
    pub fn side(off: usize, len: usize) -> Str {
        Str { off: off as u32 | SIDE, len: len as u32 }
    }

    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The offset (with the side flag) and length together: equal for equal `Str`s, a key for
    /// remembering what was computed from one string of a batch.
    pub fn key(self) -> u64 {
        u64::from(self.off) << 32 | u64::from(self.len)
    }

    pub fn len(self) -> usize {
        self.len as usize
    }

    /// The first `n` bytes (the caller picks a character boundary).
    pub fn prefix(self, n: usize) -> Str {
        Str { off: self.off, len: (n as u32).min(self.len) }
    }

    /// Bytes `start..end` of the string (the caller picks character boundaries; clamped to it).
    pub fn sub(self, start: usize, end: usize) -> Str {
        let end = (end as u32).min(self.len);
        let start = (start as u32).min(end);
        Str { off: self.off + start, len: end - start }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Span {
    pub service: Str,
    pub name: Str,
    pub resource: Str,
    pub typ: Str,
    pub trace_id: u64,
    pub span_id: u64,
    pub parent_id: u64,
    /// Nanoseconds since the epoch.
    pub start: i64,
    pub duration: i64,
    pub error: i32,
    /// `(first, count)` in `Batch::meta` and `Batch::metrics`.
    pub meta: (u32, u32),
    pub metrics: (u32, u32),
    /// Meta the agent adds (`span.serviceName`, …), `(first, count)` in `Batch::extra`; written after
    /// `meta`, so an added key overrides the client's.
    pub extra: (u32, u32),
}

#[derive(Debug)]
pub struct Batch {
    pub spans: Vec<Span>,
    /// `(first span, span count)` per trace.
    pub traces: Vec<(u32, u32)>,
    pub meta: Vec<(Str, Str)>,
    pub metrics: Vec<(Str, f64)>,
    pub extra: Vec<(Str, Str)>,
    pub side: Vec<u8>,
    /// v0.5's string table.
    pub dict: Vec<Str>,
    /// The most [`Batch::cost`] may reach while a request is decoded and processed (set per
    /// request from the body's size; `usize::MAX` by default).
    pub limit: usize,
    /// A copy was refused by [`Batch::fits`]: the request costs more than its limit.
    pub exceeded: bool,
    /// Scratch for one trace's span ids (sampling's root search when no span has parent 0):
    /// at most one per span, so within a fraction of what the spans cost.
    pub ids: Vec<u64>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            spans: Vec::new(),
            traces: Vec::new(),
            meta: Vec::new(),
            metrics: Vec::new(),
            extra: Vec::new(),
            side: Vec::new(),
            dict: Vec::new(),
            limit: usize::MAX,
            exceeded: false,
            ids: Vec::new(),
        }
    }
}

/// Bytes of one decoded span, one meta/metrics entry, one trace, one v0.5 table string.
pub const SPAN_BYTES: usize = std::mem::size_of::<Span>();
pub const ENTRY_BYTES: usize = std::mem::size_of::<(Str, Str)>();
pub const METRIC_BYTES: usize = std::mem::size_of::<(Str, f64)>();
pub const TRACE_BYTES: usize = std::mem::size_of::<(u32, u32)>();
pub const DICT_BYTES: usize = std::mem::size_of::<Str>();

impl Batch {
    /// The bytes the batch's contents occupy (lengths, not capacities): what a request has cost
    /// so far, compared with [`Batch::limit`].
    #[inline]
    pub fn cost(&self) -> usize {
        self.spans.len() * SPAN_BYTES
            + self.traces.len() * TRACE_BYTES
            + (self.meta.len() + self.extra.len()) * ENTRY_BYTES
            + self.metrics.len() * METRIC_BYTES
            + self.dict.len() * DICT_BYTES
            + self.side.len()
    }

    /// Bytes the batch's storage holds (capacities).
    fn held(&self) -> usize {
        self.spans.capacity() * SPAN_BYTES
            + self.traces.capacity() * TRACE_BYTES
            + (self.meta.capacity() + self.extra.capacity()) * ENTRY_BYTES
            + self.metrics.capacity() * METRIC_BYTES
            + self.dict.capacity() * DICT_BYTES
            + self.side.capacity()
    }

    /// How many more elements of `size` bytes a full vector of `len` may reserve: double, as a
    /// `Vec` does, but never past the limit (so storage stays within it, not within twice it).
    fn grow_by(&self, len: usize, size: usize) -> usize {
        (self.limit.saturating_sub(self.held()) / size).min(len.max(8)).max(1)
    }

    #[inline]
    pub fn push_span(&mut self, s: Span) {
        if self.spans.len() == self.spans.capacity() {
            self.spans.reserve_exact(self.grow_by(self.spans.len(), SPAN_BYTES));
        }
        self.spans.push(s);
    }

    #[inline]
    pub fn push_trace(&mut self, t: (u32, u32)) {
        if self.traces.len() == self.traces.capacity() {
            self.traces.reserve_exact(self.grow_by(self.traces.len(), TRACE_BYTES));
        }
        self.traces.push(t);
    }

    #[inline]
    pub fn push_meta(&mut self, e: (Str, Str)) {
        if self.meta.len() == self.meta.capacity() {
            self.meta.reserve_exact(self.grow_by(self.meta.len(), ENTRY_BYTES));
        }
        self.meta.push(e);
    }

    #[inline]
    pub fn push_extra(&mut self, e: (Str, Str)) {
        if self.extra.len() == self.extra.capacity() {
            self.extra.reserve_exact(self.grow_by(self.extra.len(), ENTRY_BYTES));
        }
        self.extra.push(e);
    }

    #[inline]
    pub fn push_metric(&mut self, e: (Str, f64)) {
        if self.metrics.len() == self.metrics.capacity() {
            self.metrics.reserve_exact(self.grow_by(self.metrics.len(), METRIC_BYTES));
        }
        self.metrics.push(e);
    }

    #[inline]
    pub fn push_dict(&mut self, s: Str) {
        if self.dict.len() == self.dict.capacity() {
            self.dict.reserve_exact(self.grow_by(self.dict.len(), DICT_BYTES));
        }
        self.dict.push(s);
    }

    /// Makes room for `n` more side bytes (when the limit allows), growing as
    /// [`Batch::push_span`] does.
    pub fn reserve_side(&mut self, n: usize) {
        if self.side.capacity() - self.side.len() < n {
            let by = self.grow_by(self.side.len().max(n), 1);
            self.side.reserve_exact(by.max(n));
        }
    }

    /// Whether the batch has grown past its limit, or a copy was refused for passing it.
    #[inline]
    pub fn over_limit(&self) -> bool {
        self.exceeded || self.cost() > self.limit
    }

    /// Whether `n` more side bytes fit within the limit: if so, room is made for them (growing
    /// within the limit); if not, nothing is written and the batch is over its limit. Every copy
    /// of a string of unbounded length (a body string, a v0.5 table string named by several keys)
    /// asks first, so no copy takes the batch past its limit.
    #[inline]
    pub fn fits(&mut self, n: usize) -> bool {
        if self.exceeded || self.cost().saturating_add(n) > self.limit {
            self.exceeded = true;
            return false;
        }
        self.reserve_side(n);
        true
    }

    /// Gives back the memory of a large request (the capacities a hostile body made would
    /// otherwise stay resident): storage above `keep` bytes in all is freed.
    pub fn shrink(&mut self, keep: usize) {
        if self.held() > keep {
            self.clear();
            self.spans.shrink_to(keep / 4 / SPAN_BYTES);
            self.traces.shrink_to(keep / 32 / TRACE_BYTES);
            self.meta.shrink_to(keep / 4 / ENTRY_BYTES);
            self.extra.shrink_to(keep / 8 / ENTRY_BYTES);
            self.metrics.shrink_to(keep / 8 / METRIC_BYTES);
            self.dict.shrink_to(keep / 32 / DICT_BYTES);
            self.side.shrink_to(keep / 8);
            self.ids.shrink_to(keep / 32 / 8);
        }
    }

    pub fn clear(&mut self) {
        self.exceeded = false;
        self.spans.clear();
        self.traces.clear();
        self.meta.clear();
        self.metrics.clear();
        self.extra.clear();
        self.side.clear();
        self.dict.clear();
    }

    /// Stores `s` in the side buffer.
    pub fn push_side(&mut self, s: &str) -> Str {
        let off = self.side.len();
        self.side.extend_from_slice(s.as_bytes());
        Str { off: off as u32 | SIDE, len: s.len() as u32 }
    }

    /// Starts a side string built in pieces with [`Batch::side_piece`], ended by [`Batch::side_end`].
    pub fn side_begin(&self) -> usize {
        self.side.len()
    }

    pub fn side_piece(&mut self, s: &str) {
        self.side.extend_from_slice(s.as_bytes());
    }

    pub fn side_end(&self, begin: usize) -> Str {
        Str { off: begin as u32 | SIDE, len: (self.side.len() - begin) as u32 }
    }

    /// Where `s` sits in the side buffer, when it is a side string.
    pub fn side_range(&self, s: Str) -> Option<std::ops::Range<usize>> {
        if s.off & SIDE == 0 {
            return None;
        }
        let start = (s.off & !SIDE) as usize;
        let end = (start + s.len as usize).min(self.side.len());
        Some(start.min(end)..end)
    }

    /// The bytes of a body string (empty for a side string or out of range).
    pub fn body_bytes(body: &[u8], s: Str) -> &[u8] {
        if s.off & SIDE != 0 {
            return &[];
        }
        body.get(s.off as usize..s.off as usize + s.len as usize).unwrap_or(&[])
    }

    /// The text of `s`; empty when out of range (cannot happen for strings this batch made).
    pub fn text<'a>(&'a self, body: &'a [u8], s: Str) -> &'a str {
        std::str::from_utf8(self.utf8_bytes(body, s)).unwrap_or("")
    }

    /// The bytes of `s`, with no UTF-8 check: for the encoder, which writes every string of
    /// every kept span (a check there was 9 % of the trace path's CPU). Every `Str` a batch
    /// makes is UTF-8 already: the decoders check each string (and repair the ones that are
    /// not) and every cut is at a character boundary; debug builds (the tests) check it again.
    pub fn utf8_bytes<'a>(&'a self, body: &'a [u8], s: Str) -> &'a [u8] {
        let b = self.raw_bytes(body, s);
        debug_assert!(std::str::from_utf8(b).is_ok(), "a batch string that is not UTF-8: {b:?}");
        b
    }

    /// The bytes of `s` (from the body or the side buffer), for comparing and hashing.
    pub fn raw_bytes<'a>(&'a self, body: &'a [u8], s: Str) -> &'a [u8] {
        let (buf, off) =
            if s.off & SIDE != 0 { (&self.side[..], (s.off & !SIDE) as usize) } else { (body, s.off as usize) };
        buf.get(off..off + s.len as usize).unwrap_or(&[])
    }

    /// Whether `s` is `key`: lengths first, then bytes (no UTF-8 check: a key lookup over a span
    /// with many long entries costs one comparison of lengths per entry).
    #[inline]
    pub fn is(&self, body: &[u8], s: Str, key: &str) -> bool {
        s.len() == key.len() && self.raw_bytes(body, s) == key.as_bytes()
    }

    pub fn span_meta(&self, s: &Span) -> &[(Str, Str)] {
        self.meta.get(s.meta.0 as usize..(s.meta.0 + s.meta.1) as usize).unwrap_or(&[])
    }

    pub fn span_metrics(&self, s: &Span) -> &[(Str, f64)] {
        self.metrics.get(s.metrics.0 as usize..(s.metrics.0 + s.metrics.1) as usize).unwrap_or(&[])
    }

    pub fn span_extra(&self, s: &Span) -> &[(Str, Str)] {
        self.extra.get(s.extra.0 as usize..(s.extra.0 + s.extra.1) as usize).unwrap_or(&[])
    }

    /// A meta value of the span (the client's), by key, as a `Str` (stable while the side buffer grows).
    pub fn meta(&self, body: &[u8], s: &Span, key: &str) -> Option<Str> {
        self.span_meta(s).iter().rev().find(|(k, _)| self.is(body, *k, key)).map(|(_, v)| *v)
    }

    /// Meta added so far for the span whose additions start at `first`.
    pub fn span_extra_range(&self, first: u32) -> &[(Str, Str)] {
        self.extra.get(first as usize..).unwrap_or(&[])
    }

    /// A value added so far for the span whose additions start at `first`, by key.
    pub fn extra_value(&self, first: u32, body: &[u8], key: &str) -> Option<Str> {
        self.span_extra_range(first).iter().rev().find(|(k, _)| self.is(body, *k, key)).map(|(_, v)| *v)
    }

    /// A meta value of the span (the client's), by key.
    pub fn meta_get<'a>(&'a self, body: &'a [u8], s: &Span, key: &str) -> Option<&'a str> {
        self.span_meta(s).iter().rev().find(|(k, _)| self.is(body, *k, key)).map(|(_, v)| self.text(body, *v))
    }
}
