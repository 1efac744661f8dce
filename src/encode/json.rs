//! JSON pieces appended to a caller's buffer without allocating. Strings are escaped per
//! RFC 8259; bytes that are not UTF-8 become U+FFFD. Numbers use serde_json's formatters.

pub fn str(out: &mut Vec<u8>, s: &str) {
    bytes_as_str(out, s.as_bytes());
}

/// Writes `b` as a JSON string.
pub fn bytes_as_str(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    escape_into(out, b);
    out.push(b'"');
}

/// Writes the escaped contents of a string, without quotes (to build `"key:value"`).
pub fn escape_into(out: &mut Vec<u8>, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        for &c in chunk.valid().as_bytes() {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f | 0x7f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(c >> 4)]);
                    out.push(HEX[usize::from(c & 0xf)]);
                }
                _ => out.push(c),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

pub fn u64(out: &mut Vec<u8>, v: u64) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// A finite float; NaN and infinities (which JSON cannot carry) are written as 0.
/// `"k":v,"k2":v2` (no braces) for whole-number fields.
pub fn u64_fields(out: &mut Vec<u8>, fields: &[(&str, u64)]) {
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str(out, k);
        out.push(b':');
        u64(out, *v);
    }
}

pub fn f64(out: &mut Vec<u8>, v: f64) {
    let v = if v.is_finite() { v } else { 0.0 };
    let _ = serde_json::to_writer(&mut *out, &v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip_through_serde_json() {
        for s in ["plain", "quo\"te", "back\\slash", "new\nline\ttab", "\u{1}\u{1f}\u{7f}", "ünï😀"] {
            let mut out = Vec::new();
            str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
        let mut out = Vec::new();
        bytes_as_str(&mut out, b"eth\xff0");
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), "eth\u{fffd}0");
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        f64(&mut out, 1.5);
        out.push(b' ');
        f64(&mut out, f64::NAN);
        out.push(b' ');
        u64(&mut out, u64::MAX);
        assert_eq!(out, b"1.5 0.0 18446744073709551615");
    }
}
