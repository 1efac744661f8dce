//! One host sample: everything the host check reads in a cycle, in storage that is reused.

use super::names::{Names, Span};
use crate::parse::diskstats::DiskCounters;
use crate::parse::file_nr::FileNr;
use crate::parse::loadavg::LoadAvg;
use crate::parse::meminfo::MemInfo;
use crate::parse::net_dev::NetDevCounters;
use crate::parse::proc_stat::ProcStat;

/// SNMP-style counters reported as per-second rates: metric, file, protocol, kernel name.
pub const SNMP_RATES: &[(&str, SnmpFile, &[u8], &[u8])] = &[
    ("system.net.tcp.in_segs", SnmpFile::Snmp, b"Tcp", b"InSegs"),
    ("system.net.tcp.out_segs", SnmpFile::Snmp, b"Tcp", b"OutSegs"),
    ("system.net.tcp.retrans_segs", SnmpFile::Snmp, b"Tcp", b"RetransSegs"),
    ("system.net.tcp.listen_drops", SnmpFile::Netstat, b"TcpExt", b"ListenDrops"),
    ("system.net.tcp.listen_overflows", SnmpFile::Netstat, b"TcpExt", b"ListenOverflows"),
    ("system.net.tcp.backlog_drops", SnmpFile::Netstat, b"TcpExt", b"TCPBacklogDrop"),
    ("system.net.tcp.failed_retransmits", SnmpFile::Netstat, b"TcpExt", b"TCPRetransFail"),
    ("system.net.udp.in_datagrams", SnmpFile::Snmp, b"Udp", b"InDatagrams"),
    ("system.net.udp.out_datagrams", SnmpFile::Snmp, b"Udp", b"OutDatagrams"),
    ("system.net.udp.in_errors", SnmpFile::Snmp, b"Udp", b"InErrors"),
    ("system.net.udp.no_ports", SnmpFile::Snmp, b"Udp", b"NoPorts"),
    ("system.net.udp.rcv_buf_errors", SnmpFile::Snmp, b"Udp", b"RcvbufErrors"),
    ("system.net.udp.snd_buf_errors", SnmpFile::Snmp, b"Udp", b"SndbufErrors"),
    ("system.net.udp.in_csum_errors", SnmpFile::Snmp, b"Udp", b"InCsumErrors"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnmpFile {
    Snmp,
    Netstat,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Iface {
    pub name: Span,
    pub counters: NetDevCounters,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Disk {
    pub name: Span,
    pub counters: DiskCounters,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Filesystem {
    /// The mount source, e.g. `/dev/vda1`.
    pub device: Span,
    pub mount_point: Span,
    pub fs_type: Span,
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Available to unprivileged users (`f_bavail`), as `df` shows it.
    pub free_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// Which of the host files could not be read or parsed this cycle (bit per file).
pub type ProblemSet = u16;

#[derive(Debug, Clone, Default)]
pub struct HostSample {
    /// Monotonic seconds (from the loop's clock) when the sample was taken; rates divide by these.
    pub mono_secs: f64,
    /// Unix seconds, for the points' timestamps.
    pub unix_secs: u64,
    pub valid: bool,
    pub problems: ProblemSet,
    pub stat: Option<ProcStat>,
    pub mem: Option<MemInfo>,
    pub load: Option<LoadAvg>,
    pub uptime: Option<f64>,
    pub file_nr: Option<FileNr>,
    pub snmp: [Option<u64>; SNMP_RATES.len()],
    pub names: Names,
    pub ifaces: Vec<Iface>,
    pub disks: Vec<Disk>,
    pub filesystems: Vec<Filesystem>,
}

impl HostSample {
    /// Empties the sample, keeping every allocation for the next cycle.
    pub fn clear(&mut self) {
        self.valid = false;
        self.problems = 0;
        self.stat = None;
        self.mem = None;
        self.load = None;
        self.uptime = None;
        self.file_nr = None;
        self.snmp = [None; SNMP_RATES.len()];
        self.names.clear();
        self.ifaces.clear();
        self.disks.clear();
        self.filesystems.clear();
    }

    pub fn iface_named(&self, name: &[u8]) -> Option<&Iface> {
        self.ifaces.iter().find(|i| self.names.get(i.name) == name)
    }

    pub fn disk_named(&self, name: &[u8]) -> Option<&Disk> {
        self.disks.iter().find(|d| self.names.get(d.name) == name)
    }
}
