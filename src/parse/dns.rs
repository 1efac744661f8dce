//! What a stub resolver reads and writes (RFC 1035): a query writer, a zero-copy response reader
//! that checks the answer against its question and collects the name's A/AAAA addresses
//! (following CNAMEs inside the answer), and the two files it honours, `/etc/resolv.conf`
//! (resolv.conf(5)) and `/etc/hosts` (hosts(5)). Bytes in, caller-owned values out: nothing here
//! allocates or panics, whatever the input (fuzz target `dns`).
//!
//! Written here rather than taken from a crate (simple-dns, hickory-proto): the agent needs one
//! query shape and A/AAAA/CNAME answers checked against its own question, without allocating;
//! that is a few hundred lines under the rules of `parse/` (pure, fuzzed), less than a dependency.

use super::cursor::{fields, lines, u64_dec};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;
/// The longest name in wire form (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;
const HEADER: usize = 12;
/// A query: header, the longest name, type and class.
pub const MAX_QUERY: usize = HEADER + MAX_NAME + 4;
/// CNAME hops followed inside one answer (a resolver returns the whole chain).
const MAX_CHAIN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// Shorter than its header, or a record runs past the end.
    Truncated,
    /// Not a response to a standard query (QR clear, another opcode, not one question).
    NotAResponse,
    /// The id is not the query's.
    WrongId,
    /// The question is not the one asked (name, type or class).
    WrongQuestion,
    /// A name with a bad label type, a forward or looping pointer, or longer than 255 bytes.
    BadName,
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DnsError::Truncated => "truncated DNS message",
            DnsError::NotAResponse => "not a response to a standard query",
            DnsError::WrongId => "response id does not match the query",
            DnsError::WrongQuestion => "response is for another question",
            DnsError::BadName => "malformed name in DNS message",
        })
    }
}

/// Writes `name` (dotted text, an optional final dot) in wire form into `out`; returns its length.
/// `None` for an empty label, a label over 63 bytes, a name over 255 bytes, or a byte that is not
/// a letter, digit, `-` or `_`.
pub fn encode_name(name: &[u8], out: &mut [u8]) -> Option<usize> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        // The root.
        *out.first_mut()? = 0;
        return Some(1);
    }
    let mut n = 0;
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        *out.get_mut(n)? = label.len() as u8;
        out.get_mut(n + 1..n + 1 + label.len())?.copy_from_slice(label);
        n += 1 + label.len();
    }
    *out.get_mut(n)? = 0;
    n += 1;
    (n <= MAX_NAME).then_some(n)
}

/// Writes a recursive query (RD set, one question of class IN, no EDNS) for `qname` (wire form)
/// into `out`; returns its length, or `None` if `out` is too small or `qname` is not one name.
pub fn write_query(out: &mut [u8], id: u16, qname: &[u8], qtype: u16) -> Option<usize> {
    if qname.is_empty() || qname.len() > MAX_NAME || qname.last() != Some(&0) {
        return None;
    }
    let len = HEADER + qname.len() + 4;
    let msg = out.get_mut(..len)?;
    let (head, rest) = msg.split_at_mut(HEADER);
    let [i0, i1] = id.to_be_bytes();
    // id, flags (RD), QDCOUNT 1, ANCOUNT, NSCOUNT, ARCOUNT 0.
    head.copy_from_slice(&[i0, i1, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let (name, tail) = rest.split_at_mut(qname.len());
    name.copy_from_slice(qname);
    let [t0, t1] = qtype.to_be_bytes();
    tail.copy_from_slice(&[t0, t1, 0, CLASS_IN as u8]);
    Some(len)
}

/// What a response said about its question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED, ...
    pub rcode: u8,
    /// TC: the server cut the message to fit UDP (the addresses read are the ones that fit).
    pub truncated: bool,
    /// How many addresses were written to the caller's slice.
    pub count: usize,
    /// The smallest TTL (seconds) of the records used (CNAMEs and addresses); `u32::MAX` if none.
    pub ttl: u32,
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

fn be32(msg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?, *msg.get(at + 2)?, *msg.get(at + 3)?]))
}

/// The labels of the name at `pos` of `msg`, following compression pointers (each must point
/// strictly backwards, so a walk always ends).
struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    /// Where the name ends in the record that holds it (after its first pointer, or its root).
    end: Option<usize>,
    total: usize,
    done: bool,
}

impl<'a> Labels<'a> {
    fn new(msg: &'a [u8], pos: usize) -> Labels<'a> {
        Labels { msg, pos, end: None, total: 0, done: false }
    }

    fn next(&mut self) -> Result<Option<&'a [u8]>, DnsError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let len = *self.msg.get(self.pos).ok_or(DnsError::Truncated)? as usize;
            match len & 0xC0 {
                0x00 if len == 0 => {
                    self.done = true;
                    self.end.get_or_insert(self.pos + 1);
                    self.total += 1;
                    return if self.total > MAX_NAME { Err(DnsError::BadName) } else { Ok(None) };
                }
                0x00 => {
                    let label = self.msg.get(self.pos + 1..self.pos + 1 + len).ok_or(DnsError::Truncated)?;
                    self.total += 1 + len;
                    if self.total > MAX_NAME {
                        return Err(DnsError::BadName);
                    }
                    self.pos += 1 + len;
                    return Ok(Some(label));
                }
                0xC0 => {
                    let low = *self.msg.get(self.pos + 1).ok_or(DnsError::Truncated)? as usize;
                    let target = ((len & 0x3F) << 8) | low;
                    if target >= self.pos {
                        return Err(DnsError::BadName);
                    }
                    self.end.get_or_insert(self.pos + 2);
                    self.pos = target;
                }
                _ => return Err(DnsError::BadName),
            }
        }
    }

    /// Walks to the end of the name; returns the position after it in its record.
    fn skip(mut self) -> Result<usize, DnsError> {
        while self.next()?.is_some() {}
        self.end.ok_or(DnsError::BadName)
    }
}

/// Whether two names are the same (ASCII case-insensitive), each in its own buffer.
fn same_name(a: &[u8], a_pos: usize, b: &[u8], b_pos: usize) -> Result<bool, DnsError> {
    let (mut x, mut y) = (Labels::new(a, a_pos), Labels::new(b, b_pos));
    loop {
        match (x.next()?, y.next()?) {
            (None, None) => return Ok(true),
            (Some(l), Some(m)) if l.eq_ignore_ascii_case(m) => {}
            _ => return Ok(false),
        }
    }
}

/// One resource record: where its owner name and data are in the message.
#[derive(Debug, Clone, Copy)]
struct Record {
    owner: usize,
    rtype: u16,
    class: u16,
    ttl: u32,
    data: usize,
    len: usize,
}

/// Reads the record at `pos`; returns it and the position after it.
fn record(msg: &[u8], pos: usize) -> Result<(Record, usize), DnsError> {
    let after_name = Labels::new(msg, pos).skip()?;
    let rtype = be16(msg, after_name).ok_or(DnsError::Truncated)?;
    let class = be16(msg, after_name + 2).ok_or(DnsError::Truncated)?;
    // RFC 2181 §8: a TTL with the top bit set is read as 0.
    let ttl = be32(msg, after_name + 4).ok_or(DnsError::Truncated)?;
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    let len = be16(msg, after_name + 8).ok_or(DnsError::Truncated)? as usize;
    let data = after_name + 10;
    if msg.len() < data + len {
        return Err(DnsError::Truncated);
    }
    Ok((Record { owner: pos, rtype, class, ttl, data, len }, data + len))
}

/// Calls `f` on each record of the answer section (`count` records from `pos`). A malformed
/// record ends the walk: an error, unless the message says it was truncated.
fn answers(
    msg: &[u8],
    mut pos: usize,
    count: u16,
    truncated: bool,
    mut f: impl FnMut(&Record) -> Result<bool, DnsError>,
) -> Result<(), DnsError> {
    for _ in 0..count {
        match record(msg, pos) {
            Ok((r, next)) => {
                if !f(&r)? {
                    return Ok(());
                }
                pos = next;
            }
            Err(_) if truncated => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `msg` as the response to query `id` for `qname` (wire form) and `qtype` (A or AAAA),
/// writing the name's addresses of that type to `addrs` (extra ones are left out). Addresses are
/// those of the question's name or of the end of its CNAME chain within the answer section.
/// A response without a question is accepted only with an rcode that means "ask the next
/// server" (FORMERR, SERVFAIL, NOTIMP, REFUSED; a server that did not understand the query may
/// not echo it): never with NOERROR or NXDOMAIN, which would end the lookup on an answer that
/// does not say which question it answers.
pub fn read_response(
    msg: &[u8],
    id: u16,
    qname: &[u8],
    qtype: u16,
    addrs: &mut [IpAddr],
) -> Result<Response, DnsError> {
    let got_id = be16(msg, 0).ok_or(DnsError::Truncated)?;
    let flags = be16(msg, 2).ok_or(DnsError::Truncated)?;
    let qdcount = be16(msg, 4).ok_or(DnsError::Truncated)?;
    let ancount = be16(msg, 6).ok_or(DnsError::Truncated)?;
    if msg.len() < HEADER {
        return Err(DnsError::Truncated);
    }
    if got_id != id {
        return Err(DnsError::WrongId);
    }
    let rcode = (flags & 0x000F) as u8;
    let truncated = flags & 0x0200 != 0;
    if flags & 0x8000 == 0 || (flags >> 11) & 0xF != 0 {
        return Err(DnsError::NotAResponse);
    }
    let mut resp = Response { rcode, truncated, count: 0, ttl: u32::MAX };
    if qdcount == 0 && matches!(rcode, RCODE_FORMERR | RCODE_SERVFAIL | RCODE_NOTIMP | RCODE_REFUSED) {
        return Ok(resp);
    }
    if qdcount != 1 {
        return Err(DnsError::NotAResponse);
    }
    if !same_name(msg, HEADER, qname, 0)? {
        return Err(DnsError::WrongQuestion);
    }
    let after_q = Labels::new(msg, HEADER).skip()?;
    let (Some(t), Some(c)) = (be16(msg, after_q), be16(msg, after_q + 2)) else { return Err(DnsError::Truncated) };
    if t != qtype || c != CLASS_IN {
        return Err(DnsError::WrongQuestion);
    }
    if rcode != RCODE_NOERROR {
        return Ok(resp);
    }
    let first = after_q + 4;
    // Follow the CNAME chain from the question's name.
    let mut target = HEADER;
    for _ in 0..MAX_CHAIN {
        let mut next = None;
        answers(msg, first, ancount, truncated, |r| {
            if r.rtype == TYPE_CNAME && r.class == CLASS_IN && same_name(msg, r.owner, msg, target)? {
                next = Some((r.data, r.ttl));
                return Ok(false);
            }
            Ok(true)
        })?;
        match next {
            Some((data, ttl)) => {
                target = data;
                resp.ttl = resp.ttl.min(ttl);
            }
            None => break,
        }
    }
    let want_len = if qtype == TYPE_AAAA { 16 } else { 4 };
    let mut count = 0;
    let mut ttl = resp.ttl;
    answers(msg, first, ancount, truncated, |r| {
        if r.rtype != qtype || r.class != CLASS_IN || r.len != want_len || !same_name(msg, r.owner, msg, target)? {
            return Ok(true);
        }
        let data = msg.get(r.data..r.data + r.len).ok_or(DnsError::Truncated)?;
        let addr = match <[u8; 16]>::try_from(data) {
            Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
            Err(_) => match <[u8; 4]>::try_from(data) {
                Ok(b) => IpAddr::V4(Ipv4Addr::from(b)),
                Err(_) => return Ok(true),
            },
        };
        ttl = ttl.min(r.ttl);
        if let Some(slot) = addrs.get_mut(count) {
            *slot = addr;
            count += 1;
        }
        Ok(true)
    })?;
    resp.count = count;
    if count > 0 {
        resp.ttl = ttl;
    }
    Ok(resp)
}

/// At most this many nameservers are used (glibc's MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains are used (glibc's MAXDNSRCH).
pub const MAX_SEARCH: usize = 6;

/// What `/etc/resolv.conf` says, borrowed from its bytes. Unset options are `None` (the caller
/// applies the defaults: timeout 5 s, 2 attempts, ndots 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResolvConf<'a> {
    pub nameservers: [Option<IpAddr>; MAX_NAMESERVERS],
    pub search: [&'a [u8]; MAX_SEARCH],
    pub search_len: usize,
    pub timeout_s: Option<u32>,
    pub attempts: Option<u32>,
    pub ndots: Option<u32>,
}

impl ResolvConf<'_> {
    pub fn nameservers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.nameservers.iter().flatten().copied()
    }

    pub fn search(&self) -> &[&[u8]] {
        self.search.get(..self.search_len).unwrap_or(&[])
    }
}

/// Parses resolv.conf(5): `nameserver` lines (the first three IP addresses; a scoped IPv6 address
/// is skipped), the last `search` or `domain` line, and `options timeout:n attempts:n ndots:n`
/// (capped as glibc caps them: 30, 5, 15). Comments start with `#` or `;`; other lines are ignored.
pub fn resolv_conf(buf: &[u8]) -> ResolvConf<'_> {
    let mut c = ResolvConf::default();
    let mut ns = 0;
    for line in lines(buf) {
        let line = match line.iter().position(|&b| b == b'#' || b == b';') {
            Some(i) => line.get(..i).unwrap_or(&[]),
            None => line,
        };
        let mut f = fields(line);
        match f.next() {
            Some(b"nameserver") => {
                let addr = f.next().and_then(|a| std::str::from_utf8(a).ok()).and_then(|a| a.parse::<IpAddr>().ok());
                if let (Some(a), Some(slot)) = (addr, c.nameservers.get_mut(ns)) {
                    *slot = Some(a);
                    ns += 1;
                }
            }
            Some(b"search") | Some(b"domain") => {
                c.search_len = 0;
                for d in f {
                    let d = d.strip_suffix(b".").unwrap_or(d);
                    if d.is_empty() {
                        continue;
                    }
                    if let Some(slot) = c.search.get_mut(c.search_len) {
                        *slot = d;
                        c.search_len += 1;
                    }
                }
            }
            Some(b"options") => {
                for o in f {
                    let num = |p: &[u8]| o.strip_prefix(p).and_then(u64_dec).map(|v| v.min(u64::from(u32::MAX)) as u32);
                    if let Some(v) = num(b"timeout:") {
                        c.timeout_s = Some(v.clamp(1, 30));
                    } else if let Some(v) = num(b"attempts:") {
                        c.attempts = Some(v.clamp(1, 5));
                    } else if let Some(v) = num(b"ndots:") {
                        c.ndots = Some(v.min(15));
                    }
                }
            }
            _ => {}
        }
    }
    c
}

/// Writes to `out` the addresses hosts(5) gives `name` (ASCII case-insensitive, any of a line's
/// names or aliases), in file order; returns how many (extra ones are left out). Comments start
/// with `#`; a line whose address does not parse is skipped.
pub fn hosts_lookup(buf: &[u8], name: &[u8], out: &mut [IpAddr]) -> usize {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let mut n = 0;
    if name.is_empty() {
        return 0;
    }
    for line in lines(buf) {
        let line = match line.iter().position(|&b| b == b'#') {
            Some(i) => line.get(..i).unwrap_or(&[]),
            None => line,
        };
        let mut f = fields(line);
        let Some(addr) = f.next().and_then(|a| std::str::from_utf8(a).ok()).and_then(|a| a.parse::<IpAddr>().ok())
        else {
            continue;
        };
        if f.any(|h| h.strip_suffix(b".").unwrap_or(h).eq_ignore_ascii_case(name)) {
            if let Some(slot) = out.get_mut(n) {
                *slot = addr;
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Vec<u8> {
        let mut b = [0u8; MAX_NAME];
        let n = encode_name(s.as_bytes(), &mut b).unwrap();
        b[..n].to_vec()
    }

    /// A response built by hand: header, the question, then `records` (already encoded).
    fn response(id: u16, flags: u16, qname: &[u8], qtype: u16, ancount: u16, records: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&ancount.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(qname);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(records);
        m
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(data);
        r
    }

    const PTR_Q: [u8; 2] = [0xC0, 12];

    #[test]
    fn encodes_names_and_rejects_bad_ones() {
        assert_eq!(name("receiver.example.com"), b"\x08receiver\x07example\x03com\x00");
        assert_eq!(name("receiver.example.com."), b"\x08receiver\x07example\x03com\x00");
        assert_eq!(name("."), b"\x00");
        let mut b = [0u8; MAX_NAME];
        for bad in ["a..b", ".a", "a b", "é.com", &"x".repeat(64), &["abcdefghi"; 26].join(".")] {
            assert_eq!(encode_name(bad.as_bytes(), &mut b), None, "{bad}");
        }
        // 255 bytes in wire form is the limit.
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(encode_name(&long.as_bytes()[..long.len() - 2], &mut b), Some(255));
        assert_eq!(encode_name(long.as_bytes(), &mut b), None);
        let mut small = [0u8; 4];
        assert_eq!(encode_name(b"abcd", &mut small), None);
    }

    #[test]
    fn writes_a_standard_query() {
        let q = name("sts.example");
        let mut out = [0u8; MAX_QUERY];
        let n = write_query(&mut out, 0xBEEF, &q, TYPE_AAAA).unwrap();
        assert_eq!(
            &out[..n],
            b"\xBE\xEF\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03sts\x07example\x00\x00\x1c\x00\x01"
        );
        assert_eq!(write_query(&mut out[..20], 1, &q, TYPE_A), None);
        assert_eq!(write_query(&mut out, 1, b"\x03sts", TYPE_A), None);
    }

    /// A real answer captured from a resolver (`dig +noedns www.github.com A`): a CNAME to
    /// github.com, then its A record, with compression pointers.
    #[test]
    fn reads_a_cname_chain_with_compression() {
        let q = name("www.github.com");
        let msg: &[u8] = &[
            0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, //
            0x03, b'w', b'w', b'w', 0x06, b'g', b'i', b't', b'h', b'u', b'b', 0x03, b'c', b'o', b'm', 0x00, //
            0x00, 0x01, 0x00, 0x01, //
            // www.github.com CNAME github.com (ttl 3600)
            0xC0, 0x0C, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x02, 0xC0, 0x10, //
            // github.com A 140.82.121.3 (ttl 60)
            0xC0, 0x10, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x04, 140, 82, 121, 3,
        ];
        let mut addrs = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 4];
        let r = read_response(msg, 0x1234, &q, TYPE_A, &mut addrs).unwrap();
        assert_eq!(r, Response { rcode: 0, truncated: false, count: 1, ttl: 60 });
        assert_eq!(addrs[0], "140.82.121.3".parse::<IpAddr>().unwrap());
        // Upper case in the response is the same name.
        let q_upper = name("WWW.GitHub.COM");
        assert!(read_response(msg, 0x1234, &q_upper, TYPE_A, &mut addrs).is_ok());
    }

    #[test]
    fn collects_every_address_in_order_and_the_smallest_ttl() {
        let q = name("multi.test");
        let mut recs = rr(&PTR_Q, TYPE_AAAA, 300, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        recs.extend(rr(&PTR_Q, TYPE_AAAA, 30, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]));
        // A record of another type and one for another name are not the question's.
        recs.extend(rr(&PTR_Q, TYPE_A, 5, &[10, 0, 0, 1]));
        recs.extend(rr(&name("other.test"), TYPE_AAAA, 1, &[0; 16]));
        let msg = response(7, 0x8180, &q, TYPE_AAAA, 4, &recs);
        let mut addrs = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 8];
        let r = read_response(&msg, 7, &q, TYPE_AAAA, &mut addrs).unwrap();
        assert_eq!((r.count, r.ttl), (2, 30));
        assert_eq!(addrs[..2], ["2001:db8::1".parse::<IpAddr>().unwrap(), "2001:db8::2".parse().unwrap()]);
        // Room for one: the first is kept.
        let mut one = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 1];
        assert_eq!(read_response(&msg, 7, &q, TYPE_AAAA, &mut one).unwrap().count, 1);
        assert_eq!(one[0], "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn validates_id_question_and_header() {
        let q = name("a.test");
        let msg = response(9, 0x8180, &q, TYPE_A, 1, &rr(&PTR_Q, TYPE_A, 10, &[1, 2, 3, 4]));
        let mut a = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 2];
        assert_eq!(read_response(&msg, 10, &q, TYPE_A, &mut a), Err(DnsError::WrongId));
        assert_eq!(read_response(&msg, 9, &name("b.test"), TYPE_A, &mut a), Err(DnsError::WrongQuestion));
        assert_eq!(read_response(&msg, 9, &name("a.test.x"), TYPE_A, &mut a), Err(DnsError::WrongQuestion));
        assert_eq!(read_response(&msg, 9, &q, TYPE_AAAA, &mut a), Err(DnsError::WrongQuestion));
        // A query (QR clear) is not an answer.
        let query = response(9, 0x0100, &q, TYPE_A, 0, &[]);
        assert_eq!(read_response(&query, 9, &q, TYPE_A, &mut a), Err(DnsError::NotAResponse));
        assert_eq!(read_response(&msg[..11], 9, &q, TYPE_A, &mut a), Err(DnsError::Truncated));
        // NXDOMAIN and SERVFAIL carry their rcode and no addresses.
        let nx = response(9, 0x8183, &q, TYPE_A, 0, &[]);
        assert_eq!(read_response(&nx, 9, &q, TYPE_A, &mut a).unwrap().rcode, RCODE_NXDOMAIN);
        let mut sf = response(9, 0x8182, &q, TYPE_A, 0, &[]);
        sf[5] = 0; // no question: accepted with an error rcode
        sf.truncate(12);
        assert_eq!(read_response(&sf, 9, &q, TYPE_A, &mut a).unwrap().rcode, RCODE_SERVFAIL);
        // NOERROR with no question is not an answer to ours.
        let mut empty = response(9, 0x8180, &q, TYPE_A, 0, &[]);
        empty[5] = 0;
        empty.truncate(12);
        assert_eq!(read_response(&empty, 9, &q, TYPE_A, &mut a), Err(DnsError::NotAResponse));
        // Without a question only "try the next server" rcodes are accepted; NXDOMAIN (which
        // would end the lookup) and the rest are not answers to ours.
        for rcode in 0..16u8 {
            let mut m = response(9, 0x8180 | u16::from(rcode), &q, TYPE_A, 0, &[]);
            m[5] = 0;
            m.truncate(12);
            let got = read_response(&m, 9, &q, TYPE_A, &mut a).map(|r| r.rcode);
            if matches!(rcode, RCODE_FORMERR | RCODE_SERVFAIL | RCODE_NOTIMP | RCODE_REFUSED) {
                assert_eq!(got, Ok(rcode), "rcode {rcode}");
            } else {
                assert_eq!(got, Err(DnsError::NotAResponse), "rcode {rcode}");
            }
        }
    }

    #[test]
    fn a_truncated_answer_keeps_the_records_that_fit() {
        let q = name("t.test");
        let mut recs = rr(&PTR_Q, TYPE_A, 10, &[1, 1, 1, 1]);
        recs.extend(rr(&PTR_Q, TYPE_A, 10, &[2, 2, 2, 2]));
        let full = response(1, 0x8180, &q, TYPE_A, 2, &recs);
        let mut cut = response(1, 0x8380, &q, TYPE_A, 2, &recs);
        cut.truncate(full.len() - 3);
        let mut a = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 4];
        let r = read_response(&cut, 1, &q, TYPE_A, &mut a).unwrap();
        assert!(r.truncated);
        assert_eq!(r.count, 1);
        // Without TC the same cut is an error.
        let mut bad = full.clone();
        bad.truncate(full.len() - 3);
        assert_eq!(read_response(&bad, 1, &q, TYPE_A, &mut a), Err(DnsError::Truncated));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_errors() {
        let q = name("l.test");
        // The owner is a pointer to itself.
        let msg = response(1, 0x8180, &q, TYPE_A, 1, &rr(&[0xC0, 24], TYPE_A, 1, &[1, 2, 3, 4]));
        let at = msg.len() - 16;
        let mut looped = msg.clone();
        looped[at] = 0xC0;
        looped[at + 1] = at as u8;
        let mut a = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 1];
        assert_eq!(read_response(&looped, 1, &q, TYPE_A, &mut a), Err(DnsError::BadName));
        // A CNAME chain that loops ends after a few hops, with no address.
        let mut recs = rr(&PTR_Q, TYPE_CNAME, 10, &name("m.test"));
        let m_at = (12 + q.len() + 4 + 12) as u8;
        recs.extend(rr(&[0xC0, m_at], TYPE_CNAME, 10, &PTR_Q));
        let cyc = response(1, 0x8180, &q, TYPE_A, 2, &recs);
        assert_eq!(read_response(&cyc, 1, &q, TYPE_A, &mut a).unwrap().count, 0);
        // A TTL with the top bit set reads as 0.
        let neg = response(1, 0x8180, &q, TYPE_A, 1, &rr(&PTR_Q, TYPE_A, 0x8000_0000, &[1, 2, 3, 4]));
        assert_eq!(read_response(&neg, 1, &q, TYPE_A, &mut a).unwrap().ttl, 0);
    }

    #[test]
    fn no_panic_on_any_prefix_or_byte_flip() {
        let q = name("www.github.com");
        let mut recs = rr(&PTR_Q, TYPE_CNAME, 3600, &[0x06, b'g', b'i', b't', b'h', b'u', b'b', 0xC0, 0x10]);
        recs.extend(rr(&[0xC0, 0x10], TYPE_A, 60, &[1, 2, 3, 4]));
        let msg = response(1, 0x8180, &q, TYPE_A, 2, &recs);
        let mut a = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 2];
        for n in 0..=msg.len() {
            let _ = read_response(&msg[..n], 1, &q, TYPE_A, &mut a);
        }
        for i in 0..msg.len() {
            for v in [0x00, 0x3F, 0x40, 0xC0, 0xFF] {
                let mut m = msg.clone();
                m[i] = v;
                let _ = read_response(&m, 1, &q, TYPE_A, &mut a);
            }
        }
    }

    #[test]
    fn reads_resolv_conf() {
        let conf = b"# generated\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1 ; local\n\
                     search a.example b.example.\noptions ndots:2 timeout:1 attempts:9 rotate\n\
                     nameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver 10.0.0.5\n";
        let c = resolv_conf(conf);
        let ns: Vec<IpAddr> = c.nameservers().collect();
        assert_eq!(ns, ["10.0.0.2".parse::<IpAddr>().unwrap(), "::1".parse().unwrap(), "10.0.0.3".parse().unwrap()]);
        assert_eq!(c.search(), [&b"a.example"[..], b"b.example"]);
        assert_eq!((c.timeout_s, c.attempts, c.ndots), (Some(1), Some(5), Some(2)));
        // The last search/domain line wins; an empty file gives nothing.
        assert_eq!(resolv_conf(b"search x.test\ndomain y.test\n").search(), [&b"y.test"[..]]);
        assert_eq!(resolv_conf(b""), ResolvConf::default());
        assert_eq!(resolv_conf(b"options timeout:0 ndots:99").timeout_s, Some(1));
    }

    #[test]
    fn looks_names_up_in_hosts() {
        let hosts = b"127.0.0.1 localhost\n# 10.9.9.9 recv.test\n10.0.0.7\trecv.test recv # primary\n\
                      bogus recv.test\n::1 localhost ip6-localhost\n10.0.0.8 other RECV.test.\n";
        let mut out = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 4];
        let n = hosts_lookup(hosts, b"recv.test", &mut out);
        assert_eq!(out[..n], ["10.0.0.7".parse::<IpAddr>().unwrap(), "10.0.0.8".parse().unwrap()]);
        assert_eq!(hosts_lookup(hosts, b"recv", &mut out), 1);
        assert_eq!(hosts_lookup(hosts, b"localhost", &mut out), 2);
        assert_eq!(hosts_lookup(hosts, b"nope", &mut out), 0);
        assert_eq!(hosts_lookup(hosts, b"", &mut out), 0);
        let mut one = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 1];
        assert_eq!(hosts_lookup(hosts, b"recv.test", &mut one), 1);
    }
}
