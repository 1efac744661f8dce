//! zlib ("Content-Encoding: deflate", as the Datadog/StackState forwarder sends) with one
//! compressor whose state is reset, not rebuilt, for every payload.

use flate2::{Compress, Compression, FlushCompress, Status};

pub struct Zlib {
    c: Compress,
}

impl Default for Zlib {
    fn default() -> Self {
        // Level 1: host payloads compress ~10x at a fraction of the CPU of the default level.
        Zlib { c: Compress::new(Compression::fast(), true) }
    }
}

impl Zlib {
    /// Replaces the contents of `out` with the zlib stream of `input`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.c.reset();
        out.clear();
        if !deflate_into(&mut self.c, input, out) {
            out.clear();
        }
    }
}

/// Runs a freshly reset compressor over `input`, appending to `out`; `false` if it failed
/// (Finish on a fresh stream with room to grow does not fail in practice).
fn deflate_into(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> bool {
    // Compressed output is usually well under half the input. Grow with headroom so a
    // payload a few bytes longer than the last one does not reallocate.
    let want = out.len() + input.len() / 2 + 64;
    if out.capacity() < want {
        out.reserve(want * 2 - out.len());
    }
    loop {
        let rest = input.get(c.total_in() as usize..).unwrap_or(&[]);
        match c.compress_vec(rest, out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return true,
            Ok(_) => out.reserve(out.capacity().max(64)),
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_through_an_independent_decoder() {
        let mut z = Zlib::default();
        let mut out = Vec::new();
        for input in [
            &b""[..],
            b"hello",
            &vec![b'x'; 300_000],
            &(0..100_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>(),
        ] {
            z.compress(input, &mut out);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, input);
        }
    }
}

/// gzip (RFC 1952) with a reused raw-deflate compressor: header, deflate stream, CRC32, size.
pub struct Gzip {
    c: Compress,
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip { c: Compress::new(Compression::fast(), false) }
    }
}

impl Gzip {
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.c.reset();
        out.clear();
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        if !deflate_into(&mut self.c, input, out) {
            out.clear();
            return;
        }
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    }
}

#[cfg(test)]
mod gzip_tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_round_trips_through_an_independent_decoder() {
        let mut g = Gzip::default();
        let mut out = Vec::new();
        for input in [&b""[..], b"{\"a\":1}", &vec![b'z'; 100_000]] {
            g.compress(input, &mut out);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, input);
        }
    }
}
