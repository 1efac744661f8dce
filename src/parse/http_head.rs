//! What a captured TCP segment starts with, for HTTP inspection (spec `http-inspection.md` §1.2,
//! §7.3, §7.5): HTTP/1.x request heads, HTTP/1.x response heads with their status codes, or a
//! MySQL server greeting. Stricter than upstream's test (`HTTP` + three bytes read as a code at
//! offsets 9-11), as §7.3 allows: the version, the digits and the byte after the code are checked,
//! so `HTTP/2`, TLS and body bytes are not taken for heads.
//!
//! Only the start of the segment is inspected, plus heads pipelined after it: a head is followed
//! by its body (length from its own `Content-Length`), and the next head must start exactly where
//! that body ends. Bodies are never searched, so body content cannot count as a head.
//!
//! Bytes in, a `Copy` value out: no allocation, no panic, and work linear in the captured bytes
//! (fuzz target `http_head`).

use super::cursor::u64_dec;

/// The most heads counted in one segment.
pub const MAX_HEADS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// Not a head we track.
    None,
    /// `n` request heads (1..=MAX_HEADS): the one the segment starts with, and those pipelined after it
    /// within the captured bytes.
    Requests(u8),
    /// Response heads with their status codes, in order (the first `n` entries of `codes` are
    /// valid), and where the response after the last of them starts, as an offset from the
    /// payload's start (possibly past the segment): known when the last head was captured whole
    /// and its body is framed by `Content-Length` or absent (1xx, 204, 304).
    Responses { n: u8, codes: [u16; MAX_HEADS], next: Option<u32> },
    /// A MySQL server greeting (protocol 10) that fills the segment exactly (spec §1.2, stricter).
    MysqlGreeting,
}

/// `payload`: the captured start of a TCP payload; `payload_len`: its length on the wire.
/// Bytes captured beyond `payload_len` are ignored.
pub fn classify(payload: &[u8], payload_len: u32) -> Heads {
    let wire = usize::try_from(payload_len).unwrap_or(usize::MAX);
    let b = payload.get(..wire.min(payload.len())).unwrap_or(&[]);
    if let Some(first) = status_line(b) {
        let mut codes = [0u16; MAX_HEADS];
        codes[0] = first.code;
        let mut n = 1;
        let mut head = first;
        while n < MAX_HEADS {
            let Some(next) = next_head_at(b, head, response_body(head.code)) else { break };
            let Some(following) = b.get(next..).and_then(status_line) else { break };
            head = following.shifted(next);
            codes[n] = head.code;
            n += 1;
        }
        let next = message_end(b, head, response_body(head.code));
        return Heads::Responses { n: n as u8, codes, next };
    }
    if let Some(first) = request_line(b) {
        let mut n = 1;
        let mut head = first;
        while n < MAX_HEADS {
            let Some(next) = next_head_at(b, head, request_body) else { break };
            let Some(following) = b.get(next..).and_then(request_line) else { break };
            head = following.shifted(next);
            n += 1;
        }
        return Heads::Requests(n as u8);
    }
    if mysql_greeting(b, payload_len) {
        return Heads::MysqlGreeting;
    }
    Heads::None
}

/// A recognised start line: where its header lines begin (`None` when the line is cut by the end
/// of the captured bytes), and a response's code.
#[derive(Clone, Copy)]
struct StartLine {
    headers_at: Option<usize>,
    code: u16,
}

impl StartLine {
    fn shifted(self, by: usize) -> StartLine {
        StartLine { headers_at: self.headers_at.and_then(|at| at.checked_add(by)), ..self }
    }
}

/// How a head says its body ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Body {
    Length(u64),
    /// Chunked, or until the connection closes, or malformed framing: the next head cannot be found.
    Unknown,
}

/// Fields of a head that decide its body.
#[derive(Clone, Copy, Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
}

fn request_body(f: Framing) -> Body {
    match f {
        Framing { transfer_encoding: true, .. } => Body::Unknown,
        Framing { content_length, .. } => Body::Length(content_length.unwrap_or(0)),
    }
}

/// RFC 9112 §6.3: 1xx, 204 and 304 never have a body; otherwise a length or nothing we can skip.
/// After 101 the connection speaks another protocol (e.g. WebSocket), so no head follows.
/// (A response to HEAD has no body either; the segment does not say, so its next head is missed.)
fn response_body(code: u16) -> impl Fn(Framing) -> Body {
    move |f| match (code, f) {
        (101, _) => Body::Unknown,
        (100..=199 | 204 | 304, _) => Body::Length(0),
        (_, Framing { transfer_encoding: true, .. }) | (_, Framing { content_length: None, .. }) => Body::Unknown,
        (_, Framing { content_length: Some(n), .. }) => Body::Length(n),
    }
}

/// Where the head after `head` starts in `b`: after its header lines and its body, if that is
/// inside the captured bytes.
fn next_head_at(b: &[u8], head: StartLine, body: impl Fn(Framing) -> Body) -> Option<usize> {
    let (end, framing) = header_block(b, head.headers_at?)?;
    let Body::Length(len) = body(framing) else { return None };
    let next = end.checked_add(usize::try_from(len).ok()?)?;
    (next < b.len()).then_some(next)
}

/// Where the message whose start line is `head` ends (its head and framed body), as an offset
/// that may lie past the captured bytes; `None` when its head was not captured whole or its body
/// is not framed by a length.
fn message_end(b: &[u8], head: StartLine, body: impl Fn(Framing) -> Body) -> Option<u32> {
    let (end, framing) = header_block(b, head.headers_at?)?;
    let Body::Length(len) = body(framing) else { return None };
    u32::try_from(u64::try_from(end).ok()?.checked_add(len)?).ok()
}

/// `HTTP/1.D CCC` then a space or `\r`, with CCC in 100..=999. A line cut by the end of the
/// captured bytes after the code counts (as upstream, which reads 12 bytes).
fn status_line(b: &[u8]) -> Option<StartLine> {
    let prefix = b.get(..12)?;
    if !prefix.starts_with(b"HTTP/1.") || !prefix[7].is_ascii_digit() || prefix[8] != b' ' {
        return None;
    }
    let mut code = 0u16;
    for &d in &prefix[9..12] {
        if !d.is_ascii_digit() {
            return None;
        }
        code = code * 10 + u16::from(d - b'0');
    }
    if code < 100 {
        return None;
    }
    let headers_at = match b.get(12) {
        None => None,
        // A reason phrase with control bytes still leaves a code; the heads after it are not looked for.
        Some(b' ' | b'\r') => line_end(b, 12).unwrap_or(None),
        Some(_) => return None,
    };
    Some(StartLine { headers_at, code })
}

/// Where the line holding `b[from]` ends (just after its `\r\n`); `Ok(None)` if it runs past the
/// captured bytes; `Err` for a bare `\n` or `\r`, or another control byte (horizontal tab aside).
fn line_end(b: &[u8], from: usize) -> Result<Option<usize>, ()> {
    let rest = b.get(from..).ok_or(())?;
    for (i, &c) in rest.iter().enumerate() {
        if c == b'\r' {
            return match rest.get(i + 1) {
                Some(b'\n') => Ok(from.checked_add(i + 2)),
                Some(_) => Err(()),
                None => Ok(None),
            };
        }
        if (c < 0x20 && c != b'\t') || c == 0x7f {
            return Err(());
        }
    }
    Ok(None)
}

const METHODS: [&[u8]; 9] = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT"];

/// `METHOD SP target SP HTTP/1.D CRLF`, the target without spaces or control bytes. A line cut by
/// the end of the captured bytes counts if what was captured fits, from the space after the
/// method on: the agent cannot see more.
fn request_line(b: &[u8]) -> Option<StartLine> {
    let method = METHODS.iter().find(|m| b.starts_with(m))?;
    let mut at = method.len();
    if *b.get(at)? != b' ' {
        return None;
    }
    at += 1;
    let target_at = at;
    loop {
        match b.get(at) {
            None => return Some(StartLine { headers_at: None, code: 0 }),
            Some(b' ') => break,
            Some(&c) if c < 0x20 || c == 0x7f => return None,
            Some(_) => at += 1,
        }
    }
    if at == target_at {
        return None;
    }
    const VERSION: &[u8; 11] = b" HTTP/1.D\r\n";
    for (i, &want) in VERSION.iter().enumerate() {
        let Some(&c) = b.get(at + i) else { return Some(StartLine { headers_at: None, code: 0 }) };
        let fits = if want == b'D' { c.is_ascii_digit() } else { c == want };
        if !fits {
            return None;
        }
    }
    Some(StartLine { headers_at: Some(at + VERSION.len()), code: 0 })
}

/// The header lines from `at` to the empty line: where the head ends (after `\r\n\r\n`) and the
/// fields that frame the body. `None` if the head runs past the captured bytes or is malformed
/// (a line without a field name and colon, a folded line, conflicting or bad `Content-Length`).
fn header_block(b: &[u8], mut at: usize) -> Option<(usize, Framing)> {
    let mut framing = Framing::default();
    loop {
        let end = line_end(b, at).ok()??;
        // The line without its CRLF.
        let line = b.get(at..end - 2)?;
        if line.is_empty() {
            return Some((end, framing));
        }
        let colon = line.iter().position(|&c| c == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&c| is_token(c)) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = u64_dec(trim(value))?;
            if framing.content_length.is_some_and(|seen| seen != n) {
                return None;
            }
            framing.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked (or, on a response, until close): either way the body's end is not here.
            framing.transfer_encoding = true;
        }
        at = end;
    }
}

/// RFC 9110 §5.6.2 tchar.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or(&[])
}

/// Protocol::HandshakeV10 after its 4-byte packet header: protocol 10, a non-empty printable
/// server version ended by NUL, thread id (4), auth-plugin-data-part-1 (8), filler 0, capability
/// flags (2); later fields are optional.
const MYSQL_GREETING_MIN: usize = 1 + 2 + 4 + 8 + 1 + 2;

/// One MySQL packet that fills the segment exactly (3-byte little-endian length = payload_len − 4,
/// sequence 0), holding protocol version 10 and the start of a HandshakeV10 as far as captured: a
/// printable server version, and the filler byte 0. Stricter than upstream (spec §1.2), which
/// stops at the framing and so also labels client command packets (e.g. COM_PROCESS_INFO, also
/// byte 10) and other protocols framed the same way.
fn mysql_greeting(b: &[u8], payload_len: u32) -> bool {
    let Some(&[l0, l1, l2, seq, protocol]) = b.get(..5) else { return false };
    let len = u32::from(l0) | u32::from(l1) << 8 | u32::from(l2) << 16;
    if payload_len.checked_sub(4) != Some(len) || seq != 0 || protocol != 10 {
        return false;
    }
    if (len as usize) < MYSQL_GREETING_MIN {
        return false;
    }
    let version = b.get(5..).unwrap_or(&[]);
    match version.iter().position(|&c| c == 0) {
        Some(0) => false,
        Some(nul) => {
            let printable = version[..nul].iter().all(|c| (0x20..0x7f).contains(c));
            // protocol + version + NUL + thread id + auth data part 1 (packet offsets after the header).
            let filler_at = 5 + nul + 1 + 4 + 8;
            let fits = filler_at + 3 <= 4 + len as usize;
            printable && fits && b.get(filler_at).is_none_or(|&f| f == 0)
        }
        // Cut inside the version string: what was captured must be printable.
        None => version.iter().all(|c| (0x20..0x7f).contains(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole segment captured (what `next` says is checked on its own below).
    fn whole(b: &[u8]) -> Heads {
        codes_only(classify(b, b.len() as u32))
    }

    fn codes_only(h: Heads) -> Heads {
        match h {
            Heads::Responses { n, codes, .. } => Heads::Responses { n, codes, next: None },
            other => other,
        }
    }

    fn responses(codes: &[u16]) -> Heads {
        let mut all = [0u16; MAX_HEADS];
        all[..codes.len()].copy_from_slice(codes);
        Heads::Responses { n: codes.len() as u8, codes: all, next: None }
    }

    fn next_of(b: &[u8], wire: u32) -> Option<u32> {
        match classify(b, wire) {
            Heads::Responses { next, .. } => next,
            other => panic!("not responses: {other:?}"),
        }
    }

    #[test]
    fn where_the_next_response_starts() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        // Past the segment: the body runs on in later segments.
        assert_eq!(next_of(head, 1400), Some(head.len() as u32 + 1000));
        // After the last of two heads in one segment.
        let two = b"HTTP/1.1 404 N\r\nContent-Length: 2\r\n\r\nnoHTTP/1.1 204 E\r\n\r\n";
        assert_eq!(next_of(two, two.len() as u32), Some(two.len() as u32));
        // An interim response ends with its head.
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(next_of(cont, cont.len() as u32), Some(cont.len() as u32));
        // Unknown: chunked, close-delimited, or a head cut by the snap length.
        assert_eq!(next_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", 60), None);
        assert_eq!(next_of(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody", 60), None);
        assert_eq!(next_of(&head[..20], 1400), None);
        // A length past what a sequence offset can say.
        assert_eq!(next_of(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 1400), None);
    }

    #[test]
    fn one_request_keep_alive() {
        let get = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        assert_eq!(whole(get), Heads::Requests(1));
        assert_eq!(whole(b"HEAD / HTTP/1.0\r\n\r\n"), Heads::Requests(1));
        assert_eq!(whole(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), Heads::Requests(1));
        assert_eq!(whole(b"OPTIONS * HTTP/1.1\r\n\r\n"), Heads::Requests(1));
    }

    #[test]
    fn pipelined_requests() {
        let three =
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(whole(three), Heads::Requests(3));
        // A body (its length from the head) is skipped to the next head.
        let post = b"POST /api HTTP/1.1\r\ncontent-LENGTH:  5 \r\n\r\nhelloDELETE /x/1 HTTP/1.1\r\n\r\n";
        assert_eq!(whole(post), Heads::Requests(2));
        // Only as many heads as MAX_HEADS.
        assert_eq!(whole(&b"GET / HTTP/1.1\r\n\r\n".repeat(10)), Heads::Requests(MAX_HEADS as u8));
    }

    #[test]
    fn bodies_are_not_searched_for_heads() {
        // The body is a request and a response; the head's length covers them.
        let post = b"POST /echo HTTP/1.1\r\nContent-Length: 37\r\n\r\nGET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(post.len() - post.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4, 37);
        assert_eq!(whole(post), Heads::Requests(1));
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nHTTP/1.1 500 Oops\r\n";
        assert_eq!(whole(resp), responses(&[200]));
        // A length that ends inside a head that follows: the next head is not where the body ends.
        let off = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxyHTTP/1.1 404 Not Found\r\n\r\n";
        assert_eq!(whole(off), responses(&[200]));
    }

    #[test]
    fn chunked_or_unframed_bodies_stop_the_count() {
        let chunked_req = b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(whole(chunked_req), Heads::Requests(1));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(whole(chunked), responses(&[200]));
        // No length: the body runs to the close.
        let close = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nHTTP/1.0 200 OK\r\n\r\n";
        assert_eq!(whole(close), responses(&[200]));
        // Two different lengths, a length that is not a number, one that overflows.
        for bad in
            ["Content-Length: 2\r\nContent-Length: 3", "Content-Length: +2", "Content-Length: 99999999999999999999"]
        {
            let r = format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\nabHTTP/1.1 200 OK\r\n\r\n");
            assert_eq!(whole(r.as_bytes()), responses(&[200]), "{bad}");
        }
        // The same length twice is one length.
        let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nabHTTP/1.1 201 Created\r\n\r\n";
        assert_eq!(whole(twice), responses(&[200, 201]));
        // A header line that is not a field, a folded line, a bare LF: the head's end is not trusted.
        for bad in ["Not a field", " folded", "X: a\nY: b"] {
            let r = format!("HTTP/1.1 204 No Content\r\n{bad}\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
            assert_eq!(whole(r.as_bytes()), responses(&[204]), "{bad:?}");
        }
    }

    #[test]
    fn response_after_a_content_length_body() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(whole(two), responses(&[200, 404]));
    }

    #[test]
    fn responses_without_bodies() {
        let cont = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(whole(cont), responses(&[100, 200]));
        // After 101 Switching Protocols the bytes are WebSocket frames, whatever they look like.
        let ws = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(whole(ws), responses(&[101]));
        // 204 and 304 have no body whatever Content-Length says (304: the length of the representation).
        let r = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n";
        assert_eq!(whole(r), responses(&[304, 204, 503]));
    }

    #[test]
    fn status_line_cut_at_every_snap_length() {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let second_at = first.len();
        let two = &[&first[..], b"HTTP/1.1 302 Found\r\n\r\n"].concat()[..];
        for cut in 0..=two.len() {
            let want = match cut {
                0..12 => Heads::None,
                _ if cut < second_at + 12 => responses(&[200]),
                _ => responses(&[200, 302]),
            };
            assert_eq!(codes_only(classify(&two[..cut], two.len() as u32)), want, "cut at {cut}");
        }
        // The segment itself may end right after the code (the reason phrase comes in the next one).
        assert_eq!(whole(b"HTTP/1.1 200"), responses(&[200]));
        // Captured bytes beyond payload_len do not count.
        assert_eq!(classify(two, 11), Heads::None);
        assert_eq!(codes_only(classify(two, second_at as u32 + 11)), responses(&[200]));
    }

    #[test]
    fn request_line_cut_at_every_snap_length() {
        let first = b"PATCH /v1/items/7 HTTP/1.1\r\nHost: a\r\n\r\n";
        let second_at = first.len();
        let two = &[&first[..], b"PUT /v1/items/8 HTTP/1.1\r\n\r\n"].concat()[..];
        for cut in 0..=two.len() {
            let want = match cut {
                0..6 => Heads::None,
                _ if cut < second_at + 4 => Heads::Requests(1),
                _ => Heads::Requests(2),
            };
            assert_eq!(codes_only(classify(&two[..cut], two.len() as u32)), want, "cut at {cut}");
        }
    }

    #[test]
    fn not_responses() {
        for b in [
            &b"HTTP/2.0 200 OK\r\n\r\n"[..],
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 200OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.x 200 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTPS/1.1 200 OK\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200\n\r\n",
            b" HTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert_eq!(whole(b), Heads::None, "{:?}", String::from_utf8_lossy(b));
        }
        // Upstream's bounds: 100 and 999 are codes.
        assert_eq!(whole(b"HTTP/1.0 100\r\n"), responses(&[100]));
        assert_eq!(whole(b"HTTP/1.1 999 Whatever\r\n\r\n"), responses(&[999]));
        // A reason phrase with a control byte: still a response, but its head's end is not trusted.
        assert_eq!(whole(b"HTTP/1.1 200 O\x01K\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), responses(&[200]));
    }

    #[test]
    fn not_requests() {
        for b in [
            &b"get / HTTP/1.1\r\n\r\n"[..],
            b"GETS / HTTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GE",
            b"GET",
            b"",
        ] {
            assert_eq!(whole(b), Heads::None, "{:?}", String::from_utf8_lossy(b));
        }
        // A second head that is not a request ends the count.
        assert_eq!(whole(b"GET / HTTP/1.1\r\n\r\nget / HTTP/1.1\r\n\r\n"), Heads::Requests(1));
        // A response after a request is not counted as either.
        assert_eq!(whole(b"GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), Heads::Requests(1));
    }

    #[test]
    fn tls_is_none() {
        // The start of a TLS 1.2 record holding a ClientHello (as curl sends it), and a ServerHello.
        #[rustfmt::skip]
        let client_hello = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5b, 0x3e, 0x9a, 0x07, 0x11,
            0x8c, 0x42, 0xd0, 0x6e, 0x21, 0xa4, 0x77, 0x90, 0x13, 0x5f, 0x2c, 0xee, 0x31, 0x04, 0x68, 0xab,
            0x5d, 0x0f, 0x87, 0x19, 0xc2, 0x4a, 0x3b, 0x70, 0x66, 0x12, 0xfe, 0x20, 0x9a, 0x1c, 0x33, 0x08,
            0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9,
        ];
        assert_eq!(classify(&client_hello, 517), Heads::None);
        let server_hello = [0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03, 0x00];
        assert_eq!(classify(&server_hello, 127), Heads::None);
    }

    /// A MySQL 8.0 server greeting, Protocol::HandshakeV10 as the MySQL source documentation lays
    /// it out (page_protocol_connection_phase_packets_protocol_handshake_v10).
    #[rustfmt::skip]
    const MYSQL8_GREETING: &[u8] = &[
        // Packet header: payload length 74 (little-endian, 3 bytes), sequence 0.
        0x4a, 0x00, 0x00, 0x00,
        // Protocol version 10.
        0x0a,
        // Server version "8.0.36", NUL.
        b'8', b'.', b'0', b'.', b'3', b'6', 0x00,
        // Thread (connection) id 8.
        0x08, 0x00, 0x00, 0x00,
        // auth-plugin-data-part-1 (8 bytes of scramble), filler 0.
        0x1f, 0x5c, 0x36, 0x0e, 0x3a, 0x12, 0x0b, 0x6f, 0x00,
        // Capability flags, lower 2 bytes; character set 255 (utf8mb4_0900_ai_ci);
        // status SERVER_STATUS_AUTOCOMMIT; capability flags, upper 2 bytes.
        0xff, 0xff, 0xff, 0x02, 0x00, 0xff, 0xdf,
        // auth_plugin_data_len 21, then 10 reserved zero bytes.
        0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        // auth-plugin-data-part-2: 12 bytes of scramble and NUL (13 = max(13, 21 - 8)).
        0x4d, 0x21, 0x2e, 0x63, 0x54, 0x1d, 0x76, 0x30, 0x5a, 0x4e, 0x01, 0x2f, 0x00,
        // auth_plugin_name "caching_sha2_password", NUL.
        b'c', b'a', b'c', b'h', b'i', b'n', b'g', b'_', b's', b'h', b'a', b'2', b'_',
        b'p', b'a', b's', b's', b'w', b'o', b'r', b'd', 0x00,
    ];

    #[test]
    fn mysql_greeting() {
        // The length field says what follows the 4-byte header.
        assert_eq!(MYSQL8_GREETING.len() - 4, 0x4a);
        assert_eq!(whole(MYSQL8_GREETING), Heads::MysqlGreeting);
        // Cut by the snap length anywhere from byte 5 on: what was captured still fits.
        for cut in 5..MYSQL8_GREETING.len() {
            assert_eq!(classify(&MYSQL8_GREETING[..cut], 78), Heads::MysqlGreeting, "cut at {cut}");
        }
        for cut in 0..5 {
            assert_eq!(classify(&MYSQL8_GREETING[..cut], 78), Heads::None, "cut at {cut}");
        }
        // It must fill the segment exactly.
        assert_eq!(classify(MYSQL8_GREETING, 77), Heads::None);
        assert_eq!(classify(MYSQL8_GREETING, 79), Heads::None);
        // Sequence 1, protocol 9, no filler, empty or unprintable version.
        for (at, byte) in [(3, 1), (4, 9), (24, 1), (5, 0), (6, 0x07)] {
            let mut g = MYSQL8_GREETING.to_vec();
            g[at] = byte;
            assert_eq!(whole(&g), Heads::None, "byte {at} = {byte}");
        }
        // A version so long that the fixed fields no longer fit the length.
        let mut g = vec![18, 0, 0, 0, 10];
        g.extend_from_slice(b"8.0.36-long\0");
        g.extend_from_slice(&[0; 6]);
        assert_eq!(whole(&g), Heads::None);
    }

    #[test]
    fn mysql_client_packets_are_not_greetings() {
        // COM_QUERY "select @@version_comment limit 1", as the mysql client sends it first.
        let mut q = vec![33, 0, 0, 0, 0x03];
        q.extend_from_slice(b"select @@version_comment limit 1");
        assert_eq!(q.len() - 4, 33);
        assert_eq!(whole(&q), Heads::None);
        // COM_PROCESS_INFO is command byte 10 and fills its packet: upstream's test takes it.
        assert_eq!(whole(&[1, 0, 0, 0, 0x0a]), Heads::None);
    }
}
