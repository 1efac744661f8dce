//! `/proc/loadavg` and `/proc/uptime`: a few decimals on one line.

use super::cursor::{f64_dec, fields, u64_dec, ParseError};

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

pub fn parse_loadavg(buf: &[u8]) -> Result<LoadAvg, ParseError> {
    const FILE: &str = "/proc/loadavg";
    let mut f = fields(buf.strip_suffix(b"\n").unwrap_or(buf));
    let mut next = || f.next().and_then(f64_dec).ok_or(ParseError::new(FILE, "expected three load averages"));
    Ok(LoadAvg { one: next()?, five: next()?, fifteen: next()? })
}

/// The pid most recently allocated in the reader's pid namespace: the last field of
/// `/proc/loadavg` (the namespace's pid cursor less one: the kernel hands pids out upwards from
/// there, wrapping at `pid_max`; see `sources::new_pids`).
pub fn parse_last_pid(buf: &[u8]) -> Result<u32, ParseError> {
    fields(buf.strip_suffix(b"\n").unwrap_or(buf))
        .nth(4)
        .and_then(u64_dec)
        .and_then(|p| u32::try_from(p).ok())
        .ok_or(ParseError::new("/proc/loadavg", "expected the last pid as the fifth field"))
}

/// Seconds since boot (the first number of `/proc/uptime`).
pub fn parse_uptime(buf: &[u8]) -> Result<f64, ParseError> {
    fields(buf.strip_suffix(b"\n").unwrap_or(buf))
        .next()
        .and_then(f64_dec)
        .ok_or(ParseError::new("/proc/uptime", "expected seconds since boot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_files() {
        let l = parse_loadavg(include_bytes!("../../tests/fixtures/proc/debian12-6.18/loadavg")).unwrap();
        assert!(l.one >= 0.0 && l.five >= 0.0 && l.fifteen >= 0.0);
        let u = parse_uptime(include_bytes!("../../tests/fixtures/proc/debian12-6.18/uptime")).unwrap();
        assert!(u > 0.0);
    }

    #[test]
    fn exact_values_and_errors() {
        let l = parse_loadavg(b"0.52 1.05 2.50 1/123 4567\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.52, 1.05, 2.5));
        assert_eq!(parse_uptime(b"350735.47 234388.90\n").unwrap(), 350735.47);
        assert!(parse_loadavg(b"0.52 1.05").is_err());
        assert!(parse_loadavg(b"").is_err());
        assert!(parse_uptime(b"abc").is_err());
        assert!(parse_uptime(b"").is_err());
    }

    #[test]
    fn the_last_pid() {
        assert_eq!(parse_last_pid(b"0.52 1.05 2.50 1/123 4567\n").unwrap(), 4567);
        assert_eq!(parse_last_pid(b"0.00 0.00 0.00 1/1 4194304").unwrap(), 4_194_304);
        let captured = include_bytes!("../../tests/fixtures/proc/debian12-6.18/loadavg");
        assert!(parse_last_pid(captured).unwrap() > 0);
        for bad in [
            &b"0.52 1.05 2.50 1/123\n"[..],
            b"0.52 1.05 2.50 1/123 -4",
            b"0.52 1.05 2.50 1/123 x",
            b"0 0 0 1/1 99999999999",
            b"",
        ] {
            assert!(parse_last_pid(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
