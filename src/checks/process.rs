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
