//! `/proc/net/snmp` and `/proc/net/netstat`: tables given as a line of names followed by a line
//! of values, both prefixed with the protocol (`Tcp:`, `TcpExt:`, ...).

use super::cursor::{fields, i64_dec, lines, Lines, ParseError};

/// One protocol's table: the names line and the values line, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SnmpTable<'a> {
    pub proto: &'a [u8],
    names: &'a [u8],
    values: &'a [u8],
}

impl<'a> SnmpTable<'a> {
    /// The value of one named counter. `None` if the kernel does not have it or it is not a number.
    pub fn get(&self, name: &[u8]) -> Option<i64> {
        fields(self.names).zip(fields(self.values)).find(|(n, _)| *n == name).and_then(|(_, v)| i64_dec(v))
    }

    /// Every `(name, value)` pair, in file order; values that are not numbers are skipped.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a [u8], i64)> + 'a {
        fields(self.names).zip(fields(self.values)).filter_map(|(n, v)| Some((n, i64_dec(v)?)))
    }
}

pub fn tables(buf: &[u8]) -> SnmpTables<'_> {
    SnmpTables { lines: lines(buf) }
}

pub struct SnmpTables<'a> {
    lines: Lines<'a>,
}

const FILE: &str = "/proc/net/snmp";

impl<'a> Iterator for SnmpTables<'a> {
    type Item = Result<SnmpTable<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        let names_line = loop {
            let l = self.lines.next()?;
            if !l.is_empty() {
                break l;
            }
        };
        Some(pair(names_line, self.lines.next()))
    }
}

fn pair<'a>(names_line: &'a [u8], values_line: Option<&'a [u8]>) -> Result<SnmpTable<'a>, ParseError> {
    let (proto, names) = split_proto(names_line).ok_or(ParseError::new(FILE, "no protocol prefix"))?;
    let values_line = values_line.ok_or(ParseError::new(FILE, "names line without values line"))?;
    let (proto2, values) = split_proto(values_line).ok_or(ParseError::new(FILE, "no protocol prefix"))?;
    if proto != proto2 {
        return Err(ParseError::new(FILE, "values line belongs to another protocol"));
    }
    Ok(SnmpTable { proto, names, values })
}

fn split_proto(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b':', line)?;
    Some((line.get(..i)?, line.get(i + 1..)?))
}

/// Looks up `proto`'s `name` counter in a whole file.
pub fn find(buf: &[u8], proto: &[u8], name: &[u8]) -> Option<i64> {
    tables(buf).filter_map(Result::ok).find(|t| t.proto == proto)?.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/net/snmp");
    const NETSTAT: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/net/netstat");

    #[test]
    fn parses_captured_files() {
        assert_eq!(find(SNMP, b"Tcp", b"MaxConn"), Some(-1));
        assert_eq!(find(SNMP, b"Tcp", b"InSegs"), Some(1412));
        assert_eq!(find(SNMP, b"Udp", b"OutDatagrams"), Some(22));
        assert_eq!(find(SNMP, b"Udp", b"NoSuch"), None);
        assert!(find(NETSTAT, b"TcpExt", b"ListenOverflows").is_some());
        assert_eq!(tables(SNMP).filter(|t| t.is_ok()).count(), 6);
    }

    #[test]
    fn mismatched_or_missing_values_line() {
        let mut t = tables(b"Tcp: A B\nUdp: 1 2\n");
        assert!(t.next().unwrap().is_err());
        assert!(tables(b"Tcp: A B\n").next().unwrap().is_err());
        // Fewer values than names: the missing ones are simply absent.
        let t = tables(b"Tcp: A B\nTcp: 7\n").next().unwrap().unwrap();
        assert_eq!(t.get(b"A"), Some(7));
        assert_eq!(t.get(b"B"), None);
    }
}
