#![no_main]
//! Fuzz target: the request/response matcher. Any sequence of packets (split at 0xfe) into a
//! small flow table must not panic, must keep its bounds (flows, bins, pending requests), and a
//! check that sees none of its sockets must empty it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sts_agent::model::http_flows::fuzz_packets(data);
});
