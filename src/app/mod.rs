//! The one `mio` loop: owns all state, reads the clock, and calls into sources, checks,
//! encoders and the outbox. Every event source follows one contract (`source.rs`): it owns a
//! token range, handles its events, and reports its next deadline; `poll` sleeps until the
//! earliest deadline of them all.
//!
//! - `source.rs`: the list of sources, their token ranges, and the dispatch to each;
//! - `timers.rs`: the periodic checks (host, processes, connections, the docker pass);
//! - `docker.rs`: the docker check's pass (`docker.*` series, container counts and topology);
//! - `signals.rs`: SIGTERM/SIGINT/SIGHUP, and how a run ends;
//! - `intake.rs`: the trace intake, `/status`, and the trace flush;
//! - `dogstatsd.rs`: DogStatsD's listeners, aggregator and flush;
//! - `sink.rs`: payloads to the outbox (or stdout in a dry run);
//! - `features.rs`: the receivers' `/features` (what the process agent's payloads follow);
//! - `self_telemetry.rs`: the agent's own series in the host check's flush, and its startup event.

use crate::checks::docker_events::EventBundler;
use crate::config::Config;
use crate::sources::docker::{DockerSource, Metadata};
use crate::sources::docker_events::DockerEventStream;
use crate::sources::ecs::EcsSource;
use crate::sources::host::HostSource;
use crate::sources::meta::{resolve_hostname, HostnameSource};
use crate::sources::trace_intake::TraceIntake;
use mio::{Events, Poll};
use nix::sys::signalfd::SignalFd;
use sink::Sink;
use source::Source;
use status::CheckStatus;
use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use timers::Timer;

mod connections;
mod docker;
mod docker_events;
mod dogstatsd;
mod features;
mod health;
mod host;
mod intake;
mod otlp;
mod process;
mod self_telemetry;
mod signals;
mod sink;
mod source;
mod status;
mod summary;
mod timers;
mod traces;
pub use connections::ConnectionsCheck;
pub use docker::{DockerCheck, PassCounts};
pub use dogstatsd::{DogStatsdStatus, ListenerReport, Listening};
pub use host::HostCheck;
pub use process::{zstd_context, Encoded, ProcessCheck, Zstd};
pub use traces::{request_limit, TraceAgent, TraceStats, COST_CAP, MAX_PAYLOAD};

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub once: bool,
    pub dry_run: bool,
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
    /// The OTLP/HTTP receiver's listener (`STS_OTLP_ENABLED`), served by the same trace agent.
    otlp_intake: Option<TraceIntake>,
    traces: Option<TraceAgent>,
    dogstatsd: Option<dogstatsd::DogStatsd>,
    /// DogStatsD's last counts once it stopped (for `/status` during the shutdown grace).
    dogstatsd_at_stop: Option<DogStatsdStatus>,
    /// How DogStatsD's sockets fared at start (`None`: DogStatsD is off).
    dogstatsd_listeners: Option<ListenerReport>,
    /// `/live` and `/ready` on `STS_HEALTH_PORT` (off by default).
    health_listener: Option<TraceIntake>,
    docker: Option<DockerSource>,
    ecs: Option<EcsSource>,
    /// Docker's container event stream, and the events kept for the next docker pass.
    docker_events: Option<DockerEventStream>,
    event_bundler: EventBundler,
    /// The next docker pass, when events are pending.
    events_pass: Option<Instant>,
    events_buf: Vec<u8>,
    /// The docker check's pass (with Docker, which needs the process check's containers).
    docker_check: Option<DockerCheck>,
    /// Used when Docker is absent or disabled.
    no_metadata: Metadata,
    series_buf: Vec<u8>,
    topology_buf: Vec<u8>,
    msg_buf: Vec<u8>,
    /// The process and connections checks' zstd context (one for both: see `process::Zstd`).
    zstd: Zstd,
    sink: Sink,
    clock_origin: Instant,
    host_timer: Timer,
    process_timer: Timer,
    /// When code and read-only data were last let go (`sys::resident`; see `App::release_code`).
    code_released: Option<Instant>,
    connection_timer: Timer,
    docker_timer: Timer,
    host_status: CheckStatus,
    process_status: CheckStatus,
    connection_status: CheckStatus,
    docker_status: CheckStatus,
    stop_by: Option<Instant>,
    /// The receivers' `/features` (asked in the loop) or `STS_FEATURES`.
    features: features::FeatureDiscovery,
    /// The run's first series flush went out with `stackstate.agent.started` and the startup event.
    started_sent: bool,
    /// Sources found keeping a past deadline (bit `i`: `Source::ALL[i]`), each reported once.
    dishonest: u32,
}

impl App {
    pub fn new(cfg: Config, opts: RunOptions) -> io::Result<App> {
        let poll = Poll::new()?;
        let signals = signals::open(poll.registry())?;

        let (hostname, source) = resolve_hostname(cfg.hostname.as_deref(), &cfg.ec2_metadata_url);
        let how = match source {
            HostnameSource::Configured => "from STS_HOSTNAME",
            HostnameSource::Ec2InstanceId => "the EC2 instance id",
            HostnameSource::Os => "the OS host name",
        };
        info!("sts-agent {} starting; hostname {hostname:?} ({how})", env!("CARGO_PKG_VERSION"));

        let source = HostSource::open(&cfg.host_proc)
            .map_err(|e| io::Error::new(e.kind(), format!("HOST_PROC={}: {e}", cfg.host_proc.display())))?;

        let process = timers::open_process_check(&cfg)?;
        let connections = timers::open_connections_check(&cfg);
        let sink = Sink::new(&cfg, opts, &hostname, process.is_some(), connections.is_some())?;
        let (intake, mut traces) = intake::open(&cfg, opts, poll.registry(), sink.dry_run()).unzip();
        let otlp_intake = otlp::open(&cfg, poll.registry(), traces.as_mut());
        let (dogstatsd, dogstatsd_listeners) = dogstatsd::open(&cfg, opts, poll.registry(), &hostname);
        let health_listener = health::open(cfg.health_port, cfg.apm_enabled, opts.once, poll.registry())?;
        let now = Instant::now();
        let features = match (sink.dry_run(), &cfg.features) {
            (false, _) | (true, crate::config::FeaturesSetting::Fixed(_)) => features::FeatureDiscovery::new(
                &cfg.features,
                cfg.sts_url.as_ref().filter(|_| !sink.dry_run()),
                cfg.process_agent_url.as_ref().filter(|_| process.is_some() && !sink.dry_run()),
                cfg.api_key.expose(),
                &hostname,
                sink.tls.clone(),
                Source::Features.tokens(),
                now,
            ),
            (true, _) => features::FeatureDiscovery::none(),
        };
        let docker =
            process.as_ref().map(|_| DockerSource::new(cfg.docker_socket.clone(), Source::Docker.token(), now));
        let ecs = match &process {
            Some(_) => {
                Some(EcsSource::new(cfg.ecs_agent_url.clone(), Source::Ecs.token(), now).map_err(io::Error::other)?)
            }
            None => None,
        };
        // Not with `--once`: its run ends before a pass would.
        let docker_events = match (&docker, cfg.docker_events_enabled && !opts.once) {
            (Some(_), true) => {
                Some(DockerEventStream::new(cfg.docker_socket.clone(), Source::DockerEvents.token(), now))
            }
            _ => None,
        };
        let host_timer = Timer::new(Some(now), cfg.host_check_interval);
        let process_timer = Timer::new(process.as_ref().map(|_| now), cfg.process_check_interval);
        let connection_timer = Timer::new(connections.as_ref().map(|_| now), cfg.connection_check_interval);
        let docker_check = docker.as_ref().map(|_| DockerCheck::new(&cfg.host_proc));
        let docker_timer = Timer::new(docker_check.as_ref().map(|_| now), cfg.docker_check_interval);
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
            otlp_intake,
            traces,
            dogstatsd,
            dogstatsd_at_stop: None,
            dogstatsd_listeners,
            health_listener,
            docker,
            ecs,
            docker_events,
            event_bundler: EventBundler::default(),
            events_pass: None,
            events_buf: Vec::with_capacity(4 * 1024),
            docker_check,
            no_metadata: Metadata::default(),
            series_buf: Vec::with_capacity(64 * 1024),
            topology_buf: Vec::with_capacity(4 * 1024),
            msg_buf: Vec::with_capacity(64 * 1024),
            zstd: zstd_context()?,
            sink,
            clock_origin: now,
            host_timer,
            process_timer,
            code_released: None,
            connection_timer,
            docker_timer,
            host_status: CheckStatus::default(),
            process_status: CheckStatus::default(),
            connection_status: CheckStatus::default(),
            docker_status: CheckStatus::default(),
            stop_by: None,
            features,
            started_sent: false,
            dishonest: 0,
        })
    }

    /// Runs until a signal (exit 0 after flushing) or, with `--once`, until the checks ran and
    /// their payloads were delivered (exit 0) or could not be (exit 1).
    pub fn run(mut self) -> io::Result<bool> {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            self.run_due(now)?;
            self.arm_once_limit(now);
            // Start sending what this turn queued.
            self.sink.pump(self.poll.registry(), now);
            if let Some(done) = self.finished(now) {
                return Ok(done);
            }
            self.check_honest(now);
            let timeout = self.next_wake().map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                // Tokens nobody owns (a source already closed) are ignored.
                if let Some(s) = Source::of(ev.token()) {
                    self.on_event(s, ev.token(), now)?;
                }
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
