#![no_main]
//! Fuzz target: OTLP/JSON `/v1/traces` bodies decode or fail cleanly within the batch's limit;
//! whatever decodes goes through processing and the TracePayload encoder.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, Origin, RequestContext};
use sts_agent::encode::trace_payload;
use sts_agent::model::trace::{Batch, Span};
use sts_agent::parse::otlp::{decode_otlp, Format, Scratch};

fuzz_target!(|data: &[u8]| {
    let mut b = Batch { limit: 3 * data.len() + 256, ..Batch::default() };
    let r = decode_otlp(data, Format::Json, &mut b, &mut Scratch::default());
    assert!(b.cost() <= b.limit + std::mem::size_of::<Span>() + 400, "decoding passed the limit");
    match r {
        Ok(_) => {
            let ctx =
                RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", origin: Origin::Otlp, ..Default::default() };
            process(&mut b, data, &ctx);
            assert!(b.cost() <= b.limit + 2048 + 400, "processing passed the limit");
            let mut out = Vec::new();
            trace_payload::append_traces(&mut out, &b, data);
        }
        Err(_) => assert!(b.spans.is_empty() && b.traces.is_empty()),
    }
});
