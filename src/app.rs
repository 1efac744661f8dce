//! The one `mio` loop: owns all state, reads the clock, and calls into sources, checks,
//! encoders and the outbox. Timers are a handful of deadlines; `poll` sleeps until the earliest.
//! Signals (SIGTERM, SIGINT, SIGHUP) arrive through a signalfd registered with the poll.

use crate::checks::host_metrics;
use crate::config::Config;
use crate::encode::{compress::Zlib, intake, series::SeriesEncoder};
use crate::model::host::HostSample;
use crate::outbox::{Forwarder, RouteId, RouteSpec};
use crate::sources::host::{HostSource, HOST_FILES};
use crate::sources::meta::{resolve_hostname, HostnameSource};
use crate::transport::tls;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SIGNAL: Token = Token(0);
const FIRST_ORIGIN_TOKEN: usize = 16;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// In `--once` mode: the gap between the two samples a rate needs, and how long to try sending.
const ONCE_RATE_GAP: Duration = Duration::from_secs(1);
const ONCE_SEND_LIMIT: Duration = Duration::from_secs(30);
/// Total bytes of encoded payloads held for delivery (issue 7 makes this configurable).
const OUTBOX_BUDGET: usize = 8 << 20;

const SERIES: RouteId = 0;
const INTAKE: RouteId = 1;
const ROUTE_PATHS: [&str; 2] = ["/api/v1/series", "/intake/"];

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

/// The host check's state: its source, two samples (previous and current, swapped each cycle)
/// and the reused encode buffers.
pub struct HostCheck {
    source: HostSource,
    prev: HostSample,
    cur: HostSample,
    reported_problems: u16,
}

impl HostCheck {
    pub fn new(source: HostSource) -> HostCheck {
        HostCheck { source, prev: HostSample::default(), cur: HostSample::default(), reported_problems: 0 }
    }

    /// Takes a sample and encodes the series payload into `series` and the host topology into
    /// `topology`. Allocates nothing once the buffers have grown to size.
    pub fn run(
        &mut self,
        mono_secs: f64,
        unix_secs: u64,
        host: &str,
        interval: u64,
        series: &mut Vec<u8>,
        topology: &mut Vec<u8>,
    ) -> usize {
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.source.collect(&mut self.cur, mono_secs, unix_secs);
        if self.cur.problems != self.reported_problems {
            for (bit, file) in HOST_FILES.iter().enumerate() {
                let now_bad = self.cur.problems & (1 << bit) != 0;
                let was_bad = self.reported_problems & (1 << bit) != 0;
                if now_bad && !was_bad {
                    warn!("host check: could not read or parse {file}; its metrics are skipped until it can");
                } else if was_bad && !now_bad {
                    info!("host check: {file} is readable again");
                }
            }
            self.reported_problems = self.cur.problems;
        }
        let mut enc = SeriesEncoder::begin(series, host, unix_secs, interval);
        host_metrics::emit(&self.prev, &self.cur, &mut enc);
        let n = enc.finish();
        intake::host_topology(topology, host, &self.cur);
        n
    }
}

pub struct App {
    cfg: Config,
    opts: RunOptions,
    hostname: String,
    poll: Poll,
    signals: SignalFd,
    host: HostCheck,
    series_buf: Vec<u8>,
    topology_buf: Vec<u8>,
    zbuf: Vec<u8>,
    zlib: Zlib,
    output: Output,
    clock_origin: Instant,
    next_host_check: Option<Instant>,
    host_checks_done: u32,
    stop_by: Option<Instant>,
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

        let output = match (&cfg.sts_url, opts.dry_run) {
            (Some(base), false) => {
                let tls = if cfg.skip_ssl_validation {
                    warn!("STS_SKIP_SSL_VALIDATION=true: server certificates are NOT verified");
                    tls::client_config(true)
                } else {
                    tls::client_config(false)
                }
                .map_err(|e| io::Error::other(format!("TLS setup: {e}")))?;
                let spec = |name, path| RouteSpec::core_json(name, base, path);
                let routes = vec![spec("series", ROUTE_PATHS[SERIES]), spec("intake", ROUTE_PATHS[INTAKE])];
                let seed = u64::from(std::process::id()) ^ unix_now().rotate_left(17);
                let f =
                    Forwarder::new(routes, cfg.api_key.expose(), Some(tls), OUTBOX_BUDGET, FIRST_ORIGIN_TOKEN, seed)
                        .map_err(io::Error::other)?;
                info!("sending to {base}");
                Output::Forward(f)
            }
            _ => {
                info!("dry run: printing payloads on stdout instead of sending (set STS_STS_URL to send)");
                Output::DryRun
            }
        };

        let now = Instant::now();
        Ok(App {
            cfg,
            opts,
            hostname,
            poll,
            signals,
            host: HostCheck::new(source),
            series_buf: Vec::with_capacity(64 * 1024),
            topology_buf: Vec::with_capacity(4 * 1024),
            zbuf: Vec::with_capacity(16 * 1024),
            zlib: Zlib::default(),
            output,
            clock_origin: now,
            next_host_check: Some(now),
            host_checks_done: 0,
            stop_by: None,
        })
    }

    /// Runs until a signal (exit 0 after flushing) or, with `--once`, until the checks ran and
    /// their payloads were delivered (exit 0) or could not be (exit 1).
    pub fn run(mut self) -> io::Result<bool> {
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            if self.next_host_check.is_some_and(|t| now >= t) {
                self.host_check(now)?;
            }
            if let Output::Forward(f) = &mut self.output {
                f.pump(self.poll.registry(), now);
            }
            if let Some(done) = self.finished(now) {
                if let Output::Forward(f) = &mut self.output {
                    f.close_all(self.poll.registry());
                }
                return Ok(done);
            }
            let wake = [self.next_host_check, self.forward_deadline(), self.stop_by].into_iter().flatten().min();
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
                    t => {
                        if let Output::Forward(f) = &mut self.output {
                            f.on_event(self.poll.registry(), t, now);
                        }
                    }
                }
            }
            if let Output::Forward(f) = &mut self.output {
                f.on_timeout(self.poll.registry(), now);
            }
        }
    }

    fn forward_deadline(&self) -> Option<Instant> {
        match &self.output {
            Output::Forward(f) => f.deadline(),
            Output::DryRun => None,
        }
    }

    /// `Some(success)` when the loop should end.
    fn finished(&self, now: Instant) -> Option<bool> {
        let idle = match &self.output {
            Output::Forward(f) => f.is_idle(),
            Output::DryRun => true,
        };
        let checks_over = self.next_host_check.is_none();
        if checks_over && idle {
            return Some(true);
        }
        if self.stop_by.is_some_and(|t| now >= t) {
            if let Output::Forward(f) = &self.output {
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
                    if self.stop_by.is_none() || self.next_host_check.is_some() {
                        info!("{sig}: flushing pending payloads (up to {}s) and exiting", SHUTDOWN_GRACE.as_secs());
                    }
                    self.next_host_check = None;
                    if let Output::Forward(f) = &mut self.output {
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
        let n = self.host.run(mono, unix_now(), &self.hostname, interval, &mut self.series_buf, &mut self.topology_buf);
        self.host_checks_done += 1;
        debug!("host check: {n} series");
        self.next_host_check = if self.opts.once {
            // The first run primes the rates; the second (one second later) reports them.
            if self.host_checks_done == 1 {
                Some(now + ONCE_RATE_GAP)
            } else {
                self.stop_by = Some(now + ONCE_SEND_LIMIT);
                None
            }
        } else {
            Some(now + self.cfg.host_check_interval)
        };
        if self.opts.once && self.host_checks_done == 1 {
            return Ok(());
        }
        self.deliver(SERIES, true)?;
        self.deliver(INTAKE, false)
    }

    fn deliver(&mut self, route: RouteId, series: bool) -> io::Result<()> {
        let json = if series { &self.series_buf } else { &self.topology_buf };
        match &mut self.output {
            Output::DryRun => print_dry_run(ROUTE_PATHS[route], json),
            Output::Forward(f) => {
                self.zlib.compress(json, &mut self.zbuf);
                f.enqueue(route, &self.zbuf);
                Ok(())
            }
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
