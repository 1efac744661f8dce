//! A JSON view of the traces a `TracePayload` carries, for the dry run: one object per trace with
//! its spans, field names as in the protobuf schema, meta with the agent's additions applied.

use super::json;
use crate::model::trace::{Batch, Span};

/// Appends `{"traceID":…,"spans":[…]}` for each kept trace, comma-separated after any earlier ones.
pub fn append_traces(out: &mut Vec<u8>, b: &Batch, body: &[u8]) {
    for &(first, n) in &b.traces {
        if n == 0 {
            continue;
        }
        append_trace(out, b, body, &b.spans[first as usize..(first + n) as usize]);
    }
}

/// At most the bytes a trace object adds besides its spans.
pub const TRACE_BOUND: usize = 64;

/// At most the bytes [`append_trace`] writes for span `s` (a string escapes to at most 6 bytes
/// per byte: `\u00XX`).
pub fn span_bound(b: &Batch, s: &Span) -> usize {
    let strings = s.service.len() + s.name.len() + s.resource.len() + s.typ.len();
    let meta: usize = b.span_meta(s).iter().chain(b.span_extra(s)).map(|(k, v)| 6 + 6 * (k.len() + v.len())).sum();
    let metrics: usize = b.span_metrics(s).iter().map(|(k, _)| 40 + 6 * k.len()).sum();
    400 + 6 * strings + meta + metrics
}

/// Appends one trace object with `spans` (all of one trace), comma-separated after any earlier.
pub fn append_trace(out: &mut Vec<u8>, b: &Batch, body: &[u8], spans: &[Span]) {
    {
        if spans.is_empty() {
            return;
        }
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"traceID\":");
        json::u64(out, spans[0].trace_id);
        out.extend_from_slice(b",\"spans\":[");
        for (k, s) in spans.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            for (i, (name, v)) in [("service", s.service), ("name", s.name), ("resource", s.resource), ("type", s.typ)]
                .into_iter()
                .enumerate()
            {
                out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                json::str(out, b.text(body, v));
            }
            for (name, v) in [("traceID", s.trace_id), ("spanID", s.span_id), ("parentID", s.parent_id)] {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                json::u64(out, v);
            }
            out.extend_from_slice(b",\"start\":");
            let _ = serde_json::to_writer(&mut *out, &s.start);
            out.extend_from_slice(b",\"duration\":");
            let _ = serde_json::to_writer(&mut *out, &s.duration);
            out.extend_from_slice(b",\"error\":");
            let _ = serde_json::to_writer(&mut *out, &s.error);
            out.extend_from_slice(b",\"meta\":{");
            // Later entries win, as in the protobuf map: skip a key that is set again later.
            let all: Vec<_> = b.span_meta(s).iter().chain(b.span_extra(s)).collect();
            let mut first_entry = true;
            for (i, (mk, mv)) in all.iter().enumerate() {
                let key = b.text(body, *mk);
                if all[i + 1..].iter().any(|(k2, _)| b.text(body, *k2) == key) {
                    continue;
                }
                if !std::mem::take(&mut first_entry) {
                    out.push(b',');
                }
                json::str(out, key);
                out.push(b':');
                json::str(out, b.text(body, *mv));
            }
            out.extend_from_slice(b"},\"metrics\":{");
            for (i, (mk, mv)) in b.span_metrics(s).iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::str(out, b.text(body, *mk));
                out.push(b':');
                json::f64(out, *mv);
            }
            out.extend_from_slice(b"}}");
        }
        out.extend_from_slice(b"]}");
    }
}
