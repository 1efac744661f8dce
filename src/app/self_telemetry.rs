//! The agent's own telemetry, appended to every host-check series flush. As the StackState
//! Agent V2's aggregator appends them (spec/dogstatsd.md §4.1, `agent_series`):
//! `stackstate.agent.running` (gauge 1, `version:<v>`) and
//! `n_o_i_n_d_e_x.stackstate.agent.payload.dropped` (gauge) every flush, both with
//! `source_type_name` `System`, no interval (0) and the flush time as point time; and
//! `stackstate.agent.started` (count 1, `version:<v>`) once, which the original adds as a sample
//! to its DogStatsD time sampler, so it goes out as a DogStatsD serie does (interval 10, no source
//! type, its 10 s bucket's start). With the process agent on (`emit`),
//! `stackstate.process_agent.running` and the host's process and container counts. And ours,
//! from the same figures `/status` shows at that moment (each series is one `/status` field):
//! each check's runs, CPU time and duration; each endpoint's outbox (queued payloads and bytes,
//! delivered, drops by reason); the trace intake's accepted and refused requests; DogStatsD's
//! packets, parse errors and drops. Writes through the series encoder: nothing is allocated.
//!
//! The "Agent Startup" event (`startup_event`) goes to `/intake/` with the first flush, as the
//! core agent's aggregator sends it: text `Version <v>`, source type and event type `System` /
//! `Agent Startup`, no title.

use super::sink::Payload;
use super::status::StatusInput;
use crate::checks::dogstatsd::BUCKET_SECS;
use crate::checks::metric::{Kind, MetricSink, Tag};
use crate::encode::json;
use crate::encode::series::SeriesEncoder;
use crate::outbox::Forwarder;

const VERSION: &[u8] = env!("CARGO_PKG_VERSION").as_bytes();

/// The original's `n_o_i_n_d_e_x.datadog.agent.payload.dropped` after branding.
pub const PAYLOAD_DROPPED: &str = "n_o_i_n_d_e_x.stackstate.agent.payload.dropped";

/// The process agent's host counts (from its last run).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessAgentCounts {
    pub processes: u64,
    pub containers: u64,
}

/// `/status` rounds milliseconds to three decimals; the series carry the same numbers.
fn ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Appends to the series payload in `out` (reopened, then closed again) the series the Agent V2's
/// aggregator appends to every flush: `stackstate.agent.running` and [`PAYLOAD_DROPPED`] (gauges,
/// `source_type_name` `System`, interval 0, point time `unix_secs`, the flush time; the original's
/// `appendDefaultSeries`); with `started_at` (the agent's start, Unix seconds; the first flush
/// only) also `stackstate.agent.started`, a DogStatsD count (interval 10, no source type, point
/// time the start's 10 s bucket), as the original's time sampler flushes it.
pub fn agent_series(out: &mut Vec<u8>, host: &str, unix_secs: u64, started_at: Option<u64>, payload_drops: u64) {
    let version = [Tag { key: "version", value: VERSION }];
    let mut enc = SeriesEncoder::reopen(out, host, unix_secs, 0).with_source_type("System");
    enc.metric("stackstate.agent.running", Kind::Gauge, 1.0, &version);
    // The original's tags without the version (`agg.tags(false)`): none here.
    enc.metric(PAYLOAD_DROPPED, Kind::Gauge, payload_drops as f64, &[]);
    enc.finish();
    if let Some(t) = started_at {
        let mut enc = SeriesEncoder::reopen(out, host, t - t % BUCKET_SECS, BUCKET_SECS);
        enc.metric("stackstate.agent.started", Kind::Count, 1.0, &version);
        enc.finish();
    }
}

/// The payloads of the core agent's routes (series, `/intake/`) dropped for their size: refused
/// with 413 and not split, or larger than the whole outbox budget; the original counts those its
/// serializer could not split under the size limit (`split.GetPayloadDrops`). `/status`:
/// `endpoints.{series,intake}.dropped.too_large` plus `.oversized`.
fn payload_drops(f: &Forwarder, routes: impl Iterator<Item = usize>) -> u64 {
    routes
        .map(|r| {
            let d = f.stats(r).dropped;
            d.too_large + d.oversized
        })
        .sum()
}

/// Appends our self-telemetry series to `sink` (besides [`agent_series`]).
pub fn emit(sink: &mut dyn MetricSink, s: &StatusInput<'_>, process: Option<ProcessAgentCounts>) {
    let version = [Tag { key: "version", value: VERSION }];
    sink.metric("stackstate.agent.uptime_s", Kind::Gauge, s.now.duration_since(s.started).as_secs() as f64, &[]);
    if let Some(p) = process {
        sink.metric("stackstate.process_agent.running", Kind::Gauge, 1.0, &version);
        sink.metric("stackstate.process_agent.processes.host_count", Kind::Gauge, p.processes as f64, &[]);
        sink.metric("stackstate.process_agent.containers.host_count", Kind::Gauge, p.containers as f64, &[]);
    }
    for (name, c) in &s.checks {
        let Some(c) = c else { continue };
        let tag = [Tag { key: "check", value: name.as_bytes() }];
        sink.metric("stackstate.agent.check.runs", Kind::Gauge, c.runs as f64, &tag);
        sink.metric("stackstate.agent.check.last_duration_ms", Kind::Gauge, ms(c.last_duration_ms), &tag);
        sink.metric("stackstate.agent.check.last_cpu_ms", Kind::Gauge, ms(c.last_cpu_ms), &tag);
        sink.metric("stackstate.agent.check.total_cpu_ms", Kind::Gauge, ms(c.total_cpu_ms), &tag);
    }
    if let Some(f) = s.forwarder {
        for i in 0..f.route_count() {
            let st = f.stats(i);
            let (queued, bytes) = f.queue_of(i);
            let tag = [Tag { key: "endpoint", value: f.route_name(i).as_bytes() }];
            for (m, v) in [
                ("stackstate.agent.outbox.enqueued", st.enqueued),
                ("stackstate.agent.outbox.delivered", st.delivered),
                ("stackstate.agent.outbox.queued", queued),
                ("stackstate.agent.outbox.queued_bytes", bytes),
                ("stackstate.agent.outbox.retries", st.retries),
            ] {
                sink.metric(m, Kind::Gauge, v as f64, &tag);
            }
            // Drop and refusal series only for reasons that happened: most stay 0 for the run.
            for (reason, n) in st.dropped.by_reason().into_iter().filter(|r| r.1 > 0) {
                let tags = [tag[0], Tag { key: "reason", value: reason.as_bytes() }];
                sink.metric("stackstate.agent.outbox.dropped", Kind::Gauge, n as f64, &tags);
            }
        }
    }
    if let Some(t) = s.traces {
        let i = &s.intake;
        for (m, v) in [
            ("stackstate.agent.trace_intake.requests", i.requests),
            ("stackstate.agent.trace_intake.payloads", t.payloads),
            ("stackstate.agent.trace_intake.traces", t.traces),
            ("stackstate.agent.trace_intake.spans", t.spans),
        ] {
            sink.metric(m, Kind::Gauge, v as f64, &[]);
        }
        // As `/status`'s `trace_intake.rejected`.
        for (reason, n) in [
            ("decode", t.rejected_decode),
            ("too_large", i.too_large + t.rejected_too_large),
            ("bad_request", i.bad_requests),
            ("forbidden", i.forbidden),
            ("busy", i.busy),
            ("timeout", i.timeouts),
        ] {
            if n == 0 {
                continue;
            }
            let tag = [Tag { key: "reason", value: reason.as_bytes() }];
            sink.metric("stackstate.agent.trace_intake.rejected", Kind::Gauge, n as f64, &tag);
        }
    }
    if let Some(d) = &s.dogstatsd {
        let (l, a) = (&d.listener, &d.agg);
        for (m, v) in [
            ("stackstate.agent.dogstatsd.udp_packets", l.udp_packets),
            ("stackstate.agent.dogstatsd.uds_packets", l.uds_packets),
            ("stackstate.agent.dogstatsd.metrics", a.metrics),
            ("stackstate.agent.dogstatsd.events", a.events),
            ("stackstate.agent.dogstatsd.service_checks", a.service_checks),
            ("stackstate.agent.dogstatsd.contexts", d.contexts as u64),
            ("stackstate.agent.dogstatsd.series_flushed", a.series_flushed),
        ] {
            sink.metric(m, Kind::Gauge, v as f64, &[]);
        }
        for (kind, n) in [
            ("metric", a.parse_error_metric),
            ("event", a.parse_error_event),
            ("service_check", a.parse_error_service_check),
        ] {
            if n == 0 {
                continue;
            }
            let tag = [Tag { key: "kind", value: kind.as_bytes() }];
            sink.metric("stackstate.agent.dogstatsd.parse_errors", Kind::Gauge, n as f64, &tag);
        }
        // As `/status`'s `dogstatsd.drops`.
        for (reason, n) in [
            ("truncated", l.truncated),
            ("control_truncated", l.control_truncated),
            ("passed_fds_closed", l.passed_fds_closed),
            ("non_finite", a.non_finite),
            ("type_conflict", a.type_conflict),
            ("sample_rate_invalid", a.sample_rate_invalid),
            ("sample_rate_floored", a.sample_rate_floored),
            ("contexts_over_limit", a.contexts_over_limit),
            ("context_key_too_long", a.context_key_too_long),
            ("samples_over_limit", a.samples_over_limit),
            ("distribution_dropped", a.distribution_dropped),
            ("service_check_dropped", a.service_check_dropped),
            ("events_dropped", d.events_dropped),
            ("buckets_overrun", a.buckets_overrun),
            ("read_errors", l.read_errors),
            ("origin_detection_errors", l.origin_detection_errors),
            ("kernel_drops", l.kernel_drops_udp + l.kernel_drops_uds),
        ] {
            if n == 0 {
                continue;
            }
            let tag = [Tag { key: "reason", value: reason.as_bytes() }];
            sink.metric("stackstate.agent.dogstatsd.dropped", Kind::Gauge, n as f64, &tag);
        }
    }
}

impl super::App {
    /// What `/status` would show now (the same figures `intake.rs` hands the report).
    pub(super) fn status_input(&self, now: std::time::Instant) -> StatusInput<'_> {
        StatusInput {
            host: &self.hostname,
            started: self.clock_origin,
            now,
            forwarder: self.sink.forwarder(),
            checks: [
                ("host", Some(self.host_status)),
                ("process", self.process.as_ref().map(|_| self.process_status)),
                ("connections", self.connections.as_ref().map(|_| self.connection_status)),
                ("docker", self.docker_check.as_ref().map(|_| self.docker_status)),
            ],
            traces: self.traces.as_ref().map(|t| &t.stats),
            intake: self.intake.as_ref().map(|i| i.counters).unwrap_or_default(),
            open_connections: self.intake.as_ref().map_or(0, |i| i.open_connections()),
            http: self.connections.as_ref().and_then(|c| c.http_status()),
            docker_events: self.docker_events.as_ref().map(|e| (e.stats, self.event_bundler.status())),
            dogstatsd: self.dogstatsd.as_ref().map(|d| d.status()).or(self.dogstatsd_at_stop),
            dogstatsd_listeners: self.dogstatsd_listeners.as_ref(),
            features: Some(&self.features),
            process_source: self.process.as_ref().map(|p| p.source_status()),
        }
    }

    /// Appends the self-telemetry series to the host check's series payload in `series_buf`.
    pub(super) fn append_self_telemetry(&mut self, now: std::time::Instant) {
        // Taken out for the while (an empty `Vec` does not allocate), so the report can borrow `self`.
        let mut buf = std::mem::take(&mut self.series_buf);
        // The processes the last run reported (the process agent's `len(processes)`), which is
        // `/status`'s `checks.process.last_count`.
        let process = self.process.as_ref().map(|p| ProcessAgentCounts {
            processes: self.process_status.last_count,
            containers: p.containers.containers.len() as u64,
        });
        let interval = self.cfg.host_check_interval.as_secs();
        let unix = super::unix_now();
        let started_at =
            (!self.started_sent).then(|| unix.saturating_sub(now.duration_since(self.clock_origin).as_secs()));
        let core_routes = [Payload::Series, Payload::Intake].into_iter().filter_map(|p| self.sink.route(p as usize));
        let drops = self.sink.forwarder().map_or(0, |f| payload_drops(f, core_routes));
        agent_series(&mut buf, &self.hostname, unix, started_at, drops);
        {
            let input = self.status_input(now);
            let mut enc = SeriesEncoder::reopen(&mut buf, &self.hostname, unix, interval);
            emit(&mut enc, &input, process);
            enc.finish();
        }
        self.series_buf = buf;
    }
}

/// The "Agent Startup" event as a `/intake/` body (Datadog v1 event shape, spec/protocol.md §3.1).
pub fn startup_event(out: &mut Vec<u8>, host: &str, unix_secs: u64) {
    out.clear();
    out.extend_from_slice(b"{\"apiKey\":\"\",\"events\":{\"System\":[{\"msg_title\":\"\",\"msg_text\":\"Version ");
    json::escape_into(out, VERSION);
    out.extend_from_slice(b"\",\"timestamp\":");
    json::u64(out, unix_secs);
    out.extend_from_slice(b",\"host\":");
    json::str(out, host);
    out.extend_from_slice(
        b",\"source_type_name\":\"System\",\"event_type\":\"Agent Startup\"}]},\"internalHostname\":",
    );
    json::str(out, host);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::super::dogstatsd::DogStatsdStatus;
    use super::super::status::{self, CheckStatus};
    use super::super::traces::TraceStats;
    use super::*;
    use crate::checks::metric::MetricRows;
    use crate::sources::trace_intake::IntakeCounters;
    use std::time::{Duration, Instant};

    /// Every self-telemetry series is the `/status` field of the same name, for the same input.
    #[test]
    fn series_equal_the_status_report() {
        let t0 = Instant::now();
        let traces = TraceStats {
            payloads: 7,
            traces: 9,
            spans: 30,
            rejected_decode: 2,
            rejected_too_large: 1,
            ..Default::default()
        };
        let intake = IntakeCounters { requests: 10, too_large: 3, busy: 4, timeouts: 5, ..Default::default() };
        let check = CheckStatus {
            runs: 3,
            last_duration_ms: 1.23456,
            last_cpu_ms: 0.98765,
            total_cpu_ms: 4.5,
            ..Default::default()
        };
        let mut dsd = DogStatsdStatus {
            listener: Default::default(),
            agg: Default::default(),
            contexts: 11,
            events_pending: 0,
            events_flushed: 0,
            events_dropped: 6,
            cpu_ns: 0,
        };
        dsd.listener.udp_packets = 12;
        dsd.agg.metrics = 13;
        dsd.agg.parse_error_event = 2;
        dsd.listener.kernel_drops_udp = 1;
        dsd.listener.kernel_drops_uds = 2;
        let s = StatusInput {
            host: "h",
            started: t0,
            now: t0 + Duration::from_secs(42),
            forwarder: None,
            checks: [("host", Some(check)), ("process", None), ("connections", None), ("docker", None)],
            traces: Some(&traces),
            intake,
            open_connections: 0,
            http: None,
            docker_events: None,
            dogstatsd: Some(dsd),
            dogstatsd_listeners: None,
            features: None,
            process_source: None,
        };
        let mut rows = MetricRows::default();
        emit(&mut rows, &s, Some(ProcessAgentCounts { processes: 120, containers: 4 }));
        let mut out = Vec::new();
        status::write(&mut out, &s);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let opt = |name: &str, tag: Option<&str>| {
            rows.0.iter().find(|r| r.0 == name && tag.is_none_or(|t| r.3.iter().any(|x| x == t))).map(|r| r.2)
        };
        let get = |name: &str, tag: Option<&str>| opt(name, tag).unwrap_or_else(|| panic!("no {name} {tag:?}"));
        // Drop and refusal series: only the reasons that happened.
        let nonzero = |n: &serde_json::Value| n.as_f64().filter(|n| *n != 0.0);
        // The Agent V2's own series are `agent_series`'s.
        let agent_v2 = ["stackstate.agent.running", "stackstate.agent.started", PAYLOAD_DROPPED];
        assert!(rows.0.iter().all(|r| !agent_v2.contains(&r.0.as_str())));
        let pa_version = format!("version:{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(get("stackstate.process_agent.running", Some(&pa_version)), 1.0);
        assert_eq!(get("stackstate.agent.uptime_s", None), v["uptime_s"].as_f64().unwrap());
        assert_eq!(get("stackstate.process_agent.processes.host_count", None), 120.0);
        assert_eq!(get("stackstate.process_agent.containers.host_count", None), 4.0);
        let c = &v["checks"]["host"];
        for f in ["runs", "last_duration_ms", "last_cpu_ms", "total_cpu_ms"] {
            assert_eq!(get(&format!("stackstate.agent.check.{f}"), Some("check:host")), c[f].as_f64().unwrap(), "{f}");
        }
        let ti = &v["trace_intake"];
        for f in ["requests", "payloads", "traces", "spans"] {
            assert_eq!(get(&format!("stackstate.agent.trace_intake.{f}"), None), ti[f].as_f64().unwrap(), "{f}");
        }
        for (reason, n) in ti["rejected"].as_object().unwrap() {
            let tag = format!("reason:{reason}");
            assert_eq!(opt("stackstate.agent.trace_intake.rejected", Some(&tag)), nonzero(n), "{reason}");
        }
        let d = &v["dogstatsd"];
        for (reason, n) in d["drops"].as_object().unwrap() {
            let tag = format!("reason:{reason}");
            assert_eq!(opt("stackstate.agent.dogstatsd.dropped", Some(&tag)), nonzero(n), "{reason}");
        }
        for (kind, n) in d["parse_errors"].as_object().unwrap() {
            let tag = format!("kind:{kind}");
            assert_eq!(opt("stackstate.agent.dogstatsd.parse_errors", Some(&tag)), nonzero(n), "{kind}");
        }
        assert!(opt("stackstate.agent.trace_intake.rejected", Some("reason:bad_request")).is_none());
        assert_eq!(opt("stackstate.agent.dogstatsd.dropped", Some("reason:kernel_drops")), Some(3.0));
        for f in ["udp_packets", "metrics", "contexts"] {
            assert_eq!(get(&format!("stackstate.agent.dogstatsd.{f}"), None), d[f].as_f64().unwrap(), "{f}");
        }
        // No process agent: none of its series.
        let mut rows = MetricRows::default();
        emit(&mut rows, &s, None);
        assert!(rows.0.iter().all(|r| !r.0.starts_with("stackstate.process_agent")));
    }

    /// `stackstate.agent.running` and `n_o_i_n_d_e_x.stackstate.agent.payload.dropped` as the
    /// Agent V2 appends them to every flush (spec/dogstatsd.md §4.1: gauges, `source_type_name`
    /// `System`, interval 0, the flush time), `stackstate.agent.started` as its time sampler
    /// flushes it (a count, interval 10, no source type, the start's 10 s bucket), appended to a
    /// host check's payload without disturbing it, and nothing allocated when the buffer has room.
    #[test]
    fn agent_series_are_the_agent_v2s() {
        let mut buf = Vec::with_capacity(4096);
        let mut e = SeriesEncoder::begin(&mut buf, "i-1", 1_700_000_015, 15);
        e.metric("system.load.1", Kind::Gauge, 0.5, &[]);
        e.finish();
        let cap = buf.capacity();
        agent_series(&mut buf, "i-1", 1_700_000_015, Some(1_700_000_003), 2);
        assert_eq!(buf.capacity(), cap);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let series = v["series"].as_array().unwrap();
        let by = |m: &str| series.iter().find(|s| s["metric"] == m).unwrap_or_else(|| panic!("no {m}: {v}"));
        let version = format!("version:{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(by("system.load.1")["interval"], 15);
        assert!(by("system.load.1").get("source_type_name").is_none());
        let r = by("stackstate.agent.running");
        assert_eq!(r["points"], serde_json::json!([[1_700_000_015u64, 1.0]]));
        assert_eq!((r["type"].as_str(), r["interval"].as_u64()), (Some("gauge"), Some(0)));
        assert_eq!(r["source_type_name"], "System");
        assert_eq!(r["tags"], serde_json::json!([version]));
        assert_eq!(r["host"], "i-1");
        let d = by(PAYLOAD_DROPPED);
        assert_eq!(d["points"], serde_json::json!([[1_700_000_015u64, 2.0]]));
        assert_eq!((d["type"].as_str(), d["interval"].as_u64()), (Some("gauge"), Some(0)));
        assert_eq!(d["source_type_name"], "System");
        assert_eq!(d["tags"], serde_json::json!([]));
        let s = by("stackstate.agent.started");
        assert_eq!(s["points"], serde_json::json!([[1_700_000_000u64, 1.0]]));
        assert_eq!((s["type"].as_str(), s["interval"].as_u64()), (Some("count"), Some(10)));
        assert!(s.get("source_type_name").is_none(), "{s}");
        assert_eq!(s["tags"], serde_json::json!([version]));
        assert_eq!(series.len(), 4);
        // Later flushes: no `started`.
        agent_series(&mut buf, "i-1", 1_700_000_030, None, 0);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let names: Vec<&str> = v["series"].as_array().unwrap().iter().map(|s| s["metric"].as_str().unwrap()).collect();
        assert_eq!(names.iter().filter(|n| **n == "stackstate.agent.started").count(), 1);
        assert_eq!(names.iter().filter(|n| **n == "stackstate.agent.running").count(), 2);
    }

    #[test]
    fn startup_event_is_the_core_agents() {
        let mut out = Vec::new();
        startup_event(&mut out, "i-1", 1_700_000_000);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let e = &v["events"]["System"][0];
        assert_eq!(e["msg_text"], format!("Version {}", env!("CARGO_PKG_VERSION")));
        assert_eq!(e["event_type"], "Agent Startup");
        assert_eq!(e["source_type_name"], "System");
        assert_eq!(e["host"], "i-1");
        assert_eq!(e["timestamp"], 1_700_000_000u64);
        assert_eq!(v["internalHostname"], "i-1");
    }
}
