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

/// A `MAJ:MIN` device number.
pub fn device(b: &[u8]) -> Option<(u32, u32)> {
    let colon = memchr::memchr(b':', b)?;
    let major = u64_dec(b.get(..colon)?)?;
    let minor = u64_dec(b.get(colon + 1..)?)?;
    Some((u32::try_from(major).ok()?, u32::try_from(minor).ok()?))
}

/// Per-device I/O counters: bytes and operations read and written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

/// Adds `v` to the counter `field` of device `dev` in `devs[..*n]`, appending it if there is
/// room (further devices are dropped: the array is fixed so a pass allocates nothing).
fn add_device(devs: &mut [DeviceIo], n: &mut usize, dev: (u32, u32), field: fn(&mut DeviceIo) -> &mut u64, v: u64) {
    let i = match devs[..*n].iter().position(|d| (d.major, d.minor) == dev) {
        Some(i) => i,
        None if *n < devs.len() => {
            devs[*n] = DeviceIo { major: dev.0, minor: dev.1, ..Default::default() };
            *n += 1;
            *n - 1
        }
        None => return,
    };
    let f = field(&mut devs[i]);
    *f = f.saturating_add(v);
}

/// v1 `blkio.throttle.io_service_bytes` (`ops == false`) or `blkio.throttle.io_serviced`
/// (`ops == true`) per device into `devs` (the first `*n` in use; updated). `Total` lines are
/// skipped.
pub fn blkio_per_device(buf: &[u8], ops: bool, devs: &mut [DeviceIo], n: &mut usize) {
    for l in lines(buf) {
        let mut f = fields(l);
        let (Some(dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else { continue };
        let (Some(dev), Some(v)) = (device(dev), u64_dec(v)) else { continue };
        let field: fn(&mut DeviceIo) -> &mut u64 = match (op, ops) {
            (b"Read", false) => |d| &mut d.read_bytes,
            (b"Write", false) => |d| &mut d.write_bytes,
            (b"Read", true) => |d| &mut d.read_ops,
            (b"Write", true) => |d| &mut d.write_ops,
            _ => continue,
        };
        add_device(devs, n, dev, field, v);
    }
}

/// v2 `io.stat` per device (`rbytes`, `wbytes`, `rios`, `wios`) into `devs` (as
/// [`blkio_per_device`]).
pub fn io_stat_per_device(buf: &[u8], devs: &mut [DeviceIo], n: &mut usize) {
    for l in lines(buf) {
        let mut f = fields(l);
        let Some(dev) = f.next().and_then(device) else { continue };
        for kv in f {
            let Some(eq) = memchr::memchr(b'=', kv) else { continue };
            let (k, v) = (kv.get(..eq).unwrap_or(&[]), kv.get(eq + 1..).and_then(u64_dec));
            let Some(v) = v else { continue };
            let field: fn(&mut DeviceIo) -> &mut u64 = match k {
                b"rbytes" => |d| &mut d.read_bytes,
                b"wbytes" => |d| &mut d.write_bytes,
                b"rios" => |d| &mut d.read_ops,
                b"wios" => |d| &mut d.write_ops,
                _ => continue,
            };
            add_device(devs, n, dev, field, v);
        }
    }
}

/// v2 `cpu.weight` (1..=10000) as v1 `cpu.shares` (2..=262144): the inverse of runc's map
/// shares → weight `1 + ((shares - 2) * 9999) / 262142`.
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9_999
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

    #[test]
    fn per_device_io() {
        let mut devs = [DeviceIo::default(); 2];
        let mut n = 0;
        let bytes =
            b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1\n8:32 Read 5\n8:0 Total 12288\nTotal 12289\n";
        blkio_per_device(bytes, false, &mut devs, &mut n);
        blkio_per_device(b"8:0 Read 2\n8:0 Write 3\nx:y Read 1\n", true, &mut devs, &mut n);
        assert_eq!(n, 2, "a third device is dropped, not allocated for");
        assert_eq!(
            devs[0],
            DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 8192, read_ops: 2, write_ops: 3 }
        );
        assert_eq!((devs[1].minor, devs[1].read_bytes), (16, 1));
        let mut n = 0;
        let io = b"259:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n8:0 rbytes=x wios=7\n";
        io_stat_per_device(io, &mut devs, &mut n);
        assert_eq!(n, 2);
        assert_eq!(
            devs[0],
            DeviceIo { major: 259, minor: 0, read_bytes: 1048576, write_bytes: 4096, read_ops: 10, write_ops: 1 }
        );
        assert_eq!((devs[1].read_bytes, devs[1].write_ops), (0, 7));
        assert_eq!(device(b"8:"), None);
        assert_eq!(device(b"99999999999:1"), None);
        assert_eq!((weight_to_shares(100), weight_to_shares(1), weight_to_shares(10_000)), (2597, 2, 262_144));
    }
}
