//! A steady-state process cycle (list, sample, select, enrich, encode protobuf, zstd, encode the
//! /intake side channel) performs no heap allocation, except at most one per process that is
//! new in that cycle (its command line, exe and cwd are stored once).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use std::collections::HashMap;
use sts_agent::app::{Encoded, ProcessCheck};
use sts_agent::config::Config;

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_process_cycle_allocates_only_for_new_processes() {
    let env: HashMap<String, String> =
        [("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"), ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let cfg = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    // A container (a Docker-style cgroup with a process in it), where cgroup v1 is mounted.
    let id = test_cgroup::hex_id("alloc", 64);
    let mut ctr = test_cgroup::TestCgroup::new(&[format!("sts-test-{}-docker", std::process::id())], &id);
    if let Some(c) = ctr.as_mut() {
        c.run("import time; time.sleep(60)");
    }
    let mut check = ProcessCheck::new(&cfg, false).unwrap();
    let mut msg = Vec::new();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut bytes_out = 0usize;
    let mut run = |check: &mut ProcessCheck, i: u64, bytes_out: &mut usize| {
        check.run(i as f64, 1_700_000_000_000 + i as i64 * 1000, "i-0abc", false, &meta, &mut msg, &mut |e| {
            *bytes_out += match e {
                Encoded::Collector(b) | Encoded::Intake(b) | Encoded::Connections(b) => b.len(),
            }
        });
    };
    for i in 0..4 {
        run(&mut check, i, &mut bytes_out);
    }
    let (mut allocs, mut discovered, mut reported, mut quiet_cycles) = (0, 0, 0, 0);
    for i in 4..24 {
        let before = allocations();
        run(&mut check, i, &mut bytes_out);
        let n = allocations() - before;
        let d = u64::from(check.table.discovered);
        if d == 0 {
            // The budget: a cycle with no new process allocates nothing at all.
            assert_eq!(n, 0, "cycle {i}: {n} allocations without any new process");
            quiet_cycles += 1;
        }
        allocs += n;
        discovered += d;
        reported += check.stats().reported;
    }
    assert!(
        quiet_cycles >= 5,
        "only {quiet_cycles} of 20 cycles had no process churn; the zero-allocation claim went untested"
    );
    // A new process stores its text once; scratch buffers and tables may grow past high-water.
    assert!(allocs <= 3 * discovered, "{allocs} allocations for {discovered} new processes");
    assert!(reported >= 20 * 3, "only {reported} processes reported over 20 cycles");
    if ctr.is_some() {
        assert!(
            check.containers.get(id.as_bytes()).is_some_and(|c| c.samples >= 20),
            "the container was sampled every cycle"
        );
    }
    assert!(bytes_out > 0);
    eprintln!(
        "20 cycles ({quiet_cycles} without churn): {allocs} allocations, {discovered} new processes, {reported} reports, {} containers",
        check.containers.containers.len()
    );
}
