//! Sans-I/O HTTP/1.1 server framing for the trace intake: a request-head parser (`httparse`)
//! that keeps only what the intake needs in fixed-size fields, an incremental chunked-body
//! decoder, and a response writer. Limits are decided from the head, before a body byte is read.

use std::io::Write as _;

/// What the intake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    V03Traces,
    V04Traces,
    V05Traces,
    Info,
    /// The agent's own status report (`sts-agent status` reads it).
    Status,
    /// One PASS/FAIL line per component; 200 when healthy, 503 otherwise (`sts-agent health`).
    Health,
    /// The loop answers (`STS_HEALTH_PORT` only).
    Live,
    /// Every component is healthy (`STS_HEALTH_PORT` only).
    Ready,
    /// StackState's OpenTelemetry route (protobuf `ExportTraceServiceRequest`).
    OpenTelemetry,
    /// OTLP/HTTP traces (served on the OTLP listener only).
    OtlpTraces,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    None,
    Msgpack,
    Json,
    /// `application/x-protobuf` (OpenTelemetry).
    Protobuf,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// A short header value kept inline (no allocation); longer values are cut.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Inline<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Default for Inline<N> {
    fn default() -> Self {
        Inline { buf: [0; N], len: 0 }
    }
}

impl<const N: usize> Inline<N> {
    fn set(&mut self, v: &[u8]) {
        let n = v.len().min(N).min(255);
        self.buf[..n].copy_from_slice(&v[..n]);
        self.len = n as u8;
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.buf[..self.len as usize]).ok().filter(|s| !s.is_empty())
    }
}

impl<const N: usize> std::fmt::Debug for Inline<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RequestHead {
    pub route: Route,
    /// The method is `POST` (OTLP/HTTP takes no other).
    pub post: bool,
    pub content_type: ContentType,
    pub framing: Framing,
    /// Bytes of the head (request line, headers, blank line).
    pub head_len: usize,
    pub keep_alive: bool,
    /// `Sec-Fetch-Site: cross-site`: a browser page posting to the local agent; refused.
    pub cross_site: bool,
    pub container_id: Inline<128>,
    /// `X-Datadog-Trace-Count` or `X-Stackstate-Trace-Count`.
    pub trace_count: Option<u32>,
    pub expect_continue: bool,
    /// The media type of `Content-Type` (parameters cut), for replies that name it.
    pub media_type: Inline<64>,
    pub content_encoding: ContentEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400 with this reason.
    Bad(&'static str),
    /// 413: the declared body is larger than the limit.
    TooLarge,
    /// 431: the head itself is too large.
    HeadTooLarge,
}

/// Heads larger than this are refused (431).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Parses a request head at the start of `buf`. `Ok(None)`: more bytes are needed.
pub fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD { Err(HeadError::HeadTooLarge) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadTooLarge),
        Err(_) => return Err(HeadError::Bad("malformed HTTP request head")),
    };
    if head_len > MAX_HEAD {
        return Err(HeadError::HeadTooLarge);
    }
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let route = match path {
        "/v0.3/traces" => Route::V03Traces,
        "/v0.4/traces" => Route::V04Traces,
        "/v0.5/traces" => Route::V05Traces,
        "/info" => Route::Info,
        "/status" => Route::Status,
        "/health" => Route::Health,
        "/live" => Route::Live,
        "/ready" => Route::Ready,
        "/open-telemetry" => Route::OpenTelemetry,
        "/v1/traces" => Route::OtlpTraces,
        _ => Route::Other,
    };
    let http10 = req.version == Some(0);
    let mut h = RequestHead {
        route,
        post: req.method == Some("POST"),
        content_type: ContentType::None,
        framing: Framing::Length(0),
        head_len,
        keep_alive: !http10,
        cross_site: false,
        container_id: Inline::default(),
        trace_count: None,
        expect_continue: false,
        media_type: Inline::default(),
        content_encoding: ContentEncoding::Identity,
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for hd in req.headers.iter() {
        let (name, v) = (hd.name, hd.value);
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(HeadError::Bad("malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if v.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked")) {
                chunked = true;
            } else if !v.trim_ascii().eq_ignore_ascii_case(b"identity") {
                return Err(HeadError::Bad("unsupported Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            let t = v.split(|b| *b == b';').next().unwrap_or(&[]).trim_ascii();
            h.media_type.set(t);
            h.content_type = if t.eq_ignore_ascii_case(b"application/msgpack") {
                ContentType::Msgpack
            } else if t.eq_ignore_ascii_case(b"application/json") || t.eq_ignore_ascii_case(b"text/json") {
                ContentType::Json
            } else if t.eq_ignore_ascii_case(b"application/x-protobuf") {
                ContentType::Protobuf
            } else if t.is_empty() {
                ContentType::None
            } else {
                ContentType::Other
            };
        } else if name.eq_ignore_ascii_case("connection") {
            for t in v.split(|b| *b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    h.keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    h.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("sec-fetch-site") {
            h.cross_site = v.trim_ascii().eq_ignore_ascii_case(b"cross-site");
        } else if name.eq_ignore_ascii_case("datadog-container-id") {
            h.container_id.set(v.trim_ascii());
        } else if name.eq_ignore_ascii_case("x-datadog-trace-count")
            || name.eq_ignore_ascii_case("x-stackstate-trace-count")
        {
            h.trace_count = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse().ok());
        } else if name.eq_ignore_ascii_case("content-encoding") {
            let t = v.trim_ascii();
            h.content_encoding = if t.eq_ignore_ascii_case(b"gzip") || t.eq_ignore_ascii_case(b"x-gzip") {
                ContentEncoding::Gzip
            } else if t.is_empty() || t.eq_ignore_ascii_case(b"identity") {
                ContentEncoding::Identity
            } else {
                ContentEncoding::Other
            };
        } else if name.eq_ignore_ascii_case("expect") {
            h.expect_continue = v.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    h.framing = match (chunked, length) {
        // Both: chunked wins and the length is ignored (RFC 9112 §6.3), but a request smuggling
        // attempt is better refused outright.
        (true, Some(_)) => return Err(HeadError::Bad("both Content-Length and chunked Transfer-Encoding")),
        (true, None) => Framing::Chunked,
        (false, Some(n)) if n > max_body => return Err(HeadError::TooLarge),
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Length(0),
    };
    Ok(Some(h))
}

/// An incremental chunked-body decoder: feed it bytes as they arrive; data goes to `out`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dechunker {
    state: ChunkState,
    /// Bytes left in the current chunk, or the size being read.
    n: usize,
    /// Digits or line bytes seen in the current size/trailer line (bounds hostile lines).
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// After the size digits: chunk extensions up to CRLF.
    SizeExt,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    /// The body is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    Malformed,
    TooLarge,
}

impl Dechunker {
    /// Consumes from `input`; returns how many bytes were consumed and whether the body is
    /// complete. `out` never grows past `max_body`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, max_body: usize) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::Done {
            let b = input[i];
            match self.state {
                ChunkState::Size => match (b as char).to_digit(16) {
                    Some(d) if self.line < 15 => {
                        self.n = self.n * 16 + d as usize;
                        self.line += 1;
                    }
                    Some(_) => return Err(ChunkError::Malformed),
                    None if self.line == 0 => return Err(ChunkError::Malformed),
                    None if b == b'\r' => self.state = ChunkState::SizeLf,
                    None if b == b';' || b == b' ' || b == b'\t' => self.state = ChunkState::SizeExt,
                    None => return Err(ChunkError::Malformed),
                },
                ChunkState::SizeExt => {
                    self.line += 1;
                    if self.line > 1024 {
                        return Err(ChunkError::Malformed);
                    }
                    if b == b'\r' {
                        self.state = ChunkState::SizeLf;
                    }
                }
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Malformed);
                    }
                    self.line = 0;
                    if self.n == 0 {
                        self.state = ChunkState::Trailer;
                    } else {
                        if out.len().saturating_add(self.n) > max_body {
                            return Err(ChunkError::TooLarge);
                        }
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    let take = self.n.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    self.n -= take;
                    i += take;
                    if self.n == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::Malformed);
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Malformed);
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    if b == b'\r' {
                        self.state = ChunkState::TrailerLf;
                    } else {
                        self.line += 1;
                        if self.line > MAX_HEAD {
                            return Err(ChunkError::Malformed);
                        }
                    }
                }
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Malformed);
                    }
                    if self.line == 0 {
                        self.state = ChunkState::Done;
                    } else {
                        self.line = 0;
                        self.state = ChunkState::Trailer;
                    }
                }
                ChunkState::Done => {}
            }
            i += 1;
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

/// Appends a complete response.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let _ =
        write!(out, "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if status == 405 {
        // Required with a 405; the only route that answers it is OTLP's `/v1/traces`.
        out.extend_from_slice(b"Allow: POST\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// One connection's request/response cycle, without I/O: the caller appends received bytes to
/// `input`, calls [`ConnMachine::step`], answers each [`Step::Request`] with
/// [`ConnMachine::respond`], and writes out `out`. Head → body → respond, keep-alive, pipelining,
/// Content-Length and chunked bodies, limits decided from the head, error replies queued in `out`.
#[derive(Debug, Default)]
pub struct ConnMachine {
    state: MachineState,
    dechunk: Dechunker,
    /// Bytes received and not consumed yet.
    pub input: Vec<u8>,
    /// A de-chunked body.
    pub body: Vec<u8>,
    /// Bytes to send.
    pub out: Vec<u8>,
    /// A request's first byte has arrived and its reply is not queued yet.
    started: bool,
    /// Where a Content-Length body starts in `input`: its head stays in front of it until the
    /// reply, so the body is never moved (a 10 MB body is not shifted by a few hundred bytes).
    body_start: usize,
}

// A head travels by value on purpose: no allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default, Clone, Copy)]
enum MachineState {
    #[default]
    Head,
    Body(RequestHead),
    /// The last reply is queued; close once it is written.
    Closing,
}

/// What the machine needs next.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step<'a> {
    /// More bytes.
    NeedMore,
    /// A complete request: answer it with [`ConnMachine::respond`].
    Request(RequestHead, &'a [u8]),
    /// An error reply with this status is queued in `out`; the connection closes after it.
    Rejected(u16),
}

/// Headers on every reply.
pub const AGENT_HEADERS: [(&str, &str); 1] = [("Datadog-Agent-Version", env!("CARGO_PKG_VERSION"))];

/// Marks the agent's own health report (`GET /health`), so that `sts-agent health` can tell it
/// from whatever else answers on the port it asks (`control::health_report`).
pub const HEALTH_MARK: (&str, &str) = ("X-Sts-Agent", "health");

/// Headers on a health report: [`AGENT_HEADERS`] and [`HEALTH_MARK`].
pub const HEALTH_HEADERS: [(&str, &str); 2] = [AGENT_HEADERS[0], HEALTH_MARK];

impl ConnMachine {
    /// A request is under way (for the read deadline).
    pub fn in_request(&self) -> bool {
        self.started
    }

    /// Bytes this connection holds for its request: what it has received and not answered (a
    /// `Content-Length` counts only as its bytes arrive: a head alone holds nothing of the
    /// intake's budget). 0 between requests, whatever the buffers' capacity (idle keep-alive
    /// connections do not count against the intake's budget).
    pub fn held(&self) -> usize {
        self.input.len() + self.body.len()
    }

    /// The connection should close once `out` is written.
    pub fn closing(&self) -> bool {
        matches!(self.state, MachineState::Closing)
    }

    /// The client has finished sending (end of stream between requests): close once `out` is
    /// written, so replies to everything it sent still reach it.
    pub fn finish(&mut self) {
        self.state = MachineState::Closing;
        self.started = false;
    }

    /// Back to a fresh connection's state, keeping the buffers' storage.
    pub fn reset(&mut self) {
        self.state = MachineState::Head;
        self.dechunk = Dechunker::default();
        self.input.clear();
        self.body.clear();
        self.out.clear();
        self.started = false;
        self.body_start = 0;
    }

    fn reject(&mut self, status: u16, reason: &[u8]) -> Step<'_> {
        write_response(&mut self.out, status, "text/plain", reason, false, &AGENT_HEADERS);
        self.state = MachineState::Closing;
        self.started = false;
        Step::Rejected(status)
    }

    /// 413 naming the limit in bytes: `STS_APM_MAX_PAYLOAD_SIZE` on the trace intake, and at most
    /// 4 MiB of it on the OTLP port (the variable alone would mislead there).
    fn too_large(&mut self, max_body: usize) -> Step<'_> {
        let mut reason = [0u8; 96];
        let mut w = std::io::Cursor::new(&mut reason[..]);
        let _ = writeln!(w, "request body larger than the listener's limit of {max_body} bytes");
        let n = w.position() as usize;
        self.reject(413, &reason[..n])
    }

    /// Advances on the bytes in `input`. `max_body`: the body limit; `room`: how many bytes this
    /// connection may hold in all (the intake's shared budget less what the others hold): a
    /// request that could not fit gets 429 from its head, and one whose bytes pass it as they
    /// arrive (the others took the room meanwhile) gets 429 then.
    pub fn step(&mut self, max_body: usize, room: usize) -> Step<'_> {
        loop {
            match self.state {
                MachineState::Closing => return Step::NeedMore,
                MachineState::Head => {
                    if self.input.is_empty() {
                        return Step::NeedMore;
                    }
                    self.started = true;
                    let head = match parse_head(&self.input, max_body) {
                        Ok(None) => return Step::NeedMore,
                        Ok(Some(h)) => h,
                        Err(HeadError::TooLarge) => return self.too_large(max_body),
                        Err(HeadError::HeadTooLarge) => return self.reject(431, b"request head too large\n"),
                        Err(HeadError::Bad(why)) => {
                            let mut reason = [0u8; 128];
                            let n = why.len().min(127);
                            reason[..n].copy_from_slice(&why.as_bytes()[..n]);
                            reason[n] = b'\n';
                            return self.reject(400, &reason[..n + 1]);
                        }
                    };
                    if head.cross_site {
                        return self.reject(403, b"cross-site requests are refused\n");
                    }
                    match head.framing {
                        Framing::Length(n) => {
                            if (head.head_len + n).max(self.input.len()) > room {
                                return self.reject(429, b"the agent is busy; retry later\n");
                            }
                            self.body_start = head.head_len;
                            self.input.reserve((head.head_len + n).saturating_sub(self.input.len()));
                        }
                        // The dechunker consumes from the front as chunks arrive.
                        Framing::Chunked => {
                            self.input.drain(..head.head_len);
                            self.body_start = 0;
                        }
                    }
                    if head.expect_continue {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    self.dechunk = Dechunker::default();
                    self.body.clear();
                    self.state = MachineState::Body(head);
                }
                MachineState::Body(head) => match head.framing {
                    Framing::Length(n) => {
                        let end = self.body_start + n;
                        if self.input.len() < end {
                            if self.held() > room {
                                return self.reject(429, b"the agent is busy; retry later\n");
                            }
                            return Step::NeedMore;
                        }
                        return Step::Request(head, &self.input[self.body_start..end]);
                    }
                    Framing::Chunked => {
                        if self.held() > room {
                            return self.reject(429, b"the agent is busy; retry later\n");
                        }
                        match self.dechunk.feed(&self.input, &mut self.body, max_body) {
                            Ok((used, done)) => {
                                self.input.drain(..used);
                                if !done {
                                    return Step::NeedMore;
                                }
                                return Step::Request(head, &self.body);
                            }
                            Err(ChunkError::TooLarge) => return self.too_large(max_body),
                            Err(ChunkError::Malformed) => return self.reject(400, b"malformed chunked body\n"),
                        }
                    }
                },
            }
        }
    }

    /// Queues the reply to the request [`ConnMachine::step`] returned, and consumes it.
    pub fn respond(&mut self, status: u16, content_type: &str, reply: &[u8]) {
        self.respond_with(status, content_type, reply, &AGENT_HEADERS);
    }

    /// [`ConnMachine::respond`] with `headers` in place of [`AGENT_HEADERS`].
    pub fn respond_with(&mut self, status: u16, content_type: &str, reply: &[u8], headers: &[(&str, &str)]) {
        let MachineState::Body(head) = self.state else { return };
        write_response(&mut self.out, status, content_type, reply, head.keep_alive, headers);
        match head.framing {
            Framing::Length(n) => drop(self.input.drain(..(self.body_start + n).min(self.input.len()))),
            Framing::Chunked => self.body.clear(),
        }
        self.started = false;
        self.body_start = 0;
        self.state = if head.keep_alive { MachineState::Head } else { MachineState::Closing };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_real_clients() {
        let req = b"PUT /v0.4/traces HTTP/1.1\r\nHost: localhost:8126\r\nContent-Type: application/msgpack\r\nX-Datadog-Trace-Count: 3\r\nDatadog-Container-ID: abc123\r\nContent-Length: 10\r\n\r\n0123456789";
        let h = parse_head(req, 100).unwrap().unwrap();
        assert_eq!(
            (h.route, h.content_type, h.framing, h.keep_alive),
            (Route::V04Traces, ContentType::Msgpack, Framing::Length(10), true)
        );
        assert_eq!((h.trace_count, h.container_id.as_str()), (Some(3), Some("abc123")));
        assert_eq!(&req[h.head_len..], b"0123456789");
        assert!(matches!(parse_head(&req[..30], 100), Ok(None)), "a partial head needs more bytes");
        let h = parse_head(
            b"POST /v0.5/traces?x=1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\nSec-Fetch-Site: cross-site\r\n\r\n",
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.route, h.framing, h.keep_alive, h.cross_site), (Route::V05Traces, Framing::Chunked, false, true));
        assert_eq!(
            parse_head(b"POST /v0.4/traces HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100).unwrap_err(),
            HeadError::TooLarge
        );
        assert!(matches!(
            parse_head(b"POST /v0.4/traces HTTP/1.1\r\nContent-Length: x\r\n\r\n", 100),
            Err(HeadError::Bad(_))
        ));
        assert!(matches!(parse_head(b"GARBAGE\r\n\r\n", 100), Err(HeadError::Bad(_))));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 100),
            Err(HeadError::Bad(_))
        ));
        // OpenTelemetry: the routes, the protobuf type, the media type kept for replies, gzip.
        let h = parse_head(
            b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n\r\n",
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.route, h.content_type, h.content_encoding),
            (Route::OtlpTraces, ContentType::Protobuf, ContentEncoding::Gzip)
        );
        let h = parse_head(
            b"POST /open-telemetry HTTP/1.1\r\nContent-Type: Text/Plain; charset=utf-8\r\nContent-Encoding: br\r\n\r\n",
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (h.route, h.content_type, h.media_type.as_str()),
            (Route::OpenTelemetry, ContentType::Other, Some("Text/Plain"))
        );
        assert_eq!(h.content_encoding, ContentEncoding::Other);
        let huge = [b"GET /info HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; MAX_HEAD + 10]].concat();
        assert_eq!(parse_head(&huge, 100).unwrap_err(), HeadError::HeadTooLarge);
    }

    #[test]
    fn chunked_bodies_byte_by_byte_and_hostile() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        let mut used = 0;
        let mut done = false;
        for i in 0..body.len() {
            if done {
                break;
            }
            let (n, dn) = d.feed(&body[i..i + 1], &mut out, 100).unwrap();
            used += n;
            done = dn;
        }
        assert!(done);
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&body[used..], b"NEXT");
        for bad in [&b"x\r\n"[..], b"4\r\nWikiXX", b"4\n", b"fffffffffffffffff\r\n"] {
            assert_eq!(Dechunker::default().feed(bad, &mut Vec::new(), 100), Err(ChunkError::Malformed), "{bad:?}");
        }
        assert_eq!(Dechunker::default().feed(b"65\r\n", &mut Vec::new(), 100), Err(ChunkError::TooLarge));
    }

    /// Two pipelined requests (one chunked), then a bad one, fed a byte at a time.
    #[test]
    fn the_machine_frames_pipelined_requests() {
        let wire = b"PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /v0.5/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nBAD\r\n\r\n";
        let mut m = ConnMachine::default();
        let mut seen = Vec::new();
        let mut rejected = None;
        for &b in wire.iter() {
            m.input.push(b);
            loop {
                match m.step(100, 1000) {
                    Step::NeedMore => break,
                    Step::Request(h, body) => {
                        seen.push((h.route, body.to_vec()));
                        m.respond(200, "text/plain", b"OK\n");
                    }
                    Step::Rejected(st) => {
                        rejected = Some(st);
                        break;
                    }
                }
            }
        }
        assert_eq!(seen, vec![(Route::V04Traces, b"abc".to_vec()), (Route::V05Traces, b"xy".to_vec())]);
        assert_eq!(rejected, Some(400));
        assert!(m.closing());
        let out = String::from_utf8(m.out.clone()).unwrap();
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2);
        assert!(out.ends_with("malformed HTTP request head\n"), "{out}");
        // The shared budget: a body larger than the room left gets 429 from the head.
        let mut m = ConnMachine::default();
        m.input.extend_from_slice(b"PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 50\r\n\r\n");
        assert!(matches!(m.step(100, 10), Step::Rejected(429)));
    }

    /// What a connection counts against the intake's budget: what it has received of its request
    /// (a Content-Length head alone reserves nothing), and nothing between requests whatever its
    /// buffers' capacity. A body whose bytes pass the room left gets 429 as they arrive.
    #[test]
    fn held_bytes_and_end_of_stream() {
        let mut m = ConnMachine::default();
        m.input.extend_from_slice(b"PUT /v0.4/traces HTTP/1.1\r\nContent-Le");
        assert!(matches!(m.step(1000, 1000), Step::NeedMore));
        assert_eq!(m.held(), m.input.len());
        m.input.extend_from_slice(b"ngth: 500\r\n\r\nxyz");
        let head_len = m.input.len() - 3;
        assert!(matches!(m.step(1000, 1000), Step::NeedMore));
        assert_eq!(m.held(), head_len + 3, "what has arrived, not what the head declares");
        m.input.resize(head_len + 500, b'x');
        assert!(matches!(m.step(1000, 1000), Step::Request(..)));
        m.respond(200, "text/plain", b"OK\n");
        assert!(!m.in_request() && m.input.is_empty() && m.input.capacity() >= 500);
        assert_eq!(m.held(), 0, "idle between requests");
        // Chunked: what is buffered, body included.
        m.input.extend_from_slice(b"POST /v0.5/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        assert!(matches!(m.step(1000, 1000), Step::NeedMore));
        assert_eq!(m.held(), 3);
        // Room for the declared body when its head came, taken by others meanwhile: 429 as the
        // bytes pass what is left.
        let mut m = ConnMachine::default();
        m.input.extend_from_slice(b"PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 500\r\n\r\n");
        let head_len = m.input.len();
        assert!(matches!(m.step(1000, 1000), Step::NeedMore));
        m.input.resize(head_len + 200, b'x');
        assert!(matches!(m.step(1000, head_len + 200), Step::NeedMore), "within the room");
        m.input.push(b'x');
        assert!(matches!(m.step(1000, head_len + 200), Step::Rejected(429)));
        // The client stops sending between requests: close once the replies are out.
        let mut m = ConnMachine::default();
        m.finish();
        assert!(m.closing() && !m.in_request());
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "text/plain", b"OK\n", false, &[("Datadog-Agent-Version", "1")]);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nDatadog-Agent-Version: 1\r\nConnection: close\r\n\r\nOK\n");
    }
}
