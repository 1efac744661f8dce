#![no_main]
//! Fuzz target: gzip request bodies inflate or fail cleanly, never past the limit (one read
//! step over at most), and the inflater stays usable after any input.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::gzip::gunzip;

fuzz_target!(|data: &[u8]| {
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::new();
    let max = 64 * 1024;
    let _ = gunzip(data, &mut out, max, &mut d);
    assert!(out.len() <= max + 256 * 1024 + 1, "inflated {} bytes past the limit", out.len());
    // A valid body right after: the same inflater still works.
    let ok = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(gunzip(&ok, &mut out, max, &mut d).is_ok() && out.is_empty());
});
