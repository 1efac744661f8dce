//! Two small key/value formats: `key<TAB>: value` lines (`/proc/cpuinfo`) and shell-style
//! `KEY=value` / `KEY="value"` lines (`/etc/os-release`).

use super::cursor::lines;

/// `(key, value)` with both trimmed, split at the first colon; lines without one are skipped.
pub fn colon_pairs(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines(buf).filter_map(|l| {
        let i = memchr::memchr(b':', l)?;
        Some((l.get(..i)?.trim_ascii(), l.get(i + 1..)?.trim_ascii()))
    })
}

/// `(KEY, value)` with one pair of surrounding quotes removed; comments and junk are skipped.
pub fn env_pairs(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines(buf).filter_map(|l| {
        let l = l.trim_ascii();
        if l.starts_with(b"#") {
            return None;
        }
        let i = memchr::memchr(b'=', l)?;
        let key = l.get(..i)?;
        if key.is_empty() || !key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return None;
        }
        let v = l.get(i + 1..)?;
        let v = match (v.first(), v.last()) {
            (Some(b'"'), Some(b'"')) | (Some(b'\''), Some(b'\'')) if v.len() >= 2 => v.get(1..v.len() - 1)?,
            _ => v,
        };
        Some((key, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_and_os_release() {
        let cpu = include_bytes!("../../tests/fixtures/proc/debian12-6.18/cpuinfo");
        assert!(colon_pairs(cpu).filter(|(k, _)| *k == b"processor").count() >= 1);
        assert!(colon_pairs(cpu).any(|(k, _)| k == b"model name"));
        let os = include_bytes!("../../tests/fixtures/etc/debian12/os-release");
        let id: Vec<_> = env_pairs(os).filter(|(k, _)| *k == b"ID").map(|(_, v)| v).collect();
        assert_eq!(id, vec![&b"debian"[..]]);
        assert!(env_pairs(os).any(|(k, v)| k == b"PRETTY_NAME" && v == b"Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(
            env_pairs(b"A='x'\n# c\n=v\nB=\"\nC=\"\"\n").collect::<Vec<_>>(),
            vec![(&b"A"[..], &b"x"[..]), (b"B", b"\""), (b"C", b"")]
        );
    }
}
