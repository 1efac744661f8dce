//! Sans-I/O HTTP/1.1 client framing: a request-head writer and a response parser that is a pure
//! function of the bytes received so far (`httparse` for the head; Content-Length, chunked, or
//! read-until-close for the body).

use std::ops::Range;

/// Appends a request head for a body of `content_length` bytes.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    content_length: usize,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    for (k, v) in headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(b"\r\nContent-Length: ");
    let _ = serde_json::to_writer(&mut *out, &content_length);
    out.extend_from_slice(b"\r\n\r\n");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Bytes of the buffer this response used (head and body).
    pub consumed: usize,
    pub keep_alive: bool,
    /// `Retry-After` in seconds, when given as seconds.
    pub retry_after: Option<u64>,
    /// The body, or for a chunked body its first chunk (enough for an error log line).
    pub body_excerpt: Range<usize>,
    /// Where the body starts, and whether it is chunked (see [`body_into`]).
    pub body_start: usize,
    pub chunked: bool,
}

/// Appends the whole body of `r` (parsed from `buf`) to `out`, de-chunking when needed.
pub fn body_into(buf: &[u8], r: &Response, out: &mut Vec<u8>) {
    let raw = buf.get(r.body_start..r.consumed).unwrap_or(&[]);
    if !r.chunked {
        out.extend_from_slice(buf.get(r.body_excerpt.clone()).unwrap_or(&[]));
        return;
    }
    let mut pos = 0;
    while let Some(eol) = raw.get(pos..).and_then(|r| memchr::memmem::find(r, b"\r\n")) {
        let line = raw.get(pos..pos + eol).unwrap_or(&[]);
        let hex = line.split(|b| *b == b';').next().unwrap_or(&[]).trim_ascii();
        let Some(size) = std::str::from_utf8(hex).ok().and_then(|h| usize::from_str_radix(h, 16).ok()) else { return };
        pos += eol + 2;
        if size == 0 {
            return;
        }
        out.extend_from_slice(raw.get(pos..pos + size).unwrap_or(&[]));
        pos += size + 2;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    BadHead,
    BadContentLength,
    BadChunk,
    /// The peer closed before the response was complete.
    Truncated,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpError::BadHead => "malformed HTTP response head",
            HttpError::BadContentLength => "malformed Content-Length",
            HttpError::BadChunk => "malformed chunked body",
            HttpError::Truncated => "connection closed before the response was complete",
        })
    }
}

const MAX_HEADERS: usize = 48;

/// Parses one response from the start of `buf`. `Ok(None)`: need more bytes. `eof`: the peer
/// has closed, so a body without framing ends here.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return if eof { Err(HttpError::Truncated) } else { Ok(None) },
        Err(_) => return Err(HttpError::BadHead),
    };
    let status = resp.code.ok_or(HttpError::BadHead)?;
    let http10 = resp.version == Some(0);
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut close = http10;
    let mut retry_after = None;
    for h in resp.headers.iter() {
        let v = h.value;
        if h.name.eq_ignore_ascii_case("content-length") {
            let s = std::str::from_utf8(v).map_err(|_| HttpError::BadContentLength)?;
            let n: usize = s.trim().parse().map_err(|_| HttpError::BadContentLength)?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpError::BadContentLength);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in v.split(|b| *b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse().ok());
        }
    }
    let body = buf.get(head_len..).unwrap_or(&[]);
    // 1xx, 204 and 304 have no body whatever the headers say.
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let (body_excerpt, body_len, keep_alive) = if no_body {
        (head_len..head_len, 0, !close)
    } else if chunked {
        match dechunk(body)? {
            None => return if eof { Err(HttpError::Truncated) } else { Ok(None) },
            Some((first, len)) => ((first.start + head_len)..(first.end + head_len), len, !close),
        }
    } else if let Some(n) = content_length {
        if body.len() < n {
            return if eof { Err(HttpError::Truncated) } else { Ok(None) };
        }
        (head_len..head_len + n, n, !close)
    } else {
        // No framing: the body runs to the end of the connection.
        if !eof {
            return Ok(None);
        }
        (head_len..buf.len(), body.len(), false)
    };
    Ok(Some(Response {
        status,
        consumed: head_len + body_len,
        keep_alive,
        retry_after,
        body_excerpt,
        body_start: head_len,
        chunked: chunked && !no_body,
    }))
}

/// Walks a chunked body: `Some((first chunk's data range, total encoded length))` once the
/// terminating chunk and trailers are all there.
fn dechunk(body: &[u8]) -> Result<Option<(Range<usize>, usize)>, HttpError> {
    let mut pos = 0;
    let mut first: Option<Range<usize>> = None;
    loop {
        let rest = body.get(pos..).unwrap_or(&[]);
        let Some(eol) = memchr::memmem::find(rest, b"\r\n") else {
            return if rest.len() > 1024 { Err(HttpError::BadChunk) } else { Ok(None) };
        };
        let line = rest.get(..eol).unwrap_or(&[]);
        let size_hex = line.split(|b| *b == b';').next().unwrap_or(&[]).trim_ascii();
        if size_hex.is_empty() || size_hex.len() > 15 {
            return Err(HttpError::BadChunk);
        }
        let mut size: usize = 0;
        for &b in size_hex {
            let d = (b as char).to_digit(16).ok_or(HttpError::BadChunk)?;
            size = size * 16 + d as usize;
        }
        pos += eol + 2;
        if size == 0 {
            // Trailers, each ended by CRLF, then an empty line.
            loop {
                let rest = body.get(pos..).unwrap_or(&[]);
                let Some(eol) = memchr::memmem::find(rest, b"\r\n") else { return Ok(None) };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((first.unwrap_or(0..0), pos)));
                }
            }
        }
        let end = pos.checked_add(size).ok_or(HttpError::BadChunk)?;
        if body.len() < end + 2 {
            return Ok(None);
        }
        if body.get(end..end + 2) != Some(b"\r\n") {
            return Err(HttpError::BadChunk);
        }
        first.get_or_insert(pos..end);
        pos = end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head() {
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            "POST",
            "/stsAgent/api/v1/series?api_key=k",
            "h:7077",
            &[("Content-Encoding", "deflate")],
            12,
        );
        assert_eq!(
            out,
            b"POST /stsAgent/api/v1/series?api_key=k HTTP/1.1\r\nHost: h:7077\r\nContent-Encoding: deflate\r\nContent-Length: 12\r\n\r\n"
        );
    }

    #[test]
    fn content_length_incrementally() {
        let full = b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhelloNEXT";
        for cut in 0..full.len() - 4 {
            assert_eq!(parse_response(&full[..cut], false).unwrap(), None, "cut {cut}");
        }
        let r = parse_response(full, false).unwrap().unwrap();
        assert_eq!((r.status, r.consumed, r.keep_alive), (202, full.len() - 4, true));
        assert_eq!(&full[r.body_excerpt], b"hello");
        assert_eq!(parse_response(&full[..20], true), Err(HttpError::Truncated));
    }

    #[test]
    fn chunked_with_trailers_and_close() {
        let full = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nRetry-After: 7\r\n\r\n4;x=y\r\nboom\r\n3\r\n!!!\r\n0\r\nT: v\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_response(&full[..cut], false).unwrap(), None, "cut {cut}");
        }
        let r = parse_response(full, false).unwrap().unwrap();
        assert_eq!((r.status, r.consumed, r.keep_alive, r.retry_after), (500, full.len(), false, Some(7)));
        assert_eq!(&full[r.body_excerpt.clone()], b"boom");
        let mut body = Vec::new();
        body_into(full, &r, &mut body);
        assert_eq!(body, b"boom!!!");
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
            Err(HttpError::BadChunk)
        );
    }

    #[test]
    fn unframed_body_ends_at_close_and_no_body_statuses() {
        let b = b"HTTP/1.0 200 OK\r\n\r\nabc";
        assert_eq!(parse_response(b, false).unwrap(), None);
        let r = parse_response(b, true).unwrap().unwrap();
        assert_eq!((r.consumed, r.keep_alive), (b.len(), false));
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap().unwrap();
        assert!(r.keep_alive && r.body_excerpt.is_empty());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(parse_response(b"garbage\r\n\r\n", false), Err(HttpError::BadHead));
    }
}
