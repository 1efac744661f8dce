#![no_main]
//! Fuzz target: sockstat's and sockstat6's parsers must not panic on any input, and a count they
//! return is one the input spells.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = sts_agent::parse::sockstat::tcp(data) {
        assert!(data.windows(4).any(|w| w == b"TCP:"));
        let _ = t.v4_empty();
    }
    let _ = sts_agent::parse::sockstat::tcp6_in_use(data);
});
