//! cgroup controller files, v1 and v2 (Documentation/admin-guide/cgroup-v1/*.rst and
//! cgroup-v2.rst): `key value` tables, single values, `max`-or-number, `cpu.max`,
//! v1 `blkio.throttle.io_service_bytes` and v2 `io.stat`.

use super::cursor::{fields, lines, u64_dec};

/// `key value` lines (`memory.stat`, `cpuacct.stat`, `cpu.stat`, `memory.events`); lines that
/// do not have that shape are skipped.
pub fn key_values(buf: &[u8]) -> impl Iterator<Item = (&[u8], u64)> {
    lines(buf).filter_map(|l| {
        let mut f = fields(l);
        let k = f.next()?;
        let v = u64_dec(f.next()?)?;
        Some((k, v))
    })
}

pub fn get(buf: &[u8], key: &[u8]) -> Option<u64> {
    key_values(buf).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// A file holding one number (`memory.limit_in_bytes`, `cpuacct.usage`, `memory.current`).
pub fn single(buf: &[u8]) -> Option<u64> {
    fields(buf.strip_suffix(b"\n").unwrap_or(buf)).next().and_then(u64_dec)
}

/// A v1 quota that may be `-1` (unlimited): `None` then.
pub fn signed_single(buf: &[u8]) -> Option<u64> {
    let f = fields(buf.strip_suffix(b"\n").unwrap_or(buf)).next()?;
    if f.first() == Some(&b'-') {
        None
    } else {
        u64_dec(f)
    }
}

/// v2 `memory.max` and friends: `max` (no limit) or a number. Outer `None`: malformed.
pub fn max_or_value(buf: &[u8]) -> Option<Option<u64>> {
    let f = fields(buf.strip_suffix(b"\n").unwrap_or(buf)).next()?;
    if f == b"max" {
        Some(None)
    } else {
        u64_dec(f).map(Some)
    }
}

/// v2 `cpu.max`: `$MAX $PERIOD`, `$MAX` being `max` or microseconds. `(quota, period)`.
pub fn cpu_max(buf: &[u8]) -> Option<(Option<u64>, u64)> {
    let mut f = fields(buf.strip_suffix(b"\n").unwrap_or(buf));
    let q = f.next()?;
    let quota = if q == b"max" { None } else { Some(u64_dec(q)?) };
    let period = f.next().map_or(Some(100_000), u64_dec)?;
    Some((quota, period))
}

/// v1 `blkio.throttle.io_service_bytes`: `(read, write)` bytes summed over devices
/// (`MAJ:MIN Read N` lines; the `Total` line is skipped).
pub fn blkio_service_bytes(buf: &[u8]) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for l in lines(buf) {
        let mut f = fields(l);
        let (Some(dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else { continue };
        if !dev.contains(&b':') {
            continue;
        }
        let Some(v) = u64_dec(v) else { continue };
        match op {
            b"Read" => r = r.saturating_add(v),
            b"Write" => w = w.saturating_add(v),
            _ => {}
        }
    }
    (r, w)
}

/// v2 `io.stat`: `(rbytes, wbytes)` summed over devices (`MAJ:MIN rbytes=N wbytes=N ...`).
pub fn io_stat_bytes(buf: &[u8]) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for l in lines(buf) {
        for kv in fields(l).skip(1) {
            let Some(eq) = memchr::memchr(b'=', kv) else { continue };
            let (k, v) = (kv.get(..eq).unwrap_or(&[]), kv.get(eq + 1..).and_then(u64_dec));
            match (k, v) {
                (b"rbytes", Some(v)) => r = r.saturating_add(v),
                (b"wbytes", Some(v)) => w = w.saturating_add(v),
                _ => {}
            }
        }
    }
    (r, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fix {
        ($p:literal) => {
            include_bytes!(concat!("../../tests/fixtures/cgroup/", $p))
        };
    }

    #[test]
    fn v1_files_as_this_kernel_writes_them() {
        let stat = fix!("debian12-v1/memory/memory.stat");
        assert_eq!(get(stat, b"cache"), Some(37408768));
        assert_eq!(get(stat, b"rss"), Some(0));
        assert_eq!(single(fix!("debian12-v1/memory/memory.limit_in_bytes")), Some(268435456));
        let cpuacct = fix!("debian12-v1/cpuacct/cpuacct.stat");
        assert_eq!((get(cpuacct, b"user"), get(cpuacct, b"system")), (Some(62), Some(18)));
        let cpu = fix!("debian12-v1/cpu/cpu.stat");
        assert_eq!((get(cpu, b"nr_throttled"), get(cpu, b"throttled_time")), (Some(14), Some(369863342)));
        assert_eq!(signed_single(fix!("debian12-v1/cpu/cpu.cfs_quota_us")), Some(50000));
        assert_eq!(signed_single(b"-1\n"), None);
        assert_eq!(blkio_service_bytes(fix!("debian12-v1/blkio/blkio.throttle.io_service_bytes")), (0, 0));
        let blk = b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1\n8:0 Total 12288\nTotal 12289\n";
        assert_eq!(blkio_service_bytes(blk), (4097, 8192));
    }

    #[test]
    fn v2_formats() {
        assert_eq!(max_or_value(b"max\n"), Some(None));
        assert_eq!(max_or_value(b"536870912\n"), Some(Some(536870912)));
        assert_eq!(max_or_value(b"lots\n"), None);
        assert_eq!(cpu_max(b"max 100000\n"), Some((None, 100000)));
        assert_eq!(cpu_max(b"50000 100000\n"), Some((Some(50000), 100000)));
        assert_eq!(cpu_max(b"x 1"), None);
        let io =
            b"259:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=1 wios=1\n";
        assert_eq!(io_stat_bytes(io), (1048577, 4098));
        assert_eq!(io_stat_bytes(b"garbage\n8:0 rbytes=x\n"), (0, 0));
    }
}
