//! A DogStatsD sample of a known context costs no heap allocation: the datagram is parsed in
//! place, the context key is built in reused scratch and found by hash + exact compare, and the
//! bucket's storage is reused. A flush of known contexts writes into a reused buffer. The test
//! binary counts every allocation.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use sts_agent::checks::dogstatsd::{Aggregator, Limits};
use sts_agent::checks::dogstatsd_events::EventBuffer;
use sts_agent::encode::series::SeriesEncoder;

#[global_allocator]
static A: Counting = Counting;

const T0: u64 = 1_700_000_000;

#[test]
fn known_contexts_allocate_nothing_per_sample_or_flush() {
    // 5 tags each, every type that keeps a context, packed as a client would send them.
    let mut d = Vec::new();
    for i in 0..40 {
        let t = format!("#env:prod,service:web,version:1.{i},region:eu-west-1,team:a");
        d.extend_from_slice(
            format!("req.{i}:1|c|@0.5|{t}\nmem.{i}:{i}|g|{t}\nlat.{i}:{i}.5|ms|{t}\nusers.{i}:u{i}|s|{t}\n").as_bytes(),
        );
    }
    let mut a = Aggregator::new(Limits::default(), T0);
    let mut ev = EventBuffer::new(1 << 20);
    let mut out = Vec::with_capacity(1 << 20);
    // Warm: every context and every bucket slot seen at this rate (histogram buckets grow to
    // 50 samples once), and flushed.
    for b in 0..8u64 {
        for _ in 0..50 {
            a.ingest(&d, false, b"", T0 + 10 * b, &mut ev);
        }
        let mut e = SeriesEncoder::begin(&mut out, "h", T0, 10);
        a.flush(T0 + 10 * b + 5, &mut e);
        e.finish();
    }
    assert_eq!(a.contexts(), 160);
    let before = allocations();
    let mut series = 0;
    for b in 8..16u64 {
        for _ in 0..50 {
            a.ingest(&d, false, b"", T0 + 10 * b + 1, &mut ev);
        }
        let mut e = SeriesEncoder::begin(&mut out, "h", T0, 10);
        series += a.flush(T0 + 10 * b + 5, &mut e);
        e.finish();
    }
    let n = allocations() - before;
    assert_eq!(a.stats.metrics, 2 * 160 * 8 * 50);
    // 40 × (counter, gauge, set, 5 histogram series) per flush.
    assert_eq!(series, 8 * 40 * 8);
    assert_eq!(n, 0, "{n} allocations for 64,000 samples and 8 flushes");
}
