#![no_main]
//! Fuzz target: http_response must not panic on any input; framing stays inside the bytes received
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for eof in [false, true] {
        if let Ok(Some(r)) = sts_agent::transport::http1::parse_response(data, eof) {
            assert!(r.consumed <= data.len());
            assert!(r.body_excerpt.start <= r.body_excerpt.end && r.body_excerpt.end <= data.len());
        }
    }
});
