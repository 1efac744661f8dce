#![no_main]
//! Fuzz target: url must not panic on any input; a parsed URL round-trips through its Display
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = sts_agent::url::Url::parse(s) {
            // What we print must parse back to the same URL.
            assert_eq!(sts_agent::url::Url::parse(&u.to_string()), Ok(u));
        }
    }
});
