#![no_main]
//! Fuzz target: the DogStatsD aggregator (src/checks/dogstatsd.rs) driven by arbitrary
//! datagrams, a wall clock that steps, stalls and jumps both ways (to 0, as `unix_secs` reads a
//! clock before 1970), and tiny limits, so that the context cap, the samples bound, the free
//! list, the raw-form index, bucket slots reused and overrun, and counter zeros across jumps are
//! all reached. After every step: no panic, and `check_invariants` (samples held equal to the
//! storage allocated and within the bound, the contexts within theirs and each found through its
//! hash's chain, the raw-form index naming live contexts). After every flush: the series payload
//! is JSON with as many series as the flush says it wrote, each point stamped with the start of
//! a closed bucket, ascending; a point that is not finite trips the encoder's debug assertion
//! (this runs with `-a`; the encoder would write it as 0); the events' payload is JSON.
//!
//! Input: byte 0: the context cap (1 + its low 3 bits: 1 to 8), and bits 3-4 a multiplier of
//! the samples bound (1, 2, 4 or 8); byte 1: the samples bound (0 to 255 slots, times that: up
//! to 2,040, past the 64 slots a flushed bucket keeps); byte 2: the start (odd: 1,700,000,000 + byte / 2; even: the byte itself, seconds after the
//! epoch); then steps, each one byte `op` and what it takes:
//! - `op % 8 == 0`: flush at now (series, then events);
//! - `1`: now += the next byte (seconds);
//! - `2`: now += the next two bytes as an i16 × 7 (about ±2.6 days), at least 0, at most 2^40;
//! - `3..=6`: a datagram of the next byte's length, `7`: of the next two bytes' (little-endian);
//!   truncated when `op & 8`; origin tags `ORIGINS[op >> 4 & 3]`.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::dogstatsd::{Aggregator, Limits, BUCKET_SECS};
use sts_agent::checks::dogstatsd_events::EventBuffer;
use sts_agent::encode::series::SeriesEncoder;

const ORIGINS: [&[u8]; 4] = [b"", b"container_id:abc", b"container_id:abc,task_family:web,b", b"host:from-origin,z"];
const MAX_NOW: u64 = 1 << 40;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}

fn flush(agg: &mut Aggregator, events: &mut EventBuffer, now: u64, buf: &mut Vec<u8>) {
    let mut enc = SeriesEncoder::begin(buf, "fuzz-host", now, BUCKET_SECS);
    let written = agg.flush(now, &mut enc);
    assert_eq!(enc.finish(), written, "series written");
    let v: serde_json::Value = serde_json::from_slice(buf).expect("the series payload is JSON");
    let series = v["series"].as_array().expect("a series array");
    assert_eq!(series.len(), written);
    let cutoff = now - now % BUCKET_SECS;
    for s in series {
        let points = s["points"].as_array().expect("points");
        assert!(!points.is_empty(), "a serie without points: {s}");
        let mut prev = None;
        for p in points {
            let ts = p[0].as_u64().expect("a point's time");
            let value = p[1].as_f64().expect("a point's value");
            assert!(value.is_finite(), "{s}");
            assert!(ts % BUCKET_SECS == 0 && ts + BUCKET_SECS <= cutoff, "not a closed bucket at {now}: {s}");
            assert!(prev < Some(ts), "points not ascending: {s}");
            prev = Some(ts);
        }
    }
    if events.flush(buf) {
        let v: serde_json::Value = serde_json::from_slice(buf).expect("the events payload is JSON");
        assert!(v["events"].is_object());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let head = take(&mut data, 3);
    let [cap, bound, start] = [0, 1, 2].map(|i| head.get(i).copied().unwrap_or(0));
    let limits = Limits { max_contexts: 1 + usize::from(cap & 7), max_samples: usize::from(bound) << (cap >> 3 & 3) };
    let mut now = if start & 1 == 1 { 1_700_000_000 + u64::from(start >> 1) } else { u64::from(start) };
    let mut agg = Aggregator::new(limits, now);
    let mut latest = now;
    let mut events = EventBuffer::new(1024);
    events.host = "fuzz-host".to_string();
    let mut buf = Vec::new();
    while let Some(&op) = data.first() {
        data = &data[1..];
        match op % 8 {
            0 => flush(&mut agg, &mut events, now, &mut buf),
            1 => now = (now + u64::from(take(&mut data, 1).first().copied().unwrap_or(0))).min(MAX_NOW),
            2 => {
                let b = take(&mut data, 2);
                let step =
                    i64::from(i16::from_le_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]));
                now = now.saturating_add_signed(step * 7).min(MAX_NOW);
            }
            k => {
                let len = if k == 7 {
                    let b = take(&mut data, 2);
                    usize::from(u16::from_le_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
                } else {
                    usize::from(take(&mut data, 1).first().copied().unwrap_or(0))
                };
                let datagram = take(&mut data, len);
                let origin = ORIGINS[usize::from((op >> 4) & 3)];
                agg.ingest(datagram, op & 8 != 0, origin, now, &mut events);
            }
        }
        latest = latest.max(now);
        if let Err(e) = agg.check_invariants() {
            panic!("after op {op} at {now}: {e}");
        }
    }
    // Far past every time seen: every bucket is closed and every context expires.
    flush(&mut agg, &mut events, latest + 10_000, &mut buf);
    assert_eq!(agg.contexts(), 0, "contexts left after every expiry");
    agg.check_invariants().unwrap();
});
