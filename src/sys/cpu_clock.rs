//! Another process's CPU time, by pid, through its POSIX CPU clock: one `clock_gettime`, no
//! file, no descriptor, no kernel memory held. The clock sums the run time of every thread of the
//! process, the dead ones' included, in nanoseconds, and grows whenever any of them is on a CPU;
//! the kernel checks no permission for reading it (`posix_cpu_clock_get`). The pid is looked up
//! in the caller's pid namespace.
//!
//! The clock id is the one `clock_getcpuclockid(3)` returns, made here: glibc's and musl's add a
//! `clock_getres` call to check the pid first, a second syscall per process.

// The one `unsafe` here is the `clock_gettime` call; see the SAFETY comment.
#![allow(unsafe_code)]

/// The kernel's `CPUCLOCK_SCHED`: run time in nanoseconds (include/linux/posix-timers_types.h).
const CPUCLOCK_SCHED: i32 = 2;

/// `MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)`: the inverted pid shifted past the three low bits
/// (the clock kind, and bit 2 clear: the whole process, not one thread). Pids stay below 2^22
/// (`PID_MAX_LIMIT`), so the shift drops no bit that matters.
fn process_clock_id(pid: u32) -> libc::clockid_t {
    ((!(pid as i32)) << 3) | CPUCLOCK_SCHED
}

/// The process's CPU time so far, in nanoseconds; `None` when it does not exist (in this pid
/// namespace) or cannot be read (the clock fails with `EINVAL` for a pid without a process).
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    if pid == 0 || pid >= (1 << 22) {
        // 0 would name the caller itself; larger ones are no pid.
        return None;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable `timespec` that lives across the call; `clock_gettime`
    // writes only it, and any clock id is safe to pass (an unknown one fails with EINVAL).
    let r = unsafe { libc::clock_gettime(process_clock_id(pid), &mut ts) };
    if r != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The id is the one the C library makes (it checks it with `clock_getres` too).
    #[test]
    fn clock_id_is_the_c_librarys() {
        for pid in [1u32, std::process::id(), 4_194_303] {
            let mut id: libc::clockid_t = 0;
            // SAFETY: `id` is a valid, writable clockid_t.
            let r = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut id) };
            if r == 0 {
                assert_eq!(id, process_clock_id(pid), "pid {pid}");
            } else {
                // No such pid (glibc checks): the encoding is still the kernel's.
                assert_eq!(process_clock_id(pid) & 7, CPUCLOCK_SCHED);
            }
        }
    }

    /// A child that spins shows its time growing; once it sleeps, the clock stands still; a
    /// reaped child's pid reads `None`.
    #[test]
    fn a_spinning_child_runs_a_sleeping_one_does_not() {
        // The shell counts in its own process (no child to fork), then becomes `sleep`.
        let mut child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 30"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let t0 = process_cpu_ns(pid).expect("the child's clock");
        let deadline = Instant::now() + Duration::from_secs(20);
        let comm = format!("/proc/{pid}/comm");
        while std::fs::read_to_string(&comm).map(|c| c.trim() != "sleep").unwrap_or(true) {
            assert!(Instant::now() < deadline, "the child never exec'd sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        let t1 = process_cpu_ns(pid).unwrap();
        assert!(t1 > t0 + 10_000_000, "counting to 300,000 added {} ns", t1 - t0);
        std::thread::sleep(Duration::from_millis(100));
        let t2 = process_cpu_ns(pid).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(process_cpu_ns(pid), Some(t2), "a sleeping process's clock moved");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(process_cpu_ns(pid), None, "a reaped child");
        assert_eq!(process_cpu_ns(0), None);
    }

    /// The clock counts every thread: it grows while another thread of this process spins and
    /// this one waits for it (the spinner stops at 100 ms of the process's time; read from this
    /// thread, a clock of the calling thread only would fail the last assertion).
    #[test]
    fn other_threads_count() {
        let me = std::process::id();
        let t0 = process_cpu_ns(me).unwrap();
        let spin = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut x = 0u64;
            while process_cpu_ns(me).unwrap() < t0 + 100_000_000 {
                assert!(Instant::now() < deadline, "the process clock did not count this thread");
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
        });
        spin.join().unwrap();
        assert!(process_cpu_ns(me).unwrap() >= t0 + 100_000_000);
    }
}
