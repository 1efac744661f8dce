#![no_main]
//! Fuzz target: protobuf `ExportTraceServiceRequest` bodies, through the wire reader alone and
//! through both mappings (`/open-telemetry`'s and `/v1/traces`'), decode or fail cleanly within
//! the batch's limit; whatever decodes goes through processing and the TracePayload encoder.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, Origin, RequestContext};
use sts_agent::encode::trace_payload;
use sts_agent::model::trace::{Batch, Span};
use sts_agent::parse::otlp::{decode_otlp, decode_stackstate, Format, Scratch};
use sts_agent::parse::protobuf::{PbReader, Value};

/// Walks every length-delimited field as a nested message, a few levels down.
fn walk(r: &mut PbReader<'_>, depth: u32) {
    while let Ok(Some((_, v))) = r.next_field() {
        if let Value::Len(b) = v {
            if depth < 8 {
                walk(&mut PbReader::nested(b), depth + 1);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(&mut PbReader::new(data), 0);
    let mut b = Batch { limit: 3 * data.len() + 256, ..Batch::default() };
    let mut sc = Scratch::default();
    for origin in [Origin::StackStateOtel, Origin::Otlp] {
        let r = if origin == Origin::Otlp {
            decode_otlp(data, Format::Protobuf, &mut b, &mut sc).map(|_| ())
        } else {
            decode_stackstate(data, &mut b, &mut sc).map(|_| ())
        };
        assert!(b.cost() <= b.limit + std::mem::size_of::<Span>() + 400, "decoding passed the limit");
        match r {
            Ok(()) => {
                let spans: u32 = b.traces.iter().map(|t| t.1).sum();
                assert_eq!(spans as usize, b.spans.len());
                let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", origin, ..Default::default() };
                process(&mut b, data, &ctx);
                assert!(b.cost() <= b.limit + 2048 + 400, "processing passed the limit");
                let mut out = Vec::new();
                trace_payload::append_traces(&mut out, &b, data);
            }
            Err(_) => assert!(b.spans.is_empty() && b.traces.is_empty()),
        }
    }
});
