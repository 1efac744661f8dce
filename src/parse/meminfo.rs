//! `/proc/meminfo`: the fields the memory check needs, in KiB.

use super::cursor::{fields, lines, split_key, u64_dec, ParseError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    /// `MemAvailable` appeared in Linux 3.14; `None` before.
    pub available: Option<u64>,
    pub buffers: u64,
    pub cached: u64,
    pub swap_cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub shmem: u64,
    pub slab: u64,
    pub sreclaimable: u64,
    pub page_tables: u64,
    pub commit_limit: u64,
    pub committed_as: u64,
}

const FILE: &str = "/proc/meminfo";

pub fn parse(buf: &[u8]) -> Result<MemInfo, ParseError> {
    let mut m = MemInfo::default();
    let mut seen_total = false;
    for line in lines(buf) {
        let Some((key, rest)) = split_key(line) else { continue };
        let slot: &mut u64 = match key {
            b"MemTotal" => {
                seen_total = true;
                &mut m.total
            }
            b"MemFree" => &mut m.free,
            b"MemAvailable" => m.available.insert(0),
            b"Buffers" => &mut m.buffers,
            b"Cached" => &mut m.cached,
            b"SwapCached" => &mut m.swap_cached,
            b"SwapTotal" => &mut m.swap_total,
            b"SwapFree" => &mut m.swap_free,
            b"Shmem" => &mut m.shmem,
            b"Slab" => &mut m.slab,
            b"SReclaimable" => &mut m.sreclaimable,
            b"PageTables" => &mut m.page_tables,
            b"CommitLimit" => &mut m.commit_limit,
            b"Committed_AS" => &mut m.committed_as,
            _ => continue,
        };
        *slot = fields(rest).next().and_then(u64_dec).ok_or(ParseError::new(FILE, "value is not a number"))?;
    }
    if !seen_total {
        return Err(ParseError::new(FILE, "no MemTotal line"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/meminfo");

    #[test]
    fn parses_captured_file() {
        let m = parse(DEBIAN12).unwrap();
        assert_eq!(m.total, 24684092);
        assert_eq!(m.free, 24051436);
        assert_eq!(m.available, Some(24306352));
        assert_eq!(m.buffers, 12372);
        assert_eq!(m.cached, 442480);
        assert_eq!(m.slab, 46352);
        assert_eq!(m.committed_as, 133892);
        assert_eq!(m.swap_total, 0);
    }

    #[test]
    fn pre_3_14_kernel_has_no_available() {
        let m = parse(b"MemTotal: 100 kB\nMemFree: 10 kB\n").unwrap();
        assert_eq!(m.available, None);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(b"").is_err());
        assert!(parse(b"MemTotal: kB\n").is_err());
        assert!(parse(b"MemTotal: 1 kB\nMemFree: -1 kB\n").is_err());
    }
}
