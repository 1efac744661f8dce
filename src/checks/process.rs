//! Which processes to report and their rates, as the StackState process agent decides it
//! (spec/ecs.md §2, spec/protocol.md §4.2, §5.5):
//! - a process is reported only once seen on an earlier cycle (rates need two samples);
//! - excluded when its command line is empty or matches the blacklist (cached per process);
//! - excluded when both created and first seen less than the short-lived qualifier ago;
//! - the top-N inclusions by CPU, IO read, IO write and memory override both exclusions.

use crate::config::Inclusions;
use crate::model::process::{Proc, ProcessTable};
use regex::bytes::RegexSet;

pub struct ProcessFilter {
    pub blacklist: RegexSet,
    pub inclusions: Inclusions,
    pub short_lived_secs: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SelectionStats {
    pub total: u32,
    /// Seen on an earlier cycle, so with rates.
    pub eligible: u32,
    /// Passed the blacklist and the short-lived filter.
    pub allowed: u32,
    /// Reported because of a top-N inclusion only.
    pub included_by_usage: u32,
    pub reported: u32,
}

/// Reused storage for [`select`].
#[derive(Debug, Default)]
pub struct Selection {
    /// Indices into `ProcessTable::procs`, ascending.
    pub reported: Vec<u32>,
    pub stats: SelectionStats,
    joined: Vec<u8>,
    ranked: Vec<(f64, u32)>,
    marks: Vec<u8>,
}

const ALLOWED: u8 = 1;
const INCLUDED: u8 = 2;

/// CPU percentages `(total, user, system)` in top's units (100 = one core), by the process
/// agent's formula: process delta ÷ host delta × 100, capped at 100, × CPU count.
pub fn cpu_pct(p: &Proc, t: &ProcessTable) -> Option<(f32, f32, f32)> {
    let prev = p.prev?;
    if t.host_cpu_delta == 0 {
        return Some((0.0, 0.0, 0.0));
    }
    let scale = |d: u64| ((d as f64 / t.host_cpu_delta as f64 * 100.0).min(100.0) * f64::from(t.cpu_count)) as f32;
    let user = p.cur.utime.saturating_sub(prev.utime);
    let sys = p.cur.stime.saturating_sub(prev.stime);
    Some((scale(user + sys), scale(user), scale(sys)))
}

/// IO rates `[read ops/s, write ops/s, read B/s, write B/s]`; -1 each when `io` is unreadable.
pub fn io_rates(p: &Proc, t: &ProcessTable) -> [f32; 4] {
    let dt = t.prev_mono_secs.map_or(0.0, |prev| t.mono_secs - prev);
    match (p.prev.and_then(|s| s.io), p.cur.io) {
        (Some(a), Some(b)) if dt > 0.0 => [
            (b.syscr.saturating_sub(a.syscr) as f64 / dt) as f32,
            (b.syscw.saturating_sub(a.syscw) as f64 / dt) as f32,
            (b.read_bytes.saturating_sub(a.read_bytes) as f64 / dt) as f32,
            (b.write_bytes.saturating_sub(a.write_bytes) as f64 / dt) as f32,
        ],
        (_, None) => [-1.0; 4],
        _ => [0.0; 4],
    }
}

pub fn rss_bytes(p: &Proc, t: &ProcessTable) -> u64 {
    p.cur.statm.resident.saturating_mul(t.page_size)
}

/// Fills `sel.reported` for this cycle.
pub fn select(t: &mut ProcessTable, f: &ProcessFilter, sel: &mut Selection) {
    sel.reported.clear();
    sel.marks.clear();
    sel.marks.resize(t.procs.len(), 0);
    let mut stats = SelectionStats { total: t.procs.len() as u32, ..Default::default() };
    let now_ms = t.unix_ms;
    let q = f.short_lived_secs as f64;

    for (i, p) in t.procs.iter_mut().enumerate() {
        if p.blacklisted.is_none() {
            let args = p.args_raw();
            let listed = if args.is_empty() {
                true
            } else {
                sel.joined.clear();
                sel.joined.extend(args.iter().map(|&b| if b == 0 { b' ' } else { b }));
                f.blacklist.is_match(&sel.joined)
            };
            p.blacklisted = Some(listed);
        }
        if p.prev.is_none() {
            continue;
        }
        stats.eligible += 1;
        let young_seen = t.mono_secs - p.first_seen_mono < q;
        let young_created = (now_ms - p.create_time_ms) as f64 / 1000.0 < q;
        let short_lived = q > 0.0 && young_seen && young_created;
        if p.blacklisted == Some(false) && !short_lived {
            sel.marks[i] |= ALLOWED;
            stats.allowed += 1;
        }
    }

    let inc = f.inclusions;
    let t_ro: &ProcessTable = t;
    if inc.top_cpu > 0 {
        let host_cpu: f64 = t_ro.procs.iter().filter_map(|p| cpu_pct(p, t_ro)).map(|c| f64::from(c.0)).sum();
        if host_cpu >= inc.cpu_threshold as f64 {
            mark_top(sel, t_ro, inc.top_cpu, |p| cpu_pct(p, t_ro).map(|c| f64::from(c.0)));
        }
    }
    if inc.top_io_read > 0 {
        mark_top(sel, t_ro, inc.top_io_read, |p| p.prev.map(|_| f64::from(io_rates(p, t_ro)[0])));
    }
    if inc.top_io_write > 0 {
        mark_top(sel, t_ro, inc.top_io_write, |p| p.prev.map(|_| f64::from(io_rates(p, t_ro)[1])));
    }
    if inc.top_mem > 0 && t_ro.mem_total_kib > 0 {
        let used_pct =
            t_ro.mem_total_kib.saturating_sub(t_ro.mem_available_kib) as f64 * 100.0 / t_ro.mem_total_kib as f64;
        if used_pct >= inc.mem_threshold as f64 {
            mark_top(sel, t_ro, inc.top_mem, |p| p.prev.map(|_| rss_bytes(p, t_ro) as f64));
        }
    }

    for (i, m) in sel.marks.iter().enumerate() {
        if *m != 0 {
            sel.reported.push(i as u32);
            if *m == INCLUDED {
                stats.included_by_usage += 1;
            }
        }
    }
    stats.reported = sel.reported.len() as u32;
    sel.stats = stats;
}

/// Marks the `n` processes with the highest `score` (processes without one are skipped).
fn mark_top(sel: &mut Selection, t: &ProcessTable, n: u32, score: impl Fn(&Proc) -> Option<f64>) {
    sel.ranked.clear();
    sel.ranked.extend(t.procs.iter().enumerate().filter_map(|(i, p)| Some((score(p)?, i as u32))));
    sel.ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    for &(_, i) in sel.ranked.iter().take(n as usize) {
        if let Some(m) = sel.marks.get_mut(i as usize) {
            *m |= INCLUDED;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::process::{Proc, ProcSample};
    use crate::parse::pid::{PidIo, PidStatm};

    fn proc(pid: u32, args: &[u8], cpu_ticks: u64, rss_pages: u64, seen_before: bool, age_s: f64) -> Proc {
        let dir =
            rustix::fs::openat(rustix::fs::CWD, "/proc/self", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty())
                .unwrap();
        let mut p = Proc::new(pid, 1, 1_000_000 - (age_s * 1000.0) as i64, dir, 100.0 - age_s);
        p.set_text(args, b"", b"", &mut crate::model::process::SpareTexts::default());
        let io = Some(PidIo { syscr: 10, syscw: 0, read_bytes: 0, write_bytes: 0 });
        p.cur = ProcSample {
            utime: cpu_ticks,
            statm: PidStatm { resident: rss_pages, ..Default::default() },
            io,
            ..Default::default()
        };
        if seen_before {
            p.prev = Some(ProcSample { io: Some(PidIo::default()), ..Default::default() });
        }
        p
    }

    fn table(procs: Vec<Proc>) -> ProcessTable {
        ProcessTable {
            procs,
            mono_secs: 100.0,
            prev_mono_secs: Some(90.0),
            unix_ms: 1_000_000,
            host_cpu_delta: 1000,
            cpu_count: 2,
            mem_total_kib: 1000,
            mem_available_kib: 400,
            page_size: 4096,
            clk_tck: 100,
            ..Default::default()
        }
    }

    fn filter(top_cpu: u32, cpu_threshold: u64, top_mem: u32, mem_threshold: u64) -> ProcessFilter {
        ProcessFilter {
            blacklist: RegexSet::new([r"^bash", r"^/usr/sbin/"]).unwrap(),
            inclusions: Inclusions { top_cpu, cpu_threshold, top_mem, mem_threshold, ..Default::default() },
            short_lived_secs: 60,
        }
    }

    fn reported(t: &ProcessTable, sel: &Selection) -> Vec<u32> {
        sel.reported.iter().map(|&i| t.procs[i as usize].pid).collect()
    }

    #[test]
    fn blacklist_short_lived_and_priming() {
        let mut t = table(vec![
            proc(1, b"java\0-jar\0app.jar", 10, 100, true, 3600.0),
            proc(2, b"bash\0-c\0loop", 900, 10, true, 3600.0),
            proc(3, b"", 0, 0, true, 3600.0),
            proc(4, b"python3\0new.py", 5, 10, true, 5.0),
            proc(5, b"nginx", 5, 10, false, 3600.0),
        ]);
        let mut sel = Selection::default();
        select(&mut t, &filter(0, 0, 0, 0), &mut sel);
        // 2 blacklisted, 3 has no command line, 4 is short-lived, 5 was not seen before.
        assert_eq!(reported(&t, &sel), [1]);
        assert_eq!(sel.stats, SelectionStats { total: 5, eligible: 4, allowed: 1, included_by_usage: 0, reported: 1 });
        assert_eq!(t.procs[1].blacklisted, Some(true));
        // CPU: 900 of 1000 host ticks on 2 CPUs = 180 in top's units (100 = one core).
        assert_eq!(cpu_pct(&t.procs[1], &t).unwrap().0, 180.0);
        assert_eq!(io_rates(&t.procs[0], &t), [1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn inclusions_override_exclusions_and_thresholds_gate_them() {
        let mk = || {
            table(vec![
                proc(1, b"java", 10, 100, true, 3600.0),
                proc(2, b"bash\0busy", 900, 10, true, 3600.0),
                proc(3, b"/usr/sbin/bigmem", 0, 5000, true, 5.0),
            ])
        };
        let mut sel = Selection::default();
        let mut t = mk();
        select(&mut t, &filter(1, 0, 1, 0), &mut sel);
        assert_eq!(reported(&t, &sel), [1, 2, 3]);
        assert_eq!(sel.stats.included_by_usage, 2);
        // Host CPU is 182 %: a threshold of 200 turns the top-CPU list off.
        let mut t = mk();
        select(&mut t, &filter(1, 200, 0, 0), &mut sel);
        assert_eq!(reported(&t, &sel), [1]);
        // Host memory used is 60 %: a threshold of 50 keeps the top-memory list, 70 drops it.
        let mut t = mk();
        select(&mut t, &filter(0, 0, 1, 50), &mut sel);
        assert_eq!(reported(&t, &sel), [1, 3]);
        let mut t = mk();
        select(&mut t, &filter(0, 0, 1, 70), &mut sel);
        assert_eq!(reported(&t, &sel), [1]);
    }
}
