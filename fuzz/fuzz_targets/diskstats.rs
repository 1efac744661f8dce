#![no_main]
//! Fuzz target: diskstats must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for d in sts_agent::parse::diskstats::iter(data).flatten() {
        assert!(!d.name.is_empty());
    }
});
