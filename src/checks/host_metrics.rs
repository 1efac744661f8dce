//! The `system.*` metric set of the StackState/Datadog core checks (cpu, memory, load, network,
//! disk, io, uptime, file handles), computed from the previous and current host samples.
//! Units follow the original checks: memory in MiB, disk space in KiB, percentages 0–100 except
//! the `*.in_use` and `pct_*` fractions (0–1).

use super::metric::{Kind, MetricSink, Tag};
use crate::model::host::{HostSample, SNMP_RATES};

const KIB_PER_MIB: f64 = 1024.0;

/// Emits every metric `cur` supports; rates only when `prev` is a valid earlier sample.
pub fn emit(prev: &HostSample, cur: &HostSample, out: &mut impl MetricSink) {
    if !cur.valid {
        return;
    }
    let dt = cur.mono_secs - prev.mono_secs;
    let have_prev = prev.valid && dt > 0.0;

    cpu(prev, cur, have_prev, out);
    memory(cur, out);
    if let (Some(l), Some(st)) = (cur.load, cur.stat) {
        let cores = f64::from(st.cpu_count.max(1));
        for (name, norm, v) in [
            ("system.load.1", "system.load.norm.1", l.one),
            ("system.load.5", "system.load.norm.5", l.five),
            ("system.load.15", "system.load.norm.15", l.fifteen),
        ] {
            out.metric(name, Kind::Gauge, v, &[]);
            out.metric(norm, Kind::Gauge, v / cores, &[]);
        }
    }
    if let Some(u) = cur.uptime {
        out.metric("system.uptime", Kind::Gauge, u, &[]);
    }
    if let Some(f) = cur.file_nr {
        let used = f.allocated.saturating_sub(f.unused) as f64;
        out.metric("system.fs.file_handles.allocated", Kind::Gauge, f.allocated as f64, &[]);
        out.metric("system.fs.file_handles.allocated_unused", Kind::Gauge, f.unused as f64, &[]);
        out.metric("system.fs.file_handles.used", Kind::Gauge, used, &[]);
        out.metric("system.fs.file_handles.max", Kind::Gauge, f.max as f64, &[]);
        if f.max > 0 {
            out.metric("system.fs.file_handles.in_use", Kind::Gauge, used / f.max as f64, &[]);
        }
    }
    filesystems(cur, out);
    if have_prev {
        network(prev, cur, dt, out);
        io(prev, cur, dt, out);
    }
}

/// Per-second rate of a monotonically increasing counter; `None` if it went backwards (reset).
fn rate(prev: u64, cur: u64, dt: f64) -> Option<f64> {
    cur.checked_sub(prev).map(|d| d as f64 / dt)
}

fn cpu(prev: &HostSample, cur: &HostSample, have_prev: bool, out: &mut impl MetricSink) {
    let Some(c) = cur.stat else { return };
    out.metric("system.cpu.num_cores", Kind::Gauge, f64::from(c.cpu_count), &[]);
    let (Some(p), true) = (prev.stat, have_prev) else { return };
    let (c, p) = (c.cpu, p.cpu);
    let total = c.total().saturating_sub(p.total());
    if total == 0 || c.total() < p.total() {
        return;
    }
    let pct = |a: u64, b: u64| a.saturating_sub(b) as f64 * 100.0 / total as f64;
    out.metric("system.cpu.user", Kind::Gauge, pct(c.user + c.nice, p.user + p.nice), &[]);
    out.metric("system.cpu.system", Kind::Gauge, pct(c.system + c.irq + c.softirq, p.system + p.irq + p.softirq), &[]);
    out.metric("system.cpu.iowait", Kind::Gauge, pct(c.iowait, p.iowait), &[]);
    out.metric("system.cpu.idle", Kind::Gauge, pct(c.idle, p.idle), &[]);
    out.metric("system.cpu.stolen", Kind::Gauge, pct(c.steal, p.steal), &[]);
    out.metric("system.cpu.guest", Kind::Gauge, pct(c.guest + c.guest_nice, p.guest + p.guest_nice), &[]);
}

fn memory(cur: &HostSample, out: &mut impl MetricSink) {
    let Some(m) = cur.mem else { return };
    let mib = |kib: u64| kib as f64 / KIB_PER_MIB;
    let usable = m.available.unwrap_or(m.free + m.buffers + m.cached);
    out.metric("system.mem.total", Kind::Gauge, mib(m.total), &[]);
    out.metric("system.mem.free", Kind::Gauge, mib(m.free), &[]);
    out.metric("system.mem.used", Kind::Gauge, mib(m.total.saturating_sub(m.free)), &[]);
    out.metric("system.mem.usable", Kind::Gauge, mib(usable), &[]);
    if m.total > 0 {
        out.metric("system.mem.pct_usable", Kind::Gauge, usable as f64 / m.total as f64, &[]);
    }
    out.metric("system.mem.cached", Kind::Gauge, mib(m.cached), &[]);
    out.metric("system.mem.buffered", Kind::Gauge, mib(m.buffers), &[]);
    out.metric("system.mem.shared", Kind::Gauge, mib(m.shmem), &[]);
    out.metric("system.mem.slab", Kind::Gauge, mib(m.slab), &[]);
    out.metric("system.mem.page_tables", Kind::Gauge, mib(m.page_tables), &[]);
    out.metric("system.mem.commit_limit", Kind::Gauge, mib(m.commit_limit), &[]);
    out.metric("system.mem.committed_as", Kind::Gauge, mib(m.committed_as), &[]);
    out.metric("system.swap.total", Kind::Gauge, mib(m.swap_total), &[]);
    out.metric("system.swap.free", Kind::Gauge, mib(m.swap_free), &[]);
    out.metric("system.swap.used", Kind::Gauge, mib(m.swap_total.saturating_sub(m.swap_free)), &[]);
    out.metric("system.swap.cached", Kind::Gauge, mib(m.swap_cached), &[]);
    if m.swap_total > 0 {
        out.metric("system.swap.pct_free", Kind::Gauge, m.swap_free as f64 / m.swap_total as f64, &[]);
    }
}

fn filesystems(cur: &HostSample, out: &mut impl MetricSink) {
    for f in &cur.filesystems {
        let device = cur.names.get(f.device);
        let device_name = device.rsplit(|b| *b == b'/').next().unwrap_or(device);
        let tags = [
            Tag { key: "device", value: device },
            Tag { key: "device_name", value: device_name },
            Tag { key: "filesystem", value: cur.names.get(f.fs_type) },
        ];
        let kib = |b: u64| b as f64 / 1024.0;
        out.metric("system.disk.total", Kind::Gauge, kib(f.total_bytes), &tags);
        out.metric("system.disk.used", Kind::Gauge, kib(f.used_bytes), &tags);
        out.metric("system.disk.free", Kind::Gauge, kib(f.free_bytes), &tags);
        let denom = f.used_bytes + f.free_bytes;
        if denom > 0 {
            out.metric("system.disk.in_use", Kind::Gauge, f.used_bytes as f64 / denom as f64, &tags);
        }
        if f.inodes_total > 0 {
            let used = f.inodes_total.saturating_sub(f.inodes_free);
            out.metric("system.fs.inodes.total", Kind::Gauge, f.inodes_total as f64, &tags);
            out.metric("system.fs.inodes.used", Kind::Gauge, used as f64, &tags);
            out.metric("system.fs.inodes.free", Kind::Gauge, f.inodes_free as f64, &tags);
            out.metric("system.fs.inodes.in_use", Kind::Gauge, used as f64 / f.inodes_total as f64, &tags);
        }
    }
}

fn network(prev: &HostSample, cur: &HostSample, dt: f64, out: &mut impl MetricSink) {
    for i in &cur.ifaces {
        let name = cur.names.get(i.name);
        // The loopback interface is excluded, as in the original network check.
        if name == b"lo" {
            continue;
        }
        let Some(p) = prev.iface_named(name) else { continue };
        let tags = [Tag { key: "device", value: name }];
        let (c, p) = (i.counters, p.counters);
        for (metric, a, b) in [
            ("system.net.bytes_rcvd", p.rx_bytes, c.rx_bytes),
            ("system.net.bytes_sent", p.tx_bytes, c.tx_bytes),
            ("system.net.packets_in.count", p.rx_packets, c.rx_packets),
            ("system.net.packets_in.error", p.rx_errs, c.rx_errs),
            ("system.net.packets_in.drop", p.rx_drop, c.rx_drop),
            ("system.net.packets_out.count", p.tx_packets, c.tx_packets),
            ("system.net.packets_out.error", p.tx_errs, c.tx_errs),
            ("system.net.packets_out.drop", p.tx_drop, c.tx_drop),
        ] {
            if let Some(r) = rate(a, b, dt) {
                out.metric(metric, Kind::Rate, r, &tags);
            }
        }
    }
    for ((name, ..), (p, c)) in SNMP_RATES.iter().zip(prev.snmp.iter().zip(cur.snmp.iter())) {
        if let (Some(p), Some(c)) = (p, c) {
            if let Some(r) = rate(*p, *c, dt) {
                out.metric(name, Kind::Rate, r, &[]);
            }
        }
    }
}

/// `iostat -x` semantics (sysstat), per block device that has ever done I/O.
fn io(prev: &HostSample, cur: &HostSample, dt: f64, out: &mut impl MetricSink) {
    for d in &cur.disks {
        let name = cur.names.get(d.name);
        let c = d.counters;
        if c.reads == 0 && c.writes == 0 {
            continue;
        }
        let Some(p) = prev.disk_named(name) else { continue };
        let p = p.counters;
        let Some(delta) = (|| {
            Some([
                c.reads.checked_sub(p.reads)?,
                c.writes.checked_sub(p.writes)?,
                c.reads_merged.checked_sub(p.reads_merged)?,
                c.writes_merged.checked_sub(p.writes_merged)?,
                c.sectors_read.checked_sub(p.sectors_read)?,
                c.sectors_written.checked_sub(p.sectors_written)?,
                c.read_ms.checked_sub(p.read_ms)?,
                c.write_ms.checked_sub(p.write_ms)?,
                c.io_ms.checked_sub(p.io_ms)?,
                c.weighted_io_ms.checked_sub(p.weighted_io_ms)?,
            ])
        })() else {
            continue;
        };
        let [r, w, rm, wm, sr, sw, rms, wms, io_ms, wio_ms] = delta.map(|v| v as f64);
        let ios = r + w;
        let per = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let tags = [Tag { key: "device", value: name }, Tag { key: "device_name", value: name }];
        let m = [
            ("system.io.r_s", r / dt),
            ("system.io.w_s", w / dt),
            ("system.io.rrqm_s", rm / dt),
            ("system.io.wrqm_s", wm / dt),
            // Sectors are 512 bytes whatever the device's block size (iostats.rst).
            ("system.io.rkb_s", sr * 512.0 / 1024.0 / dt),
            ("system.io.wkb_s", sw * 512.0 / 1024.0 / dt),
            ("system.io.await", per(rms + wms, ios)),
            ("system.io.r_await", per(rms, r)),
            ("system.io.w_await", per(wms, w)),
            ("system.io.avg_q_sz", wio_ms / 1000.0 / dt),
            ("system.io.avg_rq_sz", per(sr + sw, ios)),
            ("system.io.svctm", per(io_ms, ios)),
            ("system.io.util", (io_ms / 10.0 / dt).min(100.0)),
        ];
        for (metric, v) in m {
            out.metric(metric, Kind::Gauge, v, &tags);
        }
        out.metric("system.disk.read_time_pct", Kind::Rate, rms / 10.0 / dt, &tags);
        out.metric("system.disk.write_time_pct", Kind::Rate, wms / 10.0 / dt, &tags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::metric::MetricRows;
    use crate::model::host::{Disk, Iface};
    use crate::parse::{
        diskstats::DiskCounters,
        net_dev::NetDevCounters,
        proc_stat::{CpuTimes, ProcStat},
    };

    fn sample(t: f64, user: u64, idle: u64, rx: u64, reads: u64, read_ms: u64, io_ms: u64) -> HostSample {
        let mut s = HostSample { valid: true, mono_secs: t, unix_secs: 1_700_000_000 + t as u64, ..Default::default() };
        s.stat =
            Some(ProcStat { cpu: CpuTimes { user, idle, ..Default::default() }, cpu_count: 2, ..Default::default() });
        let n = s.names.push(b"eth0");
        s.ifaces.push(Iface { name: n, counters: NetDevCounters { rx_bytes: rx, ..Default::default() } });
        let n = s.names.push(b"vda");
        s.disks.push(Disk {
            name: n,
            counters: DiskCounters { reads, read_ms, io_ms, sectors_read: reads * 8, ..Default::default() },
        });
        s.snmp[0] = Some(rx / 100);
        s
    }

    #[test]
    fn rates_and_percentages_from_two_samples() {
        let a = sample(10.0, 100, 900, 1_000, 100, 50, 100);
        let b = sample(20.0, 130, 970, 11_000, 300, 250, 600);
        let mut out = MetricRows::default();
        emit(&a, &b, &mut out);
        assert_eq!(out.get("system.cpu.user"), Some(30.0));
        assert_eq!(out.get("system.cpu.idle"), Some(70.0));
        assert_eq!(out.get("system.net.bytes_rcvd"), Some(1_000.0));
        assert_eq!(out.get("system.net.tcp.in_segs"), Some(10.0));
        assert_eq!(out.get("system.io.r_s"), Some(20.0));
        assert_eq!(out.get("system.io.r_await"), Some(1.0));
        assert_eq!(out.get("system.io.util"), Some(5.0));
        assert_eq!(out.get("system.io.rkb_s"), Some(80.0));
        let row = out.0.iter().find(|r| r.0 == "system.net.bytes_rcvd").unwrap();
        assert_eq!((row.1, row.3.clone()), (Kind::Rate, vec!["device:eth0".to_string()]));
    }

    #[test]
    fn first_sample_has_no_rates_and_resets_are_skipped() {
        let b = sample(20.0, 130, 970, 11_000, 300, 250, 600);
        let mut out = MetricRows::default();
        emit(&HostSample::default(), &b, &mut out);
        assert_eq!(out.get("system.cpu.user"), None);
        assert_eq!(out.get("system.net.bytes_rcvd"), None);
        assert_eq!(out.get("system.cpu.num_cores"), Some(2.0));
        // The interface counters went backwards (re-created interface): no bogus rate.
        let a = sample(10.0, 100, 900, 50_000, 100, 50, 100);
        let mut out = MetricRows::default();
        emit(&a, &b, &mut out);
        assert_eq!(out.get("system.net.bytes_rcvd"), None);
        assert_eq!(out.get("system.cpu.user"), Some(30.0));
    }
}
