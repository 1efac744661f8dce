#![no_main]
//! Fuzz target: the DogStatsD parser must not panic on any datagram, and every value it
//! accepts is finite (a set's member is its raw bytes, not a number), and every decimal it
//! converts (its own fast path or the standard parser) equals what the standard parser gives.
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
            for v in m.raw_value.split(|&b| b == b':') {
                if let Some(x) = sts_agent::parse::dogstatsd::number(v) {
                    let std: f64 = std::str::from_utf8(v).unwrap().parse().unwrap();
                    assert_eq!(x.to_bits(), std.to_bits());
                }
            }
        }
    }
});
