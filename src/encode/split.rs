//! Splitting a payload a receiver refused as too large (413) into two that carry the same data:
//! `/api/v1/series` bodies (zlib JSON `{"series":[…]}`) by halving the series list, and process
//! agent messages (header + zstd protobuf) by halving their repeated items (`processes` or
//! `connections`, field 3; containers stay in the first half). A rare path: it may allocate.
//!
//! A process-agent message is one chunk of a group (`groupId`, `groupSize` = the run's chunk
//! count; spec/protocol.md §4.2, §4.3, §9.7): split in two, the group has one message more, so
//! both halves carry `groupSize + 1` (same `groupId`) and the receiver waits for every chunk.

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

/// The `groupSize` field of a process-agent message type (header byte 2): `CollectorProc` (12)
/// and `CollectorCommands` (13) number it 7, `CollectorConnections` (22) 6.
fn group_size_field(msg_type: u8) -> Option<u64> {
    match msg_type {
        12 | 13 => Some(7),
        22 => Some(6),
        _ => None,
    }
}

/// Two halves of a process-agent message (16-byte header + zstd protobuf), or `None` when it has
/// fewer than two items or does not decode.
pub fn process_message(body: &[u8]) -> Option<[Vec<u8>; 2]> {
    let header = body.get(..16)?;
    let group_size = group_size_field(*header.get(2)?);
    let proto = zstd::stream::decode_all(body.get(16..)?).ok()?;
    // The group grows by one message: `groupSize + 1`, re-encoded (int32 as a varint).
    let mut grown = Vec::new();
    let mut common: Vec<&[u8]> = Vec::new();
    let mut first_only: Vec<&[u8]> = Vec::new();
    let mut items: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut group_size_at = None;
    while pos < proto.len() {
        let (field, end) = field_at(&proto, pos)?;
        let raw = proto.get(pos..end)?;
        if Some(field) == group_size && raw.first().is_some_and(|k| k & 7 == 0) && group_size_at.is_none() {
            let (n, _) = varint(raw, 1)?;
            let n = n as i64 as i32;
            if n > 0 {
                super::proto::int32(&mut grown, field as u32, n.saturating_add(1));
                group_size_at = Some(common.len());
            }
            common.push(raw);
        } else if field == ITEMS {
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
    if let Some(slot) = group_size_at.and_then(|i| common.get_mut(i)) {
        *slot = &grown;
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

/// The `groupId` field of a process-agent message type: 6 in `CollectorProc`/`Commands`, 5 in
/// `CollectorConnections`.
fn group_id_field(msg_type: u8) -> Option<u64> {
    match msg_type {
        12 | 13 => Some(6),
        22 => Some(5),
        _ => None,
    }
}

/// A process-agent message's header and decompressed protobuf.
fn decode(body: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    Some((body.get(..16)?, zstd::stream::decode_all(body.get(16..)?).ok()?))
}

/// `(groupId, groupSize)` of a decoded message (both present, as varints).
fn group_of(header: &[u8], proto: &[u8]) -> Option<(i32, i32)> {
    let t = *header.get(2)?;
    let (id_field, size_field) = (group_id_field(t)?, group_size_field(t)?);
    let (mut id, mut size) = (None, None);
    let mut pos = 0;
    while pos < proto.len() {
        let (field, end) = field_at(proto, pos)?;
        if field == id_field || field == size_field {
            let (key, p) = varint(proto, pos)?;
            if key & 7 == 0 {
                let v = varint(proto, p)?.0 as i64 as i32;
                if field == id_field {
                    id = Some(v);
                } else {
                    size = Some(v);
                }
            }
        }
        pos = end;
    }
    Some((id?, size?))
}

/// After a split, a message queued behind the halves, re-encoded with the halves' `groupSize`
/// when it is a chunk of the same group (same type and `groupId`): the rest of the group then
/// agrees with the halves on its size. `None` when it is not of that group.
pub fn process_regroup(half: &[u8], queued: &[u8]) -> Option<Vec<u8>> {
    let (hh, hp) = decode(half)?;
    let (qh, qp) = decode(queued)?;
    if hh.get(2) != qh.get(2) {
        return None;
    }
    let (hid, hsize) = group_of(hh, &hp)?;
    let (qid, qsize) = group_of(qh, &qp)?;
    if qid != hid {
        return None;
    }
    if qsize == hsize {
        return Some(queued.to_vec());
    }
    let size_field = group_size_field(*qh.get(2)?)?;
    let mut p = Vec::with_capacity(qp.len() + 8);
    let mut pos = 0;
    while pos < qp.len() {
        let (field, end) = field_at(&qp, pos)?;
        if field == size_field {
            super::proto::int32(&mut p, field as u32, hsize);
        } else {
            p.extend_from_slice(qp.get(pos..end)?);
        }
        pos = end;
    }
    let mut out = qh.to_vec();
    out.extend_from_slice(&zstd::bulk::compress(&p, 1).ok()?);
    Some(out)
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

    /// The value of varint field `want` in a message's protobuf (`None` if absent).
    fn varint_field(msg: &[u8], want: u64) -> Option<i64> {
        let raw = zstd::stream::decode_all(&msg[16..]).unwrap();
        let mut pos = 0;
        let mut found = None;
        while pos < raw.len() {
            let (f, end) = field_at(&raw, pos).unwrap();
            if f == want {
                let (_, p) = varint(&raw, pos).unwrap();
                found = Some(varint(&raw, p).unwrap().0 as i64);
            }
            pos = end;
        }
        found
    }

    /// Issue 14: split in two, a chunk of a group of 3 makes the group 4 messages: both halves
    /// say `groupSize` 4, with the same `groupId`, for processes (12) and connections (22).
    #[test]
    fn split_halves_grow_their_group_by_one() {
        for (msg_type, id_field, size_field) in [(12u8, 6u32, 7u32), (22, 5, 6)] {
            let mut p = Vec::new();
            proto::bytes(&mut p, 2, b"host");
            for n in 1..=4u64 {
                proto::message(&mut p, 3, |m| proto::uint64(m, 1, n));
            }
            proto::int32(&mut p, id_field, -123_456);
            proto::int32(&mut p, size_field, 3);
            proto::int32(&mut p, 8, 30_000);
            let mut body = Vec::new();
            crate::encode::process_msg::header(&mut body, msg_type, 1_700_000_000_000);
            body.extend_from_slice(&zstd::bulk::compress(&p, 1).unwrap());
            let [a, b] = process_message(&body).unwrap();
            for half in [&a, &b] {
                assert_eq!(varint_field(half, u64::from(size_field)), Some(4), "type {msg_type}");
                assert_eq!(varint_field(half, u64::from(id_field)).map(|v| v as i32), Some(-123_456));
                assert_eq!(varint_field(half, 8), Some(30_000), "other fields are kept");
            }
        }
        // The chunks queued behind take the halves' size; another group's are not touched.
        let chunk = |id: i32, size: i32| {
            let mut p = Vec::new();
            proto::message(&mut p, 3, |m| proto::uint64(m, 1, 9));
            proto::int32(&mut p, 6, id);
            proto::int32(&mut p, 7, size);
            let mut body = Vec::new();
            crate::encode::process_msg::header(&mut body, 12, 0);
            body.extend_from_slice(&zstd::bulk::compress(&p, 1).unwrap());
            body
        };
        let mut p = Vec::new();
        for n in 1..=4u64 {
            proto::message(&mut p, 3, |m| proto::uint64(m, 1, n));
        }
        proto::int32(&mut p, 6, 42);
        proto::int32(&mut p, 7, 3);
        let mut body = Vec::new();
        crate::encode::process_msg::header(&mut body, 12, 0);
        body.extend_from_slice(&zstd::bulk::compress(&p, 1).unwrap());
        let [half, _] = process_message(&body).unwrap();
        let regrouped = process_regroup(&half, &chunk(42, 3)).unwrap();
        assert_eq!((varint_field(&regrouped, 6), varint_field(&regrouped, 7)), (Some(42), Some(4)));
        assert_eq!(&regrouped[..16], &chunk(42, 3)[..16]);
        assert!(process_regroup(&half, &chunk(43, 3)).is_none(), "another group");
        assert!(process_regroup(&half, b"not a message").is_none());
        // No groupSize (an ungrouped message): nothing is invented.
        let mut p = Vec::new();
        proto::message(&mut p, 3, |m| proto::uint64(m, 1, 1));
        proto::message(&mut p, 3, |m| proto::uint64(m, 1, 2));
        let mut body = Vec::new();
        crate::encode::process_msg::header(&mut body, 12, 0);
        body.extend_from_slice(&zstd::bulk::compress(&p, 1).unwrap());
        let [a, _] = process_message(&body).unwrap();
        assert_eq!(varint_field(&a, 7), None);
    }
}
