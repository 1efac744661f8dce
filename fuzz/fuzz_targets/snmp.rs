#![no_main]
//! Fuzz target: snmp must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for t in sts_agent::parse::snmp::tables(data).flatten() {
        let _ = t.pairs().count();
        let _ = t.get(b"InSegs");
    }
});
