#![no_main]
//! Fuzz target: pid_statm must not panic on any input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sts_agent::parse::pid::parse_statm(data);
});
