//! Trace payloads of the Datadog tracing clients (spec/protocol.md §6.1), decoded into a reused
//! [`Batch`]: `/v0.3` and `/v0.4` (an array of traces, each an array of span maps; msgpack or
//! JSON) and `/v0.5` (`[string table, traces]`, each span a 12-element array of table indexes and
//! numbers). Msgpack strings stay in the body; only JSON allocates (a rarely used format).
//! Decoding is all or nothing: a body that does not decode leaves an error for a 400 reply.
//!
//! Bounded: decoding stops with [`TOO_LARGE`] as soon as the batch costs more than its `limit`
//! (a body of one-byte empty span maps would otherwise decode into 104 bytes per byte).
//! Forgiving where the Datadog decoder is: an id sent as a negative int64 is reinterpreted
//! (`uint64(i)`), and a msgpack string that is not UTF-8 is repaired (each invalid byte becomes
//! U+FFFD, as Go's `ReadRune` does) into the side buffer; valid strings are never copied.

use super::json_reader::{JStr, JsonReader, Num};
use super::msgpack::{DecodeError, Reader, Result};
use crate::model::trace::{Batch, Span, Str, DICT_BYTES, ENTRY_BYTES, METRIC_BYTES, SPAN_BYTES, TRACE_BYTES};

/// The batch outgrew its limit: the body decodes to more than the agent accepts for its size.
pub const TOO_LARGE: DecodeError =
    DecodeError("payload too large: it decodes to more spans and entries than the agent accepts for its size");

fn check(out: &Batch) -> Result<()> {
    if out.over_limit() {
        return Err(TOO_LARGE);
    }
    Ok(())
}

/// Fails when `n` more elements of `size` bytes would take the batch past its limit (msgpack
/// declares its counts: one check per map or array instead of one per element).
fn room_for(out: &Batch, n: usize, size: usize) -> Result<()> {
    if out.cost().saturating_add(n.saturating_mul(size)) > out.limit {
        return Err(TOO_LARGE);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Msgpack,
    Json,
}

/// `/v0.3/traces` or `/v0.4/traces`.
pub fn decode_v04(body: &[u8], enc: Encoding, out: &mut Batch) -> Result<()> {
    out.clear();
    let r = match enc {
        Encoding::Msgpack => v04_msgpack(body, out),
        Encoding::Json => json(body, out),
    };
    if r.is_err() {
        out.clear();
    }
    r
}

/// `/v0.5/traces`.
pub fn decode_v05(body: &[u8], out: &mut Batch) -> Result<()> {
    out.clear();
    let r = v05(body, out);
    if r.is_err() {
        out.clear();
    }
    r
}

fn v04_msgpack(body: &[u8], out: &mut Batch) -> Result<()> {
    let mut r = Reader::new(body);
    let traces = r.array_len()?;
    room_for(out, traces, TRACE_BYTES)?;
    for _ in 0..traces {
        let n = r.array_len()?;
        room_for(out, n, SPAN_BYTES)?;
        let first = out.spans.len() as u32;
        for _ in 0..n {
            let s = span_map(&mut r, out)?;
            out.push_span(s);
            check(out)?;
        }
        out.push_trace((first, n as u32));
        check(out)?;
    }
    if !r.at_end() {
        return Err(DecodeError("msgpack: trailing bytes after the traces"));
    }
    Ok(())
}

/// A msgpack string: its place in the body, or its repair in the side buffer.
fn str_at(r: &mut Reader<'_>, out: &mut Batch) -> Result<Str> {
    let b = r.str_bytes()?;
    let end = r.position();
    // Most strings of a span are short and ASCII: is_ascii answers those in a few instructions,
    // where from_utf8's set-up took 6 % of the trace path (perf, benches/trace_intake.rs).
    if b.is_ascii() || std::str::from_utf8(b).is_ok() {
        Ok(Str::body(end - b.len(), b.len()))
    } else {
        let s = repair_utf8(b, out);
        check(out)?;
        Ok(s)
    }
}

/// Copies `b` into the side buffer with each byte that does not start a valid UTF-8 sequence
/// replaced by U+FFFD (Go's `[]rune(s)` / `ReadRune`: one replacement per invalid byte).
/// A replacement is 3 bytes for 1: each piece asks the batch for room first, so a long invalid
/// string stops at the limit (the batch is then over it) instead of tripling past it. A run of
/// invalid bytes is written at once (one check and one write, not one per byte).
fn repair_utf8(b: &[u8], out: &mut Batch) -> Str {
    let begin = out.side_begin();
    repair_append(b, out);
    out.side_end(begin)
}

/// [`repair_utf8`]'s copy, appended to the side buffer (the JSON reader's strings are built of
/// several pieces): stops, with the batch over its limit (`exceeded`), when a piece does not fit.
pub(super) fn repair_append(mut b: &[u8], out: &mut Batch) {
    const FFFD: &[u8] = "\u{fffd}".as_bytes();
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                if out.fits(s.len()) {
                    out.side_piece(s);
                }
                break;
            }
            Err(e) => {
                let (valid, rest) = b.split_at(e.valid_up_to());
                // The bytes of a maximal invalid subpart after its first are continuation bytes,
                // each invalid on its own; so are the bytes that never start a sequence.
                let mut bad = e.error_len().unwrap_or(rest.len()).max(1);
                while rest.get(bad).is_some_and(|&c| (0x80..=0xc1).contains(&c) || c >= 0xf5) {
                    bad += 1;
                }
                if !out.fits(valid.len() + FFFD.len() * bad) {
                    break;
                }
                out.side.extend_from_slice(valid);
                let at = out.side.len();
                out.side.resize(at + FFFD.len() * bad, 0);
                for c in out.side[at..].chunks_exact_mut(FFFD.len()) {
                    c.copy_from_slice(FFFD);
                }
                b = rest.get(bad..).unwrap_or(&[]);
            }
        }
    }
}

fn span_map(r: &mut Reader<'_>, out: &mut Batch) -> Result<Span> {
    let mut s = Span::default();
    let fields = r.map_len()?;
    for _ in 0..fields {
        match r.str_bytes()? {
            b"service" => s.service = str_at(r, out)?,
            b"name" => s.name = str_at(r, out)?,
            b"resource" => s.resource = str_at(r, out)?,
            b"type" => s.typ = str_at(r, out)?,
            b"trace_id" => s.trace_id = r.id()?,
            b"span_id" => s.span_id = r.id()?,
            b"parent_id" => s.parent_id = r.id()?,
            b"start" => s.start = r.i64()?,
            b"duration" => s.duration = r.i64()?,
            b"error" => s.error = r.i32()?,
            b"meta" => {
                let n = r.map_len()?;
                room_for(out, n, ENTRY_BYTES)?;
                let first = out.meta.len() as u32;
                for _ in 0..n {
                    let k = str_at(r, out)?;
                    let v = str_at(r, out)?;
                    out.push_meta((k, v));
                }
                s.meta = (first, n as u32);
            }
            b"metrics" => {
                let n = r.map_len()?;
                room_for(out, n, METRIC_BYTES)?;
                let first = out.metrics.len() as u32;
                for _ in 0..n {
                    let k = str_at(r, out)?;
                    let v = r.f64()?;
                    out.push_metric((k, v));
                }
                s.metrics = (first, n as u32);
            }
            // meta_struct, span_links, span_events, …: not forwarded.
            _ => r.skip()?,
        }
    }
    Ok(s)
}

fn v05(body: &[u8], out: &mut Batch) -> Result<()> {
    let mut r = Reader::new(body);
    if r.array_len()? != 2 {
        return Err(DecodeError("v0.5: the body must be [string table, traces]"));
    }
    let strings = r.array_len()?;
    room_for(out, strings, DICT_BYTES)?;
    for _ in 0..strings {
        let s = str_at(&mut r, out)?;
        out.push_dict(s);
    }
    let traces = r.array_len()?;
    room_for(out, traces, TRACE_BYTES)?;
    for _ in 0..traces {
        let n = r.array_len()?;
        room_for(out, n, SPAN_BYTES)?;
        let first = out.spans.len() as u32;
        for _ in 0..n {
            if r.array_len()? != 12 {
                return Err(DecodeError("v0.5: a span must be an array of 12 elements"));
            }
            let idx = |r: &mut Reader<'_>, out: &Batch| -> Result<Str> {
                let i = r.u32()? as usize;
                out.dict.get(i).copied().ok_or(DecodeError("v0.5: string index out of range"))
            };
            let mut s = Span {
                service: idx(&mut r, out)?,
                name: idx(&mut r, out)?,
                resource: idx(&mut r, out)?,
                trace_id: r.id()?,
                span_id: r.id()?,
                parent_id: r.id()?,
                start: r.i64()?,
                duration: r.i64()?,
                error: r.i32()?,
                ..Span::default()
            };
            let m = r.map_len()?;
            room_for(out, m, ENTRY_BYTES)?;
            let first_meta = out.meta.len() as u32;
            for _ in 0..m {
                let k = idx(&mut r, out)?;
                let v = idx(&mut r, out)?;
                out.push_meta((k, v));
            }
            s.meta = (first_meta, m as u32);
            let m = r.map_len()?;
            room_for(out, m, METRIC_BYTES)?;
            let first_metric = out.metrics.len() as u32;
            for _ in 0..m {
                let k = idx(&mut r, out)?;
                let v = r.f64()?;
                out.push_metric((k, v));
            }
            s.metrics = (first_metric, m as u32);
            s.typ = idx(&mut r, out)?;
            out.push_span(s);
            check(out)?;
        }
        out.push_trace((first, n as u32));
        check(out)?;
    }
    if !r.at_end() {
        return Err(DecodeError("msgpack: trailing bytes after the traces"));
    }
    Ok(())
}

/// JSON traces (v0.3, or v0.4 sent as JSON), read in place like msgpack: strings stay in the
/// body unless they carry escapes.
fn json(body: &[u8], out: &mut Batch) -> Result<()> {
    let mut r = JsonReader::new(body);
    if r.open(b'[', b']', "json: expected an array of traces")? {
        loop {
            let first = out.spans.len() as u32;
            if r.open(b'[', b']', "json: expected a trace (an array of spans)")? {
                loop {
                    let s = json_span(&mut r, out)?;
                    out.push_span(s);
                    check(out)?;
                    if !r.more(b']')? {
                        break;
                    }
                }
            }
            out.push_trace((first, out.spans.len() as u32 - first));
            check(out)?;
            if !r.more(b']')? {
                break;
            }
        }
    }
    if !r.at_end() {
        return Err(DecodeError("json: trailing bytes after the traces"));
    }
    Ok(())
}

fn jstr(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<Str> {
    if r.null()? {
        return Ok(Str::EMPTY);
    }
    Ok(match r.string(out)? {
        JStr::Body(o, l) => Str::body(o, l),
        JStr::Side(o, l) => Str::side(o, l),
    })
}

fn jint(r: &mut JsonReader<'_>) -> Result<i128> {
    if r.null()? {
        return Ok(0);
    }
    match r.number()? {
        Num::Int(i) => Ok(i),
        Num::Float(f) if f.fract() == 0.0 && f.abs() < 1.9e19 => Ok(f as i128),
        Num::Float(_) => Err(DecodeError("json: expected an integer")),
    }
}

fn json_span(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<Span> {
    let mut s = Span::default();
    if !r.open(b'{', b'}', "json: expected a span object")? {
        return Ok(s);
    }
    loop {
        let key = jstr(r, out)?;
        r.expect(b':', "json: expected ':'")?;
        // The key, copied out so `out` can be written while matching on it (known keys are short).
        let mut kb = [0u8; 16];
        let k = out.text(r.body(), key).as_bytes();
        // A longer key is none of ours: it reads as empty, which matches nothing below.
        let kl = if k.len() <= kb.len() { k.len() } else { 0 };
        kb[..kl].copy_from_slice(&k[..kl]);
        match &kb[..kl] {
            b"service" => s.service = jstr(r, out)?,
            b"name" => s.name = jstr(r, out)?,
            b"resource" => s.resource = jstr(r, out)?,
            b"type" => s.typ = jstr(r, out)?,
            b"trace_id" => {
                s.trace_id = u64::try_from(jint(r)?).map_err(|_| DecodeError("json: trace_id out of range"))?
            }
            b"span_id" => s.span_id = u64::try_from(jint(r)?).map_err(|_| DecodeError("json: span_id out of range"))?,
            b"parent_id" => {
                s.parent_id = u64::try_from(jint(r)?).map_err(|_| DecodeError("json: parent_id out of range"))?
            }
            b"start" => s.start = i64::try_from(jint(r)?).map_err(|_| DecodeError("json: start out of range"))?,
            b"duration" => {
                s.duration = i64::try_from(jint(r)?).map_err(|_| DecodeError("json: duration out of range"))?
            }
            b"error" => s.error = i32::try_from(jint(r)?).map_err(|_| DecodeError("json: error out of range"))?,
            b"meta" => {
                let first = out.meta.len() as u32;
                if !r.null()? && r.open(b'{', b'}', "json: meta must be an object")? {
                    loop {
                        let k = jstr(r, out)?;
                        r.expect(b':', "json: expected ':'")?;
                        let v = jstr(r, out)?;
                        out.push_meta((k, v));
                        check(out)?;
                        if !r.more(b'}')? {
                            break;
                        }
                    }
                }
                s.meta = (first, out.meta.len() as u32 - first);
            }
            b"metrics" => {
                let first = out.metrics.len() as u32;
                if !r.null()? && r.open(b'{', b'}', "json: metrics must be an object")? {
                    loop {
                        let k = jstr(r, out)?;
                        r.expect(b':', "json: expected ':'")?;
                        let v = match r.number()? {
                            Num::Int(i) => i as f64,
                            Num::Float(f) => f,
                        };
                        out.push_metric((k, v));
                        check(out)?;
                        if !r.more(b'}')? {
                            break;
                        }
                    }
                }
                s.metrics = (first, out.metrics.len() as u32 - first);
            }
            _ => r.skip(out)?,
        }
        if !r.more(b'}')? {
            break;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fix {
        ($p:literal) => {
            include_bytes!(concat!("../../tests/fixtures/traces/", $p))
        };
    }

    /// ddtrace 4.16 (Python), three traces of two spans each: `web.request` (service shop,
    /// resource `GET /cart`, meta http.method) with a child `db.query` (service pg, type sql,
    /// meta db.instance=orders).
    fn check_ddtrace_batch(body: &[u8], b: &Batch) {
        assert_eq!(b.traces.len(), 3);
        assert_eq!(b.spans.len(), 6);
        for &(first, n) in &b.traces {
            assert_eq!(n, 2);
            let spans = &b.spans[first as usize..(first + n) as usize];
            let root = spans.iter().find(|s| s.parent_id == 0).expect("a root span");
            let child = spans.iter().find(|s| s.parent_id == root.span_id).expect("a child span");
            assert_eq!(b.text(body, root.service), "shop");
            assert_eq!(b.text(body, root.name), "web.request");
            assert_eq!(b.text(body, root.resource), "GET /cart");
            assert_eq!(b.meta_get(body, root, "http.method"), Some("GET"));
            assert_eq!(b.text(body, child.service), "pg");
            assert_eq!(b.text(body, child.typ), "sql");
            assert_eq!(b.meta_get(body, child, "db.instance"), Some("orders"));
            assert_eq!(root.trace_id, child.trace_id);
            assert!(root.trace_id != 0 && root.start > 1_700_000_000_000_000_000 && root.duration >= child.duration);
            assert!(b.span_metrics(root).iter().any(|(k, _)| b.text(body, *k) == "_sampling_priority_v1"));
        }
    }

    #[test]
    fn ddtrace_v04_and_v05_payloads() {
        let mut b = Batch::default();
        let v4 = fix!("ddtrace-4.16-v0.4.msgpack");
        decode_v04(v4, Encoding::Msgpack, &mut b).unwrap();
        check_ddtrace_batch(v4, &b);
        let v5 = fix!("ddtrace-4.16-v0.5.msgpack");
        decode_v05(v5, &mut b).unwrap();
        check_ddtrace_batch(v5, &b);
    }

    #[test]
    fn json_traces() {
        let body = br#"[[{"service":"a\"b","name":"n","resource":"r","trace_id":18446744073709551615,"span_id":2,"parent_id":0,"start":1700000000000000000,"duration":5,"error":1,"meta":{"k":"v\u00e9"},"metrics":{"m":1.5},"type":"web"}]]"#;
        let mut b = Batch::default();
        decode_v04(body, Encoding::Json, &mut b).unwrap();
        let s = b.spans[0];
        assert_eq!((b.text(body, s.service), s.trace_id, s.error), ("a\"b", u64::MAX, 1));
        assert_eq!(b.meta_get(body, &s, "k"), Some("vé"));
        assert_eq!(b.span_metrics(&s)[0].1, 1.5);
        assert!(decode_v04(b"[[1]]", Encoding::Json, &mut b).is_err());
        assert!(b.spans.is_empty(), "a failed decode leaves nothing behind");
    }

    #[test]
    fn json_strings_not_utf8_are_repaired_and_negative_ids_refused() {
        // Go's encoding/json: each invalid byte of a string becomes U+FFFD (with or without
        // escapes in the string, in keys too); valid strings stay in the body.
        let body =
            b"[[{\"service\":\"s\xff\",\"name\":\"n\",\"meta\":{\"k\\u00e9\xc3\":\"v\\n\xe2\x82\"},\"trace_id\":1}]]";
        let mut b = Batch::default();
        decode_v04(body, Encoding::Json, &mut b).unwrap();
        let s = b.spans[0];
        assert_eq!(b.text(body, s.service), "s\u{fffd}");
        assert_eq!(b.text(body, s.name), "n");
        assert!(b.side_range(s.name).is_none(), "a valid string is not copied");
        assert_eq!(b.meta_get(body, &s, "k\u{e9}\u{fffd}"), Some("v\n\u{fffd}\u{fffd}"));
        // encoding/json refuses a negative number for a uint64 (UnmarshalTypeError): a 400, as
        // Datadog's agent answers; only msgpack's int64 ids are reinterpreted.
        for id in ["trace_id", "span_id", "parent_id"] {
            let body = format!(r#"[[{{"{id}":-5}}]]"#);
            assert!(decode_v04(body.as_bytes(), Encoding::Json, &mut b).is_err(), "{id}");
        }
    }

    #[test]
    fn negative_ids_are_reinterpreted_and_invalid_utf8_repaired() {
        // v0.4: trace_id -1 (int8), span_id i64::MIN (int64), service "a\xffb\xe2\x82" (invalid).
        let mut body = vec![0x91, 0x91, 0x84, 0xa8];
        body.extend_from_slice(b"trace_id");
        body.push(0xff);
        body.push(0xa7);
        body.extend_from_slice(b"span_id");
        body.extend_from_slice(&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        body.push(0xa7);
        body.extend_from_slice(b"service");
        body.extend_from_slice(&[0xa5, b'a', 0xff, b'b', 0xe2, 0x82]);
        body.extend_from_slice(&[0xa4, b'm', b'e', b't', b'a', 0x81, 0xa1, b'k', 0xa2, 0xc3, 0xa9]);
        let mut b = Batch::default();
        decode_v04(&body, Encoding::Msgpack, &mut b).unwrap();
        let s = b.spans[0];
        assert_eq!((s.trace_id, s.span_id), (u64::MAX, 1 << 63));
        // One U+FFFD per invalid byte, as Go's ReadRune (the truncated é is two).
        assert_eq!(b.text(&body, s.service), "a\u{fffd}b\u{fffd}\u{fffd}");
        assert_eq!(b.meta_get(&body, &s, "k"), Some("é"), "valid strings stay in the body");
        assert!(b.side.len() == "a\u{fffd}b\u{fffd}\u{fffd}".len(), "only the repaired string is copied");
        // v0.5: a repaired table string, a negative parent id.
        let v5 =
            [0x92, 0x92, 0xa1, b'x', 0xa2, 0xc3, 0x28, 0x91, 0x91, 0x9c, 1, 0, 0, 5, 6, 0xfe, 0, 0, 0, 0x80, 0x80, 0];
        decode_v05(&v5, &mut b).unwrap();
        let s = b.spans[0];
        assert_eq!((b.text(&v5, s.service), s.parent_id), ("\u{fffd}(", u64::MAX - 1));
        // A valid real payload copies nothing.
        decode_v04(fix!("ddtrace-4.16-v0.4.msgpack"), Encoding::Msgpack, &mut b).unwrap();
        assert!(b.side.is_empty());
    }

    /// The repair writes runs at once; it equals the plain one-replacement-per-invalid-byte
    /// loop on random bytes (biased to UTF-8 lead and continuation bytes).
    #[test]
    fn repair_equals_one_replacement_per_invalid_byte() {
        fn reference(mut b: &[u8]) -> String {
            let mut s = String::new();
            loop {
                match std::str::from_utf8(b) {
                    Ok(v) => return s + v,
                    Err(e) => {
                        let (valid, rest) = b.split_at(e.valid_up_to());
                        s.push_str(std::str::from_utf8(valid).unwrap());
                        s.push('\u{fffd}');
                        b = &rest[1..];
                    }
                }
            }
        }
        let alphabet =
            [b'a', 0x80, 0xbf, 0xc0, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xf5, 0xff, 0xed, 0xa0];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut v = Vec::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = Batch::default();
            let s = repair_utf8(&v, &mut b);
            assert_eq!(b.text(&[], s), reference(&v), "{v:x?}");
        }
    }

    #[test]
    fn decoding_stops_at_the_limit() {
        // 1,000 empty span maps: 1,006 bytes that would decode into 104,000.
        let mut body = vec![0x91, 0xdd, 0, 0, 0x03, 0xe8];
        body.resize(body.len() + 1000, 0x80);
        let mut b = Batch { limit: 10_000, ..Batch::default() };
        assert_eq!(decode_v04(&body, Encoding::Msgpack, &mut b), Err(TOO_LARGE));
        assert!(b.spans.is_empty() && b.spans.capacity() * std::mem::size_of::<Span>() <= 10_000 + 104);
        b.limit = usize::MAX;
        decode_v04(&body, Encoding::Msgpack, &mut b).unwrap();
        assert_eq!(b.spans.len(), 1000);
        // JSON, v0.5 table strings, meta entries.
        let mut b = Batch { limit: 10_000, ..Batch::default() };
        let json = format!("[[{}{{}}]]", "{},".repeat(999));
        assert_eq!(decode_v04(json.as_bytes(), Encoding::Json, &mut b), Err(TOO_LARGE));
        let mut v5 = vec![0x92, 0xdd, 0, 0, 0x27, 0x10];
        v5.resize(v5.len() + 10_000, 0xa0);
        v5.push(0x90);
        assert_eq!(decode_v05(&v5, &mut b), Err(TOO_LARGE));
        let mut meta = vec![0x91, 0x91, 0x81, 0xa4, b'm', b'e', b't', b'a', 0xde, 0x03, 0xe8];
        meta.resize(meta.len() + 2000, 0xa0);
        assert_eq!(decode_v04(&meta, Encoding::Msgpack, &mut b), Err(TOO_LARGE));
        assert!(b.cost() == 0, "nothing is left behind");
        // A 9,000-byte string of invalid bytes would be repaired into 27,000: the repair stops
        // at the limit, not after it.
        let mut bad = vec![0x91, 0x91, 0x81, 0xa7, b's', b'e', b'r', b'v', b'i', b'c', b'e', 0xda, 0x23, 0x28];
        bad.resize(bad.len() + 9000, 0xff);
        let mut b = Batch { limit: 10_000, ..Batch::default() };
        assert_eq!(decode_v04(&bad, Encoding::Msgpack, &mut b), Err(TOO_LARGE));
        assert!(b.side.capacity() <= 10_000, "side buffer {} bytes", b.side.capacity());
    }

    #[test]
    fn every_truncation_of_a_real_payload_is_an_error_not_a_panic() {
        let mut b = Batch::default();
        for body in [&fix!("ddtrace-4.16-v0.4.msgpack")[..], &fix!("ddtrace-4.16-v0.5.msgpack")[..]] {
            for cut in 0..body.len() {
                let r = if body == fix!("ddtrace-4.16-v0.5.msgpack") {
                    decode_v05(&body[..cut], &mut b)
                } else {
                    decode_v04(&body[..cut], Encoding::Msgpack, &mut b)
                };
                assert!(r.is_err(), "a body cut at {cut} decoded");
            }
        }
        // Trailing garbage and wrong shapes.
        let mut long = fix!("ddtrace-4.16-v0.4.msgpack").to_vec();
        long.push(0);
        assert!(decode_v04(&long, Encoding::Msgpack, &mut b).is_err());
        assert_eq!(
            decode_v05(&[0x92, 0x91, 0xa1, b'x', 0x91, 0x91, 0x9c, 5, 0, 0, 1, 2, 0, 3, 4, 0, 0x80, 0x80, 0], &mut b),
            Err(DecodeError("v0.5: string index out of range"))
        );
        assert!(decode_v05(&[0x93, 0x90, 0x90, 0x90], &mut b).is_err());
        assert!(
            decode_v04(
                &[0x91, 0x91, 0x81, 0xa7, b's', b'e', b'r', b'v', b'i', b'c', b'e', 0x05],
                Encoding::Msgpack,
                &mut b
            )
            .is_err(),
            "wrong type"
        );
    }
}
