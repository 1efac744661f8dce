#![no_main]
//! Fuzz target: the intake's request-head parser and chunked decoder never panic, never read
//! past the bytes given and never grow a body past its limit, however the input is split.
use libfuzzer_sys::fuzz_target;
use sts_agent::transport::http_server::{parse_head, Dechunker};

fuzz_target!(|data: &[u8]| {
    const MAX: usize = 4096;
    if let Ok(Some(h)) = parse_head(data, MAX) {
        assert!(h.head_len <= data.len());
    }
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut d = Dechunker::default();
    let mut out = Vec::new();
    let mut pos = 0;
    for part in [&data[..split], &data[split..]] {
        match d.feed(part, &mut out, MAX) {
            Ok((used, _)) => {
                assert!(used <= part.len());
                pos += used;
            }
            Err(_) => break,
        }
        assert!(out.len() <= MAX);
    }
    assert!(pos <= data.len());
});
