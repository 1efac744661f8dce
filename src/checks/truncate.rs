//! Per-span truncation as the original's truncator does it (SV17 `agent/truncator.go`,
//! `traceutil/truncate.go`; spec/traces-parity.md §3), after obfuscation and before the STS
//! interpretation (which therefore copies truncated values): the resource is cut to 5,000 bytes;
//! meta keys to 100 bytes and meta values to 5,000, each followed by `...`; metric keys to 100
//! followed by `...`. Metric values, and what the agent adds later, are untouched.
//!
//! A cut that only shortens is a prefix of the same string; one that appends `...` writes the
//! prefix and the mark to the side buffer, asking the batch for room first (a span with many long
//! entries stops at its limit, as every other copy does).

use crate::model::trace::{Batch, Str};

/// `MaxResourceLen` (15,000 with the `big_resource` feature, which this agent does not take).
pub const MAX_RESOURCE: usize = 5000;
/// `MaxMetaKeyLen`.
pub const MAX_META_KEY: usize = 100;
/// `MaxMetaValLen`.
pub const MAX_META_VALUE: usize = 5000;
/// `MaxMetricsKeyLen`.
pub const MAX_METRIC_KEY: usize = 100;
/// What a cut key or value ends with.
const MARK: &str = "...";

/// How many bytes of `s` (valid UTF-8) the original's `TruncateUTF8(s, limit)` keeps: all of it
/// when it is at most `limit` bytes long; otherwise up to the start of the last character that
/// begins at an offset ≤ `limit`, but only if some character begins after `limit` (so a string
/// of `limit` + 1 ASCII bytes is kept whole: a quirk copied for exactness).
pub fn utf8_cut(s: &[u8], limit: usize) -> usize {
    if s.len() <= limit {
        return s.len();
    }
    let starts = |i: usize| s[i] & 0xC0 != 0x80;
    // A character is at most 4 bytes: one begins in (limit, limit + 4] unless the string ends.
    if !(limit + 1..s.len().min(limit + 5)).any(starts) {
        return s.len();
    }
    (limit.saturating_sub(3)..=limit).rev().find(|&i| starts(i)).unwrap_or(0)
}

/// `s` cut to `limit` bytes, nothing appended.
fn cut(b: &Batch, body: &[u8], s: Str, limit: usize) -> Str {
    if s.len() <= limit {
        return s;
    }
    s.prefix(utf8_cut(b.raw_bytes(body, s), limit))
}

/// `s` cut to `limit` bytes with `...` appended, written to the side buffer; `s` itself when it
/// is not longer than `limit`, and when the copy does not fit in the batch's limit (the batch is
/// then over its limit, and the request refused).
fn cut_marked(b: &mut Batch, body: &[u8], s: Str, limit: usize) -> Str {
    if s.len() <= limit {
        return s;
    }
    let keep = utf8_cut(b.raw_bytes(body, s), limit);
    if !b.fits(keep + MARK.len()) {
        return s;
    }
    let begin = b.side_begin();
    match b.side_range(s) {
        Some(r) => b.side.extend_from_within(r.start..r.start + keep),
        None => b.side.extend_from_slice(&Batch::body_bytes(body, s)[..keep]),
    }
    b.side_piece(MARK);
    b.side_end(begin)
}

/// A meta entry with its key or value cut and marked, when either is too long.
fn cut_entry(b: &mut Batch, body: &[u8], (k, v): (Str, Str)) -> Option<(Str, Str)> {
    if k.len() <= MAX_META_KEY && v.len() <= MAX_META_VALUE {
        return None;
    }
    Some((cut_marked(b, body, k, MAX_META_KEY), cut_marked(b, body, v, MAX_META_VALUE)))
}

/// Truncates span `i` of `b` in place: its resource, the client's meta and metrics (which the
/// span's ranges name), and the meta added for it so far, from `first_extra` in `Batch::extra`
/// (obfuscation's `sql.query`, which the original truncates as any meta). Entries keep their
/// order, a cut key its value.
pub fn truncate_span(b: &mut Batch, body: &[u8], i: usize, first_extra: u32) {
    let s = b.spans[i];
    b.spans[i].resource = cut(b, body, s.resource, MAX_RESOURCE);
    let meta = s.meta.0 as usize..(s.meta.0 + s.meta.1) as usize;
    for j in meta {
        let Some(&e) = b.meta.get(j) else { break };
        if let Some(e) = cut_entry(b, body, e) {
            b.meta[j] = e;
        }
    }
    for j in first_extra as usize..b.extra.len() {
        if let Some(e) = cut_entry(b, body, b.extra[j]) {
            b.extra[j] = e;
        }
    }
    let metrics = s.metrics.0 as usize..(s.metrics.0 + s.metrics.1) as usize;
    for j in metrics {
        let Some(&(k, v)) = b.metrics.get(j) else { break };
        if k.len() > MAX_METRIC_KEY {
            b.metrics[j] = (cut_marked(b, body, k, MAX_METRIC_KEY), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trace::Span;

    fn cut_str(s: &str, limit: usize) -> &str {
        &s[..utf8_cut(s.as_bytes(), limit)]
    }

    #[test]
    fn cuts_as_the_originals_truncate_utf8() {
        // The spec's examples (§3).
        assert_eq!(cut_str("télé", 5), "télé");
        assert_eq!(cut_str("ééééé", 5), "éé");
        let a = "a".repeat(5001);
        assert_eq!(cut_str(&a, 5000).len(), 5001, "limit + 1 ASCII bytes are kept whole");
        let a = "a".repeat(5002);
        assert_eq!(cut_str(&a, 5000).len(), 5000);
        assert_eq!(cut_str("abc", 3), "abc");
        assert_eq!(cut_str("", 0), "");
        // Four-byte characters: the cut is never inside one.
        let crabs = "🦀".repeat(10); // 40 bytes
        for limit in 0..40 {
            let out = cut_str(&crabs, limit);
            assert!(crabs.is_char_boundary(out.len()), "limit {limit}");
            if limit < 36 {
                // A character begins after the limit: the cut is within it.
                assert!(out.len() <= limit, "limit {limit}: {} bytes", out.len());
            }
        }
        assert_eq!(cut_str(&crabs, 9).len(), 8, "🦀🦀 and the third begins at 8 ≤ 9, the fourth after: keep 8");
        assert_eq!(cut_str(&crabs, 12).len(), 12);
        assert_eq!(cut_str(&crabs, 38).len(), 40, "no character begins after 38");
        // A three-byte character straddling the limit.
        let s = format!("{}€x", "a".repeat(99)); // € at 99..102, x at 102
        assert_eq!(cut_str(&s, 100), "a".repeat(99));
        assert_eq!(cut_str(&s, 101), "a".repeat(99));
        assert_eq!(cut_str(&s, 102), format!("{}€x", "a".repeat(99)), "x begins at 102, nothing after");
        // Every cut of a mixed string: a char boundary, and what Go's loop gives.
        let mixed = "aé€🦀".repeat(30);
        for limit in 0..mixed.len() + 2 {
            assert_eq!(utf8_cut(mixed.as_bytes(), limit), go_truncate_utf8(&mixed, limit), "limit {limit}");
        }
    }

    /// Go's `TruncateUTF8` written as the original's loop.
    fn go_truncate_utf8(s: &str, limit: usize) -> usize {
        if s.len() <= limit {
            return s.len();
        }
        let mut last = 0;
        for (i, _) in s.char_indices() {
            if i > limit {
                return last;
            }
            last = i;
        }
        s.len()
    }

    /// A span whose strings are all in the body: resource, meta and metric entries.
    fn batch(body: &mut Vec<u8>, resource: &str, meta: &[(&str, &str)], metrics: &[&str]) -> Batch {
        let mut b = Batch::default();
        let mut put = |s: &str| {
            let off = body.len();
            body.extend_from_slice(s.as_bytes());
            Str::body(off, s.len())
        };
        let resource = put(resource);
        for (k, v) in meta {
            let e = (put(k), put(v));
            b.push_meta(e);
        }
        for k in metrics {
            let e = (put(k), 1.5);
            b.push_metric(e);
        }
        b.push_span(Span {
            resource,
            trace_id: 1,
            span_id: 1,
            meta: (0, meta.len() as u32),
            metrics: (0, metrics.len() as u32),
            ..Span::default()
        });
        b.push_trace((0, 1));
        b
    }

    #[test]
    fn truncates_resource_meta_and_metric_keys() {
        let long_key = "k".repeat(150);
        let long_value = format!("{}é{}", "v".repeat(4999), "w".repeat(100)); // é at 4999..5001
        let exact_value = "x".repeat(5000);
        let long_metric = format!("{}€€", "m".repeat(99)); // € at 99..102, 102..105
        let resource = "r".repeat(6000);
        let mut body = Vec::new();
        let mut b = batch(
            &mut body,
            &resource,
            &[("short", "kept"), (&long_key, "v"), ("db.statement", &long_value), ("exact", &exact_value)],
            &[&long_metric, "_sampling_priority_v1"],
        );
        truncate_span(&mut b, &body, 0, 0);
        let s = b.spans[0];
        assert_eq!(b.text(&body, s.resource), "r".repeat(5000), "resource cut, nothing appended");
        let meta: Vec<(&str, &str)> =
            b.span_meta(&s).iter().map(|(k, v)| (b.text(&body, *k), b.text(&body, *v))).collect();
        assert_eq!(meta[0], ("short", "kept"));
        assert_eq!(meta[1], (format!("{}...", "k".repeat(100)).as_str(), "v"), "a long key is cut and marked");
        assert_eq!(meta[2].0, "db.statement");
        assert_eq!(meta[2].1, format!("{}...", "v".repeat(4999)), "é begins at 4999 and ends past 5000: cut before it");
        assert_eq!(meta[3], ("exact", exact_value.as_str()), "exactly the limit is kept");
        let metrics: Vec<(&str, f64)> = b.span_metrics(&s).iter().map(|(k, v)| (b.text(&body, *k), *v)).collect();
        assert_eq!(metrics[0], (format!("{}...", "m".repeat(99)).as_str(), 1.5), "metric value untouched");
        assert_eq!(metrics[1], ("_sampling_priority_v1", 1.5));
    }

    #[test]
    fn limit_plus_one_ascii_is_kept_and_marked() {
        // The original's quirk: 5,001 ASCII bytes come back whole from TruncateUTF8, and get `...`.
        let v = "a".repeat(5001);
        let r = "b".repeat(5001);
        let mut body = Vec::new();
        let mut b = batch(&mut body, &r, &[("k", &v)], &[]);
        truncate_span(&mut b, &body, 0, 0);
        let s = b.spans[0];
        assert_eq!(b.spans[0].resource.len(), 5001);
        assert_eq!(b.text(&body, b.span_meta(&s)[0].1).len(), 5004);
    }

    #[test]
    fn side_strings_are_cut_too() {
        // Obfuscation writes resources and values to the side buffer; truncation reads them there.
        let mut body = Vec::new();
        let mut b = batch(&mut body, "r", &[("k", "v")], &[]);
        let long = "é".repeat(3000); // 6000 bytes
        let r = b.push_side(&long);
        let v = b.push_side(&long);
        b.spans[0].resource = r;
        b.meta[0].1 = v;
        truncate_span(&mut b, &body, 0, 0);
        let s = b.spans[0];
        assert_eq!(b.text(&body, s.resource), "é".repeat(2500));
        assert_eq!(b.text(&body, b.span_meta(&s)[0].1), format!("{}...", "é".repeat(2500)));
    }

    #[test]
    fn a_copy_past_the_limit_stops_the_batch() {
        let v = "a".repeat(20_000);
        let mut body = Vec::new();
        let mut b = batch(&mut body, "r", &[("k", &v)], &[]);
        b.limit = b.cost() + 100;
        truncate_span(&mut b, &body, 0, 0);
        assert!(b.over_limit(), "5,003 bytes do not fit in 100");
        assert!(b.side.len() <= 100);
    }

    /// Through `process`: truncation runs before the STS interpretation, which copies the cut
    /// value (`db.instance` names the service).
    #[test]
    fn process_truncates_before_interpreting() {
        use crate::checks::traces::{process, RequestContext};
        use crate::parse::traces::{decode_v04, Encoding};
        let instance = "i".repeat(6000);
        let resource = "r".repeat(7000);
        let key = "k".repeat(102);
        let body = format!(
            r#"[[{{"trace_id":1,"span_id":1,"parent_id":0,"service":"s","name":"n","resource":"{resource}","meta":{{"db.instance":"{instance}","{key}":"v"}}}}]]"#
        );
        let mut b = Batch::default();
        decode_v04(body.as_bytes(), Encoding::Json, &mut b).unwrap();
        let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", ..RequestContext::default() };
        let counts = process(&mut b, body.as_bytes(), &ctx);
        assert_eq!(counts.spans, 1);
        let s = b.spans[0];
        let body = body.as_bytes();
        assert_eq!(b.text(body, s.resource).len(), 5000);
        let cut = format!("{}...", "i".repeat(5000));
        assert_eq!(b.meta_get(body, &s, "db.instance"), Some(cut.as_str()));
        assert_eq!(b.meta_get(body, &s, &format!("{}...", "k".repeat(100))), Some("v"));
        let name = b.span_extra(&s).iter().find(|(k, _)| b.is(body, *k, "span.serviceName")).unwrap().1;
        assert_eq!(b.text(body, name), format!("s:{cut}"));
    }

    #[test]
    fn meta_added_before_truncation_is_cut_too() {
        // Obfuscation adds `sql.query` (the obfuscated query) to the span's additions.
        let mut body = Vec::new();
        let mut b = batch(&mut body, "r", &[], &[]);
        let before = b.push_side("not this span's");
        b.push_extra((before, before));
        let first_extra = b.extra.len() as u32;
        let k = b.push_side("sql.query");
        let v = b.push_side(&"q".repeat(6000));
        b.push_extra((k, v));
        let long = "x".repeat(200);
        b.extra[0] = (b.push_side(&long), before);
        truncate_span(&mut b, &body, 0, first_extra);
        assert_eq!(b.text(&body, b.extra[1].0), "sql.query");
        assert_eq!(b.text(&body, b.extra[1].1), format!("{}...", "q".repeat(5000)));
        assert_eq!(b.text(&body, b.extra[0].0), long, "another span's additions are left alone");
    }
}
