//! DogStatsD cost per metric: parsing alone, and parsing + aggregating (known contexts, every
//! 10 s bucket flushed as series, the flush's cost spread over its samples). Datagrams as a
//! client packs them (about 1,400 bytes: 16 metrics with 5 tags each; counters with a sample
//! rate, gauges, timers, sets; 1,000 contexts in all). Throughput is in metrics.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use sts_agent::checks::dogstatsd::{Aggregator, Limits};
use sts_agent::checks::dogstatsd_events::EventBuffer;
use sts_agent::encode::series::SeriesEncoder;
use sts_agent::parse::dogstatsd::{messages, Message};

const PER_DATAGRAM: usize = 16;

fn datagrams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut d = Vec::new();
    for i in 0..1000 {
        let tags = format!("#env:prod,service:checkout,version:1.4.{},region:eu-west-1,team:payments", i % 7);
        let line = match i % 4 {
            0 => format!("shop.requests.{i}:1|c|@0.5|{tags}\n"),
            1 => format!("shop.queue.{i}:{}|g|{tags}\n", i * 3),
            2 => format!("shop.latency.{i}:{}.25|ms|{tags}\n", i % 250),
            _ => format!("shop.users.{i}:user{}|s|{tags}\n", i % 50),
        };
        d.extend_from_slice(line.as_bytes());
        if (i + 1) % PER_DATAGRAM == 0 {
            out.push(std::mem::take(&mut d));
        }
    }
    if !d.is_empty() {
        out.push(d);
    }
    out
}

fn bench(c: &mut Criterion) {
    let ds = datagrams();
    let mut g = c.benchmark_group("dogstatsd");
    g.throughput(Throughput::Elements(PER_DATAGRAM as u64));
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let mut i = 0;
    g.bench_function("parse_per_datagram_of_16", |b| {
        b.iter(|| {
            i = (i + 1) % ds.len();
            let mut n = 0;
            for m in messages(black_box(&ds[i]), false) {
                if let Ok(Message::Metric(m)) = m {
                    n += m.name.len() + m.tags.len();
                }
            }
            black_box(n)
        })
    });
    let mut agg = Aggregator::new(Limits::default(), 1_700_000_000);
    let mut ev = EventBuffer::new(1 << 20);
    let mut out = Vec::with_capacity(1 << 20);
    let (mut now, mut k) = (1_700_000_000u64, 0u64);
    g.bench_function("parse_aggregate_flush_per_datagram_of_16", |b| {
        b.iter(|| {
            i = (i + 1) % ds.len();
            agg.ingest(black_box(&ds[i]), false, b"", now, &mut ev);
            k += 1;
            // A new bucket every 6,250 datagrams (100,000 metrics), and the closed one flushed.
            if k % 6250 == 0 {
                now += 10;
                let mut e = SeriesEncoder::begin(&mut out, "i-0abc", now, 10);
                agg.flush(now, &mut e);
                e.finish();
            }
        })
    });
    g.finish();
    assert_eq!(agg.stats.contexts_over_limit + agg.stats.samples_over_limit, 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
