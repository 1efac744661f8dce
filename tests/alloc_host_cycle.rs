//! A steady-state host cycle (read /proc, compute, encode both payloads, compress) performs
//! zero heap allocations after warm-up. The test binary counts every allocation.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use sts_agent::app::HostCheck;
use sts_agent::encode::compress::Zlib;
use sts_agent::sources::host::HostSource;

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_host_cycle_allocates_nothing() {
    let mut check = HostCheck::new(HostSource::open(std::path::Path::new("/proc")).unwrap());
    let (mut series, mut topo, mut z) = (Vec::new(), Vec::new(), Vec::new());
    let mut zlib = Zlib::default();
    let mut cycle = |i: u64| {
        let n = check.run(i as f64, 1_700_000_000 + i, "i-0abc", 15, &mut series, &mut topo);
        zlib.compress(&series, &mut z);
        zlib.compress(&topo, &mut z);
        std::hint::black_box(&z);
        n
    };
    for i in 0..3 {
        cycle(i);
    }
    let before = allocations();
    let mut emitted = 0;
    for i in 3..23 {
        emitted += cycle(i);
    }
    let after = allocations();
    assert!(emitted > 20 * 50, "the cycles emitted only {emitted} series");
    assert_eq!(after - before, 0, "{} allocations in 20 steady-state cycles", after - before);
}
