//! The `DogStatsD` source: its listeners' readiness (datagrams parsed and aggregated inline, no
//! queue: the kernel's receive buffer is the only buffer) and its flush every 15 s (closed
//! buckets to `/api/v1/series`, pending events to `/intake/`; spec/dogstatsd.md §3.3, §4).

mod drop_log;

use super::sink::Payload;
use super::source::Source;
use super::{App, RunOptions};
use crate::checks::dogstatsd::{Aggregator, AggregatorStats, Limits, BUCKET_SECS};
use crate::checks::dogstatsd_events::EventBuffer;
use crate::config::Config;
use crate::encode::series::SeriesEncoder;
use crate::sources::dogstatsd::{DogStatsdListener, ListenerConfig, ListenerStats, OpenErrors};
use drop_log::DropLog;
use mio::Registry;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The aggregator's flush period (`DefaultFlushInterval`).
pub const FLUSH_EVERY: Duration = Duration::from_secs(15);
/// Pending events' encoded bytes at most between two flushes.
const MAX_EVENT_BYTES: usize = 4 << 20;
/// Tags of a container that origin detection adds (`dogstatsd_tag_cardinality: low`).
const ORIGIN_TAG_KEYS: [&str; 9] = [
    "task_family:",
    "task_version:",
    "task_name:",
    "ecs_container_name:",
    "cluster_name:",
    "docker_image:",
    "image_name:",
    "short_image:",
    "image_tag:",
];

pub(super) struct DogStatsd {
    listener: DogStatsdListener,
    agg: Aggregator,
    events: EventBuffer,
    flush_at: Instant,
    buf: Vec<u8>,
    /// See [`DogStatsdStatus::cpu_ns`].
    cpu_ns: u64,
    /// `STS_DOGSTATSD_TAGS`, comma-joined: added to every datagram's origin tags.
    extra_tags: Vec<u8>,
    /// A datagram's origin tags joined with `extra_tags` (reused).
    origin_buf: Vec<u8>,
    drop_log: DropLog,
    drop_log_every: Duration,
}

/// What `/status` shows of DogStatsD.
#[derive(Debug, Clone, Copy)]
pub struct DogStatsdStatus {
    pub listener: ListenerStats,
    pub agg: AggregatorStats,
    pub contexts: usize,
    pub events_pending: usize,
    pub events_flushed: u64,
    pub events_dropped: u64,
    /// CPU time of the DogStatsD path (this thread): reading, parsing, aggregating, flushing
    /// and compressing, not the TLS send.
    pub cpu_ns: u64,
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How a configured DogStatsD socket fared at start (the log and `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `127.0.0.1:8125`, or the socket's path.
    pub address: String,
    /// Why it did not open, naming the variables that place it; `None`: it listens.
    pub error: Option<String>,
}

/// Each configured socket's state (`None`: not configured: port 0, no socket path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerReport {
    pub udp: Option<Listening>,
    pub unix: Option<Listening>,
}

/// The listeners and aggregator, when DogStatsD is on (not with `--once`, which only runs the
/// checks), with each configured socket's state. Each socket opens on its own: one that cannot
/// is logged as an error naming its variables and the other keeps working; only when none
/// opens is DogStatsD disabled (the report, for `/status`, says why).
pub(super) fn open(
    cfg: &Config,
    opts: RunOptions,
    registry: &Registry,
    host: &str,
) -> (Option<DogStatsd>, Option<ListenerReport>) {
    let d = &cfg.dogstatsd;
    if !d.enabled || opts.once || (d.port == 0 && d.socket.is_none()) {
        return (None, None);
    }
    // Non-local traffic: every interface, IPv6 and IPv4 alike (dual-stack `::`, as Go's ":8125").
    let ip = if d.non_local_traffic { std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) } else { d.bind_host };
    let lcfg = ListenerConfig {
        udp: (d.port != 0).then(|| std::net::SocketAddr::from((ip, d.port))),
        unix: d.socket.clone(),
        origin_detection: d.origin_detection,
        so_rcvbuf: d.so_rcvbuf,
        buffer_size: d.buffer_size,
    };
    let (listener, errors) = DogStatsdListener::open(&lcfg, registry, Source::DogStatsd.tokens().start);
    let report = listener_report(&lcfg, d.non_local_traffic, &listener, &errors);
    if let Some(a) = listener.udp_addr() {
        let how = if d.non_local_traffic { " (every interface: STS_DOGSTATSD_NON_LOCAL_TRAFFIC=true)" } else { "" };
        let granted = listener.stats.udp_rcvbuf as usize;
        info!("dogstatsd on udp {a}{how}, {}", rcvbuf_words(granted, d.so_rcvbuf));
        warn_if_capped("udp", granted, d.so_rcvbuf);
    }
    if let Some(p) = d.socket.as_ref().filter(|_| errors.unix.is_none()) {
        let granted = listener.stats.unix_rcvbuf as usize;
        info!("dogstatsd on unix:{}, {}", p.display(), rcvbuf_words(granted, d.so_rcvbuf));
        warn_if_capped("unix socket", granted, d.so_rcvbuf);
    }
    for why in [&report.udp, &report.unix].into_iter().flatten().filter_map(|l| l.error.as_ref()) {
        error!("dogstatsd: {why}");
    }
    if !listener.is_open() {
        error!("dogstatsd disabled: no listener opened");
        return (None, Some(report));
    }
    let mut events = EventBuffer::new(MAX_EVENT_BYTES);
    events.host = host.to_string();
    let limits = Limits { max_contexts: d.max_contexts, ..Limits::default() };
    let dogstatsd = DogStatsd {
        listener,
        agg: Aggregator::new(limits, unix_secs()),
        events,
        flush_at: Instant::now() + FLUSH_EVERY,
        buf: Vec::with_capacity(64 * 1024),
        cpu_ns: 0,
        extra_tags: d.extra_tags.as_bytes().to_vec(),
        origin_buf: Vec::with_capacity(1024),
        drop_log: DropLog::every(Duration::from_secs(d.drop_log_secs)),
        drop_log_every: Duration::from_secs(d.drop_log_secs),
    };
    (Some(dogstatsd), Some(report))
}

/// Each configured socket's address and, when it did not open, why: the error with the
/// variables that place the socket and the form they take, and what DogStatsD does without it.
fn listener_report(
    cfg: &ListenerConfig,
    non_local: bool,
    listener: &DogStatsdListener,
    errors: &OpenErrors,
) -> ListenerReport {
    let (udp_up, unix_up) = (errors.udp.is_none() && cfg.udp.is_some(), errors.unix.is_none() && cfg.unix.is_some());
    let udp = cfg.udp.map(|addr| Listening {
        address: listener.udp_addr().unwrap_or(addr).to_string(),
        error: errors.udp.as_ref().map(|e| {
            let (placed, expected) = if non_local {
                (
                    "every interface: STS_DOGSTATSD_NON_LOCAL_TRAFFIC=true, port: STS_DOGSTATSD_PORT",
                    "STS_DOGSTATSD_PORT to be a UDP port free on this host (0 closes UDP)",
                )
            } else {
                (
                    "STS_BIND_HOST, port: STS_DOGSTATSD_PORT",
                    "STS_DOGSTATSD_PORT to be a UDP port free on that address (0 closes UDP) and STS_BIND_HOST localhost or an IP address of this host",
                )
            };
            let then = if unix_up { "DogStatsD goes on over the Unix socket only" } else { "no DogStatsD listener is open" };
            format!("UDP listener on {addr} ({placed}) not opened: {e}; expected {expected}; {then}")
        }),
    });
    let unix = cfg.unix.as_ref().map(|path| Listening {
        address: path.display().to_string(),
        error: errors.unix.as_ref().map(|e| {
            let then = if udp_up { "DogStatsD goes on over UDP only" } else { "no DogStatsD listener is open" };
            format!(
                "Unix socket STS_DOGSTATSD_SOCKET={} not opened: {e}; expected a path in an existing directory the agent may write, where nothing but a stale socket is (it is replaced); {then}",
                path.display()
            )
        }),
    });
    ListenerReport { udp, unix }
}

impl DogStatsd {
    pub(super) fn deadline(&self) -> Option<Instant> {
        Some(self.listener.deadline().map_or(self.flush_at, |r| r.min(self.flush_at)))
    }

    pub(super) fn status(&self) -> DogStatsdStatus {
        DogStatsdStatus {
            listener: self.listener.stats,
            agg: self.agg.stats,
            contexts: self.agg.contexts(),
            events_pending: self.events.len(),
            events_flushed: self.events.flushed,
            events_dropped: self.events.dropped,
            cpu_ns: self.cpu_ns,
        }
    }
}

/// The receive buffer as the kernel reports it (`SO_RCVBUF` read back: twice what it took, its
/// bookkeeping share included), with what was asked.
fn rcvbuf_words(granted: usize, requested: usize) -> String {
    let asked = if requested == 0 {
        "the kernel's default".to_string()
    } else {
        format!("STS_DOGSTATSD_SO_RCVBUF={requested}")
    };
    format!("receive buffer {} KiB (the kernel's doubled figure; asked: {asked})", granted / 1024)
}

fn warn_if_capped(socket: &str, granted: usize, requested: usize) {
    if requested > 0 && granted / 2 < requested {
        warn!(
            "dogstatsd: {socket} receive buffer capped at {} KiB (the kernel's doubled figure) below STS_DOGSTATSD_SO_RCVBUF={requested} by net.core.rmem_max (no CAP_NET_ADMIN for SO_RCVBUFFORCE): bursts may be dropped; add NET_ADMIN to the task's capabilities or raise net.core.rmem_max",
            granted / 1024
        );
    }
}

impl App {
    /// Readiness of a DogStatsD socket (or its resume deadline): read, parse, aggregate.
    pub(super) fn on_dogstatsd(&mut self, now: Instant) {
        let Some(d) = self.dogstatsd.as_mut() else { return };
        // One wall-clock read per turn: every sample of it lands in the same bucket (§3.2).
        let t = unix_secs();
        let meta = self.docker.as_ref().map(|x| &x.meta);
        let container_tags = |id: &[u8], out: &mut Vec<u8>| {
            let Some(m) = meta.and_then(|m| m.get(id)) else { return };
            for tag in m.tags.iter().filter(|t| ORIGIN_TAG_KEYS.iter().any(|k| t.starts_with(k))) {
                if !out.ends_with(b",") && !out.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(tag.as_bytes());
            }
        };
        let cpu0 = super::timers::thread_cpu_ns();
        let (agg, events, extra, joined) = (&mut d.agg, &mut d.events, &d.extra_tags, &mut d.origin_buf);
        d.listener.drain(now, &self.cfg.host_proc, &container_tags, &mut |dg| {
            let origin = with_extra_tags(dg.origin, extra, joined);
            agg.ingest(dg.bytes, dg.truncated, origin, t, events);
        });
        d.cpu_ns += super::timers::thread_cpu_ns().saturating_sub(cpu0);
        d.log_drops(now);
    }

    /// At a stop (SIGTERM, SIGINT): what the sockets hold is read, then every bucket, the open
    /// one included, is flushed with the pending events, for the outbox to deliver within the
    /// shutdown grace; the series failing does not keep the events back. The listeners close (the
    /// Unix socket file is removed); `/status` keeps showing the last counts.
    pub(super) fn flush_dogstatsd_at_stop(&mut self, now: Instant) -> io::Result<()> {
        self.on_dogstatsd(now);
        let Some(mut d) = self.dogstatsd.take() else { return Ok(()) };
        let t = unix_secs();
        // A flush one bucket later closes the bucket `t` is in.
        let mut e = SeriesEncoder::begin(&mut d.buf, &self.hostname, t, BUCKET_SECS);
        let series = d.agg.flush(t + BUCKET_SECS, &mut e);
        let series_sent = if e.finish() > 0 { self.sink.deliver(Payload::Series, &d.buf) } else { Ok(()) };
        let events = d.events.len();
        let events_sent = if d.events.flush(&mut d.buf) { self.sink.deliver(Payload::Intake, &d.buf) } else { Ok(()) };
        let failed = |r: &io::Result<()>| if r.is_err() { " (not delivered)" } else { "" };
        info!(
            "dogstatsd: stopped; flushed {series} series{} and {events} events{}",
            failed(&series_sent),
            failed(&events_sent)
        );
        d.log_drops_as(now, true);
        self.dogstatsd_at_stop = Some(d.status());
        series_sent.and(events_sent)
    }

    /// The DogStatsD source's deadline: more to read, or the flush.
    pub(super) fn dogstatsd_due(&mut self, now: Instant) -> io::Result<()> {
        let Some(d) = self.dogstatsd.as_ref() else { return Ok(()) };
        if d.listener.deadline().is_some_and(|r| r <= now) {
            self.on_dogstatsd(now);
        }
        let Some(d) = self.dogstatsd.as_mut() else { return Ok(()) };
        if d.flush_at > now {
            return Ok(());
        }
        // Not aligned to the wall clock, as the original's ticker; only closed buckets go.
        d.flush_at = now + FLUSH_EVERY;
        let cpu0 = super::timers::thread_cpu_ns();
        let t = unix_secs();
        let mut e = SeriesEncoder::begin(&mut d.buf, &self.hostname, t, BUCKET_SECS);
        d.agg.flush(t, &mut e);
        if e.finish() > 0 {
            self.sink.deliver(Payload::Series, &d.buf)?;
        }
        let Some(d) = self.dogstatsd.as_mut() else { return Ok(()) };
        if d.events.flush(&mut d.buf) {
            self.sink.deliver(Payload::Intake, &d.buf)?;
        }
        let Some(d) = self.dogstatsd.as_mut() else { return Ok(()) };
        d.cpu_ns += super::timers::thread_cpu_ns().saturating_sub(cpu0);
        // Counts that grew while the sockets were quiet are logged by the minute all the same.
        d.log_drops(now);
        Ok(())
    }
}

impl DogStatsd {
    /// Logs the refusals, rate-limited (see [`drop_log`]); at a stop, all that grew since.
    fn log_drops(&mut self, now: Instant) {
        self.log_drops_as(now, false);
    }

    fn log_drops_as(&mut self, now: Instant, at_stop: bool) {
        let (a, l) = (&self.agg.stats, &self.listener.stats);
        let counts = [
            a.parse_error_metric,
            a.parse_error_event,
            a.parse_error_service_check,
            a.non_finite,
            l.truncated,
            a.contexts_over_limit,
            a.type_conflict,
            l.origin_detection_errors,
            a.context_key_too_long,
            a.sample_rate_invalid,
            l.kernel_drops_udp + l.kernel_drops_uds,
            self.events.dropped,
        ];
        let every = self.drop_log_every.as_secs();
        let mut line = |what, n, since: Option<Duration>| match since {
            None => warn!(
                "dogstatsd: {n} {what}; counted in /status, logged at most once every {every}s per reason (first seen)"
            ),
            Some(s) => warn!("dogstatsd: {n} {what} in the last {}s", s.as_secs()),
        };
        if at_stop {
            self.drop_log.at_stop(now, counts, &mut line);
        } else {
            self.drop_log.check(now, counts, &mut line);
        }
    }
}

/// The origin tags `origin` with the configured `extra` tags after them: `origin` itself when
/// there are none, `extra` when the datagram has no origin, else both joined in `buf`.
fn with_extra_tags<'a>(origin: &'a [u8], extra: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    if extra.is_empty() {
        return origin;
    }
    if origin.is_empty() {
        return extra;
    }
    buf.clear();
    buf.extend_from_slice(origin);
    buf.push(b',');
    buf.extend_from_slice(extra);
    buf
}

#[cfg(test)]
mod tests {
    use super::with_extra_tags;

    #[test]
    fn extra_tags_join_the_origin() {
        let mut buf = Vec::new();
        assert_eq!(with_extra_tags(b"container_id:ab", b"", &mut buf), b"container_id:ab");
        assert_eq!(with_extra_tags(b"", b"env:prod,team:a", &mut buf), b"env:prod,team:a");
        assert_eq!(with_extra_tags(b"container_id:ab", b"env:prod", &mut buf), b"container_id:ab,env:prod");
    }
}
