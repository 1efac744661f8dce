#![no_main]
//! Fuzz target: the DogStatsD parser must not panic on any datagram, and every value it
//! accepts is finite (a set's member is its raw bytes, not a number).
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::dogstatsd::{messages, Message, MetricType};

fuzz_target!(|data: &[u8]| {
    let truncated = data.first().is_some_and(|b| b & 1 == 1);
    for m in messages(data, truncated) {
        if let Ok(Message::Metric(m)) = m {
            if m.kind != MetricType::Set {
                for v in m.values() {
                    assert!(v.is_finite());
                }
            }
            let _ = sts_agent::parse::dogstatsd::tags(m.tags).count();
        }
    }
});
