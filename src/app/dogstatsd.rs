//! The `DogStatsD` source: its listeners' readiness (datagrams parsed and aggregated inline, no
//! queue: the kernel's receive buffer is the only buffer) and its flush every 15 s (closed
//! buckets to `/api/v1/series`, pending events to `/intake/`; spec/dogstatsd.md §3.3, §4).

use super::sink::Payload;
use super::source::Source;
use super::{App, RunOptions};
use crate::checks::dogstatsd::{Aggregator, AggregatorStats, Limits, BUCKET_SECS};
use crate::checks::dogstatsd_events::EventBuffer;
use crate::config::Config;
use crate::encode::series::SeriesEncoder;
use crate::sources::dogstatsd::{DogStatsdListener, ListenerConfig, ListenerStats};
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

/// The listeners and aggregator, when DogStatsD is on (not with `--once`, which only runs the
/// checks). A socket that cannot be opened disables DogStatsD with an error in the log.
pub(super) fn open(cfg: &Config, opts: RunOptions, registry: &Registry, host: &str) -> Option<DogStatsd> {
    let d = &cfg.dogstatsd;
    if !d.enabled || opts.once || (d.port == 0 && d.socket.is_none()) {
        return None;
    }
    let ip = if d.non_local_traffic { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
    let lcfg = ListenerConfig {
        udp: (d.port != 0).then(|| std::net::SocketAddr::from((ip, d.port))),
        unix: d.socket.clone(),
        origin_detection: d.origin_detection,
        so_rcvbuf: d.so_rcvbuf,
        buffer_size: d.buffer_size,
    };
    match DogStatsdListener::open(&lcfg, registry, Source::DogStatsd.tokens().start) {
        Ok(listener) => {
            if let Some(a) = listener.udp_addr() {
                let how =
                    if d.non_local_traffic { " (every interface: STS_DOGSTATSD_NON_LOCAL_TRAFFIC=true)" } else { "" };
                info!("dogstatsd on udp {a}{how}, receive buffer {} KiB", listener.udp_rcvbuf / 1024);
                if listener.udp_rcvbuf > 0 && listener.udp_rcvbuf / 2 < d.so_rcvbuf {
                    warn!(
                        "dogstatsd: receive buffer capped below STS_DOGSTATSD_SO_RCVBUF={} by net.core.rmem_max (no CAP_NET_ADMIN for SO_RCVBUFFORCE): bursts may be dropped",
                        d.so_rcvbuf
                    );
                }
            }
            if let Some(p) = &d.socket {
                info!("dogstatsd on unix:{}", p.display());
            }
            let mut events = EventBuffer::new(MAX_EVENT_BYTES);
            events.host = host.to_string();
            let limits = Limits { max_contexts: d.max_contexts, ..Limits::default() };
            Some(DogStatsd {
                listener,
                agg: Aggregator::new(limits, unix_secs()),
                events,
                flush_at: Instant::now() + FLUSH_EVERY,
                buf: Vec::with_capacity(64 * 1024),
                cpu_ns: 0,
            })
        }
        Err(e) => {
            error!("dogstatsd disabled: {e}");
            None
        }
    }
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
        let (agg, events) = (&mut d.agg, &mut d.events);
        d.listener.drain(now, &self.cfg.host_proc, &container_tags, &mut |dg| {
            agg.ingest(dg.bytes, dg.truncated, dg.origin, t, events);
        });
        d.cpu_ns += super::timers::thread_cpu_ns().saturating_sub(cpu0);
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
        Ok(())
    }
}
