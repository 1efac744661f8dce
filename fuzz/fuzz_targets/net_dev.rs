#![no_main]
//! Fuzz target: net_dev must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for d in sts_agent::parse::net_dev::iter(data).flatten() {
        assert!(!d.name.is_empty());
    }
});
