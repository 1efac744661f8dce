//! Priority sampling as the original ships it (SV17 `agent/agent.go`, `sampler/*.go`;
//! spec/traces-parity.md §4), reduced to what decides a trace at the traffic an ECS task sees:
//! the client's priority, `_sampling_priority_v1` in the metrics of the trace's root span.
//!
//! * below 0 (`USER_REJECT`: the application or its sampling rules dropped the trace): dropped;
//! * 0 (`AUTO_REJECT`): dropped unless a span of the trace has an error (the original's errors
//!   sampler keeps every error trace at low volume);
//! * 1 (`AUTO_KEEP`) and 2 (`USER_KEEP`): kept;
//! * no priority: kept (the original's score samplers keep everything below their 10 traces/s
//!   per signature).
//!
//! Not done: the score and errors samplers' thinning under load, and the rare-span
//! (`ExceptionSampler`) rescue of P0 traces with a span signature unseen for 2 minutes. Our
//! `rate_by_service` answer is 1 for every service, so clients set priority 1 themselves and
//! send 0 only when a rule of theirs says so.

use crate::model::trace::{Batch, Span};

/// `sampler.KeySamplingPriority`.
pub const PRIORITY_KEY: &str = "_sampling_priority_v1";

/// Why a trace was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Priority below 0: the client's user (or its sampling rules) rejected the trace.
    PriorityNegative,
    /// Priority 0 and no span with an error.
    PriorityZero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Drop(DropReason),
}

/// Traces dropped by priority, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SamplingDrops {
    pub priority_negative: u64,
    pub priority_zero: u64,
}

impl SamplingDrops {
    pub fn count(&mut self, why: DropReason) {
        match why {
            DropReason::PriorityNegative => self.priority_negative += 1,
            DropReason::PriorityZero => self.priority_zero += 1,
        }
    }

    pub fn add(&mut self, o: SamplingDrops) {
        self.priority_negative += o.priority_negative;
        self.priority_zero += o.priority_zero;
    }

    pub fn total(&self) -> u64 {
        self.priority_negative + self.priority_zero
    }
}

/// The decision for a trace with `priority` (`None`: the root has none) and with or without an
/// error in one of its spans.
pub fn decide(priority: Option<i8>, has_error: bool) -> Decision {
    match priority {
        Some(p) if p < 0 => Decision::Drop(DropReason::PriorityNegative),
        Some(0) if !has_error => Decision::Drop(DropReason::PriorityZero),
        _ => Decision::Keep,
    }
}

/// The priority as the original reads it: the float converted to Go's `int8`, as Go does on
/// amd64 (`int8(int64(v))`: truncated towards zero, then its low byte: 128.0 reads as −128, 256.0
/// as 0; NaN and floats outside the `int64` range convert to `i64::MIN`, whose low byte is 0).
/// The last entry wins, as in a map.
pub fn priority(b: &Batch, body: &[u8], root: &Span) -> Option<i8> {
    let v = b.span_metrics(root).iter().rev().find(|(k, _)| b.is(body, *k, PRIORITY_KEY))?.1;
    Some(go_int8(v))
}

/// Go's `int8(v)` on amd64: `CVTTSD2SQ` gives `0x8000000000000000` for NaN and out-of-range
/// floats (Rust's `as` saturates instead: +inf would read as −1), then the low byte.
fn go_int8(v: f64) -> i8 {
    // 2^63: the first float past i64::MAX; −2^63 itself is in range.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let i = if v.is_nan() || !(-TWO_63..TWO_63).contains(&v) { i64::MIN } else { v as i64 };
    i as i8
}

/// The index in `spans` of the root as the original's `GetRoot` picks it: the last span whose
/// `parent_id` is 0; failing that, a span whose parent is not in the trace (the original takes
/// one at random from a map; here the first in order); failing that (a cycle), the last span.
/// `ids` is scratch for the second case (reused; a trace without a `parent_id` 0 span, such as
/// a partial flush, costs a sort of its span ids).
pub fn root(spans: &[Span], ids: &mut Vec<u64>) -> usize {
    if let Some(i) = spans.iter().rposition(|s| s.parent_id == 0) {
        return i;
    }
    ids.clear();
    ids.extend(spans.iter().map(|s| s.span_id));
    ids.sort_unstable();
    spans.iter().position(|s| ids.binary_search(&s.parent_id).is_err()).unwrap_or(spans.len().saturating_sub(1))
}

/// The decision for the trace of `b` made of `spans`, as the client sent it.
pub fn sample(b: &mut Batch, body: &[u8], spans: std::ops::Range<usize>) -> Decision {
    let mut ids = std::mem::take(&mut b.ids);
    let trace = b.spans.get(spans).unwrap_or(&[]);
    let Some(r) = trace.get(root(trace, &mut ids)) else {
        b.ids = ids;
        return Decision::Keep;
    };
    let has_error = trace.iter().any(|s| s.error != 0);
    let d = decide(priority(b, body, r), has_error);
    b.ids = ids;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trace::Str;

    fn span(span_id: u64, parent_id: u64) -> Span {
        Span { trace_id: 7, span_id, parent_id, ..Span::default() }
    }

    #[test]
    fn each_priority() {
        for err in [false, true] {
            assert_eq!(decide(None, err), Decision::Keep, "no priority");
            assert_eq!(decide(Some(-1), err), Decision::Drop(DropReason::PriorityNegative), "USER_REJECT");
            assert_eq!(decide(Some(-128), err), Decision::Drop(DropReason::PriorityNegative));
            assert_eq!(decide(Some(1), err), Decision::Keep, "AUTO_KEEP");
            assert_eq!(decide(Some(2), err), Decision::Keep, "USER_KEEP");
            assert_eq!(decide(Some(100), err), Decision::Keep);
        }
        assert_eq!(decide(Some(0), false), Decision::Drop(DropReason::PriorityZero), "AUTO_REJECT");
        assert_eq!(decide(Some(0), true), Decision::Keep, "AUTO_REJECT with an error is kept");
    }

    #[test]
    fn priority_converts_as_go_on_amd64() {
        let cases = [
            (1.0, 1),
            (2.9, 2),
            (-0.5, 0),
            (-1.7, -1),
            (127.0, 127),
            (128.0, -128),
            (255.0, -1),
            (256.0, 0),
            (-129.0, 127),
            (1e18, 0),                     // 0x0DE0B6B3A7640000: low byte 0
            (9_007_199_254_740_991.0, -1), // 2^53 − 1: in range, the low byte 0xff
            (9.2e18, 0),
            (1e20, 0),
            (f64::INFINITY, 0),
            (f64::NEG_INFINITY, 0),
            (-1e20, 0),
            (f64::NAN, 0),
            (-9_223_372_036_854_775_808.0, 0),
        ];
        for (v, want) in cases {
            assert_eq!(go_int8(v), want, "{v}");
        }
        // +inf reads as priority 0 (Go), not −1 (a saturating conversion): dropped as zero.
        assert_eq!(decide(Some(go_int8(f64::INFINITY)), false), Decision::Drop(DropReason::PriorityZero));
        assert_eq!(decide(Some(go_int8(1e20)), true), Decision::Keep);
    }

    #[test]
    fn root_as_get_root_finds_it() {
        let mut ids = Vec::new();
        // The last span with parent 0 (some clients report the root last).
        assert_eq!(root(&[span(2, 1), span(1, 0), span(3, 1)], &mut ids), 1);
        assert_eq!(root(&[span(1, 0), span(2, 1), span(3, 0)], &mut ids), 2);
        // No parent 0 (a partial flush): the first span whose parent is not in the trace.
        assert_eq!(root(&[span(3, 2), span(2, 9), span(4, 2)], &mut ids), 1);
        assert_eq!(root(&[span(5, 4), span(3, 2), span(2, 9), span(4, 8)], &mut ids), 2);
        // A cycle: the last span.
        assert_eq!(root(&[span(1, 2), span(2, 1), span(3, 1)], &mut ids), 2);
        assert_eq!(root(&[], &mut ids), 0);
    }

    /// A batch with one trace of `spans`, each with the metrics named (body strings).
    fn batch(body: &mut Vec<u8>, spans: &[(Span, &[(&str, f64)])]) -> Batch {
        let mut b = Batch::default();
        for (s, metrics) in spans {
            let first = b.metrics.len() as u32;
            for (k, v) in *metrics {
                let off = body.len();
                body.extend_from_slice(k.as_bytes());
                b.push_metric((Str::body(off, k.len()), *v));
            }
            b.push_span(Span { metrics: (first, metrics.len() as u32), ..*s });
        }
        b.push_trace((0, spans.len() as u32));
        b
    }

    #[test]
    fn reads_the_roots_priority_only() {
        let mut body = Vec::new();
        // The child says drop, the root keep: kept.
        let mut b = batch(&mut body, &[(span(2, 1), &[(PRIORITY_KEY, -1.0)]), (span(1, 0), &[(PRIORITY_KEY, 1.0)])]);
        assert_eq!(sample(&mut b, &body, 0..2), Decision::Keep);
        // The root says drop.
        let mut b = batch(&mut body, &[(span(1, 0), &[("x", 3.0), (PRIORITY_KEY, -1.0)]), (span(2, 1), &[])]);
        assert_eq!(sample(&mut b, &body, 0..2), Decision::Drop(DropReason::PriorityNegative));
        // A chunk without its root: the orphan carries the priority.
        let mut b = batch(&mut body, &[(span(3, 2), &[]), (span(2, 1), &[(PRIORITY_KEY, 0.0)])]);
        assert_eq!(sample(&mut b, &body, 0..2), Decision::Drop(DropReason::PriorityZero));
        // Priority 0 and an error in any span: kept.
        let mut b = batch(&mut body, &[(span(1, 0), &[(PRIORITY_KEY, 0.0)]), (Span { error: 1, ..span(2, 1) }, &[])]);
        assert_eq!(sample(&mut b, &body, 0..2), Decision::Keep);
        // No priority: kept.
        let mut b = batch(&mut body, &[(span(1, 0), &[("_sample_rate", 1.0)])]);
        assert_eq!(sample(&mut b, &body, 0..1), Decision::Keep);
        // The last entry wins; the float is truncated to Go's int8.
        let mut b = batch(&mut body, &[(span(1, 0), &[(PRIORITY_KEY, 1.0), (PRIORITY_KEY, -0.5)])]);
        assert_eq!(sample(&mut b, &body, 0..1), Decision::Drop(DropReason::PriorityZero), "-0.5 is 0");
        let mut b = batch(&mut body, &[(span(1, 0), &[(PRIORITY_KEY, 128.0)])]);
        assert_eq!(sample(&mut b, &body, 0..1), Decision::Drop(DropReason::PriorityNegative), "128 is -128 in int8");
        let mut b = batch(&mut body, &[(span(1, 0), &[(PRIORITY_KEY, 2.9)])]);
        assert_eq!(sample(&mut b, &body, 0..1), Decision::Keep);
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let mut d = SamplingDrops::default();
        d.count(DropReason::PriorityNegative);
        d.count(DropReason::PriorityZero);
        d.count(DropReason::PriorityZero);
        assert_eq!(d, SamplingDrops { priority_negative: 1, priority_zero: 2 });
        let mut total = SamplingDrops::default();
        total.add(d);
        total.add(d);
        assert_eq!((total.priority_negative, total.priority_zero, total.total()), (2, 4, 6));
    }

    /// Through `process`: dropped traces keep their slot with no spans, and are counted.
    #[test]
    fn process_drops_and_counts_by_reason() {
        use crate::checks::traces::{process, RequestContext};
        use crate::parse::traces::{decode_v04, Encoding};
        let trace = |id: u32, priority: &str, error: u8| {
            format!(
                r#"[{{"trace_id":{id},"span_id":1,"parent_id":0,"service":"s","name":"n","resource":"r","error":{error},"metrics":{{{priority}}}}},{{"trace_id":{id},"span_id":2,"parent_id":1,"service":"s","name":"c","resource":"q"}}]"#
            )
        };
        let p = |v: &str| format!(r#""_sampling_priority_v1":{v}"#);
        let body = format!(
            "[{},{},{},{},{},{},{}]",
            trace(1, &p("-1"), 0),
            trace(2, &p("0"), 0),
            trace(3, &p("0"), 1),
            trace(4, &p("1"), 0),
            trace(5, &p("2"), 0),
            trace(6, "", 0),
            trace(7, &p("-1"), 1),
        );
        let mut b = Batch::default();
        decode_v04(body.as_bytes(), Encoding::Json, &mut b).unwrap();
        let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", ..RequestContext::default() };
        let counts = process(&mut b, body.as_bytes(), &ctx);
        assert_eq!(counts.sampling, SamplingDrops { priority_negative: 2, priority_zero: 1 });
        assert_eq!((counts.traces, counts.spans, counts.dropped_traces), (4, 8, 0));
        let kept: Vec<u64> = b.traces.iter().filter(|t| t.1 > 0).map(|t| b.spans[t.0 as usize].trace_id).collect();
        assert_eq!(kept, [3, 4, 5, 6], "priority 0 with an error, 1, 2 and none are kept");
        assert_eq!(b.traces.len(), 7, "dropped traces keep their slot");
    }
}
