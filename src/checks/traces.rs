//! What the trace agent does to spans before forwarding (spec/protocol.md §6.2–§6.3):
//! normalisation (traces with a zero id or mixed trace ids are dropped; service and name are
//! capped at 500 characters, type at 100; defaults for empty names; impossible start times and
//! negative durations fixed), the STS interpretation (`span.serviceName`, `span.serviceURN`,
//! `span.serviceType`, `span.serviceInstanceURN`), and the agent's own tags (the client's
//! container id and, when the agent knows the client process, its pid, host and start time).
//! Pure: the batch, the body and the facts about the request come in.

use crate::checks::obfuscate::{self, Obfuscator, Outcome};
use crate::checks::otel_interpret::{interpret_otel, OtelCounts};
use crate::checks::sampling::{self, Decision, SamplingDrops};
use crate::checks::truncate;
use crate::model::trace::{Batch, Span, Str};

const MAX_SERVICE: usize = 500;
const MAX_NAME: usize = 500;
const MAX_TYPE: usize = 100;
/// 2000-01-01T00:00:00Z in ns: earlier starts are clock errors.
const YEAR_2000_NS: i64 = 946_684_800_000_000_000;

/// Facts about one request the spans do not carry.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestContext<'a> {
    pub now_ns: i64,
    /// The agent's hostname (the host of `urn:process:/…`).
    pub host: &'a str,
    /// `Datadog-Container-ID`.
    pub container_id: Option<&'a str>,
    /// The client process when the agent knows it (Unix socket peer): `(host pid, create time ms)`.
    pub client: Option<(u32, i64)>,
    pub origin: Origin,
}

/// Where the spans came from: the interpretation of OpenTelemetry spans depends on it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The Datadog routes (`/v0.3`–`/v0.5/traces`).
    #[default]
    Datadog,
    /// `/open-telemetry` (parity: spans of libraries no interpreter knows are dropped).
    StackStateOtel,
    /// OTLP `/v1/traces` (a general receiver: spans no interpreter knows keep the default
    /// interpretation, never dropped).
    Otlp,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceCounts {
    pub traces: u64,
    pub spans: u64,
    /// Traces dropped by normalisation (zero ids, mixed trace ids, empty).
    pub dropped_traces: u64,
    /// Traces dropped by priority sampling (checks/sampling.rs), by reason.
    pub sampling: SamplingDrops,
    /// Processing stopped: what the agent adds took the batch past its limit (the batch is then
    /// not to be forwarded).
    pub over_limit: bool,
    /// What the OpenTelemetry interpretation did (spec/traces-parity.md §5.3); `traces` and
    /// `spans` already leave out what it dropped.
    pub otel: OtelCounts,
    /// SQL/Cassandra resources obfuscated, and those that did not parse (`Non-parsable SQL query`).
    pub sql_obfuscated: u64,
    pub sql_errors: u64,
    /// Redis resources quantized.
    pub redis_quantized: u64,
}

/// Meta keys StackState reads to name a service: the service plus `:<value>` of each present.
pub const SERVICE_IDENTIFIER_KEYS: &[&str] = &["db.instance"];

/// The keys and defaults the agent writes, stored once per batch in its side buffer.
struct Consts {
    unnamed_service: Str,
    unnamed_operation: Str,
    container_id: Str,
    pid: Str,
    hostname: Str,
    starttime: Str,
    service_name: Str,
    service_urn: Str,
    service_type: Str,
    instance_urn: Str,
}

impl Consts {
    fn new(b: &mut Batch) -> Consts {
        Consts {
            unnamed_service: b.push_side("unnamed-service"),
            unnamed_operation: b.push_side("unnamed_operation"),
            container_id: b.push_side("container_id"),
            pid: b.push_side("span.pid"),
            hostname: b.push_side("span.hostname"),
            starttime: b.push_side("span.starttime"),
            service_name: b.push_side("span.serviceName"),
            service_urn: b.push_side("span.serviceURN"),
            service_type: b.push_side("span.serviceType"),
            instance_urn: b.push_side("span.serviceInstanceURN"),
        }
    }
}

/// Normalises and interprets every trace of `b` in place; dropped traces keep their slot with no
/// spans. Returns what is left to forward. Stops, with `over_limit`, as soon as the batch costs
/// more than its limit (every span adds a few strings; a v0.5 table string referenced by every
/// span would be copied for each).
pub fn process(b: &mut Batch, body: &[u8], ctx: &RequestContext<'_>) -> TraceCounts {
    process_with(b, body, ctx, &mut Obfuscator::default())
}

/// [`process`] with the agent's obfuscator (its SQL backslash mode is sticky, and its buffers are
/// reused: the agent's path allocates nothing per span).
pub fn process_with(b: &mut Batch, body: &[u8], ctx: &RequestContext<'_>, ob: &mut Obfuscator) -> TraceCounts {
    let mut counts = TraceCounts::default();
    let c = Consts::new(b);
    let obfuscation_keys = ob.begin_batch(b);
    for t in 0..b.traces.len() {
        let (first, n) = b.traces[t];
        let spans = first as usize..(first + n) as usize;
        let Some(root_id) = b.spans.get(first as usize).map(|s| s.trace_id) else {
            counts.dropped_traces += 1;
            b.traces[t].1 = 0;
            continue;
        };
        let valid =
            n > 0 && b.spans[spans.clone()].iter().all(|s| s.trace_id == root_id && s.trace_id != 0 && s.span_id != 0);
        if !valid {
            counts.dropped_traces += 1;
            b.traces[t].1 = 0;
            continue;
        }
        // Priority sampling (§4) on the trace as the client sent it. The original decides after
        // its per-span steps, but on what they leave alone (the root's priority, `error`), so
        // deciding first is the same decision, and a dropped trace costs no further work.
        if let Decision::Drop(why) = sampling::sample(b, body, spans.clone()) {
            counts.sampling.count(why);
            b.traces[t].1 = 0;
            continue;
        }
        for i in spans {
            // What a span usually adds, reserved within the limit.
            b.reserve_side(1024);
            let first_extra = b.extra.len() as u32;
            normalize(b, body, i, ctx.now_ns, &c);
            // obfuscation (§1, §2) runs here, before truncation
            match obfuscate::obfuscate_span(ob, b, body, i, &obfuscation_keys) {
                Outcome::Sql => counts.sql_obfuscated += 1,
                Outcome::SqlError => counts.sql_errors += 1,
                Outcome::Redis => counts.redis_quantized += 1,
                Outcome::SqlEmpty | Outcome::Untouched | Outcome::OverLimit => {}
            }
            truncate::truncate_span(b, body, i, first_extra);
            interpret(b, body, i, ctx, &c, first_extra);
            // Every copy of a string asked for room first (`Batch::fits`): a span naming one long
            // string in several keys stops at the copy that would pass the limit, not after it.
            if b.over_limit() {
                counts.over_limit = true;
                return counts;
            }
        }
        counts.traces += 1;
        counts.spans += u64::from(n);
    }
    // The STS interpretation of OpenTelemetry spans (§5.3): after the default interpretation,
    // per batch (it regroups and drops spans within their traces).
    if ctx.origin != Origin::Datadog {
        let otel = interpret_otel(b, body, ctx.origin);
        counts.traces -= otel.emptied_traces;
        counts.spans -= otel.dropped_spans();
        counts.otel = otel;
        counts.over_limit = b.over_limit();
    }
    counts
}

fn cap(b: &Batch, body: &[u8], s: Str, max_chars: usize) -> Str {
    let text = b.text(body, s);
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => s.prefix(at),
        None => s,
    }
}

fn normalize(b: &mut Batch, body: &[u8], i: usize, now_ns: i64, c: &Consts) {
    let mut s = b.spans[i];
    s.service = if s.service.is_empty() { c.unnamed_service } else { cap(b, body, s.service, MAX_SERVICE) };
    s.name = if s.name.is_empty() { c.unnamed_operation } else { cap(b, body, s.name, MAX_NAME) };
    if s.resource.is_empty() {
        s.resource = s.name;
    }
    s.typ = cap(b, body, s.typ, MAX_TYPE);
    if s.duration < 0 {
        s.duration = 0;
    }
    if s.start < YEAR_2000_NS {
        s.start = now_ns.saturating_sub(s.duration);
    }
    b.spans[i] = s;
}

/// Adds one meta entry built by `value` in the side buffer.
fn add(b: &mut Batch, k: Str, value: impl FnOnce(&mut Batch)) {
    let begin = b.side_begin();
    value(b);
    let v = b.side_end(begin);
    b.push_extra((k, v));
}

/// Appends the text of `s` (from the body or the side buffer itself) to the side buffer, when it
/// fits within the batch's limit (else nothing, and the batch is over its limit).
fn copy(b: &mut Batch, body: &[u8], s: Str) {
    if !b.fits(s.len()) {
        return;
    }
    match b.side_range(s) {
        Some(r) => b.side.extend_from_within(r),
        None => b.side.extend_from_slice(Batch::body_bytes(body, s)),
    }
}

fn decimal(b: &mut Batch, v: i64) {
    let mut buf = [0u8; 20];
    if v < 0 {
        b.side_piece("-");
    }
    let n = crate::fmt::decimal(v.unsigned_abs(), &mut buf);
    b.side.extend_from_slice(&buf[..n]);
}

/// `first_extra`: where the span's additions start (obfuscation may have added some).
fn interpret(b: &mut Batch, body: &[u8], i: usize, ctx: &RequestContext<'_>, c: &Consts, first_extra: u32) {
    let s: Span = b.spans[i];
    if let Some(id) = ctx.container_id.filter(|id| !id.is_empty()) {
        if b.meta_get(body, &s, "container_id").is_none() {
            add(b, c.container_id, |b| b.side_piece(id));
        }
    }
    // The client process, when the agent knows it and the client did not say.
    if let Some((p, create)) = ctx.client.filter(|_| b.meta_get(body, &s, "span.pid").is_none()) {
        add(b, c.pid, |b| decimal(b, i64::from(p)));
        if b.meta_get(body, &s, "span.hostname").is_none() {
            add(b, c.hostname, |b| b.side_piece(ctx.host));
        }
        if b.meta_get(body, &s, "span.starttime").is_none() {
            add(b, c.starttime, |b| decimal(b, create));
        }
    }
    if b.meta_get(body, &s, "span.serviceURN").is_none() {
        // span.serviceName: the service and the values of the identifier keys present.
        let k = c.service_name;
        let begin = b.side_begin();
        copy(b, body, s.service);
        for key in SERVICE_IDENTIFIER_KEYS {
            if let Some(v) = b.meta(body, &s, key) {
                b.side_piece(":");
                copy(b, body, v);
            }
        }
        let name = b.side_end(begin);
        b.push_extra((k, name));
        let k = c.service_urn;
        let begin = b.side_begin();
        b.side_piece("urn:service:/");
        copy(b, body, name);
        let urn = b.side_end(begin);
        b.push_extra((k, urn));

        // The STS keys select an interpreter (they may come from the client or from the agent).
        let extra_has = |b: &Batch, key: &str| b.span_extra_range(first_extra).iter().any(|(k, _)| b.is(body, *k, key));
        let has = |b: &Batch, key: &str| b.meta_get(body, &s, key).is_some() || extra_has(b, key);
        if has(b, "span.hostname") && has(b, "span.pid") && has(b, "span.kind") {
            if b.text(body, s.typ) == "sql" {
                let db_type = b.meta(body, &s, "db.type");
                add(b, c.service_type, |b| match db_type {
                    Some(t) => copy(b, body, t),
                    None => b.side_piece("database"),
                });
            } else {
                let jvm = b.meta_get(body, &s, "language") == Some("jvm");
                add(b, c.service_type, |b| b.side_piece(if jvm { "java" } else { "service" }));
                let host =
                    b.meta(body, &s, "span.hostname").or_else(|| b.extra_value(first_extra, body, "span.hostname"));
                let pid = b.meta(body, &s, "span.pid").or_else(|| b.extra_value(first_extra, body, "span.pid"));
                let start =
                    b.meta(body, &s, "span.starttime").or_else(|| b.extra_value(first_extra, body, "span.starttime"));
                add(b, c.instance_urn, |b| {
                    b.side_piece("urn:service-instance:/");
                    copy(b, body, name);
                    b.side_piece(":/");
                    if let Some(h) = host {
                        copy(b, body, h);
                    }
                    b.side_piece(":");
                    if let Some(p) = pid {
                        copy(b, body, p);
                    }
                    b.side_piece(":");
                    match start {
                        Some(t) => copy(b, body, t),
                        None => decimal(b, s.start / 1_000_000),
                    }
                });
            }
        }
    }
    b.spans[i].extra = (first_extra, b.extra.len() as u32 - first_extra);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::traces::decode_v05;

    /// One v0.5 span whose `db.instance`, `span.hostname`, `span.pid` and `span.starttime` all
    /// name the same long table string (and `span.kind` is set): the STS interpretation would
    /// copy it six times (service name, service URN, instance URN holding four). Processing stops
    /// at the copy that would pass the limit. (Truncation cuts longer values to 5,000 bytes.)
    fn span_naming_one_string_four_times(len: usize) -> Vec<u8> {
        let mut b = vec![0x92, 0x97, 0xa1, b's'];
        b.push(0xdb);
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.resize(b.len() + len, b'x');
        for k in ["db.instance", "span.hostname", "span.pid", "span.starttime", "span.kind"] {
            b.push(0xa0 | k.len() as u8);
            b.extend_from_slice(k.as_bytes());
        }
        // service 0, name 0, resource 0, ids 1 1 0, start, duration, error, meta, metrics, type 0.
        b.extend_from_slice(&[0x91, 0x91, 0x9c, 0, 0, 0, 1, 1, 0, 0, 0, 0]);
        b.push(0x85);
        b.extend_from_slice(&[2, 1, 3, 1, 4, 1, 5, 1, 6, 0]);
        b.extend_from_slice(&[0x80, 0]);
        b
    }

    #[test]
    fn copies_of_a_long_string_stop_at_the_limit() {
        let body = span_naming_one_string_four_times(5_000);
        let ctx = RequestContext {
            now_ns: 1_700_000_000_000_000_000,
            host: "h",
            container_id: None,
            client: None,
            ..Default::default()
        };
        let limit = 15_000;
        let mut b = Batch { limit, ..Batch::default() };
        decode_v05(&body, &mut b).unwrap();
        let counts = process(&mut b, &body, &ctx);
        assert!(counts.over_limit, "six copies of 5,000 bytes do not fit in {limit}");
        assert!(b.cost() <= limit, "the batch cost {} (limit {limit})", b.cost());
        assert!(b.side.capacity() <= limit, "side buffer of {} bytes", b.side.capacity());
        // With room for it, every copy is made.
        let mut b = Batch::default();
        decode_v05(&body, &mut b).unwrap();
        let counts = process(&mut b, &body, &ctx);
        assert!(!counts.over_limit && counts.spans == 1);
        let urn = b.span_extra(&b.spans[0]).iter().find(|(k, _)| b.is(&body, *k, "span.serviceInstanceURN")).unwrap().1;
        assert!(urn.len() > 20_000, "{}", urn.len());
    }
}
