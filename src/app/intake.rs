//! Glue between the trace intake (HTTP listeners and connections, `sources/trace_intake.rs`)
//! and the trace agent (`traces.rs`): the `TraceIntake` source hands requests to the agent and
//! answers `/status`; the `TraceFlush` source sends the pending payload when it is due.

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
        let (Some(intake), Some(traces)) = (self.intake.as_mut(), self.traces.as_mut()) else {
            return Ok(());
        };
        let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let host = self.hostname.as_str();
        let procs = self.process.as_ref().map(|p| &p.table);
        // A snapshot for `/status` (the intake is busy while it answers).
        let counters = intake.counters;
        let open = intake.open_connections();
        let forwarder = self.sink.forwarder();
        let checks = [
            ("host", Some(self.host_status)),
            ("process", self.process.as_ref().map(|_| self.process_status)),
            ("connections", self.connections.as_ref().map(|_| self.connection_status)),
            ("docker", self.docker_check.as_ref().map(|_| self.docker_status)),
        ];
        let http = self.connections.as_ref().and_then(|c| c.http_status());
        let docker_events = self.docker_events.as_ref().map(|e| (e.stats, self.event_bundler.status()));
        let dogstatsd = self.dogstatsd.as_ref().map(|d| d.status()).or(self.dogstatsd_at_stop);
        let started = self.clock_origin;
        let cpu_start = thread_cpu_ns();
        // Status requests' own time, not the trace path's.
        let mut status_ns = 0;
        intake.on_event(self.poll.registry(), t, now, &mut |head, body, peer, reply| {
            if head.route == Route::Status {
                let t0 = thread_cpu_ns();
                let input = StatusInput {
                    host,
                    started,
                    now,
                    forwarder,
                    checks,
                    traces: Some(&traces.stats),
                    intake: counters,
                    open_connections: open,
                    http,
                    docker_events,
                    dogstatsd,
                };
                status::write(reply, &input);
                status_ns += thread_cpu_ns().saturating_sub(t0);
                return (200, "application/json");
            }
            traces.handle(head, body, peer, reply, now, now_ns, host, procs)
        });
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
