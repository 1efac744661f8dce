//! `net/sockstat` and `net/sockstat6` of a network namespace (read through one of its processes,
//! `/proc/<pid>/net/…`): how many TCP sockets the namespace holds. The connections source skips a
//! family's inet_diag dump when these say there is nothing to dump. That matters because a dump
//! walks every bucket of the kernel's established-connections hash, which all namespaces share
//! and whose size follows the host's memory (262,144 buckets on a 24 GiB host: ~1.5 ms of kernel
//! time per dump), however few sockets the namespace has; a host with 50 containers of their own
//! namespace paid that 100 times a cycle.
//!
//! ```text
//! sockstat:  TCP: inuse 5012 orphan 0 tw 3 alloc 5019 mem 25
//! sockstat6: TCP6: inuse 2
//! ```
//! `inuse` counts the family's sockets in the hash tables (listening, connecting, established,
//! closing, orphans): per namespace (`sock_prot_inuse_get(net, …)`). `tw` counts the namespace's
//! TIME_WAIT and FIN_WAIT2 mini-sockets of both families (per namespace since Linux 4.12; global
//! before, which only makes a skip rarer). `alloc` and `mem` are global and not used.

use super::cursor::{fields, lines, u64_dec, ParseError};

/// What `net/sockstat` says of the namespace's TCP sockets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TcpSockets {
    /// IPv4 sockets hashed (`inuse`).
    pub in_use: u64,
    /// TIME_WAIT mini-sockets, IPv4 and IPv6 (`tw`).
    pub time_wait: u64,
}

impl TcpSockets {
    /// No IPv4 socket a dump could list.
    pub fn v4_empty(&self) -> bool {
        self.in_use == 0 && self.time_wait == 0
    }
}

/// The `TCP:` line of `net/sockstat`.
pub fn tcp(sockstat: &[u8]) -> Result<TcpSockets, ParseError> {
    const ERR: ParseError = ParseError::new("net/sockstat", "expected a line TCP: inuse N … tw N …");
    let line = protocol_line(sockstat, b"TCP:").ok_or(ERR)?;
    Ok(TcpSockets { in_use: counter(line, b"inuse").ok_or(ERR)?, time_wait: counter(line, b"tw").ok_or(ERR)? })
}

/// `inuse` of the `TCP6:` line of `net/sockstat6`: IPv6 sockets hashed.
pub fn tcp6_in_use(sockstat6: &[u8]) -> Result<u64, ParseError> {
    const ERR: ParseError = ParseError::new("net/sockstat6", "expected a line TCP6: inuse N");
    protocol_line(sockstat6, b"TCP6:").and_then(|line| counter(line, b"inuse")).ok_or(ERR)
}

/// The rest of the line whose first field is `protocol` (with its colon).
fn protocol_line<'a>(buf: &'a [u8], protocol: &[u8]) -> Option<&'a [u8]> {
    lines(buf).find_map(|line| line.strip_prefix(protocol).filter(|rest| rest.first().is_none_or(|b| *b == b' ')))
}

/// The value after the name `key` in a line of `name value` pairs.
fn counter(pairs: &[u8], key: &[u8]) -> Option<u64> {
    let mut f = fields(pairs);
    while let Some(name) = f.next() {
        let value = f.next()?;
        if name == key {
            return u64_dec(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_files_parse() {
        let v4 = include_bytes!("../../tests/fixtures/proc/debian12-6.18/net/sockstat");
        let v6 = include_bytes!("../../tests/fixtures/proc/debian12-6.18/net/sockstat6");
        assert_eq!(tcp(v4).unwrap(), TcpSockets { in_use: 5012, time_wait: 3 });
        assert_eq!(tcp6_in_use(v6).unwrap(), 2);
    }

    #[test]
    fn an_empty_namespace_says_so() {
        let idle = b"sockets: used 0\nTCP: inuse 0 orphan 0 tw 0 alloc 5019 mem 25\nUDP: inuse 0 mem 0\n";
        assert!(tcp(idle).unwrap().v4_empty());
        // TIME_WAIT alone is something to dump (a connection that just closed).
        assert!(!tcp(b"TCP: inuse 0 orphan 0 tw 1 alloc 0 mem 0\n").unwrap().v4_empty());
        assert!(!tcp(b"TCP: inuse 1 orphan 0 tw 0 alloc 0 mem 0\n").unwrap().v4_empty());
        assert_eq!(tcp6_in_use(b"TCP6: inuse 0\nUDP6: inuse 3\n").unwrap(), 0);
    }

    #[test]
    fn other_lines_and_bad_counts_are_errors_not_zeros() {
        // Not TCP's line: UDP's, a prefix of another protocol's name, TCP6 in sockstat.
        assert!(tcp(b"UDP: inuse 0 mem 0\n").is_err());
        assert!(tcp(b"TCPX: inuse 0 tw 0\n").is_err());
        assert!(tcp(b"TCP6: inuse 0\n").is_err());
        assert!(tcp6_in_use(b"TCP: inuse 0 orphan 0 tw 0\n").is_err());
        // Missing or malformed counters.
        assert!(tcp(b"TCP: inuse 0 orphan 0\n").is_err());
        assert!(tcp(b"TCP: inuse x orphan 0 tw 0\n").is_err());
        assert!(tcp(b"TCP: inuse -1 orphan 0 tw 0\n").is_err());
        assert!(tcp(b"TCP: inuse\n").is_err());
        assert!(tcp6_in_use(b"TCP6:\n").is_err());
        assert!(tcp(b"").is_err());
    }
}
