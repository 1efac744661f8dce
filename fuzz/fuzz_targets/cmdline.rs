#![no_main]
//! Fuzz target: cmdline splitting and scrubbing must not panic, and scrubbing keeps every argument.
use libfuzzer_sys::fuzz_target;
use sts_agent::{checks::scrub::scrub_args, parse::pid::cmdline_args};

fuzz_target!(|data: &[u8]| {
    let n = cmdline_args(data).count();
    let mut out = Vec::new();
    scrub_args(cmdline_args(data), &mut out);
    let m = if n == 0 { 0 } else { out.iter().filter(|b| **b == 0).count() + 1 };
    assert_eq!(n, m);
});
