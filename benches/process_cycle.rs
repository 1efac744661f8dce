//! Process-cycle budget on the live host with many spawned processes (BENCH_PROCS, default 300,
//! all reported: the worst case, since reported processes also get `status` and `fd/` read).
//! Side by side, in the same run and interleaved: the floor, i.e. listing /proc and
//! open/read/close of `stat`, `statm` and `io` for every pid, nothing else.
//! The figures that matter are CPU time per cycle (getrusage, user + system) and the ratio.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nix::sys::resource::{getrusage, UsageWho};
use rustix::fd::AsFd;
use rustix::fs::{openat, Mode, OFlags, RawDir, CWD};
use std::collections::HashMap;
use std::mem::MaybeUninit;
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

/// The floor: what any collector of these three files must do.
struct Floor {
    proc_fd: rustix::fd::OwnedFd,
    dents: Vec<MaybeUninit<u8>>,
    buf: Vec<u8>,
    pids: Vec<u32>,
}

impl Floor {
    fn cycle(&mut self) -> usize {
        self.pids.clear();
        rustix::fs::seek(&self.proc_fd, rustix::fs::SeekFrom::Start(0)).unwrap();
        let mut dir = RawDir::new(&self.proc_fd, &mut self.dents);
        while let Some(Ok(e)) = dir.next() {
            if let Ok(pid) = std::str::from_utf8(e.file_name().to_bytes()).unwrap_or("").parse::<u32>() {
                self.pids.push(pid);
            }
        }
        let mut total = 0;
        let mut path = [0u8; 32];
        for &pid in &self.pids {
            for f in ["stat", "statm", "io"] {
                let s = format_path(&mut path, pid, f);
                if let Ok(fd) = openat(&self.proc_fd, s, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
                    total += rustix::io::read(fd.as_fd(), &mut self.buf).unwrap_or(0);
                }
            }
        }
        total
    }
}

fn format_path<'a>(buf: &'a mut [u8; 32], pid: u32, f: &str) -> &'a std::ffi::CStr {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(c, "{pid}/{f}\0");
    let n = c.position() as usize;
    std::ffi::CStr::from_bytes_with_nul(&buf[..n]).unwrap()
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
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut i = 0u64;
    let mut ours = move |check: &mut ProcessCheck| {
        i += 1;
        let mut bytes = 0;
        check.run(i as f64, 1_700_000_000_000 + i as i64, "i-0abc", false, &meta, &mut msg, &mut |e| {
            bytes += match e {
                Encoded::Collector(b) | Encoded::Intake(b) | Encoded::Connections(b) => b.len(),
            }
        });
        bytes
    };
    let mut floor = Floor {
        proc_fd: openat(CWD, "/proc", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap(),
        dents: vec![MaybeUninit::uninit(); 32 * 1024],
        buf: vec![0; 4096],
        pids: Vec::new(),
    };
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
