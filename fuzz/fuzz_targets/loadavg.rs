#![no_main]
//! Fuzz target: loadavg (the averages and the last pid) must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sts_agent::parse::loadavg::parse_loadavg(data);
    let _ = sts_agent::parse::loadavg::parse_last_pid(data);
});
