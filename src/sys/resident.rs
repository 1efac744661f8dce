//! Letting go of code and read-only data that ran once (issue 21, the agent's peak RSS).
//!
//! Start-up (configuration, TLS set-up, regex compilation) and the checks' priming runs touch
//! code and read-only data that the steady cycles never touch again, and the kernel maps 64 KiB
//! around each touch (fault-around): about 4 MiB of the agent's binary and of libc stayed
//! resident, half of the glibc build's RSS. [`release_file_pages`] drops this process's
//! page-table entries for every mapping that holds nothing but a file's content (see
//! `parse::smaps` for what qualifies). The pages stay in the page cache; the next touch maps them
//! again (a minor fault), so the steady cycles' code comes back and the rest stays out, where the
//! kernel can reclaim it first.

use crate::parse::smaps::{Releasable, Scan};
use rustix::fd::AsFd;
use std::io;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Mappings let go, and the KiB they had resident.
    pub mappings: u32,
    pub kib: u64,
    /// Why nothing was let go, if nothing was tried.
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another thread could change a mapping between the read and the `madvise` (the agent's loop
    /// is its only thread; a test harness is not), or the count is unknown (qemu-user's
    /// `/proc/self/stat` says 0).
    Threads(i64),
    /// `/proc/self/smaps` and `/proc/self/maps` began with different mappings: an emulator
    /// (qemu-user before 8.0) shows the host's smaps beside the guest's maps, whose addresses are
    /// not this program's.
    ViewsDiffer,
}

/// Lets go of every mapping `/proc/self/smaps` shows to hold only a file's content, if this
/// process has one thread (the calling one, busy here: no mapping can change meanwhile) and its
/// smaps and maps begin with the same mapping. Reads in 4 KiB steps into a stack buffer:
/// nothing is allocated.
pub fn release_file_pages() -> io::Result<Released> {
    let mut small = [0u8; 1024];
    let stat = read_start(c"/proc/self/stat", &mut small)?;
    let threads = crate::parse::pid::parse_stat(stat)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        .num_threads;
    if threads != 1 {
        return Ok(Released { refused: Some(Refusal::Threads(threads)), ..Released::default() });
    }
    let maps = read_start(c"/proc/self/maps", &mut small)?;
    let maps_first = &maps[..memchr::memchr(b' ', maps).unwrap_or(maps.len())];
    let file = open(c"/proc/self/smaps")?;
    let mut buf = [0u8; 4096];
    let mut released = Released::default();
    let agreed = scan_chunks(
        |b| Ok(rustix::io::read(file.as_fd(), b)?),
        &mut buf,
        maps_first,
        |r| {
            if dont_need(r.start, r.end - r.start).is_ok() {
                released.mappings += 1;
                released.kib += r.rss_kib;
            }
        },
    )?;
    if !agreed {
        released.refused = Some(Refusal::ViewsDiffer);
    }
    Ok(released)
}

fn open(path: &std::ffi::CStr) -> io::Result<rustix::fd::OwnedFd> {
    Ok(rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?)
}

/// The first bytes of `path` (one read: procfs renders at least a line).
fn read_start<'b>(path: &std::ffi::CStr, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let n = rustix::io::read(open(path)?.as_fd(), &mut *buf)?;
    Ok(&buf[..n])
}

/// Reads smaps through `read` into `buf`, line by line into a [`Scan`], and hands each mapping
/// that qualifies to `release`. A line longer than `buf` is skipped (its mapping stays: see
/// [`Scan::overlong`]). Returns false, having released nothing, when the first mapping's range
/// is not `maps_first`. (Public for the fuzz target `smaps`.)
pub fn scan_chunks(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buf: &mut [u8],
    maps_first: &[u8],
    mut release: impl FnMut(Releasable),
) -> io::Result<bool> {
    let mut scan = Scan::default();
    let (mut held, mut skipping, mut first) = (0usize, false, true);
    loop {
        let n = read(&mut buf[held..])?;
        if n == 0 {
            break;
        }
        let filled = held + n;
        let mut from = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[from..filled]) {
            let line = &buf[from..from + nl];
            from += nl + 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            if std::mem::take(&mut first) && line[..memchr::memchr(b' ', line).unwrap_or(line.len())] != *maps_first {
                return Ok(false);
            }
            if let Some(r) = scan.line(line) {
                release(r);
            }
        }
        if from == 0 && filled == buf.len() {
            // No newline in a full buffer: a line longer than it (a path of thousands of bytes).
            if !skipping {
                if std::mem::take(&mut first) {
                    return Ok(false);
                }
                if let Some(r) = scan.overlong(&buf[..filled]) {
                    release(r);
                }
            }
            skipping = true;
            held = 0;
        } else {
            buf.copy_within(from..filled, 0);
            held = filled - from;
        }
    }
    if held > 0 && !skipping {
        if first && buf[..memchr::memchr(b' ', &buf[..held]).unwrap_or(held)] != *maps_first {
            return Ok(false);
        }
        if let Some(r) = scan.line(&buf[..held]) {
            release(r);
        }
    }
    if let Some(r) = scan.end() {
        release(r);
    }
    Ok(true)
}

/// `madvise(MADV_DONTNEED)` on `[start, start + len)`.
#[allow(unsafe_code)]
fn dont_need(start: usize, len: usize) -> io::Result<()> {
    // SAFETY: the range is a whole mapping of this process that `/proc/self/smaps` has just
    // shown to be private, not writable, backed by a file, without an anonymous page resident
    // or swapped out and without flags that make a page more than the file's (`parse::smaps`),
    // read while this process had one thread, the one running here: every page of it is the
    // file's content, so dropping the page-table entries loses nothing (the next touch maps the
    // same bytes from the page cache), and no Rust object lives there as mutable memory.
    let r = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The chunked reader against the scan fed whole lines: the same mappings whatever the read
    /// sizes, a path longer than the buffer skipped with its mapping kept and the next one let go,
    /// and nothing at all when the first range is not maps'.
    #[test]
    fn chunked_reads_give_what_whole_lines_give() {
        let block = "Rss: 8 kB\nAnonymous: 0 kB\nSwap: 0 kB\nVmFlags: rd mr mw me\n";
        let long = "/x".repeat(3000);
        let text = format!(
            "1000-2000 r-xp 0 fe:00 1 /a\n{block}3000-4000 r-xp 0 fe:00 1 {long}\n{block}5000-6000 r--p 0 fe:00 1 /b\n{block}7000-8000 r--p 0 fe:00 1 /c\n{block}"
        );
        let expect = vec![0x1000..0x2000, 0x5000..0x6000, 0x7000..0x8000];
        for chunk in [1, 7, 64, 333, 4096] {
            for size in [64, 200, 4096] {
                // Every other line fits in 64 bytes; the 6,000-byte path fits in none.
                let got = chunked(text.as_bytes(), chunk, size, b"1000-2000");
                assert_eq!(got, (true, expect.clone()), "reads of {chunk}, buffer {size}");
            }
        }
        // The rest of an overlong line is skipped, whatever it looks like: here a path whose
        // bytes from the 640th on read as a mapping of its own (at buffers of 64, 128 and 320
        // bytes a read starts there).
        let prefix = "3000-4000 r--p 0 fe:00 1 /";
        let evil = format!(
            "1000-2000 r-xp 0 fe:00 1 /a\n{block}{prefix}{}9000-a000 r-xp 0 fe:00 1 /evil\n{block}",
            "y".repeat(640 - prefix.len())
        );
        for size in [64, 128, 320] {
            assert_eq!(
                chunked(evil.as_bytes(), size, size, b"1000-2000"),
                (true, vec![std::ops::Range { start: 0x1000, end: 0x2000 }]),
                "buffer {size}"
            );
        }
        // The last line without its newline still counts.
        assert_eq!(chunked(text.trim_end().as_bytes(), 4096, 4096, b"1000-2000"), (true, expect));
        assert_eq!(chunked(text.as_bytes(), 16384, 16384, b"1000-2001"), (false, vec![]), "another first mapping");
    }

    /// [`scan_chunks`] over `text` in reads of at most `chunk` bytes into a buffer of `size`:
    /// whether the first mapping was `first`, and the ranges let go.
    fn chunked(text: &[u8], chunk: usize, size: usize, first: &[u8]) -> (bool, Vec<std::ops::Range<usize>>) {
        let (mut at, mut got) = (0, Vec::new());
        let agreed = scan_chunks(
            |b| {
                let n = chunk.min(b.len()).min(text.len() - at);
                b[..n].copy_from_slice(&text[at..at + n]);
                at += n;
                Ok(n)
            },
            &mut vec![0u8; size],
            first,
            |r| got.push(r.start..r.end),
        )
        .unwrap();
        (agreed, got)
    }

    /// This process's resident KiB of the mapping that starts at `start`, from smaps.
    fn rss_of(start: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{start:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        lines.next()?;
        lines.find_map(|l| l.strip_prefix("Rss:")).map(|v| v.trim().trim_end_matches(" kB").parse().unwrap())
    }

    /// In the test harness (many threads) nothing is let go. (Under qemu-user, whose
    /// `/proc/self/stat` says 0 threads, nothing either.)
    #[test]
    fn several_threads_are_refused() {
        let spin = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        let r = release_file_pages().unwrap();
        assert!(matches!(r.refused, Some(Refusal::Threads(n)) if n != 1), "{r:?}");
        if !cfg!(qemu_user) {
            assert!(matches!(r.refused, Some(Refusal::Threads(n)) if n > 2), "{r:?}");
        }
        assert_eq!(r.mappings, 0);
        spin.join().unwrap();
    }

    /// A file of 64 pages, mapped privately three ways: read-only (let go), read-only after a
    /// write (as RELRO: kept), and writable (kept). Every byte reads the same afterwards. In a
    /// forked child: there, this thread is the only one (glibc makes malloc usable after fork);
    /// the child reports through its exit status which check failed.
    #[test]
    #[allow(unsafe_code)]
    #[cfg_attr(
        qemu_user,
        ignore = "under qemu-user smaps is the host's (7.x) or qemu's own with nothing resident (8.0+), and MADV_DONTNEED on a file mapping is answered, not done"
    )]
    fn clean_file_pages_go_and_written_ones_stay() {
        let path = std::env::temp_dir().join(format!("sts-resident-{}", std::process::id()));
        let len = 64 * 4096;
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path).unwrap().write_all(&content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        // SAFETY: fork; the child runs `child_checks` (syscalls, and allocation, which glibc's
        // fork keeps usable) and leaves with `_exit`, never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let code = child_checks(&file, &content);
            // SAFETY: ends the child without running the harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let failed = [
            "",
            "a mapping failed",
            "not all resident after the touch",
            "one thread, yet refused",
            "nothing let go",
            "the clean mapping is still resident",
            "the relocated (written, then read-only) mapping was let go",
            "the writable mapping was let go",
            "the clean mapping reads other bytes",
            "the relocated mapping lost its write",
            "the writable mapping lost its write",
        ];
        assert!(libc::WIFEXITED(status), "the child died: status {status:#x}");
        let code = libc::WEXITSTATUS(status);
        assert_eq!(code, 0, "{}", failed.get(code as usize).unwrap_or(&"?"));
    }

    /// The checks of [`clean_file_pages_go_and_written_ones_stay`], in the forked child: 0 when
    /// all hold, else the number of the first that does not.
    #[allow(unsafe_code)]
    fn child_checks(file: &std::fs::File, content: &[u8]) -> i32 {
        let len = content.len();
        let map = |prot| {
            // SAFETY: a fresh private mapping of a file this test wrote.
            let p = unsafe {
                libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE, std::os::fd::AsRawFd::as_raw_fd(file), 0)
            };
            (p != libc::MAP_FAILED).then_some(p as *mut u8)
        };
        let (Some(clean), Some(relro), Some(writable)) =
            (map(libc::PROT_READ), map(libc::PROT_READ | libc::PROT_WRITE), map(libc::PROT_READ | libc::PROT_WRITE))
        else {
            return 1;
        };
        // SAFETY: each pointer is a live mapping of `len` bytes; the writes stay within it, and
        // `relro` is made read-only after its write, as the dynamic loader does.
        let (clean_s, relro_s, writable_s) = unsafe {
            *relro.add(5) = 0xee;
            *writable.add(7) = 0xdd;
            if libc::mprotect(relro as *mut libc::c_void, len, libc::PROT_READ) != 0 {
                return 1;
            }
            (
                std::slice::from_raw_parts(clean, len),
                std::slice::from_raw_parts(relro, len),
                std::slice::from_raw_parts(writable, len),
            )
        };
        let touched: u64 = [clean_s, relro_s, writable_s].iter().flat_map(|s| s.iter()).map(|b| u64::from(*b)).sum();
        let all = Some(len as u64 / 1024);
        if touched == 0 || [clean, relro, writable].iter().any(|p| rss_of(*p as usize) != all) {
            return 2;
        }
        let released = match release_file_pages() {
            Ok(r) if r.refused.is_none() => r,
            _ => return 3,
        };
        if released.mappings == 0 || released.kib < len as u64 / 1024 {
            return 4;
        }
        let checks = [
            (rss_of(clean as usize) == Some(0), 5),
            (rss_of(relro as usize) == all, 6),
            (rss_of(writable as usize) == all, 7),
            (clean_s == content, 8),
            (relro_s[5] == 0xee && relro_s[..5] == content[..5] && relro_s[6..] == content[6..], 9),
            (writable_s[7] == 0xdd && writable_s[..7] == content[..7] && writable_s[8..] == content[8..], 10),
        ];
        checks.iter().find(|(ok, _)| !ok).map_or(0, |(_, code)| *code)
    }
}
