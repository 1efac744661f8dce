//! Helpers shared by the unit tests.

use std::time::{Duration, Instant};

/// Asserts that `run`'s cost grows linearly with its input's size, not quadratically: the input
/// `make(n)` and the input `make(scale * n)` are timed in the same run, and the larger must take
/// less than `3 * scale` times as long as the smaller, where a quadratic cost takes about
/// `scale²` times (`scale` is at least 8: 24 against 64). A ratio of two times, not a fixed
/// time: it holds on a slow or loaded machine and under emulation (qemu-user,
/// `packaging/test-aarch64.sh`), where every time is longer alike. Each size is timed up to three
/// times and the best of each is compared, so that one preempted run does not decide. `make` is
/// not timed; `n` must make `run(make(n))` take a millisecond or so, so that a fixed overhead
/// does not hide the growth.
pub fn assert_linear<T>(what: &str, n: usize, scale: usize, mut make: impl FnMut(usize) -> T, mut run: impl FnMut(&T)) {
    assert!(scale >= 8, "3 × scale must stay well under scale²");
    let (small, large) = (make(n), make(n * scale));
    let mut time = |input: &T| {
        let t = Instant::now();
        run(input);
        t.elapsed()
    };
    let (mut s, mut l) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        s = s.min(time(&small));
        l = l.min(time(&large));
        if l.as_secs_f64() < 3.0 * scale as f64 * s.as_secs_f64() {
            return;
        }
    }
    panic!(
        "{what}: {scale} times the input ({} instead of {n}) took {:.1} times as long ({l:?} instead of {s:?}): \
         not linear",
        n * scale,
        l.as_secs_f64() / s.as_secs_f64()
    );
}
