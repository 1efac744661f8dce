//! StackState's `TracePayload` (spec/protocol.md §6.4): `hostName`=1, `env`=2, `traces`=3
//! (one `APITrace` per trace: `traceID`=1, `spans`=2), each `Span` with its fields, the client's
//! meta and then the agent's additions (so an added key wins in the map), and metrics.
//! Traces are appended as requests arrive; protobuf fields may come in any order, so `hostName`
//! and `env` are written last, when the payload is flushed.

use super::proto::{bytes, double_present, int32, int64, large_message, message, repeated_bytes, uint64};
use crate::model::trace::{Batch, Span};

/// Appends one `APITrace` (field 3) per kept trace of `b`.
pub fn append_traces(out: &mut Vec<u8>, b: &Batch, body: &[u8]) {
    for &(first, n) in &b.traces {
        if n == 0 {
            continue;
        }
        append_trace(out, b, body, &b.spans[first as usize..(first + n) as usize]);
    }
}

/// At most the bytes an `APITrace` adds besides its spans: key, length, `traceID`.
pub const TRACE_BOUND: usize = 1 + 5 + 11;

/// The bytes [`append_trace`] writes for span `s` (key and length included; an upper bound when
/// the span's length varint would take one byte).
pub fn span_bound(b: &Batch, s: &Span) -> usize {
    let field = |len: usize| 1 + varint_len(len as u64) + len;
    let mut n = field(s.service.len()) + field(s.name.len()) + field(s.resource.len()) + field(s.typ.len());
    for v in [s.trace_id, s.span_id, s.parent_id, s.start as u64, s.duration as u64, s.error as i64 as u64] {
        n += 1 + varint_len(v);
    }
    for (k, v) in b.span_meta(s).iter().chain(b.span_extra(s)) {
        n += field(field(k.len()) + field(v.len()));
    }
    for (k, _) in b.span_metrics(s) {
        n += field(field(k.len()) + 9);
    }
    1 + varint_len(n as u64).max(2) + n
}

/// At least the bytes [`append_traces`] writes for the whole batch (dropped traces included,
/// so possibly more): one linear pass over each of its arrays.
pub fn batch_bound(b: &Batch) -> usize {
    let field = |len: usize| 1 + varint_len(len as u64) + len;
    let spans: usize = b
        .spans
        .iter()
        .map(|s| {
            let mut n = field(s.service.len()) + field(s.name.len()) + field(s.resource.len()) + field(s.typ.len());
            for v in [s.trace_id, s.span_id, s.parent_id, s.start as u64, s.duration as u64, s.error as i64 as u64] {
                n += 1 + varint_len(v);
            }
            // Key and length of the span, and its entries' keys and lengths (at most 5 bytes).
            n + 6 + (s.meta.1 as usize + s.extra.1 as usize + s.metrics.1 as usize) * 6
        })
        .sum();
    let entries: usize = b.meta.iter().chain(&b.extra).map(|(k, v)| field(k.len()) + field(v.len())).sum();
    let metrics: usize = b.metrics.iter().map(|(k, _)| field(k.len()) + 9).sum();
    spans + entries + metrics + b.traces.len() * TRACE_BOUND
}

fn varint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Appends one `APITrace` (field 3) with `spans` (all of one trace: a whole trace, or a part of
/// one too large for a single payload).
pub fn append_trace(out: &mut Vec<u8>, b: &Batch, body: &[u8], spans: &[Span]) {
    let Some(first) = spans.first() else { return };
    large_message(out, 3, |t| {
        uint64(t, 1, first.trace_id);
        for s in spans {
            large_message(t, 2, |o| {
                bytes(o, 1, b.utf8_bytes(body, s.service));
                bytes(o, 2, b.utf8_bytes(body, s.name));
                bytes(o, 3, b.utf8_bytes(body, s.resource));
                uint64(o, 4, s.trace_id);
                uint64(o, 5, s.span_id);
                uint64(o, 6, s.parent_id);
                int64(o, 7, s.start);
                int64(o, 8, s.duration);
                int32(o, 9, s.error);
                for (k, v) in b.span_meta(s).iter().chain(b.span_extra(s)) {
                    message(o, 10, |e| {
                        repeated_bytes(e, 1, b.utf8_bytes(body, *k));
                        repeated_bytes(e, 2, b.utf8_bytes(body, *v));
                    });
                }
                for (k, v) in b.span_metrics(s) {
                    message(o, 11, |e| {
                        repeated_bytes(e, 1, b.utf8_bytes(body, *k));
                        double_present(e, 2, *v);
                    });
                }
                bytes(o, 12, b.utf8_bytes(body, s.typ));
            });
        }
    });
}

/// Ends a payload: `hostName` and `env` after the traces.
pub fn finish(out: &mut Vec<u8>, host: &str, env: &str) {
    bytes(out, 1, host.as_bytes());
    bytes(out, 2, env.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::traces::{process, RequestContext};
    use crate::parse::traces::{decode_v04, decode_v05, Encoding};

    #[test]
    fn span_bound_is_at_least_what_is_written() {
        let v4 = include_bytes!("../../tests/fixtures/traces/ddtrace-4.16-v0.4.msgpack");
        let v5 = include_bytes!("../../tests/fixtures/traces/ddtrace-4.16-v0.5.msgpack");
        let ctx = RequestContext {
            now_ns: 1,
            host: "i-0abc",
            container_id: Some("c"),
            client: Some((7, -1)),
            ..Default::default()
        };
        for v5_format in [false, true] {
            let mut b = Batch::default();
            let body: &[u8] = if v5_format { v5 } else { v4 };
            if v5_format {
                decode_v05(body, &mut b).unwrap();
            } else {
                decode_v04(body, Encoding::Msgpack, &mut b).unwrap();
            }
            process(&mut b, body, &ctx);
            // Extremes of every fixed field.
            b.spans[0].error = -1;
            b.spans[0].start = i64::MIN;
            b.spans[0].trace_id = u64::MAX;
            for i in 0..b.spans.len() {
                let mut out = Vec::new();
                append_trace(&mut out, &b, body, &b.spans[i..=i]);
                let bound = TRACE_BOUND + span_bound(&b, &b.spans[i]);
                assert!(out.len() <= bound && bound <= out.len() + 16, "span {i}: wrote {}, bound {bound}", out.len());
            }
            let mut out = Vec::new();
            append_traces(&mut out, &b, body);
            let all = batch_bound(&b);
            assert!(out.len() <= all && all <= out.len() + out.len() / 4, "wrote {}, batch bound {all}", out.len());
        }
        assert_eq!((varint_len(0), varint_len(127), varint_len(128), varint_len(u64::MAX)), (1, 1, 2, 10));
    }
}
