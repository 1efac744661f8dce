//! The STS interpretation of OpenTelemetry spans (spec/traces-parity.md §5.3; SV17
//! `pkg/trace/interpreter/...`). After the default interpretation, a span that came as
//! OpenTelemetry (meta `source` = `openTelemetry` on `/open-telemetry`; any span on OTLP) is routed
//! by its instrumentation library (and, for the AWS SDK, by `aws.service.identifier`) to an
//! interpreter that names what the span touched: `span.serviceName`, `span.serviceURN`,
//! `sts.service.identifiers`, `span.kind`, and `name`, `service`, `resource`, `type`.
//!
//! Spans of one trace routed to one interpreter are one group, interpreted together and placed
//! after the trace's other spans (SV17 appends its groups in a map's order, so any fixed order of
//! groups is the original's; here the order of [`KEYS`]). If any span of a group lacks a required
//! field, the original drops the whole group; so does `/open-telemetry`, while OTLP (a general
//! receiver) keeps such a group with the default interpretation. Spans of a library no interpreter
//! knows are dropped on `/open-telemetry` (they keep the key `openTelemetry`, which has no
//! interpreter) and kept as they are on OTLP.
//!
//! Pure: the batch and the body come in. New strings go to the batch's side buffer, spans are
//! regrouped through the spare end of `Batch::spans`: no allocation in steady state.

use crate::checks::traces::Origin;
use crate::model::trace::{Batch, Span, Str};

/// What [`interpret_otel`] did to a batch, in spans (and the traces it left empty).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OtelCounts {
    /// Spans an interpreter rewrote.
    pub interpreted: u64,
    /// Spans dropped with their group: a span of it lacked a required field, or had an ARN or URL
    /// with too few parts, or an AWS SDK Lambda call other than `invoke`.
    pub dropped_missing_field: u64,
    /// Spans dropped with their group: an SQS span's `messaging.url` has exactly three `/`-parts
    /// (the original panics on it: it checks for three parts and reads the fourth).
    pub dropped_sqs_url: u64,
    /// `/open-telemetry` spans of an instrumentation library no interpreter knows.
    pub dropped_unknown_library: u64,
    /// `/open-telemetry` AWS SDK spans of an `aws.service.identifier` no interpreter knows.
    pub dropped_unknown_aws_service: u64,
    /// OTLP spans whose group lacked a required field: kept with the default interpretation.
    pub uninterpreted: u64,
    /// Traces all of whose spans were dropped (no longer forwarded).
    pub emptied_traces: u64,
}

impl OtelCounts {
    pub fn dropped_spans(&self) -> u64 {
        self.dropped_missing_field
            + self.dropped_sqs_url
            + self.dropped_unknown_library
            + self.dropped_unknown_aws_service
    }
}

const LIB_AWS_LAMBDA: &str = "@opentelemetry/instrumentation-aws-lambda";
const LIB_AWS_SDK: &str = "@opentelemetry/instrumentation-aws-sdk";
const LIB_HTTP: &str = "@opentelemetry/instrumentation-http";
const LIB_STACKSTATE: &str = "@opentelemetry/instrumentation-stackstate";

/// The interpreters (SV17 keys `openTelemetryLambdaEntry`, `openTelemetryLambda`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    LambdaEntry,
    Lambda,
    Sqs,
    S3,
    StepFunctions,
    Sns,
    Http,
    StackState,
}

/// The interpreters in the order their groups follow a trace's other spans.
const KEYS: [Key; 8] =
    [Key::LambdaEntry, Key::Lambda, Key::Sqs, Key::S3, Key::StepFunctions, Key::Sns, Key::Http, Key::StackState];

/// Where a span goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Not an OpenTelemetry span to interpret: stays as the default interpretation left it.
    Keep,
    Group(Key),
    UnknownLibrary,
    UnknownAwsService,
}

/// Why a group cannot be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    MissingField,
    SqsUrl,
}

/// What became of a trace's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Absent,
    Interpreted,
    Dropped,
    /// OTLP: left with the default interpretation, in place among the trace's other spans.
    Kept,
}

/// Interprets the OpenTelemetry spans of every trace of `b` (see the module's comment); dropped
/// spans leave their trace (a trace left with none keeps its slot with no spans).
pub fn interpret_otel(b: &mut Batch, body: &[u8], origin: Origin) -> OtelCounts {
    let mut counts = OtelCounts::default();
    if origin == Origin::Datadog {
        return counts;
    }
    let mut consts: Option<Consts> = None;
    for t in 0..b.traces.len() {
        let (first, n) = b.traces[t];
        if n == 0 {
            continue;
        }
        let range = first as usize..(first + n) as usize;
        let mut present = [false; KEYS.len()];
        let mut any = false;
        for i in range.clone() {
            match classify(b, body, &b.spans[i], origin) {
                Class::Keep => continue,
                Class::Group(k) => present[k as usize] = true,
                Class::UnknownLibrary => counts.dropped_unknown_library += 1,
                Class::UnknownAwsService => counts.dropped_unknown_aws_service += 1,
            }
            any = true;
        }
        if !any {
            continue;
        }
        let mut fate = [Fate::Absent; KEYS.len()];
        for k in KEYS.into_iter().filter(|&k| present[k as usize]) {
            let members = |b: &Batch, i: usize| classify(b, body, &b.spans[i], origin) == Class::Group(k);
            // Every span of the group is checked before any is written: one that cannot be
            // interpreted takes the whole group with it (SV17's interpreters return nil).
            let (mut size, mut why) = (0, None);
            for i in range.clone().filter(|&i| members(b, i)) {
                size += 1;
                if why.is_none() {
                    why = plan(b, body, &b.spans[i], k).err();
                }
            }
            fate[k as usize] = match why {
                None => {
                    let c = *consts.get_or_insert_with(|| Consts::new(b));
                    for i in range.clone() {
                        if members(b, i) {
                            if let Ok(p) = plan(b, body, &b.spans[i], k) {
                                write(b, body, i, p, &c);
                            }
                        }
                    }
                    counts.interpreted += size;
                    Fate::Interpreted
                }
                Some(_) if origin == Origin::Otlp => {
                    counts.uninterpreted += size;
                    Fate::Kept
                }
                Some(Why::SqsUrl) => {
                    counts.dropped_sqs_url += size;
                    Fate::Dropped
                }
                Some(Why::MissingField) => {
                    counts.dropped_missing_field += size;
                    Fate::Dropped
                }
            };
        }
        if regroup(b, body, t, origin, &fate) == 0 {
            counts.emptied_traces += 1;
        }
    }
    counts
}

fn classify(b: &Batch, body: &[u8], s: &Span, origin: Origin) -> Class {
    // Spans the original does not route by source: pre-interpreted by the client
    // (`span.serviceURN`), or process spans (`span.hostname`, `span.pid`, `span.kind`, as the
    // default interpretation tests them; `span.kind` is only ever the client's before this runs).
    if b.meta(body, s, "span.serviceURN").is_some() {
        return Class::Keep;
    }
    let has = |key: &str| b.meta(body, s, key).is_some() || b.span_extra(s).iter().any(|(k, _)| b.is(body, *k, key));
    if b.meta(body, s, "span.kind").is_some() && has("span.hostname") && has("span.pid") {
        return Class::Keep;
    }
    if origin == Origin::StackStateOtel && b.meta_get(body, s, "source") != Some("openTelemetry") {
        return Class::Keep;
    }
    let unknown = |c: Class| if origin == Origin::Otlp { Class::Keep } else { c };
    match b.meta_get(body, s, "instrumentation_library").unwrap_or("") {
        LIB_AWS_LAMBDA => Class::Group(Key::LambdaEntry),
        LIB_HTTP => Class::Group(Key::Http),
        LIB_STACKSTATE => Class::Group(Key::StackState),
        LIB_AWS_SDK => match b.meta_get(body, s, "aws.service.identifier").unwrap_or("") {
            "lambda" => Class::Group(Key::Lambda),
            "sqs" => Class::Group(Key::Sqs),
            "s3" => Class::Group(Key::S3),
            "stepfunctions" => Class::Group(Key::StepFunctions),
            "sns" => Class::Group(Key::Sns),
            _ => unknown(Class::UnknownAwsService),
        },
        _ => unknown(Class::UnknownLibrary),
    }
}

/// What an interpreter reads from a span, checked (nothing is written).
#[derive(Debug, Clone, Copy)]
enum Plan {
    LambdaEntry { arn: Str, function: Str },
    Lambda { function: Str, account: Str, region: Str },
    Sqs { region: Str, url: Str, queue: Str, account: Str },
    S3 { bucket: Str },
    StepFunctions { arn: Str },
    Sns { arn: Str },
    Http { url: Str, method: Str },
    StackState { perspective: Str, service_name: Str, service_type: Str, identifier: Str, resource: Str },
}

/// A required meta value: present and not empty (SV17 `GetSpanMeta`).
fn required(b: &Batch, body: &[u8], s: &Span, key: &str) -> Result<Str, Why> {
    b.meta(body, s, key).filter(|v| !v.is_empty()).ok_or(Why::MissingField)
}

/// Byte range of part `idx` of `text` split at `sep` (Go's `strings.Split(text, sep)[idx]`).
fn part(text: &str, sep: u8, idx: usize) -> Option<(usize, usize)> {
    let (mut start, mut k) = (0, 0);
    for (p, &c) in text.as_bytes().iter().enumerate() {
        if c == sep {
            if k == idx {
                return Some((start, p));
            }
            k += 1;
            start = p + 1;
        }
    }
    (k == idx).then_some((start, text.len()))
}

fn plan(b: &Batch, body: &[u8], s: &Span, k: Key) -> Result<Plan, Why> {
    let req = |key: &str| required(b, body, s, key);
    Ok(match k {
        Key::LambdaEntry => {
            let arn = req("faas.id")?;
            req("cloud.account.id")?;
            // A valid ARN has 7 parts; the function is the 7th.
            let (from, to) = part(b.text(body, arn), b':', 6).ok_or(Why::MissingField)?;
            Plan::LambdaEntry { arn, function: arn.sub(from, to) }
        }
        Key::Lambda => {
            let function = req("aws.request.function.name")?;
            let account = req("aws.account.id")?;
            let region = req("aws.region")?;
            if b.meta_get(body, s, "aws.operation") != Some("invoke") {
                return Err(Why::MissingField);
            }
            Plan::Lambda { function, account, region }
        }
        Key::Sqs => {
            let region = req("aws.region")?;
            let url = req("messaging.url")?;
            let queue = req("messaging.destination")?;
            // `https://sqs.<region>.amazonaws.com/<account>/<queue>`: the account is part 3.
            // The original checks for at least 3 parts and then reads part 3, so a URL of exactly
            // 3 parts panics there; here its group is dropped instead (and counted apart).
            let text = b.text(body, url);
            let (from, to) = match part(text, b'/', 3) {
                Some(r) => r,
                None if part(text, b'/', 2).is_some() => return Err(Why::SqsUrl),
                None => return Err(Why::MissingField),
            };
            Plan::Sqs { region, url, queue, account: url.sub(from, to) }
        }
        Key::S3 => Plan::S3 { bucket: req("aws.request.bucket")? },
        Key::StepFunctions => {
            let arn = req("aws.request.state.machine.arn")?;
            part(b.text(body, arn), b':', 6).ok_or(Why::MissingField)?;
            Plan::StepFunctions { arn }
        }
        Key::Sns => {
            let arn = req("aws.request.topic.arn")?;
            part(b.text(body, arn), b':', 5).ok_or(Why::MissingField)?;
            Plan::Sns { arn }
        }
        Key::Http => Plan::Http { url: req("http.url")?, method: req("http.method")? },
        Key::StackState => Plan::StackState {
            perspective: req("trace.perspective.name")?,
            service_name: req("service.name")?,
            service_type: req("service.type")?,
            identifier: req("service.identifier")?,
            resource: req("resource.name")?,
        },
    })
}

/// The keys and constant values the interpreters write, stored once per batch in its side buffer.
#[derive(Debug, Clone, Copy)]
struct Consts {
    service_name: Str,
    service_type: Str,
    source: Str,
    service: Str,
    sts_origin: Str,
    kind: Str,
    service_urn: Str,
    identifiers: Str,
    error_class: Str,
    open_telemetry: Str,
    aws: Str,
    custom_trace: Str,
    consumer: Str,
    producer: Str,
    class_4xx: Str,
    class_5xx: Str,
    aws_lambda: Str,
    aws_sqs: Str,
    aws_s3: Str,
    aws_step_function: Str,
    aws_sns: Str,
    aws_http: Str,
}

/// The meta keys an interpreter writes: the span's earlier additions with these keys are replaced.
const WRITTEN_KEYS: [&str; 9] = [
    "span.serviceName",
    "span.serviceType",
    "source",
    "service",
    "sts.origin",
    "span.kind",
    "span.serviceURN",
    "sts.service.identifiers",
    "span.errorClass",
];

impl Consts {
    fn new(b: &mut Batch) -> Consts {
        let [service_name, service_type, source, service, sts_origin, kind, service_urn, identifiers, error_class] =
            WRITTEN_KEYS.map(|k| b.push_side(k));
        Consts {
            service_name,
            service_type,
            source,
            service,
            sts_origin,
            kind,
            service_urn,
            identifiers,
            error_class,
            open_telemetry: b.push_side("open-telemetry"),
            aws: b.push_side("aws"),
            custom_trace: b.push_side("custom-trace"),
            consumer: b.push_side("consumer"),
            producer: b.push_side("producer"),
            class_4xx: b.push_side("4xx"),
            class_5xx: b.push_side("5xx"),
            aws_lambda: b.push_side("aws.lambda"),
            aws_sqs: b.push_side("aws.sqs.queue"),
            aws_s3: b.push_side("aws.s3"),
            aws_step_function: b.push_side("aws.step.function"),
            aws_sns: b.push_side("aws.sns"),
            aws_http: b.push_side("aws.http"),
        }
    }
}

/// What an interpreter sets (SV17 `AwsSpanBuilder`, `StackStateSpanBuilder`).
struct Out {
    name: Str,
    service_name: Str,
    resource: Str,
    typ: Str,
    service: Str,
    kind: Str,
    urn: Str,
    ident: Str,
}

/// `urn:service:/` (SV17 `CreateServiceURN`): the identifier in a URN starts after it.
const URN_PREFIX: &str = "urn:service:/";

/// Appends the text of `s` to the side buffer, when it fits within the batch's limit (else
/// nothing, and the batch is over its limit).
fn copy(b: &mut Batch, body: &[u8], s: Str) {
    if !b.fits(s.len()) {
        return;
    }
    match b.side_range(s) {
        Some(r) => b.side.extend_from_within(r),
        None => b.side.extend_from_slice(Batch::body_bytes(body, s)),
    }
}

/// Appends the text of `s` lower-cased as Go's `strings.ToLower` does: each character by its
/// simple lower-case mapping (Rust's `char::to_lowercase` is the full mapping, which differs only
/// for U+0130 `İ`: Go gives `i`, Rust `i̇`).
fn copy_lower(b: &mut Batch, body: &[u8], s: Str) {
    let begin = b.side.len();
    copy(b, body, s);
    let end = b.side.len();
    if b.side[begin..end].is_ascii() {
        b.side[begin..end].make_ascii_lowercase();
        return;
    }
    // A lower-case character takes at most 3 bytes where its upper-case one took 2.
    if !b.fits((end - begin) * 3 / 2 + 4) {
        b.side.truncate(begin);
        return;
    }
    let mut i = begin;
    while i < end {
        let width = match b.side[i] {
            0..=0xbf => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        let c = std::str::from_utf8(&b.side[i..(i + width).min(end)])
            .ok()
            .and_then(|t| t.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        if c == '\u{130}' {
            b.side.push(b'i');
        } else {
            for l in c.to_lowercase() {
                b.side.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
            }
        }
        i += width;
    }
    // The lower-cased text replaces the copy.
    b.side.copy_within(end.., begin);
    let len = b.side.len() - (end - begin);
    b.side.truncate(len);
}

/// `urn:service:/` and what `x` writes, and the identifier after the prefix.
fn urn(b: &mut Batch, x: impl FnOnce(&mut Batch)) -> (Str, Str) {
    let begin = b.side_begin();
    b.side_piece(URN_PREFIX);
    x(b);
    let urn = b.side_end(begin);
    (urn, urn.sub(URN_PREFIX.len(), urn.len()))
}

/// `<prefix>: ` and what `x` writes.
fn display(b: &mut Batch, prefix: &str, x: impl FnOnce(&mut Batch)) -> Str {
    let begin = b.side_begin();
    b.side_piece(prefix);
    b.side_piece(": ");
    x(b);
    b.side_end(begin)
}

fn write(b: &mut Batch, body: &[u8], i: usize, p: Plan, c: &Consts) {
    // What a span adds, reserved within the limit (long copies ask for room on their own).
    b.reserve_side(256);
    let aws = |name: Str, svc: Str, kind: Str, (urn, ident): (Str, Str)| Out {
        name,
        service_name: name,
        resource: svc,
        typ: c.aws,
        service: svc,
        kind,
        urn,
        ident,
    };
    let out = match p {
        Plan::LambdaEntry { arn, function } => {
            let (urn, _) = urn(b, |b| copy_lower(b, body, arn));
            let name = display(b, "Lambda", |b| copy(b, body, function));
            aws(name, c.aws_lambda, c.producer, (urn, arn))
        }
        Plan::Lambda { function, account, region } => {
            let ids = urn(b, |b| {
                b.side_piece("arn:aws:lambda:");
                copy_lower(b, body, region);
                b.side_piece(":");
                copy_lower(b, body, account);
                b.side_piece(":function:");
                copy_lower(b, body, function);
            });
            let name = display(b, "Lambda", |b| copy(b, body, function));
            aws(name, c.aws_lambda, c.consumer, ids)
        }
        Plan::Sqs { region, url, queue, account } => {
            let (urn, _) = urn(b, |b| copy(b, body, url));
            let begin = b.side_begin();
            b.side_piece("https://");
            copy_lower(b, body, region);
            b.side_piece(".queue.amazonaws.com/");
            copy_lower(b, body, account);
            b.side_piece("/");
            copy_lower(b, body, queue);
            let ident = b.side_end(begin);
            let name = display(b, "SQS Queue", |b| {
                copy(b, body, queue);
                b.side_piece("-");
                copy(b, body, account);
                b.side_piece("-");
                copy(b, body, region);
            });
            aws(name, c.aws_sqs, c.consumer, (urn, ident))
        }
        Plan::S3 { bucket } => {
            let ids = urn(b, |b| {
                b.side_piece("arn:aws:s3:::");
                copy_lower(b, body, bucket);
            });
            let name = display(b, "S3", |b| copy(b, body, bucket));
            aws(name, c.aws_s3, c.consumer, ids)
        }
        // The name is a part of the lower-cased ARN.
        Plan::StepFunctions { arn } => {
            let ids = urn(b, |b| copy_lower(b, body, arn));
            let (from, to) = part(b.text(body, ids.1), b':', 6).unwrap_or_default();
            let name = display(b, "State Machine", |b| copy(b, body, ids.1.sub(from, to)));
            aws(name, c.aws_step_function, c.consumer, ids)
        }
        Plan::Sns { arn } => {
            let ids = urn(b, |b| copy_lower(b, body, arn));
            let (from, to) = part(b.text(body, ids.1), b':', 5).unwrap_or_default();
            let name = display(b, "SNS", |b| copy(b, body, ids.1.sub(from, to)));
            aws(name, c.aws_sns, c.consumer, ids)
        }
        Plan::Http { url, method } => {
            let (urn, _) = urn(b, |b| {
                b.side_piece("lambda-http-request/");
                copy(b, body, url);
                b.side_piece("/");
                copy(b, body, method);
            });
            let name = display(b, "Http", |b| {
                copy(b, body, method);
                b.side_piece(" - ");
                copy(b, body, url);
            });
            aws(name, c.aws_http, c.consumer, (urn, url))
        }
        Plan::StackState { perspective, service_name, service_type, identifier, resource } => {
            let (urn, _) = urn(b, |b| copy(b, body, identifier));
            Out {
                name: perspective,
                service_name,
                resource,
                typ: c.custom_trace,
                service: service_type,
                kind: c.consumer,
                urn,
                ident: identifier,
            }
        }
    };
    apply(b, body, i, &out, c);
}

/// Writes `out` to span `i`: its fields, and its additions (the earlier ones, but those with a
/// key written here, then the interpreter's), as a new run at the end of `Batch::extra`.
fn apply(b: &mut Batch, body: &[u8], i: usize, out: &Out, c: &Consts) {
    let s = b.spans[i];
    let first = b.extra.len() as u32;
    for j in s.extra.0 as usize..(s.extra.0 + s.extra.1) as usize {
        let e = b.extra[j];
        if !WRITTEN_KEYS.iter().any(|k| b.is(body, e.0, k)) {
            b.push_extra(e);
        }
    }
    for e in [
        (c.service_name, out.service_name),
        (c.service_type, c.open_telemetry),
        (c.source, c.open_telemetry),
        (c.service, out.service),
        (c.sts_origin, c.open_telemetry),
        (c.kind, out.kind),
        (c.service_urn, out.urn),
        (c.identifiers, out.ident),
    ] {
        b.push_extra(e);
    }
    // SV17 `InterpretSpanHTTPError`.
    if s.error != 0 {
        let code = b.span_metrics(&s).iter().rev().find(|(k, _)| b.is(body, *k, "http.status_code")).map(|e| e.1);
        match code {
            Some(code) if (400.0..500.0).contains(&code) => b.push_extra((c.error_class, c.class_4xx)),
            Some(code) if code >= 500.0 => b.push_extra((c.error_class, c.class_5xx)),
            _ => {}
        }
    }
    let s = &mut b.spans[i];
    s.name = out.name;
    s.service = out.service;
    s.resource = out.resource;
    s.typ = out.typ;
    s.extra = (first, b.extra.len() as u32 - first);
}

/// Orders trace `t`'s spans as the original outputs them: the spans no interpreter took (in their
/// order), then each interpreted group (in its order); dropped spans leave. Returns the spans left.
fn regroup(b: &mut Batch, body: &[u8], t: usize, origin: Origin, fate: &[Fate; KEYS.len()]) -> u32 {
    let (first, n) = b.traces[t];
    let range = first as usize..(first + n) as usize;
    // 0 for a span that stays among the others, 1 + key for an interpreted group, None: dropped.
    let rank = |b: &Batch, i: usize| match classify(b, body, &b.spans[i], origin) {
        Class::Keep => Some(0),
        Class::Group(k) => match fate[k as usize] {
            Fate::Interpreted => Some(1 + k as usize),
            Fate::Kept => Some(0),
            Fate::Dropped | Fate::Absent => None,
        },
        Class::UnknownLibrary | Class::UnknownAwsService => None,
    };
    // Already in that order (the usual case: one library per trace, nothing dropped).
    let (mut ordered, mut last) = (true, 0);
    for i in range.clone() {
        match rank(b, i) {
            Some(r) if r >= last => last = r,
            _ => {
                ordered = false;
                break;
            }
        }
    }
    if ordered {
        return n;
    }
    // Stable, through the spare end of `spans` (its capacity stays from batch to batch).
    let end = b.spans.len();
    b.spans.reserve_exact(n as usize);
    let ranks = std::iter::once(0)
        .chain(KEYS.iter().filter(|&&k| fate[k as usize] == Fate::Interpreted).map(|&k| 1 + k as usize));
    for r in ranks {
        for i in range.clone() {
            if rank(b, i) == Some(r) {
                let s = b.spans[i];
                b.spans.push(s);
            }
        }
    }
    let kept = b.spans.len() - end;
    b.spans.copy_within(end.., first as usize);
    b.spans.truncate(end);
    b.traces[t].1 = kept as u32;
    kept as u32
}
