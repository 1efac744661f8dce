//! Glue between the trace intake (HTTP listeners and connections, `sources/trace_intake.rs`)
//! and the trace agent (`traces.rs`): the `TraceIntake` source hands requests to the agent and
//! answers `/status`; the `TraceFlush` source sends the pending payload when it is due.

use super::health::{self, HealthInput};
use super::sink::Payload;
use super::source::Source;
use super::status::{self, StatusInput};
use super::timers::thread_cpu_ns;
use super::{App, RunOptions, TraceAgent};
use crate::config::Config;
use crate::sources::trace_intake::{IntakeConfig, TraceIntake};
use crate::transport::http_server::Route;
use mio::{Registry, Token};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The trace intake and its agent, when APM is on (not in `--once` mode, which only runs the
/// checks). `json`: the agent writes the JSON view of payloads (a dry run).
pub(super) fn open(
    cfg: &Config,
    opts: RunOptions,
    registry: &Registry,
    json: bool,
) -> Option<(TraceIntake, TraceAgent)> {
    if !cfg.apm_enabled || opts.once {
        return None;
    }
    let ip = if cfg.apm_non_local_traffic { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
    let addr = std::net::SocketAddr::from((ip, cfg.apm_port));
    let icfg = IntakeConfig {
        tcp: Some(addr),
        unix: cfg.apm_socket.clone(),
        max_body: cfg.apm_max_payload,
        max_conns: cfg.apm_max_connections,
        read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        // Bodies on all connections together: one of the largest and 4 MiB of others. With the
        // cost of the request being answered (at most `COST_CAP`, pending payloads included) this
        // is what the trace path may add to the agent (README, Traces).
        held_budget: cfg.apm_max_payload.saturating_add(4 << 20),
    };
    match TraceIntake::open(icfg, registry, Source::TraceIntake.tokens().start) {
        Ok(i) => {
            if cfg.apm_non_local_traffic {
                info!("trace intake on {addr} (every interface: STS_APM_NON_LOCAL_TRAFFIC=true)");
            } else {
                info!("trace intake on {addr}");
            }
            if let Some(p) = &cfg.apm_socket {
                info!("trace intake on unix:{}", p.display());
            }
            Some((i, TraceAgent::new(json)))
        }
        Err(e) => {
            error!("trace intake disabled: {e}");
            None
        }
    }
}

impl App {
    /// The trace intake's readiness: requests go to the trace agent, `/status` is answered
    /// here; a pending payload that reached its size limit is sent at once.
    pub(super) fn on_intake_event(&mut self, t: Token, now: Instant) -> io::Result<()> {
        // For `/health` (a copy, taken before the intake is taken out).
        let trace_intake = self.trace_intake_health();
        let horizon = self.cfg.health_retry_horizon;
        // Taken out for the while (moved, not copied to the heap), so that `/status` reads the
        // same `status_input` as the self-telemetry series while these two are busy.
        let (Some(mut intake), Some(mut traces)) = (self.intake.take(), self.traces.take()) else {
            return Ok(());
        };
        let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let host = self.hostname.as_str();
        let procs = self.process.as_ref().map(|p| &p.table);
        // A snapshot for `/status` (the intake is busy while it answers).
        let counters = intake.counters;
        let open = intake.open_connections();
        let trace_socket = self.cfg.apm_socket.as_deref();
        // Built only for a `/status` or `/health` request: not on the trace path's every event.
        let this = &*self;
        let cpu_start = thread_cpu_ns();
        // Status requests' own time, not the trace path's.
        let mut status_ns = 0;
        intake.on_event(this.poll.registry(), t, now, &mut |head, body, peer, reply| {
            if head.route == Route::Status {
                let t0 = thread_cpu_ns();
                let base = this.status_input(now);
                let input =
                    StatusInput { traces: Some(&traces.stats), intake: counters, open_connections: open, ..base };
                status::write(reply, &input);
                status_ns += thread_cpu_ns().saturating_sub(t0);
                return (200, "application/json");
            }
            if head.route == Route::Health {
                let input = HealthInput {
                    started: this.clock_origin,
                    now,
                    checks: this.check_schedules(),
                    trace_intake,
                    trace_socket,
                    forwarder: this.sink.forwarder(),
                    horizon,
                };
                let healthy = health::write(reply, &input);
                return (if healthy { 200 } else { 503 }, "text/plain");
            }
            traces.handle(head, body, peer, reply, now, now_ns, host, procs)
        });
        self.intake = Some(intake);
        let traces = self.traces.insert(traces);
        traces.stats.cpu_ns += thread_cpu_ns().saturating_sub(cpu_start).saturating_sub(status_ns);
        if traces.due(now) {
            self.flush_traces()?;
        }
        Ok(())
    }

    /// Sends the pending traces: one payload, or several when a large request filled some.
    pub(super) fn flush_traces(&mut self) -> io::Result<()> {
        let Some(t) = self.traces.as_mut() else { return Ok(()) };
        let cpu_start = thread_cpu_ns();
        let mut r = Ok(());
        // One payload, or several when a large request filled some (each within MAX_PAYLOAD).
        while let Some(payload) = t.finish_payload(&self.hostname) {
            debug!("traces: sending a payload of {} bytes", payload.len());
            r = r.and(self.sink.deliver(Payload::Traces, payload));
            t.sent();
        }
        // `finish_payload` found nothing (more) pending and cleared the flush deadline, so it cannot
        // stay in the past.
        t.stats.cpu_ns += thread_cpu_ns().saturating_sub(cpu_start);
        r
    }
}
