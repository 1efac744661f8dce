//! Which pids a process cycle looks at: every pid `HOST_PROC` lists, or, when the kernel's pid
//! counters say few tasks were created since the last cycle, the processes already known plus
//! the thread-group leaders among the pids allocated since.
//!
//! Listing `/proc` walks every task on the host, threads included, and looks up (or makes) a
//! dentry for each pid: under benches/budget.sh (570 processes) it was about a tenth of the
//! agent's CPU (perf: `next_tgid`, `num_to_str`, `proc_fill_cache`, `d_lookup`), more than
//! reading every process's `stat`. What a listing tells the agent that its held directories do
//! not is only which processes are new, and the kernel says where those are: it hands pids out
//! upwards from a cursor (`idr_alloc_cyclic`, wrapping at `pid_max`), and `/proc/loadavg` ends
//! with the cursor of the reader's pid namespace (the last pid allocated). So every task created
//! since the last cycle has a pid in `(last, now]`, unless the cursor wrapped or went round
//! whole. A wrap shows as a cursor that went back; going round takes at least `pid_max` pid
//! allocations in one cycle, and the fork counter (`processes` in `/proc/stat`) bounds the
//! successful ones: more than the probe takes (at most a quarter of `pid_max`), or more than the
//! cursor moved, and the cycle lists. A fork is visible to `pidfd_open` a little after it takes
//! its pid (it may wait on a cgroup migration in between): the pids of the last range that named
//! no leader are probed once more the next cycle (see [`NewPids::retry`]). Known processes that
//! ended are found by their CPU clocks and held directories, as before.
//!
//! What this does not see, until the next listing (at least every [`LISTING_EVERY_SECS`]): a
//! task given a chosen pid (`clone3` with `set_tid`, or a write to `ns_last_pid`: checkpoint and
//! restore tools) below the cursor without moving it; and, where forks fail by the thousand
//! (`pids.max` refusing a fork loop allocates and frees a pid each time, uncounted) so that the
//! cursor goes round within one cycle and lands no further than the probe reaches, the
//! processes made meanwhile (the chance of that landing is the probe's reach over `pid_max`). A listing is made instead of the probe
//! whenever the counters cannot be trusted: the first cycle, `HOST_PROC` of another pid
//! namespace than the agent's, a cursor that went backwards, more new tasks than the probe is
//! worth, or a cycle that skipped a process for want of descriptors.

/// The kernel's pid counters, read at the start of each cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// The pid allocated last in the agent's pid namespace (`/proc/loadavg`'s last field).
    pub last_pid: u32,
    /// Tasks created since boot, threads included, in every namespace (`processes`, `/proc/stat`).
    pub forks: u64,
}

/// Why a cycle lists `HOST_PROC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No counters from an earlier cycle.
    First,
    /// The counters cannot stand for `HOST_PROC`'s pids (another pid namespace, no `pidfd_open`),
    /// or could not be read this cycle.
    Unavailable,
    /// The last listing is [`LISTING_EVERY_SECS`] old.
    Due,
    /// The last cycle skipped a process that only a listing finds again.
    Relist,
    /// The cursor is below where it was: it wrapped at `pid_max`, or was set back.
    Wrapped,
    /// More new tasks than probing them one by one is worth (see [`NewPids::most_probed`]).
    Many,
}

impl Why {
    pub const COUNT: usize = 6;
    pub const ALL: [Why; Why::COUNT] = [Why::First, Why::Unavailable, Why::Due, Why::Relist, Why::Wrapped, Why::Many];

    /// Its place in [`Why::ALL`] and in [`NewPids::listings_by_reason`].
    pub fn index(self) -> usize {
        match self {
            Why::First => 0,
            Why::Unavailable => 1,
            Why::Due => 2,
            Why::Relist => 3,
            Why::Wrapped => 4,
            Why::Many => 5,
        }
    }

    /// Its name in `/status` (`process_source.listings_by_reason`).
    pub fn name(self) -> &'static str {
        match self {
            Why::First => "first",
            Why::Unavailable => "unavailable",
            Why::Due => "due",
            Why::Relist => "relist",
            Why::Wrapped => "wrapped",
            Why::Many => "many",
        }
    }
}

/// What a cycle does to find its pids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    List(Why),
    /// The known pids, and the leaders among the pids in `after + 1 ..= upto`.
    Probe {
        after: u32,
        upto: u32,
    },
}

/// A listing at least this often whatever the counters say, for tasks given a chosen pid.
pub const LISTING_EVERY_SECS: f64 = 60.0;

pub struct NewPids {
    last: Option<Counters>,
    /// The cursor of the cycle before `last` (the start of `last`'s range).
    prev_cursor: Option<u32>,
    listed_at: Option<f64>,
    /// `/proc/sys/kernel/pid_max` (0: unknown, which disables the probe).
    pub pid_max: u32,
    /// Whether the counters stand for `HOST_PROC`'s pids: set by the source (the same pid
    /// namespace) and cleared for good when `pidfd_open` is refused.
    pub usable: bool,
    /// Set by the source when a cycle skipped a process a listing would find again.
    pub relist: bool,
    /// Cycles that listed, and cycles that probed.
    pub listings: u64,
    pub probes: u64,
    /// Cycles that listed, by reason (in [`Why::ALL`]'s order).
    pub listings_by_reason: [u64; Why::COUNT],
    /// Why the last cycle listed (`None`: it probed).
    pub last_listing: Option<Why>,
    /// Pids of the last cycle's range (its most recent [`NewPids::most_probed`]) that named no
    /// leader then, probed once more: a fork takes its pid before `pidfd_open` (or a listing)
    /// can see it. Set by the source after each cycle.
    pub retry: Vec<u32>,
}

impl NewPids {
    pub fn new(pid_max: u32, usable: bool) -> NewPids {
        NewPids {
            last: None,
            prev_cursor: None,
            listed_at: None,
            pid_max,
            usable: usable && pid_max > 0,
            relist: false,
            listings: 0,
            probes: 0,
            listings_by_reason: [0; Why::COUNT],
            last_listing: None,
            // Room for a whole range (see `most_probed`): kept from cycle to cycle, never grown.
            retry: Vec::with_capacity(1024),
        }
    }

    /// The most new pids a cycle probes rather than lists: half the known processes, at least
    /// 64 and at most 1,024 (a probe is one or two syscalls a pid, a listing about as much per
    /// task on the host), and under a quarter of `pid_max`, so the cursor cannot have gone round.
    pub fn most_probed(&self, known: usize) -> u64 {
        (known as u64 / 2).clamp(64, 1024).min(u64::from(self.pid_max / 4))
    }

    /// The pids allocated in the last cycle's range, at most its [`NewPids::most_probed`] most
    /// recent ones (those whose forks may have been in flight), first and last, for the source to
    /// keep those it did not find as [`NewPids::retry`]; `None` when the range is empty, unknown
    /// or wrapped.
    pub fn last_range(&self, known: usize) -> Option<(u32, u32)> {
        match (self.prev_cursor, self.last) {
            (Some(a), Some(b)) if b.last_pid > a => {
                let most = u32::try_from(self.most_probed(known)).unwrap_or(u32::MAX);
                Some((a.saturating_add(1).max(b.last_pid.saturating_sub(most).saturating_add(1)), b.last_pid))
            }
            _ => None,
        }
    }

    /// This cycle's plan, from the counters read now (`None`: unreadable), the monotonic clock and
    /// the number of processes known. The counters become the next cycle's baseline whatever the
    /// plan: a listing finds everything up to them too.
    pub fn plan(&mut self, now: Option<Counters>, mono: f64, known: usize) -> Plan {
        let last = std::mem::replace(&mut self.last, now);
        self.prev_cursor = last.map(|c| c.last_pid);
        let relist = std::mem::take(&mut self.relist);
        let plan = match (last, now) {
            _ if !self.usable => Plan::List(Why::Unavailable),
            (_, None) => Plan::List(Why::Unavailable),
            (None, Some(_)) => Plan::List(Why::First),
            _ if self.listed_at.is_none_or(|at| mono - at >= LISTING_EVERY_SECS) => Plan::List(Why::Due),
            // Every successful fork moves the cursor at least one pid: a cursor that moved less
            // than the fork counter went round (or was set back).
            (Some(a), Some(b))
                if b.last_pid < a.last_pid
                    || b.forks < a.forks
                    || u64::from(b.last_pid - a.last_pid) < b.forks - a.forks =>
            {
                Plan::List(Why::Wrapped)
            }
            _ if relist || known == 0 => Plan::List(Why::Relist),
            (Some(a), Some(b)) => {
                let most = self.most_probed(known);
                if b.forks - a.forks > most || u64::from(b.last_pid - a.last_pid) > most {
                    Plan::List(Why::Many)
                } else {
                    Plan::Probe { after: a.last_pid, upto: b.last_pid }
                }
            }
        };
        match plan {
            Plan::List(why) => {
                self.listings += 1;
                self.count_listing(why);
                self.last_listing = Some(why);
                self.listed_at = Some(mono);
            }
            Plan::Probe { .. } => {
                self.probes += 1;
                self.last_listing = None;
            }
        }
        plan
    }

    fn count_listing(&mut self, why: Why) {
        debug_assert!(why.index() < Why::COUNT, "a reason without its place in Why::ALL");
        if let Some(n) = self.listings_by_reason.get_mut(why.index()) {
            *n += 1;
        }
    }

    /// The probe could not be made (a `pidfd_open` failed other than for a gone pid or a
    /// thread): this cycle lists after all; `refused` (no such syscall, or not permitted) ends
    /// probing for good.
    pub fn probe_failed(&mut self, mono: f64, refused: bool) {
        self.probes -= 1;
        self.listings += 1;
        self.count_listing(Why::Unavailable);
        self.last_listing = Some(Why::Unavailable);
        self.listed_at = Some(mono);
        if refused {
            self.usable = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last_pid: u32, forks: u64) -> Option<Counters> {
        Some(Counters { last_pid, forks })
    }

    /// A source past its first listing, at `mono` 0, with `c` as the baseline.
    fn primed(c: Option<Counters>) -> NewPids {
        let mut n = NewPids::new(32768, true);
        assert_eq!(n.plan(c, 0.0, 500), Plan::List(Why::First));
        n
    }

    #[test]
    fn a_quiet_host_is_probed_over_the_pids_allocated_since() {
        let mut n = primed(at(1000, 5000));
        assert_eq!(n.plan(at(1000, 5000), 1.0, 500), Plan::Probe { after: 1000, upto: 1000 });
        assert_eq!(n.plan(at(1003, 5003), 2.0, 500), Plan::Probe { after: 1000, upto: 1003 });
        // The baseline moves with every plan.
        assert_eq!(n.plan(at(1010, 5010), 3.0, 500), Plan::Probe { after: 1003, upto: 1010 });
        assert_eq!((n.listings, n.probes, n.last_listing), (1, 3, None));
    }

    #[test]
    fn listed_when_the_counters_cannot_be_trusted() {
        // Wrapped at pid_max, or set back by a write to ns_last_pid.
        let mut n = primed(at(32000, 5000));
        assert_eq!(n.plan(at(400, 5010), 1.0, 500), Plan::List(Why::Wrapped));
        // From there on the new baseline holds.
        assert_eq!(n.plan(at(405, 5015), 2.0, 500), Plan::Probe { after: 400, upto: 405 });
        // More forks than the probe is worth (here 250: half the known processes).
        assert_eq!(n.plan(at(660, 5266), 3.0, 500), Plan::List(Why::Many));
        // A cursor that moved less than the fork counter went round: each fork takes a pid.
        assert_eq!(n.plan(at(665, 5300), 4.0, 500), Plan::List(Why::Wrapped));
        assert_eq!(n.plan(at(670, 5305), 4.5, 500), Plan::Probe { after: 665, upto: 670 });
        // More pids than the probe takes (forks that failed move the cursor too).
        assert_eq!(n.plan(at(960, 5306), 5.0, 500), Plan::List(Why::Many));
        // A fork counter that went backwards is not this kernel's.
        assert_eq!(n.plan(at(961, 10), 6.0, 500), Plan::List(Why::Wrapped));
        // Unreadable counters; then they are a new baseline.
        assert_eq!(n.plan(None, 7.0, 500), Plan::List(Why::Unavailable));
        assert_eq!(n.plan(at(702, 11), 8.0, 500), Plan::List(Why::First));
        // A process skipped last cycle, or nothing known.
        n.relist = true;
        assert_eq!(n.plan(at(702, 11), 9.0, 500), Plan::List(Why::Relist));
        assert!(!n.relist);
        assert_eq!(n.plan(at(702, 11), 10.0, 0), Plan::List(Why::Relist));
        assert_eq!(n.plan(at(702, 11), 11.0, 500), Plan::Probe { after: 702, upto: 702 });
    }

    /// The pids to look at again next cycle: the last range's most recent ones, whichever way it
    /// was covered; none for a wrapped, empty or unknown one.
    #[test]
    fn the_last_range_is_its_most_recent_pids() {
        let mut n = NewPids::new(32768, true);
        n.plan(at(1000, 10), 0.0, 500);
        assert_eq!(n.last_range(500), None, "the first cycle has no range");
        n.plan(at(1005, 15), 1.0, 500);
        assert_eq!(n.last_range(500), Some((1001, 1005)));
        n.plan(at(1005, 15), 2.0, 500);
        assert_eq!(n.last_range(500), None, "nothing allocated");
        // Listed for many: only the most recent 250 (half the known processes).
        n.plan(at(2005, 1015), 3.0, 500);
        assert_eq!(n.last_range(500), Some((1756, 2005)));
        n.plan(at(100, 1020), 4.0, 500);
        assert_eq!(n.last_range(500), None, "wrapped");
    }

    #[test]
    fn listed_at_least_every_minute() {
        let mut n = primed(at(100, 100));
        assert!(matches!(n.plan(at(100, 100), LISTING_EVERY_SECS - 0.5, 500), Plan::Probe { .. }));
        assert_eq!(n.plan(at(100, 100), LISTING_EVERY_SECS, 500), Plan::List(Why::Due));
        assert!(matches!(n.plan(at(100, 100), LISTING_EVERY_SECS + 1.0, 500), Plan::Probe { .. }));
        assert_eq!(n.plan(at(100, 100), 2.0 * LISTING_EVERY_SECS, 500), Plan::List(Why::Due));
    }

    #[test]
    fn the_probe_stays_under_a_quarter_of_pid_max() {
        let n = NewPids::new(32768, true);
        assert_eq!(n.most_probed(10), 64);
        assert_eq!(n.most_probed(500), 250);
        assert_eq!(n.most_probed(100_000), 1024);
        let small = NewPids::new(1000, true);
        assert_eq!(small.most_probed(100_000), 250);
        // Unknown pid_max, or not the agent's namespace: always listed.
        let mut unknown = NewPids::new(0, true);
        assert!(!unknown.usable);
        assert_eq!(unknown.plan(at(1, 1), 0.0, 500), Plan::List(Why::Unavailable));
        assert_eq!(unknown.plan(at(1, 1), 1.0, 500), Plan::List(Why::Unavailable));
        let mut foreign = NewPids::new(32768, false);
        foreign.plan(at(1, 1), 0.0, 500);
        assert_eq!(foreign.plan(at(1, 1), 1.0, 500), Plan::List(Why::Unavailable));
    }

    #[test]
    fn a_failed_probe_lists_and_a_refused_one_ends_probing() {
        let mut n = primed(at(100, 100));
        assert!(matches!(n.plan(at(101, 101), 1.0, 500), Plan::Probe { .. }));
        n.probe_failed(1.0, false);
        assert_eq!((n.listings, n.probes, n.last_listing), (2, 0, Some(Why::Unavailable)));
        assert!(matches!(n.plan(at(102, 102), 2.0, 500), Plan::Probe { .. }));
        n.probe_failed(2.0, true);
        assert_eq!(n.plan(at(103, 103), 3.0, 500), Plan::List(Why::Unavailable));
        // First, then three unavailable (two failed probes, one refused for good).
        assert_eq!(n.listings_by_reason, [1, 3, 0, 0, 0, 0]);
    }

    /// Listings are counted by reason, in `Why::ALL`'s order, and add up to `listings`.
    #[test]
    fn listings_are_counted_by_reason() {
        assert!(Why::ALL.iter().enumerate().all(|(i, w)| w.index() == i));
        let mut n = primed(at(1000, 5000));
        assert_eq!(n.plan(at(900, 5001), 1.0, 500), Plan::List(Why::Wrapped));
        assert_eq!(n.plan(at(3000, 7000), 2.0, 500), Plan::List(Why::Many));
        n.relist = true;
        assert_eq!(n.plan(at(3001, 7001), 3.0, 500), Plan::List(Why::Relist));
        assert_eq!(n.plan(at(3002, 7002), 100.0, 500), Plan::List(Why::Due));
        assert!(matches!(n.plan(at(3003, 7003), 101.0, 500), Plan::Probe { .. }));
        assert_eq!(n.listings_by_reason, [1, 0, 1, 1, 1, 1]);
        assert_eq!(n.listings_by_reason.iter().sum::<u64>(), n.listings);
        assert_eq!(n.probes, 1);
        let names: Vec<&str> = Why::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(names, ["first", "unavailable", "due", "relist", "wrapped", "many"]);
    }
}
