//! A protobuf (proto3) writer that appends to a caller's buffer and allocates nothing.
//! Scalars equal to their default are omitted, as proto3 does; nested messages get their length
//! prefix patched in after they are written.

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

pub fn uint64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, 0);
        varint(out, v);
    }
}

/// `int32`/`int64`/enum: negative values are sign-extended to ten bytes, as protobuf specifies.
pub fn int64(out: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        key(out, field, 0);
        varint(out, v as u64);
    }
}

pub fn int32(out: &mut Vec<u8>, field: u32, v: i32) {
    int64(out, field, i64::from(v));
}

/// `sint32`: zigzag-encoded, so small negative numbers stay short.
pub fn sint32(out: &mut Vec<u8>, field: u32, v: i32) {
    uint64(out, field, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

pub fn boolean(out: &mut Vec<u8>, field: u32, v: bool) {
    uint64(out, field, u64::from(v));
}

/// `float` (32-bit, little-endian fixed).
pub fn float(out: &mut Vec<u8>, field: u32, v: f32) {
    if v != 0.0 {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// `double` (64-bit, little-endian fixed).
pub fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    if v != 0.0 {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A `double` inside a `oneof`: written even when zero (a oneof member has presence).
pub fn double_present(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A singular `string`/`bytes` field (omitted when empty).
pub fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    if !v.is_empty() {
        repeated_bytes(out, field, v);
    }
}

/// One element of a `repeated string`/`bytes` field: written even when empty.
pub fn repeated_bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    key(out, field, 2);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// A nested message written by `body`. Always present (an empty message still marks the field).
/// One byte is kept for its length: right for small messages (map entries, sub-records).
pub fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    message_in(out, field, 1, body);
}

/// A nested message that is usually 128 bytes to 16 KiB (a span, a trace, a process, a
/// connection): two bytes are kept for its length, so its body is not moved after writing. Moving
/// it to the right to widen the prefix is an overlapping backward copy, which musl's `memmove`
/// (the static build's) does a byte at a time: that was a third of the trace path's CPU.
pub fn large_message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    message_in(out, field, 2, body);
}

fn message_in(out: &mut Vec<u8>, field: u32, reserved: usize, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, 2);
    let len_at = out.len();
    out.resize(len_at + reserved, 0);
    let start = out.len();
    body(out);
    let len = out.len() - start;
    let n = varint_len(len as u64);
    if n > reserved {
        // A longer prefix than kept: move the body right.
        out.resize(out.len() + n - reserved, 0);
        out.copy_within(start..start + len, len_at + n);
    } else if n < reserved {
        // A shorter one: move it left (a forward copy) and drop the spare bytes.
        out.copy_within(start..start + len, len_at + n);
        out.truncate(len_at + n + len);
    }
    let mut v = len as u64;
    for i in 0..n {
        out[len_at + i] = if i + 1 < n { (v as u8) | 0x80 } else { v as u8 };
        v >>= 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        let mut b = Vec::new();
        uint64(&mut b, 1, 150);
        assert_eq!(b, [0x08, 0x96, 0x01]);
        b.clear();
        int32(&mut b, 2, -1);
        assert_eq!(b, [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        b.clear();
        bytes(&mut b, 2, b"testing");
        assert_eq!(b, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        b.clear();
        float(&mut b, 3, 1.0);
        assert_eq!(b, [0x1d, 0, 0, 0x80, 0x3f]);
        b.clear();
        sint32(&mut b, 3, -265);
        sint32(&mut b, 3, 20);
        sint32(&mut b, 3, i32::MIN);
        assert_eq!(b, [0x18, 0x91, 0x04, 0x18, 40, 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        b.clear();
        uint64(&mut b, 1, 0);
        sint32(&mut b, 3, 0);
        bytes(&mut b, 2, b"");
        assert!(b.is_empty(), "defaults are omitted");
    }

    #[test]
    fn nested_lengths_of_every_size() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut b = vec![0xAA];
            message(&mut b, 3, |o| o.extend(std::iter::repeat_n(7u8, len)));
            let mut expect = vec![0xAA, 0x1a];
            varint(&mut expect, len as u64);
            expect.extend(std::iter::repeat_n(7u8, len));
            assert_eq!(b, expect, "len {len}");
        }
    }

    /// Whatever the body's size, both kinds write the same canonical bytes.
    #[test]
    fn large_and_small_messages_encode_alike() {
        for len in [0usize, 1, 127, 128, 200, 16_383, 16_384, 20_000, 2_097_152] {
            let body = vec![0xabu8; len];
            let (mut a, mut b) = (vec![7u8], vec![7u8]);
            message(&mut a, 3, |o| o.extend_from_slice(&body));
            large_message(&mut b, 3, |o| o.extend_from_slice(&body));
            assert_eq!(a, b, "body of {len}");
            // key, canonical varint length, body.
            let mut want = vec![7u8, 3 << 3 | 2];
            varint(&mut want, len as u64);
            want.extend_from_slice(&body);
            assert_eq!(a, want, "body of {len}");
        }
    }
}
