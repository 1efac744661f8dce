//! A stand-in for `libfuzzer-sys` that turns `fuzz_target!(|data: &[u8]| body)` into
//! `pub fn fuzz_replay_entry(data: &[u8])` (a name no target uses), so the fuzz targets' bodies can replay their corpora without
//! libFuzzer (which needs sanitizer runtimes that do not exist for aarch64 musl).

#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        pub fn fuzz_replay_entry($data: &[u8]) {
            $body
        }
    };
}
