//! Byte-level helpers shared by every parser: line and field splitting and integer/decimal
//! parsing over borrowed `&[u8]`. Nothing here allocates or panics.

/// Iterates over the lines of `buf` (without the trailing `\n`); a final unterminated line counts.
pub fn lines(buf: &[u8]) -> Lines<'_> {
    Lines { rest: buf }
}

pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        match memchr::memchr(b'\n', self.rest) {
            Some(i) => {
                let (line, rest) = self.rest.split_at(i);
                self.rest = rest.get(1..).unwrap_or(&[]);
                Some(line)
            }
            None => {
                let line = self.rest;
                self.rest = &[];
                Some(line)
            }
        }
    }
}

/// Iterates over the fields of a line separated by runs of ASCII spaces or tabs.
pub fn fields(line: &[u8]) -> Fields<'_> {
    Fields { rest: line }
}

#[derive(Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| !is_blank(b))?;
        let tail = self.rest.get(start..).unwrap_or(&[]);
        let len = tail.iter().position(|&b| is_blank(b)).unwrap_or(tail.len());
        let (field, rest) = tail.split_at(len);
        self.rest = rest;
        Some(field)
    }
}

/// Parses an unsigned decimal integer. `None` on an empty field, a non-digit or overflow.
pub fn u64_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// Parses a signed decimal integer (procfs prints `-1` for some SNMP counters).
pub fn i64_dec(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => {
            let v = u64_dec(rest)?;
            if v <= i64::MAX as u64 + 1 {
                Some((v as i128).wrapping_neg() as i64)
            } else {
                None
            }
        }
        _ => i64::try_from(u64_dec(s)?).ok(),
    }
}

/// Parses a plain non-negative decimal such as `0.52` or `12345.67` (the forms of
/// `/proc/loadavg` and `/proc/uptime`). No exponent, no sign.
pub fn f64_dec(s: &[u8]) -> Option<f64> {
    let (int, frac) = match memchr::memchr(b'.', s) {
        Some(i) => (s.get(..i)?, s.get(i + 1..)?),
        None => (s, &[][..]),
    };
    let whole = u64_dec(int)? as f64;
    if frac.is_empty() {
        return Some(whole);
    }
    // Only the first 18 fraction digits matter for an f64; keep them all as digits anyway.
    let mut num: u64 = 0;
    let mut scale = 1.0f64;
    for &b in frac {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        if scale < 1e18 {
            num = num * 10 + u64::from(d);
            scale *= 10.0;
        }
    }
    Some(whole + num as f64 / scale)
}

/// Splits `key: value` style lines (`/proc/meminfo`) at the first colon.
pub fn split_key(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b':', line)?;
    Some((line.get(..i)?, line.get(i + 1..)?))
}

/// A parse failure: which file and what was wrong, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    pub file: &'static str,
    pub what: &'static str,
}

impl ParseError {
    pub const fn new(file: &'static str, what: &'static str) -> Self {
        ParseError { file, what }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.what)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_last_unterminated_line() {
        let v: Vec<&[u8]> = lines(b"a\nbb\n\nc").collect();
        assert_eq!(v, vec![&b"a"[..], b"bb", b"", b"c"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").collect::<Vec<_>>(), vec![&b""[..]]);
    }

    #[test]
    fn fields_split_on_runs_of_blanks() {
        let v: Vec<&[u8]> = fields(b"  cpu  1\t 2 3  ").collect();
        assert_eq!(v, vec![&b"cpu"[..], b"1", b"2", b"3"]);
        assert_eq!(fields(b"   ").count(), 0);
    }

    #[test]
    fn integers() {
        assert_eq!(u64_dec(b"0"), Some(0));
        assert_eq!(u64_dec(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(u64_dec(b"18446744073709551616"), None);
        assert_eq!(u64_dec(b""), None);
        assert_eq!(u64_dec(b"1a"), None);
        assert_eq!(i64_dec(b"-1"), Some(-1));
        assert_eq!(i64_dec(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(i64_dec(b"9223372036854775808"), None);
        assert_eq!(i64_dec(b"-"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(f64_dec(b"0.52"), Some(0.52));
        assert_eq!(f64_dec(b"12345.67"), Some(12345.67));
        assert_eq!(f64_dec(b"7"), Some(7.0));
        assert_eq!(f64_dec(b"7."), Some(7.0));
        assert_eq!(f64_dec(b".5"), None);
        assert_eq!(f64_dec(b"1.2.3"), None);
        assert_eq!(f64_dec(b"1.00000000000000000000000001"), Some(1.0));
    }
}
