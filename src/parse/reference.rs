//! Naive reference parsers (split, parse, collect) and a property test: on thousands of mutated
//! copies of the captured fixtures, the zero-copy parsers and these must agree exactly, on the
//! values and on which inputs are errors.

use super::*;

const FIX: &str = "tests/fixtures/proc/debian12-6.18";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{FIX}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn naive_fields(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| *b == b' ' || *b == b'\t').filter(|s| !s.is_empty()).collect()
}

fn naive_lines(buf: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
    if buf.last() == Some(&b'\n') || buf.is_empty() {
        v.pop();
    }
    v
}

fn naive_u64(s: &[u8]) -> Option<u64> {
    let t = std::str::from_utf8(s).ok()?;
    if t.starts_with('+') {
        return None;
    }
    t.parse().ok()
}

fn naive_i64(s: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(s).ok()?;
    if t.starts_with('+') || t.starts_with("-+") {
        return None;
    }
    t.parse().ok()
}

fn naive_f64(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    let (i, f) = t.split_once('.').unwrap_or((t, ""));
    if i.is_empty() || !i.bytes().all(|b| b.is_ascii_digit()) || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = i.parse().ok()?;
    let frac: String = f.chars().take(18).collect();
    let fv = if frac.is_empty() { 0.0 } else { frac.parse::<u64>().ok()? as f64 / 10f64.powi(frac.len() as i32) };
    Some(whole as f64 + fv)
}

fn naive_proc_stat(buf: &[u8]) -> Option<proc_stat::ProcStat> {
    let mut out = proc_stat::ProcStat::default();
    let mut seen = false;
    for line in naive_lines(buf) {
        let f = naive_fields(line);
        let Some((key, rest)) = f.split_first() else { continue };
        match *key {
            b"cpu" => {
                let nums: Vec<u64> = rest.iter().take(10).map(|x| naive_u64(x)).collect::<Option<_>>()?;
                if nums.len() < 4 {
                    return None;
                }
                let g = |i: usize| nums.get(i).copied().unwrap_or(0);
                out.cpu = proc_stat::CpuTimes {
                    user: g(0),
                    nice: g(1),
                    system: g(2),
                    idle: g(3),
                    iowait: g(4),
                    irq: g(5),
                    softirq: g(6),
                    steal: g(7),
                    guest: g(8),
                    guest_nice: g(9),
                };
                seen = true;
            }
            k if k.starts_with(b"cpu") && k.len() > 3 => out.cpu_count += 1,
            b"ctxt" => out.context_switches = naive_u64(rest.first()?)?,
            b"btime" => out.boot_time = naive_u64(rest.first()?)?,
            b"processes" => out.processes_created = naive_u64(rest.first()?)?,
            b"procs_running" => out.procs_running = naive_u64(rest.first()?)?,
            b"procs_blocked" => out.procs_blocked = naive_u64(rest.first()?)?,
            _ => {}
        }
    }
    seen.then_some(out)
}

fn naive_meminfo(buf: &[u8]) -> Option<meminfo::MemInfo> {
    let mut m = meminfo::MemInfo::default();
    let mut seen = false;
    for line in naive_lines(buf) {
        let Some(c) = line.iter().position(|b| *b == b':') else { continue };
        let (k, v) = (&line[..c], &line[c + 1..]);
        let val = || naive_fields(v).first().and_then(|x| naive_u64(x));
        match k {
            b"MemTotal" => {
                m.total = val()?;
                seen = true;
            }
            b"MemFree" => m.free = val()?,
            b"MemAvailable" => m.available = Some(val()?),
            b"Buffers" => m.buffers = val()?,
            b"Cached" => m.cached = val()?,
            b"SwapCached" => m.swap_cached = val()?,
            b"SwapTotal" => m.swap_total = val()?,
            b"SwapFree" => m.swap_free = val()?,
            b"Shmem" => m.shmem = val()?,
            b"Slab" => m.slab = val()?,
            b"SReclaimable" => m.sreclaimable = val()?,
            b"PageTables" => m.page_tables = val()?,
            b"CommitLimit" => m.commit_limit = val()?,
            b"Committed_AS" => m.committed_as = val()?,
            _ => {}
        }
    }
    seen.then_some(m)
}

fn naive_net_dev(buf: &[u8]) -> Vec<Option<(Vec<u8>, [u64; 16])>> {
    naive_lines(buf)
        .into_iter()
        .filter(|l| !l.contains(&b'|') && !l.iter().all(|b| b.is_ascii_whitespace()))
        .map(|l| {
            let c = l.iter().rposition(|b| *b == b':')?;
            let name = naive_fields(&l[..c]).first()?.to_vec();
            let nums: Vec<u64> =
                naive_fields(&l[c + 1..]).into_iter().take(16).map(naive_u64).collect::<Option<_>>()?;
            Some((name, nums.try_into().ok()?))
        })
        .collect()
}

type DiskRow = (u32, u32, Vec<u8>, [u64; 11]);
type MountRow = (u32, u32, Vec<u8>, Vec<u8>, Vec<u8>);

fn naive_diskstats(buf: &[u8]) -> Vec<Option<DiskRow>> {
    naive_lines(buf)
        .into_iter()
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .map(|l| {
            let f = naive_fields(l);
            let major = u32::try_from(naive_u64(f.first()?)?).ok()?;
            let minor = u32::try_from(naive_u64(f.get(1)?)?).ok()?;
            let name = f.get(2)?.to_vec();
            let nums: Vec<u64> = f.get(3..14)?.iter().map(|x| naive_u64(x)).collect::<Option<_>>()?;
            Some((major, minor, name, nums.try_into().ok()?))
        })
        .collect()
}

fn naive_snmp(buf: &[u8], proto: &[u8], name: &[u8]) -> Option<i64> {
    let lines: Vec<&[u8]> = naive_lines(buf).into_iter().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].is_empty() {
            i += 1;
            continue;
        }
        let names = lines[i];
        let values = lines.get(i + 1).copied();
        i += 2;
        let split = |l: &[u8]| l.iter().position(|b| *b == b':').map(|c| (l[..c].to_vec(), l[c + 1..].to_vec()));
        let Some((p, n)) = split(names) else { continue };
        let Some((p2, v)) = values.and_then(split) else { continue };
        if p != p2 || p != proto {
            continue;
        }
        let nf = naive_fields(&n);
        let vf = naive_fields(&v);
        let idx = nf.iter().position(|x| *x == name)?;
        return naive_i64(vf.get(idx)?);
    }
    None
}

fn naive_mounts(buf: &[u8]) -> Vec<Option<MountRow>> {
    naive_lines(buf)
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f = naive_fields(l);
            let dev = f.get(2)?;
            let c = dev.iter().position(|b| *b == b':')?;
            let major = u32::try_from(naive_u64(&dev[..c])?).ok()?;
            let minor = u32::try_from(naive_u64(&dev[c + 1..])?).ok()?;
            let mp = f.get(4)?.to_vec();
            let dash = f.iter().skip(5).position(|x| *x == b"-")? + 5;
            Some((major, minor, mp, f.get(dash + 1)?.to_vec(), f.get(dash + 2)?.to_vec()))
        })
        .collect()
}

/// A small deterministic PRNG (xorshift64*) so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutations that stress the edges of these formats: digits, blanks, newlines, colons, signs,
/// dots, huge numbers, truncation, and raw bytes.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] =
        &[b"0", b"9", b" ", b"\t", b"\n", b":", b"-", b"+", b".", b"|", b"99999999999999999999", b"\xff", b"cpu", b"x"];
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 => {
                v.truncate(at);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if at < v.len() => {
                v.remove(at);
            }
            _ if at < v.len() => {
                v[at] = TOKENS[rng.below(TOKENS.len())][0];
            }
            _ => {}
        }
    }
    v
}

fn for_mutations(name: &str, mut check: impl FnMut(&[u8])) {
    let base = fixture(name);
    check(&base);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for _ in 0..3000 {
        check(&mutate(&mut rng, &base));
    }
}

#[test]
fn proc_stat_agrees_with_naive() {
    for_mutations("stat", |b| {
        assert_eq!(proc_stat::parse(b).ok(), naive_proc_stat(b), "{:?}", String::from_utf8_lossy(b))
    });
}

#[test]
fn meminfo_agrees_with_naive() {
    for_mutations("meminfo", |b| {
        assert_eq!(meminfo::parse(b).ok(), naive_meminfo(b), "{:?}", String::from_utf8_lossy(b))
    });
}

#[test]
fn net_dev_agrees_with_naive() {
    for_mutations("net/dev", |b| {
        let ours: Vec<_> = net_dev::iter(b)
            .map(|r| {
                r.ok().map(|d| {
                    let c = d.counters;
                    (
                        d.name.to_vec(),
                        [
                            c.rx_bytes,
                            c.rx_packets,
                            c.rx_errs,
                            c.rx_drop,
                            c.tx_bytes,
                            c.tx_packets,
                            c.tx_errs,
                            c.tx_drop,
                        ],
                    )
                })
            })
            .collect();
        let naive: Vec<_> = naive_net_dev(b)
            .into_iter()
            .map(|r| r.map(|(n, c)| (n, [c[0], c[1], c[2], c[3], c[8], c[9], c[10], c[11]])))
            .collect();
        assert_eq!(ours, naive, "{:?}", String::from_utf8_lossy(b));
    });
}

#[test]
fn diskstats_agrees_with_naive() {
    for_mutations("diskstats", |b| {
        let ours: Vec<_> = diskstats::iter(b)
            .map(|r| {
                r.ok().map(|d| {
                    let c = d.counters;
                    (
                        d.major,
                        d.minor,
                        d.name.to_vec(),
                        [
                            c.reads,
                            c.reads_merged,
                            c.sectors_read,
                            c.read_ms,
                            c.writes,
                            c.writes_merged,
                            c.sectors_written,
                            c.write_ms,
                            c.in_flight,
                            c.io_ms,
                            c.weighted_io_ms,
                        ],
                    )
                })
            })
            .collect();
        assert_eq!(ours, naive_diskstats(b), "{:?}", String::from_utf8_lossy(b));
    });
}

#[test]
fn snmp_agrees_with_naive() {
    let keys: &[(&[u8], &[u8])] =
        &[(b"Tcp", b"InSegs"), (b"Tcp", b"MaxConn"), (b"Udp", b"InErrors"), (b"Ip", b"Forwarding")];
    for_mutations("net/snmp", |b| {
        for (p, k) in keys {
            // Both stop at the first table of the protocol that parses.
            let ours = snmp::tables(b).filter_map(Result::ok).find(|t| t.proto == *p).and_then(|t| t.get(k));
            assert_eq!(ours, naive_snmp(b, p, k), "{:?}", String::from_utf8_lossy(b));
        }
    });
}

#[test]
fn mountinfo_agrees_with_naive() {
    for_mutations("self/mountinfo", |b| {
        let ours: Vec<_> = mountinfo::iter(b)
            .map(|r| r.ok().map(|m| (m.major, m.minor, m.mount_point.to_vec(), m.fs_type.to_vec(), m.source.to_vec())))
            .collect();
        assert_eq!(ours, naive_mounts(b), "{:?}", String::from_utf8_lossy(b));
    });
}

#[test]
fn small_files_agree_with_naive() {
    let naive3 = |b: &[u8], p: fn(&[u8]) -> Option<f64>| -> Option<Vec<f64>> {
        let b = b.strip_suffix(b"\n").unwrap_or(b);
        let f = naive_fields(b);
        f.get(..3)?.iter().map(|x| p(x)).collect()
    };
    for_mutations("loadavg", |b| {
        let ours = loadavg::parse_loadavg(b).ok().map(|l| vec![l.one, l.five, l.fifteen]);
        assert_eq!(ours, naive3(b, naive_f64), "{:?}", String::from_utf8_lossy(b));
    });
    for_mutations("uptime", |b| {
        let n = naive_fields(b.strip_suffix(b"\n").unwrap_or(b)).first().and_then(|x| naive_f64(x));
        assert_eq!(loadavg::parse_uptime(b).ok(), n, "{:?}", String::from_utf8_lossy(b));
    });
    for_mutations("sys/fs/file-nr", |b| {
        let ours = file_nr::parse(b).ok().map(|f| vec![f.allocated as f64, f.unused as f64, f.max as f64]);
        let n = naive3(b, |x| naive_u64(x).map(|v| v as f64));
        assert_eq!(ours, n, "{:?}", String::from_utf8_lossy(b));
    });
}

type StatRow = (u32, Vec<u8>, u8, i32, [u64; 4], i64, u64, u64, Option<u32>, [u64; 2]);

fn naive_pid_stat(b: &[u8]) -> Option<StatRow> {
    let open = b.iter().position(|c| *c == b'(')?;
    let close = b.iter().rposition(|c| *c == b')')?;
    if close < open {
        return None;
    }
    let pid = u32::try_from(naive_u64(naive_fields(&b[..open]).first()?)?).ok()?;
    let rest = &b[close + 1..];
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let f = naive_fields(rest);
    let state = *f.first()?.first()?;
    let nums: Vec<i64> = f[1..]
        .iter()
        .take(36)
        .map(|x| naive_i64(x).or_else(|| naive_u64(x).map(|u| u as i64)))
        .collect::<Option<_>>()?;
    if nums.len() < 21 {
        return None;
    }
    let processor = if nums.len() > 35 { u32::try_from(nums[35]).ok() } else { None };
    let at = |i: usize| nums.get(i).map_or(0, |v| *v as u64);
    Some((
        pid,
        b[open + 1..close].to_vec(),
        state,
        i32::try_from(nums[0]).ok()?,
        [nums[10] as u64, nums[11] as u64, nums[18] as u64, nums[20] as u64],
        nums[15],
        nums[16] as u64,
        nums[19] as u64,
        processor,
        [at(22), at(24)],
    ))
}

#[test]
fn pid_stat_agrees_with_naive() {
    for name in ["pid/evil/stat", "pid/1/stat", "pid/self/stat"] {
        for_mutations(name, |b| {
            let ours = pid::parse_stat(b).ok().map(|s| {
                (
                    s.pid,
                    s.comm.to_vec(),
                    s.state,
                    s.ppid,
                    [s.utime, s.stime, s.start_time, s.rss_pages],
                    s.nice,
                    s.num_threads as u64,
                    s.vsize,
                    s.processor,
                    [s.start_code, s.start_stack],
                )
            });
            assert_eq!(ours, naive_pid_stat(b), "{:?}", String::from_utf8_lossy(b));
        });
    }
}

#[test]
fn pid_statm_status_io_agree_with_naive() {
    for_mutations("pid/self/statm", |b| {
        let ours = pid::parse_statm(b).ok().map(|m| vec![m.size, m.resident, m.shared, m.text, m.lib, m.data, m.dirty]);
        let f = naive_fields(b.strip_suffix(b"\n").unwrap_or(b));
        let naive: Option<Vec<u64>> = f.get(..7).and_then(|s| s.iter().map(|x| naive_u64(x)).collect());
        assert_eq!(ours, naive, "{:?}", String::from_utf8_lossy(b));
    });
    for_mutations("pid/evil/status", |b| {
        let ours = pid::parse_status(b).ok().map(|s| (s.uid, s.gid, s.vm_swap_kib, s.voluntary_ctxt_switches));
        let naive = (|| {
            let mut uid = None;
            let mut gid = None;
            let (mut swap, mut vol) = (None, None);
            for line in naive_lines(b) {
                let Some(c) = line.iter().position(|x| *x == b':') else { continue };
                let (k, v) = (&line[..c], &line[c + 1..]);
                let first = || naive_fields(v).first().and_then(|x| naive_u64(x));
                match k {
                    b"Uid" | b"Gid" => {
                        let mut ids = [0u32; 4];
                        for (slot, x) in ids.iter_mut().zip(naive_fields(v)) {
                            *slot = u32::try_from(naive_u64(x)?).ok()?;
                        }
                        if k == b"Uid" {
                            uid = Some(ids)
                        } else {
                            gid = Some(ids)
                        }
                    }
                    b"VmSwap" => swap = Some(first()?),
                    b"voluntary_ctxt_switches" => vol = Some(first()?),
                    b"nonvoluntary_ctxt_switches" => {
                        first()?;
                    }
                    _ => {}
                }
            }
            Some((uid?, gid?, swap, vol))
        })();
        assert_eq!(ours, naive, "{:?}", String::from_utf8_lossy(b));
    });
    for_mutations("pid/self/io", |b| {
        let ours = pid::parse_io(b).ok().map(|i| [i.syscr, i.syscw, i.read_bytes, i.write_bytes]);
        let naive = (|| {
            let mut out = [None; 4];
            for line in naive_lines(b) {
                let Some(c) = line.iter().position(|x| *x == b':') else { continue };
                let idx = match &line[..c] {
                    b"syscr" => 0,
                    b"syscw" => 1,
                    b"read_bytes" => 2,
                    b"write_bytes" => 3,
                    _ => continue,
                };
                out[idx] = Some(naive_fields(&line[c + 1..]).first().and_then(|x| naive_u64(x))?);
            }
            Some([out[0]?, out[1]?, out[2]?, out[3]?])
        })();
        assert_eq!(ours, naive, "{:?}", String::from_utf8_lossy(b));
    });
}

#[test]
fn cmdline_and_cgroup_agree_with_naive() {
    for_mutations("pid/evil/cmdline", |b| {
        let ours: Vec<&[u8]> = pid::cmdline_args(b).collect();
        let trimmed = b.strip_suffix(b"\0").unwrap_or(b);
        let naive: Vec<&[u8]> = if trimmed.is_empty() { vec![] } else { trimmed.split(|x| *x == 0).collect() };
        assert_eq!(ours, naive);
    });
    for_mutations("pid/1/cgroup", |b| {
        let ours: Vec<_> = cgroup::iter(b)
            .map(|r| r.ok().map(|l| (l.hierarchy.to_vec(), l.controllers.to_vec(), l.path.to_vec())))
            .collect();
        let naive: Vec<_> = naive_lines(b)
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let s: Vec<&[u8]> = l.splitn(3, |x| *x == b':').collect();
                (s.len() == 3).then(|| (s[0].to_vec(), s[1].to_vec(), s[2].to_vec()))
            })
            .collect();
        assert_eq!(ours, naive, "{:?}", String::from_utf8_lossy(b));
    });
}
