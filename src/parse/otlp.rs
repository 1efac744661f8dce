//! OpenTelemetry `ExportTraceServiceRequest`s decoded into a reused [`Batch`], in two mappings:
//!
//! - [`decode_stackstate`]: the StackState agent's `POST /open-telemetry` (spec traces-parity
//!   §5.2, `mapOpenTelemetryTraces`): binary protobuf only; `@opentelemetry/instrumentation-http`
//!   spans whose parent is a span of another library (neither http nor aws-lambda) are merged
//!   into that parent; one trace per instrumentation-library group (http groups, then
//!   aws-lambda, then the rest); service, resource and type `openTelemetry` (the service as the
//!   original's normaliser leaves it: `opentelemetry`); ids hashed from their bytes decoded as
//!   Go's `[]rune` does; span attributes copied to meta (doubles as Go's `%f`); `error` = the
//!   `http.status_code` when it is ≥ 400. Resource attributes, status, kind are ignored, as the
//!   original does.
//! - [`decode_otlp`]: a standard OTLP/HTTP receiver's `/v1/traces` (§5.4), protobuf or JSON:
//!   spans grouped by trace id; `service` from the resource's `service.name`; ids from the last
//!   8 bytes (big-endian); `error` from status code 2 (`error.msg` from its message); `type`
//!   from the database system or the span kind; `resource` the span name, the database
//!   statement of a SQL span (then not in its meta: the receiver gets it obfuscated, as the
//!   resource and `sql.query`), or `<method> <route>` of an HTTP server span; meta: the
//!   resource's attributes named by [`RESOURCE_PREFIXES`] (at most [`MAX_RESOURCE_ATTRIBUTES`]),
//!   `instrumentation_library`,
//!   `instrumentation_version`, `source` = `openTelemetry` (what the STS interpreters select
//!   on), `span.kind`, then the span's attributes (at most [`MAX_SPAN_ATTRIBUTES`]; later keys
//!   win). Arrays, key-value lists and bytes values are skipped in both mappings.
//!
//! Strings stay in the body (as [`Str`] ranges) unless they need repair (invalid UTF-8 becomes
//! U+FFFD per invalid byte) or escapes (JSON), or are numbers the agent formats. Bounded as the
//! msgpack path is: decoding stops with [`TOO_LARGE`] once the batch (and the scratch lists
//! counted with it) costs more than its `limit`, which the caller sets from the body's size;
//! the work of merging http spans is bounded by the body's size too.

use super::json_reader::{JStr, JsonReader, Num};
use super::msgpack::{DecodeError, Result};
use super::protobuf::{Bytes, PbReader, Value};
use super::traces::{repair_append, TOO_LARGE};
use crate::model::trace::{Batch, Span, Str};
use std::io::Write as _;

pub const LIB_HTTP: &str = "@opentelemetry/instrumentation-http";
pub const LIB_LAMBDA: &str = "@opentelemetry/instrumentation-aws-lambda";
/// Span attributes kept per span on `/v1/traces` (the OpenTelemetry SDKs' default limit); the
/// rest are counted in [`Decoded::dropped_attributes`].
pub const MAX_SPAN_ATTRIBUTES: usize = 128;
/// Resource attributes copied to each span on `/v1/traces`: at most this many of those named by
/// [`RESOURCE_PREFIXES`] (copied to every span, they multiply a request's size).
pub const MAX_RESOURCE_ATTRIBUTES: usize = 16;
/// The resource attributes a user filters and groups on (the service, environment and where it
/// runs); `telemetry.sdk.*`, `process.*`, `os.*` and the like are not copied.
pub const RESOURCE_PREFIXES: &[&str] =
    &["service.", "deployment.environment", "host.", "cloud.", "container.", "k8s.", "aws.", "faas."];

/// Scratch lists reused from request to request.
#[derive(Debug, Default)]
pub struct Scratch {
    /// `/open-telemetry`: http spans with a parent, sorted by parent id then position.
    http: Vec<HttpRef>,
    /// `/v1/traces`: the current resource's attributes, copied to each of its spans.
    resource: Vec<(Str, Str)>,
}

impl Scratch {
    /// Gives back the storage a large request made.
    pub fn shrink(&mut self, keep: usize) {
        let n = keep / std::mem::size_of::<HttpRef>();
        if self.http.capacity() > n {
            self.http = Vec::new();
        }
    }
}

/// An http span with a parent (`/open-telemetry`): body ranges of its parent id and of the span.
#[derive(Debug, Clone, Copy)]
struct HttpRef {
    parent: (u32, u32),
    span: (u32, u32),
    merged: bool,
}

const HTTP_REF_BYTES: usize = std::mem::size_of::<HttpRef>();

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Spans decoded (before normalisation).
    pub spans: u64,
    /// Attributes over [`MAX_SPAN_ATTRIBUTES`] (or resource ones over
    /// [`MAX_RESOURCE_ATTRIBUTES`]) left out.
    pub dropped_attributes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

/// The keys and constant values the decoder writes, stored once per batch in its side buffer.
struct Keys {
    library: Str,
    version: Str,
    source: Str,
    account: Str,
    kind: Str,
    error_msg: Str,
    status_code: Str,
    open_telemetry: Str,
    service_lower: Str,
    yes: Str,
    no: Str,
    /// By `SpanKind` (1 internal … 5 consumer).
    kinds: [Str; 6],
    web: Str,
    http: Str,
    queue: Str,
    custom: Str,
    db: Str,
    sql: Str,
}

impl Keys {
    fn new(b: &mut Batch) -> Keys {
        Keys {
            library: b.push_side("instrumentation_library"),
            version: b.push_side("instrumentation_version"),
            source: b.push_side("source"),
            account: b.push_side("aws.account.id"),
            kind: b.push_side("span.kind"),
            error_msg: b.push_side("error.msg"),
            status_code: b.push_side("http.status_code"),
            open_telemetry: b.push_side("openTelemetry"),
            service_lower: b.push_side("opentelemetry"),
            yes: b.push_side("true"),
            no: b.push_side("false"),
            kinds: [
                Str::EMPTY,
                b.push_side("internal"),
                b.push_side("server"),
                b.push_side("client"),
                b.push_side("producer"),
                b.push_side("consumer"),
            ],
            web: b.push_side("web"),
            http: b.push_side("http"),
            queue: b.push_side("queue"),
            custom: b.push_side("custom"),
            db: b.push_side("db"),
            sql: b.push_side("sql"),
        }
    }
}

/// An attribute's value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attr {
    Str(Str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Arrays, key-value lists, bytes, or no value: not copied.
    Other,
}

fn check(out: &Batch) -> Result<()> {
    if out.over_limit() {
        return Err(TOO_LARGE);
    }
    Ok(())
}

/// `POST /open-telemetry` (§5.2): binary protobuf, the StackState mapping.
pub fn decode_stackstate(body: &[u8], out: &mut Batch, sc: &mut Scratch) -> Result<Decoded> {
    out.clear();
    let r = stackstate(body, out, sc);
    sc.http.clear();
    if r.is_err() {
        out.clear();
    }
    r
}

/// `POST /v1/traces` (§5.4): protobuf or JSON, the general mapping.
pub fn decode_otlp(body: &[u8], format: Format, out: &mut Batch, sc: &mut Scratch) -> Result<Decoded> {
    out.clear();
    let k = Keys::new(out);
    let mut d = Decoded::default();
    let r = match format {
        Format::Protobuf => otlp_protobuf(body, out, sc, &k, &mut d),
        Format::Json => otlp_json(body, out, sc, &k, &mut d),
    }
    .and_then(|()| group_by_trace(out));
    sc.resource.clear();
    match r {
        Ok(()) => {
            d.spans = out.spans.len() as u64;
            Ok(d)
        }
        Err(e) => {
            out.clear();
            Err(e)
        }
    }
}

// ---- protobuf helpers ----

/// A protobuf string as a body range, or its repair in the side buffer.
fn pb_str(b: Bytes<'_>, out: &mut Batch) -> Result<Str> {
    // is_ascii first, as the msgpack decoder's strings (parse/traces.rs `str_at`).
    if b.data.is_ascii() || std::str::from_utf8(b.data).is_ok() {
        return Ok(Str::body(b.off, b.data.len()));
    }
    let begin = out.side_begin();
    repair_append(b.data, out);
    if out.exceeded {
        return Err(TOO_LARGE);
    }
    Ok(out.side_end(begin))
}

/// `AnyValue` (a oneof: the last field present wins).
fn pb_any(b: Bytes<'_>, out: &mut Batch) -> Result<Attr> {
    let mut r = PbReader::nested(b);
    let mut v = Attr::Other;
    while let Some((f, x)) = r.next_field()? {
        v = match (f, x) {
            (1, Value::Len(s)) => Attr::Str(pb_str(s, out)?),
            (2, Value::Varint(i)) => Attr::Bool(i != 0),
            (3, Value::Varint(i)) => Attr::Int(i as i64),
            (4, Value::Fixed64(bits)) => Attr::Double(f64::from_bits(bits)),
            (5..=7, _) => Attr::Other,
            _ => continue,
        };
    }
    Ok(v)
}

/// `KeyValue`.
fn pb_key_value(b: Bytes<'_>, out: &mut Batch) -> Result<(Str, Attr)> {
    let mut r = PbReader::nested(b);
    let (mut key, mut value) = (Str::EMPTY, Attr::Other);
    while let Some((f, x)) = r.next_field()? {
        match (f, x) {
            (1, Value::Len(s)) => key = pb_str(s, out)?,
            (2, Value::Len(s)) => value = pb_any(s, out)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The value as meta text: strings as they are, `true`/`false`, integers in decimal, doubles as
/// Go's `%f` (`go_float`) or as the shortest text that reads back the same.
fn meta_value(out: &mut Batch, k: &Keys, v: Attr, go_float: bool) -> Result<Option<Str>> {
    Ok(Some(match v {
        Attr::Str(s) => s,
        Attr::Bool(b) => {
            if b {
                k.yes
            } else {
                k.no
            }
        }
        Attr::Int(i) => {
            if !out.fits(20) {
                return Err(TOO_LARGE);
            }
            let begin = out.side_begin();
            let _ = write!(out.side, "{i}");
            out.side_end(begin)
        }
        Attr::Double(f) => {
            // `%f` of 1e308 is 316 bytes; the shortest text of 5e-324 is 326.
            if !out.fits(400) {
                return Err(TOO_LARGE);
            }
            let begin = out.side_begin();
            if go_float {
                go_percent_f(&mut out.side, f);
            } else {
                let _ = write!(out.side, "{f}");
            }
            out.side_end(begin)
        }
        Attr::Other => return Ok(None),
    }))
}

/// Go's `fmt.Sprintf("%f", f)`: six decimals (correctly rounded, ties to even on the exact
/// binary value, as Rust's formatting is), `NaN`, `+Inf`, `-Inf`.
pub fn go_percent_f(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        let _ = write!(out, "{f:.6}");
    }
}

/// The StackState id hash (`convertStringToUint64`): the id bytes decoded as Go's `[]rune(s)`
/// does (each byte that does not start a valid UTF-8 sequence is one U+FFFD, and decoding
/// resumes at the next byte), then `(Σ rᵢ) × (r₀ + rₙ₋₁)` modulo 2^64. 0 for no bytes.
pub fn go_rune_hash(b: &[u8]) -> u64 {
    let (mut sum, mut first, mut last) = (0u64, None, 0u64);
    let mut add = |r: u32| {
        sum = sum.wrapping_add(u64::from(r));
        first.get_or_insert(u64::from(r));
        last = u64::from(r);
    };
    let mut rest = b;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                s.chars().for_each(|c| add(c as u32));
                break;
            }
            Err(e) => {
                let (valid, bad) = rest.split_at(e.valid_up_to());
                std::str::from_utf8(valid).unwrap_or("").chars().for_each(|c| add(c as u32));
                add(0xfffd);
                rest = bad.get(1..).unwrap_or(&[]);
            }
        }
    }
    match first {
        Some(f) => sum.wrapping_mul(f + last),
        None => 0,
    }
}

/// An OTLP id as a Datadog one: the last 8 bytes, big-endian (SV193 `byteArrayToUint64`).
pub fn be_id(b: &[u8]) -> u64 {
    b[b.len().saturating_sub(8)..].iter().fold(0u64, |v, &x| (v << 8) | u64::from(x))
}

/// The scope (`InstrumentationScope`/`InstrumentationLibrary`) of a `ScopeSpans`: name and version.
fn pb_scope(ss: Bytes<'_>, out: &mut Batch) -> Result<(Str, Str)> {
    let (mut name, mut version) = (Str::EMPTY, Str::EMPTY);
    let mut r = PbReader::nested(ss);
    while let Some((f, x)) = r.next_field()? {
        if let (1, Value::Len(scope)) = (f, x) {
            let mut s = PbReader::nested(scope);
            while let Some((f, x)) = s.next_field()? {
                match (f, x) {
                    (1, Value::Len(v)) => name = pb_str(v, out)?,
                    (2, Value::Len(v)) => version = pb_str(v, out)?,
                    _ => {}
                }
            }
        }
    }
    Ok((name, version))
}

/// The spans (field 2) of a `ScopeSpans`.
fn pb_each_span<'a>(ss: Bytes<'a>, mut f: impl FnMut(Bytes<'a>) -> Result<()>) -> Result<()> {
    let mut r = PbReader::nested(ss);
    while let Some((n, x)) = r.next_field()? {
        if let (2, Value::Len(sp)) = (n, x) {
            f(sp)?;
        }
    }
    Ok(())
}

/// The `ScopeSpans` of a `ResourceSpans`: field 2 (`scope_spans`, formerly
/// `instrumentation_library_spans`), or, only when there is none, 1000 (the deprecated copy of
/// the old field, which a sender that fills both would otherwise have decoded twice).
fn pb_each_scope<'a>(rs: Bytes<'a>, mut f: impl FnMut(Bytes<'a>) -> Result<()>) -> Result<()> {
    let mut r = PbReader::nested(rs);
    let mut field = 1000;
    while let Some((n, x)) = r.next_field()? {
        if let (2, Value::Len(_)) = (n, x) {
            field = 2;
            break;
        }
    }
    let mut r = PbReader::nested(rs);
    while let Some((n, x)) = r.next_field()? {
        match x {
            Value::Len(ss) if n == field => f(ss)?,
            _ => {}
        }
    }
    Ok(())
}

/// A span's `(trace_id, span_id, parent_span_id)` bytes.
fn pb_ids(sp: Bytes<'_>) -> Result<(Bytes<'_>, Bytes<'_>, Bytes<'_>)> {
    let none = Bytes { data: &[], off: 0 };
    let (mut t, mut s, mut p) = (none, none, none);
    let mut r = PbReader::nested(sp);
    while let Some((f, x)) = r.next_field()? {
        match (f, x) {
            (1, Value::Len(b)) => t = b,
            (2, Value::Len(b)) => s = b,
            (4, Value::Len(b)) => p = b,
            _ => {}
        }
    }
    Ok((t, s, p))
}

// ---- /open-telemetry ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Http,
    Lambda,
    Rest,
}

fn group_of(out: &Batch, body: &[u8], lib: Str) -> Group {
    if out.is(body, lib, LIB_HTTP) {
        Group::Http
    } else if out.is(body, lib, LIB_LAMBDA) {
        Group::Lambda
    } else {
        Group::Rest
    }
}

fn range_of(b: Bytes<'_>) -> (u32, u32) {
    (b.off as u32, b.data.len() as u32)
}

fn slice(body: &[u8], (off, len): (u32, u32)) -> &[u8] {
    body.get(off as usize..off as usize + len as usize).unwrap_or(&[])
}

fn stackstate(body: &[u8], out: &mut Batch, sc: &mut Scratch) -> Result<Decoded> {
    let k = Keys::new(out);
    let mut d = Decoded::default();
    // Merging re-reads each merged http span once per parent that takes it, charged here by
    // its length (+1): a real request merges each http span into one parent (at most the body's
    // size in all); a hostile one whose parents share one span id would re-read the same spans
    // for each parent (quadratic), and is cut off here with `TOO_LARGE`.
    let mut merge_work = merge_budget(body.len());
    let mut r = PbReader::new(body);
    while let Some((f, x)) = r.next_field()? {
        if let (1, Value::Len(rs)) = (f, x) {
            stackstate_resource(body, rs, out, sc, &k, &mut merge_work)?;
        }
    }
    d.spans = out.spans.len() as u64;
    Ok(d)
}

fn stackstate_resource(
    body: &[u8],
    rs: Bytes<'_>,
    out: &mut Batch,
    sc: &mut Scratch,
    k: &Keys,
    merge_work: &mut usize,
) -> Result<()> {
    // The account id: `cloud.account.id` of the first aws-lambda span that has the key.
    let mut account: Option<Option<Str>> = None;
    sc.http.clear();
    pb_each_scope(rs, |ss| {
        let (lib, _) = pb_scope(ss, out)?;
        match group_of(out, body, lib) {
            Group::Lambda if account.is_none() => pb_each_span(ss, |sp| {
                let mut r = PbReader::nested(sp);
                while let Some((f, x)) = r.next_field()? {
                    if let (9, Value::Len(kv)) = (f, x) {
                        let (key, v) = pb_key_value(kv, out)?;
                        if account.is_none() && out.is(body, key, "cloud.account.id") {
                            // `GetStringValue()`: empty unless a string.
                            account = Some(match v {
                                Attr::Str(s) if !s.is_empty() => Some(s),
                                _ => None,
                            });
                        }
                    }
                }
                Ok(())
            }),
            Group::Http => pb_each_span(ss, |sp| {
                let (_, _, parent) = pb_ids(sp)?;
                if !parent.data.is_empty() {
                    if out.cost().saturating_add((sc.http.len() + 1) * HTTP_REF_BYTES) > out.limit {
                        return Err(TOO_LARGE);
                    }
                    sc.http.push(HttpRef { parent: range_of(parent), span: range_of(sp), merged: false });
                }
                Ok(())
            }),
            _ => Ok(()),
        }
    })?;
    let account = account.flatten();
    sc.http.sort_unstable_by(|a, b| slice(body, a.parent).cmp(slice(body, b.parent)).then(a.span.0.cmp(&b.span.0)));
    // Which http spans merge: those whose parent is a span of another library with a span id
    // and a parent id longer than one byte.
    pb_each_scope(rs, |ss| {
        let (lib, _) = pb_scope(ss, out)?;
        if group_of(out, body, lib) != Group::Rest {
            return Ok(());
        }
        pb_each_span(ss, |sp| {
            let (_, id, parent) = pb_ids(sp)?;
            if id.data.len() > 1 && parent.data.len() > 1 {
                let range = parent_range(&sc.http, body, id.data);
                // Ranges are marked whole: one marked already was marked with all of its range.
                if sc.http.get(range.start).is_some_and(|h| !h.merged) {
                    sc.http[range].iter_mut().for_each(|h| h.merged = true);
                }
            }
            Ok(())
        })
    })?;
    for pass in [Group::Http, Group::Lambda, Group::Rest] {
        pb_each_scope(rs, |ss| {
            let (lib, version) = pb_scope(ss, out)?;
            if group_of(out, body, lib) != pass {
                return Ok(());
            }
            let first = out.spans.len() as u32;
            pb_each_span(ss, |sp| {
                if pass == Group::Http {
                    let (_, _, parent) = pb_ids(sp)?;
                    if !parent.data.is_empty() {
                        let range = parent_range(&sc.http, body, parent.data);
                        let at = sc.http[range.clone()].partition_point(|h| h.span.0 < sp.off as u32);
                        if sc.http.get(range.start + at).is_some_and(|h| h.merged && h.span.0 == sp.off as u32) {
                            return Ok(());
                        }
                    }
                }
                let g = SpanGroup { lib, version, lambda: pass == Group::Lambda, rest: pass == Group::Rest, account };
                stackstate_span(body, sp, &g, out, sc, k, merge_work)
            })?;
            out.push_trace((first, out.spans.len() as u32 - first));
            check(out)
        })?;
    }
    Ok(())
}

/// The bytes of http spans the merging of a `body_len`-byte request may re-read: twice the body
/// (each http span is read once in a real request).
pub fn merge_budget(body_len: usize) -> usize {
    body_len.saturating_mul(2).saturating_add(4096)
}

/// The entries of `http` (sorted by parent id) whose parent id is `id`.
fn parent_range(http: &[HttpRef], body: &[u8], id: &[u8]) -> std::ops::Range<usize> {
    let lo = http.partition_point(|h| slice(body, h.parent) < id);
    let hi = lo + http[lo..].partition_point(|h| slice(body, h.parent) == id);
    lo..hi
}

struct SpanGroup {
    lib: Str,
    version: Str,
    lambda: bool,
    rest: bool,
    account: Option<Str>,
}

#[allow(clippy::too_many_arguments)]
fn stackstate_span(
    body: &[u8],
    sp: Bytes<'_>,
    g: &SpanGroup,
    out: &mut Batch,
    sc: &Scratch,
    k: &Keys,
    merge_work: &mut usize,
) -> Result<()> {
    let mut s = Span { service: k.service_lower, resource: k.open_telemetry, typ: k.open_telemetry, ..Span::default() };
    let first = out.meta.len() as u32;
    out.push_meta((k.library, g.lib));
    out.push_meta((k.version, g.version));
    out.push_meta((k.source, k.open_telemetry));
    if let Some(a) = g.account {
        out.push_meta((k.account, a));
    }
    let (mut id, mut parent) = (&[][..], &[][..]);
    let (mut start, mut end) = (0u64, 0u64);
    let mut r = PbReader::nested(sp);
    while let Some((f, x)) = r.next_field()? {
        match (f, x) {
            (1, Value::Len(b)) => s.trace_id = go_rune_hash(b.data),
            (2, Value::Len(b)) => id = b.data,
            (4, Value::Len(b)) => parent = b.data,
            (5, Value::Len(b)) => s.name = pb_str(b, out)?,
            (7, x) => start = x.fixed64(),
            (8, x) => end = x.fixed64(),
            (9, Value::Len(kv)) => copy_attribute(kv, out, k)?,
            _ => {}
        }
        check(out)?;
    }
    s.span_id = go_rune_hash(id);
    if !g.lambda {
        s.parent_id = go_rune_hash(parent);
    }
    s.start = start as i64;
    s.duration = (end as i64).wrapping_sub(start as i64);
    if g.rest && id.len() > 1 && parent.len() > 1 {
        // The attributes of the http spans merged into this one, after its own (later keys win).
        for h in &sc.http[parent_range(&sc.http, body, id)] {
            *merge_work = merge_work.checked_sub(h.span.1 as usize + 1).ok_or(TOO_LARGE)?;
            let hb = Bytes { data: slice(body, h.span), off: h.span.0 as usize };
            let mut r = PbReader::nested(hb);
            while let Some((f, x)) = r.next_field()? {
                if let (9, Value::Len(kv)) = (f, x) {
                    copy_attribute(kv, out, k)?;
                    check(out)?;
                }
            }
        }
    }
    s.meta = (first, out.meta.len() as u32 - first);
    // `mapInstrumentationErrors`: an http status code of 400 or more is the error.
    if let Some(code) = out.meta(body, &s, "http.status_code").and_then(|v| out.text(body, v).parse::<i64>().ok()) {
        if code >= 400 {
            s.error = code as i32;
            s.metrics = (out.metrics.len() as u32, 1);
            out.push_metric((k.status_code, code as f64));
        }
    }
    out.push_span(s);
    check(out)
}

/// One attribute copied to meta as `/open-telemetry` does (doubles as Go's `%f`).
fn copy_attribute(kv: Bytes<'_>, out: &mut Batch, k: &Keys) -> Result<()> {
    let (key, v) = pb_key_value(kv, out)?;
    if let Some(v) = meta_value(out, k, v, true)? {
        out.push_meta((key, v));
    }
    Ok(())
}

// ---- /v1/traces: shared by protobuf and JSON ----

/// What a span's decoding collects besides meta.
#[derive(Default)]
struct OtelSpan {
    s: Span,
    kind: u64,
    status_code: u64,
    status_message: Str,
    attributes: usize,
}

/// Starts a span: its resource's attributes, then the scope and source.
fn begin_span(out: &mut Batch, sc: &Scratch, k: &Keys, service: Str, lib: Str, version: Str) -> OtelSpan {
    let mut o = OtelSpan::default();
    o.s.service = service;
    o.s.meta.0 = out.meta.len() as u32;
    for &e in &sc.resource {
        out.push_meta(e);
    }
    out.push_meta((k.library, lib));
    if !version.is_empty() {
        out.push_meta((k.version, version));
    }
    out.push_meta((k.source, k.open_telemetry));
    o
}

/// A span attribute, within [`MAX_SPAN_ATTRIBUTES`].
fn span_attribute(out: &mut Batch, k: &Keys, o: &mut OtelSpan, d: &mut Decoded, key: Str, v: Attr) -> Result<()> {
    if o.attributes >= MAX_SPAN_ATTRIBUTES {
        d.dropped_attributes += 1;
        return Ok(());
    }
    if let Some(v) = meta_value(out, k, v, false)? {
        o.attributes += 1;
        out.push_meta((key, v));
    }
    check(out)
}

/// SQL databases (`db.system` values of the semantic conventions): their spans get type `sql`,
/// so the agent's SQL obfuscation applies to their statement.
const SQL_SYSTEMS: &[&str] = &[
    "sqlite",
    "postgresql",
    "mysql",
    "mariadb",
    "mssql",
    "oracle",
    "db2",
    "other_sql",
    "cockroachdb",
    "h2",
    "hsqldb",
    "derby",
    "redshift",
    "snowflake",
    "trino",
    "vertica",
    "sybase",
    "informix",
    "teradata",
    "clickhouse",
];

fn end_span(body: &[u8], out: &mut Batch, k: &Keys, mut o: OtelSpan) -> Result<()> {
    let kind = usize::try_from(o.kind).ok().filter(|&i| i < k.kinds.len()).unwrap_or(0);
    if kind > 0 {
        out.push_meta((k.kind, k.kinds[kind]));
    }
    if o.status_code == 2 {
        o.s.error = 1;
        if !o.status_message.is_empty() {
            out.push_meta((k.error_msg, o.status_message));
        }
    }
    o.s.meta.1 = out.meta.len() as u32 - o.s.meta.0;
    let s = &mut o.s;
    s.resource = s.name;
    let meta = |out: &Batch, s: &Span, key: &str| out.meta(body, s, key).filter(|v| !v.is_empty());
    s.typ = if let Some(system) = meta(out, s, "db.system") {
        let system_text = out.text(body, system);
        if SQL_SYSTEMS.contains(&system_text) {
            if let Some(q) = meta(out, s, "db.statement").or_else(|| meta(out, s, "db.query.text")) {
                s.resource = q;
                // The statement reaches the receiver only as the resource, which the SQL
                // obfuscation rewrites (and copies to `sql.query`): its literals stay here.
                drop_meta(body, out, s, &["db.statement", "db.query.text"]);
            }
            k.sql
        } else if matches!(system_text, "redis" | "memcached" | "cassandra" | "mongodb" | "elasticsearch") {
            // Types the Datadog obfuscator knows by these names.
            system
        } else {
            k.db
        }
    } else {
        match kind {
            2 => k.web,
            3 => k.http,
            4 | 5 => k.queue,
            _ => k.custom,
        }
    };
    if kind == 2 {
        let method = meta(out, s, "http.request.method").or_else(|| meta(out, s, "http.method"));
        if let (Some(m), Some(route)) = (method, meta(out, s, "http.route")) {
            if !out.fits(m.len() + 1 + route.len()) {
                return Err(TOO_LARGE);
            }
            let begin = out.side_begin();
            copy_str(out, body, m);
            out.side_piece(" ");
            copy_str(out, body, route);
            s.resource = out.side_end(begin);
        }
    }
    out.push_span(o.s);
    check(out)
}

/// Removes the span's meta entries with these keys (the span's meta is the last in `out`).
fn drop_meta(body: &[u8], out: &mut Batch, s: &mut Span, keys: &[&str]) {
    let first = s.meta.0 as usize;
    let mut kept = first;
    for i in first..out.meta.len() {
        let e = out.meta[i];
        if !keys.iter().any(|k| out.is(body, e.0, k)) {
            out.meta[kept] = e;
            kept += 1;
        }
    }
    out.meta.truncate(kept);
    s.meta.1 = (kept - first) as u32;
}

fn copy_str(out: &mut Batch, body: &[u8], s: Str) {
    match out.side_range(s) {
        Some(r) => out.side.extend_from_within(r),
        None => out.side.extend_from_slice(Batch::body_bytes(body, s)),
    }
}

/// A resource attribute: `service.name` is the service; a scalar one named by
/// [`RESOURCE_PREFIXES`] is kept (within [`MAX_RESOURCE_ATTRIBUTES`]) for the resource's spans.
#[allow(clippy::too_many_arguments)]
fn resource_attribute(
    body: &[u8],
    out: &mut Batch,
    sc: &mut Scratch,
    k: &Keys,
    d: &mut Decoded,
    service: &mut Str,
    key: Str,
    v: Attr,
) -> Result<()> {
    if let Attr::Str(s) = v {
        if out.is(body, key, "service.name") {
            *service = s;
        }
    }
    let name = out.text(body, key);
    if !RESOURCE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Ok(());
    }
    if sc.resource.len() >= MAX_RESOURCE_ATTRIBUTES {
        d.dropped_attributes += 1;
        return Ok(());
    }
    if let Some(v) = meta_value(out, k, v, false)? {
        sc.resource.push((key, v));
    }
    check(out)
}

/// Spans of one trace made contiguous (ordered by start), one trace per trace id.
fn group_by_trace(out: &mut Batch) -> Result<()> {
    out.spans.sort_unstable_by_key(|s| (s.trace_id, s.start, s.span_id));
    let mut i = 0;
    while i < out.spans.len() {
        let id = out.spans[i].trace_id;
        let n = out.spans[i..].iter().take_while(|s| s.trace_id == id).count();
        out.push_trace((i as u32, n as u32));
        check(out)?;
        i += n;
    }
    Ok(())
}

// ---- /v1/traces, protobuf ----

fn otlp_protobuf(body: &[u8], out: &mut Batch, sc: &mut Scratch, k: &Keys, d: &mut Decoded) -> Result<()> {
    let mut r = PbReader::new(body);
    while let Some((f, x)) = r.next_field()? {
        if let (1, Value::Len(rs)) = (f, x) {
            sc.resource.clear();
            let mut service = Str::EMPTY;
            // The resource first, wherever it sits in the message.
            let mut rr = PbReader::nested(rs);
            while let Some((f, x)) = rr.next_field()? {
                if let (1, Value::Len(res)) = (f, x) {
                    let mut a = PbReader::nested(res);
                    while let Some((f, x)) = a.next_field()? {
                        if let (1, Value::Len(kv)) = (f, x) {
                            let (key, v) = pb_key_value(kv, out)?;
                            resource_attribute(body, out, sc, k, d, &mut service, key, v)?;
                        }
                    }
                }
            }
            pb_each_scope(rs, |ss| {
                let (lib, version) = pb_scope(ss, out)?;
                pb_each_span(ss, |sp| otlp_pb_span(body, sp, out, sc, k, d, service, lib, version))
            })?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn otlp_pb_span(
    body: &[u8],
    sp: Bytes<'_>,
    out: &mut Batch,
    sc: &Scratch,
    k: &Keys,
    d: &mut Decoded,
    service: Str,
    lib: Str,
    version: Str,
) -> Result<()> {
    let mut o = begin_span(out, sc, k, service, lib, version);
    let (mut start, mut end) = (0u64, 0u64);
    let mut r = PbReader::nested(sp);
    while let Some((f, x)) = r.next_field()? {
        match (f, x) {
            (1, Value::Len(b)) => o.s.trace_id = be_id(b.data),
            (2, Value::Len(b)) => o.s.span_id = be_id(b.data),
            (4, Value::Len(b)) => o.s.parent_id = be_id(b.data),
            (5, Value::Len(b)) => o.s.name = pb_str(b, out)?,
            (6, Value::Varint(v)) => o.kind = v,
            (7, x) => start = x.fixed64(),
            (8, x) => end = x.fixed64(),
            (9, Value::Len(kv)) => {
                let (key, v) = pb_key_value(kv, out)?;
                span_attribute(out, k, &mut o, d, key, v)?;
            }
            (15, Value::Len(st)) => {
                let mut r = PbReader::nested(st);
                while let Some((f, x)) = r.next_field()? {
                    match (f, x) {
                        (2, Value::Len(m)) => o.status_message = pb_str(m, out)?,
                        (3, Value::Varint(c)) => o.status_code = c,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    o.s.start = start as i64;
    o.s.duration = (end as i64).wrapping_sub(start as i64);
    end_span(body, out, k, o)
}

// ---- /v1/traces, JSON (OTLP/JSON: lowerCamelCase keys, hex ids, 64-bit integers as strings or
// numbers, unknown keys ignored) ----

/// The next key of an object (and its `:`), copied to `buf`; a key longer than `buf` reads as
/// empty (none of ours). Escaped keys leave nothing in the side buffer.
fn json_key<'k>(r: &mut JsonReader<'_>, out: &mut Batch, buf: &'k mut [u8; 32]) -> Result<&'k [u8]> {
    let mark = out.side.len();
    let s = match r.string(out)? {
        JStr::Body(o, l) => Str::body(o, l),
        JStr::Side(o, l) => Str::side(o, l),
    };
    let text = out.text(r.body(), s).as_bytes();
    let n = if text.len() <= buf.len() { text.len() } else { 0 };
    buf[..n].copy_from_slice(&text[..n]);
    out.side.truncate(mark);
    r.expect(b':', "json: expected ':'")?;
    Ok(&buf[..n])
}

/// Calls `f` with each key of an object (`null` reads as an empty object).
fn json_object(
    r: &mut JsonReader<'_>,
    out: &mut Batch,
    mut f: impl FnMut(&[u8], &mut JsonReader<'_>, &mut Batch) -> Result<()>,
) -> Result<()> {
    if r.null()? || !r.open(b'{', b'}', "json: expected an object")? {
        return Ok(());
    }
    loop {
        let mut buf = [0u8; 32];
        let key = json_key(r, out, &mut buf)?;
        f(key, r, out)?;
        if !r.more(b'}')? {
            return Ok(());
        }
    }
}

/// Calls `f` for each element of an array (`null` reads as empty).
fn json_array(
    r: &mut JsonReader<'_>,
    out: &mut Batch,
    mut f: impl FnMut(&mut JsonReader<'_>, &mut Batch) -> Result<()>,
) -> Result<()> {
    if r.null()? || !r.open(b'[', b']', "json: expected an array")? {
        return Ok(());
    }
    loop {
        f(r, out)?;
        if !r.more(b']')? {
            return Ok(());
        }
    }
}

fn json_str(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<Str> {
    if r.null()? {
        return Ok(Str::EMPTY);
    }
    Ok(match r.string(out)? {
        JStr::Body(o, l) => Str::body(o, l),
        JStr::Side(o, l) => Str::side(o, l),
    })
}

/// An integer sent as a number or a decimal string (proto3 JSON's 64-bit integers).
fn json_int(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<i128> {
    if r.null()? {
        return Ok(0);
    }
    if r.peek()? == b'"' {
        let mark = out.side.len();
        let s = json_str(r, out)?;
        let v = out.text(r.body(), s).trim().parse::<i128>().map_err(|_| DecodeError("json: expected an integer"));
        out.side.truncate(mark);
        return v;
    }
    match r.number()? {
        Num::Int(i) => Ok(i),
        Num::Float(f) if f.fract() == 0.0 && f.abs() < 1.9e19 => Ok(f as i128),
        Num::Float(_) => Err(DecodeError("json: expected an integer")),
    }
}

/// A double sent as a number, or as a string (`"NaN"`, `"Infinity"`, `"-Infinity"`, or digits).
fn json_double(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<f64> {
    if r.peek()? == b'"' {
        let mark = out.side.len();
        let s = json_str(r, out)?;
        let v = match out.text(r.body(), s) {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            t => t.parse::<f64>().map_err(|_| DecodeError("json: expected a number")),
        };
        out.side.truncate(mark);
        return v;
    }
    Ok(match r.number()? {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    })
}

/// A hex id (case-insensitive; OTLP/JSON does not use base64): its last 8 bytes, big-endian.
fn json_hex_id(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<u64> {
    let mark = out.side.len();
    let s = json_str(r, out)?;
    let t = out.text(r.body(), s).as_bytes();
    let bad = DecodeError("json: an id is not an even number of hex digits (at most 32)");
    if t.len() % 2 != 0 || t.len() > 32 || !t.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad);
    }
    let tail = &t[t.len().saturating_sub(16)..];
    let v = tail.iter().fold(0u64, |v, &c| (v << 4) | u64::from((c as char).to_digit(16).unwrap_or(0)));
    out.side.truncate(mark);
    Ok(v)
}

fn json_any(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<Attr> {
    let mut v = Attr::Other;
    json_object(r, out, |key, r, out| {
        v = match key {
            b"stringValue" => Attr::Str(json_str(r, out)?),
            b"boolValue" => match r.peek()? {
                b't' | b'f' => {
                    let t = r.peek()? == b't';
                    r.skip(out)?;
                    Attr::Bool(t)
                }
                _ => return Err(DecodeError("json: boolValue must be true or false")),
            },
            b"intValue" => {
                Attr::Int(i64::try_from(json_int(r, out)?).map_err(|_| DecodeError("json: intValue out of range"))?)
            }
            b"doubleValue" => Attr::Double(json_double(r, out)?),
            _ => {
                r.skip(out)?;
                return Ok(());
            }
        };
        Ok(())
    })?;
    Ok(v)
}

fn json_key_value(r: &mut JsonReader<'_>, out: &mut Batch) -> Result<(Str, Attr)> {
    let (mut key, mut value) = (Str::EMPTY, Attr::Other);
    json_object(r, out, |k, r, out| {
        match k {
            b"key" => key = json_str(r, out)?,
            b"value" => value = json_any(r, out)?,
            _ => r.skip(out)?,
        }
        Ok(())
    })?;
    Ok((key, value))
}

fn otlp_json(body: &[u8], out: &mut Batch, sc: &mut Scratch, k: &Keys, d: &mut Decoded) -> Result<()> {
    let mut r = JsonReader::new(body);
    json_object(&mut r, out, |key, r, out| match key {
        b"resourceSpans" => json_array(r, out, |r, out| json_resource_spans(body, r, out, sc, k, d)),
        _ => r.skip(out),
    })?;
    if !r.at_end() {
        return Err(DecodeError("json: trailing bytes after the request"));
    }
    Ok(())
}

fn json_resource_spans(
    body: &[u8],
    r: &mut JsonReader<'_>,
    out: &mut Batch,
    sc: &mut Scratch,
    k: &Keys,
    d: &mut Decoded,
) -> Result<()> {
    sc.resource.clear();
    let mut service = Str::EMPTY;
    let mut resource_seen = false;
    // Scope lists met before the resource: read after it (two at most: the current and the
    // legacy name; a repeated key is read again, as a later value replaces an earlier one).
    let mut deferred = [None; 2];
    json_object(r, out, |key, r, out| {
        match key {
            b"resource" => {
                json_object(r, out, |key, r, out| match key {
                    b"attributes" => json_array(r, out, |r, out| {
                        let (key, v) = json_key_value(r, out)?;
                        resource_attribute(body, out, sc, k, d, &mut service, key, v)
                    }),
                    _ => r.skip(out),
                })?;
                resource_seen = true;
            }
            b"scopeSpans" | b"instrumentationLibrarySpans" => {
                if resource_seen {
                    json_array(r, out, |r, out| json_scope_spans(body, r, out, sc, k, d, service))?;
                } else {
                    deferred[usize::from(key[0] == b'i')] = Some(r.position());
                    r.skip(out)?;
                }
            }
            _ => r.skip(out)?,
        }
        Ok(())
    })?;
    for pos in deferred.into_iter().flatten() {
        let mut r = JsonReader::at(body, pos);
        json_array(&mut r, out, |r, out| json_scope_spans(body, r, out, sc, k, d, service))?;
    }
    Ok(())
}

fn json_scope_spans(
    body: &[u8],
    r: &mut JsonReader<'_>,
    out: &mut Batch,
    sc: &Scratch,
    k: &Keys,
    d: &mut Decoded,
    service: Str,
) -> Result<()> {
    let (mut lib, mut version) = (Str::EMPTY, Str::EMPTY);
    let mut scope_seen = false;
    let mut deferred = None;
    json_object(r, out, |key, r, out| {
        match key {
            b"scope" | b"instrumentationLibrary" => {
                json_object(r, out, |key, r, out| {
                    match key {
                        b"name" => lib = json_str(r, out)?,
                        b"version" => version = json_str(r, out)?,
                        _ => r.skip(out)?,
                    }
                    Ok(())
                })?;
                scope_seen = true;
            }
            b"spans" if scope_seen => {
                json_array(r, out, |r, out| json_span(body, r, out, sc, k, d, service, lib, version))?;
            }
            b"spans" => {
                deferred = Some(r.position());
                r.skip(out)?;
            }
            _ => r.skip(out)?,
        }
        Ok(())
    })?;
    if let Some(pos) = deferred {
        let mut r = JsonReader::at(body, pos);
        json_array(&mut r, out, |r, out| json_span(body, r, out, sc, k, d, service, lib, version))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn json_span(
    body: &[u8],
    r: &mut JsonReader<'_>,
    out: &mut Batch,
    sc: &Scratch,
    k: &Keys,
    d: &mut Decoded,
    service: Str,
    lib: Str,
    version: Str,
) -> Result<()> {
    let mut o = begin_span(out, sc, k, service, lib, version);
    let (mut start, mut end) = (0i128, 0i128);
    json_object(r, out, |key, r, out| {
        match key {
            b"traceId" => o.s.trace_id = json_hex_id(r, out)?,
            b"spanId" => o.s.span_id = json_hex_id(r, out)?,
            b"parentSpanId" => o.s.parent_id = json_hex_id(r, out)?,
            b"name" => o.s.name = json_str(r, out)?,
            b"kind" => o.kind = u64::try_from(json_int(r, out)?).unwrap_or(0),
            b"startTimeUnixNano" => start = json_int(r, out)?,
            b"endTimeUnixNano" => end = json_int(r, out)?,
            b"attributes" => json_array(r, out, |r, out| {
                let (key, v) = json_key_value(r, out)?;
                span_attribute(out, k, &mut o, d, key, v)
            })?,
            b"status" => json_object(r, out, |key, r, out| {
                match key {
                    b"code" => o.status_code = u64::try_from(json_int(r, out)?).unwrap_or(0),
                    b"message" => o.status_message = json_str(r, out)?,
                    _ => r.skip(out)?,
                }
                Ok(())
            })?,
            _ => r.skip(out)?,
        }
        check(out)
    })?;
    o.s.start = start as u64 as i64;
    o.s.duration = (end as u64 as i64).wrapping_sub(o.s.start);
    end_span(body, out, k, o)
}

#[cfg(test)]
mod tests;
