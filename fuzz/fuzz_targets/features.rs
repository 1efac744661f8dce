#![no_main]
//! Fuzz target: the receiver's /features reply must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sts_agent::parse::features::parse(data);
});
