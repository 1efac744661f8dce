#![no_main]
//! Fuzz target: JSON (v0.3) trace bodies decode or fail cleanly, then process and encode.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::traces::{process, RequestContext};
use sts_agent::encode::{trace_json, trace_payload};
use sts_agent::model::trace::Batch;
use sts_agent::parse::traces::{decode_v04, Encoding};

fuzz_target!(|data: &[u8]| {
    let mut b = Batch::default();
    let ctx = RequestContext { now_ns: 1_700_000_000_000_000_000, host: "h", container_id: None, client: None };
    if decode_v04(data, Encoding::Json, &mut b).is_ok() {
        process(&mut b, data, &ctx);
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
