//! DogStatsD's refusals in the log, rate-limited: the first of a reason is logged at once, then
//! at most one line per reason per minute carrying how many came since. A hostile or broken
//! sender therefore costs the log a handful of lines a minute, never a line per datagram; the
//! exact counts are in `/status` (spec/dogstatsd.md §2.7, **Ours**: rate-limit the log lines).

use std::time::{Duration, Instant};

/// At most one line per reason this often (`STS_DOGSTATSD_DROP_LOG_SECS` changes it, for tests).
pub const EVERY: Duration = Duration::from_secs(60);

/// What each counter counts, as a log line says it (the order of [`DropLog::check`]'s counts).
pub const REASONS: [&str; 12] = [
    "malformed metric line(s)",
    "malformed event(s)",
    "malformed service check(s)",
    "metric(s) with a value that is not a finite number",
    "datagram(s) longer than STS_DOGSTATSD_BUFFER_SIZE (last line dropped)",
    "sample(s) of new contexts refused over STS_DOGSTATSD_MAX_CONTEXTS",
    "sample(s) whose type differs from their context's in the bucket",
    "Unix-socket datagram(s) whose sender's container could not be found",
    "sample(s) whose context key (name and tags) is longer than 2 KiB",
    "sample(s) with an invalid sample rate",
    "datagram(s) dropped by the kernel for want of receive buffer (STS_DOGSTATSD_SO_RCVBUF)",
    "event(s) refused over the 4 MiB pending between two flushes",
];

#[derive(Debug, Default, Clone, Copy)]
struct Reason {
    /// The counter's value when it was last logged.
    logged: u64,
    at: Option<Instant>,
}

/// Per reason: what was logged last and when.
#[derive(Debug)]
pub struct DropLog {
    reasons: [Reason; REASONS.len()],
    every: Duration,
}

impl Default for DropLog {
    fn default() -> Self {
        Self::every(EVERY)
    }
}

impl DropLog {
    /// At most one line per reason each `every`.
    pub fn every(every: Duration) -> Self {
        Self { reasons: [Reason::default(); REASONS.len()], every }
    }

    /// Compares the counters (`counts`, in [`REASONS`] order) with what was logged; for each
    /// reason that grew and was not logged in the last period ([`EVERY`]), calls `line(reason, how many
    /// since the last line, time since the last line)`. Allocates nothing.
    pub fn check(
        &mut self,
        now: Instant,
        counts: [u64; REASONS.len()],
        line: &mut dyn FnMut(&'static str, u64, Option<Duration>),
    ) {
        self.lines(now, counts, self.every, line);
    }

    /// At a stop: what grew since the last lines is logged, whenever those were.
    pub fn at_stop(
        &mut self,
        now: Instant,
        counts: [u64; REASONS.len()],
        line: &mut dyn FnMut(&'static str, u64, Option<Duration>),
    ) {
        self.lines(now, counts, Duration::ZERO, line);
    }

    fn lines(
        &mut self,
        now: Instant,
        counts: [u64; REASONS.len()],
        every: Duration,
        line: &mut dyn FnMut(&'static str, u64, Option<Duration>),
    ) {
        for ((r, &count), what) in self.reasons.iter_mut().zip(&counts).zip(REASONS) {
            if count <= r.logged {
                continue;
            }
            let since = r.at.map(|t| now.saturating_duration_since(t));
            if since.is_some_and(|s| s < every) {
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

    fn lines(log: &mut DropLog, now: Instant, first: [u64; 2]) -> Vec<(&'static str, u64, Option<u64>)> {
        let mut counts = [0; REASONS.len()];
        counts[..2].copy_from_slice(&first);
        lines_all(log, now, counts)
    }

    fn lines_all(
        log: &mut DropLog,
        now: Instant,
        counts: [u64; REASONS.len()],
    ) -> Vec<(&'static str, u64, Option<u64>)> {
        let mut out = Vec::new();
        log.check(now, counts, &mut |what, n, since| out.push((what, n, since.map(|d| d.as_secs()))));
        out
    }

    #[test]
    fn first_at_once_then_one_line_a_minute_with_the_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut log = DropLog::default();
        assert!(lines(&mut log, t0, [0; 2]).is_empty());
        assert_eq!(lines(&mut log, t0, [3, 0]), [(REASONS[0], 3, None)]);
        // A flood within the minute: nothing, whatever the count.
        for i in 1..60 {
            assert!(lines(&mut log, t0 + s(i), [3 + i * 1000, 0]).is_empty());
        }
        // Another reason is not held back by the first one's minute.
        assert_eq!(lines(&mut log, t0 + s(59), [59_003, 2]), [(REASONS[1], 2, None)]);
        // The minute is over: one line with the count since the last line.
        assert_eq!(lines(&mut log, t0 + s(61), [60_003, 2]), [(REASONS[0], 60_000, Some(61))]);
        assert!(lines(&mut log, t0 + s(100), [60_003, 2]).is_empty(), "no growth, no line");
        // Quiet for long: the next one is logged at once, with the time since the last line.
        assert_eq!(lines(&mut log, t0 + s(500), [60_004, 2]), [(REASONS[0], 1, Some(439))]);
    }

    #[test]
    fn a_shorter_period_and_every_reason() {
        let t0 = Instant::now();
        let mut log = DropLog::every(Duration::from_secs(5));
        let all = [1; REASONS.len()];
        assert_eq!(lines_all(&mut log, t0, all).len(), REASONS.len(), "each reason has its line");
        assert!(lines_all(&mut log, t0 + Duration::from_secs(4), [2; REASONS.len()]).is_empty());
        let later = lines_all(&mut log, t0 + Duration::from_secs(5), [2; REASONS.len()]);
        assert_eq!(later.len(), REASONS.len());
        assert!(later.iter().all(|&(_, n, since)| n == 1 && since == Some(5)), "{later:?}");
        // At a stop, what grew is logged without waiting for the period.
        let mut counts = [2; REASONS.len()];
        counts[3] = 9;
        let mut out = Vec::new();
        log.at_stop(t0 + Duration::from_secs(6), counts, &mut |what, n, _| out.push((what, n)));
        assert_eq!(out, [(REASONS[3], 7)]);
    }
}
