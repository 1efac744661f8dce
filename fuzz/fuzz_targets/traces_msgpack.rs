#![no_main]
//! Fuzz target: v0.4 and v0.5 msgpack trace bodies decode or fail cleanly, and whatever decodes
//! goes through normalisation, the STS interpretation and the TracePayload encoder.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, RequestContext};
use sts_agent::encode::trace_payload;
use sts_agent::model::trace::Batch;
use sts_agent::parse::traces::{decode_v04, decode_v05, Encoding};

fuzz_target!(|data: &[u8]| {
    let mut b = Batch::default();
    let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", container_id: Some("c"), client: Some((1, 2)) };
    let mut out = Vec::new();
    for v5 in [false, true] {
        let r = if v5 { decode_v05(data, &mut b) } else { decode_v04(data, Encoding::Msgpack, &mut b) };
        match r {
            Ok(()) => {
                let spans: u32 = b.traces.iter().map(|t| t.1).sum();
                assert_eq!(spans as usize, b.spans.len());
                process(&mut b, data, &ctx);
                trace_payload::append_traces(&mut out, &b, data);
            }
            Err(_) => assert!(b.spans.is_empty() && b.traces.is_empty()),
        }
    }
});
