//! glibc malloc settings (issue 21, the agent's peak RSS). Nothing here on musl or elsewhere: the
//! functions are no-ops there.
//!
//! glibc serves an allocation of 128 KiB or more with a mapping of its own, returned on free,
//! but raises that threshold to the size of each such block freed (up to 32 MiB): after the
//! configuration's regex compilation frees its 320 KB buffers, every buffer up to that size comes
//! from the heap instead, and a growing vector (process and connection tables, owner maps)
//! leaves each smaller copy behind as a hole the heap keeps. Setting the threshold fixes it at
//! the default. [`trim`] gives the holes left by the first cycles back.
#![allow(unsafe_code)]

/// Fixes glibc's mmap threshold at 128 KiB (its default; setting it turns the dynamic raise off).
/// Called first thing in `main`, before anything large is allocated.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only changes malloc's parameters; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns the free pages inside glibc's heap to the kernel (`malloc_trim(0)`). Called once, after
/// the first cycles have grown the tables to their size; not per cycle (it walks every free chunk).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a size and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
