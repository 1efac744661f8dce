//! A DogStatsD sample of a known context costs no heap allocation: the datagram is parsed in
//! place, the context key is built in reused scratch and found by hash + exact compare, and the
//! bucket's storage is reused, at whatever rate the context is sampled (a bucket's histogram
//! samples and set members keep their storage at its high-water mark). A flush of known
//! contexts writes into a reused buffer, in chunks as the agent does. The test binary counts
//! every allocation.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use sts_agent::checks::dogstatsd::{Aggregator, Limits};
use sts_agent::checks::dogstatsd_events::EventBuffer;
use sts_agent::encode::series::SeriesEncoder;

#[global_allocator]
static A: Counting = Counting;

const T0: u64 = 1_700_000_000;

/// A flush as the agent runs it: chunks of at most `chunk` bytes, each written into `out`.
/// Returns the series written and the chunks.
fn flush(a: &mut Aggregator, now: u64, out: &mut Vec<u8>, chunk: usize) -> (usize, usize) {
    let (mut series, mut chunks) = (0, 0);
    assert!(a.flush_start(now));
    while a.flushing() {
        let mut e = SeriesEncoder::begin(out, "h", T0, 10);
        series += a.flush_more(&mut e, chunk);
        e.finish();
        assert!(out.len() <= chunk);
        chunks += 1;
    }
    (series, chunks)
}

/// 40 contexts of each type that keeps a context (5 tags each), `per_bucket` samples of each
/// per 10 s bucket, packed as a client would send them (one datagram a round, a set member of
/// its own each round): warmed over 8 buckets (every bucket slot seen at this rate, twice, and
/// flushed), then 8 more buckets and their flushes must allocate nothing.
/// Returns how many chunks the measured flushes took.
fn steady_buckets_allocate_nothing(per_bucket: usize, chunk: usize) -> usize {
    let rounds: Vec<Vec<u8>> = (0..per_bucket)
        .map(|r| {
            let mut d = Vec::new();
            for i in 0..40 {
                let t = format!("#env:prod,service:web,version:1.{i},region:eu-west-1,team:a");
                d.extend_from_slice(
                    format!("req.{i}:1|c|@0.5|{t}\nmem.{i}:{i}|g|{t}\nlat.{i}:{r}.5|ms|{t}\nusers.{i}:u{r}|s|{t}\n")
                        .as_bytes(),
                );
            }
            d
        })
        .collect();
    let mut a = Aggregator::new(Limits::default(), T0);
    let mut ev = EventBuffer::new(1 << 20);
    let mut out = Vec::with_capacity(chunk);
    for b in 0..8u64 {
        for d in &rounds {
            a.ingest(d, false, b"", T0 + 10 * b, &mut ev);
        }
        flush(&mut a, T0 + 10 * b + 5, &mut out, chunk);
    }
    assert_eq!(a.contexts(), 160);
    let before = allocations();
    let (mut series, mut chunks) = (0, 0);
    for b in 8..16u64 {
        for d in &rounds {
            a.ingest(d, false, b"", T0 + 10 * b + 1, &mut ev);
        }
        let (s, c) = flush(&mut a, T0 + 10 * b + 5, &mut out, chunk);
        series += s;
        chunks += c;
    }
    let n = allocations() - before;
    assert_eq!(a.stats.metrics, 2 * 160 * 8 * per_bucket as u64);
    assert_eq!(a.stats.samples_over_limit, 0);
    // 40 × (counter, gauge, set, 5 histogram series) per flush.
    assert_eq!(series, 8 * 40 * 8);
    assert_eq!(
        n,
        0,
        "{n} allocations for {} samples ({per_bucket} per context per bucket) and 8 flushes in {chunks} chunks of {chunk} bytes at most",
        8 * 160 * per_bucket
    );
    chunks
}

/// One test: the allocation counter is process-wide, so cases running on parallel test threads
/// would count each other's allocations.
#[test]
fn known_contexts_allocate_nothing_per_sample_or_flush() {
    steady_buckets_allocate_nothing(50, 1 << 20);
    // Past 64 samples, the storage a flush used to shrink a bucket back to, which then grew
    // again every bucket (640 allocations in 8 buckets).
    steady_buckets_allocate_nothing(65, 1 << 20);
    steady_buckets_allocate_nothing(1000, 1 << 20);
    // A flush of several chunks (about 60 KB of series in 16 KiB chunks) reuses one buffer.
    let chunks = steady_buckets_allocate_nothing(65, 16 * 1024);
    assert!(chunks >= 8 * 4, "{chunks} chunks in 8 flushes");
}
