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

/// At least the bytes [`append_traces`] writes for the whole batch (dropped traces included).
pub fn batch_bound(b: &Batch) -> usize {
    let spans: usize =
        b.spans.iter().map(|s| 400 + 6 * (s.service.len() + s.name.len() + s.resource.len() + s.typ.len())).sum();
    let entries: usize = b.meta.iter().chain(&b.extra).map(|(k, v)| 6 + 6 * (k.len() + v.len())).sum();
    let metrics: usize = b.metrics.iter().map(|(k, _)| 40 + 6 * k.len()).sum();
    spans + entries + metrics + b.traces.len() * TRACE_BOUND
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
            // (Linear: marked from the end with a set of the keys seen; comparing every entry
            // with every later one was quadratic in a span's entries.)
            let all: Vec<_> = b.span_meta(s).iter().chain(b.span_extra(s)).collect();
            let mut seen = std::collections::HashSet::with_capacity(all.len());
            let last: Vec<bool> = all.iter().rev().map(|(k, _)| seen.insert(b.text(body, *k))).collect();
            let mut first_entry = true;
            for (i, (mk, mv)) in all.iter().enumerate() {
                let key = b.text(body, *mk);
                if !last[all.len() - 1 - i] {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trace::Str;

    #[test]
    fn later_meta_entries_win_in_linear_time() {
        let body = b"kvwx";
        let (k, v, w, x) = (Str::body(0, 1), Str::body(1, 1), Str::body(2, 1), Str::body(3, 1));
        let mut b = Batch::default();
        b.meta.extend([(k, v), (w, v), (k, w)]);
        b.extra.push((w, x));
        b.spans.push(Span { trace_id: 1, span_id: 1, meta: (0, 3), extra: (0, 1), ..Span::default() });
        let mut out = Vec::new();
        append_trace(&mut out, &b, body, &b.spans);
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["spans"][0]["meta"], serde_json::json!({"k": "w", "w": "x"}));
        // A span with up to 50,000 distinct keys (a hostile body within its limit) is written at
        // once: eight times the keys take about eight times as long, not 64.
        let span_with_keys = |n: u32| {
            let keys: Vec<u8> = (0..n).flat_map(|i| format!("{i:06}").into_bytes()).collect();
            let mut b = Batch::default();
            b.meta.extend((0..n as usize).map(|i| (Str::body(i * 6, 6), Str::body(i * 6, 1))));
            b.spans.push(Span { trace_id: 1, span_id: 1, meta: (0, n), extra: (0, 0), ..Span::default() });
            (b, keys)
        };
        let (b, keys) = span_with_keys(50_000);
        out.clear();
        let t = std::time::Instant::now();
        append_trace(&mut out, &b, &keys, &b.spans);
        if !cfg!(qemu_user) {
            assert!(t.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t.elapsed());
        }
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["spans"][0]["meta"].as_object().map(|m| m.len()), Some(50_000));
        // Scale 16 (48 times as long at most; quadratic: 256): the hash set of keys and the
        // output of the larger span leave the caches (and the set grows), so 8 times the keys
        // took 10 times as long alone and up to 31 times beside a parallel build.
        crate::testing::assert_linear(
            "distinct meta keys",
            3_125,
            16,
            |n| span_with_keys(n as u32),
            |(b, keys)| {
                out.clear();
                append_trace(&mut out, b, keys, &b.spans);
            },
        );
    }
}
