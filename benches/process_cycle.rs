//! Process-cycle budget on the live host with many spawned processes (BENCH_PROCS, default 300,
//! all reported: the worst case, since reported processes also get `status` and `fd/` read).
//! Side by side, in the same run and interleaved: the floor, i.e. listing /proc and
//! open/read/close of `stat`, `statm` and `io` for every pid, nothing else.
//! The figures that matter are CPU time per cycle (getrusage, user + system) and the ratio.

#[path = "support/floor.rs"]
mod floor;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nix::sys::resource::{getrusage, UsageWho};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use sts_agent::app::{Encoded, ProcessCheck};
use sts_agent::config::Config;

struct Kids(Vec<Child>);
impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cpu_secs() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn process_cycle(c: &mut Criterion) {
    let n: usize = std::env::var("BENCH_PROCS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let _kids = Kids(
        (0..n).map(|_| Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap()).collect(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let env: HashMap<String, String> = [("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let cfg = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let mut check = ProcessCheck::new(&cfg, false).unwrap();
    let mut msg = Vec::new();
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut i = 0u64;
    let mut ours = move |check: &mut ProcessCheck| {
        i += 1;
        let mut bytes = 0;
        check.run(i as f64, 1_700_000_000_000 + i as i64, "i-0abc", false, &meta, &mut msg, &mut zstd, &mut |e| {
            bytes += match e {
                Encoded::Collector(b) | Encoded::Intake(b) | Encoded::Connections(b) => b.len(),
            }
        });
        bytes
    };
    let mut floor = floor::ProcFloor::new();
    for _ in 0..3 {
        ours(&mut check);
    }

    let mut g = c.benchmark_group("process_cycle");
    g.sample_size(20);
    g.bench_function("baseline_floor_stat_statm_io", |b| b.iter(|| black_box(floor.cycle())));
    g.bench_function("process_check_full_cycle", |b| b.iter(|| black_box(ours(&mut check))));
    g.finish();

    // Interleaved CPU-time comparison, so both see the same machine.
    let rounds = 40;
    let (mut base, mut full) = (0.0, 0.0);
    for _ in 0..rounds {
        let t = cpu_secs();
        black_box(floor.cycle());
        base += cpu_secs() - t;
        let t = cpu_secs();
        black_box(ours(&mut check));
        full += cpu_secs() - t;
    }
    let s = check.stats();
    println!(
        "process cycle ({} processes, {} reported): CPU {:.2} ms vs floor {:.2} ms per cycle: ratio {:.2}",
        s.total,
        s.reported,
        full * 1e3 / rounds as f64,
        base * 1e3 / rounds as f64,
        full / base
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = process_cycle
}
criterion_main!(benches);
