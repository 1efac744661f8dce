//! The Docker Engine's event stream (`GET /events`): an HTTP/1.1 chunked body of JSON objects,
//! one per event, each ended by a newline (Go's `json.Encoder`). Read incrementally: bytes from
//! the socket go through [`Dechunker`] (the chunked framing), then [`LineFramer`] (one object
//! per line, bounded), then [`event`] (the fields the agent needs, borrowed from the line).
//!
//! Nothing allocates per event: data slices are borrowed from the bytes read; only an event
//! split across reads is copied, into the framer's buffer, which is reused and never grows past
//! its bound. A line longer than the bound is skipped whole and counted, and loses nothing else.

/// What broke the chunked framing (the stream must be reconnected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError(pub &'static str);

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A chunk-size line (hex size, optional `;extension`) longer than this is not HTTP.
const MAX_SIZE_LINE: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` so far, then (after `;`) an extension until CR LF.
    Size {
        size: u64,
        digits: u32,
        ext: bool,
        len: u32,
    },
    /// The LF after the size line's CR.
    SizeLf {
        size: u64,
    },
    /// `left` data bytes of the current chunk to come.
    Data {
        left: u64,
    },
    /// The CR LF after a chunk's data (`cr` once the CR was seen).
    DataEnd {
        cr: bool,
    },
    /// After the last (zero) chunk: trailer lines until an empty one; `len` of the current line.
    Trailer {
        len: u32,
        cr: bool,
    },
    Done,
}

/// Sans-I/O decoder of an HTTP/1.1 chunked body: fed the bytes read, hands back the data
/// (borrowed from them) in order.
#[derive(Debug, Clone)]
pub struct Dechunker {
    state: ChunkState,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker { state: ChunkState::Size { size: 0, digits: 0, ext: false, len: 0 } }
    }
}

impl Dechunker {
    /// The terminating zero chunk and its trailer were read: the body is complete.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input`, calling `data` with each run of body bytes. After an error the decoder
    /// stays broken (every later call fails): the connection is unusable.
    pub fn feed<'a>(&mut self, input: &'a [u8], mut data: impl FnMut(&'a [u8])) -> Result<(), FramingError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match &mut self.state {
                ChunkState::Size { size, digits, ext, len } => {
                    *len += 1;
                    if *len > MAX_SIZE_LINE {
                        return self.fail("chunked: size line too long");
                    }
                    if b == b'\r' {
                        if *digits == 0 {
                            return self.fail("chunked: empty chunk size");
                        }
                        self.state = ChunkState::SizeLf { size: *size };
                    } else if *ext {
                        // Extensions are ignored (RFC 9112 §7.1.1).
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        if *digits == 0 {
                            return self.fail("chunked: empty chunk size");
                        }
                        *ext = true;
                    } else {
                        let Some(d) = (b as char).to_digit(16) else {
                            return self.fail("chunked: chunk size is not hexadecimal");
                        };
                        *digits += 1;
                        // 15 hex digits are 2^60 bytes: far more than any stream, and no overflow.
                        if *digits > 15 {
                            return self.fail("chunked: chunk size too large");
                        }
                        *size = *size << 4 | u64::from(d);
                    }
                    i += 1;
                }
                ChunkState::SizeLf { size } => {
                    if b != b'\n' {
                        return self.fail("chunked: size line without LF");
                    }
                    self.state = match *size {
                        0 => ChunkState::Trailer { len: 0, cr: false },
                        n => ChunkState::Data { left: n },
                    };
                    i += 1;
                }
                ChunkState::Data { left } => {
                    let n = (input.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    data(&input[i..i + n]);
                    *left -= n as u64;
                    i += n;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd { cr: false };
                    }
                }
                ChunkState::DataEnd { cr } => {
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) => self.state = ChunkState::Size { size: 0, digits: 0, ext: false, len: 0 },
                        _ => return self.fail("chunked: chunk data not followed by CR LF"),
                    }
                    i += 1;
                }
                ChunkState::Trailer { len, cr } => {
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) if *len == 0 => self.state = ChunkState::Done,
                        (b'\n', true) => {
                            *len = 0;
                            *cr = false;
                        }
                        (_, false) if *len < MAX_SIZE_LINE => *len += 1,
                        _ => return self.fail("chunked: bad trailer"),
                    }
                    i += 1;
                }
                ChunkState::Done => return self.fail("chunked: bytes after the end of the body"),
            }
        }
        Ok(())
    }

    fn fail(&mut self, why: &'static str) -> Result<(), FramingError> {
        // Broken for good: a `Size` state with too many digits fails on its next byte.
        self.state = ChunkState::Size { size: 0, digits: 16, ext: false, len: MAX_SIZE_LINE };
        Err(FramingError(why))
    }
}

/// One newline-delimited item of the de-chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line (without its newline; may be blank).
    Whole(&'a [u8]),
    /// A line longer than the bound was skipped; its length so far (at least the bound).
    TooLong(usize),
}

/// Splits the de-chunked body into lines. A line within one run of data is handed over in
/// place; one split across runs is gathered in a buffer of at most `max` bytes, reused.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
    /// Skipping the rest of a line that outgrew `max`; how long it is so far.
    skipping: Option<usize>,
}

impl LineFramer {
    pub fn new(max: usize) -> LineFramer {
        LineFramer { buf: Vec::new(), max, skipping: None }
    }

    /// Bytes held for an incomplete line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets a partial line (the stream was reconnected).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.skipping = None;
    }

    /// Feeds one run of body bytes; `f` gets each line completed by them.
    pub fn push(&mut self, mut data: &[u8], mut f: impl FnMut(Line<'_>)) {
        while !data.is_empty() {
            let nl = memchr::memchr(b'\n', data);
            let (part, rest, complete) = match nl {
                Some(p) => (&data[..p], &data[p + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if let Some(n) = &mut self.skipping {
                *n += part.len();
                if complete {
                    f(Line::TooLong(*n));
                    self.skipping = None;
                }
                continue;
            }
            if self.buf.len() + part.len() > self.max {
                let n = self.buf.len() + part.len();
                self.buf.clear();
                if complete {
                    f(Line::TooLong(n));
                } else {
                    self.skipping = Some(n);
                }
                continue;
            }
            match (complete, self.buf.is_empty()) {
                (true, true) => f(Line::Whole(part)),
                (true, false) => {
                    self.buf.extend_from_slice(part);
                    f(Line::Whole(&self.buf));
                    self.buf.clear();
                }
                (false, _) => self.buf.extend_from_slice(part),
            }
        }
    }
}

/// A JSON string's content as it is on the wire (between the quotes, escapes not decoded);
/// checked to be well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JStr<'a>(pub &'a [u8]);

impl<'a> JStr<'a> {
    pub fn raw(&self) -> &'a [u8] {
        self.0
    }

    /// Appends the decoded string to `out` (escapes resolved; a `\u` escape that is not a
    /// valid scalar value becomes U+FFFD).
    pub fn unescape_into(&self, out: &mut Vec<u8>) {
        let s = self.0;
        let mut i = 0;
        while i < s.len() {
            let Some(p) = memchr::memchr(b'\\', &s[i..]) else {
                out.extend_from_slice(&s[i..]);
                return;
            };
            out.extend_from_slice(&s[i..i + p]);
            i += p + 1;
            let Some(&e) = s.get(i) else { return };
            i += 1;
            let c = match e {
                b'n' => '\n',
                b't' => '\t',
                b'r' => '\r',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'u' => {
                    let hi = hex4(s.get(i..i + 4));
                    i += 4;
                    let cp = match hi {
                        Some(h @ 0xD800..=0xDBFF) if s.get(i..i + 2) == Some(b"\\u") => {
                            match hex4(s.get(i + 2..i + 6)) {
                                Some(l @ 0xDC00..=0xDFFF) => {
                                    i += 6;
                                    0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00)
                                }
                                _ => 0xFFFD,
                            }
                        }
                        Some(h) => h,
                        None => 0xFFFD,
                    };
                    char::from_u32(cp).unwrap_or('\u{FFFD}')
                }
                other => other as char,
            };
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
}

fn hex4(b: Option<&[u8]>) -> Option<u32> {
    let b = b?;
    let mut v = 0;
    for &c in b {
        v = v << 4 | (c as char).to_digit(16)?;
    }
    Some(v)
}

/// The fields of one event the agent uses. Strings are borrowed from the line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// `Type`: `container`, `image`, `network`, …
    pub kind: JStr<'a>,
    /// `Action`, cut at the first `:` (`exec_start: sh -c …` is `exec_start`,
    /// `health_status: healthy` is `health_status`).
    pub action: JStr<'a>,
    /// `Actor.ID`.
    pub id: JStr<'a>,
    /// `Actor.Attributes`: `name`, `image`, `exitCode`, `signal`.
    pub name: Option<JStr<'a>>,
    pub image: Option<JStr<'a>>,
    pub exit_code: Option<JStr<'a>>,
    pub signal: Option<JStr<'a>>,
    /// The container's ECS labels (`com.amazonaws.ecs.*`), also in `Actor.Attributes`.
    pub ecs: EcsLabels<'a>,
    /// `time` (unix seconds) and `timeNano` (unix nanoseconds); 0 when absent.
    pub time: i64,
    pub time_nano: i64,
}

/// The `com.amazonaws.ecs.*` labels the ECS agent puts on every task container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcsLabels<'a> {
    pub task_arn: Option<JStr<'a>>,
    pub family: Option<JStr<'a>>,
    pub version: Option<JStr<'a>>,
    pub container_name: Option<JStr<'a>>,
    pub cluster: Option<JStr<'a>>,
}

impl Event<'_> {
    /// The event's time in nanoseconds: `timeNano`, else `time` in seconds.
    pub fn nanos(&self) -> i64 {
        if self.time_nano != 0 {
            self.time_nano
        } else {
            self.time.saturating_mul(1_000_000_000)
        }
    }
}

/// Why a line is not an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventError(pub &'static str);

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

const MAX_DEPTH: u32 = 32;

/// Reads one event object. Unknown keys are skipped (checked, not kept); a key given twice
/// keeps its last value, as Go does.
pub fn event(line: &[u8]) -> Result<Event<'_>, EventError> {
    let mut r = Reader { b: line, pos: 0 };
    let mut ev = Event::default();
    r.object(|r, key| {
        match key {
            b"Type" => ev.kind = r.string()?,
            b"Action" => {
                let a = r.string()?;
                let cut = memchr::memchr(b':', a.0).unwrap_or(a.0.len());
                ev.action = JStr(&a.0[..cut]);
            }
            b"time" => ev.time = r.int()?,
            b"timeNano" => ev.time_nano = r.int()?,
            b"Actor" => r.object(|r, key| {
                match key {
                    b"ID" => ev.id = r.string()?,
                    b"Attributes" => r.object(|r, key| {
                        let v = Some(r.string()?);
                        match key {
                            b"name" => ev.name = v,
                            b"image" => ev.image = v,
                            b"exitCode" => ev.exit_code = v,
                            b"signal" => ev.signal = v,
                            b"com.amazonaws.ecs.task-arn" => ev.ecs.task_arn = v,
                            b"com.amazonaws.ecs.task-definition-family" => ev.ecs.family = v,
                            b"com.amazonaws.ecs.task-definition-version" => ev.ecs.version = v,
                            b"com.amazonaws.ecs.container-name" => ev.ecs.container_name = v,
                            b"com.amazonaws.ecs.cluster" => ev.ecs.cluster = v,
                            _ => {}
                        }
                        Ok(())
                    })?,
                    _ => r.skip(1)?,
                }
                Ok(())
            })?,
            _ => r.skip(1)?,
        }
        Ok(())
    })?;
    if !r.at_end() {
        return Err(EventError("event: bytes after the object"));
    }
    Ok(ev)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

const EOF: EventError = EventError("event: unexpected end");

impl<'a> Reader<'a> {
    fn peek(&mut self) -> Result<u8, EventError> {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.b.get(self.pos) {
            self.pos += 1;
        }
        self.b.get(self.pos).copied().ok_or(EOF)
    }

    fn at_end(&mut self) -> bool {
        self.peek().is_err()
    }

    fn expect(&mut self, c: u8, why: &'static str) -> Result<(), EventError> {
        if self.peek()? != c {
            return Err(EventError(why));
        }
        self.pos += 1;
        Ok(())
    }

    /// `{ "key": value, … }`, calling `f` for each key with the reader at its value (which
    /// `f` must consume).
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Result<(), EventError>) -> Result<(), EventError> {
        self.expect(b'{', "event: expected an object")?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':', "event: expected ':'")?;
            f(self, key.0)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(EventError("event: expected ',' or '}'")),
            }
        }
    }

    /// A string, checked (escapes well formed, no control characters), not decoded.
    fn string(&mut self) -> Result<JStr<'a>, EventError> {
        self.expect(b'"', "event: expected a string")?;
        let start = self.pos;
        loop {
            let p = memchr::memchr2(b'"', b'\\', &self.b[self.pos..]).ok_or(EOF)?;
            if self.b[self.pos..self.pos + p].iter().any(|&c| c < 0x20) {
                return Err(EventError("event: control character in a string"));
            }
            self.pos += p;
            if self.b[self.pos] == b'"' {
                let s = &self.b[start..self.pos];
                self.pos += 1;
                return Ok(JStr(s));
            }
            match self.b.get(self.pos + 1).ok_or(EOF)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                b'u' => {
                    if hex4(self.b.get(self.pos + 2..self.pos + 6)).is_none() {
                        return Err(EventError("event: bad \\u escape"));
                    }
                    self.pos += 6;
                }
                _ => return Err(EventError("event: bad escape")),
            }
        }
    }

    /// An integer (Docker writes `time` and `timeNano` as plain integers).
    fn int(&mut self) -> Result<i64, EventError> {
        self.peek()?;
        let neg = self.b[self.pos] == b'-';
        if neg {
            self.pos += 1;
        }
        let start = self.pos;
        let mut v: i64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.pos) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(c - b'0')))
                .ok_or(EventError("event: integer too large"))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(EventError("event: expected an integer"));
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.pos) {
            return Err(EventError("event: expected an integer"));
        }
        Ok(if neg { -v } else { v })
    }

    /// Skips any value, checking its syntax; nesting is bounded.
    fn skip(&mut self, depth: u32) -> Result<(), EventError> {
        if depth > MAX_DEPTH {
            return Err(EventError("event: nested too deeply"));
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(|r, _| r.skip(depth + 1)),
            b'[' => {
                self.pos += 1;
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(EventError("event: expected ',' or ']'")),
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.b.get(self.pos) {
                    self.pos += 1;
                }
                std::str::from_utf8(&self.b[start..self.pos])
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|_| ())
                    .ok_or(EventError("event: bad number"))
            }
            _ => Err(EventError("event: unexpected byte")),
        }
    }

    fn word(&mut self, w: &[u8]) -> Result<(), EventError> {
        if self.b.get(self.pos..self.pos + w.len()) != Some(w) {
            return Err(EventError("event: bad literal"));
        }
        self.pos += w.len();
        Ok(())
    }
}

/// `since=`/`until=` as Docker reads them: `<secs>.<9-digit nanos>` (no allocation).
pub fn format_timestamp(nanos: i64, out: &mut [u8; 32]) -> &str {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let mut w = &mut out[..];
    let _ = std::io::Write::write_fmt(&mut w, format_args!("{secs}.{frac:09}"));
    let n = 32 - w.len();
    std::str::from_utf8(&out[..n]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Docker 20.10.24 on this project's CI machine (`curl --unix-socket …
    /// '/events?since=…&until=…&filters=…'`, a `docker run --label com.amazonaws.ecs.cluster=prod`).
    const CAPTURED: &[u8] = br#"{"status":"create","id":"1a582e7c66264480506e66ae4b9ece945f4d61de83e3a415ac8224d757d8d2ea","from":"sts-test-4728-cap:latest","Type":"container","Action":"create","Actor":{"ID":"1a582e7c66264480506e66ae4b9ece945f4d61de83e3a415ac8224d757d8d2ea","Attributes":{"com.amazonaws.ecs.cluster":"prod","image":"sts-test-4728-cap:latest","name":"sts-test-4728-cap"}},"scope":"local","time":1796186493,"timeNano":1796186493952366427}"#;
    /// The same shape, edited: ECS labels, an exit code, an exec action with escapes.
    const START: &[u8] = br#"{"status":"start","id":"3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f","from":"busybox:1.36","Type":"container","Action":"start","Actor":{"ID":"3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f","Attributes":{"com.amazonaws.ecs.cluster":"prod","com.amazonaws.ecs.task-arn":"arn:aws:ecs:eu-west-1:1:task/prod/abc","image":"busybox:1.36","name":"web-1"}},"scope":"local","time":1700000000,"timeNano":1700000000123456789}"#;
    const DIE: &[u8] = br#"{"status":"die","id":"3f5a","from":"busybox","Type":"container","Action":"die","Actor":{"ID":"3f5a","Attributes":{"exitCode":"137","image":"busybox","name":"oom-1"}},"scope":"local","time":1700000001,"timeNano":1700000001000000001}"#;
    const EXEC: &[u8] = br#"{"status":"exec_start: /bin/sh -c \"echo hi\"","id":"3f5a","from":"busybox","Type":"container","Action":"exec_start: /bin/sh -c \"echo hi\"","Actor":{"ID":"3f5a","Attributes":{"execID":"9a","image":"busybox","name":"x"}},"scope":"local","time":1700000002,"timeNano":1700000002000000000}"#;

    #[test]
    fn fields_of_captured_events() {
        let c = event(CAPTURED).unwrap();
        assert_eq!((c.kind.raw(), c.action.raw()), (&b"container"[..], &b"create"[..]));
        assert_eq!(c.id.raw(), b"1a582e7c66264480506e66ae4b9ece945f4d61de83e3a415ac8224d757d8d2ea");
        assert_eq!(
            (c.name.unwrap().raw(), c.image.unwrap().raw()),
            (&b"sts-test-4728-cap"[..], &b"sts-test-4728-cap:latest"[..])
        );
        assert_eq!((c.ecs.cluster.unwrap().raw(), c.nanos()), (&b"prod"[..], 1_796_186_493_952_366_427));
        let e = event(START).unwrap();
        assert_eq!(e.kind.raw(), b"container");
        assert_eq!(e.action.raw(), b"start");
        assert_eq!(e.id.raw().len(), 64);
        assert_eq!(e.name.unwrap().raw(), b"web-1");
        assert_eq!(e.image.unwrap().raw(), b"busybox:1.36");
        assert_eq!(e.ecs.cluster.unwrap().raw(), b"prod");
        assert_eq!(e.ecs.task_arn.unwrap().raw(), b"arn:aws:ecs:eu-west-1:1:task/prod/abc");
        assert_eq!(e.ecs.family, None);
        assert_eq!((e.time, e.nanos()), (1_700_000_000, 1_700_000_000_123_456_789));
        let d = event(DIE).unwrap();
        assert_eq!((d.action.raw(), d.exit_code.unwrap().raw()), (&b"die"[..], &b"137"[..]));
        let x = event(EXEC).unwrap();
        assert_eq!(x.action.raw(), b"exec_start", "cut at the first ':'");
        let h = event(
            br#"{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"a","Attributes":{}},"time":5}"#,
        )
        .unwrap();
        assert_eq!((h.action.raw(), h.nanos()), (&b"health_status"[..], 5_000_000_000));
    }

    #[test]
    fn bad_events_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"Type\":\"container\"",
            b"{\"time\":1.5}",
            b"{\"time\":99999999999999999999}",
            b"{\"Type\":\"a\\x\"}",
            b"{\"Type\":\"a\x01\"}",
            b"{\"Actor\":{\"Attributes\":{\"name\":1}}}",
            b"{} x",
            b"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        ] {
            assert!(event(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Unknown keys of every kind are skipped.
        let e = event(br#"{"x":[1,-2.5e3,true,false,null,{"y":"z"}],"Type":"container","Action":"kill"}"#).unwrap();
        assert_eq!(e.action.raw(), b"kill");
    }

    #[test]
    fn escaped_strings_decode() {
        let e = event(br#"{"Actor":{"Attributes":{"name":"a\"b\\c\u00e9\ud83d\ude00\n"}}}"#).unwrap();
        let mut out = Vec::new();
        e.name.unwrap().unescape_into(&mut out);
        assert_eq!(std::str::from_utf8(&out).unwrap(), "a\"b\\c\u{e9}\u{1F600}\n");
        out.clear();
        JStr(br"\ud800x").unescape_into(&mut out);
        assert_eq!(std::str::from_utf8(&out).unwrap(), "\u{FFFD}x");
    }

    /// Chunks of the captured lines, cut at every byte position, give back the same body.
    #[test]
    fn chunked_body_split_anywhere() {
        let mut body = Vec::new();
        let lines = [CAPTURED, START, DIE, EXEC];
        for l in lines {
            body.extend_from_slice(format!("{:x}\r\n", l.len() + 1).as_bytes());
            body.extend_from_slice(l);
            body.extend_from_slice(b"\n\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        for cut in 0..body.len() {
            for cut2 in [cut, (cut + 7).min(body.len())] {
                let mut d = Dechunker::default();
                let mut framer = LineFramer::new(4096);
                let mut got: Vec<Vec<u8>> = Vec::new();
                for part in [&body[..cut], &body[cut..cut2], &body[cut2..]] {
                    d.feed(part, |data| {
                        framer.push(data, |l| match l {
                            Line::Whole(w) => got.push(w.to_vec()),
                            Line::TooLong(_) => panic!("not too long"),
                        })
                    })
                    .unwrap();
                }
                assert!(d.done());
                assert_eq!(got, lines.iter().map(|l| l.to_vec()).collect::<Vec<_>>(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn chunked_framing_errors() {
        for bad in [&b"x\r\n"[..], b"\r\n", b"5\r\nabcdeXY", b"5\nab", b"1234567890123456\r\n", b"0\r\n\r\nmore"] {
            let mut d = Dechunker::default();
            assert!(d.feed(bad, |_| {}).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(d.feed(b"1\r\na\r\n", |_| {}).is_err(), "stays broken");
        }
        let mut d = Dechunker::default();
        let mut got = Vec::new();
        d.feed(b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: y\r\n\r\n", |b| got.extend_from_slice(b)).unwrap();
        assert!(d.done());
        assert_eq!(got, b"abc");
    }

    #[test]
    fn an_oversize_line_is_skipped_and_counted_and_loses_nothing_else() {
        let mut f = LineFramer::new(16);
        let mut got = Vec::new();
        let mut push = |f: &mut LineFramer, b: &[u8]| {
            f.push(b, |l| {
                got.push(match l {
                    Line::Whole(w) => String::from_utf8_lossy(w).into_owned(),
                    Line::TooLong(n) => format!("too long {n}"),
                })
            })
        };
        push(&mut f, b"short\nabcdefghij");
        push(&mut f, b"klmnopqrstuvwxyz");
        assert_eq!(f.buffered(), 0, "the oversize line is not held");
        push(&mut f, b"0123\nnext\n");
        push(&mut f, &[b'z'; 40]);
        push(&mut f, b"\nlast\n");
        assert_eq!(got, ["short", "too long 30", "next", "too long 40", "last"]);
    }

    #[test]
    fn timestamps_as_docker_reads_them() {
        let mut b = [0; 32];
        assert_eq!(format_timestamp(1_700_000_000_000_000_001, &mut b), "1700000000.000000001");
        assert_eq!(format_timestamp(5, &mut b), "0.000000005");
        assert_eq!(format_timestamp(i64::MAX, &mut b), "9223372036.854775807");
    }
}
