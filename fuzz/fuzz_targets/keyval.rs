#![no_main]
//! Fuzz target: keyval must not panic on any input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sts_agent::parse::keyval::colon_pairs(data).count();
    let _ = sts_agent::parse::keyval::env_pairs(data).count();
});
