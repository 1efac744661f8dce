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
    /// Adds `o`'s counts to these (the intake's totals).
    pub fn add(&mut self, o: OtelCounts) {
        self.interpreted += o.interpreted;
        self.dropped_missing_field += o.dropped_missing_field;
        self.dropped_sqs_url += o.dropped_sqs_url;
        self.dropped_unknown_library += o.dropped_unknown_library;
        self.dropped_unknown_aws_service += o.dropped_unknown_aws_service;
        self.uninterpreted += o.uninterpreted;
        self.emptied_traces += o.emptied_traces;
    }

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
                            // Past its limit the batch is refused: stop here, as `process` does.
                            if b.over_limit() {
                                return counts;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::traces::{process, RequestContext, TraceCounts};

    const LIB_UNKNOWN: &str = "@opentelemetry/instrumentation-pg";
    const LAMBDA_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:My-Func";

    /// A span as the `/open-telemetry` mapping gives it (spec §5.2): service, resource and type
    /// `openTelemetry`, meta `instrumentation_library`, `instrumentation_version`, `source`, the
    /// attributes; an HTTP status code ≥ 400 as `error` and as metric `http.status_code`. Every
    /// string is in the side buffer (the body is empty).
    fn push_span(b: &mut Batch, trace_id: u64, library: &str, attrs: &[(&str, &str)], status: Option<i32>) {
        let meta =
            [("instrumentation_library", library), ("instrumentation_version", "0.1.0"), ("source", "openTelemetry")];
        push_raw(b, trace_id, &meta, attrs, status);
    }

    fn push_raw(b: &mut Batch, trace_id: u64, meta: &[(&str, &str)], attrs: &[(&str, &str)], status: Option<i32>) {
        let ot = b.push_side("openTelemetry");
        let name = b.push_side("handler");
        let first = b.meta.len() as u32;
        for (k, v) in meta.iter().chain(attrs) {
            let e = (b.push_side(k), b.push_side(v));
            b.push_meta(e);
        }
        let meta = (first, b.meta.len() as u32 - first);
        let first = b.metrics.len() as u32;
        let mut error = 0;
        if let Some(code) = status.filter(|&c| c >= 400) {
            let k = b.push_side("http.status_code");
            b.push_metric((k, f64::from(code)));
            error = code;
        }
        let metrics = (first, b.metrics.len() as u32 - first);
        let span_id = b.spans.len() as u64 + 1;
        let start = 1_700_000_000_000_000_000;
        let s = Span {
            service: ot,
            name,
            resource: ot,
            typ: ot,
            trace_id,
            span_id,
            start,
            duration: 5,
            error,
            meta,
            metrics,
            ..Span::default()
        };
        b.push_span(s);
    }

    /// Ends a trace made of the spans pushed since the last one.
    fn end_trace(b: &mut Batch) {
        let first = b.traces.last().map_or(0, |&(f, n)| f + n);
        let n = b.spans.len() as u32 - first;
        b.push_trace((first, n));
    }

    fn one(library: &str, attrs: &[(&str, &str)]) -> Batch {
        let mut b = Batch::default();
        push_span(&mut b, 1, library, attrs, None);
        end_trace(&mut b);
        b
    }

    fn run(b: &mut Batch, origin: Origin) -> TraceCounts {
        let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", origin, ..RequestContext::default() };
        process(b, &[], &ctx)
    }

    /// The spans of trace `t` as they would be forwarded.
    fn spans(b: &Batch, t: usize) -> Vec<Span> {
        let (first, n) = b.traces[t];
        b.spans[first as usize..(first + n) as usize].to_vec()
    }

    /// A meta value as the receiver reads it: the agent's additions win over the client's meta,
    /// a later entry over an earlier one.
    fn get<'a>(b: &'a Batch, s: &Span, key: &str) -> Option<&'a str> {
        let all = b.span_meta(s).iter().chain(b.span_extra(s));
        all.rev().find(|(k, _)| b.is(&[], *k, key)).map(|(_, v)| b.text(&[], *v))
    }

    fn text(b: &Batch, s: Str) -> &str {
        b.text(&[], s)
    }

    /// `AwsSpanBuilder`'s output (spec §5.3).
    fn assert_aws(b: &Batch, s: &Span, name: &str, svc: &str, kind: &str, urn: &str, ident: &str) {
        assert_eq!(text(b, s.name), name);
        assert_eq!(get(b, s, "span.serviceName"), Some(name));
        assert_eq!(text(b, s.resource), format!("aws.{svc}"));
        assert_eq!(text(b, s.service), format!("aws.{svc}"));
        assert_eq!(get(b, s, "service"), Some(&*format!("aws.{svc}")));
        assert_eq!(text(b, s.typ), "aws");
        assert_open_telemetry(b, s, kind, urn, ident);
    }

    fn assert_open_telemetry(b: &Batch, s: &Span, kind: &str, urn: &str, ident: &str) {
        for key in ["span.serviceType", "source", "sts.origin"] {
            assert_eq!(get(b, s, key), Some("open-telemetry"), "{key}");
        }
        assert_eq!(get(b, s, "span.kind"), Some(kind));
        assert_eq!(get(b, s, "span.serviceURN"), Some(urn));
        assert_eq!(get(b, s, "sts.service.identifiers"), Some(ident));
        // The default interpretation's entries were replaced, not repeated.
        for key in ["span.serviceName", "span.serviceURN"] {
            let n = b.span_meta(s).iter().chain(b.span_extra(s)).filter(|(k, _)| b.is(&[], *k, key)).count();
            assert_eq!(n, 1, "{key}");
        }
    }

    /// One span of `library` with `attrs` is interpreted; the span as forwarded.
    fn interpreted(library: &str, attrs: &[(&str, &str)]) -> (Batch, Span) {
        let mut b = one(library, attrs);
        let counts = run(&mut b, Origin::StackStateOtel);
        assert_eq!(counts.otel, OtelCounts { interpreted: 1, ..OtelCounts::default() });
        assert_eq!((counts.traces, counts.spans), (1, 1));
        let s = spans(&b, 0)[0];
        (b, s)
    }

    /// Every case of `attrs` for `library` makes a group of two spans, one complete and one
    /// with `attrs`: the whole group is dropped, counted under `dropped_missing_field` (or
    /// `dropped_sqs_url`), and on OTLP kept with the default interpretation.
    fn assert_group_dropped(library: &str, complete: &[(&str, &str)], cases: &[&[(&str, &str)]]) {
        for origin in [Origin::StackStateOtel, Origin::Otlp] {
            for attrs in cases {
                let mut b = Batch::default();
                push_span(&mut b, 1, library, complete, None);
                push_span(&mut b, 1, library, attrs, None);
                end_trace(&mut b);
                let counts = run(&mut b, origin);
                let sqs_url = library == LIB_AWS_SDK && attrs.contains(&("messaging.url", "https://sqs"));
                if origin == Origin::Otlp {
                    assert_eq!(counts.otel, OtelCounts { uninterpreted: 2, ..OtelCounts::default() }, "{attrs:?}");
                    assert_eq!((counts.traces, counts.spans), (1, 2));
                    for s in spans(&b, 0) {
                        assert_eq!(get(&b, &s, "span.serviceURN"), Some("urn:service:/openTelemetry"));
                        assert_eq!(get(&b, &s, "sts.origin"), None);
                    }
                    continue;
                }
                let expect = if sqs_url {
                    OtelCounts { dropped_sqs_url: 2, emptied_traces: 1, ..OtelCounts::default() }
                } else {
                    OtelCounts { dropped_missing_field: 2, emptied_traces: 1, ..OtelCounts::default() }
                };
                assert_eq!(counts.otel, expect, "{attrs:?}");
                assert_eq!((counts.traces, counts.spans), (0, 0));
                assert_eq!(b.traces[0].1, 0);
            }
        }
    }

    #[test]
    fn lambda_entry() {
        let (b, s) = interpreted(LIB_AWS_LAMBDA, &[("faas.id", LAMBDA_ARN), ("cloud.account.id", "123456789012")]);
        let urn = "urn:service:/arn:aws:lambda:eu-west-1:123456789012:function:my-func";
        assert_aws(&b, &s, "Lambda: My-Func", "lambda", "producer", urn, LAMBDA_ARN);
        assert_eq!(get(&b, &s, "span.errorClass"), None);
        // An ARN with more parts (a version or alias): the function is still part 6.
        let (b, s) = interpreted(
            LIB_AWS_LAMBDA,
            &[("faas.id", "arn:aws:lambda:eu-west-1:1:function:Fn:PROD"), ("cloud.account.id", "1")],
        );
        assert_aws(
            &b,
            &s,
            "Lambda: Fn",
            "lambda",
            "producer",
            "urn:service:/arn:aws:lambda:eu-west-1:1:function:fn:prod",
            "arn:aws:lambda:eu-west-1:1:function:Fn:PROD",
        );
    }

    #[test]
    fn lambda_entry_requires_an_arn_of_seven_parts_and_the_account() {
        let complete = &[("faas.id", LAMBDA_ARN), ("cloud.account.id", "123456789012")];
        assert_group_dropped(
            LIB_AWS_LAMBDA,
            complete,
            &[
                &[("faas.id", LAMBDA_ARN)],
                &[("faas.id", LAMBDA_ARN), ("cloud.account.id", "")],
                &[("cloud.account.id", "123456789012")],
                &[("faas.id", "arn:aws:lambda:eu-west-1:123456789012:function"), ("cloud.account.id", "1")],
            ],
        );
    }

    const INVOKE: &[(&str, &str)] = &[
        ("aws.service.identifier", "lambda"),
        ("aws.operation", "invoke"),
        ("aws.request.function.name", "Other-Func"),
        ("aws.account.id", "123456789012"),
        ("aws.region", "EU-West-1"),
    ];

    #[test]
    fn aws_sdk_lambda_invoke() {
        let (b, s) = interpreted(LIB_AWS_SDK, INVOKE);
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:other-func";
        assert_aws(&b, &s, "Lambda: Other-Func", "lambda", "consumer", &format!("urn:service:/{arn}"), arn);
    }

    #[test]
    fn aws_sdk_lambda_requires_its_fields_and_an_invoke() {
        let without = |key: &str| INVOKE.iter().copied().filter(|(k, _)| *k != key).collect::<Vec<_>>();
        let mut other_op = without("aws.operation");
        other_op.push(("aws.operation", "Invoke"));
        assert_group_dropped(
            LIB_AWS_SDK,
            INVOKE,
            &[
                &without("aws.operation"),
                &other_op,
                &without("aws.request.function.name"),
                &without("aws.account.id"),
                &without("aws.region"),
            ],
        );
    }

    const SQS: &[(&str, &str)] = &[
        ("aws.service.identifier", "sqs"),
        ("aws.region", "eu-west-1"),
        ("messaging.url", "https://sqs.eu-west-1.amazonaws.com/123456789012/My-Queue"),
        ("messaging.destination", "My-Queue"),
    ];

    #[test]
    fn aws_sdk_sqs() {
        let (b, s) = interpreted(LIB_AWS_SDK, SQS);
        assert_aws(
            &b,
            &s,
            "SQS Queue: My-Queue-123456789012-eu-west-1",
            "sqs.queue",
            "consumer",
            // The URL as sent; the identifier lower-cased.
            "urn:service:/https://sqs.eu-west-1.amazonaws.com/123456789012/My-Queue",
            "https://eu-west-1.queue.amazonaws.com/123456789012/my-queue",
        );
    }

    #[test]
    fn aws_sdk_sqs_requires_its_fields_and_a_url_of_four_parts() {
        let with_url = |url| {
            let mut a = SQS.iter().copied().filter(|(k, _)| *k != "messaging.url").collect::<Vec<_>>();
            a.push(("messaging.url", url));
            a
        };
        let without = |key: &str| SQS.iter().copied().filter(|(k, _)| *k != key).collect::<Vec<_>>();
        // `https://sqs` is 3 parts (`https:`, ``, `sqs`): the original panics; dropped here.
        assert_group_dropped(LIB_AWS_SDK, SQS, &[&with_url("https://sqs")]);
        assert_group_dropped(
            LIB_AWS_SDK,
            SQS,
            &[
                &with_url("sqs/queue"),
                &without("aws.region"),
                &without("messaging.url"),
                &without("messaging.destination"),
            ],
        );
        // Four parts are enough: the account is part 3.
        let (b, s) = interpreted(LIB_AWS_SDK, &with_url("a/b/c/Acct"));
        assert_eq!(get(&b, &s, "sts.service.identifiers"), Some("https://eu-west-1.queue.amazonaws.com/acct/my-queue"));
    }

    #[test]
    fn aws_sdk_s3() {
        let (b, s) = interpreted(LIB_AWS_SDK, &[("aws.service.identifier", "s3"), ("aws.request.bucket", "My-Bucket")]);
        assert_aws(
            &b,
            &s,
            "S3: My-Bucket",
            "s3",
            "consumer",
            "urn:service:/arn:aws:s3:::my-bucket",
            "arn:aws:s3:::my-bucket",
        );
        assert_group_dropped(
            LIB_AWS_SDK,
            &[("aws.service.identifier", "s3"), ("aws.request.bucket", "b")],
            &[&[("aws.service.identifier", "s3")], &[("aws.service.identifier", "s3"), ("aws.request.bucket", "")]],
        );
    }

    #[test]
    fn lower_casing_is_gos_simple_mapping() {
        // `İ` (U+0130) lower-cases to `i` in Go (Rust's full mapping gives `i̇`); `Ⱥ` (2 bytes)
        // to `ⱥ` (3 bytes); `ß` stays.
        let bucket = "Straße-İSTANBUL-Ⱥ-Ü";
        let (b, s) = interpreted(LIB_AWS_SDK, &[("aws.service.identifier", "s3"), ("aws.request.bucket", bucket)]);
        let arn = "arn:aws:s3:::straße-istanbul-ⱥ-ü";
        assert_aws(&b, &s, &format!("S3: {bucket}"), "s3", "consumer", &format!("urn:service:/{arn}"), arn);
    }

    const SFN_ARN: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:My-Machine";

    #[test]
    fn aws_sdk_step_functions() {
        let (b, s) = interpreted(
            LIB_AWS_SDK,
            &[("aws.service.identifier", "stepfunctions"), ("aws.request.state.machine.arn", SFN_ARN)],
        );
        // The name is part 6 of the lower-cased ARN.
        let arn = SFN_ARN.to_lowercase();
        assert_aws(
            &b,
            &s,
            "State Machine: my-machine",
            "step.function",
            "consumer",
            &format!("urn:service:/{arn}"),
            &arn,
        );
        let id = ("aws.service.identifier", "stepfunctions");
        assert_group_dropped(
            LIB_AWS_SDK,
            &[id, ("aws.request.state.machine.arn", SFN_ARN)],
            &[&[id], &[id, ("aws.request.state.machine.arn", "arn:aws:states:eu-west-1:1:stateMachine")]],
        );
    }

    const SNS_ARN: &str = "arn:aws:sns:eu-west-1:123456789012:My-Topic";

    #[test]
    fn aws_sdk_sns() {
        let (b, s) = interpreted(LIB_AWS_SDK, &[("aws.service.identifier", "sns"), ("aws.request.topic.arn", SNS_ARN)]);
        let arn = SNS_ARN.to_lowercase();
        assert_aws(&b, &s, "SNS: my-topic", "sns", "consumer", &format!("urn:service:/{arn}"), &arn);
        let id = ("aws.service.identifier", "sns");
        assert_group_dropped(
            LIB_AWS_SDK,
            &[id, ("aws.request.topic.arn", SNS_ARN)],
            &[&[id], &[id, ("aws.request.topic.arn", "arn:aws:sns:eu-west-1:123456789012")]],
        );
    }

    const HTTP: &[(&str, &str)] = &[("http.url", "https://example.com/Orders?id=1"), ("http.method", "POST")];

    #[test]
    fn http() {
        let (b, s) = interpreted(LIB_HTTP, HTTP);
        assert_aws(
            &b,
            &s,
            "Http: POST - https://example.com/Orders?id=1",
            "http",
            "consumer",
            "urn:service:/lambda-http-request/https://example.com/Orders?id=1/POST",
            "https://example.com/Orders?id=1",
        );
        assert_group_dropped(
            LIB_HTTP,
            HTTP,
            &[
                &[("http.url", "https://example.com/")],
                &[("http.method", "GET")],
                &[("http.url", ""), ("http.method", "GET")],
            ],
        );
    }

    const STACKSTATE: &[(&str, &str)] = &[
        ("trace.perspective.name", "Checkout"),
        ("service.name", "Shop"),
        ("service.type", "Web-Shop"),
        ("service.identifier", "Shop:EU"),
        ("resource.name", "POST /Cart"),
    ];

    #[test]
    fn stackstate_manual_spans() {
        let (b, s) = interpreted(LIB_STACKSTATE, STACKSTATE);
        assert_eq!(text(&b, s.name), "Checkout");
        assert_eq!(get(&b, &s, "span.serviceName"), Some("Shop"));
        assert_eq!(text(&b, s.resource), "POST /Cart");
        assert_eq!(text(&b, s.typ), "custom-trace");
        assert_eq!(text(&b, s.service), "Web-Shop");
        assert_eq!(get(&b, &s, "service"), Some("Web-Shop"));
        // Nothing lower-cased.
        assert_open_telemetry(&b, &s, "consumer", "urn:service:/Shop:EU", "Shop:EU");
        let without = |key: &str| STACKSTATE.iter().copied().filter(|(k, _)| *k != key).collect::<Vec<_>>();
        let cases: Vec<Vec<_>> = STACKSTATE.iter().map(|(k, _)| without(k)).collect();
        let cases: Vec<&[(&str, &str)]> = cases.iter().map(Vec::as_slice).collect();
        assert_group_dropped(LIB_STACKSTATE, STACKSTATE, &cases);
    }

    #[test]
    fn error_classes_from_the_status_code() {
        let entry = &[("faas.id", LAMBDA_ARN), ("cloud.account.id", "1")];
        for (library, attrs) in [(LIB_HTTP, HTTP), (LIB_AWS_LAMBDA, entry), (LIB_STACKSTATE, STACKSTATE)] {
            let mut b = Batch::default();
            for status in [None, Some(200), Some(400), Some(404), Some(499), Some(500), Some(503)] {
                push_span(&mut b, 1, library, attrs, status);
            }
            // An error without a status code.
            push_span(&mut b, 1, library, attrs, None);
            b.spans.last_mut().unwrap().error = 1;
            end_trace(&mut b);
            let counts = run(&mut b, Origin::StackStateOtel);
            assert_eq!(counts.otel.interpreted, 8);
            let classes: Vec<_> = spans(&b, 0).iter().map(|s| get(&b, s, "span.errorClass")).collect();
            let (x4, x5) = (Some("4xx"), Some("5xx"));
            assert_eq!(classes, [None, None, x4, x4, x4, x5, x5, None], "{library}");
        }
    }

    #[test]
    fn unknown_libraries_and_aws_services_are_dropped_on_open_telemetry_kept_on_otlp() {
        for origin in [Origin::StackStateOtel, Origin::Otlp] {
            let mut b = Batch::default();
            push_span(&mut b, 1, LIB_UNKNOWN, &[("db.system", "postgresql")], None);
            push_span(&mut b, 1, LIB_AWS_SDK, &[("aws.service.identifier", "dynamodb")], None);
            push_span(&mut b, 1, LIB_AWS_SDK, &[], None);
            end_trace(&mut b);
            let counts = run(&mut b, origin);
            if origin == Origin::StackStateOtel {
                let expect = OtelCounts {
                    dropped_unknown_library: 1,
                    dropped_unknown_aws_service: 2,
                    emptied_traces: 1,
                    ..OtelCounts::default()
                };
                assert_eq!(counts.otel, expect);
                assert_eq!((counts.traces, counts.spans, b.traces[0].1), (0, 0, 0));
            } else {
                assert_eq!(counts.otel, OtelCounts::default());
                assert_eq!((counts.traces, counts.spans), (1, 3));
                for s in spans(&b, 0) {
                    // The default interpretation only.
                    assert_eq!(get(&b, &s, "span.serviceName"), Some("openTelemetry"));
                    assert_eq!(get(&b, &s, "span.serviceURN"), Some("urn:service:/openTelemetry"));
                    assert_eq!(text(&b, s.typ), "openTelemetry");
                }
            }
        }
    }

    #[test]
    fn datadog_spans_are_not_interpreted() {
        let mut b = one(LIB_AWS_SDK, &[("aws.service.identifier", "s3"), ("aws.request.bucket", "b")]);
        let counts = run(&mut b, Origin::Datadog);
        assert_eq!(counts.otel, OtelCounts::default());
        assert_eq!(get(&b, &spans(&b, 0)[0], "span.serviceURN"), Some("urn:service:/openTelemetry"));
        let mut b = one(LIB_UNKNOWN, &[]);
        assert_eq!(interpret_otel(&mut b, &[], Origin::Datadog), OtelCounts::default());
        assert_eq!(b.traces[0].1, 1);
    }

    #[test]
    fn pre_interpreted_process_and_non_otel_spans_keep_their_interpretation() {
        let mut b = Batch::default();
        // The client named the service itself.
        let lib = ("instrumentation_library", LIB_UNKNOWN);
        let source = ("source", "openTelemetry");
        push_raw(&mut b, 1, &[lib, source, ("span.serviceURN", "urn:service:/mine")], &[], None);
        // A process span: host, pid and kind.
        let process_meta = [("span.hostname", "h"), ("span.pid", "7"), ("span.kind", "client")];
        push_raw(&mut b, 1, &[lib, source], &process_meta, None);
        // No `source` (or another one): not an /open-telemetry span.
        push_raw(&mut b, 1, &[lib], &[], None);
        push_raw(&mut b, 1, &[lib, ("source", "traefik")], &[], None);
        end_trace(&mut b);
        let counts = run(&mut b, Origin::StackStateOtel);
        assert_eq!(counts.otel, OtelCounts::default());
        assert_eq!((counts.traces, counts.spans), (1, 4));
        let s = spans(&b, 0);
        assert_eq!(get(&b, &s[0], "span.serviceURN"), Some("urn:service:/mine"));
        assert_eq!(get(&b, &s[1], "span.serviceType"), Some("service"));
        assert_eq!(get(&b, &s[2], "span.serviceURN"), Some("urn:service:/openTelemetry"));
        assert_eq!(get(&b, &s[3], "span.serviceURN"), Some("urn:service:/openTelemetry"));
    }

    fn ids(b: &Batch, t: usize) -> Vec<u64> {
        spans(b, t).iter().map(|s| s.span_id).collect()
    }

    #[test]
    fn groups_follow_the_traces_other_spans_and_dropped_spans_leave() {
        let s3 = &[("aws.service.identifier", "s3"), ("aws.request.bucket", "b")][..];
        let s3_bad = &[("aws.service.identifier", "s3")][..];
        let mut b = Batch::default();
        // Trace 1: spans 1-5.
        push_span(&mut b, 1, LIB_HTTP, HTTP, None);
        push_span(&mut b, 1, LIB_AWS_SDK, s3, None);
        push_raw(&mut b, 1, &[], &[], None);
        push_span(&mut b, 1, LIB_UNKNOWN, &[], None);
        push_span(&mut b, 1, LIB_AWS_SDK, s3, None);
        end_trace(&mut b);
        // Trace 2: spans 6-8; its S3 group lacks a bucket.
        push_span(&mut b, 2, LIB_AWS_SDK, s3_bad, None);
        push_span(&mut b, 2, LIB_HTTP, HTTP, None);
        push_span(&mut b, 2, LIB_AWS_SDK, s3, None);
        end_trace(&mut b);
        // Trace 3: spans 9-10, one library, already in order.
        push_span(&mut b, 3, LIB_HTTP, HTTP, None);
        push_span(&mut b, 3, LIB_HTTP, HTTP, None);
        end_trace(&mut b);
        // The same spans for OTLP.
        let mut otlp = Batch::default();
        otlp.spans.clone_from(&b.spans);
        otlp.traces.clone_from(&b.traces);
        otlp.meta.clone_from(&b.meta);
        otlp.metrics.clone_from(&b.metrics);
        otlp.side.clone_from(&b.side);

        let counts = run(&mut b, Origin::StackStateOtel);
        // The other spans first, then the groups (S3 before HTTP), each in its order.
        assert_eq!(ids(&b, 0), [3, 2, 5, 1]);
        assert_eq!(ids(&b, 1), [7]);
        assert_eq!(ids(&b, 2), [9, 10]);
        let expect = OtelCounts {
            interpreted: 3 + 1 + 2,
            dropped_missing_field: 2,
            dropped_unknown_library: 1,
            ..OtelCounts::default()
        };
        assert_eq!(counts.otel, expect);
        assert_eq!((counts.traces, counts.spans), (3, 7));
        assert_eq!(text(&b, spans(&b, 1)[0].service), "aws.http");

        // OTLP: nothing dropped; a group that cannot be interpreted stays among the other spans.
        let counts = run(&mut otlp, Origin::Otlp);
        assert_eq!(ids(&otlp, 0), [3, 4, 2, 5, 1]);
        assert_eq!(ids(&otlp, 1), [6, 8, 7]);
        assert_eq!(ids(&otlp, 2), [9, 10]);
        let expect = OtelCounts { interpreted: 3 + 1 + 2, uninterpreted: 2, ..OtelCounts::default() };
        assert_eq!(counts.otel, expect);
        assert_eq!((counts.traces, counts.spans), (3, 10));
    }

    #[test]
    fn steady_state_needs_no_new_storage() {
        let fill = |b: &mut Batch| {
            for t in 1..=20 {
                push_span(b, t, LIB_HTTP, HTTP, Some(503));
                push_span(b, t, LIB_AWS_SDK, SQS, None);
                push_span(b, t, LIB_UNKNOWN, &[], None);
                push_span(b, t, LIB_AWS_SDK, INVOKE, None);
                push_span(
                    b,
                    t,
                    LIB_AWS_LAMBDA,
                    &[("faas.id", "arn:aws:lambda:r:1:function:Ⱥ"), ("cloud.account.id", "1")],
                    None,
                );
                end_trace(b);
            }
        };
        let mut b = Batch::default();
        fill(&mut b);
        let counts = run(&mut b, Origin::StackStateOtel);
        assert_eq!(counts.otel.interpreted, 80);
        let held = |b: &Batch| (b.spans.capacity(), b.extra.capacity(), b.side.capacity(), b.meta.capacity());
        let before = held(&b);
        b.clear();
        fill(&mut b);
        let counts2 = run(&mut b, Origin::StackStateOtel);
        assert_eq!(counts2, counts);
        assert_eq!(held(&b), before);
    }

    #[test]
    fn a_long_copy_stops_at_the_limit() {
        let arn = format!("arn:aws:lambda:r:1:function:{}", "F".repeat(100_000));
        let mut b = one(LIB_AWS_LAMBDA, &[("faas.id", &arn), ("cloud.account.id", "1")]);
        // Truncation (before the interpretation) cuts the value to 5,000 bytes and `...` in the
        // side buffer; the URN and the name then copy about 10,000 bytes more.
        b.limit = b.cost() + 8_000;
        let counts = run(&mut b, Origin::StackStateOtel);
        assert!(counts.over_limit, "the truncated value, then the URN and the name copy about 15,000 bytes");
        assert!(b.side.len() <= b.limit, "{}", b.side.len());
        let mut b = one(LIB_AWS_LAMBDA, &[("faas.id", &arn), ("cloud.account.id", "1")]);
        let counts = run(&mut b, Origin::StackStateOtel);
        assert!(!counts.over_limit && counts.otel.interpreted == 1);
    }
}
