//! `/proc/self/smaps`, line by line: which mappings hold nothing but a file's content, so that
//! their pages can be let go and mapped again from the page cache when next touched (see
//! `sys::resident`).
//!
//! A mapping qualifies when it is private, readable and not writable, maps a file (its name is a
//! path), has pages resident (`Rss:` above 0), has no anonymous page resident or swapped out
//! (`Anonymous: 0 kB` and `Swap: 0 kB`: a page copied on write, as a relocated read-only segment's
//! (`RELRO`) or a patched one's, shows in one or the other), and none of the `VmFlags` under
//! which a page is not simply the file's (locked, huge pages, device or PFN maps, userfaultfd).
//! A mapping without any of those three lines does not qualify. The scan is fed one line at a
//! time, so the reader can use a small fixed buffer (the file is tens of KiB).

/// A mapping that may be let go: `[start, end)`, with `rss_kib` resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Releasable {
    pub start: usize,
    pub end: usize,
    pub rss_kib: u64,
}

/// The mapping being read: its range, whether it still qualifies, and what its fields said.
#[derive(Debug, Clone, Copy)]
struct Current {
    start: usize,
    end: usize,
    eligible: bool,
    rss_kib: u64,
    /// `None` until the line is read: a mapping without one does not qualify.
    anonymous_kib: Option<u64>,
    swap_kib: Option<u64>,
    flags_clean: Option<bool>,
}

/// `VmFlags` under which a page is not (only) the file's content: `lo` locked, `ht` hugetlb,
/// `io` and `pf` device or PFN maps, `dd` not dumped (special maps), `um` and `uw` userfaultfd.
const REFUSED_FLAGS: [&[u8]; 7] = [b"lo", b"ht", b"io", b"pf", b"dd", b"um", b"uw"];

/// The scan's state across lines.
#[derive(Debug, Default)]
pub struct Scan {
    current: Option<Current>,
}

impl Scan {
    /// Feeds one line (without its newline). Returns the previous mapping when this line starts a
    /// new one and the previous one qualifies.
    pub fn line(&mut self, line: &[u8]) -> Option<Releasable> {
        if let Some(h) = header(line) {
            let done = self.current.take().and_then(finish);
            self.current = Some(h);
            return done;
        }
        let c = self.current.as_mut()?;
        if let Some(v) = field_kib(line, b"Rss:") {
            c.rss_kib = v;
        } else if let Some(v) = field_kib(line, b"Anonymous:") {
            c.anonymous_kib = Some(v);
        } else if let Some(v) = field_kib(line, b"Swap:") {
            c.swap_kib = Some(v);
        } else if let Some(flags) = line.strip_prefix(b"VmFlags:") {
            let refused = flags.split(|b| *b == b' ').any(|f| REFUSED_FLAGS.contains(&f));
            c.flags_clean = Some(!refused);
        } else if line.starts_with(b"Anonymous:") || line.starts_with(b"Swap:") || line.starts_with(b"Rss:") {
            // A figure that does not read as one: the mapping is not let go.
            c.eligible = false;
        }
        None
    }

    /// A line too long for the reader's buffer, of which `head` is the start: if it starts a new
    /// mapping (a path too long), the previous one is done (returned if it qualifies) and the new
    /// one is not let go; otherwise the mapping it belongs to is not.
    pub fn overlong(&mut self, head: &[u8]) -> Option<Releasable> {
        let space = memchr::memchr(b' ', head).unwrap_or(head.len());
        let range = &head[..space];
        let starts_mapping = space < head.len()
            && memchr::memchr(b'-', range)
                .is_some_and(|d| hex(&range[..d]).is_some() && hex(&range[d + 1..]).is_some());
        if starts_mapping {
            let done = self.current.take().and_then(finish);
            self.current = Some(Current {
                start: 0,
                end: 0,
                eligible: false,
                rss_kib: 0,
                anonymous_kib: None,
                swap_kib: None,
                flags_clean: None,
            });
            return done;
        }
        if let Some(c) = self.current.as_mut() {
            c.eligible = false;
        }
        None
    }

    /// The end of the file: the last mapping, if it qualifies.
    pub fn end(&mut self) -> Option<Releasable> {
        self.current.take().and_then(finish)
    }
}

/// Also nothing resident, nothing to let go: and where every mapping says so (the smaps
/// qemu-user 8.0 and later write for a guest: `Rss: 0 kB` and `Anonymous: 0 kB` throughout, a
/// relocated segment too), nothing is.
fn finish(c: Current) -> Option<Releasable> {
    let clean = c.anonymous_kib == Some(0) && c.swap_kib == Some(0) && c.flags_clean == Some(true);
    (c.eligible && clean && c.rss_kib > 0).then_some(Releasable { start: c.start, end: c.end, rss_kib: c.rss_kib })
}

/// `start-end perms offset dev inode [name]`: a mapping's header, and whether it qualifies by it.
fn header(line: &[u8]) -> Option<Current> {
    let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    let dash = memchr::memchr(b'-', range)?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    let perms = fields.next()?;
    let (offset, dev, inode) = (fields.next()?, fields.next()?, fields.next()?);
    if perms.len() != 4 || hex(offset).is_none() || !dev.contains(&b':') || !inode.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // The name is the rest of the line (a path may hold spaces); a file's starts with '/'.
    let named_file = fields.next().is_some_and(|n| n.first() == Some(&b'/'));
    let eligible = start < end && perms[0] == b'r' && perms[1] == b'-' && perms[3] == b'p' && named_file;
    Some(Current { start, end, eligible, rss_kib: 0, anonymous_kib: None, swap_kib: None, flags_clean: None })
}

fn hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0usize, |n, b| Some(n.checked_mul(16)? + char::from(*b).to_digit(16)? as usize))
}

/// `Name:   123 kB`.
fn field_kib(line: &[u8], name: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(name)?;
    let digits = rest.trim_ascii_start().strip_suffix(b" kB")?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, b| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<Releasable> {
        let mut s = Scan::default();
        let mut out: Vec<_> = text.lines().filter_map(|l| s.line(l.as_bytes())).collect();
        out.extend(s.end());
        out
    }

    const BLOCK: &str = "Size:                912 kB
KernelPageSize:        4 kB
Rss:                 712 kB
Pss:                 712 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
SwapPss:               0 kB
VmFlags: rd mr mw me sd
";

    fn mapping(header: &str, anon: u64) -> String {
        format!(
            "{header}\n{}",
            BLOCK.replace("Anonymous:             0 kB", &format!("Anonymous:           {anon} kB"))
        )
    }

    #[test]
    fn only_clean_private_read_only_file_mappings_qualify() {
        let text = [
            mapping("555fc969e000-555fc9783000 r--p 00000000 fe:00 5333896                    /usr/bin/sts agent", 0),
            mapping("555fc9783000-555fc9a95000 r-xp 000e4000 fe:00 5333896                    /usr/bin/sts agent", 0),
            // RELRO: read-only now, relocated (copied on write) at start.
            mapping("555fc9a95000-555fc9ab0000 r--p 003f5000 fe:00 5333896                    /usr/bin/sts agent", 108),
            mapping("555fc9ab0000-555fc9ab1000 rw-p 0040f000 fe:00 5333896                    /usr/bin/sts agent", 0),
            mapping("555fd143a000-555fd1694000 rw-p 00000000 00:00 0                          [heap]", 1848),
            mapping("7f989a6db000-7f989a6fb000 r--s 00000000 00:09 134240                     socket:[134240]", 0),
            mapping("7f989a963000-7f989a989000 r--s 00000000 fe:00 326279                     /dev/shm/x", 0),
            mapping("7f989a989000-7f989aadf000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6", 0),
            mapping("7f989ab76000-7f989ab78000 r-xp 00000000 00:00 0                          [vdso]", 0),
            mapping("7f989ab79000-7f989ab9f000 ---p 00001000 fe:00 325843                     /usr/lib/ld.so", 0),
        ]
        .concat();
        let got = scan(&text);
        let r = |start, end| Releasable { start, end, rss_kib: 712 };
        assert_eq!(
            got,
            [r(0x555fc969e000, 0x555fc9783000), r(0x555fc9783000, 0x555fc9a95000), r(0x7f989a989000, 0x7f989aadf000)]
        );
    }

    #[test]
    fn a_mapping_without_its_lines_swapped_flagged_or_with_an_overlong_line_is_kept() {
        let header = "7f989a989000-7f989aadf000 r-xp 00026000 fe:00 326279 /usr/lib/libc.so.6";
        let libc = Releasable { start: 0x7f989a989000, end: 0x7f989aadf000, rss_kib: 712 };
        assert_eq!(scan(&format!("{header}\n{BLOCK}")), [libc]);
        assert_eq!(scan(&format!("{header}\nRss: 12 kB\n")), []);
        for (line, why) in
            [("Anonymous:", "no Anonymous line"), ("Swap:  ", "no Swap line"), ("VmFlags:", "no VmFlags line")]
        {
            let block: String = BLOCK.lines().filter(|l| !l.starts_with(line)).map(|l| format!("{l}\n")).collect();
            assert_eq!(scan(&format!("{header}\n{block}")), [], "{why}");
        }
        for (from, to, why) in [
            ("Swap:                  0 kB", "Swap:                  4 kB", "a copied page swapped out"),
            ("Anonymous:             0 kB", "Anonymous:             4 kB", "a copied page resident"),
            ("Anonymous:             0 kB", "Anonymous:             x kB", "an unreadable figure"),
            ("VmFlags: rd mr mw me sd", "VmFlags: rd mr lo mw me sd", "locked"),
            ("VmFlags: rd mr mw me sd", "VmFlags: rd mr mw me ht", "huge pages"),
            ("VmFlags: rd mr mw me sd", "VmFlags: rd io pf", "a device map"),
            ("VmFlags: rd mr mw me sd", "VmFlags: rd mr uw", "userfaultfd"),
            ("Rss:                 712 kB", "Rss:                   0 kB", "nothing resident"),
        ] {
            assert!(BLOCK.contains(from));
            assert_eq!(scan(&format!("{header}\n{}", BLOCK.replace(from, to))), [], "{why}");
        }
        // An overlong line inside a mapping: that mapping stays.
        let mut s = Scan::default();
        assert_eq!(s.line(header.as_bytes()), None);
        assert_eq!(s.overlong(b"Name:   aaaaaaaa"), None);
        for l in BLOCK.lines() {
            assert_eq!(s.line(l.as_bytes()), None);
        }
        assert_eq!(s.end(), None);
        // An overlong header (a long path): the mapping before it is done and may go; the new
        // one stays, and its figures are not the previous one's.
        let mut s = Scan::default();
        assert_eq!(s.line(header.as_bytes()), None);
        let mut got: Vec<_> = BLOCK.lines().filter_map(|l| s.line(l.as_bytes())).collect();
        got.extend(s.overlong(b"7f00000000-7f00001000 r-xp 00000000 fe:00 1 /very/long"));
        got.extend(BLOCK.lines().filter_map(|l| s.line(l.as_bytes())));
        got.extend(s.end());
        assert_eq!(got, [libc]);
        // Lines before any header, and malformed headers, are ignored.
        assert_eq!(scan("Rss: 4 kB\nAnonymous: 0 kB\n"), []);
        let ok = "Rss: 8 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd mr\n";
        assert_eq!(scan(&format!("zz-10 r--p 0 fe:00 1 /x\n{ok}")), []);
        assert_eq!(scan(&format!("20-10 r--p 0 fe:00 1 /x\n{ok}")), []);
        assert_eq!(scan(&format!("10-20 r--p 0 fe:00 1 /x\n{ok}")), [Releasable { start: 16, end: 32, rss_kib: 8 }]);
    }

    #[test]
    #[cfg_attr(
        qemu_user,
        ignore = "under qemu-user smaps is the host's (7.x) or qemu's own with nothing resident (8.0+), and MADV_DONTNEED on a file mapping is answered, not done"
    )]
    fn this_process_has_releasable_code() {
        let smaps = std::fs::read("/proc/self/smaps").unwrap();
        let mut s = Scan::default();
        let mut got: Vec<_> = smaps.split(|b| *b == b'\n').filter_map(|l| s.line(l)).collect();
        got.extend(s.end());
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let text = maps
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("r-xp") && l.ends_with(exe.to_str().unwrap()))
            .expect("the test binary's code");
        let (a, b) = text.split_whitespace().next().unwrap().split_once('-').unwrap();
        let (a, b) = (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap());
        assert!(got.iter().any(|r| r.start == a && r.end == b && r.rss_kib > 0), "{got:?}");
    }
}
