//! A zero-copy MessagePack reader for trace payloads: values are read in place from the request
//! body; strings are borrowed. Every declared length is checked against the bytes actually
//! present before anything is trusted (an `array32` header claiming four billion elements in five
//! bytes is an error, not an allocation), nesting is limited, and nothing panics.

/// Why a body does not decode; the text becomes the 400 reply's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// Deeper than any trace payload needs (spans sit at depth 3; meta values are flat).
pub const MAX_DEPTH: u32 = 32;

const EOF: DecodeError = DecodeError("msgpack: unexpected end of body");

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(EOF)?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or(EOF)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(EOF)?;
        let s = self.buf.get(self.pos..end).ok_or(EOF)?;
        self.pos = end;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len_u8(&mut self) -> Result<usize> {
        Ok(usize::from(self.byte()?))
    }
    fn len_u16(&mut self) -> Result<usize> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }
    fn len_u32(&mut self) -> Result<usize> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    /// `nil` (0xc0), consumed when present.
    pub fn nil(&mut self) -> bool {
        if self.peek() == Ok(0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// An array header; `nil` reads as an empty array. At least one byte per element must remain.
    pub fn array_len(&mut self) -> Result<usize> {
        let n = match self.byte()? {
            b @ 0x90..=0x9f => usize::from(b & 0x0f),
            0xdc => self.len_u16()?,
            0xdd => self.len_u32()?,
            0xc0 => 0,
            _ => return Err(DecodeError("msgpack: expected an array")),
        };
        if n > self.remaining() {
            return Err(DecodeError("msgpack: array length exceeds the body"));
        }
        Ok(n)
    }

    /// A map header; `nil` reads as an empty map. At least two bytes per entry must remain.
    pub fn map_len(&mut self) -> Result<usize> {
        let n = match self.byte()? {
            b @ 0x80..=0x8f => usize::from(b & 0x0f),
            0xde => self.len_u16()?,
            0xdf => self.len_u32()?,
            0xc0 => 0,
            _ => return Err(DecodeError("msgpack: expected a map")),
        };
        if n.saturating_mul(2) > self.remaining() {
            return Err(DecodeError("msgpack: map length exceeds the body"));
        }
        Ok(n)
    }

    /// A string (or bin, which some clients use for strings) as raw bytes; `nil` reads as empty.
    pub fn str_bytes(&mut self) -> Result<&'a [u8]> {
        let n = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 | 0xc4 => self.len_u8()?,
            0xda | 0xc5 => self.len_u16()?,
            0xdb | 0xc6 => self.len_u32()?,
            0xc0 => 0,
            _ => return Err(DecodeError("msgpack: expected a string")),
        };
        if n > self.remaining() {
            return Err(DecodeError("msgpack: string length exceeds the body"));
        }
        self.take(n)
    }

    /// A UTF-8 string as `(offset, length)` in the body (for storage that outlives the borrow).
    pub fn str_range(&mut self) -> Result<(usize, usize)> {
        let s = self.str()?;
        Ok((self.pos - s.len(), s.len()))
    }

    /// A UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.str_bytes()?).map_err(|_| DecodeError("msgpack: string is not valid UTF-8"))
    }

    /// Any integer as `i128` (wide enough for both u64 and i64), or a float with no fraction.
    fn integer(&mut self) -> Result<i128> {
        Ok(match self.byte()? {
            b @ 0x00..=0x7f => i128::from(b),
            b @ 0xe0..=0xff => i128::from(b as i8),
            0xcc => i128::from(self.byte()?),
            0xcd => i128::from(u16::from_be_bytes(self.be()?)),
            0xce => i128::from(u32::from_be_bytes(self.be()?)),
            0xcf => i128::from(u64::from_be_bytes(self.be()?)),
            0xd0 => i128::from(self.byte()? as i8),
            0xd1 => i128::from(i16::from_be_bytes(self.be()?)),
            0xd2 => i128::from(i32::from_be_bytes(self.be()?)),
            0xd3 => i128::from(i64::from_be_bytes(self.be()?)),
            // Some clients send whole numbers as floats.
            0xca => float_int(f64::from(f32::from_be_bytes(self.be()?)))?,
            0xcb => float_int(f64::from_be_bytes(self.be()?))?,
            0xc0 => 0,
            _ => return Err(DecodeError("msgpack: expected an integer")),
        })
    }

    pub fn u64(&mut self) -> Result<u64> {
        u64::try_from(self.integer()?).map_err(|_| DecodeError("msgpack: integer out of range for uint64"))
    }

    /// A span id: a uint64, or an int64 reinterpreted as one (`uint64(i)`, as the Datadog
    /// decoder does; some clients send ids above 2^63 as negative int64).
    pub fn id(&mut self) -> Result<u64> {
        let i = self.integer()?;
        u64::try_from(i)
            .or_else(|_| i64::try_from(i).map(|i| i as u64))
            .map_err(|_| DecodeError("msgpack: integer out of range for an id"))
    }

    pub fn i64(&mut self) -> Result<i64> {
        i64::try_from(self.integer()?).map_err(|_| DecodeError("msgpack: integer out of range for int64"))
    }

    pub fn i32(&mut self) -> Result<i32> {
        i32::try_from(self.integer()?).map_err(|_| DecodeError("msgpack: integer out of range for int32"))
    }

    pub fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.integer()?).map_err(|_| DecodeError("msgpack: integer out of range for uint32"))
    }

    /// A float, or an integer converted to one.
    pub fn f64(&mut self) -> Result<f64> {
        match self.peek()? {
            0xca => {
                self.pos += 1;
                Ok(f64::from(f32::from_be_bytes(self.be()?)))
            }
            0xcb => {
                self.pos += 1;
                Ok(f64::from_be_bytes(self.be()?))
            }
            _ => Ok(self.integer()? as f64),
        }
    }

    /// Skips one value of any type, nested at most [`MAX_DEPTH`] deep.
    pub fn skip(&mut self) -> Result<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("msgpack: nested too deeply"));
        }
        let b = self.peek()?;
        match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {
                self.pos += 1;
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let n = self.map_len()?;
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                    self.skip_at(depth + 1)?;
                }
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let n = self.array_len()?;
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                }
            }
            0xa0..=0xbf | 0xd9 | 0xda | 0xdb | 0xc4 | 0xc5 | 0xc6 => {
                self.str_bytes()?;
            }
            0xcc | 0xd0 => drop(self.take(2)?),
            0xcd | 0xd1 => drop(self.take(3)?),
            0xce | 0xd2 | 0xca => drop(self.take(5)?),
            0xcf | 0xd3 | 0xcb => drop(self.take(9)?),
            // fixext 1/2/4/8/16
            0xd4 => drop(self.take(3)?),
            0xd5 => drop(self.take(4)?),
            0xd6 => drop(self.take(6)?),
            0xd7 => drop(self.take(10)?),
            0xd8 => drop(self.take(18)?),
            // ext 8/16/32: length, type, data
            0xc7 => {
                self.pos += 1;
                let n = self.len_u8()?;
                self.take(n.saturating_add(1))?;
            }
            0xc8 => {
                self.pos += 1;
                let n = self.len_u16()?;
                self.take(n.saturating_add(1))?;
            }
            0xc9 => {
                self.pos += 1;
                let n = self.len_u32()?;
                self.take(n.saturating_add(1))?;
            }
            0xc1 => return Err(DecodeError("msgpack: reserved byte 0xc1")),
        }
        Ok(())
    }
}

fn float_int(f: f64) -> Result<i128> {
    if f.fract() == 0.0 && f.abs() < 1.9e19 {
        Ok(f as i128)
    } else {
        Err(DecodeError("msgpack: expected an integer, got a fractional float"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_of_every_width() {
        let body = [
            0x05, 0xff, 0xcc, 200, 0xcd, 1, 0, 0xce, 0, 1, 0, 0, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xd0, 0x80, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&body);
        assert_eq!(r.u64(), Ok(5));
        assert_eq!(r.i64(), Ok(-1));
        assert_eq!(r.u64(), Ok(200));
        assert_eq!(r.u32(), Ok(256));
        assert_eq!(r.u64(), Ok(65536));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.i32(), Ok(-128));
        assert_eq!(r.i64(), Ok(i64::MIN));
        assert!(r.at_end());
        let mut r = Reader::new(&[0xff]);
        assert!(r.u64().is_err(), "negative as uint64");
        // Ids: int64 reinterpreted; uint64 as is; floats with no fraction.
        let body = [0xff, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07];
        let mut r = Reader::new(&body);
        assert_eq!(r.id(), Ok(u64::MAX));
        assert_eq!(r.id(), Ok(1 << 63));
        assert_eq!(r.id(), Ok(u64::MAX));
        assert_eq!(r.id(), Ok(7));
        assert!(Reader::new(&[0xcb, 0xc4, 0x00, 0, 0, 0, 0, 0, 0]).id().is_err(), "-2^65 is no id");
        let mut r = Reader::new(&[0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, 0x03]);
        assert_eq!(r.f64(), Ok(std::f64::consts::PI));
        assert_eq!(r.f64(), Ok(3.0));
    }

    #[test]
    fn strings_maps_arrays_and_nil() {
        let body = [0x92, 0xa2, b'h', b'i', 0x81, 0xc4, 1, b'k', 0xc0, 0xc0, 0xc0];
        let mut r = Reader::new(&body);
        assert_eq!(r.array_len(), Ok(2));
        assert_eq!(r.str(), Ok("hi"));
        assert_eq!(r.map_len(), Ok(1));
        assert_eq!(r.str(), Ok("k"), "bin accepted as a string");
        assert_eq!(r.str(), Ok(""), "nil string");
        assert_eq!(r.map_len(), Ok(0), "nil map");
        assert_eq!(r.array_len(), Ok(0), "nil array");
        assert!(r.at_end());
    }

    #[test]
    fn hostile_lengths_are_errors_before_anything_is_trusted() {
        for body in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xdc, 0xff, 0xff, 0x01],
        ] {
            let mut r = Reader::new(body);
            assert!(r.skip().is_err(), "{body:02x?}");
        }
        let mut r = Reader::new(&[0xa3, b'a', 0xff, b'c']);
        assert_eq!(r.str(), Err(DecodeError("msgpack: string is not valid UTF-8")));
        // Deep nesting stops at the limit instead of recursing on.
        let deep = vec![0x91u8; 10_000];
        assert_eq!(Reader::new(&deep).skip(), Err(DecodeError("msgpack: nested too deeply")));
        assert!(Reader::new(&[0xc1]).skip().is_err());
        assert!(Reader::new(&[]).u64().is_err());
    }

    #[test]
    fn skip_walks_every_type() {
        let body = [
            0x86, 0xa1, b'a', 0xc3, 0xa1, b'b', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xa1, b'c', 0xd4, 1, 2, 0xa1, b'd', 0xc7,
            2, 5, 9, 9, 0xa1, b'e', 0x92, 0x01, 0xd1, 0, 1, 0xa1, b'f', 0x80, 0x07,
        ];
        let mut r = Reader::new(&body);
        assert_eq!(r.skip(), Ok(()));
        assert_eq!(r.u64(), Ok(7));
        assert!(r.at_end());
    }
}
