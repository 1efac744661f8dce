//! A steady-state host cycle (read /proc, compute, encode both payloads, compress) performs
//! zero heap allocations after warm-up. The test binary counts every allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use sts_agent::app::HostCheck;
use sts_agent::encode::compress::Zlib;
use sts_agent::sources::host::HostSource;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` above with the same layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `n` is the caller's new size.
        unsafe { System.realloc(p, l, n) }
    }
}

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
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut emitted = 0;
    for i in 3..23 {
        emitted += cycle(i);
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert!(emitted > 20 * 50, "the cycles emitted only {emitted} series");
    assert_eq!(after - before, 0, "{} allocations in 20 steady-state cycles", after - before);
}
