//! Heap-allocation accounting for the budget benchmark. Built with `--features count-allocs`,
//! the binary's global allocator counts every allocation and reallocation (two relaxed atomic
//! adds each, so a cycle that allocates nothing costs nothing more); `/status` and each check's
//! last run then report the counts. Without the feature, [`snapshot`] is `None` and the system
//! allocator is used untouched.

use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Allocations (and reallocations) so far, and the bytes they asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocs {
    pub count: u64,
    pub bytes: u64,
}

impl Allocs {
    pub fn since(self, earlier: Allocs) -> Allocs {
        Allocs { count: self.count - earlier.count, bytes: self.bytes - earlier.bytes }
    }
}

/// The counts so far, when this build counts them.
pub fn snapshot() -> Option<Allocs> {
    cfg!(feature = "count-allocs")
        .then(|| Allocs { count: ALLOCATIONS.load(Ordering::Relaxed), bytes: BYTES.load(Ordering::Relaxed) })
}

#[cfg(feature = "count-allocs")]
pub use counting::Counting;

#[cfg(feature = "count-allocs")]
mod counting {
    // The one place outside FFI wrappers with `unsafe`: `GlobalAlloc` is an unsafe trait. Each
    // method forwards the caller's arguments unchanged to the system allocator.
    #![allow(unsafe_code)]
    use super::{ALLOCATIONS, BYTES};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::Ordering;

    /// Declare with `#[global_allocator] static A: Counting = Counting;` (the binary does).
    pub struct Counting;

    fn note(size: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            note(l.size());
            // SAFETY: the caller's layout, forwarded as is.
            unsafe { System.alloc(l) }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            note(l.size());
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: `p` was allocated by `System` (through this type) with layout `l`.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            note(n);
            // SAFETY: as for `dealloc`; `n` is the caller's new size.
            unsafe { System.realloc(p, l, n) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_there_only_in_a_counting_build() {
        assert_eq!(snapshot().is_some(), cfg!(feature = "count-allocs"));
    }

    #[test]
    fn since_is_the_difference() {
        let a = Allocs { count: 3, bytes: 100 };
        let b = Allocs { count: 10, bytes: 160 };
        assert_eq!(b.since(a), Allocs { count: 7, bytes: 60 });
    }
}
