//! zlib ("Content-Encoding: deflate", as the Datadog/StackState forwarder sends) and gzip from one
//! raw-deflate compressor whose state is reset, not rebuilt, for every payload. A miniz_oxide
//! compressor holds about 300 KiB (hash chains, dictionary, LZ and output buffers), all written by
//! each reset, so the agent keeps one for both formats ([`Deflate`]) and writes the zlib and gzip
//! framing (RFC 1950, RFC 1952) itself.

use flate2::{Compress, Compression, FlushCompress, Status};

/// One raw-deflate compressor (level 1) for both framings.
pub struct Deflate {
    c: Compress,
}

impl Default for Deflate {
    fn default() -> Self {
        // Level 1: host payloads compress ~10x at a fraction of the CPU of the default level.
        Deflate { c: Compress::new(Compression::fast(), false) }
    }
}

impl Deflate {
    /// Replaces the contents of `out` with the zlib stream of `input`.
    pub fn zlib(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.c.reset();
        out.clear();
        // CMF: deflate, 32 KiB window; FLG: the fastest level, no dictionary, FCHECK so that
        // CMF * 256 + FLG is a multiple of 31 (what miniz writes at level 1).
        out.extend_from_slice(&[0x78, 0x01]);
        if !deflate_into(&mut self.c, input, out) {
            out.clear();
            return;
        }
        out.extend_from_slice(&adler32(input).to_be_bytes());
    }

    /// Replaces the contents of `out` with the gzip member of `input`.
    pub fn gzip(&mut self, input: &[u8], out: &mut Vec<u8>) {
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

/// Adler-32 (RFC 1950 §8.2): sums reduced modulo 65,521 every 5,552 bytes, the most that cannot
/// overflow a u32.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5_552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// zlib alone (a compressor of its own), for callers that need only this framing.
#[derive(Default)]
pub struct Zlib(Deflate);

impl Zlib {
    /// Replaces the contents of `out` with the zlib stream of `input`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.0.zlib(input, out);
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

    #[test]
    fn one_compressor_alternates_zlib_and_gzip() {
        let mut d = Deflate::default();
        let mut out = Vec::new();
        let json = (0..5_000).map(|i| format!("{{\"metric\":\"m{}\",\"v\":{i}}}", i % 37)).collect::<String>();
        for _ in 0..2 {
            d.zlib(json.as_bytes(), &mut out);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, json.as_bytes());
            d.gzip(json.as_bytes(), &mut out);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, json.as_bytes());
        }
    }

    #[test]
    fn adler32_matches_the_definition() {
        // RFC 1950's sums taken modulo 65,521 after every byte.
        let naive = |d: &[u8]| {
            let (mut a, mut b) = (1u32, 0u32);
            for &x in d {
                a = (a + u32::from(x)) % 65_521;
                b = (b + a) % 65_521;
            }
            (b << 16) | a
        };
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
        // All 0xff: the largest sums, across several 5,552-byte chunks and a partial one.
        let ff = vec![0xffu8; 3 * 5_552 + 17];
        assert_eq!(adler32(&ff), naive(&ff));
        let mixed: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        assert_eq!(adler32(&mixed), naive(&mixed));
    }
}

/// gzip alone (a compressor of its own), for callers that need only this framing.
#[derive(Default)]
pub struct Gzip(Deflate);

impl Gzip {
    /// Replaces the contents of `out` with the gzip member of `input`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.0.gzip(input, out);
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
