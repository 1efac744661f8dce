//! Signals and the end of a run. SIGTERM, SIGINT and SIGHUP arrive through a signalfd registered
//! with the poll (the `Signals` source); a stop ends the checks, the trace intake and the Docker
//! event stream, flushes what is pending (traces, and the events kept for the next docker
//! pass), and gives the outbox `SHUTDOWN_GRACE` to deliver it (the `Shutdown` source's
//! deadline). `--once` ends when its checks ran and their payloads were delivered, or at
//! `ONCE_SEND_LIMIT`.

use super::source::Source;
use super::App;
use mio::unix::SourceFd;
use mio::{Interest, Registry};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// In `--once` mode: how long to try sending after the checks ran.
const ONCE_SEND_LIMIT: Duration = Duration::from_secs(30);

/// Blocks the stop signals for this thread and registers a signalfd for them.
pub(super) fn open(registry: &Registry) -> io::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().map_err(io::Error::from)?;
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io::Error::from)?;
    registry.register(&mut SourceFd(&signals.as_raw_fd()), Source::Signals.token(), Interest::READABLE)?;
    Ok(signals)
}

impl App {
    pub(super) fn on_signal(&mut self, now: Instant) {
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
                    self.docker_timer.next = None;
                    // Stop taking traces; what was taken is sent with the rest.
                    if let Some(mut i) = self.intake.take() {
                        i.close_all(self.poll.registry());
                    }
                    if let Some(mut i) = self.otlp_intake.take() {
                        i.close_all(self.poll.registry());
                    }
                    if let Err(e) = self.flush_traces() {
                        warn!("could not flush pending traces: {e}");
                    }
                    // The events kept for the next docker pass go now (that pass will not come),
                    // and no more are read.
                    if let Err(e) = self.docker_events_pass(now) {
                        warn!("could not flush pending docker events: {e}");
                    }
                    if let Some(mut s) = self.docker_events.take() {
                        s.close(self.poll.registry());
                    }
                    // DogStatsD's buckets, the open one too, and its pending events.
                    if let Err(e) = self.flush_dogstatsd_at_stop(now) {
                        warn!("could not flush DogStatsD: {e}");
                    }
                    if let Some(f) = self.sink.forwarder_mut() {
                        f.retry_now();
                    }
                    let by = now + SHUTDOWN_GRACE;
                    self.stop_by = Some(self.stop_by.map_or(by, |t| t.min(by)));
                }
                Err(_) => {}
            }
        }
    }

    /// `--once`: when every check has run, sending has `ONCE_SEND_LIMIT` left.
    pub(super) fn arm_once_limit(&mut self, now: Instant) {
        if self.opts.once && self.stop_by.is_none() && self.checks_over() {
            self.stop_by = Some(now + ONCE_SEND_LIMIT);
        }
    }

    fn checks_over(&self) -> bool {
        self.host_timer.next.is_none()
            && self.process_timer.next.is_none()
            && self.connection_timer.next.is_none()
            && self.docker_timer.next.is_none()
            && self.events_pass.is_none()
    }

    /// `Some(success)` when the loop should end (and then closes the outbox's connections).
    pub(super) fn finished(&mut self, now: Instant) -> Option<bool> {
        let idle = self.sink.forwarder().is_none_or(|f| f.is_idle());
        // DogStatsD is gone once its last flush was handed over (a chunk a turn).
        let done = if self.checks_over() && idle && self.dogstatsd.is_none() {
            true
        } else if self.stop_by.is_some_and(|t| now >= t) {
            if let Some(f) = self.sink.forwarder() {
                warn!("stopping with {} payload(s) undelivered", f.queued_payloads());
            }
            if self.dogstatsd.is_some() {
                warn!(
                    "dogstatsd: stopping before its last flush was written: the series of the contexts left are lost"
                );
            }
            // A signal-initiated stop is still a clean exit; `--once` reports failure.
            !self.opts.once
        } else {
            return None;
        };
        let registry = self.poll.registry();
        self.features.close(registry);
        if let Some(f) = self.sink.forwarder_mut() {
            f.close_all(registry);
            // The last line accounts for every payload of the run.
            let (enq, del, drop) = f.totals();
            info!(
                "exiting: {enq} payloads enqueued, {del} delivered, {drop} dropped, {} undelivered",
                f.queued_payloads()
            );
        }
        if self.opts.once {
            self.once_summary();
        }
        Some(done)
    }
}
