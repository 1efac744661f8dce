//! A small zero-copy JSON reader for `/v0.3` trace bodies: strings without escapes stay in the
//! body (as ranges), escaped ones are decoded into the batch's side buffer; numbers are read in
//! place; nesting is limited. Nothing allocates except the side buffer, which never grows by
//! more than the string being decoded, or by its repair (invalid UTF-8 becomes U+FFFD, one per
//! invalid byte, as Go's `encoding/json` does), which asks the batch's limit for room first;
//! nothing panics.

use super::msgpack::{DecodeError, Result};
use super::traces::{repair_append, TOO_LARGE};
use crate::model::trace::Batch;

pub const MAX_DEPTH: u32 = 64;

/// A decoded string: `Body(off, len)` in the body, or `Side(off, len)` in the side buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JStr {
    Body(usize, usize),
    Side(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

pub struct JsonReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const EOF: DecodeError = DecodeError("json: unexpected end of body");

impl<'a> JsonReader<'a> {
    pub fn new(buf: &'a [u8]) -> JsonReader<'a> {
        JsonReader { buf, pos: 0 }
    }

    /// A reader resuming at `pos` of `buf` (a value whose position was noted earlier, read out
    /// of order: OTLP/JSON may send a resource after its spans).
    pub fn at(buf: &'a [u8], pos: usize) -> JsonReader<'a> {
        JsonReader { buf, pos }
    }

    /// Where the next value starts (blanks skipped).
    pub fn position(&mut self) -> usize {
        self.ws();
        self.pos
    }

    /// The whole body (strings are ranges into it).
    pub fn body(&self) -> &'a [u8] {
        self.buf
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-blank byte, not consumed.
    pub fn peek(&mut self) -> Result<u8> {
        self.ws();
        self.buf.get(self.pos).copied().ok_or(EOF)
    }

    pub fn expect(&mut self, b: u8, what: &'static str) -> Result<()> {
        if self.peek()? != b {
            return Err(DecodeError(what));
        }
        self.pos += 1;
        Ok(())
    }

    /// After a value inside `[`…`]` or `{`…`}`: `true` when another element follows (a comma
    /// was consumed), `false` at the closing byte (consumed).
    pub fn more(&mut self, close: u8) -> Result<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Ok(true)
            }
            b if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(DecodeError("json: expected ',' or a closing bracket")),
        }
    }

    /// Opens an array or object: `true` when it is not empty (its close was consumed otherwise).
    pub fn open(&mut self, open: u8, close: u8, what: &'static str) -> Result<bool> {
        self.expect(open, what)?;
        if self.peek()? == close {
            self.pos += 1;
            return Ok(false);
        }
        Ok(true)
    }

    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.pos >= self.buf.len()
    }

    /// `null`, consumed when present.
    pub fn null(&mut self) -> Result<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.buf.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(DecodeError("json: invalid literal"));
        }
        self.pos += word.len();
        Ok(())
    }

    /// A string; escapes are decoded into `out`'s side buffer, and so is the repair of a string
    /// that is not UTF-8 (each invalid byte becomes U+FFFD; [`TOO_LARGE`] when the repair does
    /// not fit the batch's limit). A valid string without escapes stays in the body; every copy
    /// into the side buffer (escapes, runs, repairs) asks the batch for room first.
    pub fn string(&mut self, out: &mut Batch) -> Result<JStr> {
        self.expect(b'"', "json: expected a string")?;
        let start = self.pos;
        // Fast path: no escape before the closing quote, valid UTF-8.
        let rest = self.buf.get(start..).unwrap_or(&[]);
        let end = memchr::memchr2(b'"', b'\\', rest).ok_or(EOF)?;
        if rest[end] == b'"' {
            let s = &rest[..end];
            if s.iter().any(|b| *b < 0x20) {
                return Err(DecodeError("json: control character in a string"));
            }
            if std::str::from_utf8(s).is_ok() {
                self.pos = start + end + 1;
                return Ok(JStr::Body(start, end));
            }
            // Not UTF-8: repaired into the side buffer below.
        }
        let side_start = out.side.len();
        let mut i = start;
        loop {
            let b = *self.buf.get(i).ok_or(EOF)?;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = *self.buf.get(i + 1).ok_or(EOF)?;
                    i += 2;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4(i)?;
                            i += 4;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if self.buf.get(i..i + 2) != Some(b"\\u") {
                                    return Err(DecodeError("json: unpaired surrogate"));
                                }
                                let lo = self.hex4(i + 2)?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(DecodeError("json: unpaired surrogate"));
                                }
                                i += 6;
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or(DecodeError("json: invalid \\u escape"))?
                        }
                        _ => return Err(DecodeError("json: invalid escape")),
                    };
                    let mut tmp = [0u8; 4];
                    let c = c.encode_utf8(&mut tmp).as_bytes();
                    if !out.fits(c.len()) {
                        return Err(TOO_LARGE);
                    }
                    out.side.extend_from_slice(c);
                }
                0..=0x1f => return Err(DecodeError("json: control character in a string")),
                _ => {
                    // Copy the run up to the next quote or escape.
                    let rest = self.buf.get(i..).unwrap_or(&[]);
                    let run_end = memchr::memchr2(b'"', b'\\', rest).map_or(self.buf.len(), |n| i + n);
                    let run = self.buf.get(i..run_end).unwrap_or(&[]);
                    if run.iter().any(|b| *b < 0x20) {
                        return Err(DecodeError("json: control character in a string"));
                    }
                    if std::str::from_utf8(run).is_ok() {
                        if !out.fits(run.len()) {
                            return Err(TOO_LARGE);
                        }
                        out.side.extend_from_slice(run);
                    } else {
                        repair_append(run, out);
                        if out.exceeded {
                            return Err(TOO_LARGE);
                        }
                    }
                    i = run_end;
                }
            }
        }
        self.pos = i + 1;
        Ok(JStr::Side(side_start, out.side.len() - side_start))
    }

    fn hex4(&self, at: usize) -> Result<u32> {
        let h = self.buf.get(at..at + 4).ok_or(EOF)?;
        let mut v = 0u32;
        for &b in h {
            v = v * 16 + (b as char).to_digit(16).ok_or(DecodeError("json: invalid \\u escape"))?;
        }
        Ok(v)
    }

    /// A number: an integer when it has no fraction or exponent.
    pub fn number(&mut self) -> Result<Num> {
        self.ws();
        let start = self.pos;
        let mut float = false;
        while let Some(&b) = self.buf.get(self.pos) {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.pos += 1;
        }
        let digits = self.buf.get(start..self.pos).unwrap_or(&[]);
        let text = std::str::from_utf8(digits).map_err(|_| DecodeError("json: invalid number"))?;
        if text.is_empty() {
            return Err(DecodeError("json: expected a number"));
        }
        if !float {
            if let Ok(i) = text.parse::<i128>() {
                return Ok(Num::Int(i));
            }
        }
        text.parse::<f64>().map(Num::Float).map_err(|_| DecodeError("json: invalid number"))
    }

    /// Skips one value of any type, nested at most [`MAX_DEPTH`] deep.
    pub fn skip(&mut self, out: &mut Batch) -> Result<()> {
        self.skip_at(0, out)
    }

    fn skip_at(&mut self, depth: u32, out: &mut Batch) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("json: nested too deeply"));
        }
        match self.peek()? {
            b'{' => {
                if self.open(b'{', b'}', "json: expected an object")? {
                    loop {
                        let mark = out.side.len();
                        self.string(out)?;
                        out.side.truncate(mark);
                        self.expect(b':', "json: expected ':'")?;
                        self.skip_at(depth + 1, out)?;
                        if !self.more(b'}')? {
                            break;
                        }
                    }
                }
            }
            b'[' => {
                if self.open(b'[', b']', "json: expected an array")? {
                    loop {
                        self.skip_at(depth + 1, out)?;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
            }
            b'"' => {
                let mark = out.side.len();
                self.string(out)?;
                out.side.truncate(mark);
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_numbers_and_nesting() {
        let body = br#" ["plain", "esc\"aped \u00e9 \ud83d\ude00", 12, -3, 1.5e3, 18446744073709551615, {"a":[true,false,null]}] "#;
        let mut r = JsonReader::new(body);
        let mut out = Batch::default();
        assert!(r.open(b'[', b']', "x").unwrap());
        assert_eq!(r.string(&mut out), Ok(JStr::Body(3, 5)));
        assert!(r.more(b']').unwrap());
        let JStr::Side(o, l) = r.string(&mut out).unwrap() else { panic!("escaped") };
        assert_eq!(std::str::from_utf8(&out.side[o..o + l]).unwrap(), "esc\"aped é 😀");
        assert!(r.more(b']').unwrap());
        assert_eq!(r.number(), Ok(Num::Int(12)));
        assert!(r.more(b']').unwrap());
        assert_eq!(r.number(), Ok(Num::Int(-3)));
        assert!(r.more(b']').unwrap());
        assert_eq!(r.number(), Ok(Num::Float(1500.0)));
        assert!(r.more(b']').unwrap());
        assert_eq!(r.number(), Ok(Num::Int(u64::MAX as i128)));
        assert!(r.more(b']').unwrap());
        assert_eq!(r.skip(&mut out), Ok(()));
        assert!(!r.more(b']').unwrap());
        assert!(r.at_end());
    }

    #[test]
    fn hostile_inputs_are_errors() {
        let mut out = Batch::default();
        let deep = "[".repeat(10_000);
        assert_eq!(JsonReader::new(deep.as_bytes()).skip(&mut out), Err(DecodeError("json: nested too deeply")));
        for bad in
            [&b"\"\\ud800\""[..], b"\"\\x\"", b"\"abc", b"tru", b"-", b"\"a\nb\"", b"\"\xff\x01\"", b"\"\\n\xff\x1f\""]
        {
            assert!(JsonReader::new(bad).skip(&mut out).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_repaired_within_the_limit() {
        // One U+FFFD per invalid byte (Go's encoding/json), with or without escapes; a valid
        // string stays in the body.
        let body = b"[\"a\xffb\xe2\x82\", \"\\t\xc3\", \"\xf0\x9f\x98\x80\"]";
        let mut r = JsonReader::new(body);
        let mut out = Batch::default();
        assert!(r.open(b'[', b']', "x").unwrap());
        let JStr::Side(o, l) = r.string(&mut out).unwrap() else { panic!("repaired") };
        assert_eq!(std::str::from_utf8(&out.side[o..o + l]).unwrap(), "a\u{fffd}b\u{fffd}\u{fffd}");
        assert!(r.more(b']').unwrap());
        let JStr::Side(o, l) = r.string(&mut out).unwrap() else { panic!("escaped") };
        assert_eq!(std::str::from_utf8(&out.side[o..o + l]).unwrap(), "\t\u{fffd}");
        assert!(r.more(b']').unwrap());
        assert_eq!(r.string(&mut out), Ok(JStr::Body(body.len() - 6, 4)));
        assert!(!r.more(b']').unwrap());
        // A repair asks the batch for room: 1,000 invalid bytes are 3,000 bytes repaired.
        let mut long = b"\"".to_vec();
        long.extend(std::iter::repeat_n(0xffu8, 1000));
        long.push(b'"');
        let mut out = Batch { limit: 2_000, ..Batch::default() };
        assert_eq!(JsonReader::new(&long).string(&mut out), Err(TOO_LARGE));
        assert!(out.side.len() <= 2_000);
        let mut out = Batch { limit: 3_000, ..Batch::default() };
        assert!(JsonReader::new(&long).string(&mut out).is_ok());
        assert_eq!(out.side.len(), 3_000);
    }

    #[test]
    fn escaped_strings_respect_the_limit() {
        // An escape sends the whole string to the side buffer: the copy of a long string with
        // one escape, read or skipped, is refused when it does not fit the batch's limit.
        let mut long = b"\"\\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', 10_000));
        long.extend_from_slice(b"\\t\"");
        let mut out = Batch { limit: 2_000, ..Batch::default() };
        assert_eq!(JsonReader::new(&long).string(&mut out), Err(TOO_LARGE));
        assert!(out.side.len() <= 2_000, "{}", out.side.len());
        let mut out = Batch { limit: 2_000, ..Batch::default() };
        let mut skipped = b"{\"x\":".to_vec();
        skipped.extend_from_slice(&long);
        skipped.push(b'}');
        assert_eq!(JsonReader::new(&skipped).skip(&mut out), Err(TOO_LARGE));
        assert!(out.side.capacity() <= 4_096, "{}", out.side.capacity());
        // Within the limit the same string is read whole.
        let mut out = Batch { limit: 20_000, ..Batch::default() };
        let JStr::Side(o, l) = JsonReader::new(&long).string(&mut out).unwrap() else { panic!("escaped") };
        assert_eq!(l, 10_002);
        assert_eq!(&out.side[o..o + 2], b"\na");
    }
}
