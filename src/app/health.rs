//! The agent's health (`GET /health`, read by `sts-agent health`; `/live` and `/ready` on
//! `STS_HEALTH_PORT`): one `PASS`/`FAIL` line per component, healthy when all pass.
//!
//! Healthy means (issue 19): the loop answered (the request itself); every enabled check ran
//! within twice its interval (or the agent started less than that ago); the trace intake, when
//! enabled, listens; every endpoint delivered, has nothing to send yet, or has failed for less
//! than the retry horizon (`STS_HEALTH_RETRY_HORIZON`: the outbox backs off up to 60 s between
//! attempts, so a few minutes of backoff is the documented behaviour, not a fault).

use super::source::Source;
use super::App;
use crate::control::LOCAL_HEALTH_PORT;
use crate::outbox::Forwarder;
use crate::sources::trace_intake::{IntakeConfig, TraceIntake};
use crate::transport::http_server::Route;
use mio::Token;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A check's schedule: `(name, last run, interval)`, for enabled checks only.
pub(super) type CheckSchedule = (&'static str, Option<(Option<Instant>, Duration)>);

/// What the verdict reads: copies taken before the intake answers, and the outbox.
pub(super) struct HealthInput<'a> {
    pub started: Instant,
    pub now: Instant,
    pub checks: [CheckSchedule; 4],
    /// `None`: the trace intake is disabled; `Some(None)`: enabled but not listening.
    pub trace_intake: Option<Option<SocketAddr>>,
    /// The trace intake's Unix socket (`STS_APM_RECEIVER_SOCKET`), when it has one.
    pub trace_socket: Option<&'a Path>,
    /// `None`: a dry run (nothing is sent).
    pub forwarder: Option<&'a Forwarder>,
    pub horizon: Duration,
}

/// Whole seconds, for the report.
fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// `; last error 20s ago: HTTP 400: …` after an endpoint's line, when there is one to name.
struct LastError<'a>(Option<(&'a str, u64)>);

impl std::fmt::Display for LastError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((e, ago)) => write!(f, "; last error {ago}s ago: {e}"),
            None => Ok(()),
        }
    }
}

/// Writes the report (one line per component) and returns whether every component passed.
pub(super) fn write(out: &mut Vec<u8>, h: &HealthInput<'_>) -> bool {
    let mut healthy = true;
    let mut line = |out: &mut Vec<u8>, pass: bool, args: std::fmt::Arguments<'_>| {
        healthy &= pass;
        out.extend_from_slice(if pass { b"PASS " } else { b"FAIL " });
        let _ = out.write_fmt(args);
        out.push(b'\n');
    };
    let up = h.now.saturating_duration_since(h.started);
    line(out, true, format_args!("loop: answered (up {}s)", secs(up)));
    for (name, schedule) in &h.checks {
        let Some((last, interval)) = schedule else { continue };
        let limit = *interval * 2;
        match last {
            Some(t) => {
                let ago = h.now.saturating_duration_since(*t);
                line(
                    out,
                    ago <= limit,
                    format_args!(
                        "check {name}: last ran {}s ago (every {}s, limit {}s)",
                        secs(ago),
                        secs(*interval),
                        secs(limit)
                    ),
                );
            }
            None => line(
                out,
                up <= limit,
                format_args!("check {name}: has not run yet, {}s after start (limit {}s)", secs(up), secs(limit)),
            ),
        }
    }
    match h.trace_intake {
        None => line(out, true, format_args!("trace-intake: disabled")),
        Some(Some(addr)) => {
            let tcp = (addr.port() != 0).then_some(addr);
            match (tcp, h.trace_socket) {
                (Some(a), Some(p)) => {
                    line(out, true, format_args!("trace-intake: listening on {a} and unix:{}", p.display()))
                }
                (None, Some(p)) => line(out, true, format_args!("trace-intake: listening on unix:{}", p.display())),
                (_, None) => line(out, true, format_args!("trace-intake: listening on {addr}")),
            }
        }
        Some(None) => line(out, false, format_args!("trace-intake: enabled but not listening (see the agent's log)")),
    }
    let Some(f) = h.forwarder else {
        line(out, true, format_args!("endpoints: dry run (payloads are printed, not sent)"));
        return healthy;
    };
    for r in f.health(h.now) {
        let error = r.last_error.unwrap_or("none");
        let since = |t: Option<Instant>| t.map(|t| h.now.saturating_duration_since(t));
        // Judged per route: failing (retried or refused) or waiting with payloads queued, with no
        // delivery of its own, for longer than the horizon. A route with nothing queued or in
        // flight is not failing (the outbox clears it), unless the receiver refused the key.
        let stuck = since(r.failing_since).max(since(r.waiting_since)).filter(|d| *d > h.horizon);
        if let Some(stuck) = stuck {
            line(
                out,
                false,
                format_args!(
                    "endpoint {}: nothing delivered for {}s, longer than the {}s retry horizon ({} queued): {error}",
                    r.name,
                    secs(stuck),
                    secs(h.horizon),
                    r.queued
                ),
            );
            continue;
        }
        // An error after the route's last delivery (a payload a 400 or 413 dropped) is named,
        // with its age; one the route has delivered since is not.
        let recent_error = LastError(match (r.last_error, since(r.last_error_at)) {
            (Some(e), Some(ago)) if r.last_error_at > r.last_delivered => Some((e, secs(ago))),
            _ => None,
        });
        match (since(r.failing_since), r.last_delivered) {
            (Some(failing), _) => line(
                out,
                true,
                format_args!(
                    "endpoint {}: failing for {}s, in backoff ({} queued; next attempt in {}s; FAIL after {}s): {error}",
                    r.name,
                    secs(failing),
                    r.queued,
                    r.backoff.as_secs_f64().ceil() as u64,
                    secs(h.horizon)
                ),
            ),
            (None, Some(t)) => line(
                out,
                true,
                format_args!(
                    "endpoint {}: delivered {}s ago ({} queued){recent_error}",
                    r.name,
                    secs(h.now.saturating_duration_since(t)),
                    r.queued
                ),
            ),
            (None, None) => line(
                out,
                true,
                format_args!(
                    "endpoint {}: nothing {} yet ({} queued){recent_error}",
                    r.name,
                    if recent_error.0.is_some() { "delivered" } else { "sent" },
                    r.queued
                ),
            ),
        }
    }
    healthy
}

/// The health listener: `STS_HEALTH_PORT` on every interface (`/health` only for local peers,
/// like `/status`; `/ready` gives remote peers its verdict only), or, with APM off and no
/// `STS_HEALTH_PORT`, `127.0.0.1:LOCAL_HEALTH_PORT` (`sts-agent health` must have something to
/// ask, or a container health check fails forever). Not with `--once` (nothing asks a run that
/// short). A configured port that cannot be bound is a configuration error (`InvalidInput`: exit
/// 2); the default one only warns (another agent on this host may hold it).
pub(super) fn open(
    port: Option<u16>,
    apm_enabled: bool,
    once: bool,
    registry: &mio::Registry,
) -> io::Result<Option<TraceIntake>> {
    let addr = match (port, apm_enabled) {
        _ if once => return Ok(None),
        (Some(p), _) => SocketAddr::from(([0, 0, 0, 0], p)),
        (None, false) => SocketAddr::from(([127, 0, 0, 1], LOCAL_HEALTH_PORT)),
        (None, true) => return Ok(None),
    };
    let cfg = IntakeConfig {
        tcp: Some(addr),
        unix: None,
        max_body: 4096,
        max_conns: 16,
        read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        held_budget: 64 * 1024,
    };
    match (TraceIntake::open(cfg, registry, Source::HealthPort.tokens().start), port) {
        (Ok(l), Some(_)) => {
            info!("health endpoints /live, /ready and /health on {addr} (STS_HEALTH_PORT)");
            Ok(Some(l))
        }
        (Ok(l), None) => {
            info!("health endpoints /live, /ready and /health on {addr} (STS_APM_ENABLED=false, no STS_HEALTH_PORT)");
            Ok(Some(l))
        }
        (Err(e), Some(p)) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("STS_HEALTH_PORT={p}: cannot listen on {addr}: {e}; choose a free port, or 0 for none"),
        )),
        (Err(e), None) => {
            warn!(
                "cannot listen on {addr} for /health (STS_APM_ENABLED=false, no STS_HEALTH_PORT): {e}; \
                 sts-agent health will fail: set STS_HEALTH_PORT to a free port"
            );
            Ok(None)
        }
    }
}

impl App {
    /// The enabled checks' schedules (copies: taken before a listener borrows the app).
    pub(super) fn check_schedules(&self) -> [CheckSchedule; 4] {
        [
            ("host", Some(self.host_timer.schedule())),
            ("process", self.process.as_ref().map(|_| self.process_timer.schedule())),
            ("connections", self.connections.as_ref().map(|_| self.connection_timer.schedule())),
            ("docker", self.docker_check.as_ref().map(|_| self.docker_timer.schedule())),
        ]
    }

    /// The trace intake as health sees it (see `HealthInput::trace_intake`).
    pub(super) fn trace_intake_health(&self) -> Option<Option<SocketAddr>> {
        (self.cfg.apm_enabled && !self.opts.once).then(|| {
            self.intake.as_ref().map(|i| i.local_addr().unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))))
        })
    }

    /// A request on the `STS_HEALTH_PORT` listener.
    pub(super) fn on_health_port_event(&mut self, t: Token, now: Instant) -> io::Result<()> {
        let checks = self.check_schedules();
        let trace_intake = self.trace_intake_health();
        let Some(listener) = self.health_listener.as_mut() else { return Ok(()) };
        let input = HealthInput {
            started: self.clock_origin,
            now,
            checks,
            trace_intake,
            trace_socket: self.cfg.apm_socket.as_deref(),
            forwarder: self.sink.forwarder(),
            horizon: self.cfg.health_retry_horizon,
        };
        listener.on_event(self.poll.registry(), t, now, &mut |head, _body, peer, reply| match head.route {
            Route::Live => {
                reply.extend_from_slice(b"ok\n");
                (200, "text/plain")
            }
            Route::Ready | Route::Health => {
                let start = reply.len();
                let healthy = write(reply, &input);
                if !peer.local() {
                    // The report names endpoints, errors and timings: for this host only. A
                    // remote orchestrator gets the verdict.
                    reply.truncate(start);
                    reply.extend_from_slice(if healthy {
                        b"ready\n"
                    } else {
                        b"not ready (sts-agent health on the host says why)\n"
                    });
                }
                (if healthy { 200 } else { 503 }, "text/plain")
            }
            _ => {
                reply.extend_from_slice(b"not found: /live, /ready or /health\n");
                (404, "text/plain")
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(h: &HealthInput<'_>) -> (bool, String) {
        let mut out = Vec::new();
        let ok = write(&mut out, h);
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_check_late_past_twice_its_interval_or_a_silent_intake_fails() {
        let started = Instant::now();
        let now = started + Duration::from_secs(100);
        let s15 = Duration::from_secs(15);
        let mut h = HealthInput {
            started,
            now,
            checks: [
                ("host", Some((Some(now - Duration::from_secs(30)), s15))),
                ("process", None),
                ("connections", None),
                ("docker", None),
            ],
            trace_intake: None,
            trace_socket: None,
            forwarder: None,
            horizon: Duration::from_secs(300),
        };
        let (ok, text) = report(&h);
        assert!(ok, "{text}");
        assert!(text.contains("PASS check host: last ran 30s ago (every 15s, limit 30s)\n"), "{text}");
        assert!(!text.contains("process"), "disabled checks are not listed: {text}");

        h.checks[0].1 = Some((Some(now - Duration::from_secs(31)), s15));
        let (ok, text) = report(&h);
        assert!(!ok && text.contains("FAIL check host: last ran 31s ago"), "{text}");

        // Never ran: fine while the agent is young, a failure once twice the interval passed.
        h.checks[0].1 = Some((None, Duration::from_secs(60)));
        assert!(report(&h).0);
        h.checks[0].1 = Some((None, s15));
        let (ok, text) = report(&h);
        assert!(!ok && text.contains("FAIL check host: has not run yet, 100s after start"), "{text}");

        h.checks[0].1 = Some((Some(now), s15));
        h.trace_intake = Some(None);
        let (ok, text) = report(&h);
        assert!(!ok && text.contains("FAIL trace-intake: enabled but not listening"), "{text}");
    }

    /// The report as the agent's listeners send it (`/health`'s headers, `write`'s lines) is
    /// what `sts-agent health` accepts; the same lines without the mark are not.
    #[test]
    fn the_real_report_is_what_the_health_command_accepts() {
        use crate::transport::http_server::{write_response, AGENT_HEADERS, HEALTH_HEADERS};
        let started = Instant::now();
        let now = started + Duration::from_secs(100);
        let s15 = Duration::from_secs(15);
        let mut h = HealthInput {
            started,
            now,
            checks: [("host", Some((Some(now), s15))), ("process", None), ("connections", None), ("docker", None)],
            trace_intake: None,
            trace_socket: None,
            forwarder: None,
            horizon: Duration::from_secs(300),
        };
        for want_healthy in [true, false] {
            if !want_healthy {
                h.checks[0].1 = Some((Some(started), s15));
            }
            let mut body = Vec::new();
            let healthy = write(&mut body, &h);
            assert_eq!(healthy, want_healthy);
            let status = if healthy { 200 } else { 503 };
            let mut wire = Vec::new();
            write_response(&mut wire, status, "text/plain", &body, false, &HEALTH_HEADERS);
            let reply = crate::control::parse_reply(&wire).unwrap();
            assert_eq!(crate::control::health_report(&reply), Ok(()), "{reply:?}");
            wire.clear();
            write_response(&mut wire, status, "text/plain", &body, false, &AGENT_HEADERS);
            let reply = crate::control::parse_reply(&wire).unwrap();
            assert!(crate::control::health_report(&reply).is_err(), "unmarked: {reply:?}");
        }
    }

    /// Issue 19 review: each endpoint line names its queue; an error after the route's last
    /// delivery is named with its age (a 503 then a 400 that dropped the only payload: the route
    /// is at rest, not failing); one delivered past is not.
    #[test]
    fn endpoint_lines_name_the_queue_and_a_recent_error() {
        use crate::outbox::RouteSpec;
        let base = crate::url::Url::parse("http://127.0.0.1:9/stsAgent").unwrap();
        let mut f = Forwarder::new(
            vec![RouteSpec::core_json("series", &base, "/api/v1/series"), RouteSpec::traces(&base)],
            "health-test-api-key-0123",
            None,
            1 << 20,
            100,
            1,
        )
        .unwrap();
        let t0 = Instant::now();
        let resp = |status| crate::transport::client::Outcome::Response {
            status,
            retry_after: None,
            body_excerpt: String::new(),
            body: Vec::new(),
        };
        f.enqueue(1, &[0u8; 64]);
        f.test_settle_next(resp(503), t0);
        f.test_settle_next(resp(400), t0 + Duration::from_secs(2));
        f.enqueue(0, &[0u8; 64]);
        f.test_settle_next(resp(202), t0 + Duration::from_secs(3));
        f.enqueue(0, &[0u8; 64]);
        f.enqueue(0, &[0u8; 64]);
        let h = HealthInput {
            started: t0,
            now: t0 + Duration::from_secs(20),
            checks: [("host", None), ("process", None), ("connections", None), ("docker", None)],
            trace_intake: None,
            trace_socket: None,
            forwarder: Some(&f),
            horizon: Duration::from_secs(8),
        };
        let (ok, text) = report(&h);
        assert!(ok, "{text}");
        assert!(text.contains("PASS endpoint series: delivered 17s ago (2 queued)\n"), "{text}");
        assert!(
            text.contains("PASS endpoint traces: nothing delivered yet (0 queued); last error 18s ago: HTTP 400: rejected as malformed\n"),
            "{text}"
        );
    }

    /// The readable `sts-agent status` report, rendered from what the agent really writes on
    /// `/status` (`status::write`), so the two cannot drift apart.
    #[test]
    fn the_readable_status_renders_the_real_status_json() {
        use super::super::status::{self, CheckStatus, StatusInput};
        use crate::outbox::RouteSpec;
        let base = crate::url::Url::parse("http://127.0.0.1:9/stsAgent").unwrap();
        let mut f = Forwarder::new(
            vec![RouteSpec::core_json("series", &base, "/api/v1/series")],
            "status-test-api-key-0123",
            None,
            1 << 20,
            100,
            1,
        )
        .unwrap();
        f.enqueue(0, &[0u8; 2048]);
        let started = Instant::now();
        let traces = super::super::traces::TraceStats::default();
        let host_check = CheckStatus { runs: 2, last_count: 57, ..CheckStatus::default() };
        let input = StatusInput {
            host: "h1",
            started,
            now: started + Duration::from_secs(3725),
            forwarder: Some(&f),
            checks: [("host", Some(host_check)), ("process", None), ("connections", None), ("docker", None)],
            traces: Some(&traces),
            intake: Default::default(),
            open_connections: 0,
            http: None,
            docker_events: None,
            dogstatsd: None,
            dogstatsd_listeners: None,
            features: None,
            process_source: None,
        };
        let mut out = Vec::new();
        status::write(&mut out, &input);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("status::write writes JSON");
        let text = crate::control::render_status(&v, crate::control::unix_now());
        for want in [
            "on h1, up 1h 2m 5s",
            "host         2 runs",
            "57 series",
            "series          http://127.0.0.1:9/stsAgent/api/v1/series",
            "0 delivered of 1, 1 queued (2.0 KiB)",
            "traces       0 requests",
            "opentelemetry 0 OTLP requests, 0 /open-telemetry requests",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
