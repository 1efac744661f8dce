//! Host check cost, side by side with its baseline in the same run: the bare kernel reads of
//! the same files (open, read, close; no parsing, no encoding). Machines here are noisy, so the
//! ratio printed at the end is what to compare across changes, not the absolute times.
//! Also each parser on its captured fixture.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::time::{Duration, Instant};
use sts_agent::app::HostCheck;
use sts_agent::encode::compress::Zlib;
use sts_agent::parse;
use sts_agent::sources::host::{HostSource, HOST_FILES};
use sts_agent::sources::procfs::{ProcRoot, ReadBuf};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc/debian12-6.18/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}{name}")).unwrap()
}

/// The floor: read every file the host check reads, and nothing else.
fn bare_reads(root: &ProcRoot, buf: &mut ReadBuf, paths: &[std::ffi::CString]) -> usize {
    paths.iter().map(|p| buf.read_file(root.fd(), p).map_or(0, |b| b.len())).sum()
}

struct Cycle {
    check: HostCheck,
    series: Vec<u8>,
    topo: Vec<u8>,
    z: Vec<u8>,
    zlib: Zlib,
    i: u64,
}

impl Cycle {
    fn run(&mut self) -> usize {
        self.i += 1;
        let n = self.check.run(self.i as f64, 1_700_000_000 + self.i, "i-0abc", 15, &mut self.series, &mut self.topo);
        self.zlib.compress(&self.series, &mut self.z);
        self.zlib.compress(&self.topo, &mut self.z);
        n + self.z.len()
    }
}

fn host_cycle(c: &mut Criterion) {
    let root = ProcRoot::open(Path::new("/proc")).unwrap();
    let mut buf = ReadBuf::with_capacity(64 * 1024);
    let paths: Vec<std::ffi::CString> = HOST_FILES.iter().map(|f| std::ffi::CString::new(*f).unwrap()).collect();
    let mut cycle = Cycle {
        check: HostCheck::new(HostSource::open(Path::new("/proc")).unwrap()),
        series: Vec::new(),
        topo: Vec::new(),
        z: Vec::new(),
        zlib: Zlib::default(),
        i: 0,
    };
    let mut g = c.benchmark_group("host_cycle");
    g.bench_function("baseline_bare_reads", |b| b.iter(|| black_box(bare_reads(&root, &mut buf, &paths))));
    g.bench_function("host_check_collect_encode_compress", |b| b.iter(|| black_box(cycle.run())));
    g.finish();

    // The same two, interleaved in one loop so both see the same machine conditions.
    let (mut base, mut ours) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..300 {
        let t = Instant::now();
        black_box(bare_reads(&root, &mut buf, &paths));
        base += t.elapsed();
        let t = Instant::now();
        black_box(cycle.run());
        ours += t.elapsed();
    }
    println!(
        "host cycle: {:.1} µs vs bare reads {:.1} µs: ratio {:.2}",
        ours.as_secs_f64() * 1e6 / 300.0,
        base.as_secs_f64() * 1e6 / 300.0,
        ours.as_secs_f64() / base.as_secs_f64()
    );
}

fn parsers(c: &mut Criterion) {
    let stat = fixture("stat");
    let meminfo = fixture("meminfo");
    let netdev = fixture("net/dev");
    let disk = fixture("diskstats");
    let snmp = fixture("net/snmp");
    let netstat = fixture("net/netstat");
    let mounts = fixture("self/mountinfo");
    let mut g = c.benchmark_group("parse");
    g.bench_function("proc_stat", |b| b.iter(|| parse::proc_stat::parse(black_box(&stat))));
    g.bench_function("meminfo", |b| b.iter(|| parse::meminfo::parse(black_box(&meminfo))));
    g.bench_function("net_dev", |b| b.iter(|| parse::net_dev::iter(black_box(&netdev)).filter_map(Result::ok).count()));
    g.bench_function("diskstats", |b| {
        b.iter(|| parse::diskstats::iter(black_box(&disk)).filter_map(Result::ok).count())
    });
    g.bench_function("snmp", |b| b.iter(|| parse::snmp::find(black_box(&snmp), b"Tcp", b"RetransSegs")));
    g.bench_function("netstat", |b| b.iter(|| parse::snmp::find(black_box(&netstat), b"TcpExt", b"TCPRetransFail")));
    g.bench_function("mountinfo", |b| {
        b.iter(|| parse::mountinfo::iter(black_box(&mounts)).filter_map(Result::ok).count())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = host_cycle, parsers
}
criterion_main!(benches);
