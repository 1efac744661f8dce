//! The periodic checks (host, processes with containers, the docker pass, connections) as sources of the loop:
//! each has a schedule whose next run is its deadline. Also what the checks need when the app
//! starts, and what a run costs (for `/status`).

use super::connections::ConnectionsCheck;
use super::process::{Encoded, ProcessCheck};
use super::sink::Payload;
use super::status::CheckStatus;
use super::{unix_now, App};
use crate::config::{Config, ProcessAgentMode};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often code and read-only data are let go after the first runs (see `App::release_code`).
const CODE_RELEASE_PERIOD: Duration = Duration::from_secs(3600);
/// When, in seconds after start, code and read-only data are let go once more (after the first
/// three process check runs, before the hourly passes; see `App::release_code`).
const CODE_RELEASE_AT: [u64; 4] = [60, 120, 300, 600];
/// In `--once` mode: the gap between the two samples a rate needs.
const ONCE_RATE_GAP: Duration = Duration::from_secs(1);
/// How long before a docker pass Docker is asked for its list.
const LIST_AHEAD: Duration = Duration::from_secs(1);
/// How often Docker's list is refreshed while its event stream is open (`sources::docker`).
const LIST_EVERY_WITH_EVENTS: Duration = crate::sources::docker::REFRESH_EVERY;
/// In `--once` mode: how long the reporting process check may wait for Docker metadata.
const ONCE_METADATA_WAIT: Duration = Duration::from_secs(4);

/// A periodic check's schedule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timer {
    pub(super) next: Option<Instant>,
    pub(super) runs: u32,
    interval: Duration,
    /// When it last ran.
    last: Option<Instant>,
    /// The time a run was due at, when it was put off to a later `next` (the docker pass, to the
    /// process check's next cycle): the run after it is due an interval after this, so putting
    /// runs off does not stretch the interval.
    put_off_from: Option<Instant>,
}

impl Timer {
    /// `(last run, interval)`, for `/health`.
    pub(super) fn schedule(&self) -> (Option<Instant>, Duration) {
        (self.last, self.interval)
    }

    pub(super) fn new(start: Option<Instant>, interval: Duration) -> Timer {
        Timer { next: start, runs: 0, interval, last: None, put_off_from: None }
    }

    /// After a run: the next one, or none (`--once` runs each check twice, one second apart,
    /// so rates have two samples).
    fn ran(&mut self, now: Instant, once: bool) {
        self.runs += 1;
        self.last = Some(now);
        // An interval after it was due, and at least half one after this run (no catching up).
        let due = self.put_off_from.take().unwrap_or(now);
        self.next = match (once, self.runs) {
            (true, 1) => Some(now + ONCE_RATE_GAP),
            (true, _) => None,
            (false, _) => Some((due + self.interval).max(now + self.interval / 2)),
        };
    }
}

/// When the docker pass, due at `due` (it is `now`), should run instead: at the process check's
/// next cycle `process_next`, so that cycle reads the pass's figures with its own and no cgroup
/// file is read twice (see `DockerCheck`). Only when the process check runs at least as often as
/// the pass: then every pass lands on a process cycle, at most one process interval late, and the
/// next is still due an interval after `due` (passes are 30 or 60 s apart at the default 30 s and
/// 40 s, 40 s on average). When the process check runs less often, most passes could not share a
/// cycle anyway, and waiting would make their intervals uneven (rates are per real interval, but
/// a gauge's spacing would swing): they read alone. Not when the process check ran in this very
/// turn (the pass shares that cycle's reads now). `None`: run now.
fn on_process_grid(
    now: Instant,
    due: Instant,
    process: &Timer,
    docker_interval: Duration,
    once: bool,
) -> Option<Instant> {
    let p = process.next?;
    if once || process.last == Some(now) || p <= now {
        return None;
    }
    (process.interval <= docker_interval && p.saturating_duration_since(due) <= process.interval).then_some(p)
}

/// The process check, or none when the process agent is disabled.
pub(super) fn open_process_check(cfg: &Config) -> io::Result<Option<ProcessCheck>> {
    if cfg.process_agent == ProcessAgentMode::Disabled {
        info!("STS_PROCESS_AGENT_ENABLED=disabled: no process check");
        return Ok(None);
    }
    raise_fd_limit();
    let containers_only = cfg.process_agent == ProcessAgentMode::ContainersOnly;
    let check =
        ProcessCheck::new(cfg, containers_only).map_err(|e| io::Error::new(e.kind(), format!("process check: {e}")))?;
    Ok(Some(check))
}

/// The connections check: reported for reported processes only, so it needs the process check.
pub(super) fn open_connections_check(cfg: &Config) -> Option<ConnectionsCheck> {
    match (cfg.network_tracing_enabled, cfg.process_agent) {
        (true, ProcessAgentMode::Enabled) => match ConnectionsCheck::new(
            cfg.max_connections,
            cfg.relation_short_lived_secs,
            cfg.connection_check_interval.as_secs(),
        ) {
            Ok(mut c) => {
                c.report_health = cfg.report_check_health_state;
                if let Some(why) = c.unavailable() {
                    // One logged reason; the check's health says it on every run.
                    warn!("connections check: {why}; its health is DEVIATING, every other check goes on");
                } else if cfg.protocol_inspection_enabled {
                    c.enable_protocol_inspection(super::source::Source::HttpCapture.tokens(), cfg.max_connections);
                } else {
                    info!("STS_PROTOCOL_INSPECTION_ENABLED=false: no HTTP telemetry on connections");
                }
                Some(c)
            }
            Err(e) => {
                warn!("connections check disabled: {e}");
                None
            }
        },
        (false, _) => {
            info!("STS_NETWORK_TRACING_ENABLED=false: no connections check");
            None
        }
        (true, _) => None,
    }
}

impl App {
    pub(super) fn host_check(&mut self, now: Instant) -> io::Result<()> {
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
            self.append_self_telemetry(now);
            let r = self
                .sink
                .deliver(Payload::Series, &self.series_buf)
                .and_then(|_| self.sink.deliver(Payload::Intake, &self.topology_buf));
            // The first flush of the run: the core agent's "Agent Startup" event too.
            if !std::mem::replace(&mut self.started_sent, true) && !self.hostname.is_empty() {
                super::self_telemetry::startup_event(&mut self.topology_buf, &self.hostname, unix_now());
                r.and_then(|_| self.sink.deliver(Payload::Intake, &self.topology_buf))
            } else {
                r
            }
        };
        meter.record(&mut self.host_status, now, n as u64);
        r
    }

    /// The process check, except in `--once` mode while a Docker or ECS look-up is in flight
    /// (it reports right away, so give the look-up a moment to land).
    pub(super) fn process_check_or_wait(&mut self, now: Instant) -> io::Result<()> {
        // The receiver's features decide what the reporting run sends: wait for them too.
        let wait_for_docker = self.opts.once
            && self.process_timer.runs == 1
            && now < self.clock_origin + ONCE_METADATA_WAIT
            && (self.docker.as_ref().is_some_and(|d| d.refreshing(now))
                || self.ecs.as_ref().is_some_and(|e| e.refreshing(now))
                || self.features.process_agent_pending());
        if wait_for_docker {
            self.process_timer.next = Some(now + Duration::from_millis(50));
            return Ok(());
        }
        self.process_check(now)
    }

    /// Lets go of the pages of code and read-only data that only start-up or a first run
    /// touched (`sys::resident`): before the process check's first three runs (start-up, then
    /// the checks' priming runs, then their second runs, which fill the tables), then once at
    /// each of [`CODE_RELEASE_AT`] (what the other checks' and passes' first runs touch at their
    /// longer intervals), then hourly (code a rare event ran). A pass takes about 0.35 ms and
    /// the next cycle maps its code again (a few dozen minor faults): too much for every cycle.
    /// Without it the glibc build's peak RSS held about 1.5 MiB more of its binary and of libc.
    fn release_code(&mut self, now: Instant) {
        let due = match self.code_released {
            _ if self.process_timer.runs < 3 => true,
            None => true,
            Some(last) => {
                let next = CODE_RELEASE_AT
                    .iter()
                    .map(|s| self.clock_origin + Duration::from_secs(*s))
                    .find(|t| *t > last)
                    .unwrap_or(last + CODE_RELEASE_PERIOD);
                now >= next
            }
        };
        if !due {
            return;
        }
        self.code_released = Some(now);
        let t0 = Instant::now();
        match crate::sys::resident::release_file_pages() {
            Ok(r) => match r.refused {
                Some(why) => debug!("code and read-only data kept: {why:?}"),
                None => debug!(
                    "let go of {} KiB of code and read-only data in {} mappings ({} µs)",
                    r.kib,
                    r.mappings,
                    t0.elapsed().as_micros()
                ),
            },
            Err(e) => debug!("could not let go of code and read-only data: /proc/self: {e}"),
        }
    }

    fn process_check(&mut self, now: Instant) -> io::Result<()> {
        self.release_code(now);
        let meter = Meter::start();
        self.process_timer.ran(now, self.opts.once);
        let Some(check) = self.process.as_mut() else { return Ok(()) };
        let mono = now.duration_since(self.clock_origin).as_secs_f64();
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let dry = self.sink.dry_run();
        if let (Some(d), Some(e)) = (self.docker.as_mut(), self.ecs.as_ref()) {
            d.meta.apply_ecs(&e.info);
        }
        // The docker pass runs right after this, in the same turn: read its figures now too.
        check.want_docker_samples(self.docker_timer.next.is_some_and(|t| t <= now));
        check.features = self.features.process_agent();
        let sink = &mut self.sink;
        let meta = self.docker.as_ref().map_or(&self.no_metadata, |d| &d.meta);
        let mut result = Ok(());
        check.run(mono, unix_ms, &self.hostname, dry, meta, &mut self.msg_buf, &mut self.zstd, &mut |e| {
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
        // Without the connections check (which trims after its own second run), the process
        // check's second run has grown the process table and sent its first payloads: what the
        // start-up and that growth freed inside the heap goes back once.
        if self.connections.is_none() && self.process_timer.runs == 2 {
            crate::sys::malloc::trim();
        }
        let s = check.stats();
        meter.record(&mut self.process_status, now, u64::from(s.reported));
        debug!(
            "process check: {} processes, {} reported ({} by usage), {} vanished mid-read",
            s.total, s.reported, s.included_by_usage, check.table.vanished
        );
        result
    }

    /// The docker pass, once the process check has found the containers and, in `--once` mode,
    /// not while the first Docker or ECS look-up is in flight (as for the process check).
    pub(super) fn docker_pass_or_wait(&mut self, now: Instant) -> io::Result<()> {
        let metadata_pending = self.opts.once
            && self.docker_timer.runs == 0
            && now < self.clock_origin + ONCE_METADATA_WAIT
            && (self.docker.as_ref().is_some_and(|d| d.refreshing(now))
                || self.ecs.as_ref().is_some_and(|e| e.refreshing(now)));
        if self.process_timer.runs == 0 || metadata_pending {
            self.docker_timer.next = Some(now + Duration::from_millis(50));
            return Ok(());
        }
        let due = self.docker_timer.put_off_from.or(self.docker_timer.next).unwrap_or(now);
        let interval = self.cfg.docker_check_interval;
        if let Some(at) = on_process_grid(now, due, &self.process_timer, interval, self.opts.once) {
            self.docker_timer.put_off_from = Some(due);
            self.docker_timer.next = Some(at);
            return Ok(());
        }
        self.docker_pass(now)
    }

    fn docker_pass(&mut self, now: Instant) -> io::Result<()> {
        let meter = Meter::start();
        self.docker_timer.ran(now, self.opts.once);
        let (Some(pass), Some(process), Some(docker)) =
            (self.docker_check.as_mut(), self.process.as_mut(), self.docker.as_mut())
        else {
            return Ok(());
        };
        if let Some(e) = self.ecs.as_ref() {
            docker.meta.apply_ecs(&e.info);
        }
        let mono = now.duration_since(self.clock_origin).as_secs_f64();
        // While Docker's event stream is open, every change asks for a list at once
        // (`on_docker_events`), and the list is also refreshed every minute: it is as current as
        // the stream, and the pass asks for none of its own (a list is parsed into owned
        // metadata: thousands of allocations for 50 containers). Without the stream, the pass
        // asks for one before it runs. A list older than two of those periods (Docker answers no
        // more, or slowly) is not current: see `DockerCheck::run`.
        let events_live = self.docker_events.as_ref().is_some_and(|s| s.stats.connected);
        let period = if events_live { LIST_EVERY_WITH_EVENTS } else { self.cfg.docker_check_interval };
        let list_current = docker.meta.current(now, 2 * period.max(self.cfg.docker_check_interval));
        let counts = pass.run(
            process,
            &docker.meta,
            list_current,
            mono,
            unix_now(),
            &self.hostname,
            &mut self.series_buf,
            &mut self.topology_buf,
        );
        // A fresh list for the next pass: states and names at most a second or so old then
        // (when it will run: on the process check's cycle after it is due, if it waits for one).
        let after_next = self.process_timer.next.map(|p| {
            let (period, due) = (self.cfg.process_check_interval, self.docker_timer.next.unwrap_or(now));
            let cycles = due.saturating_duration_since(p).as_secs_f64() / period.as_secs_f64().max(1e-3);
            Timer { next: Some(p + period.mul_f64(cycles.ceil())), ..self.process_timer }
        });
        let expected = self.docker_timer.next.map(|due| {
            let grid = after_next.as_ref().and_then(|p| {
                let due_then = due.max(now + Duration::from_millis(1));
                on_process_grid(due_then, due, p, self.cfg.docker_check_interval, self.opts.once)
            });
            grid.unwrap_or(due)
        });
        if let Some(next) = expected.filter(|_| !events_live) {
            docker.refresh_by(next.checked_sub(LIST_AHEAD).unwrap_or(next).max(now));
        }
        debug!(
            "docker pass: {} containers measured ({} from the process check's reads), {} series, {} topology components",
            counts.containers_measured, counts.from_process_reads, counts.series, counts.components
        );
        // In `--once` mode the first pass only primes the rates.
        // Nothing measured and no counts (Docker away): no empty body either.
        let r = if (self.opts.once && self.docker_timer.runs == 1) || counts.series == 0 {
            Ok(())
        } else {
            let r = self.sink.deliver(Payload::Series, &self.series_buf);
            if counts.components > 0 {
                r.and_then(|_| self.sink.deliver(Payload::Intake, &self.topology_buf))
            } else {
                r
            }
        };
        meter.record(&mut self.docker_status, now, counts.series as u64);
        r
    }

    pub(super) fn connections_check(&mut self, now: Instant) -> io::Result<()> {
        let meter = Meter::start();
        self.connection_timer.ran(now, self.opts.once);
        let (Some(check), Some(procs)) = (self.connections.as_mut(), self.process.as_ref()) else { return Ok(()) };
        let mono = now.duration_since(self.clock_origin).as_secs_f64();
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let dry = self.sink.dry_run();
        check.features = self.features.process_agent();
        let sink = &mut self.sink;
        let mut result = Ok(());
        check.run(mono, unix_ms, &self.hostname, dry, procs, &mut self.msg_buf, &mut self.zstd, &mut |e| {
            let r = match e {
                Encoded::Connections(b) => sink.deliver(Payload::Connections, b),
                Encoded::Intake(b) => sink.deliver(Payload::ProcessIntake, b),
                Encoded::Collector(b) => sink.deliver(Payload::Collector, b),
            };
            if result.is_ok() {
                result = r;
            }
        });
        // Capture rings of namespaces met this run: the loop watches them from now on.
        let registry = self.poll.registry();
        check.register_captures(|token, fd| {
            let raw = rustix::fd::AsRawFd::as_raw_fd(&fd);
            match registry.register(&mut mio::unix::SourceFd(&raw), mio::Token(token), mio::Interest::READABLE) {
                Ok(()) => true,
                Err(e) => {
                    warn!("connections: cannot watch an HTTP capture ring: {e}");
                    false
                }
            }
        });
        // In `--once` mode the second sample is a gap after this one ends, not after it began:
        // a first run that opened many namespaces (each capture ring waits for an RCU grace
        // period) would otherwise leave the two dumps a fraction of the gap apart.
        if self.opts.once && self.connection_timer.runs == 1 {
            self.connection_timer.next = Some(Instant::now() + ONCE_RATE_GAP);
        }
        // The second run has grown the process and connection tables and sent the first payloads:
        // what the start-up and those growths freed inside the heap goes back once.
        if self.connection_timer.runs == 2 {
            crate::sys::malloc::trim();
        }
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

/// This thread's CPU time so far.
pub(super) fn thread_cpu_ns() -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The default intervals (process 30 s, pass 40 s): every pass on a process cycle, on average
    /// still every 40 s; none waits when the process check runs less often than the pass.
    #[test]
    fn the_docker_pass_lands_on_process_cycles() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let (p_int, d_int) = (Duration::from_secs(30), Duration::from_secs(40));
        let mut process = Timer::new(Some(t0), p_int);
        let mut docker = Timer::new(Some(t0), d_int);
        let mut shared = 0;
        let mut runs = Vec::new();
        // A loop turn every second: the process check first, then the pass (as `Source::ALL`).
        for n in 0..=1200 {
            let now = s(n);
            if process.next.is_some_and(|t| t <= now) {
                process.ran(now, false);
            }
            if docker.next.is_some_and(|t| t <= now) {
                let due = docker.put_off_from.or(docker.next).unwrap();
                match on_process_grid(now, due, &process, d_int, false) {
                    Some(at) => (docker.put_off_from, docker.next) = (Some(due), Some(at)),
                    None => {
                        shared += usize::from(process.last == Some(now));
                        docker.ran(now, false);
                        runs.push(n);
                    }
                }
            }
        }
        assert_eq!(shared, runs.len(), "every pass on a process cycle: {runs:?}");
        assert!(runs.windows(2).all(|w| w[1] - w[0] >= 20 && w[1] - w[0] <= 60), "{runs:?}");
        // 1200 s at 40 s: 31 passes (0, then about every 40 s on average).
        assert!((29..=32).contains(&runs.len()), "{} passes: {runs:?}", runs.len());
        // Process every 30 s, pass every 15 s: no pass waits (their spacing stays even).
        let process = Timer { next: Some(s(30)), last: Some(s(0)), ..Timer::new(None, p_int) };
        let d15 = Duration::from_secs(15);
        assert_eq!(on_process_grid(s(15), s(15), &process, d15, false), None, "15 s early: alone");
        assert_eq!(on_process_grid(s(29), s(29), &process, d15, false), None);
        assert_eq!(on_process_grid(s(29), s(29), &process, d_int, false), Some(s(30)));
        // The process check ran this turn: now, from its reads; `--once`: never put off.
        let ran = Timer { last: Some(s(30)), next: Some(s(60)), ..process };
        assert_eq!(on_process_grid(s(30), s(30), &ran, d_int, false), None);
        assert_eq!(on_process_grid(s(25), s(25), &process, d_int, true), None);
    }
}
