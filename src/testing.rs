//! Helpers shared by the unit tests.

use std::time::{Duration, Instant};

/// Asserts that `run`'s cost grows linearly with its input's size, not quadratically: the input
/// `make(n)` and the input `make(scale * n)` are timed in the same run, and the larger must take
/// less than `3 * scale` times as long as the smaller, where a quadratic cost takes about
/// `scale²` times (`scale` is at least 8: 24 against 64). A ratio of two times, not a fixed
/// time: it holds on a slow or loaded machine and under emulation (qemu-user,
/// `packaging/test-aarch64.sh`), where every time is longer alike.
///
/// `n` is doubled (at most four times: 16 × n) until the small input takes a millisecond (the
/// best of two runs), so that a fixed overhead does not hide the growth on a fast machine; a
/// smaller time is kept if the input stops there. Then each input runs once untimed (caches, lazy
/// growth), and the two are timed in turn, small then large, for up to five rounds: each side's
/// best is taken, so both see the same load over the rounds, and from the second round on the
/// assertion passes as soon as the best times are within the bound. `make` is not timed.
pub fn assert_linear<T>(what: &str, n: usize, scale: usize, mut make: impl FnMut(usize) -> T, mut run: impl FnMut(&T)) {
    assert!(scale >= 8, "3 × scale must stay well under scale²");
    // One at a time: the test harness runs the callers in parallel threads, and two of them timing
    // their large inputs at once on a small machine would skew each other's ratios.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _timing = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut time = |input: &T| {
        let t = Instant::now();
        run(input);
        t.elapsed()
    };
    let mut n = n;
    let mut small = make(n);
    for _ in 0..4 {
        if time(&small).min(time(&small)) >= Duration::from_millis(1) {
            break;
        }
        n *= 2;
        small = make(n);
    }
    let large = make(n * scale);
    time(&small);
    time(&large);
    let (mut s, mut l) = (Duration::MAX, Duration::MAX);
    for round in 0..5 {
        s = s.min(time(&small));
        l = l.min(time(&large));
        if round >= 1 && l.as_secs_f64() < 3.0 * scale as f64 * s.as_secs_f64() {
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

#[cfg(test)]
mod tests {
    use super::assert_linear;

    /// The assertion can fail: a quadratic cost is caught, a linear one passes.
    #[test]
    #[cfg_attr(
        qemu_user,
        ignore = "under qemu-user this self-test let a quadratic cost pass as linear in two runs in a row (at scale 8 and 16, 2026-12-03): the emulator's timing of the small input is not trustworthy; it runs natively in every CI run"
    )]
    fn a_quadratic_cost_is_caught_and_a_linear_one_passes() {
        let linear = |v: &Vec<u64>| {
            std::hint::black_box(v.iter().fold(0u64, |a, x| a.wrapping_add(*x)));
        };
        assert_linear("a sum", 1_000, 8, |n| (0..n as u64).collect::<Vec<_>>(), linear);
        let quadratic = |v: &Vec<u64>| {
            let mut a = 0u64;
            for x in v {
                for y in v {
                    a = a.wrapping_add(x ^ y);
                }
            }
            std::hint::black_box(a);
        };
        // Scale 16: a quadratic cost is 256 times against a bound of 48. At scale 8 (64 against
        // 24) this self-test passed a quadratic cost once in CI's aarch64 run under qemu-user,
        // where the unoptimised small input's time is mostly emulation overhead.
        let caught = std::panic::catch_unwind(|| {
            assert_linear("pairs", 100, 16, |n| (0..n as u64).collect::<Vec<_>>(), quadratic);
        });
        assert!(caught.is_err(), "a quadratic cost passed as linear");
    }
}
