//! Request bodies sent with `Content-Encoding: gzip` (RFC 1952), inflated into a caller's reused
//! buffer with a reused inflater, never past a limit: a small body that would inflate to more
//! (a "zip bomb") stops at the limit, having written at most the limit plus one read step.
//! Every member of a multi-member stream is inflated; each member's CRC-32 and size are checked.

use flate2::{Crc, Decompress, FlushDecompress, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipError {
    /// The inflated body would pass the limit.
    TooLarge,
    /// Not a gzip stream, or a damaged one.
    Invalid(&'static str),
}

/// How much the output grows at a time (at most): a bomb is noticed within one step past the limit.
const STEP: usize = 256 * 1024;

/// Replaces the contents of `out` with the inflated `input`, at most `max` bytes.
pub fn gunzip(input: &[u8], out: &mut Vec<u8>, max: usize, d: &mut Decompress) -> Result<(), GzipError> {
    out.clear();
    let mut pos = 0;
    loop {
        pos += header_len(input.get(pos..).unwrap_or(&[]))?;
        let start = out.len();
        d.reset(false);
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(GzipError::TooLarge);
                }
                // Room for one more byte than the limit, so passing it shows.
                let want = (max + 1 - out.len()).min(out.len().max(4096)).min(STEP);
                out.reserve_exact(want);
            }
            let (in_before, out_before) = (d.total_in(), out.len());
            let rest = input.get(pos + d.total_in() as usize..).unwrap_or(&[]);
            let st = d
                .decompress_vec(rest, out, FlushDecompress::None)
                .map_err(|_| GzipError::Invalid("gzip: invalid deflate data"))?;
            if out.len() > max {
                return Err(GzipError::TooLarge);
            }
            match st {
                Status::StreamEnd => break,
                _ if d.total_in() == in_before && out.len() == out_before && out.len() < out.capacity() => {
                    return Err(GzipError::Invalid("gzip: truncated stream"));
                }
                _ => {}
            }
        }
        pos += d.total_in() as usize;
        let trailer = input.get(pos..pos + 8).ok_or(GzipError::Invalid("gzip: truncated trailer"))?;
        let mut crc = Crc::new();
        crc.update(&out[start..]);
        let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc.sum() != want_crc || (out.len() - start) as u32 != want_len {
            return Err(GzipError::Invalid("gzip: checksum or length mismatch"));
        }
        pos += 8;
        if pos >= input.len() {
            return Ok(());
        }
    }
}

/// The length of a member's header (RFC 1952 §2.3), checked.
fn header_len(b: &[u8]) -> Result<usize, GzipError> {
    let bad = GzipError::Invalid("gzip: not a gzip header");
    if b.len() < 10 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] & 0xe0 != 0 {
        return Err(bad);
    }
    let flags = b[3];
    let mut pos = 10;
    if flags & 4 != 0 {
        let xlen = b.get(pos..pos + 2).ok_or(bad)?;
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [8, 16] {
        if flags & flag != 0 {
            pos += memchr::memchr(0, b.get(pos..).unwrap_or(&[])).ok_or(bad)? + 1;
        }
    }
    if flags & 2 != 0 {
        pos += 2;
    }
    if pos > b.len() {
        return Err(bad);
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_members_and_headers() {
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        gunzip(&gz(&data), &mut out, data.len(), &mut d).unwrap();
        assert_eq!(out, data);
        // Two members; an empty body.
        let two = [gz(b"hello "), gz(b"world")].concat();
        gunzip(&two, &mut out, 100, &mut d).unwrap();
        assert_eq!(out, b"hello world");
        gunzip(&gz(b""), &mut out, 0, &mut d).unwrap();
        assert!(out.is_empty());
        // FEXTRA, FNAME, FCOMMENT, FHCRC.
        let plain = gz(b"abc");
        let mut h = vec![0x1f, 0x8b, 8, 4 | 8 | 16 | 2, 0, 0, 0, 0, 0, 255, 3, 0, b'x', b'y', b'z'];
        h.extend_from_slice(b"name\0comment\0\0\0");
        h.extend_from_slice(&plain[10..]);
        gunzip(&h, &mut out, 3, &mut d).unwrap();
        assert_eq!(out, b"abc");
    }

    #[test]
    fn bombs_stop_at_the_limit_and_damage_is_an_error() {
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        // 64 MiB of zeros in ~64 KiB: inflating stops within a step of the limit.
        let bomb = gz(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000);
        assert_eq!(gunzip(&bomb, &mut out, 1 << 20, &mut d), Err(GzipError::TooLarge));
        assert!(out.capacity() <= (1 << 20) + 1 + STEP, "{}", out.capacity());
        let good = gz(b"some text that compresses");
        for cut in 0..good.len() {
            assert!(gunzip(&good[..cut], &mut out, 100, &mut d).is_err(), "{cut}");
        }
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert!(matches!(gunzip(&bad_crc, &mut out, 100, &mut d), Err(GzipError::Invalid(_))));
        assert!(matches!(gunzip(b"\x1f\x8b\x08\xe0", &mut out, 100, &mut d), Err(GzipError::Invalid(_))));
        assert_eq!(gunzip(&good, &mut out, 5, &mut d), Err(GzipError::TooLarge));
        gunzip(&good, &mut out, 100, &mut d).unwrap();
        assert_eq!(out, b"some text that compresses", "the inflater is reusable after errors");
    }
}
