#![no_main]
//! Fuzz target: pid_stat must not panic on any input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sts_agent::parse::pid::parse_stat(data) {
        assert!(s.comm.len() < data.len());
    }
});
