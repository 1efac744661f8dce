//! A steady-state host cycle (read /proc, compute, encode both payloads, compress) performs
//! zero heap allocations after warm-up. The test binary counts every allocation.
//!
//! "Steady" is the host's inventory, not the clock: an interface, disk or filesystem that appears
//! (a container's veth, a test's mount, dockerd's bridge on a CI machine) is stored in both
//! samples (swapped each cycle) and grows the payloads once, as it must. A cycle counts when
//! neither it nor the one before saw the inventory change and none of the three payload buffers
//! grew its capacity in it (a counter gaining a digit may grow one past its high-water mark once).
//! Such growth must stay rare: a buffer that grows every cycle fails the test too.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use sts_agent::app::HostCheck;
use sts_agent::encode::compress::Zlib;
use sts_agent::model::host::HostSample;
use sts_agent::sources::host::HostSource;

#[global_allocator]
static A: Counting = Counting;

/// A fingerprint of what the sample lists (names and counts, not counters), without allocating.
fn inventory(s: &HostSample) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b.iter().chain(&[0xff]) {
            h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
    };
    for i in &s.ifaces {
        eat(s.names.get(i.name));
    }
    eat(b"disks");
    for d in &s.disks {
        eat(s.names.get(d.name));
    }
    eat(b"filesystems");
    for f in &s.filesystems {
        eat(s.names.get(f.device));
        eat(s.names.get(f.mount_point));
    }
    h
}

#[test]
fn steady_state_host_cycle_allocates_nothing() {
    let mut check = HostCheck::new(HostSource::open(std::path::Path::new("/proc")).unwrap());
    let (mut series, mut topo, mut z) = (Vec::new(), Vec::new(), Vec::new());
    let mut zlib = Zlib::default();
    let mut cycle = |check: &mut HostCheck, i: u64| {
        let n = check.run(i as f64, 1_700_000_000 + i, "i-0abc", 15, &mut series, &mut topo);
        zlib.compress(&series, &mut z);
        zlib.compress(&topo, &mut z);
        std::hint::black_box(&z);
        (n, [series.capacity(), topo.capacity(), z.capacity()])
    };
    let mut capacities = [0; 3];
    for i in 0..3 {
        capacities = cycle(&mut check, i).1;
    }
    let (mut steady, mut emitted, mut unchanged_for, mut grew) = (0, 0, 0, 0);
    let mut last = inventory(check.sample());
    let mut cycles = 0;
    for i in 3..303 {
        cycles += 1;
        let before = allocations();
        let (n, now_capacities) = cycle(&mut check, i);
        let allocs = allocations() - before;
        let now = inventory(check.sample());
        unchanged_for = if now == last { unchanged_for + 1 } else { 0 };
        last = now;
        let buffer_grew = now_capacities != capacities;
        capacities = now_capacities;
        grew += u32::from(buffer_grew);
        if unchanged_for >= 2 && !buffer_grew {
            assert_eq!(allocs, 0, "cycle {i}: {allocs} allocations in a steady host cycle");
            steady += 1;
            emitted += n;
            if steady == 20 {
                break;
            }
        }
    }
    assert_eq!(steady, 20, "only {steady} steady host cycles in 300: the host's inventory kept changing");
    assert!(grew * 10 <= cycles, "the payload buffers grew in {grew} of {cycles} cycles");
    assert!(emitted > 20 * 50, "the cycles emitted only {emitted} series");
}
