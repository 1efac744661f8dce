//! StackState's `TracePayload` (spec/protocol.md §6.4): `hostName`=1, `env`=2, `traces`=3
//! (one `APITrace` per trace: `traceID`=1, `spans`=2), each `Span` with its fields, the client's
//! meta and then the agent's additions (so an added key wins in the map), and metrics.
//! Traces are appended as requests arrive; protobuf fields may come in any order, so `hostName`
//! and `env` are written last, when the payload is flushed.

use super::proto::{bytes, double_present, int32, int64, large_message, message, repeated_bytes, uint64};
use crate::model::trace::Batch;

/// Appends one `APITrace` (field 3) per kept trace of `b`.
pub fn append_traces(out: &mut Vec<u8>, b: &Batch, body: &[u8]) {
    for &(first, n) in &b.traces {
        if n == 0 {
            continue;
        }
        let spans = &b.spans[first as usize..(first + n) as usize];
        large_message(out, 3, |t| {
            uint64(t, 1, spans[0].trace_id);
            for s in spans {
                large_message(t, 2, |o| {
                    bytes(o, 1, b.text(body, s.service).as_bytes());
                    bytes(o, 2, b.text(body, s.name).as_bytes());
                    bytes(o, 3, b.text(body, s.resource).as_bytes());
                    uint64(o, 4, s.trace_id);
                    uint64(o, 5, s.span_id);
                    uint64(o, 6, s.parent_id);
                    int64(o, 7, s.start);
                    int64(o, 8, s.duration);
                    int32(o, 9, s.error);
                    for (k, v) in b.span_meta(s).iter().chain(b.span_extra(s)) {
                        message(o, 10, |e| {
                            repeated_bytes(e, 1, b.text(body, *k).as_bytes());
                            repeated_bytes(e, 2, b.text(body, *v).as_bytes());
                        });
                    }
                    for (k, v) in b.span_metrics(s) {
                        message(o, 11, |e| {
                            repeated_bytes(e, 1, b.text(body, *k).as_bytes());
                            double_present(e, 2, *v);
                        });
                    }
                    bytes(o, 12, b.text(body, s.typ).as_bytes());
                });
            }
        });
    }
}

/// Ends a payload: `hostName` and `env` after the traces.
pub fn finish(out: &mut Vec<u8>, host: &str, env: &str) {
    bytes(out, 1, host.as_bytes());
    bytes(out, 2, env.as_bytes());
}
