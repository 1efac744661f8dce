//! A steady-state process cycle (list, sample, select, enrich, encode protobuf, zstd, encode the
//! /intake side channel) performs no heap allocation; over a run, at most three per new process
//! (its command line, exe and cwd are stored once; buffers grow past high-water marks). Both
//! with no receiver features (the container metrics inside `Container` too) and with all of them
//! (`CollectorCommands` increments every cycle, a full snapshot every 60). And under churn (a
//! few short-lived processes found and ended every cycle, as health checks and cron jobs do on a
//! real host), no allocation either: an ended process's text buffer serves the next one found.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use std::collections::HashMap;
use sts_agent::app::{Encoded, ProcessCheck};
use sts_agent::config::Config;
use sts_agent::parse::features::Features;

#[global_allocator]
static A: Counting = Counting;

/// One test for both (the allocation count is process-wide and the cgroup fixture's name is the
/// test process's): no features, then all of them.
#[test]
fn steady_state_process_cycle_allocates_only_for_new_processes() {
    cycles_with(Features::default());
    cycles_with(Features {
        multi_metrics: true,
        incremental_topology: true,
        health_states: true,
        ..Default::default()
    });
    churn_cycles();
}

/// The agent's configuration from these variables (and defaults for the rest).
fn config(vars: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|k| env.get(k).cloned()).unwrap()
}

/// One run of the check as the agent's loop makes it, `i` seconds in.
fn cycle(
    check: &mut ProcessCheck,
    i: u64,
    meta: &sts_agent::sources::docker::Metadata,
    msg: &mut Vec<u8>,
    zstd: &mut sts_agent::app::Zstd,
    emit: &mut dyn FnMut(Encoded<'_>),
) {
    check.run(i as f64, 1_700_000_000_000 + i as i64 * 1000, "i-0abc", false, meta, msg, zstd, emit);
}

fn cycles_with(features: Features) {
    let cfg = config(&[
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", "3"),
    ]);
    // A container (a Docker-style cgroup with a process in it), where cgroup v1 is mounted.
    let id = test_cgroup::hex_id("alloc", 64);
    let mut ctr = test_cgroup::TestCgroup::new(&[format!("sts-test-{}-docker", std::process::id())], &id);
    if let Some(c) = ctr.as_mut() {
        c.run("import time; time.sleep(60)");
    }
    let mut check = ProcessCheck::new(&cfg, false).unwrap();
    check.features = features;
    let mut msg = Vec::new();
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut bytes_out = 0usize;
    let mut run = |check: &mut ProcessCheck, i: u64, bytes_out: &mut usize| {
        cycle(check, i, &meta, &mut msg, &mut zstd, &mut |e| {
            *bytes_out += match e {
                Encoded::Collector(b) | Encoded::Intake(b) | Encoded::Connections(b) => b.len(),
            }
        });
    };
    for i in 0..4 {
        run(&mut check, i, &mut bytes_out);
    }
    // The budget: a steady cycle allocates nothing at all. A cycle is steady when neither it nor
    // the one before found a new process (a process is reported from its second observation, so
    // the cycle after it first encodes it and may grow the payload buffers past their high-water
    // marks), and it reports no more processes than any cycle before (the top-N inclusions by
    // CPU, memory and I/O vary the selection without any new process; its first new maximum
    // grows the selection once). Under churn (a busy build host) steady cycles are rarer: run
    // until 10 of them were seen, for at most 400 cycles.
    let (mut allocs, mut discovered, mut reported, mut quiet_cycles) = (0, 0, 0, 0);
    let (mut prev_discovered, mut most_reported, mut cycles) = (1, 0, 0u32);
    for i in 4..404 {
        let before = allocations();
        run(&mut check, i, &mut bytes_out);
        let n = allocations() - before;
        let d = u64::from(check.table.discovered);
        let r = check.stats().reported;
        if d == 0 && prev_discovered == 0 && r <= most_reported {
            assert_eq!(n, 0, "cycle {i}: {n} allocations in a steady cycle ({r} processes reported)");
            quiet_cycles += 1;
        }
        (prev_discovered, most_reported) = (d, most_reported.max(r));
        allocs += n;
        discovered += d;
        reported += r;
        cycles += 1;
        if cycles >= 20 && quiet_cycles >= 10 {
            break;
        }
    }
    assert!(
        quiet_cycles >= 10,
        "only {quiet_cycles} of {cycles} cycles were steady; the zero-allocation claim went untested"
    );
    // A new process stores its text once; scratch buffers and tables may grow past high-water.
    assert!(allocs <= 3 * discovered, "{allocs} allocations for {discovered} new processes");
    assert!(reported >= cycles * 3, "only {reported} processes reported over {cycles} cycles");
    if ctr.is_some() {
        assert!(
            check.containers.get(id.as_bytes()).is_some_and(|c| c.samples >= cycles),
            "the container was sampled every cycle"
        );
    }
    assert!(bytes_out > 0);
    eprintln!(
        "{cycles} cycles ({quiet_cycles} steady): {allocs} allocations, {discovered} new processes, {reported} reports, {} containers",
        check.containers.containers.len()
    );
}

/// Kills the churning shell and everything it started, however the test ends (and the shell
/// stops on its own once the test process is gone, should it be killed before this runs).
struct Churner(std::process::Child);

impl Drop for Churner {
    fn drop(&mut self) {
        // The shell leads its own process group: its sleeps go with it.
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let killed = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
        if !std::thread::panicking() {
            killed.expect("kill the churning process group");
        }
    }
}

/// Cycles 100 ms apart while a shell starts two `sleep`s every 50 ms (living 50 and 300 ms, with
/// command lines of one length): every cycle finds new processes and loses others. The text
/// buffers of the ended ones serve those found: over the cycles whose new processes are all the
/// churn's `sleep`s (not another process of the host's, nor the shell caught between fork and
/// exec) and that neither grow the table past its largest size nor report more processes than
/// before, at most one found process in ten allocates (without the spares, every one does;
/// the margin is for what the host's own processes take from the spares meanwhile).
fn churn_cycles() {
    use std::os::unix::process::CommandExt;
    // Reported only after a minute (of the check's clock: a second a cycle): the churned
    // processes never are, so what is counted is finding and losing them.
    let mut check =
        ProcessCheck::new(&config(&[("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "60")]), false).unwrap();
    let script = format!("while kill -0 {} 2>/dev/null; do sleep 0.30 & sleep 0.05; done", std::process::id());
    let _churner = Churner(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("sh"),
    );
    let mut msg = Vec::new();
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut run = |check: &mut ProcessCheck, i: u64| cycle(check, i, &meta, &mut msg, &mut zstd, &mut |_| {});
    for i in 0..8 {
        run(&mut check, i);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (mut most_procs, mut most_reported) = (check.table.procs.len(), check.stats().reported);
    let (mut checked, mut checked_found, mut checked_allocs, mut found, mut cycles) = (0u32, 0u64, 0u64, 0u64, 0u32);
    for i in 8..408 {
        let before = allocations();
        run(&mut check, i);
        let n = allocations() - before;
        let (d, len, r) = (u64::from(check.table.discovered), check.table.procs.len(), check.stats().reported);
        let new = || check.table.procs.iter().filter(|p| p.first_seen_mono == i as f64);
        let all_sleeps = new().count() as u64 == d && new().all(|p| p.comm.starts_with(b"sleep\0"));
        if d > 0 && all_sleeps && len <= most_procs && r <= most_reported {
            checked += 1;
            checked_found += d;
            checked_allocs += n;
        }
        (most_procs, most_reported) = (most_procs.max(len), most_reported.max(r));
        found += d;
        cycles += 1;
        if checked >= 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(checked >= 20, "only {checked} of {cycles} cycles found only the churn's processes: churn untested");
    assert!(
        checked_allocs * 10 <= checked_found,
        "{checked_allocs} allocations finding {checked_found} processes over {checked} cycles"
    );
    eprintln!(
        "churn: {cycles} cycles, {found} processes found; {checked} cycles checked: {checked_allocs} allocations for {checked_found} found"
    );
}
