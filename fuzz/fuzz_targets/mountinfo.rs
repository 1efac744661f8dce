#![no_main]
//! Fuzz target: mountinfo must not panic on any input
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for m in sts_agent::parse::mountinfo::iter(data).flatten() {
        out.clear();
        sts_agent::parse::mountinfo::unescape(m.mount_point, &mut out);
        assert!(out.len() <= m.mount_point.len());
    }
    let _ = sts_agent::parse::mountinfo::filesystems(data).count();
});
