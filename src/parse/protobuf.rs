//! A zero-copy protobuf wire reader (for OTLP's `ExportTraceServiceRequest`): fields are read in
//! place from the request body, and a length-delimited field borrows its bytes (with their
//! offset in the body, so strings can be stored as ranges). Every length is checked against the
//! bytes present before it is trusted, varints longer than 10 bytes are errors, and skipping
//! the deprecated groups is bounded in depth; nothing panics and nothing allocates.
//!
//! The reader is flat: a caller descends into a nested message by reading its bytes and making
//! a [`PbReader::nested`] reader over them, so nesting costs the caller's recursion, which the
//! OTLP decoder bounds itself (`AnyValue` arrays and lists are skipped, not walked).

use super::msgpack::{DecodeError, Result};

/// Groups nested deeper than this are refused (OTLP has none; a hostile body could send many).
pub const MAX_GROUP_DEPTH: u32 = 32;

const EOF: DecodeError = DecodeError("protobuf: unexpected end of message");

/// Bytes of a length-delimited field: the slice and where it starts in the whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes<'a> {
    pub data: &'a [u8],
    pub off: usize,
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (fixed64, sfixed64, double).
    Fixed64(u64),
    /// Wire type 2 (strings, bytes, messages, packed repeated fields).
    Len(Bytes<'a>),
    /// Wire type 5 (fixed32, sfixed32, float).
    Fixed32(u32),
}

impl Value<'_> {
    /// A varint field as a `u64`; other wire types read as 0 (a mistyped field is ignored, not
    /// trusted).
    pub fn varint(self) -> u64 {
        match self {
            Value::Varint(v) => v,
            _ => 0,
        }
    }

    pub fn fixed64(self) -> u64 {
        match self {
            Value::Fixed64(v) => v,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PbReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the whole body.
    base: usize,
}

impl<'a> PbReader<'a> {
    /// A reader over a whole message (offsets are positions in `buf`).
    pub fn new(buf: &'a [u8]) -> PbReader<'a> {
        PbReader { buf, pos: 0, base: 0 }
    }

    /// A reader over an embedded message (offsets stay positions in the whole body).
    pub fn nested(b: Bytes<'a>) -> PbReader<'a> {
        PbReader { buf: b.data, pos: 0, base: b.off }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(EOF)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(EOF)?;
        let s = self.buf.get(self.pos..end).ok_or(EOF)?;
        self.pos = end;
        Ok(s)
    }

    /// A base-128 varint of at most 10 bytes (bits past 64 are dropped, as protobuf does).
    pub fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("protobuf: varint longer than 10 bytes"))
    }

    /// The next field, `None` at the end of the message. Groups (wire types 3 and 4, which no
    /// OTLP message has) are skipped whole; unknown fields come back for the caller to ignore.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        loop {
            if self.at_end() {
                return Ok(None);
            }
            let key = self.varint()?;
            let field = u32::try_from(key >> 3).map_err(|_| DecodeError("protobuf: field number out of range"))?;
            if field == 0 {
                return Err(DecodeError("protobuf: field number 0"));
            }
            let v = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => Value::Fixed64(u64::from_le_bytes(self.fixed::<8>()?)),
                2 => {
                    let n = self.varint()?;
                    let n = usize::try_from(n).map_err(|_| EOF)?;
                    if n > self.buf.len() - self.pos {
                        return Err(DecodeError("protobuf: length exceeds the message"));
                    }
                    let off = self.base + self.pos;
                    Value::Len(Bytes { data: self.take(n)?, off })
                }
                3 => {
                    self.skip_group(field, 0)?;
                    continue;
                }
                4 => return Err(DecodeError("protobuf: unmatched end of group")),
                5 => Value::Fixed32(u32::from_le_bytes(self.fixed::<4>()?)),
                _ => return Err(DecodeError("protobuf: invalid wire type")),
            };
            return Ok(Some((field, v)));
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Skips the fields of a group up to its end tag (same field number), nested groups within
    /// [`MAX_GROUP_DEPTH`].
    fn skip_group(&mut self, field: u32, depth: u32) -> Result<()> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(DecodeError("protobuf: groups nested too deeply"));
        }
        loop {
            let key = self.varint()?;
            let f = (key >> 3) as u32;
            match key & 7 {
                0 => drop(self.varint()?),
                1 => drop(self.take(8)?),
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| EOF)?;
                    self.take(n)?;
                }
                3 => self.skip_group(f, depth + 1)?,
                4 if f == field => return Ok(()),
                4 => return Err(DecodeError("protobuf: mismatched end of group")),
                5 => drop(self.take(4)?),
                _ => return Err(DecodeError("protobuf: invalid wire type")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_type_and_offsets_into_the_body() {
        // 1: varint 150; 2: "hi" (len); 3: fixed64 1; 4: fixed32 2; 5: an embedded {1: 7}.
        let body =
            [0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0, 0x2a, 2, 0x08, 7];
        let mut r = PbReader::new(&body);
        assert_eq!(r.next_field(), Ok(Some((1, Value::Varint(150)))));
        assert_eq!(r.next_field(), Ok(Some((2, Value::Len(Bytes { data: b"hi", off: 5 })))));
        assert_eq!(r.next_field(), Ok(Some((3, Value::Fixed64(1)))));
        assert_eq!(r.next_field(), Ok(Some((4, Value::Fixed32(2)))));
        let Ok(Some((5, Value::Len(m)))) = r.next_field() else { panic!("an embedded message") };
        assert_eq!(r.next_field(), Ok(None));
        let mut n = PbReader::nested(m);
        assert_eq!(n.next_field(), Ok(Some((1, Value::Varint(7)))));
        assert!(n.at_end());
        // A negative int64 is a 10-byte varint.
        let mut r = PbReader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(r.varint().map(|v| v as i64), Ok(-1));
    }

    #[test]
    fn groups_are_skipped_and_bounded() {
        // field 1 group { field 2 varint 5, field 3 group {} } then field 4 varint 1.
        let body = [0x0b, 0x10, 5, 0x1b, 0x1c, 0x0c, 0x20, 1];
        let mut r = PbReader::new(&body);
        assert_eq!(r.next_field(), Ok(Some((4, Value::Varint(1)))));
        let deep = vec![0x0b; 100];
        assert_eq!(PbReader::new(&deep).next_field(), Err(DecodeError("protobuf: groups nested too deeply")));
        assert!(PbReader::new(&[0x0c]).next_field().is_err(), "an end of group alone");
        assert!(PbReader::new(&[0x0b, 0x14]).next_field().is_err(), "mismatched end");
    }

    #[test]
    fn hostile_lengths_and_truncations_are_errors() {
        for body in [
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            &[0x0a, 0x05, 1],
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x08],
            &[0x08, 0x80],
            &[0x09, 1, 2],
            &[0x0d, 1],
            &[0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            &[0x00, 0x01],
            &[0x0e],
            &[0x0f],
        ] {
            assert!(PbReader::new(body).next_field().is_err(), "{body:02x?}");
        }
        // Every cut of a valid message is an error or a shorter valid message, never a panic.
        let body = [0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0];
        for cut in 0..body.len() {
            let mut r = PbReader::new(&body[..cut]);
            while let Ok(Some(_)) = r.next_field() {}
        }
    }
}
