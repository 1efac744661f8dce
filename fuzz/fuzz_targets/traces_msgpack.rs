#![no_main]
//! Fuzz target: v0.4 and v0.5 msgpack trace bodies decode or fail cleanly, and whatever decodes
//! goes through normalisation, the STS interpretation and the TracePayload encoder.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, RequestContext};
use sts_agent::encode::trace_payload;
use sts_agent::model::trace::Batch;
use sts_agent::parse::traces::{decode_v04, decode_v05, Encoding};

fuzz_target!(|data: &[u8]| {
    // The agent's per-request limit: decoding and processing never pass it (one element over
    // at most), and the payload bytes written are within the encoder's bound. (A limit small
    // enough for fuzz inputs to reach; the agent's is 8x the body + 4 MiB, at most 24 MiB.)
    let mut b = Batch { limit: 3 * data.len() + 256, ..Batch::default() };
    let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", container_id: Some("c"), client: Some((1, 2)), ..Default::default() };
    let mut out = Vec::new();
    for v5 in [false, true] {
        let r = if v5 { decode_v05(data, &mut b) } else { decode_v04(data, Encoding::Msgpack, &mut b) };
        assert!(b.cost() <= b.limit + std::mem::size_of::<sts_agent::model::trace::Span>(), "decoding passed the limit");
        match r {
            Ok(()) => {
                let spans: u32 = b.traces.iter().map(|t| t.1).sum();
                assert_eq!(spans as usize, b.spans.len());
                process(&mut b, data, &ctx);
                // Processing checks every copy of a string before making it: past the limit by at most
                // what one span adds besides copies (a few entries and short constant pieces).
                assert!(b.cost() <= b.limit + 2048, "processing passed the limit: {} > {}", b.cost(), b.limit);
                out.clear();
                trace_payload::append_traces(&mut out, &b, data);
                let bound: usize = b
                    .traces
                    .iter()
                    .filter(|t| t.1 > 0)
                    .map(|&(f, n)| {
                        trace_payload::TRACE_BOUND
                            + b.spans[f as usize..(f + n) as usize].iter().map(|s| trace_payload::span_bound(&b, s)).sum::<usize>()
                    })
                    .sum();
                assert!(out.len() <= bound, "wrote {} bytes, bound {bound}", out.len());
            }
            Err(_) => assert!(b.spans.is_empty() && b.traces.is_empty()),
        }
    }
});
