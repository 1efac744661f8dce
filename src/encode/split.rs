//! Splitting a payload a receiver refused as too large (413) into two that carry the same data:
//! `/api/v1/series` bodies (zlib JSON `{"series":[…]}`) by halving the series list, and process
//! agent messages (header + zstd protobuf) by halving their repeated items (`processes` or
//! `connections`, field 3; containers stay in the first half). A rare path: it may allocate.

use std::io::{Read, Write};

/// Two halves of a zlib `{"series":[…]}` body, or `None` when it cannot be split (one series).
pub fn series_zlib(body: &[u8]) -> Option<[Vec<u8>; 2]> {
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(body).read_to_end(&mut raw).ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let series = v.get_mut("series")?.as_array_mut()?;
    if series.len() < 2 {
        return None;
    }
    let second = series.split_off(series.len() / 2);
    let first = std::mem::take(series);
    let half = |items: Vec<serde_json::Value>| -> Option<Vec<u8>> {
        let json = serde_json::to_vec(&serde_json::json!({ "series": items })).ok()?;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&json).ok()?;
        z.finish().ok()
    };
    Some([half(first)?, half(second)?])
}

/// Process-agent fields kept only in the first half (the message's containers).
const FIRST_HALF_ONLY: &[u64] = &[10];
/// The repeated items that are divided.
const ITEMS: u64 = 3;

/// Two halves of a process-agent message (16-byte header + zstd protobuf), or `None` when it has
/// fewer than two items or does not decode.
pub fn process_message(body: &[u8]) -> Option<[Vec<u8>; 2]> {
    let header = body.get(..16)?;
    let proto = zstd::stream::decode_all(body.get(16..)?).ok()?;
    let mut common: Vec<&[u8]> = Vec::new();
    let mut first_only: Vec<&[u8]> = Vec::new();
    let mut items: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    while pos < proto.len() {
        let (field, end) = field_at(&proto, pos)?;
        let raw = proto.get(pos..end)?;
        if field == ITEMS {
            items.push(raw);
        } else if FIRST_HALF_ONLY.contains(&field) {
            first_only.push(raw);
        } else {
            common.push(raw);
        }
        pos = end;
    }
    if items.len() < 2 {
        return None;
    }
    let mid = items.len() / 2;
    let build = |parts: &[&[&[u8]]]| -> Option<Vec<u8>> {
        let mut p = Vec::new();
        for group in parts {
            for f in *group {
                p.extend_from_slice(f);
            }
        }
        let mut out = header.to_vec();
        out.extend_from_slice(&zstd::bulk::compress(&p, 1).ok()?);
        Some(out)
    };
    Some([build(&[&common, &first_only, &items[..mid]])?, build(&[&common, &items[mid..]])?])
}

fn varint(b: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(pos)?;
        pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((v, pos));
        }
    }
    None
}

/// The field number of the field starting at `pos`, and where it ends.
fn field_at(b: &[u8], pos: usize) -> Option<(u64, usize)> {
    let (key, p) = varint(b, pos)?;
    let end = match key & 7 {
        0 => varint(b, p)?.1,
        1 => p + 8,
        2 => {
            let (len, p) = varint(b, p)?;
            p.checked_add(usize::try_from(len).ok()?)?
        }
        5 => p + 4,
        _ => return None,
    };
    (end <= b.len()).then_some((key >> 3, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::proto;

    #[test]
    fn series_halves_carry_every_series_once() {
        let json = br#"{"series":[{"metric":"a"},{"metric":"b"},{"metric":"c"}]}"#;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(json).unwrap();
        let [x, y] = series_zlib(&z.finish().unwrap()).unwrap();
        let names = |b: &[u8]| {
            let mut raw = Vec::new();
            flate2::read::ZlibDecoder::new(b).read_to_end(&mut raw).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            v["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["metric"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!((names(&x), names(&y)), (vec!["a".to_string()], vec!["b".to_string(), "c".to_string()]));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(br#"{"series":[{"metric":"a"}]}"#).unwrap();
        assert!(series_zlib(&z.finish().unwrap()).is_none(), "one series cannot be split");
    }

    #[test]
    fn process_messages_split_their_items() {
        let mut p = Vec::new();
        proto::bytes(&mut p, 2, b"host");
        for pid in 1..=5u64 {
            proto::message(&mut p, 3, |m| proto::uint64(m, 2, pid));
        }
        proto::message(&mut p, 10, |m| proto::bytes(m, 2, b"ctr"));
        proto::int32(&mut p, 6, 77);
        let mut body = Vec::new();
        crate::encode::process_msg::header(&mut body, 12, 1_700_000_000_000);
        body.extend_from_slice(&zstd::bulk::compress(&p, 1).unwrap());
        let [a, b] = process_message(&body).unwrap();
        for half in [&a, &b] {
            assert_eq!(&half[..16], &body[..16], "the header is kept");
        }
        let fields = |m: &[u8]| {
            let raw = zstd::stream::decode_all(&m[16..]).unwrap();
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < raw.len() {
                let (f, end) = field_at(&raw, pos).unwrap();
                out.push(f);
                pos = end;
            }
            out
        };
        assert_eq!(fields(&a), vec![2, 6, 10, 3, 3]);
        assert_eq!(fields(&b), vec![2, 6, 3, 3, 3]);
        assert!(process_message(&body[..20]).is_none());
    }
}
