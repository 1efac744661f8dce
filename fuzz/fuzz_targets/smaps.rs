#![no_main]
//! Fuzz target: the smaps scan must not panic on any input (lines cut anywhere, overlong lines
//! among them), and what it lets go is a non-empty range.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scan = sts_agent::parse::smaps::Scan::default();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if i % 7 == 6 {
            scan.overlong();
        }
        if let Some(r) = scan.line(line) {
            assert!(r.start < r.end);
        }
    }
    if let Some(r) = scan.end() {
        assert!(r.start < r.end);
    }
});
