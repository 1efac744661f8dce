//! `/proc/stat`: the aggregate `cpu` line, the CPU count, and the scheduler counters.

use super::cursor::{fields, lines, u64_dec, ParseError};

/// Jiffies spent in each CPU state (proc(5) order). Missing trailing columns (old kernels) are 0.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All time the CPU accounted for. `guest` is already inside `user` (and `guest_nice` inside
    /// `nice`), so it is not added again.
    pub fn total(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub cpu: CpuTimes,
    /// Number of `cpuN` lines: the CPUs online now.
    pub cpu_count: u32,
    pub context_switches: u64,
    pub boot_time: u64,
    pub processes_created: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
}

const FILE: &str = "/proc/stat";

pub fn parse(buf: &[u8]) -> Result<ProcStat, ParseError> {
    let mut out = ProcStat::default();
    let mut seen_cpu = false;
    for line in lines(buf) {
        let mut f = fields(line);
        let Some(key) = f.next() else { continue };
        match key {
            b"cpu" => {
                out.cpu = cpu_times(f)?;
                seen_cpu = true;
            }
            k if k.starts_with(b"cpu") && k.len() > 3 => {
                out.cpu_count = out.cpu_count.saturating_add(1);
            }
            b"ctxt" => out.context_switches = value(f.next())?,
            b"btime" => out.boot_time = value(f.next())?,
            b"processes" => out.processes_created = value(f.next())?,
            b"procs_running" => out.procs_running = value(f.next())?,
            b"procs_blocked" => out.procs_blocked = value(f.next())?,
            _ => {}
        }
    }
    if !seen_cpu {
        return Err(ParseError::new(FILE, "no aggregate cpu line"));
    }
    Ok(out)
}

fn value(field: Option<&[u8]>) -> Result<u64, ParseError> {
    field.and_then(u64_dec).ok_or(ParseError::new(FILE, "counter is not a number"))
}

fn cpu_times<'a>(mut f: impl Iterator<Item = &'a [u8]>) -> Result<CpuTimes, ParseError> {
    let mut cols = [0u64; 10];
    let mut n = 0;
    for (slot, field) in cols.iter_mut().zip(&mut f) {
        *slot = u64_dec(field).ok_or(ParseError::new(FILE, "cpu time is not a number"))?;
        n += 1;
    }
    // user, nice, system, idle exist on every kernel we could meet.
    if n < 4 {
        return Err(ParseError::new(FILE, "cpu line has fewer than 4 columns"));
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = cols;
    Ok(CpuTimes { user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/stat");

    #[test]
    fn parses_captured_file() {
        let s = parse(DEBIAN12).unwrap();
        assert_eq!(s.cpu.user, 975);
        assert_eq!(s.cpu.system, 1453);
        assert_eq!(s.cpu.idle, 15113);
        assert_eq!(s.cpu.steal, 404);
        assert_eq!(s.cpu_count, 2);
        assert!(s.boot_time > 1_700_000_000);
        assert!(s.context_switches > 0);
    }

    #[test]
    fn old_kernel_with_four_columns() {
        let s = parse(b"cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(s.cpu.total(), 10);
        assert_eq!(s.cpu.iowait, 0);
        assert_eq!(s.cpu_count, 1);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse(b"").is_err());
        assert!(parse(b"cpu 1 2").is_err());
        assert!(parse(b"cpu 1 x 3 4").is_err());
        assert!(parse(b"cpu 1 2 3 4\nctxt\n").is_err());
        // A counter past u64 is an error, not a wrap.
        assert!(parse(b"cpu 99999999999999999999 1 1 1\n").is_err());
    }

    #[test]
    fn total_saturates() {
        let c = CpuTimes { user: u64::MAX, idle: 5, ..Default::default() };
        assert_eq!(c.total(), u64::MAX);
    }
}
