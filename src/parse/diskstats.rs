//! `/proc/diskstats`: per block device I/O counters (Documentation/admin-guide/iostats.rst).

use super::cursor::{fields, lines, u64_dec, Lines, ParseError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_flight: u64,
    pub io_ms: u64,
    pub weighted_io_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat<'a> {
    pub major: u32,
    pub minor: u32,
    pub name: &'a [u8],
    pub counters: DiskCounters,
}

const FILE: &str = "/proc/diskstats";

pub fn iter(buf: &[u8]) -> DiskStatsIter<'_> {
    DiskStatsIter { lines: lines(buf) }
}

pub struct DiskStatsIter<'a> {
    lines: Lines<'a>,
}

impl<'a> Iterator for DiskStatsIter<'a> {
    type Item = Result<DiskStat<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Some(parse_line(line));
        }
    }
}

fn parse_line(line: &[u8]) -> Result<DiskStat<'_>, ParseError> {
    let bad = ParseError::new(FILE, "malformed device line");
    let mut f = fields(line);
    let major = f.next().and_then(u64_dec).and_then(|v| u32::try_from(v).ok()).ok_or(bad)?;
    let minor = f.next().and_then(u64_dec).and_then(|v| u32::try_from(v).ok()).ok_or(bad)?;
    let name = f.next().ok_or(bad)?;
    // 11 counters since 2.6; 4.18 added discards and 5.5 flushes, which we do not need.
    let mut c = [0u64; 11];
    for slot in c.iter_mut() {
        *slot = f.next().and_then(u64_dec).ok_or(bad)?;
    }
    Ok(DiskStat {
        major,
        minor,
        name,
        counters: DiskCounters {
            reads: c[0],
            reads_merged: c[1],
            sectors_read: c[2],
            read_ms: c[3],
            writes: c[4],
            writes_merged: c[5],
            sectors_written: c[6],
            write_ms: c[7],
            in_flight: c[8],
            io_ms: c[9],
            weighted_io_ms: c[10],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/diskstats");

    #[test]
    fn parses_captured_file() {
        let disks: Vec<_> = iter(DEBIAN12).collect::<Result<_, _>>().unwrap();
        assert!(disks.iter().any(|d| d.name == b"vda" && d.major == 254));
        assert!(disks.iter().any(|d| d.name == b"loop0" && d.major == 7));
    }

    #[test]
    fn old_and_new_column_counts() {
        let old = b"   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n";
        let d = iter(old).next().unwrap().unwrap();
        assert_eq!(d.counters.weighted_io_ms, 11);
        let new = b"   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n";
        assert_eq!(iter(new).next().unwrap().unwrap().counters.reads, 1);
        assert!(iter(b"8 0 sda 1 2 3\n").next().unwrap().is_err());
        assert!(iter(b"8 99999999999 sda 1 2 3 4 5 6 7 8 9 10 11\n").next().unwrap().is_err());
    }
}
