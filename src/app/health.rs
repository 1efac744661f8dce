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
use crate::outbox::Forwarder;
use crate::sources::trace_intake::{IntakeConfig, TraceIntake};
use crate::transport::http_server::Route;
use mio::Token;
use std::io::{self, Write};
use std::net::SocketAddr;
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
    /// `None`: a dry run (nothing is sent).
    pub forwarder: Option<&'a Forwarder>,
    pub horizon: Duration,
}

/// Whole seconds, for the report.
fn secs(d: Duration) -> u64 {
    d.as_secs()
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
        Some(Some(addr)) => line(out, true, format_args!("trace-intake: listening on {addr}")),
        Some(None) => line(out, false, format_args!("trace-intake: enabled but not listening (see the agent's log)")),
    }
    let Some(f) = h.forwarder else {
        line(out, true, format_args!("endpoints: dry run (payloads are printed, not sent)"));
        return healthy;
    };
    for r in f.health(h.now) {
        let error = r.last_error.unwrap_or("none");
        match (r.failing_since, r.last_delivered) {
            (Some(since), _) => {
                let failing = h.now.saturating_duration_since(since);
                if failing <= h.horizon {
                    line(
                        out,
                        true,
                        format_args!(
                            "endpoint {}: failing for {}s, in backoff (next attempt in {}s; FAIL after {}s): {error}",
                            r.name,
                            secs(failing),
                            r.backoff.as_secs_f64().ceil() as u64,
                            secs(h.horizon)
                        ),
                    );
                } else {
                    line(
                        out,
                        false,
                        format_args!(
                            "endpoint {}: nothing delivered for {}s, longer than the {}s retry horizon ({} queued): {error}",
                            r.name,
                            secs(failing),
                            secs(h.horizon),
                            r.queued
                        ),
                    );
                }
            }
            (None, Some(t)) => line(
                out,
                true,
                format_args!("endpoint {}: delivered {}s ago", r.name, secs(h.now.saturating_duration_since(t))),
            ),
            (None, None) => {
                line(out, true, format_args!("endpoint {}: nothing sent yet ({} queued)", r.name, r.queued))
            }
        }
    }
    healthy
}

/// The `STS_HEALTH_PORT` listener (every interface; `/health` only for local peers, like
/// `/status`).
pub(super) fn open(port: Option<u16>, registry: &mio::Registry) -> Option<TraceIntake> {
    let port = port?;
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let cfg = IntakeConfig {
        tcp: Some(addr),
        unix: None,
        max_body: 4096,
        max_conns: 16,
        read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        held_budget: 64 * 1024,
    };
    match TraceIntake::open(cfg, registry, Source::HealthPort.tokens().start) {
        Ok(l) => {
            info!("health endpoints /live and /ready on {addr} (STS_HEALTH_PORT)");
            Some(l)
        }
        Err(e) => {
            error!("STS_HEALTH_PORT={port}: cannot listen: {e}; no /live and /ready");
            None
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
            forwarder: self.sink.forwarder(),
            horizon: self.cfg.health_retry_horizon,
        };
        listener.on_event(self.poll.registry(), t, now, &mut |head, _body, _peer, reply| match head.route {
            Route::Live => {
                reply.extend_from_slice(b"ok\n");
                (200, "text/plain")
            }
            Route::Ready | Route::Health => {
                let healthy = write(reply, &input);
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
}
