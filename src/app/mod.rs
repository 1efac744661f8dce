//! The one `mio` loop: owns all state, reads the clock, and calls into sources, checks,
//! encoders and the outbox. Timers are a handful of deadlines; `poll` sleeps until the earliest.
//! Signals (SIGTERM, SIGINT, SIGHUP) arrive through a signalfd registered with the poll.

use crate::config::Config;
use crate::config::ProcessAgentMode;
use crate::encode::compress::{Gzip, Zlib};
use crate::outbox::{Forwarder, RouteId, RouteSpec};
use crate::sources::docker::{DockerSource, Metadata};
use crate::sources::ecs::EcsSource;
use crate::sources::host::HostSource;
use crate::sources::meta::{resolve_hostname, HostnameSource};
use crate::sources::trace_intake::{IntakeConfig, TraceIntake};
use crate::transport::http_server::Route;
use crate::transport::tls;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use status::{CheckStatus, StatusInput};

mod connections;
mod host;
mod process;
mod status;
mod traces;
pub use connections::ConnectionsCheck;
pub use host::HostCheck;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
pub use process::{Encoded, ProcessCheck};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use traces::{request_limit, TraceAgent, TraceStats, MAX_PAYLOAD};

const SIGNAL: Token = Token(0);
const DOCKER: Token = Token(1);
const ECS: Token = Token(2);
const FIRST_ORIGIN_TOKEN: usize = 16;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// In `--once` mode: the gap between the two samples a rate needs, and how long to try sending.
const ONCE_RATE_GAP: Duration = Duration::from_secs(1);
const ONCE_SEND_LIMIT: Duration = Duration::from_secs(30);
/// In `--once` mode: how long the reporting process check may wait for Docker metadata.
const ONCE_METADATA_WAIT: Duration = Duration::from_secs(4);

/// The kinds of payload the agent sends; each maps to one route (endpoint) when sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// `/api/v1/series`, zlib JSON.
    Series = 0,
    /// `/intake/` (core agent), zlib JSON.
    Intake = 1,
    /// `/api/v1/collector`, header + zstd(protobuf), sent as is.
    Collector = 2,
    /// `/intake` (process agent), gzip JSON.
    ProcessIntake = 3,
    /// `/api/v1/connections`, header + zstd(protobuf), sent as is.
    Connections = 4,
    /// `/api/v0.2/traces`, gzip(protobuf `TracePayload`).
    Traces = 5,
}

const ENDPOINTS: [&str; 6] =
    ["/api/v1/series", "/intake/", "/api/v1/collector", "/intake", "/api/v1/connections", "/api/v0.2/traces"];
/// Tokens of the trace intake's listeners and connections start here.
const INTAKE_TOKENS: usize = 1 << 20;

/// A periodic check's schedule.
#[derive(Debug, Clone, Copy)]
struct Timer {
    next: Option<Instant>,
    runs: u32,
    interval: Duration,
}

impl Timer {
    fn new(start: Option<Instant>, interval: Duration) -> Timer {
        Timer { next: start, runs: 0, interval }
    }

    fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|t| now >= t)
    }

    /// After a run: the next one, or none (`--once` runs each check twice, one second apart,
    /// so rates have two samples).
    fn ran(&mut self, now: Instant, once: bool) {
        self.runs += 1;
        self.next = match (once, self.runs) {
            (true, 1) => Some(now + ONCE_RATE_GAP),
            (true, _) => None,
            (false, _) => Some(now + self.interval),
        };
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub once: bool,
    pub dry_run: bool,
}

/// Where encoded payloads go.
enum Output {
    /// Print `{"endpoint":…,"payload":…}` lines on stdout.
    DryRun,
    Forward(Forwarder),
}

pub struct App {
    cfg: Config,
    opts: RunOptions,
    hostname: String,
    poll: Poll,
    signals: SignalFd,
    host: HostCheck,
    process: Option<ProcessCheck>,
    connections: Option<ConnectionsCheck>,
    intake: Option<TraceIntake>,
    traces: Option<TraceAgent>,
    docker: Option<DockerSource>,
    ecs: Option<EcsSource>,
    /// Used when Docker is absent or disabled.
    no_metadata: Metadata,
    series_buf: Vec<u8>,
    topology_buf: Vec<u8>,
    msg_buf: Vec<u8>,
    sink: Sink,
    clock_origin: Instant,
    host_timer: Timer,
    process_timer: Timer,
    connection_timer: Timer,
    host_status: CheckStatus,
    process_status: CheckStatus,
    connection_status: CheckStatus,
    stop_by: Option<Instant>,
}

/// Compresses and hands payloads to the output; separate from `App` so a check runner can
/// emit while the app's other fields are borrowed.
struct Sink {
    output: Output,
    /// Route ids by `Payload` when sending.
    routes: [Option<RouteId>; 6],
    zlib: Zlib,
    gzip: Gzip,
    zbuf: Vec<u8>,
}

impl Sink {
    fn deliver(&mut self, kind: Payload, bytes: &[u8]) -> io::Result<()> {
        match &mut self.output {
            Output::DryRun => print_dry_run(ENDPOINTS[kind as usize], bytes),
            Output::Forward(f) => {
                let Some(route) = self.routes[kind as usize] else { return Ok(()) };
                match kind {
                    Payload::Series | Payload::Intake => {
                        self.zlib.compress(bytes, &mut self.zbuf);
                        f.enqueue(route, &self.zbuf);
                    }
                    Payload::ProcessIntake | Payload::Traces => {
                        self.gzip.compress(bytes, &mut self.zbuf);
                        f.enqueue(route, &self.zbuf);
                    }
                    Payload::Collector | Payload::Connections => f.enqueue(route, bytes),
                }
                Ok(())
            }
        }
    }
}

impl App {
    pub fn new(cfg: Config, opts: RunOptions) -> io::Result<App> {
        let poll = Poll::new()?;
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block().map_err(io::Error::from)?;
        let signals =
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io::Error::from)?;
        poll.registry().register(&mut SourceFd(&signals.as_raw_fd()), SIGNAL, Interest::READABLE)?;

        let (hostname, source) = resolve_hostname(cfg.hostname.as_deref(), &cfg.ec2_metadata_url);
        let how = match source {
            HostnameSource::Configured => "from STS_HOSTNAME",
            HostnameSource::Ec2InstanceId => "the EC2 instance id",
            HostnameSource::Os => "the OS host name",
        };
        info!("sts-agent {} starting; hostname {hostname:?} ({how})", env!("CARGO_PKG_VERSION"));

        let source = HostSource::open(&cfg.host_proc)
            .map_err(|e| io::Error::new(e.kind(), format!("HOST_PROC={}: {e}", cfg.host_proc.display())))?;

        let process_enabled = cfg.process_agent != ProcessAgentMode::Disabled;
        // Connections are reported for reported processes only, so they need the process check.
        let connections = match (cfg.network_tracing_enabled, cfg.process_agent) {
            (true, ProcessAgentMode::Enabled) => match ConnectionsCheck::new(
                cfg.max_connections,
                cfg.relation_short_lived_secs,
                cfg.connection_check_interval.as_secs(),
            ) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!("connections check disabled: cannot open a NETLINK_SOCK_DIAG socket: {e}");
                    None
                }
            },
            (false, _) => {
                info!("STS_NETWORK_TRACING_ENABLED=false: no connections check");
                None
            }
            (true, _) => None,
        };
        let mut routes = [None; 6];
        let output = match (&cfg.sts_url, opts.dry_run) {
            (Some(base), false) => {
                if cfg.skip_ssl_validation {
                    warn!("STS_SKIP_SSL_VALIDATION=true: server certificates are NOT verified");
                }
                let tls = tls::client_config(cfg.skip_ssl_validation)
                    .map_err(|e| io::Error::other(format!("TLS setup: {e}")))?;
                let mut specs = vec![
                    RouteSpec {
                        split: Some(crate::encode::split::series_zlib),
                        ..RouteSpec::core_json("series", base, ENDPOINTS[Payload::Series as usize])
                    },
                    RouteSpec::core_json("intake", base, ENDPOINTS[Payload::Intake as usize]),
                ];
                routes[Payload::Series as usize] = Some(0);
                routes[Payload::Intake as usize] = Some(1);
                if let (true, Some(pa)) = (process_enabled, &cfg.process_agent_url) {
                    routes[Payload::Collector as usize] = Some(specs.len());
                    specs.push(RouteSpec::process_agent(
                        "collector",
                        pa,
                        ENDPOINTS[Payload::Collector as usize],
                        &hostname,
                    ));
                    routes[Payload::ProcessIntake as usize] = Some(specs.len());
                    specs.push(RouteSpec::process_intake(pa, &hostname));
                    if connections.is_some() {
                        routes[Payload::Connections as usize] = Some(specs.len());
                        specs.push(RouteSpec::process_agent(
                            "connections",
                            pa,
                            ENDPOINTS[Payload::Connections as usize],
                            &hostname,
                        ));
                    }
                }
                if let (true, Some(apm)) = (cfg.apm_enabled && !opts.once, &cfg.apm_url) {
                    routes[Payload::Traces as usize] = Some(specs.len());
                    specs.push(RouteSpec::traces(apm));
                }
                let seed = u64::from(std::process::id()) ^ unix_now().rotate_left(17);
                let f =
                    Forwarder::new(specs, cfg.api_key.expose(), Some(tls), cfg.outbox_budget, FIRST_ORIGIN_TOKEN, seed)
                        .map_err(io::Error::other)?;
                info!("sending to {base}");
                Output::Forward(f)
            }
            _ => {
                info!("dry run: printing payloads on stdout instead of sending (set STS_STS_URL to send)");
                Output::DryRun
            }
        };
        let process = if process_enabled {
            raise_fd_limit();
            let containers_only = cfg.process_agent == ProcessAgentMode::ContainersOnly;
            Some(
                ProcessCheck::new(&cfg, containers_only)
                    .map_err(|e| io::Error::new(e.kind(), format!("process check: {e}")))?,
            )
        } else {
            info!("STS_PROCESS_AGENT_ENABLED=disabled: no process check");
            None
        };

        // The trace intake (not in `--once` mode, which only runs the checks).
        let (intake, traces) = if cfg.apm_enabled && !opts.once {
            let ip = if cfg.apm_non_local_traffic { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
            let addr = std::net::SocketAddr::from((ip, cfg.apm_port));
            let icfg = IntakeConfig {
                tcp: Some(addr),
                unix: cfg.apm_socket.clone(),
                max_body: cfg.apm_max_payload,
                max_conns: cfg.apm_max_connections,
                read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(30),
                held_budget: (2 * cfg.apm_max_payload).max(32 << 20),
            };
            match TraceIntake::open(icfg, poll.registry(), INTAKE_TOKENS) {
                Ok(i) => {
                    if cfg.apm_non_local_traffic {
                        info!("trace intake on {addr} (every interface: STS_APM_NON_LOCAL_TRAFFIC=true)");
                    } else {
                        info!("trace intake on {addr}");
                    }
                    if let Some(p) = &cfg.apm_socket {
                        info!("trace intake on unix:{}", p.display());
                    }
                    (Some(i), Some(TraceAgent::new(matches!(output, Output::DryRun))))
                }
                Err(e) => {
                    error!("trace intake disabled: {e}");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let now = Instant::now();
        let docker = process.as_ref().map(|_| DockerSource::new(cfg.docker_socket.clone(), DOCKER, now));
        let ecs = match &process {
            Some(_) => Some(EcsSource::new(cfg.ecs_agent_url.clone(), ECS, now).map_err(io::Error::other)?),
            None => None,
        };
        let host_timer = Timer::new(Some(now), cfg.host_check_interval);
        let process_timer = Timer::new(process.as_ref().map(|_| now), cfg.process_check_interval);
        let connection_timer = Timer::new(connections.as_ref().map(|_| now), cfg.connection_check_interval);
        Ok(App {
            cfg,
            opts,
            hostname,
            poll,
            signals,
            host: HostCheck::new(source),
            process,
            connections,
            intake,
            traces,
            docker,
            ecs,
            no_metadata: Metadata::default(),
            series_buf: Vec::with_capacity(64 * 1024),
            topology_buf: Vec::with_capacity(4 * 1024),
            msg_buf: Vec::with_capacity(64 * 1024),
            sink: Sink {
                output,
                routes,
                zlib: Zlib::default(),
                gzip: Gzip::default(),
                zbuf: Vec::with_capacity(16 * 1024),
            },
            clock_origin: now,
            host_timer,
            process_timer,
            connection_timer,
            host_status: CheckStatus::default(),
            process_status: CheckStatus::default(),
            connection_status: CheckStatus::default(),
            stop_by: None,
        })
    }

    /// Runs until a signal (exit 0 after flushing) or, with `--once`, until the checks ran and
    /// their payloads were delivered (exit 0) or could not be (exit 1).
    pub fn run(mut self) -> io::Result<bool> {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            if self.host_timer.due(now) {
                self.host_check(now)?;
            }
            if self.process_timer.due(now) {
                // `--once` reports right away, so give a Docker look-up in flight a moment to land.
                let wait_for_docker = self.opts.once
                    && self.process_timer.runs == 1
                    && now < self.clock_origin + ONCE_METADATA_WAIT
                    && (self.docker.as_ref().is_some_and(|d| d.refreshing(now))
                        || self.ecs.as_ref().is_some_and(|e| e.refreshing(now)));
                if wait_for_docker {
                    self.process_timer.next = Some(now + Duration::from_millis(50));
                } else {
                    self.process_check(now)?;
                }
            }
            // Connections use the process check's table: in `--once` mode, wait for its run.
            if self.connection_timer.due(now)
                && (!self.opts.once || self.process_timer.runs > self.connection_timer.runs)
            {
                self.connections_check(now)?;
            }
            if self.opts.once
                && self.stop_by.is_none()
                && self.host_timer.next.is_none()
                && self.process_timer.next.is_none()
                && self.connection_timer.next.is_none()
            {
                self.stop_by = Some(now + ONCE_SEND_LIMIT);
            }
            if self.traces.as_ref().is_some_and(|t| t.due(now)) {
                self.flush_traces()?;
            }
            if let Output::Forward(f) = &mut self.sink.output {
                f.pump(self.poll.registry(), now);
            }
            if let Some(done) = self.finished(now) {
                if let Output::Forward(f) = &mut self.sink.output {
                    f.close_all(self.poll.registry());
                    // The last line accounts for every payload of the run.
                    let (enq, del, drop) = f.totals();
                    info!(
                        "exiting: {enq} payloads enqueued, {del} delivered, {drop} dropped, {} undelivered",
                        f.queued_payloads()
                    );
                }
                return Ok(done);
            }
            let forward = match &self.sink.output {
                Output::Forward(f) => f.deadline(),
                Output::DryRun => None,
            };
            let intake = self.intake.as_ref().and_then(TraceIntake::deadline);
            let flush = self.traces.as_ref().and_then(TraceAgent::deadline);
            let wake = [
                self.host_timer.next,
                self.process_timer.next,
                self.connection_timer.next,
                forward,
                self.stop_by,
                intake,
                flush,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = wake.map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    SIGNAL => self.on_signal(now),
                    DOCKER => {
                        if let Some(d) = self.docker.as_mut() {
                            d.on_event(self.poll.registry(), now);
                        }
                    }
                    ECS => {
                        if let Some(e) = self.ecs.as_mut() {
                            e.on_event(self.poll.registry(), now);
                        }
                    }
                    t if t.0 >= INTAKE_TOKENS => {
                        let (Some(intake), Some(traces)) = (self.intake.as_mut(), self.traces.as_mut()) else {
                            continue;
                        };
                        let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
                        let host = self.hostname.as_str();
                        let procs = self.process.as_ref().map(|p| &p.table);
                        // A snapshot for `/status` (the intake is busy while it answers).
                        let counters = intake.counters;
                        let open = intake.open_connections();
                        let forwarder = match &self.sink.output {
                            Output::Forward(f) => Some(f),
                            Output::DryRun => None,
                        };
                        let checks = [
                            ("host", Some(self.host_status)),
                            ("process", self.process.as_ref().map(|_| self.process_status)),
                            ("connections", self.connections.as_ref().map(|_| self.connection_status)),
                        ];
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
                                };
                                status::write(reply, &input);
                                status_ns += thread_cpu_ns().saturating_sub(t0);
                                return (200, "application/json");
                            }
                            traces.handle(head, body, peer, reply, now, now_ns, host, procs)
                        });
                        traces.stats.cpu_ns += thread_cpu_ns().saturating_sub(cpu_start).saturating_sub(status_ns);
                    }
                    t => {
                        if let Output::Forward(f) = &mut self.sink.output {
                            f.on_event(self.poll.registry(), t, now);
                        }
                    }
                }
            }
            if let Output::Forward(f) = &mut self.sink.output {
                f.on_timeout(self.poll.registry(), now);
            }
            if let Some(d) = self.docker.as_mut() {
                d.on_timeout(self.poll.registry(), now);
            }
            if let Some(i) = self.intake.as_mut() {
                i.on_timeout(self.poll.registry(), now);
            }
            if let Some(e) = self.ecs.as_mut() {
                e.on_timeout(self.poll.registry(), now);
            }
        }
    }

    /// `Some(success)` when the loop should end.
    fn finished(&self, now: Instant) -> Option<bool> {
        let idle = match &self.sink.output {
            Output::Forward(f) => f.is_idle(),
            Output::DryRun => true,
        };
        let checks_over =
            self.host_timer.next.is_none() && self.process_timer.next.is_none() && self.connection_timer.next.is_none();
        if checks_over && idle {
            return Some(true);
        }
        if self.stop_by.is_some_and(|t| now >= t) {
            if let Output::Forward(f) = &self.sink.output {
                warn!("stopping with {} payload(s) undelivered", f.queued_payloads());
            }
            // A signal-initiated stop is still a clean exit; `--once` reports failure.
            return Some(!self.opts.once);
        }
        None
    }

    fn on_signal(&mut self, now: Instant) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => {
                    info!("SIGHUP: configuration comes from the environment; restart the agent to change it")
                }
                Ok(sig) => {
                    if self.stop_by.is_none() || self.host_timer.next.is_some() {
                        info!("{sig}: flushing pending payloads (up to {}s) and exiting", SHUTDOWN_GRACE.as_secs());
                    }
                    self.host_timer.next = None;
                    self.process_timer.next = None;
                    self.connection_timer.next = None;
                    // Stop taking traces; what was taken is sent with the rest.
                    if let Some(mut i) = self.intake.take() {
                        i.close_all(self.poll.registry());
                    }
                    if let Err(e) = self.flush_traces() {
                        warn!("could not flush pending traces: {e}");
                    }
                    if let Output::Forward(f) = &mut self.sink.output {
                        f.retry_now();
                    }
                    let by = now + SHUTDOWN_GRACE;
                    self.stop_by = Some(self.stop_by.map_or(by, |t| t.min(by)));
                }
                Err(_) => {}
            }
        }
    }

    fn host_check(&mut self, now: Instant) -> io::Result<()> {
        let mono = now.duration_since(self.clock_origin).as_secs_f64();
        let interval = self.cfg.host_check_interval.as_secs();
        let meter = Meter::start();
        let n = self.host.run(mono, unix_now(), &self.hostname, interval, &mut self.series_buf, &mut self.topology_buf);
        self.host_timer.ran(now, self.opts.once);
        debug!("host check: {n} series");
        // In `--once` mode the first run only primes the rates.
        let r = if self.opts.once && self.host_timer.runs == 1 {
            Ok(())
        } else {
            self.sink
                .deliver(Payload::Series, &self.series_buf)
                .and_then(|_| self.sink.deliver(Payload::Intake, &self.topology_buf))
        };
        meter.record(&mut self.host_status, now, n as u64);
        r
    }

    fn process_check(&mut self, now: Instant) -> io::Result<()> {
        let meter = Meter::start();
        self.process_timer.ran(now, self.opts.once);
        let Some(check) = self.process.as_mut() else { return Ok(()) };
        let mono = now.duration_since(self.clock_origin).as_secs_f64();
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let dry = matches!(self.sink.output, Output::DryRun);
        if let (Some(d), Some(e)) = (self.docker.as_mut(), self.ecs.as_ref()) {
            d.meta.apply_ecs(&e.info);
        }
        let sink = &mut self.sink;
        let meta = self.docker.as_ref().map_or(&self.no_metadata, |d| &d.meta);
        let mut result = Ok(());
        check.run(mono, unix_ms, &self.hostname, dry, meta, &mut self.msg_buf, &mut |e| {
            let r = match e {
                Encoded::Collector(b) => sink.deliver(Payload::Collector, b),
                Encoded::Intake(b) => sink.deliver(Payload::ProcessIntake, b),
                Encoded::Connections(b) => sink.deliver(Payload::Connections, b),
            };
            if result.is_ok() {
                result = r;
            }
        });
        // A container Docker has not described yet: ask for the list again soon.
        if let Some(d) = self.docker.as_mut() {
            if check.containers.containers.iter().any(|c| d.meta.get(&c.id).is_none()) {
                d.request_refresh(now);
                if let Some(e) = self.ecs.as_mut() {
                    e.request_refresh(now);
                }
            }
        }
        let s = check.stats();
        meter.record(&mut self.process_status, now, u64::from(s.reported));
        debug!(
            "process check: {} processes, {} reported ({} by usage), {} vanished mid-read",
            s.total, s.reported, s.included_by_usage, check.table.vanished
        );
        result
    }
}

impl App {
    /// Sends the pending traces (one payload, or several when a large request filled some).
    fn flush_traces(&mut self) -> io::Result<()> {
        let Some(t) = self.traces.as_mut() else { return Ok(()) };
        let cpu_start = thread_cpu_ns();
        let mut r = Ok(());
        while let Some(payload) = t.finish_payload(&self.hostname) {
            debug!("traces: sending a payload of {} bytes", payload.len());
            r = r.and(self.sink.deliver(Payload::Traces, payload));
            t.sent();
        }
        t.stats.cpu_ns += thread_cpu_ns().saturating_sub(cpu_start);
        r
    }

    fn connections_check(&mut self, now: Instant) -> io::Result<()> {
        let meter = Meter::start();
        self.connection_timer.ran(now, self.opts.once);
        let (Some(check), Some(procs)) = (self.connections.as_mut(), self.process.as_ref()) else { return Ok(()) };
        let mono = now.duration_since(self.clock_origin).as_secs_f64();
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let dry = matches!(self.sink.output, Output::DryRun);
        let sink = &mut self.sink;
        let mut result = Ok(());
        check.run(mono, unix_ms, &self.hostname, dry, procs, &mut self.msg_buf, &mut |e| {
            let r = match e {
                Encoded::Connections(b) => sink.deliver(Payload::Connections, b),
                Encoded::Intake(b) => sink.deliver(Payload::ProcessIntake, b),
                Encoded::Collector(b) => sink.deliver(Payload::Collector, b),
            };
            if result.is_ok() {
                result = r;
            }
        });
        let (s, src) = (check.selection.stats, check.source_stats());
        meter.record(&mut self.connection_status, now, u64::from(s.reported));
        debug!(
            "connections check: {} sockets in {} namespaces, {} of reported processes, {} reported ({} short-lived), {} fd links read in {} processes, {} owners known",
            s.total, src.namespaces, s.owned_by_reported, s.reported, s.short_lived, src.links_read, src.processes_scanned, check.owners_known()
        );
        result
    }
}

/// What a check's run costs, from its start: this thread's CPU time (one syscall) and, in a
/// counting build, heap allocations. The run's payloads are compressed and queued within it.
struct Meter {
    cpu_ns: u64,
    allocs: Option<crate::alloc_count::Allocs>,
}

impl Meter {
    fn start() -> Meter {
        Meter { cpu_ns: thread_cpu_ns(), allocs: crate::alloc_count::snapshot() }
    }

    /// Notes the run that started at `started` and produced `count` items.
    fn record(self, s: &mut CheckStatus, started: Instant, count: u64) {
        let allocs = crate::alloc_count::snapshot().zip(self.allocs).map(|(now, then)| now.since(then).count);
        let cpu_ms = thread_cpu_ns().saturating_sub(self.cpu_ns) as f64 / 1e6;
        s.runs += 1;
        s.last_run_unix = unix_now();
        s.last_duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        s.last_count = count;
        s.last_cpu_ms = cpu_ms;
        s.total_cpu_ms += cpu_ms;
        s.last_allocations = allocs;
        s.total_allocations = allocs.map(|a| a + s.total_allocations.unwrap_or(0));
    }
}

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// One `O_PATH` descriptor is kept per process: raise the soft limit to the hard one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            debug!("could not raise the open-file limit: {e}");
        }
    }
}

fn print_dry_run(endpoint: &str, payload: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let r = out
        .write_all(b"{\"endpoint\":\"")
        .and_then(|_| out.write_all(endpoint.as_bytes()))
        .and_then(|_| out.write_all(b"\",\"payload\":"))
        .and_then(|_| out.write_all(payload))
        .and_then(|_| out.write_all(b"}\n"))
        .and_then(|_| out.flush());
    match r {
        // A closed stdout (`| head`) ends a dry run; it is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
