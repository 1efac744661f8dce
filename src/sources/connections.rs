//! TCP sockets of every network namespace on the host, from `NETLINK_SOCK_DIAG`, and the
//! process that owns each one.
//!
//! Namespaces are found from the processes' `ns/net` inodes (read once per process by the
//! process source). Each gets one netlink socket, created inside it (`setns` there and back) and
//! kept until no process is left in the namespace. A dump per namespace and address family fills
//! the [`ConnTable`] from one reused receive buffer.
//!
//! Owners: the kernel gives a socket's inode, not its process, so `HOST_PROC/<pid>/fd/*` links
//! are read, incrementally: a reported process is scanned once when first reported, and again
//! only while sockets of unknown owner exist in its namespace, a bounded number of links per
//! cycle. A socket no scan could attribute (its owner is not reported) is remembered as such,
//! so a steady host reads no links at all.

use crate::model::connection::ConnTable;
use crate::model::http_flows::HttpFlows;
use crate::model::process::{Proc, ProcessTable};
use crate::parse::inet_diag::{self, messages, Msg, BOTH_FAMILIES_REQUEST_LEN, REQUEST_LEN, STATES_OWNED};
use crate::parse::rtnl_link::Link;
use crate::parse::sockstat;
use crate::sources::procfs::ReadBuf;
use crate::sys::http_filter::{program, Direction};
use crate::sys::netlink::{DiagSocket, DumpError, RECV_BUFFER};
use crate::sys::netns::{self, Home};
use crate::sys::packet_ring::{Interfaces, PacketRing, SockFilter, BLOCKS_FIRST, BLOCKS_FIRST_HOST, BUSY_BLOCKS_PER_S};
use crate::sys::route_socket::RouteSocket;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat, Mode, OFlags, RawDir};
use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// At most this many `fd/` links are read per cycle to find owners.
pub const FD_SCAN_BUDGET: u32 = 16 * 1024;
/// A namespace whose diag socket could not be opened is tried again this long after the first
/// failure, then after twice as long each time, up to [`NS_RETRY_MAX_SECS`].
pub const NS_RETRY_FIRST_SECS: f64 = 15.0;
pub const NS_RETRY_MAX_SECS: f64 = 600.0;
/// Interfaces of one namespace whose leaving packets are captured (a ring each).
pub const MAX_LEAVING_PER_NAMESPACE: usize = 16;

struct Namespace {
    inode: u64,
    sock: Option<DiagSocket>,
    /// Failed attempts to open `sock` since the last success, and when to try again.
    open_failures: u32,
    retry_at: f64,
    /// Dumped successfully at least once (its sockets' counters then have a baseline).
    dumped: bool,
    /// An error was logged and not followed by a success yet (one log line per episode).
    failing: bool,
    /// The HTTP capture of this namespace: what arrives on any interface (opened with the diag
    /// socket), and what leaves on each interface that leaves the host (see [`leaves_host`]),
    /// by interface index. Those are found from `route`'s link dump, then its notifications.
    capture: Option<Capture>,
    leaving: Vec<(u32, Capture)>,
    route: Option<RouteSocket>,
    links_stale: bool,
    /// The last link dump failed (said once per episode).
    links_failing: bool,
    /// The namespace's `net/sockstat` and `net/sockstat6`, held open (they pin the namespace, as
    /// `sock` does) and re-read each cycle: a family they say has no TCP socket is not dumped
    /// (see [`crate::parse::sockstat`] for why that saves so much). None: always dumped.
    sockstat: Option<OwnedFd>,
    sockstat6: Option<OwnedFd>,
    /// Which families (IPv4, IPv6) the last cycle dumped (not skipped).
    families_dumped: [bool; 2],
    /// Which families the last dump found sockets of: those are dumped whatever sockstat says.
    /// Its `inuse` sums per-CPU counters unlocked and can read one low for an instant; a family
    /// skipped on such a zero would come back with its old connections' whole lifetimes taken as
    /// one interval's bytes. Once a dump finds the family empty, a skip costs only the new
    /// sockets of one cycle.
    families_seen: [bool; 2],
}

/// One capture ring, its loop token, and whether the loop knows it yet.
struct Capture {
    ring: PacketRing,
    token: usize,
    registered: bool,
    /// Packets the kernel dropped on this ring in the last cycle (the ring grows).
    drops: u64,
    /// When its counters were last taken (monotonic seconds; none yet: just opened), and the
    /// bytes per second of blocks it handed over since the time before (larger blocks past
    /// [`BUSY_BLOCKS_PER_S`] of them).
    counted_at: Option<f64>,
    handed_per_s: f64,
}

impl Capture {
    /// A new capture with the next loop token of `tokens` (handed out round-robin from `next`).
    fn new(ring: PacketRing, tokens: &std::ops::Range<usize>, next: &mut usize) -> Capture {
        let token = *next;
        *next += 1;
        if *next >= tokens.end {
            *next = tokens.start;
        }
        Capture { ring, token, registered: false, drops: 0, counted_at: None, handed_per_s: 0.0 }
    }
}

/// Whether what an interface sends may be seen nowhere else on the host, so its leaving
/// packets are captured there: a veth's arrive in its peer's namespace, a bridge's on its
/// ports (or their peers), loopback's on loopback itself. Anything else (a NIC, an ENI, a VLAN,
/// a tunnel) may lead off the host. Only interfaces that are up: a link change (coming up
/// included) is learnt from the namespace's link notifications at the next check.
pub fn leaves_host(link: &Link<'_>) -> bool {
    link.is_up() && !link.is_loopback() && !matches!(link.kind, Some(b"veth" | b"bridge" | b"netkit"))
}

/// The HTTP capture's counters since the agent started (`/status`, self-metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureStats {
    /// Namespaces captured now, interfaces captured leaving the host, and the size of all
    /// their rings together (mapped: part of the RSS).
    pub namespaces: u32,
    pub interfaces: u32,
    pub ring_bytes: u64,
    /// Namespaces dumped now without a capture (its socket could not be opened, or stopped).
    pub uncaptured: u32,
    /// Packets the kernel's filter accepted, and packets it dropped because a ring was full.
    pub packets: u64,
    pub ring_drops: u64,
    /// Capture sockets (of a namespace, or of an interface leaving the host) that could not be
    /// opened (no `CAP_NET_RAW`, …), and link dumps (or route sockets) that failed.
    pub open_failures: u64,
    pub link_dump_errors: u64,
    /// CPU spent reading rings and matching heads (this thread), nanoseconds.
    pub cpu_ns: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SourceStats {
    pub namespaces: u32,
    /// Namespaces without a diag socket (setns or socket creation failed).
    pub unreachable: u32,
    /// Attempts to open a namespace's diag socket that failed this cycle (retried with backoff).
    pub open_failures: u32,
    pub dump_errors: u32,
    /// Family dumps (IPv4, IPv6) skipped this cycle because the namespace's sockstat counted no
    /// TCP socket of that family (and none in TIME_WAIT).
    pub dumps_skipped: u32,
    /// `fd/` links read this cycle to find owners, and processes scanned.
    pub links_read: u32,
    pub processes_scanned: u32,
}

pub struct ConnectionSource {
    home: Home,
    namespaces: Vec<Namespace>,
    distinct: Vec<(u64, u32)>,
    buf: Vec<u8>,
    /// For the namespaces' sockstat files.
    sockstat_buf: ReadBuf,
    requests: [[u8; REQUEST_LEN]; 2],
    /// Both families in one walk of the kernel's hash tables (see [`inet_diag::TCPDIAG_GETSOCK`]),
    /// used when both are to be dumped, unless the kernel refused it.
    both_request: [u8; BOTH_FAMILIES_REQUEST_LEN],
    both_families: BothFamilies,
    pub owners: Owners,
    pub stats: SourceStats,
    /// Failed attempts to open a namespace's diag socket since the agent started.
    pub open_failures_total: u64,
    /// The HTTP capture's filters (what arrives, what leaves), when protocol inspection is on.
    capture_filter: Option<(Vec<SockFilter>, Vec<SockFilter>)>,
    /// Loop tokens for capture rings: `capture_tokens.start + k`, handed out round-robin.
    capture_tokens: std::ops::Range<usize>,
    next_capture_token: usize,
    capture_warned: bool,
    leaving_warned: bool,
    leaving_cap_warned: bool,
    pub capture_stats: CaptureStats,
}

impl ConnectionSource {
    /// `with_info`: ask for `tcp_info` (byte counters, RTT, retransmits).
    pub fn open(with_info: bool) -> io::Result<ConnectionSource> {
        let source = ConnectionSource::unprobed(with_info)?;
        // Fail early (and clearly) when netlink diagnostics are unavailable altogether.
        DiagSocket::open()?;
        Ok(source)
    }

    /// Whether this kernel (or emulator: qemu-user refuses them) opens `NETLINK_SOCK_DIAG`
    /// sockets at all.
    pub fn probe() -> io::Result<()> {
        DiagSocket::open().map(drop)
    }

    /// The source without the early [`ConnectionSource::probe`].
    pub fn unprobed(with_info: bool) -> io::Result<ConnectionSource> {
        let home = Home::current()?;
        Ok(ConnectionSource {
            home,
            namespaces: Vec::new(),
            distinct: Vec::new(),
            buf: vec![0; RECV_BUFFER],
            sockstat_buf: ReadBuf::with_capacity(1024),
            requests: [
                inet_diag::dump_request(AF_INET, STATES_OWNED, with_info),
                inet_diag::dump_request(AF_INET6, STATES_OWNED, with_info),
            ],
            both_request: inet_diag::dump_request_both_families(STATES_OWNED, with_info),
            both_families: BothFamilies::Untried,
            owners: Owners::default(),
            stats: SourceStats::default(),
            open_failures_total: 0,
            capture_filter: None,
            capture_tokens: 0..0,
            next_capture_token: 0,
            capture_warned: false,
            leaving_warned: false,
            leaving_cap_warned: false,
            capture_stats: CaptureStats::default(),
        })
    }

    /// Turns the HTTP capture on: every namespace gets a capture ring when its diag socket is
    /// opened, registered under a token of `tokens`.
    pub fn enable_capture(&mut self, tokens: std::ops::Range<usize>) {
        self.capture_filter = Some((program(Direction::Arriving), program(Direction::Leaving)));
        self.next_capture_token = tokens.start;
        self.capture_tokens = tokens;
    }

    /// Rings opened since the last call, to register with the loop: `(token, fd)`.
    pub fn unregistered_captures(&mut self, mut register: impl FnMut(usize, rustix::fd::BorrowedFd<'_>) -> bool) {
        for ns in &mut self.namespaces {
            for c in ns.capture.iter_mut().chain(ns.leaving.iter_mut().map(|l| &mut l.1)) {
                if !c.registered {
                    c.registered = register(c.token, c.ring.fd());
                }
            }
        }
    }

    /// Reads every ring into `flows`' staged heads (applied by [`HttpFlows::settle`]).
    pub fn drain_captures(&mut self, flows: &mut HttpFlows, listening: &[(u64, u16)]) {
        for ns in &mut self.namespaces {
            let inode = ns.inode;
            for c in ns.capture.iter_mut().chain(ns.leaving.iter_mut().map(|l| &mut l.1)) {
                c.ring.drain(|f| flows.stage(inode, f.ts_ns, f.data, listening));
            }
        }
    }

    /// Opens a capture of what leaves on each interface of each namespace that leaves the
    /// host, and closes those of interfaces gone or down. A namespace's links are dumped once,
    /// when its capture opens, and again only when its link notifications cannot say what
    /// changed (an overflow) or a socket failed; otherwise the notifications queued since the
    /// last check are applied (a dump takes the kernel's RTNL lock, which a host starting or
    /// stopping containers holds often; reading queued notifications does not). Not needed where
    /// the kernel cannot keep outgoing packets from the namespace's socket: that one sees them.
    fn refresh_leaving(&mut self, procs: &ProcessTable) {
        let Some((_, leaving_filter)) = self.capture_filter.as_ref() else { return };
        // (interface, whether it should be captured), in the order learnt: the last one counts.
        let mut changes: smallvec::SmallVec<[(u32, bool); 8]> = smallvec::SmallVec::new();
        for k in 0..self.namespaces.len() {
            let ns = &mut self.namespaces[k];
            let (Some(route), Some(capture)) = (ns.route.as_mut(), ns.capture.as_ref()) else { continue };
            if !capture.ring.ignores_outgoing() {
                continue;
            }
            // A socket whose interface went away (unregistered: it captures nothing any more).
            let before = ns.leaving.len();
            ns.leaving.retain(|(_, c)| c.ring.healthy());
            ns.links_stale |= ns.leaving.len() < before;
            changes.clear();
            let notified_gap = route.take_link_changes(&mut self.buf, |deleted, l| {
                changes.push((l.index, !deleted && leaves_host(l)));
            });
            if notified_gap || std::mem::take(&mut ns.links_stale) {
                changes.clear();
                let dumped = route.dump_links(&mut self.buf, |l| changes.push((l.index, leaves_host(l))));
                if let Err(e) = dumped {
                    self.capture_stats.link_dump_errors += 1;
                    if !std::mem::replace(&mut ns.links_failing, true) {
                        warn!(
                            "connections: cannot list the interfaces of network namespace {}: {e} (tried again at \
                             each check)",
                            ns.inode
                        );
                    }
                    ns.links_stale = true;
                    continue;
                }
                ns.links_failing = false;
                // A full list: what it does not name is gone.
                ns.leaving.retain(|(index, _)| changes.iter().any(|c| c.0 == *index && c.1));
            }
            // The last word on each interface.
            let last = |index: u32| changes.iter().rev().find(|c| c.0 == index).map(|c| c.1);
            ns.leaving.retain(|(index, _)| last(*index) != Some(false));
            let mut wanted: smallvec::SmallVec<[u32; 8]> = smallvec::SmallVec::new();
            for &(index, _) in &changes {
                let new = last(index) == Some(true)
                    && !ns.leaving.iter().any(|(i, _)| *i == index)
                    && !wanted.contains(&index);
                if new {
                    wanted.push(index);
                }
            }
            let room = MAX_LEAVING_PER_NAMESPACE.saturating_sub(ns.leaving.len());
            if wanted.len() > room {
                self.capture_stats.open_failures += (wanted.len() - room) as u64;
                if !std::mem::replace(&mut self.leaving_cap_warned, true) {
                    warn!(
                        "connections: network namespace {} has more than {MAX_LEAVING_PER_NAMESPACE} interfaces that \
                         may leave the host; what leaves the others is not captured (said once, counted in /status)",
                        ns.inode
                    );
                }
                wanted.truncate(room);
            }
            if wanted.is_empty() {
                continue;
            }
            // New interfaces: their sockets are made inside the namespace.
            let inode = ns.inode;
            let open = || {
                wanted
                    .iter()
                    .map(|&i| (i, PacketRing::open(leaving_filter, Interfaces::One(i), BLOCKS_FIRST)))
                    .collect::<Vec<_>>()
            };
            let opened = if inode == self.home.inode {
                Ok(open())
            } else {
                match procs.procs.iter().find(|p| p.net_ns == inode) {
                    Some(p) => open_in(&self.home, p, open),
                    None => continue,
                }
            };
            let opened = match opened {
                Ok(o) => o,
                Err(e) => {
                    debug!("connections: cannot enter network namespace {inode} for its interfaces' capture: {e}");
                    self.namespaces[k].links_stale = true;
                    continue;
                }
            };
            for (index, ring) in opened {
                match ring {
                    Ok(ring) => {
                        let c = Capture::new(ring, &self.capture_tokens, &mut self.next_capture_token);
                        self.namespaces[k].leaving.push((index, c));
                    }
                    Err(e) => {
                        self.capture_stats.open_failures += 1;
                        // Tried again at the next check (the links are listed again then).
                        self.namespaces[k].links_stale = true;
                        if !std::mem::replace(&mut self.leaving_warned, true) {
                            warn!(
                                "connections: no capture of what leaves interface {index} of network namespace \
                                 {inode}: {e} (tried again at each check; said once, counted in /status)"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Adds the rings' kernel counters (accepted, dropped) to the totals, and notes the rings
    /// where the kernel had to drop and how fast each filled its blocks
    /// ([`ConnectionSource::grow_captures`] enlarges them).
    fn take_capture_counters(&mut self, mono_secs: f64) {
        let (mut n, mut interfaces, mut bytes, mut uncaptured) = (0, 0, 0, 0);
        for ns in &mut self.namespaces {
            if ns.capture.is_none() {
                uncaptured += u32::from(ns.sock.is_some() && self.capture_filter.is_some());
            }
            n += u32::from(ns.capture.is_some());
            interfaces += ns.leaving.len() as u32;
            for c in ns.capture.iter_mut().chain(ns.leaving.iter_mut().map(|l| &mut l.1)) {
                let (packets, drops, discarded) = c.ring.take_stats();
                self.capture_stats.packets += packets;
                // Lost either way; only the kernel's drops say the ring is too small.
                self.capture_stats.ring_drops += drops + discarded;
                c.drops = drops;
                let handed = c.ring.take_handed_bytes() as f64;
                c.handed_per_s = match c.counted_at {
                    Some(t) if mono_secs > t => handed / (mono_secs - t),
                    _ => 0.0,
                };
                c.counted_at = Some(mono_secs);
                bytes += c.ring.bytes() as u64;
            }
        }
        self.capture_stats.namespaces = n;
        self.capture_stats.interfaces = interfaces;
        self.capture_stats.ring_bytes = bytes;
        self.capture_stats.uncaptured = uncaptured;
    }

    /// Doubles the ring of each namespace where the kernel dropped this cycle (up to its bound),
    /// and gives larger blocks to a ring that filled more than [`BUSY_BLOCKS_PER_S`] a second
    /// (each block is a wake-up of the loop). Called right after the rings were read: what a swap
    /// loses is what arrives meanwhile, and the block the kernel was filling.
    pub fn grow_captures(&mut self) {
        for ns in &mut self.namespaces {
            let inode = ns.inode;
            let stats = &mut self.capture_stats;
            // The ring on every interface, then those of interfaces leaving the host.
            let mut grow = |c: &mut Capture, what: &dyn std::fmt::Display| -> bool {
                let drops = std::mem::take(&mut c.drops);
                let busy = c.handed_per_s > f64::from(BUSY_BLOCKS_PER_S * c.ring.block_size());
                let per_s = std::mem::take(&mut c.handed_per_s);
                if drops == 0 && !busy {
                    return true;
                }
                let before = c.ring.bytes();
                let resized = if drops > 0 { c.ring.grow() } else { c.ring.enlarge_blocks(per_s) };
                match resized {
                    Ok(grown) => {
                        if grown {
                            let (kib, block_kib) = (c.ring.bytes() / 1024, c.ring.block_size() / 1024);
                            if drops > 0 {
                                info!(
                                    "connections: the HTTP capture of {what} dropped {drops} packets; its ring now has {kib} KiB ({block_kib} KiB blocks)"
                                );
                            } else {
                                info!(
                                    "connections: the HTTP capture of {what} filled {:.0} KiB of blocks a second; its ring now has {kib} KiB in {block_kib} KiB blocks",
                                    per_s / 1024.0
                                );
                            }
                            stats.ring_bytes = (stats.ring_bytes + c.ring.bytes() as u64).saturating_sub(before as u64);
                        }
                        true
                    }
                    Err(e) => {
                        warn!("connections: the HTTP capture of {what} stopped: {e}");
                        stats.ring_bytes = stats.ring_bytes.saturating_sub(before as u64);
                        false
                    }
                }
            };
            if let Some(c) = ns.capture.as_mut() {
                if !grow(c, &format_args!("network namespace {inode}")) {
                    ns.capture = None;
                }
            }
            ns.leaving.retain_mut(|(index, c)| {
                grow(c, &format_args!("what leaves interface {index} of network namespace {inode}"))
            });
        }
    }

    /// Which families (IPv4, IPv6) of namespace `inode` the last cycle dumped; None: no such
    /// namespace, or none dumped (no diag socket).
    pub fn families_dumped(&self, inode: u64) -> Option<[bool; 2]> {
        let k = self.namespaces.binary_search_by_key(&inode, |n| n.inode).ok()?;
        let ns = &self.namespaces[k];
        ns.sock.is_some().then_some(ns.families_dumped)
    }

    /// The agent's own network namespace.
    pub fn home_ns(&self) -> u64 {
        self.home.inode
    }

    /// Whether the last dumps of both families went in one walk (`Some(true)`), the kernel
    /// refused that request (`Some(false)`: each family is dumped on its own), or it was not
    /// needed yet (`None`).
    pub fn both_families_in_one_walk(&self) -> Option<bool> {
        match self.both_families {
            BothFamilies::Untried => None,
            BothFamilies::Works => Some(true),
            BothFamilies::Refused => Some(false),
        }
    }

    /// Makes the one-walk request one the kernel does not know (a type past `SOCK_DIAG_BY_FAMILY`),
    /// so tests see the kernel refuse it and the per-family dumps take over.
    #[doc(hidden)]
    pub fn refuse_both_families_for_test(&mut self) {
        self.both_request[4..6].copy_from_slice(&99u16.to_ne_bytes());
    }

    /// Dumps every namespace into `table` (begun and finished here).
    pub fn collect(&mut self, procs: &ProcessTable, table: &mut ConnTable, mono_secs: f64) {
        self.stats = SourceStats::default();
        let opening = std::time::Instant::now();
        self.refresh_namespaces(procs, mono_secs);
        // The dumps start once the namespaces are open: a cycle that opened many (the first one,
        // or many containers started at once: ~20 ms each with their capture rings) would
        // otherwise divide the byte counts by more than the time between the dumps.
        table.begin(mono_secs + opening.elapsed().as_secs_f64());
        let (requests, both_request, buf) = (&mut self.requests, &mut self.both_request, &mut self.buf);
        for ns in &mut self.namespaces {
            let Some(sock) = ns.sock.as_mut() else {
                self.stats.unreachable += 1;
                continue;
            };
            let fresh = !ns.dumped;
            let mut ok = true;
            let empty = empty_families(ns.sockstat.as_ref(), ns.sockstat6.as_ref(), &mut self.sockstat_buf);
            let want = [!empty[0] || ns.families_seen[0], !empty[1] || ns.families_seen[1]];
            ns.families_dumped = want;
            // What a skipped family's dump would return: nothing (the last one found none either).
            self.stats.dumps_skipped += want.iter().filter(|w| !**w).count() as u32;
            let inode = ns.inode;
            let mut per_family = want;
            if want == [true, true] && self.both_families != BothFamilies::Refused {
                let mut seen = [false; 2];
                match dump_into(sock, both_request, buf, table, inode, fresh, &mut seen) {
                    Ok(()) => {
                        ns.families_seen = seen;
                        self.both_families = BothFamilies::Works;
                        per_family = [false, false];
                    }
                    // Before any record, while it has never worked: a kernel without the
                    // original request answers it with an error at once (EINVAL for a type
                    // sock_diag does not know, EOPNOTSUPP without the compat handler): not asked
                    // again. Another error then (ENOMEM, EBUSY) may pass: asked again next cycle.
                    // Either way the per-family dumps follow now.
                    Err(DumpError::Kernel(e))
                        if self.both_families == BothFamilies::Untried && seen == [false, false] =>
                    {
                        if matches!(-e, libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT) {
                            info!(
                                "connections: the kernel refused a dump of both families at once ({}); each family is dumped on its own",
                                io::Error::from_raw_os_error(-e)
                            );
                            self.both_families = BothFamilies::Refused;
                        }
                    }
                    Err(e) => {
                        ns.families_seen = seen;
                        per_family = [false, false];
                        ok = false;
                        dump_failed(ns.inode, &mut ns.failing, &mut self.stats, &e);
                    }
                }
            }
            for (k, request) in requests.iter_mut().enumerate() {
                if !per_family[k] {
                    continue;
                }
                let mut seen = [false; 2];
                let r = dump_into(sock, request, buf, table, inode, fresh, &mut seen);
                ns.families_seen[k] = seen[k];
                match r {
                    Ok(()) => {}
                    // No IPv6 in this namespace (or no inet6 diag module): nothing to dump.
                    Err(DumpError::Kernel(e)) if k == 1 && (e == -2 || e == -97) => {}
                    Err(e) => {
                        ok = false;
                        dump_failed(ns.inode, &mut ns.failing, &mut self.stats, &e);
                    }
                }
            }
            // After a failed dump the next good one primes again: the table lost its baseline.
            ns.dumped = ok;
            if ok {
                ns.failing = false;
            }
        }
        self.stats.namespaces = self.namespaces.len() as u32;
        table.finish();
        self.refresh_leaving(procs);
        self.take_capture_counters(mono_secs);
    }

    /// Opens sockets for new namespaces (and, once their backoff has passed, for those where that
    /// failed), and closes those no process is in any more.
    fn refresh_namespaces(&mut self, procs: &ProcessTable, now: f64) {
        self.distinct.clear();
        self.distinct.push((self.home.inode, u32::MAX));
        for (i, p) in procs.procs.iter().enumerate() {
            if p.net_ns != 0 {
                self.distinct.push((p.net_ns, i as u32));
            }
        }
        self.distinct.sort_unstable();
        self.distinct.dedup_by_key(|d| d.0);
        let distinct = &self.distinct;
        self.namespaces.retain(|n| distinct.binary_search_by_key(&n.inode, |d| d.0).is_ok());
        for &(inode, idx) in &self.distinct {
            let at = match self.namespaces.binary_search_by_key(&inode, |n| n.inode) {
                Ok(k) if self.namespaces[k].sock.is_some() => {
                    // Its counts could not be opened with the socket (the process gone through
                    // exited meanwhile): tried again through the namespace's process of now.
                    let ns = &mut self.namespaces[k];
                    if ns.sockstat.is_none() && inode != self.home.inode {
                        if let Some(p) = procs.procs.get(idx as usize) {
                            (ns.sockstat, ns.sockstat6) = open_sockstat_of(p);
                        }
                    }
                    continue;
                }
                Ok(k) if now < self.namespaces[k].retry_at => continue,
                Ok(k) => k,
                Err(at) => {
                    let ns = Namespace {
                        inode,
                        sock: None,
                        open_failures: 0,
                        retry_at: now,
                        dumped: false,
                        failing: false,
                        capture: None,
                        leaving: Vec::new(),
                        route: None,
                        links_stale: false,
                        links_failing: false,
                        sockstat: None,
                        sockstat6: None,
                        families_dumped: [false; 2],
                        families_seen: [false; 2],
                    };
                    self.namespaces.insert(at, ns);
                    at
                }
            };
            // The first process of the namespace in the table now: not necessarily the one a
            // failed attempt went through (it may have exited since). The capture ring is opened
            // in the same visit.
            let filter = self.capture_filter.as_ref().map(|f| &f.0[..]);
            let blocks = if inode == self.home.inode { BLOCKS_FIRST_HOST } else { BLOCKS_FIRST };
            // The route socket only where interfaces leaving the host get sockets of their own
            // (the kernel keeps what leaves from the ring): elsewhere nobody would read it.
            let open = || {
                let capture = filter.map(|f| {
                    let ring = PacketRing::open(f, Interfaces::AllArriving, blocks);
                    let route = ring.as_ref().is_ok_and(PacketRing::ignores_outgoing).then(RouteSocket::open);
                    (ring, route)
                });
                (DiagSocket::open(), capture)
            };
            // The counts are opened through the process the socket is opened through (see
            // `open_sockstat_of`), the home's through the agent's own thread, which is there.
            let (sock, ring, counts) = if inode == self.home.inode {
                let (sock, ring) = open();
                let v4: &CStr = c"/proc/thread-self/net/sockstat";
                (sock, ring, open_sockstat(rustix::fs::CWD, v4, c"/proc/thread-self/net/sockstat6"))
            } else {
                match procs.procs.get(idx as usize) {
                    Some(p) => {
                        let counts = open_sockstat_of(p);
                        match open_in(&self.home, p, open) {
                            Ok((sock, ring)) => (sock, ring, counts),
                            Err(e) => (Err(e), None, (None, None)),
                        }
                    }
                    None => continue,
                }
            };
            let Some(ns) = self.namespaces.get_mut(at) else { continue };
            match sock {
                Ok(sock) => {
                    if ns.open_failures > 0 {
                        info!(
                            "connections: opened a diag socket in network namespace {inode} after {} failed attempts",
                            ns.open_failures
                        );
                    }
                    ns.sock = Some(sock);
                    (ns.sockstat, ns.sockstat6) = counts;
                    ns.open_failures = 0;
                    match ring {
                        Some((Ok(ring), route)) => {
                            if let Some(Err(e)) = &route {
                                // Only what leaves the host is missed then (see refresh_leaving).
                                self.capture_stats.link_dump_errors += 1;
                                warn!("connections: no route socket in network namespace {inode}: {e}");
                            }
                            let route = route.and_then(Result::ok);
                            let c = Capture::new(ring, &self.capture_tokens, &mut self.next_capture_token);
                            ns.capture = Some(c);
                            ns.route = route;
                            ns.links_stale = true;
                            ns.leaving.clear();
                        }
                        Some((Err(e), _)) => {
                            self.capture_stats.open_failures += 1;
                            if !std::mem::replace(&mut self.capture_warned, true) {
                                warn!(
                                    "connections: no HTTP capture in network namespace {inode}: {e} (a packet socket \
                                     needs CAP_NET_RAW; said once, counted in /status)"
                                );
                            }
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    // Typically: no CAP_SYS_ADMIN for setns, or the process it went through
                    // exited. Logged once per namespace; retried with backoff, counted.
                    if ns.open_failures == 0 {
                        warn!(
                            "connections: cannot open a diag socket in network namespace {inode}: {e} (retrying, \
                             first in {NS_RETRY_FIRST_SECS} s)"
                        );
                    }
                    ns.open_failures = ns.open_failures.saturating_add(1);
                    let backoff = NS_RETRY_FIRST_SECS * 2f64.powi(ns.open_failures.min(16) as i32 - 1);
                    ns.retry_at = now + backoff.min(NS_RETRY_MAX_SECS);
                    self.stats.open_failures += 1;
                    self.open_failures_total += 1;
                }
            }
        }
    }
}

/// A namespace's `sockstat` and `sockstat6` under `dir`, to be held (either may be missing: the
/// kernel has no IPv6, or the process exited; that family is then always dumped).
fn open_sockstat(dir: BorrowedFd<'_>, v4: &CStr, v6: &CStr) -> (Option<OwnedFd>, Option<OwnedFd>) {
    (ReadBuf::open_rendered(dir, v4).ok(), ReadBuf::open_rendered(dir, v6).ok())
}

/// `p`'s namespace's counts (see [`open_sockstat`]), kept only if `p` is still in the namespace
/// the table says once they are open: `/proc/<pid>/net` follows the process's namespace at the
/// moment of the open, and counts of another namespace could skip this one's dumps.
fn open_sockstat_of(p: &Proc) -> (Option<OwnedFd>, Option<OwnedFd>) {
    let counts = open_sockstat(p.dir.as_fd(), c"net/sockstat", c"net/sockstat6");
    let still_there = openat(p.dir.as_fd(), c"ns/net", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .and_then(|ns| rustix::fs::fstat(&ns))
        .is_ok_and(|st| st.st_ino == p.net_ns);
    if still_there {
        counts
    } else {
        (None, None)
    }
}

/// Whether the kernel takes the one-walk dump of both families ([`inet_diag::TCPDIAG_GETSOCK`]):
/// every Linux since 2.6 does; one that answers it with an error at the first try is not asked
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BothFamilies {
    Untried,
    Works,
    Refused,
}

/// One dump of `request` into `table`; `seen[k]` is set when a socket of family `k` (IPv4, IPv6)
/// arrived.
fn dump_into(
    sock: &mut DiagSocket,
    request: &mut [u8],
    buf: &mut [u8],
    table: &mut ConnTable,
    inode: u64,
    fresh: bool,
    seen: &mut [bool; 2],
) -> Result<(), DumpError> {
    sock.dump(request, buf, |datagram| {
        for m in messages(datagram) {
            match m {
                Ok(Msg::Socket(s)) => {
                    seen[usize::from(s.family == AF_INET6)] = true;
                    table.push(inode, &s, fresh);
                }
                Ok(Msg::Done) => return Ok(false),
                Ok(Msg::Error(0) | Msg::Other(_)) => {}
                Ok(Msg::Error(e)) => return Err(DumpError::Kernel(e)),
                Err(_) => return Err(DumpError::Malformed("bad message framing")),
            }
        }
        Ok(true)
    })
}

/// Counts a failed dump, and logs it once per episode of failures of the namespace.
fn dump_failed(inode: u64, failing: &mut bool, stats: &mut SourceStats, e: &DumpError) {
    stats.dump_errors += 1;
    if !*failing {
        warn!("connections: dump of network namespace {inode} failed: {e}");
    }
    *failing = true;
}

/// Which of the namespace's families (IPv4, IPv6: the order of the dump requests) have no TCP
/// socket a dump could list, by its sockstat counts: `inuse` of the family and `tw` (TIME_WAIT,
/// both families) both zero. Counts that cannot be read or parsed: not empty (dumped).
fn empty_families(v4: Option<&OwnedFd>, v6: Option<&OwnedFd>, buf: &mut ReadBuf) -> [bool; 2] {
    let Some(tcp) = v4.and_then(|fd| buf.reread(fd.as_fd()).ok().and_then(|b| sockstat::tcp(b).ok())) else {
        return [false; 2];
    };
    if tcp.time_wait > 0 {
        return [false; 2];
    }
    let v6_in_use = v6.and_then(|fd| buf.reread(fd.as_fd()).ok().and_then(|b| sockstat::tcp6_in_use(b).ok()));
    [tcp.in_use == 0, v6_in_use == Some(0)]
}

/// Runs `open` inside `p`'s network namespace (sockets created there stay bound to it).
fn open_in<T>(home: &Home, p: &Proc, open: impl FnOnce() -> T) -> io::Result<T> {
    let ns = netns::open_at(p.dir.as_fd())?;
    // Verify it is the namespace we meant (the pid may have moved since it was read).
    if rustix::fs::fstat(&ns)?.st_ino != p.net_ns {
        return Err(io::Error::other("the process changed network namespace"));
    }
    home.visit(ns.as_fd(), open)
}

/// Socket inode → owning process, found from `fd/` links.
#[derive(Default)]
pub struct Owners {
    /// `(inode, pid, start_ticks)`, sorted by inode.
    map: Vec<(u32, u32, u64)>,
    /// Inodes a complete scan could not attribute (their owner is not reported), sorted.
    orphans: Vec<u32>,
    /// `(pid, start_ticks)` of processes scanned completely at least once, sorted.
    scanned: Vec<(u32, u64)>,
    /// A scan the budget cut short: `(pid, start_ticks, the first fd not read yet)`.
    partial: Option<(u32, u64, u64)>,
    /// The current round: pids left to scan, and the inodes it looks for.
    queue: Vec<u32>,
    queue_pos: usize,
    round_targets: Vec<u32>,
    /// Which targets a scan found (parallel to `round_targets`), and how many.
    round_hit: Vec<bool>,
    round_found: usize,
    /// Scratch: this cycle's socket inodes (sorted) and unknown `(ns, uid, inode)`.
    live: Vec<u32>,
    unknown: Vec<(u64, u32, u32)>,
    dents: Vec<MaybeUninit<u8>>,
    link: Vec<MaybeUninit<u8>>,
}

impl Owners {
    /// The owner `(pid, start_ticks)` of a socket inode, when known.
    pub fn get(&self, inode: u32) -> Option<(u32, u64)> {
        let i = self.map.binary_search_by_key(&inode, |m| m.0).ok()?;
        self.map.get(i).map(|m| (m.1, m.2))
    }

    pub fn known(&self) -> usize {
        self.map.len()
    }

    /// Updates owners for this cycle's sockets; `reported` indexes `procs.procs`.
    pub fn resolve(&mut self, conns: &ConnTable, procs: &ProcessTable, reported: &[u32], stats: &mut SourceStats) {
        if self.dents.is_empty() {
            self.dents = vec![MaybeUninit::uninit(); 16 * 1024];
            self.link = vec![MaybeUninit::uninit(); 256];
        }
        self.live.clear();
        self.live.extend(conns.conns.iter().map(|c| c.inode).filter(|i| *i != 0));
        self.live.sort_unstable();
        self.live.dedup();
        let alive = |pid: u32, start: u64| procs.index_of(pid).is_some_and(|i| procs.procs[i].start_ticks == start);
        let live = &self.live;
        retain_live(&mut self.map, live, alive);
        self.orphans.retain(|i| live.binary_search(i).is_ok());
        self.scanned.retain(|&(pid, start)| alive(pid, start));

        let mut budget = FD_SCAN_BUDGET;
        // 1. Processes reported for the first time.
        for &i in reported {
            let Some(p) = procs.procs.get(i as usize) else { continue };
            if budget == 0 {
                break;
            }
            if self.scanned.binary_search(&(p.pid, p.start_ticks)).is_err() {
                // Cut short by the budget: resumed next cycle (it is still not `scanned`).
                self.scan(p, &mut budget, stats);
            }
        }
        self.settle();

        // 2. Sockets of unknown owner: a round over the reported processes of their namespaces.
        // Only sockets already there at the previous dump: most new ones are short-lived (an
        // HTTP request without keep-alive), and looking for each one's owner meant reading every
        // fd link of a process with thousands of sockets, every cycle (benches/budget.sh: the
        // connections check cost twice the dump). A lasting socket is attributed one cycle later.
        self.unknown.clear();
        for c in &conns.conns {
            if c.inode != 0
                && c.first_seen_mono < conns.mono_secs
                && self.map.binary_search_by_key(&c.inode, |m| m.0).is_err()
                && self.orphans.binary_search(&c.inode).is_err()
            {
                self.unknown.push((c.ns, c.uid, c.inode));
            }
        }
        if self.unknown.is_empty() {
            self.queue.clear();
            self.queue_pos = 0;
            self.round_targets.clear();
            self.round_hit.clear();
            return;
        }
        if self.queue_pos >= self.queue.len() {
            self.start_round(procs, reported);
        }
        while budget > 0 && self.queue_pos < self.queue.len() {
            let pid = self.queue[self.queue_pos];
            let complete = match procs.index_of(pid) {
                Some(i) => self.scan(&procs.procs[i], &mut budget, stats),
                None => true,
            };
            // Everything the round looks for is found: the rest of the queue can wait.
            if self.round_found == self.round_targets.len() {
                self.queue_pos = self.queue.len();
            } else if complete {
                self.queue_pos += 1;
            }
            // Else cut short by the budget (the loop ends): this process is resumed next cycle.
        }
        self.settle();
        if self.queue_pos >= self.queue.len() {
            // The round is complete: what it looked for and did not find has no reported owner.
            let map = &self.map;
            self.orphans
                .extend(self.round_targets.iter().copied().filter(|i| map.binary_search_by_key(i, |m| m.0).is_err()));
            self.orphans.sort_unstable();
            self.orphans.dedup();
            self.round_targets.clear();
            self.round_hit.clear();
        }
    }

    fn start_round(&mut self, procs: &ProcessTable, reported: &[u32]) {
        self.queue.clear();
        self.queue_pos = 0;
        self.round_targets.clear();
        self.round_targets.extend(self.unknown.iter().map(|u| u.2));
        self.round_targets.sort_unstable();
        self.round_targets.dedup();
        self.round_hit.clear();
        self.round_hit.resize(self.round_targets.len(), false);
        self.round_found = 0;
        self.unknown.sort_unstable();
        let unknown = &self.unknown;
        // `unknown` is sorted by (namespace, uid): both questions are binary searches.
        let in_ns = |p: &Proc| {
            p.net_ns == 0 || unknown.get(unknown.partition_point(|u| u.0 < p.net_ns)).is_some_and(|u| u.0 == p.net_ns)
        };
        let same_uid = |p: &Proc| {
            let key = (p.net_ns, p.uid);
            p.net_ns == 0 && unknown.iter().any(|u| u.1 == p.uid)
                || unknown.get(unknown.partition_point(|u| (u.0, u.1) < key)).is_some_and(|u| (u.0, u.1) == key)
        };
        // Likely owners first: the same namespace and the socket's uid.
        for pass in [true, false] {
            for &i in reported {
                let Some(p) = procs.procs.get(i as usize) else { continue };
                if in_ns(p) && same_uid(p) == pass {
                    self.queue.push(p.pid);
                }
            }
        }
    }

    /// Reads `p`'s `fd/` links and records the owner of every live socket among them, one link
    /// per unit of `budget`. `false` when the budget ran out first: the scan resumes at the
    /// next descriptor when it is called again for the same process.
    fn scan(&mut self, p: &Proc, budget: &mut u32, stats: &mut SourceStats) -> bool {
        let key = (p.pid, p.start_ticks);
        let from = match self.partial {
            Some((pid, start, fd)) if (pid, start) == key => fd,
            _ => 0,
        };
        stats.processes_scanned += 1;
        let Ok(fd_dir) = openat(&p.dir, c"fd", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        else {
            self.finish_scan(key);
            return true;
        };
        if from > 0 {
            // procfs lists `fd/` in ascending order from position fd + 2; the names are checked
            // below as well, so a position not honoured only costs reading entries again.
            let _ = rustix::fs::seek(&fd_dir, rustix::fs::SeekFrom::Start(from + 2));
        }
        let sorted = self.map.len();
        let mut dir = RawDir::new(&fd_dir, &mut self.dents);
        while let Some(Ok(e)) = dir.next() {
            let name = e.file_name();
            let Some(fd) = crate::parse::cursor::u64_dec(name.to_bytes()) else { continue };
            if fd < from {
                continue;
            }
            if *budget == 0 {
                self.partial = Some((p.pid, p.start_ticks, fd));
                return false;
            }
            *budget -= 1;
            stats.links_read += 1;
            let Ok((target, _)) = rustix::fs::readlinkat_raw(&fd_dir, name, &mut self.link) else { continue };
            let Some(inode) = socket_inode(target) else { continue };
            if self.live.binary_search(&inode).is_ok()
                && self.map[..sorted].binary_search_by_key(&inode, |m| m.0).is_err()
            {
                self.map.push((inode, p.pid, p.start_ticks));
                if let Ok(k) = self.round_targets.binary_search(&inode) {
                    if let Some(hit) = self.round_hit.get_mut(k) {
                        if !std::mem::replace(hit, true) {
                            self.round_found += 1;
                        }
                    }
                }
            }
        }
        self.finish_scan(key);
        true
    }

    fn finish_scan(&mut self, key: (u32, u64)) {
        if self.partial.is_some_and(|(pid, start, _)| (pid, start) == key) {
            self.partial = None;
        }
        if let Err(at) = self.scanned.binary_search(&key) {
            self.scanned.insert(at, key);
        }
    }

    /// Re-sorts the map after scans appended to it, and un-orphans what was found.
    fn settle(&mut self) {
        self.map.sort_unstable_by_key(|m| m.0);
        self.map.dedup_by_key(|m| m.0);
        let map = &self.map;
        self.orphans.retain(|i| map.binary_search_by_key(i, |m| m.0).is_err());
    }
}

/// Keeps the owners of sockets still in `live` whose process is `alive`. Both are sorted by
/// inode (`live` deduplicated, `map` by [`Owners::settle`]): a cursor walks `live` along `map`
/// instead of a search for each entry.
fn retain_live(map: &mut Vec<(u32, u32, u64)>, live: &[u32], alive: impl Fn(u32, u64) -> bool) {
    debug_assert!(map.windows(2).all(|w| w[0].0 < w[1].0), "owners sorted by inode, once each");
    let mut at = 0;
    map.retain(|&(inode, pid, start)| {
        while live.get(at).is_some_and(|&l| l < inode) {
            at += 1;
        }
        live.get(at) == Some(&inode) && alive(pid, start)
    });
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(link: &[u8]) -> Option<u32> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    let n = crate::parse::cursor::u64_dec(digits)?;
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_of_sockets_gone_or_of_processes_gone_are_dropped() {
        let mut map = vec![(1, 10, 1), (3, 10, 1), (5, 11, 1), (7, 12, 1), (9, 13, 1), (11, 10, 1)];
        // Inode 9's process is gone; 1 and 5 are not live any more; 2 and 12 have no owner yet.
        retain_live(&mut map, &[2, 3, 7, 9, 11, 12], |pid, _| pid != 13);
        assert_eq!(map, [(3, 10, 1), (7, 12, 1), (11, 10, 1)]);
        retain_live(&mut map, &[], |_, _| true);
        assert!(map.is_empty());
        let mut map = vec![(4, 1, 1)];
        retain_live(&mut map, &[1, 2, 3, 4], |_, _| true);
        assert_eq!(map, [(4, 1, 1)]);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[4026]"), Some(4026));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"pipe:[12]"), None);
        assert_eq!(socket_inode(b"socket:[99999999999]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn interfaces_that_may_lead_off_the_host_are_those_not_veth_bridge_or_loopback() {
        const UP: u32 = 1;
        const LOOPBACK: u32 = 8;
        let link = |flags, kind: Option<&'static [u8]>| Link { family: 0, index: 2, flags, name: b"x", kind };
        // A NIC or ENI (no kind), a VLAN, a tunnel, a tun device: captured leaving.
        for kind in [None, Some(&b"vlan"[..]), Some(b"vxlan"), Some(b"tun"), Some(b"wireguard"), Some(b"ipvlan")] {
            assert!(leaves_host(&link(UP, kind)), "{kind:?}");
        }
        // Their packets arrive somewhere the agent looks: not captured leaving.
        for kind in [Some(&b"veth"[..]), Some(b"bridge"), Some(b"netkit")] {
            assert!(!leaves_host(&link(UP, kind)), "{kind:?}");
        }
        assert!(!leaves_host(&link(UP | LOOPBACK, None)), "loopback");
        assert!(!leaves_host(&link(0, None)), "down");
    }
}
