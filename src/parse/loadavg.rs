//! `/proc/loadavg` and `/proc/uptime`: a few decimals on one line.

use super::cursor::{f64_dec, fields, ParseError};

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
}
