//! The agent's status report (`GET /status` on the trace intake's port, printed by
//! `sts-agent status`): per endpoint the outbox accounting (enqueued = delivered + Σdropped +
//! queued), per check its last run, and the trace intake's counters.

use super::dogstatsd::{DogStatsdStatus, ListenerReport};
use super::features::FeatureDiscovery;
use super::traces::TraceStats;
use crate::checks::docker_events::BundlerStats;
use crate::encode::json;
use crate::model::http_flows::HttpStats;
use crate::outbox::Forwarder;
use crate::sources::connections::CaptureStats;
use crate::sources::docker_events::EventStreamStats;
use crate::sources::trace_intake::IntakeCounters;
use std::time::Instant;

/// A check's last run.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckStatus {
    pub runs: u64,
    pub last_run_unix: u64,
    pub last_duration_ms: f64,
    /// What the run produced (series, processes reported, connections reported).
    pub last_count: u64,
    /// CPU time of the last run (this thread, user + system), and of every run so far.
    pub last_cpu_ms: f64,
    pub total_cpu_ms: f64,
    /// Heap allocations of the last run and of every run so far (counting builds only).
    pub last_allocations: Option<u64>,
    pub total_allocations: Option<u64>,
}

/// How the process check found its processes (`/status` `process_source`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessSourceStatus {
    /// Cycles that listed `HOST_PROC`, by reason (`sources::new_pids::Why::ALL`'s order), and
    /// cycles that probed the pids allocated since the last one instead.
    pub listings_by_reason: [u64; crate::sources::new_pids::Why::COUNT],
    pub probes: u64,
    /// Whether the probe may be used at all (this procfs is the agent's pid namespace and
    /// `pidfd_open` works).
    pub probe_usable: bool,
    /// Processes in the table, and those the last cycle left unread (not run since read).
    pub processes: u64,
    pub unread_last_cycle: u64,
    /// Processes skipped for want of descriptors, and descriptor counts taken, since start.
    pub skipped_no_fds_total: u64,
    pub descriptor_counts_total: u64,
}

pub struct StatusInput<'a> {
    pub host: &'a str,
    pub started: Instant,
    pub now: Instant,
    pub forwarder: Option<&'a Forwarder>,
    pub checks: [(&'static str, Option<CheckStatus>); 4],
    pub traces: Option<&'a TraceStats>,
    pub intake: IntakeCounters,
    pub open_connections: usize,
    /// The HTTP capture, when protocol inspection is on.
    pub http: Option<(CaptureStats, HttpStats)>,
    /// Docker's container event stream, when it is on.
    pub docker_events: Option<(EventStreamStats, BundlerStats)>,
    /// DogStatsD, when it is on.
    pub dogstatsd: Option<DogStatsdStatus>,
    /// DogStatsD's sockets, when it is configured (on, or disabled because none opened).
    pub dogstatsd_listeners: Option<&'a ListenerReport>,
    /// The receivers' features: asked, answered, in effect (`features.rs`).
    pub features: Option<&'a FeatureDiscovery>,
    /// The process check's discovery, when the check is on.
    pub process_source: Option<ProcessSourceStatus>,
}

pub fn write(out: &mut Vec<u8>, s: &StatusInput<'_>) {
    out.extend_from_slice(b"{\"version\":");
    json::str(out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b",\"hostname\":");
    json::str(out, s.host);
    out.extend_from_slice(b",\"uptime_s\":");
    json::u64(out, s.now.duration_since(s.started).as_secs());
    // Every heap allocation since start (counting builds; taken before this report's own).
    out.extend_from_slice(b",\"allocations\":");
    match crate::alloc_count::snapshot() {
        Some(a) => {
            out.push(b'{');
            json::u64_fields(out, &[("count", a.count), ("bytes", a.bytes)]);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"endpoints\":");
    match s.forwarder {
        Some(f) => f.status_json(out, s.now),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"api_key_rejected\":");
    out.extend_from_slice(if s.forwarder.is_some_and(|f| f.key_rejected) { b"true" } else { b"false" });
    out.extend_from_slice(b",\"checks\":{");
    let mut first = true;
    for (name, c) in &s.checks {
        let Some(c) = c else { continue };
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        json::str(out, name);
        out.extend_from_slice(b":{\"runs\":");
        json::u64(out, c.runs);
        out.extend_from_slice(b",\"last_run_unix\":");
        json::u64(out, c.last_run_unix);
        out.extend_from_slice(b",\"last_duration_ms\":");
        json::f64(out, (c.last_duration_ms * 1000.0).round() / 1000.0);
        out.extend_from_slice(b",\"last_count\":");
        json::u64(out, c.last_count);
        out.extend_from_slice(b",\"last_cpu_ms\":");
        json::f64(out, (c.last_cpu_ms * 1000.0).round() / 1000.0);
        out.extend_from_slice(b",\"total_cpu_ms\":");
        json::f64(out, (c.total_cpu_ms * 1000.0).round() / 1000.0);
        if let (Some(last), Some(total)) = (c.last_allocations, c.total_allocations) {
            out.extend_from_slice(b",\"last_allocations\":");
            json::u64(out, last);
            out.extend_from_slice(b",\"total_allocations\":");
            json::u64(out, total);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"},\"trace_intake\":");
    match s.traces {
        None => out.extend_from_slice(b"null"),
        Some(t) => {
            let i = &s.intake;
            let fields: [(&str, u64); 6] = [
                ("requests", i.requests),
                ("payloads", t.payloads),
                ("traces", t.traces),
                ("spans", t.spans),
                ("dropped_traces", t.dropped_traces),
                ("flushed_payloads", t.flushed_payloads),
            ];
            out.push(b'{');
            json::u64_fields(out, &fields);
            let rejected: [(&str, u64); 6] = [
                ("decode", t.rejected_decode),
                ("too_large", i.too_large + t.rejected_too_large),
                ("bad_request", i.bad_requests),
                ("forbidden", i.forbidden),
                ("busy", i.busy),
                ("timeout", i.timeouts),
            ];
            out.extend_from_slice(b",\"rejected\":{");
            json::u64_fields(out, &rejected);
            out.extend_from_slice(b"},\"opentelemetry\":{");
            let otel: [(&str, u64); 4] = [
                ("open_telemetry_requests", t.otel_requests),
                ("otlp_requests", t.otlp_requests),
                ("otlp_rejected_spans", t.otlp_rejected_spans),
                ("otlp_dropped_attributes", t.otlp_dropped_attributes),
            ];
            json::u64_fields(out, &otel);
            // Traces the client marked for dropping (checks/sampling.rs), by reason.
            out.extend_from_slice(b"},\"sampling_dropped\":{");
            json::u64_fields(
                out,
                &[("priority_negative", t.sampling.priority_negative), ("priority_zero", t.sampling.priority_zero)],
            );
            // The STS interpretation of OpenTelemetry spans (checks/otel_interpret.rs).
            out.extend_from_slice(b"},\"otel_interpretation\":{");
            let o = &t.otel;
            json::u64_fields(
                out,
                &[
                    ("interpreted", o.interpreted),
                    ("dropped_missing_field", o.dropped_missing_field),
                    ("dropped_sqs_url", o.dropped_sqs_url),
                    ("dropped_unknown_library", o.dropped_unknown_library),
                    ("dropped_unknown_aws_service", o.dropped_unknown_aws_service),
                    ("uninterpreted", o.uninterpreted),
                    ("emptied_traces", o.emptied_traces),
                ],
            );
            out.extend_from_slice(b"},\"connections_open\":");
            json::u64(out, s.open_connections as u64);
            out.extend_from_slice(b",\"connections_accepted\":");
            json::u64(out, i.connections_accepted);
            out.extend_from_slice(b",\"connections_evicted\":");
            json::u64(out, i.connections_evicted);
            out.extend_from_slice(b",\"cpu_ms\":");
            json::f64(out, (t.cpu_ns as f64 / 1e3).round() / 1e3);
            let obfuscation: [(&str, u64); 3] =
                [("sql", t.sql_obfuscated), ("sql_errors", t.sql_errors), ("redis", t.redis_quantized)];
            out.extend_from_slice(b",\"obfuscated\":{");
            json::u64_fields(out, &obfuscation);
            out.extend_from_slice(b"}}");
        }
    }
    out.extend_from_slice(b",\"http_capture\":");
    match &s.http {
        None => out.extend_from_slice(b"null"),
        Some((c, h)) => {
            let fields: [(&str, u64); 20] = [
                ("namespaces", u64::from(c.namespaces)),
                ("namespaces_uncaptured", u64::from(c.uncaptured)),
                ("interfaces_leaving", u64::from(c.interfaces)),
                ("link_dump_errors", c.link_dump_errors),
                ("ring_bytes", c.ring_bytes),
                ("open_failures", c.open_failures),
                ("packets", c.packets),
                ("ring_drops", c.ring_drops),
                ("frames", h.frames),
                ("heads", h.heads),
                ("duplicates", h.duplicates),
                ("resyncs", h.resyncs),
                ("responses", h.responses),
                ("responses_unreported", h.responses_unreported),
                ("values_folded", h.values_folded),
                ("values_dropped", h.values_dropped),
                ("flows", h.flows),
                ("flows_over_limit", h.flows_over_limit),
                ("settled_early", h.settled_early),
                ("cpu_us", c.cpu_ns / 1000),
            ];
            out.push(b'{');
            json::u64_fields(out, &fields);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"docker_events\":");
    match &s.docker_events {
        None => out.extend_from_slice(b"null"),
        Some((e, b)) => {
            out.extend_from_slice(b"{\"connected\":");
            out.extend_from_slice(if e.connected { b"true" } else { b"false" });
            let fields: [(&str, u64); 9] = [
                ("received", e.received),
                ("dropped", e.dropped + b.dropped),
                ("duplicates", e.duplicates),
                ("reconnects", e.reconnects),
                ("filtered", b.filtered),
                ("excluded", b.excluded),
                ("pending", b.pending),
                ("bundled", b.bundled),
                ("bundles", b.bundles),
            ];
            out.push(b',');
            json::u64_fields(out, &fields);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"dogstatsd\":");
    match (&s.dogstatsd, s.dogstatsd_listeners) {
        (Some(d), l) => dogstatsd(out, d, l),
        // Configured, but no socket opened: which, and why.
        (None, Some(l)) => {
            out.extend_from_slice(b"{\"disabled\":\"no listener opened\",\"listeners\":");
            listeners(out, l);
            out.push(b'}');
        }
        (None, None) => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"features\":");
    match s.features {
        None => out.extend_from_slice(b"null"),
        Some(f) => f.status_json(out),
    }
    out.extend_from_slice(b",\"process_source\":");
    match &s.process_source {
        None => out.extend_from_slice(b"null"),
        Some(p) => process_source(out, p),
    }
    out.push(b'}');
}

/// Listings and probes (`sources/new_pids.rs`), the table, and descriptor figures.
fn process_source(out: &mut Vec<u8>, p: &ProcessSourceStatus) {
    use crate::sources::new_pids::Why;
    out.extend_from_slice(b"{\"listings\":");
    json::u64(out, p.listings_by_reason.iter().sum());
    out.extend_from_slice(b",\"listings_by_reason\":{");
    let by_reason: [(&str, u64); Why::COUNT] = std::array::from_fn(|i| (Why::ALL[i].name(), p.listings_by_reason[i]));
    json::u64_fields(out, &by_reason);
    out.extend_from_slice(b"},\"probe_usable\":");
    out.extend_from_slice(if p.probe_usable { b"true" } else { b"false" });
    out.push(b',');
    let fields: [(&str, u64); 5] = [
        ("probes", p.probes),
        ("processes", p.processes),
        ("unread_last_cycle", p.unread_last_cycle),
        ("skipped_no_fds_total", p.skipped_no_fds_total),
        ("descriptor_counts_total", p.descriptor_counts_total),
    ];
    json::u64_fields(out, &fields);
    out.push(b'}');
}

/// Packets, messages, parse errors by reason and every drop by reason (spec/dogstatsd.md §2.7).
fn dogstatsd(out: &mut Vec<u8>, d: &DogStatsdStatus, sockets: Option<&ListenerReport>) {
    let (l, a) = (&d.listener, &d.agg);
    let fields: [(&str, u64); 16] = [
        ("cpu_us", d.cpu_ns / 1000),
        ("udp_packets", l.udp_packets),
        ("udp_bytes", l.udp_bytes),
        ("uds_packets", l.uds_packets),
        ("uds_bytes", l.uds_bytes),
        ("metrics", a.metrics),
        ("events", a.events),
        ("service_checks", a.service_checks),
        ("contexts", d.contexts as u64),
        ("contexts_expired", a.contexts_expired),
        ("series_flushed", a.series_flushed),
        ("events_flushed", d.events_flushed),
        ("events_pending", d.events_pending as u64),
        ("rcvbuf_requested", l.rcvbuf_requested),
        ("udp_rcvbuf", l.udp_rcvbuf),
        ("unix_rcvbuf", l.unix_rcvbuf),
    ];
    out.push(b'{');
    json::u64_fields(out, &fields);
    let errors: [(&str, u64); 3] = [
        ("metric", a.parse_error_metric),
        ("event", a.parse_error_event),
        ("service_check", a.parse_error_service_check),
    ];
    out.extend_from_slice(b",\"parse_errors\":{");
    json::u64_fields(out, &errors);
    let drops: [(&str, u64); 17] = [
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
    ];
    out.extend_from_slice(b"},\"drops\":{");
    json::u64_fields(out, &drops);
    out.extend_from_slice(b"},\"listeners\":");
    match sockets {
        Some(l) => listeners(out, l),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `{"udp":{"address":…,"up":true},"unix":{"address":…,"up":false,"error":…}}`; `null` for a
/// socket not configured.
fn listeners(out: &mut Vec<u8>, l: &ListenerReport) {
    for (i, (name, x)) in [("udp", &l.udp), ("unix", &l.unix)].into_iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"{" } else { b"," });
        json::str(out, name);
        out.push(b':');
        let Some(x) = x else {
            out.extend_from_slice(b"null");
            continue;
        };
        out.extend_from_slice(b"{\"address\":");
        json::str(out, &x.address);
        out.extend_from_slice(b",\"up\":");
        out.extend_from_slice(if x.error.is_none() { b"true" } else { b"false" });
        if let Some(e) = &x.error {
            out.extend_from_slice(b",\"error\":");
            json::str(out, e);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::super::dogstatsd::Listening;
    use super::*;

    fn input<'a>(dsd: Option<DogStatsdStatus>, l: Option<&'a ListenerReport>, t0: Instant) -> StatusInput<'a> {
        StatusInput {
            host: "h",
            started: t0,
            now: t0,
            forwarder: None,
            checks: [("host", None), ("process", None), ("connections", None), ("docker", None)],
            traces: None,
            intake: Default::default(),
            open_connections: 0,
            http: None,
            docker_events: None,
            dogstatsd: dsd,
            dogstatsd_listeners: l,
            features: None,
            process_source: None,
        }
    }

    fn json_and_text(s: &StatusInput<'_>) -> (serde_json::Value, String) {
        let mut out = Vec::new();
        write(&mut out, s);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("status::write writes JSON");
        let text = crate::control::render_status(&v, 0);
        (v, text)
    }

    /// `process_source`: listings by reason (adding up), probes, the table and descriptor
    /// figures, in JSON and in the readable report; `null` without a process check.
    #[test]
    fn process_discovery_is_reported() {
        let t0 = Instant::now();
        let (v, text) = json_and_text(&input(None, None, t0));
        assert!(v["process_source"].is_null());
        assert!(!text.contains("listings of /proc"), "{text}");
        let mut s = input(None, None, t0);
        s.process_source = Some(ProcessSourceStatus {
            listings_by_reason: [1, 0, 7, 2, 0, 3],
            probes: 400,
            probe_usable: true,
            processes: 580,
            unread_last_cycle: 430,
            skipped_no_fds_total: 5,
            descriptor_counts_total: 9000,
        });
        let (v, text) = json_and_text(&s);
        let p = &v["process_source"];
        assert_eq!(p["listings"], 13);
        assert_eq!(
            p["listings_by_reason"],
            serde_json::json!({"first": 1, "unavailable": 0, "due": 7, "relist": 2, "wrapped": 0, "many": 3})
        );
        assert_eq!((p["probes"].as_u64(), p["probe_usable"].as_bool()), (Some(400), Some(true)));
        assert_eq!((p["processes"].as_u64(), p["unread_last_cycle"].as_u64()), (Some(580), Some(430)));
        assert_eq!((p["skipped_no_fds_total"].as_u64(), p["descriptor_counts_total"].as_u64()), (Some(5), Some(9000)));
        assert!(
            text.contains(
                "580 known, 430 left unread last cycle (not run since read); 13 listings of /proc (first 1, due 7, relist 2, many 3), 400 probes; 5 skipped for want of descriptors, 9000 descriptor counts"
            ),
            "{text}"
        );
        s.process_source = Some(ProcessSourceStatus { probe_usable: false, ..Default::default() });
        let (_, text) = json_and_text(&s);
        assert!(text.contains("0 listings of /proc (none), 0 probes (probing unavailable)"), "{text}");
    }

    /// `/status` says which DogStatsD socket is down and why, running on the other or disabled.
    #[test]
    fn dogstatsd_listeners_down_are_named_with_why() {
        let t0 = Instant::now();
        let udp = Listening { address: "127.0.0.1:8125".into(), error: None };
        let unix_down = Listening {
            address: "/nonexistent/dir/dsd.socket".into(),
            error: Some("Unix socket STS_DOGSTATSD_SOCKET=/nonexistent/dir/dsd.socket not opened: No such file".into()),
        };
        let report = ListenerReport { udp: Some(udp), unix: Some(unix_down.clone()) };
        let dsd = DogStatsdStatus {
            listener: Default::default(),
            agg: Default::default(),
            contexts: 0,
            events_pending: 0,
            events_flushed: 0,
            events_dropped: 0,
            cpu_ns: 0,
        };
        let (v, text) = json_and_text(&input(Some(dsd), Some(&report), t0));
        let l = &v["dogstatsd"]["listeners"];
        assert_eq!(l["udp"], serde_json::json!({"address": "127.0.0.1:8125", "up": true}));
        assert_eq!(l["unix"]["up"], false);
        assert!(l["unix"]["error"].as_str().unwrap().contains("STS_DOGSTATSD_SOCKET="), "{v}");
        assert_eq!(v["dogstatsd"]["udp_packets"], 0);
        assert!(text.contains("dogstatsd    0 packets"), "{text}");
        assert!(text.contains("dogstatsd    unix listener down: Unix socket STS_DOGSTATSD_SOCKET="), "{text}");
        assert!(!text.contains("udp listener down"), "{text}");
        // No socket opened: disabled, both named.
        let udp_down = Listening {
            address: "127.0.0.1:8125".into(),
            error: Some("UDP listener on 127.0.0.1:8125 (STS_BIND_HOST, port: STS_DOGSTATSD_PORT) not opened".into()),
        };
        let report = ListenerReport { udp: Some(udp_down), unix: Some(unix_down) };
        let (v, text) = json_and_text(&input(None, Some(&report), t0));
        assert_eq!(v["dogstatsd"]["disabled"], "no listener opened");
        assert_eq!(
            (v["dogstatsd"]["listeners"]["udp"]["up"].as_bool(), v["dogstatsd"]["listeners"]["unix"]["up"].as_bool()),
            (Some(false), Some(false))
        );
        assert!(text.contains("dogstatsd    disabled: no listener opened"), "{text}");
        assert!(
            text.contains("udp listener down: UDP listener on 127.0.0.1:8125") && text.contains("unix listener down"),
            "{text}"
        );
        // A socket not configured is null; DogStatsD off altogether is null.
        let report =
            ListenerReport { udp: Some(Listening { address: "127.0.0.1:8125".into(), error: None }), unix: None };
        let (v, _) = json_and_text(&input(Some(dsd), Some(&report), t0));
        assert!(v["dogstatsd"]["listeners"]["unix"].is_null(), "{v}");
        let (v, text) = json_and_text(&input(None, None, t0));
        assert!(v["dogstatsd"].is_null() && text.contains("dogstatsd    off"), "{text}");
    }
}
