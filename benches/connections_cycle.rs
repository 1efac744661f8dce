//! Connections-cycle budget: BENCH_SOCKETS established loopback sockets (default 5,000, i.e.
//! 2,500 connections owned by this process, all reported) plus BENCH_TIME_WAIT sockets in
//! TIME_WAIT (default 1,000). Side by side, in the same run and interleaved: the floor, a bare
//! inet_diag dump (IPv4 and IPv6, with `tcp_info`) of the same namespace that only receives.
//! The figures that matter are CPU time per cycle (getrusage, user + system) and the ratio.

#[path = "support/floor.rs"]
mod floor;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nix::sys::resource::{getrusage, UsageWho};
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use sts_agent::app::{ConnectionsCheck, Encoded, ProcessCheck};
use sts_agent::config::Config;

fn cpu_secs() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
}

fn connections_cycle(c: &mut Criterion) {
    let sockets: usize = std::env::var("BENCH_SOCKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let time_wait: usize = std::env::var("BENCH_TIME_WAIT").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    raise_fd_limit();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut ends = Vec::with_capacity(sockets / 2);
    for _ in 0..sockets / 2 {
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().unwrap();
        ends.push((c, s));
    }
    // The side that closes first holds TIME_WAIT.
    for _ in 0..time_wait {
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().unwrap();
        drop(c);
        drop(s);
    }
    let env: HashMap<String, String> = [
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let cfg = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let mut procs = ProcessCheck::new(&cfg, false).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut pmsg = Vec::new();
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    for i in 0..3 {
        procs.run(
            f64::from(i),
            1_700_000_000_000 + i64::from(i) * 1000,
            "i-0abc",
            false,
            &meta,
            &mut pmsg,
            &mut zstd,
            &mut |_| {},
        );
    }
    let mut check = ConnectionsCheck::new(20_000, 0, 30).unwrap();
    let mut msg = Vec::new();
    let mut i = 10u64;
    let mut ours = move |check: &mut ConnectionsCheck| {
        i += 1;
        let mut bytes = 0;
        check.run(
            i as f64,
            1_700_000_000_000 + i as i64 * 1000,
            "i-0abc",
            false,
            &procs,
            &mut msg,
            &mut zstd,
            &mut |e| {
                bytes += match e {
                    Encoded::Collector(b) | Encoded::Intake(b) | Encoded::Connections(b) => b.len(),
                }
            },
        );
        bytes
    };
    let mut floor = floor::DumpFloor::new();
    for _ in 0..3 {
        ours(&mut check);
    }

    let mut g = c.benchmark_group("connections_cycle");
    g.sample_size(20);
    g.bench_function("baseline_bare_inet_diag_dump", |b| b.iter(|| black_box(floor.cycle())));
    g.bench_function("connections_check_full_cycle", |b| b.iter(|| black_box(ours(&mut check))));
    g.finish();

    // Interleaved CPU-time comparison, so both see the same machine.
    let rounds = 40;
    let (mut base, mut full, mut sent) = (0.0, 0.0, 0);
    for _ in 0..rounds {
        let t = cpu_secs();
        black_box(floor.cycle());
        base += cpu_secs() - t;
        let t = cpu_secs();
        sent = black_box(ours(&mut check));
        full += cpu_secs() - t;
    }
    let s = check.selection.stats;
    println!(
        "connections cycle ({} sockets tracked, {} reported, {time_wait} in TIME_WAIT, {} bytes out): CPU {:.2} ms vs bare dump {:.2} ms per cycle: ratio {:.2}",
        s.total,
        s.reported,
        sent,
        full * 1e3 / rounds as f64,
        base * 1e3 / rounds as f64,
        full / base
    );
    drop(ends);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = connections_cycle
}
criterion_main!(benches);
