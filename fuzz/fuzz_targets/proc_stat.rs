#![no_main]
//! Fuzz target: proc_stat must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sts_agent::parse::proc_stat::parse(data) {
        let _ = s.cpu.total();
    }
});
