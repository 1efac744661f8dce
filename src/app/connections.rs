//! The connections check runner: dump every namespace, resolve owners, select, and encode
//! `CollectorConnections` messages of at most 100 connections (header + zstd(protobuf)) plus the
//! `/intake` side channel (health, self-metrics). Runs right after a process check, whose table
//! and reported set it uses. All buffers are reused.

use super::process::{frame, Encoded, ProcessCheck, Zstd, ZSTD_LEVEL_CONNECTIONS};
use crate::checks::connections::{select, ConnSelection};
use crate::encode::connections_msg::{collector_connections, collector_connections_json, Scratch};
use crate::encode::process_intake::{side_channel, CheckHealth, SelfMetric};
use crate::encode::process_msg::TYPE_COLLECTOR_CONNECTIONS;
use crate::model::connection::ConnTable;
use crate::model::http_flows::{HttpFlows, HttpStats};
use crate::sources::connections::{CaptureStats, ConnectionSource, SourceStats};
use crate::sys::packet_ring::SETTLE_DELAY_NS;
use std::io;

/// At most this many connections per message (spec/protocol.md §7).
pub const MAX_PER_MESSAGE: usize = 100;

pub struct ConnectionsCheck {
    source: ConnectionSource,
    pub table: ConnTable,
    pub selection: ConnSelection,
    short_lived_secs: u64,
    interval_s: u64,
    proto: Vec<u8>,
    scratch: Scratch,
    group_id: i32,
    runs: u64,
    /// HTTP telemetry per server socket, when protocol inspection is on.
    http: Option<HttpFlows>,
    /// What the receiver advertises (set by the app before each run; none by default).
    pub features: crate::parse::features::Features,
    /// `STS_REPORT_CHECK_HEALTH_STATE` (default true): self topology and health even when the
    /// receiver does not advertise `health-states` (the process agent sends them when either holds).
    pub report_health: bool,
    /// Why no connection can be collected here (`NETLINK_SOCK_DIAG` sockets refused, as under
    /// qemu-user): the check then only reports DEVIATING health with this reason.
    unavailable: Option<String>,
}

/// Whether opening a `NETLINK_SOCK_DIAG` socket failed because this kernel or emulator will never
/// open one (no such protocol: qemu-user, a kernel without sock_diag; not permitted: a seccomp or
/// LSM policy), not for want of a resource that may come back. (A kernel with sock_diag but
/// without `CONFIG_INET_DIAG` opens the socket and fails each dump instead: the runs report it.)
fn refuses_sock_diag(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::EPFNOSUPPORT | libc::ENOSYS | libc::EACCES | libc::EPERM
        )
    )
}

impl ConnectionsCheck {
    /// `max_connections`: the table's bound; `short_lived_secs`: the relation qualifier (0: off).
    pub fn new(max_connections: usize, short_lived_secs: u64, interval_s: u64) -> io::Result<ConnectionsCheck> {
        let unavailable = match ConnectionSource::probe() {
            Ok(()) => None,
            Err(e) if refuses_sock_diag(&e) => Some(format!(
                "no connections are collected: this kernel (or emulator) refuses NETLINK_SOCK_DIAG sockets ({e})"
            )),
            // Out of fds or memory at start is not a refusal: every run opens its sockets afresh,
            // and fails (and says so) or succeeds on its own.
            Err(e) => {
                warn!("connections: a first NETLINK_SOCK_DIAG socket could not be opened ({e}); the check will try again each run");
                None
            }
        };
        Ok(ConnectionsCheck {
            source: ConnectionSource::unprobed(true)?,
            table: ConnTable::new(max_connections),
            selection: ConnSelection::default(),
            short_lived_secs,
            interval_s,
            proto: Vec::with_capacity(64 * 1024),
            scratch: Scratch::default(),
            group_id: (std::process::id() as i32).wrapping_mul(7907),
            runs: 0,
            http: None,
            features: Default::default(),
            report_health: true,
            unavailable,
        })
    }

    /// Why no connection can be collected here, if none can.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Turns on HTTP and MySQL inspection (STS_PROTOCOL_INSPECTION_ENABLED): a capture ring per
    /// namespace, registered under `tokens`, and a flow table of at most `max_flows` sockets.
    pub fn enable_protocol_inspection(&mut self, tokens: std::ops::Range<usize>, max_flows: usize) {
        self.source.enable_capture(tokens);
        self.http = Some(HttpFlows::new(max_flows));
    }

    /// Capture rings opened by the last run that the loop does not watch yet.
    pub fn register_captures(&mut self, register: impl FnMut(usize, rustix::fd::BorrowedFd<'_>) -> bool) {
        if self.http.is_some() {
            self.source.unregistered_captures(register);
        }
    }

    /// A capture ring is readable, or a check wants what the rings hold.
    ///
    /// Every ring is read, whichever one woke the loop: the heads of one exchange are in
    /// different rings (its request where the server is, its response where the client is), and
    /// are applied in time order only up to what every ring has surely handed over by now (see
    /// [`SETTLE_DELAY_NS`]); the rest waits for the next read.
    pub fn on_capture(&mut self) {
        if let Some(flows) = self.http.as_mut() {
            let t0 = super::timers::thread_cpu_ns();
            self.source.drain_captures(flows, &self.table.listening);
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            flows.settle(now_ns.saturating_sub(SETTLE_DELAY_NS), &self.table.listening);
            self.source.capture_stats.cpu_ns += super::timers::thread_cpu_ns().saturating_sub(t0);
        }
    }

    /// The HTTP capture's counters, when it is on.
    pub fn http_status(&self) -> Option<(CaptureStats, HttpStats)> {
        self.http.as_ref().map(|h| (self.source.capture_stats, h.stats))
    }

    pub fn source_stats(&self) -> SourceStats {
        self.source.stats
    }

    /// Which families (IPv4, IPv6) of network namespace `inode` the last run dumped (a family
    /// whose sockstat counts no TCP socket is skipped).
    pub fn families_dumped(&self, inode: u64) -> Option<[bool; 2]> {
        self.source.families_dumped(inode)
    }

    /// The agent's own network namespace (its inode).
    pub fn home_ns(&self) -> u64 {
        self.source.home_ns()
    }

    /// Owners known (socket inode → process).
    pub fn owners_known(&self) -> usize {
        self.source.owners.known()
    }

    /// Collects and, from the second run on, hands each encoded payload to `emit`.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        mono_secs: f64,
        unix_ms: i64,
        host: &str,
        json: bool,
        procs: &ProcessCheck,
        msg: &mut Vec<u8>,
        zstd: &mut Zstd,
        emit: &mut dyn FnMut(Encoded<'_>),
    ) {
        self.runs += 1;
        if let Some(why) = &self.unavailable {
            // Like a working check, the first run only primes; then health says why nothing comes.
            if self.runs > 1 && (self.report_health || self.features.health_states) {
                let h = CheckHealth {
                    check: "connections",
                    interval_s: self.interval_s,
                    health: "DEVIATING",
                    message: why,
                };
                let (me, my_create) = procs.agent_identity();
                side_channel(msg, host, me, my_create, (unix_ms / 1000) as u64, Some(&h), &[], None);
                emit(Encoded::Intake(msg));
            }
            return;
        }
        let reported = &procs.selection.reported;
        // Packets up to now belong to this interval (those of the last SETTLE_DELAY_NS wait
        // for every ring to hand them over, and go to the next one).
        self.on_capture();
        self.source.collect(&procs.table, &mut self.table, mono_secs);
        if let Some(h) = self.http.as_mut() {
            h.dumped();
            // What arrived during the dump, then a larger ring where the kernel had to drop.
            self.on_capture();
            self.source.grow_captures();
        }
        let mut stats = self.source.stats;
        self.source.owners.resolve(&self.table, &procs.table, reported, &mut stats);
        self.source.stats = stats;
        let owners = &self.source.owners;
        select(
            &self.table,
            |inode| owners.get(inode),
            &procs.table,
            reported,
            self.short_lived_secs,
            &mut self.selection,
        );
        if let Some(h) = self.http.as_mut() {
            h.attribute(&self.table, self.selection.reported.iter().map(|r| r.conn));
        }
        if self.runs == 1 {
            // The first run only primes: what was captured before it is nobody's interval.
            if let Some(h) = self.http.as_mut() {
                h.end_interval();
            }
            return;
        }
        let interval_ms = self.table.interval_secs().map_or(0, |s| (s * 1000.0).round() as i32);
        self.group_id = self.group_id.wrapping_add(1);
        let all = &self.selection.reported;
        let chunks = all.len().div_ceil(MAX_PER_MESSAGE).max(1);
        for k in 0..chunks {
            let part = &all[(k * MAX_PER_MESSAGE).min(all.len())..((k + 1) * MAX_PER_MESSAGE).min(all.len())];
            let (g, n) = (self.group_id, chunks as i32);
            if json {
                let http = self.http.as_ref();
                collector_connections_json(msg, host, &self.table, part, g, n, interval_ms, http, &mut self.scratch);
            } else {
                self.proto.clear();
                let http = self.http.as_ref();
                collector_connections(
                    &mut self.proto,
                    host,
                    &self.table,
                    part,
                    g,
                    n,
                    interval_ms,
                    http,
                    &mut self.scratch,
                );
                if !frame(msg, TYPE_COLLECTOR_CONNECTIONS, unix_ms, &self.proto, zstd, ZSTD_LEVEL_CONNECTIONS) {
                    continue;
                }
            }
            emit(Encoded::Connections(msg));
        }
        if let Some(h) = self.http.as_mut() {
            h.end_interval();
        }

        let s = self.selection.stats;
        let src = self.source.stats;
        let http = self.http_status().unwrap_or_default();
        let k = s.by_kind;
        const R: &str = "stackstate.process_agent.connections.reported";
        let tagged = |v: u32, tags: &'static [&'static str]| SelfMetric { name: R, value: f64::from(v), tags };
        let metrics = [
            SelfMetric::new("stackstate.process_agent.connections.total", f64::from(s.total)),
            tagged(k[0][0], &["ipver:4", "proto:tcp", "direction:outgoing", "nat:false", "app_proto:none"]),
            tagged(k[0][1], &["ipver:4", "proto:tcp", "direction:incoming", "nat:false", "app_proto:none"]),
            tagged(k[1][0], &["ipver:6", "proto:tcp", "direction:outgoing", "nat:false", "app_proto:none"]),
            tagged(k[1][1], &["ipver:6", "proto:tcp", "direction:incoming", "nat:false", "app_proto:none"]),
            SelfMetric::new("stackstate.process_agent.connections.namespaces", f64::from(src.namespaces)),
            SelfMetric::new("stackstate.process_agent.connections.namespaces_unreachable", f64::from(src.unreachable)),
            SelfMetric::new(
                "stackstate.process_agent.connections.namespace_open_failures",
                self.source.open_failures_total as f64,
            ),
            SelfMetric::new("stackstate.process_agent.connections.over_limit", f64::from(self.table.over_limit)),
            SelfMetric::new("stackstate.process_agent.http.responses", http.1.responses as f64),
            SelfMetric::new("stackstate.process_agent.http.responses_unreported", http.1.responses_unreported as f64),
            SelfMetric::new("stackstate.process_agent.http.flows", http.1.flows as f64),
            SelfMetric::new("stackstate.process_agent.http.flows_over_limit", http.1.flows_over_limit as f64),
            SelfMetric::new("stackstate.process_agent.http.ring_drops", http.0.ring_drops as f64),
            SelfMetric::new("stackstate.process_agent.http.values_dropped", http.1.values_dropped as f64),
        ];
        let metrics = if self.http.is_some() { &metrics[..] } else { &metrics[..metrics.len() - 6] };
        let (health, message) = if src.dump_errors > 0 || src.unreachable > 0 {
            (
                "DEVIATING",
                "some network namespaces could not be entered or dumped (setns needs CAP_SYS_ADMIN); see the agent log",
            )
        } else if self.table.over_limit > 0 {
            ("DEVIATING", "more connections than STS_NETWORK_TRACER_MAX_CONNECTIONS; some were not tracked")
        } else if http.0.uncaptured > 0 {
            (
                "DEVIATING",
                "no HTTP capture in some network namespaces (a packet socket needs CAP_NET_RAW); see the agent log",
            )
        } else {
            ("CLEAR", "")
        };
        let h = CheckHealth { check: "connections", interval_s: self.interval_s, health, message };
        let (me, my_create) = procs.agent_identity();
        let health = (self.report_health || self.features.health_states).then_some(&h);
        side_channel(msg, host, me, my_create, (unix_ms / 1000) as u64, health, metrics, None);
        emit(Encoded::Intake(msg));
    }
}

#[cfg(test)]
mod tests {
    use super::refuses_sock_diag;
    use std::io::Error;

    #[test]
    fn only_a_refusal_disables_the_check_for_good() {
        // qemu-user answers an unsupported netlink protocol with EPROTONOSUPPORT.
        for e in [libc::EPROTONOSUPPORT, libc::EAFNOSUPPORT, libc::EACCES, libc::EPERM] {
            assert!(refuses_sock_diag(&Error::from_raw_os_error(e)), "errno {e}");
        }
        for e in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::EINTR] {
            assert!(!refuses_sock_diag(&Error::from_raw_os_error(e)), "errno {e}");
        }
        assert!(!refuses_sock_diag(&Error::other("not an errno")));
    }
}
