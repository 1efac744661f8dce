//! `/proc/net/dev`: per-interface byte, packet, error and drop counters.

use super::cursor::{fields, lines, u64_dec, Lines, ParseError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetDevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDev<'a> {
    pub name: &'a [u8],
    pub counters: NetDevCounters,
}

const FILE: &str = "/proc/net/dev";

/// Iterates over the interface lines; the two header lines (they have `|`) are skipped.
pub fn iter(buf: &[u8]) -> NetDevIter<'_> {
    NetDevIter { lines: lines(buf) }
}

pub struct NetDevIter<'a> {
    lines: Lines<'a>,
}

impl<'a> Iterator for NetDevIter<'a> {
    type Item = Result<NetDev<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            if line.contains(&b'|') || line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Some(parse_line(line));
        }
    }
}

fn parse_line(line: &[u8]) -> Result<NetDev<'_>, ParseError> {
    // Old kernels print `eth0:123` with no space once the byte count is wide, so split on the
    // last colon (interface names may contain colons for aliases, e.g. `eth0:1`).
    let colon = memchr::memrchr(b':', line).ok_or(ParseError::new(FILE, "no colon after name"))?;
    let (name, rest) = line.split_at(colon);
    let name = fields(name).next().ok_or(ParseError::new(FILE, "empty interface name"))?;
    let mut cols = [0u64; 16];
    let mut n = 0;
    for (slot, f) in cols.iter_mut().zip(fields(rest.get(1..).unwrap_or(&[]))) {
        *slot = u64_dec(f).ok_or(ParseError::new(FILE, "counter is not a number"))?;
        n += 1;
    }
    if n < 16 {
        return Err(ParseError::new(FILE, "fewer than 16 counters"));
    }
    Ok(NetDev {
        name,
        counters: NetDevCounters {
            rx_bytes: cols[0],
            rx_packets: cols[1],
            rx_errs: cols[2],
            rx_drop: cols[3],
            tx_bytes: cols[8],
            tx_packets: cols[9],
            tx_errs: cols[10],
            tx_drop: cols[11],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/net/dev");

    #[test]
    fn parses_captured_file() {
        let devs: Vec<_> = iter(DEBIAN12).collect::<Result<_, _>>().unwrap();
        let names: Vec<&[u8]> = devs.iter().map(|d| d.name).collect();
        assert!(names.contains(&&b"lo"[..]));
        assert!(names.contains(&&b"eth0"[..]));
        let lo = devs.iter().find(|d| d.name == b"lo").unwrap();
        assert_eq!(lo.counters.rx_bytes, lo.counters.tx_bytes);
    }

    #[test]
    fn wide_counter_without_space_and_alias_names() {
        let buf = b"h|\nh|\neth0:1:12345678901 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n";
        let d = iter(buf).next().unwrap().unwrap();
        assert_eq!(d.name, b"eth0:1");
        assert_eq!(d.counters.rx_bytes, 12345678901);
        assert_eq!(d.counters.tx_drop, 8);
    }

    #[test]
    fn truncated_line_is_an_error_not_a_panic() {
        let mut it = iter(b"eth0: 1 2 3\n");
        assert!(it.next().unwrap().is_err());
        assert!(iter(b"eth0 1 2 3\n").next().unwrap().is_err());
        assert!(iter(b":").next().unwrap().is_err());
    }
}
