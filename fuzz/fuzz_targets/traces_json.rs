#![no_main]
//! Fuzz target: JSON (v0.3) trace bodies decode or fail cleanly, then process and encode.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, RequestContext};
use sts_agent::encode::{trace_json, trace_payload};
use sts_agent::model::trace::Batch;
use sts_agent::parse::traces::{decode_v04, Encoding};

fuzz_target!(|data: &[u8]| {
    // The agent's per-request limit: decoding and processing never pass it (one element over
    // at most), and the payload bytes written are within the encoder's bound. (A limit small
    // enough for fuzz inputs to reach; the agent's is 8x the body + 4 MiB, at most 24 MiB.)
    let mut b = Batch { limit: 3 * data.len() + 256, ..Batch::default() };
    let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", container_id: None, client: None, ..Default::default() };
    let r = decode_v04(data, Encoding::Json, &mut b);
    assert!(b.cost() <= b.limit + std::mem::size_of::<sts_agent::model::trace::Span>(), "decoding passed the limit");
    if r.is_ok() {
        process(&mut b, data, &ctx);
        // Processing checks every copy of a string before making it: past the limit by at most
        // what one span adds besides copies (a few entries and short constant pieces).
        assert!(b.cost() <= b.limit + 2048, "processing passed the limit: {} > {}", b.cost(), b.limit);
        let mut out = Vec::new();
        trace_payload::append_traces(&mut out, &b, data);
        let mut view = Vec::new();
        trace_json::append_traces(&mut view, &b, data);
        if !view.is_empty() {
            let wrapped = [b"[".as_slice(), &view, b"]"].concat();
            assert!(serde_json::from_slice::<serde_json::Value>(&wrapped).is_ok(), "the dry-run view is JSON");
        }
    }
});
