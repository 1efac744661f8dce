//! A global allocator that counts allocations (and reallocations), for the zero-allocation tests.
//! Each test binary that uses it declares `#[global_allocator] static A: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not freed, and their peak since the last `take_peak`.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The peak of live heap bytes since the last call (which resets it to the current figure), and
/// the current figure.
#[allow(dead_code)]
pub fn take_peak() -> (usize, usize) {
    let live = LIVE.load(Ordering::Relaxed);
    (PEAK.swap(live, Ordering::Relaxed).max(live), live)
}

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Allocations so far in this process.
#[allow(dead_code)]
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

thread_local! {
    // Const-initialised with no destructor: usable from inside the allocator.
    static THREAD_ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_thread() {
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations so far on the calling thread (other tests' threads in the same binary, and the
/// test harness's, do not count).
#[allow(dead_code)]
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCS.with(|c| c.get())
}

/// The largest single allocation (or reallocation) since the last call, which resets it.
#[allow(dead_code)]
pub fn take_largest() -> usize {
    LARGEST.swap(0, Ordering::Relaxed)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        count_thread();
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        grew(l.size());
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with the same layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        count_thread();
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // Old and new blocks both exist while the contents are copied.
        grew(n);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `n` is the caller's new size.
        unsafe { System.realloc(p, l, n) }
    }
}
