#![no_main]
//! Fuzz target: OpenTelemetry spans as the `/open-telemetry` mapping gives them (a known or
//! unknown library and AWS service, attributes with the keys the interpreters read and arbitrary
//! values, a status code) are processed and interpreted within the batch's limit, on both
//! routes; a kept trace keeps only its own spans, the counts match what is left, and the payload
//! and its JSON view encode.
//! Input: spans separated by `\n`; per span a trace byte, a library byte, a status byte, then
//! attributes separated by 0x1f, each a key byte (an index into `KEYS`) and its value.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, Origin, RequestContext};
use sts_agent::encode::{trace_json, trace_payload};
use sts_agent::model::trace::{Batch, Span};

const LIBS: [&str; 6] = [
    "@opentelemetry/instrumentation-aws-lambda",
    "@opentelemetry/instrumentation-aws-sdk",
    "@opentelemetry/instrumentation-http",
    "@opentelemetry/instrumentation-stackstate",
    "@opentelemetry/instrumentation-pg",
    "",
];

const KEYS: [&str; 22] = [
    "aws.service.identifier",
    "faas.id",
    "cloud.account.id",
    "aws.request.function.name",
    "aws.account.id",
    "aws.region",
    "aws.operation",
    "messaging.url",
    "messaging.destination",
    "aws.request.bucket",
    "aws.request.state.machine.arn",
    "aws.request.topic.arn",
    "http.url",
    "http.method",
    "trace.perspective.name",
    "service.name",
    "service.type",
    "service.identifier",
    "resource.name",
    "source",
    "span.serviceURN",
    "span.kind",
];

fn push_span(b: &mut Batch, trace_id: u64, line: &[u8]) {
    let [_, lib, status, rest @ ..] = line else { return };
    let ot = b.push_side("openTelemetry");
    let first = b.meta.len() as u32;
    let library = LIBS[*lib as usize % LIBS.len()];
    if !library.is_empty() {
        let e = (b.push_side("instrumentation_library"), b.push_side(library));
        b.push_meta(e);
    }
    let e = (b.push_side("source"), ot);
    b.push_meta(e);
    for attr in rest.split(|&c| c == 0x1f) {
        let Some((&k, v)) = attr.split_first() else { continue };
        let v = String::from_utf8_lossy(v);
        let e = (b.push_side(KEYS[k as usize % KEYS.len()]), b.push_side(&v));
        b.push_meta(e);
    }
    let meta = (first, b.meta.len() as u32 - first);
    let code = 300 + i32::from(*status) * 2;
    let (error, metrics) = if code >= 400 {
        let k = b.push_side("http.status_code");
        b.push_metric((k, f64::from(code)));
        (code, (b.metrics.len() as u32 - 1, 1))
    } else {
        (0, (0, 0))
    };
    let span_id = b.spans.len() as u64 + 1;
    let start = 1_700_000_000_000_000_000;
    let s = Span {
        service: ot,
        name: ot,
        resource: ot,
        typ: ot,
        trace_id,
        span_id,
        start,
        error,
        meta,
        metrics,
        ..Span::default()
    };
    b.push_span(s);
}

fuzz_target!(|data: &[u8]| {
    for origin in [Origin::StackStateOtel, Origin::Otlp] {
        let mut b = Batch::default();
        let mut trace = None;
        for line in data.split(|&c| c == b'\n') {
            let Some(&t) = line.first() else { continue };
            let id = u64::from(t % 4) + 1;
            if trace.is_some_and(|p| p != id) {
                let first = b.traces.last().map_or(0, |&(f, n)| f + n);
                b.push_trace((first, b.spans.len() as u32 - first));
            }
            trace = Some(id);
            push_span(&mut b, id, line);
        }
        let first = b.traces.last().map_or(0, |&(f, n)| f + n);
        if (b.spans.len() as u32) > first {
            b.push_trace((first, b.spans.len() as u32 - first));
        }
        // Room for some of the copies, not always all.
        b.limit = b.cost() + 2 * data.len() + 512;
        let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", origin, ..RequestContext::default() };
        let counts = process(&mut b, &[], &ctx);
        assert!(b.cost() <= b.limit + 2048, "processing passed the limit: {} > {}", b.cost(), b.limit);
        if counts.over_limit {
            continue;
        }
        let kept: u32 = b.traces.iter().map(|t| t.1).sum();
        assert_eq!(u64::from(kept), counts.spans);
        assert_eq!(b.traces.iter().filter(|t| t.1 > 0).count() as u64, counts.traces);
        for &(f, n) in &b.traces {
            let spans = &b.spans[f as usize..(f + n) as usize];
            assert!(spans.iter().all(|s| s.trace_id == spans[0].trace_id));
        }
        if origin == Origin::Otlp {
            assert_eq!(counts.otel.dropped_spans(), 0, "OTLP drops nothing");
        }
        let mut out = Vec::new();
        trace_payload::append_traces(&mut out, &b, &[]);
        let mut view = Vec::new();
        trace_json::append_traces(&mut view, &b, &[]);
        if !view.is_empty() {
            let wrapped = [b"[".as_slice(), &view, b"]"].concat();
            assert!(serde_json::from_slice::<serde_json::Value>(&wrapped).is_ok(), "the dry-run view is JSON");
        }
    }
});
