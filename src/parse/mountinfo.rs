//! `/proc/<pid>/mountinfo` (proc(5)) and `/proc/filesystems`.

use super::cursor::{fields, lines, u64_dec, Lines, ParseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount<'a> {
    pub major: u32,
    pub minor: u32,
    /// Octal-escaped as the kernel prints it (`\040` for a space); see [`unescape`].
    pub mount_point: &'a [u8],
    pub fs_type: &'a [u8],
    pub source: &'a [u8],
}

const FILE: &str = "mountinfo";

pub fn iter(buf: &[u8]) -> MountIter<'_> {
    MountIter { lines: lines(buf) }
}

pub struct MountIter<'a> {
    lines: Lines<'a>,
}

impl<'a> Iterator for MountIter<'a> {
    type Item = Result<Mount<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            if !line.is_empty() {
                return Some(parse_line(line));
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Result<Mount<'_>, ParseError> {
    let bad = ParseError::new(FILE, "malformed mount line");
    let mut f = fields(line);
    let _id = f.next().ok_or(bad)?;
    let _parent = f.next().ok_or(bad)?;
    let dev = f.next().ok_or(bad)?;
    let colon = memchr::memchr(b':', dev).ok_or(bad)?;
    let num = |s: &[u8]| u64_dec(s).and_then(|v| u32::try_from(v).ok());
    let major = dev.get(..colon).and_then(num).ok_or(bad)?;
    let minor = dev.get(colon + 1..).and_then(num).ok_or(bad)?;
    let _root = f.next().ok_or(bad)?;
    let mount_point = f.next().ok_or(bad)?;
    // Options, then zero or more optional fields, ended by a lone "-".
    f.by_ref().find(|x| *x == b"-").ok_or(bad)?;
    let fs_type = f.next().ok_or(bad)?;
    let source = f.next().ok_or(bad)?;
    Ok(Mount { major, minor, mount_point, fs_type, source })
}

/// Appends `raw` to `out`, decoding the kernel's `\ooo` escapes (space, tab, newline, backslash).
/// A malformed escape is copied as is.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\' {
            if let Some(v) = raw.get(i + 1..i + 4).and_then(octal3) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
}

fn octal3(s: &[u8]) -> Option<u8> {
    let [a, b, c] = <[u8; 3]>::try_from(s).ok()?;
    let digit = |x: u8, max: u8| (b'0'..=max).contains(&x).then(|| x - b'0');
    Some(digit(a, b'3')? * 64 + digit(b, b'7')? * 8 + digit(c, b'7')?)
}

/// `/proc/filesystems`: `(needs_no_device, name)` per line. A `nodev` filesystem is virtual
/// (proc, tmpfs, overlay, ...); the others are backed by a block device.
pub fn filesystems(buf: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    lines(buf).filter_map(|line| {
        let mut f = fields(line);
        let first = f.next()?;
        if first == b"nodev" {
            Some((true, f.next()?))
        } else {
            Some((false, first))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &[u8] = include_bytes!("../../tests/fixtures/proc/debian12-6.18/self/mountinfo");

    #[test]
    fn parses_captured_file() {
        let mounts: Vec<_> = iter(DEBIAN12).collect::<Result<_, _>>().unwrap();
        let root = mounts.iter().find(|m| m.mount_point == b"/").unwrap();
        assert_eq!(root.fs_type, b"ext4");
        assert_eq!(root.source, b"/dev/vda");
        assert_eq!((root.major, root.minor), (254, 0));
        assert!(mounts.iter().any(|m| m.fs_type == b"cgroup2"));
    }

    #[test]
    fn optional_fields_and_escapes() {
        let line = b"36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 shared:2 - ext3 /dev/root rw\n";
        let m = iter(line).next().unwrap().unwrap();
        assert_eq!(m.fs_type, b"ext3");
        let mut out = Vec::new();
        unescape(m.mount_point, &mut out);
        assert_eq!(out, b"/mnt/my disk");
        out.clear();
        unescape(b"a\\9zz\\", &mut out);
        assert_eq!(out, b"a\\9zz\\");
    }

    #[test]
    fn truncated_lines_are_errors() {
        assert!(iter(b"36 35 98:0 / /mnt rw").next().unwrap().is_err());
        assert!(iter(b"36 35 98 / /mnt rw - ext4 /dev/x rw").next().unwrap().is_err());
        assert!(iter(b"36 35 98:0 / /mnt rw -").next().unwrap().is_err());
    }

    #[test]
    fn filesystems_list() {
        let fs: Vec<_> = filesystems(include_bytes!("../../tests/fixtures/proc/debian12-6.18/filesystems")).collect();
        assert!(fs.contains(&(true, &b"proc"[..])));
        assert!(fs.contains(&(false, &b"ext4"[..])));
    }
}
