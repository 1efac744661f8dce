//! One TCP segment out of a captured "cooked" packet (AF_PACKET SOCK_DGRAM: the bytes start at the
//! IP header), for HTTP inspection (spec `http-inspection.md` §7.1). The capture is cut at a snap
//! length, so the bytes may end anywhere; the lengths that matter (the payload on the wire) come
//! from the IP header, the bytes only from what was captured. Bytes in, a borrowed view out: no
//! allocation, no panic on any input (fuzz target `packet`).

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

const IPPROTO_TCP: u8 = 6;
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;

/// IPv6 extension headers walked before giving up: a real packet has at most a handful (RFC 8200
/// §4.1 recommends an order with each type at most once, destination options at most twice).
const MAX_EXTENSION_HEADERS: usize = 8;
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_ESP: u8 = 50;
const NH_AH: u8 = 51;
const NH_NONE: u8 = 59;
const NH_DEST_OPTS: u8 = 60;

/// One TCP segment as captured. Addresses are 16 bytes: IPv4 in the first 4 (rest zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// [`AF_INET`] (2) or [`AF_INET6`] (10).
    pub family: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// The acknowledgement number (what the sender had received of the other direction).
    pub ack: u32,
    /// TCP payload length on the wire, from the IP header's length fields (not what was captured).
    pub payload_len: u32,
    /// The captured part of the payload (may be shorter than payload_len, possibly empty).
    pub payload: &'a [u8],
}

/// `packet` starts at the IP header (its version nibble decides v4/v6). `None` unless it is a TCP
/// segment whose IP and TCP headers were captured whole: another version, bad header lengths (IHL
/// < 5, data offset < 5, a total length smaller than the headers), a non-first IPv4 fragment, an
/// IPv6 fragment with an offset, ESP or no-next-header, a jumbogram, or not TCP. Bytes captured
/// past the IP total length (link padding) are not payload.
pub fn tcp_segment(packet: &[u8]) -> Option<Segment<'_>> {
    match packet.first()? >> 4 {
        4 => ipv4(packet),
        6 => ipv6(packet),
        _ => None,
    }
}

fn ipv4(packet: &[u8]) -> Option<Segment<'_>> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER {
        return None;
    }
    let header = packet.get(..header_len)?;
    let total_len = usize::from(be16(header, 2)?);
    // Fragment offset (low 13 bits); a later fragment carries no TCP header. The first fragment
    // (offset 0, more-fragments set) does, and its payload_len is what that fragment carries.
    if be16(header, 6)? & 0x1fff != 0 || *header.get(9)? != IPPROTO_TCP {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.get_mut(..4)?.copy_from_slice(header.get(12..16)?);
    dst.get_mut(..4)?.copy_from_slice(header.get(16..20)?);
    // Captured bytes past the total length are link padding (Ethernet pads frames to 60 bytes).
    let datagram = packet.get(..total_len.min(packet.len()))?;
    tcp(AF_INET, src, dst, datagram, header_len, total_len)
}

fn ipv6(packet: &[u8]) -> Option<Segment<'_>> {
    let header = packet.get(..IPV6_HEADER)?;
    let payload_length = usize::from(be16(header, 4)?);
    let mut next = *header.get(6)?;
    if payload_length == 0 {
        // A jumbogram (RFC 2675: the length is in a hop-by-hop option) or an empty datagram:
        // neither carries a TCP segment we can measure.
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(header.get(8..24)?);
    dst.copy_from_slice(header.get(24..40)?);
    let total_len = IPV6_HEADER.checked_add(payload_length)?;
    let datagram = packet.get(..total_len.min(packet.len()))?;
    let mut offset = IPV6_HEADER;
    for step in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            IPPROTO_TCP => return tcp(AF_INET6, src, dst, datagram, offset, total_len),
            // Hop-by-hop options may only follow the fixed header (RFC 8200 §4.1); the kernel
            // drops a packet that has them elsewhere.
            NH_HOP_BY_HOP if step != 0 => return None,
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => (usize::from(*datagram.get(offset.checked_add(1)?)?) + 1) * 8,
            NH_FRAGMENT => {
                // Only an unfragmented or first fragment holds the TCP header.
                if be16(datagram, offset.checked_add(2)?)? & 0xfff8 != 0 {
                    return None;
                }
                8
            }
            NH_AH => (usize::from(*datagram.get(offset.checked_add(1)?)?) + 2) * 4,
            // ESP hides what follows; no-next-header has nothing after it; anything else is not TCP.
            NH_ESP | NH_NONE => return None,
            _ => return None,
        };
        let end = offset.checked_add(len)?;
        // The whole extension header must be captured (and inside the datagram).
        datagram.get(offset..end)?;
        next = *datagram.get(offset)?;
        offset = end;
    }
    None
}

/// The TCP header at `tcp_at` in `datagram` (the IP datagram as captured, cut at `total_len`, the
/// length the IP header gives).
fn tcp<'a>(
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
    datagram: &'a [u8],
    tcp_at: usize,
    total_len: usize,
) -> Option<Segment<'a>> {
    let tcp_min = datagram.get(tcp_at..tcp_at.checked_add(TCP_MIN_HEADER)?)?;
    let header_len = usize::from(tcp_min.get(12)? >> 4) * 4;
    if header_len < TCP_MIN_HEADER {
        return None;
    }
    let payload_at = tcp_at.checked_add(header_len)?;
    // Options captured whole, and the headers fit in the length the IP header gives.
    let payload = datagram.get(payload_at..)?;
    let payload_len = u32::try_from(total_len.checked_sub(payload_at)?).ok()?;
    Some(Segment {
        family,
        src,
        dst,
        sport: be16(tcp_min, 0)?,
        dport: be16(tcp_min, 2)?,
        seq: u32::from_be_bytes(tcp_min.get(4..8)?.try_into().ok()?),
        ack: u32::from_be_bytes(tcp_min.get(8..12)?.try_into().ok()?),
        payload_len,
        payload,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at.checked_add(1)?)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.5:8080 → 10.0.0.9:51234, an HTTP response with the usual Linux TCP options
    /// (data offset 8: NOP, NOP, timestamps). Checksums as a NIC with offload leaves them (unchecked).
    #[rustfmt::skip]
    const V4_RESPONSE: &[u8] = &[
        // IPv4: version 4, IHL 5; TOS 0; total length 71; id 0x1c46; DF; TTL 64; TCP; checksum.
        0x45, 0x00, 0x00, 0x47, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
        10, 0, 0, 5, 10, 0, 0, 9,
        // TCP: 8080 → 51234, seq 0x01020304, ack, data offset 8, PSH|ACK, window, checksum, urgent.
        0x1f, 0x90, 0xc8, 0x22, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x80, 0x18, 0x01, 0xf5,
        0x00, 0x00, 0x00, 0x00,
        // NOP, NOP, timestamps (kind 8, length 10).
        0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
        // 19 bytes of payload.
        b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', b' ', b'2', b'0', b'0', b' ', b'O', b'K',
        b'\r', b'\n', b'\r', b'\n',
    ];
    const V4_HEADERS: usize = 20 + 32;

    fn v4_addr(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    /// A TCP header: ports, seq, data offset `doff` (options filled with NOPs).
    fn tcp_header(sport: u16, dport: u16, seq: u32, doff: u8) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, doff << 4, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        t.resize(usize::from(doff.max(5)) * 4, 1);
        t
    }

    /// An IPv4 packet: `options` (a multiple of 4 bytes), protocol, total length from `body`
    /// unless `total` overrides it, fragment field `frag`.
    fn v4(options: &[u8], protocol: u8, frag: u16, body: &[u8], total: Option<u16>) -> Vec<u8> {
        let ihl = 5 + options.len() / 4;
        let total = total.unwrap_or((ihl * 4 + body.len()) as u16);
        let mut p = vec![0x40 | ihl as u8, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, protocol, 0, 0, 192, 168, 1, 2, 192, 168, 1, 3]);
        p.extend_from_slice(options);
        p.extend_from_slice(body);
        p
    }

    /// The fixed IPv6 header: payload length, next header, 2001:db8::1 → 2001:db8::2.
    fn v6_header(payload_length: u16, next: u8) -> Vec<u8> {
        let mut p = vec![0x60, 0x0a, 0xbc, 0xde];
        p.extend_from_slice(&payload_length.to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p
    }

    /// An IPv6 packet whose payload is `ext` (extension headers) then `body`.
    fn v6(next: u8, ext: &[u8], body: &[u8]) -> Vec<u8> {
        let mut p = v6_header((ext.len() + body.len()) as u16, next);
        p.extend_from_slice(ext);
        p.extend_from_slice(body);
        p
    }

    fn tcp_with_payload(doff: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = tcp_header(80, 40000, 0xdead_beef, doff);
        t.extend_from_slice(payload);
        t
    }

    /// Every prefix of `packet` either is `None` (headers not captured whole) or yields the same
    /// segment with the captured prefix of the payload.
    fn assert_every_cut(packet: &[u8], headers: usize) {
        let whole = tcp_segment(packet).expect("the whole packet parses");
        for cut in 0..=packet.len() {
            match tcp_segment(&packet[..cut]) {
                None => assert!(cut < headers, "cut at {cut} of {} lost the segment", packet.len()),
                Some(s) => {
                    assert!(cut >= headers, "cut at {cut} parsed headers ending at {headers}");
                    assert_eq!(s.payload, &whole.payload[..cut - headers]);
                    assert_eq!(Segment { payload: whole.payload, ..s }, whole);
                }
            }
        }
    }

    #[test]
    fn ipv4_segment_fields() {
        let s = tcp_segment(V4_RESPONSE).unwrap();
        assert_eq!(s.family, AF_INET);
        assert_eq!(s.src, v4_addr([10, 0, 0, 5]));
        assert_eq!(s.dst, v4_addr([10, 0, 0, 9]));
        assert_eq!((s.sport, s.dport), (8080, 51234));
        assert_eq!(s.seq, 0x0102_0304);
        assert_eq!(s.ack, 0x0a0b_0c0d);
        assert_eq!(s.payload_len, 19);
        assert_eq!(s.payload, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn ipv4_every_truncation_is_none_or_a_shorter_payload() {
        assert_every_cut(V4_RESPONSE, V4_HEADERS);
        // Cut inside the payload: payload_len still says what was on the wire.
        let s = tcp_segment(&V4_RESPONSE[..V4_HEADERS + 4]).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b"HTTP"[..], 19));
    }

    #[test]
    fn ipv4_options_are_skipped() {
        // Router alert (RFC 2113) then end-of-options padding: IHL 7.
        let options = [0x94, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
        let p = v4(&options, 6, 0, &tcp_with_payload(5, b"GET / HTTP/1.1\r\n"), None);
        let s = tcp_segment(&p).unwrap();
        assert_eq!(s.payload, b"GET / HTTP/1.1\r\n");
        assert_eq!(s.payload_len, 16);
        assert_eq!((s.sport, s.dport, s.seq), (80, 40000, 0xdead_beef));
        assert_eq!(s.src, v4_addr([192, 168, 1, 2]));
        assert_every_cut(&p, 28 + 20);
    }

    #[test]
    fn ipv4_link_padding_is_not_payload() {
        // A bare ACK is 40 bytes; Ethernet pads it to 46 bytes of frame payload.
        let mut p = v4(&[], 6, 0, &tcp_with_payload(5, b""), None);
        p.extend_from_slice(&[0; 6]);
        let s = tcp_segment(&p).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b""[..], 0));
        // One byte of payload, then padding that happens to be text.
        let mut p = v4(&[], 6, 0, &tcp_with_payload(5, b"G"), None);
        p.extend_from_slice(b"ET / ");
        let s = tcp_segment(&p).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b"G"[..], 1));
    }

    #[test]
    fn ipv4_fragments() {
        let body = tcp_with_payload(5, b"HTTP/1.1 200 OK\r\n");
        // A later fragment (offset 185 × 8 bytes): no TCP header there.
        assert_eq!(tcp_segment(&v4(&[], 6, 185, &body, None)), None);
        assert_eq!(tcp_segment(&v4(&[], 6, 0x2000 | 185, &body, None)), None);
        // The first fragment (more-fragments, offset 0) holds the header; payload_len is its own part.
        let p = v4(&[], 6, 0x2000, &body, None);
        let s = tcp_segment(&p).unwrap();
        assert_eq!(s.payload_len, 17);
        // Don't-fragment alone is no fragment.
        assert!(tcp_segment(&v4(&[], 6, 0x4000, &body, None)).is_some());
    }

    #[test]
    fn ipv4_bad_lengths_and_not_tcp() {
        let body = tcp_with_payload(5, b"abc");
        // UDP, ICMP.
        assert_eq!(tcp_segment(&v4(&[], 17, 0, &body, None)), None);
        assert_eq!(tcp_segment(&v4(&[], 1, 0, &body, None)), None);
        // IHL 4.
        let mut p = v4(&[], 6, 0, &body, None);
        p[0] = 0x44;
        assert_eq!(tcp_segment(&p), None);
        // Data offset 4.
        let mut p = v4(&[], 6, 0, &body, None);
        p[20 + 12] = 0x40;
        assert_eq!(tcp_segment(&p), None);
        // Total length shorter than IP + TCP headers (even though the bytes were captured).
        for total in [0, 19, 20, 39] {
            assert_eq!(tcp_segment(&v4(&[], 6, 0, &body, Some(total))), None, "total {total}");
        }
        // Exactly the headers: an empty payload, the captured "abc" is beyond the total length.
        let p = v4(&[], 6, 0, &body, Some(40));
        let s = tcp_segment(&p).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b""[..], 0));
        // A data offset whose options run past the total length.
        assert_eq!(tcp_segment(&v4(&[], 6, 0, &tcp_with_payload(15, b""), Some(20 + 40))), None);
        // Total length beyond what was captured: the capture was cut, payload_len is the wire's.
        let p = v4(&[], 6, 0, &body, Some(1500));
        let s = tcp_segment(&p).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b"abc"[..], 1460));
        // Other versions, nothing at all.
        let mut p = v4(&[], 6, 0, &body, None);
        p[0] = 0x55;
        assert_eq!(tcp_segment(&p), None);
        assert_eq!(tcp_segment(&[]), None);
        assert_eq!(tcp_segment(&[0x45]), None);
    }

    /// Hop-by-hop (a PadN option), destination options, fragment (offset 0, more fragments) and
    /// TCP with a 12-byte option block.
    fn v6_with_extensions() -> (Vec<u8>, usize) {
        #[rustfmt::skip]
        let ext = [
            // Hop-by-hop: next = destination options, length 0 (8 bytes): PadN of 4.
            60, 0, 1, 4, 0, 0, 0, 0,
            // Destination options: next = fragment, length 1 (16 bytes): PadN of 12.
            44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // Fragment: next = TCP, reserved, offset 0 with M set, identification.
            6, 0, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe,
        ];
        let p = v6(0, &ext, &tcp_with_payload(8, b"HTTP/1.0 404 Not Found\r\n"));
        (p, 40 + ext.len() + 32)
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let (p, headers) = v6_with_extensions();
        let s = tcp_segment(&p).unwrap();
        assert_eq!(s.family, AF_INET6);
        assert_eq!(s.src[..4], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!((s.src[15], s.dst[15]), (1, 2));
        assert_eq!((s.sport, s.dport, s.seq), (80, 40000, 0xdead_beef));
        assert_eq!(s.payload, b"HTTP/1.0 404 Not Found\r\n");
        assert_eq!(s.payload_len, 24);
        assert_every_cut(&p, headers);
        // Padding after the payload length is not payload.
        let mut padded = p.clone();
        padded.extend_from_slice(b"\0\0junk");
        assert_eq!(tcp_segment(&padded), tcp_segment(&p));
    }

    #[test]
    fn ipv6_plain_routing_and_ah() {
        let p = v6(6, &[], &tcp_with_payload(5, b"x"));
        let s = tcp_segment(&p).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b"x"[..], 1));
        // Routing (type 4, segment routing, length 2 → 24 bytes), then AH (length 4 → 24 bytes).
        let mut ext = vec![51, 2, 4, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[0; 16]);
        ext.extend_from_slice(&[6, 4, 0, 0]);
        ext.extend_from_slice(&[0; 20]);
        let p = v6(43, &ext, &tcp_with_payload(5, b"yz"));
        let s = tcp_segment(&p).unwrap();
        assert_eq!((s.payload, s.payload_len), (&b"yz"[..], 2));
    }

    #[test]
    fn ipv6_refused() {
        let tcp = tcp_with_payload(5, b"HTTP/1.1 200 OK\r\n");
        // A later fragment.
        assert_eq!(tcp_segment(&v6(44, &[6, 0, 0x05, 0x38, 0, 0, 0, 1], &tcp)), None);
        // ESP, no next header, UDP, ICMPv6.
        for next in [50, 59, 17, 58] {
            assert_eq!(tcp_segment(&v6(next, &[6, 0, 0, 0, 0, 0, 0, 0], &tcp)), None, "next {next}");
        }
        // A jumbogram: payload length 0, the real length in a hop-by-hop jumbo option (RFC 2675).
        let mut p = v6_header(0, 0);
        p.extend_from_slice(&[6, 0, 0xc2, 4, 0, 0, 0, 8 + 37]);
        p.extend_from_slice(&tcp);
        assert_eq!(tcp_segment(&p), None);
        // Hop-by-hop after another extension header.
        assert_eq!(tcp_segment(&v6(60, &[0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0], &tcp)), None);
        // An extension header longer than the payload length says, though the bytes are there.
        let mut p = v6(60, &[6, 1, 1, 4, 0, 0, 0, 0], &tcp);
        p[5] = 8;
        assert_eq!(tcp_segment(&p), None);
        // A payload length shorter than the TCP header; then one a byte shorter than its options.
        let mut p = v6(6, &[], &tcp);
        p[5] = 19;
        assert_eq!(tcp_segment(&p), None);
        let mut p = v6(6, &[], &tcp_with_payload(6, b"abc"));
        p[5] = 23;
        assert_eq!(tcp_segment(&p), None);
        p[5] = 24;
        assert_eq!(tcp_segment(&p).map(|s| s.payload_len), Some(0));
        // Version 6 nibble in a short buffer; version 6 with the header cut.
        assert_eq!(tcp_segment(&[0x60]), None);
        assert_eq!(tcp_segment(&p[..39]), None);
    }

    #[test]
    fn ipv6_extension_headers_are_bounded() {
        let tcp = tcp_with_payload(5, b"p");
        // Seven destination options headers, then TCP: walked.
        let chain = |n: usize| {
            let mut ext = Vec::new();
            for i in 0..n {
                ext.extend_from_slice(&[if i + 1 == n { 6 } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
            }
            v6(60, &ext, &tcp)
        };
        assert_eq!(tcp_segment(&chain(7)).unwrap().payload, b"p");
        // Eight: past the bound.
        assert_eq!(tcp_segment(&chain(8)), None);
    }
}
