//! Letting go of code and read-only data that ran once (issue 21, the agent's peak RSS).
//!
//! Start-up (configuration, TLS set-up, regex compilation) and the checks' priming runs touch
//! code and read-only data that the steady cycles never touch again, and the kernel maps 64 KiB
//! around each touch (fault-around): about 4 MiB of the agent's binary and of libc stayed
//! resident, half of the glibc build's RSS. [`release_file_pages`] drops this process's
//! page-table entries for every mapping that holds nothing but a file's content (private,
//! not writable, no page copied on write: see `parse::smaps`). The pages stay in the page cache;
//! the next touch maps them again (a minor fault), so the steady cycles' code comes back and
//! the rest stays out, where the kernel can reclaim it.

use crate::parse::smaps::Scan;
use rustix::fd::AsFd;
use std::io;

/// What one pass let go: mappings and the KiB they had resident.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub mappings: u32,
    pub kib: u64,
    /// `/proc/self/smaps` and `/proc/self/maps` began with different mappings, so nothing was let
    /// go: an emulator (qemu-user before 8.0) shows the host's smaps beside the guest's maps,
    /// whose addresses are not this program's.
    pub views_differ: bool,
}

/// The first mapping's address range (`start-end`) in `path`, into `out`; its length.
fn first_range(path: &std::ffi::CStr, out: &mut [u8; 64]) -> io::Result<usize> {
    let file =
        rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?;
    let n = rustix::io::read(file.as_fd(), &mut out[..])?;
    Ok(memchr::memchr(b' ', &out[..n]).unwrap_or(n))
}

/// Reads `/proc/self/smaps` in 4 KiB steps (a stack buffer: nothing is allocated) and lets go of
/// every mapping that qualifies, if its first mapping is `/proc/self/maps`' first too. The agent's loop is its only thread, so no mapping changes
/// between the read and the `madvise`.
pub fn release_file_pages() -> io::Result<Released> {
    let mut maps_first = [0u8; 64];
    let maps_first_len = first_range(c"/proc/self/maps", &mut maps_first)?;
    let mut first_line = true;
    let file = rustix::fs::open(
        c"/proc/self/smaps",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut buf = [0u8; 4096];
    let (mut held, mut skipping) = (0usize, false);
    let mut scan = Scan::default();
    let mut released = Released::default();
    let mut release = |r: crate::parse::smaps::Releasable| {
        if dont_need(r.start, r.end - r.start).is_ok() {
            released.mappings += 1;
            released.kib += r.rss_kib;
        }
    };
    loop {
        let n = rustix::io::read(file.as_fd(), &mut buf[held..])?;
        if n == 0 {
            break;
        }
        let filled = held + n;
        let mut from = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[from..filled]) {
            let line = &buf[from..from + nl];
            if std::mem::take(&mut first_line) {
                let range = &line[..memchr::memchr(b' ', line).unwrap_or(line.len())];
                if range != &maps_first[..maps_first_len] {
                    return Ok(Released { views_differ: true, ..Released::default() });
                }
            }
            if !std::mem::take(&mut skipping) {
                if let Some(r) = scan.line(line) {
                    release(r);
                }
            }
            from += nl + 1;
        }
        if from == 0 && filled == buf.len() {
            // A line longer than the buffer (a very long path): its mapping stays, and the
            // rest of the line is skipped.
            scan.overlong();
            skipping = true;
            held = 0;
        } else {
            buf.copy_within(from..filled, 0);
            held = filled - from;
        }
    }
    if held > 0 && !skipping {
        if let Some(r) = scan.line(&buf[..held]) {
            release(r);
        }
    }
    if let Some(r) = scan.end() {
        release(r);
    }
    Ok(released)
}

/// `madvise(MADV_DONTNEED)` on `[start, start + len)`.
#[allow(unsafe_code)]
fn dont_need(start: usize, len: usize) -> io::Result<()> {
    // SAFETY: the range is a whole mapping of this process that `/proc/self/smaps` has just
    // shown to be private, not writable, backed by a file and without an anonymous page: every
    // page of it is the file's content, so dropping the page-table entries loses nothing (the
    // next touch maps the same bytes from the page cache). No Rust object lives in such a
    // mapping as mutable memory.
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

    /// This process's resident KiB of the mapping that starts at `start`, from smaps.
    fn rss_of(start: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{start:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        lines.next()?;
        lines.find_map(|l| l.strip_prefix("Rss:")).map(|v| v.trim().trim_end_matches(" kB").parse().unwrap())
    }

    /// A file of 64 pages, mapped privately three ways: read-only (let go), read-only after a
    /// write (as RELRO: kept), and writable (kept). Every byte reads the same afterwards.
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
        let map = |prot| {
            // SAFETY: a fresh private mapping of a file this test wrote; unmapped below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE,
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            p as *mut u8
        };
        let clean = map(libc::PROT_READ);
        let relro = map(libc::PROT_READ | libc::PROT_WRITE);
        let writable = map(libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: each pointer is a live mapping of `len` bytes; the writes stay within it, and
        // `relro` is made read-only after its write, as the dynamic loader does.
        let (clean_s, relro_s, writable_s) = unsafe {
            *relro.add(5) = 0xee;
            *writable.add(7) = 0xdd;
            assert_eq!(libc::mprotect(relro as *mut libc::c_void, len, libc::PROT_READ), 0);
            (
                std::slice::from_raw_parts(clean, len),
                std::slice::from_raw_parts(relro, len),
                std::slice::from_raw_parts(writable, len),
            )
        };
        assert_eq!(clean_s, &content[..], "touched: every page resident");
        let _ =
            (relro_s.iter().map(|b| u64::from(*b)).sum::<u64>(), writable_s.iter().map(|b| u64::from(*b)).sum::<u64>());
        assert_eq!(rss_of(clean as usize), Some(256));
        let released = release_file_pages().unwrap();
        assert!(released.mappings >= 1 && released.kib >= 256, "{released:?}");
        assert_eq!(rss_of(clean as usize), Some(0), "let go");
        assert_eq!(rss_of(relro as usize), Some(256), "a page copied on write: kept");
        assert_eq!(rss_of(writable as usize), Some(256), "writable: kept");
        assert_eq!(clean_s, &content[..], "the same bytes, mapped again");
        let mut expect = content.clone();
        expect[5] = 0xee;
        assert_eq!(relro_s, &expect[..]);
        expect[5] = content[5];
        expect[7] = 0xdd;
        assert_eq!(writable_s, &expect[..]);
        for p in [clean, relro, writable] {
            // SAFETY: unmapping the test's own mappings; the slices are not used after this.
            unsafe { libc::munmap(p as *mut libc::c_void, len) };
        }
    }
}
