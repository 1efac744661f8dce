//! DogStatsD's refusals in the log, rate-limited: the first of a reason is logged at once, then
//! at most one line per reason per minute carrying how many came since. A hostile or broken
//! sender therefore costs the log a handful of lines a minute, never a line per datagram; the
//! exact counts are in `/status` (spec/dogstatsd.md §2.7, **Ours**: rate-limit the log lines).

use std::time::{Duration, Instant};

/// At most one line per reason this often.
pub const EVERY: Duration = Duration::from_secs(60);

/// What each counter counts, as a log line says it (the order of [`DropLog::check`]'s counts).
pub const REASONS: [&str; 8] = [
    "malformed metric line(s)",
    "malformed event(s)",
    "malformed service check(s)",
    "metric(s) with a value that is not a finite number",
    "datagram(s) longer than STS_DOGSTATSD_BUFFER_SIZE (last line dropped)",
    "sample(s) of new contexts refused over STS_DOGSTATSD_MAX_CONTEXTS",
    "sample(s) whose type differs from their context's in the bucket",
    "Unix-socket datagram(s) whose sender's container could not be found",
];

#[derive(Debug, Default, Clone, Copy)]
struct Reason {
    /// The counter's value when it was last logged.
    logged: u64,
    at: Option<Instant>,
}

/// Per reason: what was logged last and when.
#[derive(Debug, Default)]
pub struct DropLog {
    reasons: [Reason; REASONS.len()],
}

impl DropLog {
    /// Compares the counters (`counts`, in [`REASONS`] order) with what was logged; for each
    /// reason that grew and was not logged in the last [`EVERY`], calls `line(reason, how many
    /// since the last line, time since the last line)`. Allocates nothing.
    pub fn check(
        &mut self,
        now: Instant,
        counts: [u64; REASONS.len()],
        line: &mut dyn FnMut(&'static str, u64, Option<Duration>),
    ) {
        for ((r, &count), what) in self.reasons.iter_mut().zip(&counts).zip(REASONS) {
            if count <= r.logged {
                continue;
            }
            let since = r.at.map(|t| now.saturating_duration_since(t));
            if since.is_some_and(|s| s < EVERY) {
                continue;
            }
            line(what, count - r.logged, since);
            *r = Reason { logged: count, at: Some(now) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(log: &mut DropLog, now: Instant, counts: [u64; 8]) -> Vec<(&'static str, u64, Option<u64>)> {
        let mut out = Vec::new();
        log.check(now, counts, &mut |what, n, since| out.push((what, n, since.map(|d| d.as_secs()))));
        out
    }

    #[test]
    fn first_at_once_then_one_line_a_minute_with_the_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut log = DropLog::default();
        assert!(lines(&mut log, t0, [0; 8]).is_empty());
        assert_eq!(lines(&mut log, t0, [3, 0, 0, 0, 0, 0, 0, 0]), [(REASONS[0], 3, None)]);
        // A flood within the minute: nothing, whatever the count.
        for i in 1..60 {
            assert!(lines(&mut log, t0 + s(i), [3 + i * 1000, 0, 0, 0, 0, 0, 0, 0]).is_empty());
        }
        // Another reason is not held back by the first one's minute.
        assert_eq!(lines(&mut log, t0 + s(59), [59_003, 2, 0, 0, 0, 0, 0, 0]), [(REASONS[1], 2, None)]);
        // The minute is over: one line with the count since the last line.
        assert_eq!(lines(&mut log, t0 + s(61), [60_003, 2, 0, 0, 0, 0, 0, 0]), [(REASONS[0], 60_000, Some(61))]);
        assert!(lines(&mut log, t0 + s(100), [60_003, 2, 0, 0, 0, 0, 0, 0]).is_empty(), "no growth, no line");
        // Quiet for long: the next one is logged at once, with the time since the last line.
        assert_eq!(lines(&mut log, t0 + s(500), [60_004, 2, 0, 0, 0, 0, 0, 0]), [(REASONS[0], 1, Some(439))]);
    }
}
