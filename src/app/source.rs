//! The loop contract. Every event source of the loop is one [`Source`]: it owns a range of
//! tokens and registers only inside it, handles readiness of those tokens
//! ([`App::on_event`]), says when it next needs to run ([`App::deadline`]) and does its timed
//! work then ([`App::on_deadline`]). The loop sleeps until the earliest deadline of
//! [`Source::ALL`] and dispatches each event to the source whose range holds its token.
//!
//! A deadline is honest: one in the past means "now", so a source must move it (or drop it)
//! when it runs, and must not keep a past deadline while it waits on I/O (the loop would spin).
//!
//! Adding a source: a line in the `sources!` list below (its name and token range), and an arm
//! in each of the three `match`es; the compiler rejects a missing arm, and the list is the only
//! place the loop learns about sources, so none can be left out of the poll timeout.

use super::App;
use mio::Token;
use std::io;
use std::ops::Range;
use std::time::Instant;

macro_rules! sources {
    ($($(#[$doc:meta])* $name:ident => $tokens:expr,)*) => {
        /// Every event source of the loop, in the order their due deadlines run (the checks
        /// first: the process check may ask Docker and ECS for a look-up now).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Source {
            $($(#[$doc])* $name,)*
        }

        impl Source {
            pub(super) const ALL: &'static [Source] = &[$(Source::$name,)*];

            /// The tokens this source registers with; empty for timers.
            pub(super) const fn tokens(self) -> Range<usize> {
                match self {
                    $(Source::$name => $tokens,)*
                }
            }
        }
    };
}

sources! {
    /// The periodic host check.
    HostCheck => 0..0,
    /// The periodic process check (with containers).
    ProcessCheck => 0..0,
    /// The docker check's pass (after the process check, whose containers it measures).
    DockerCheck => 0..0,
    /// The periodic connections check (after the process check, whose table it uses).
    ConnectionsCheck => 0..0,
    /// SIGTERM, SIGINT and SIGHUP through a signalfd.
    Signals => 0..1,
    /// Container metadata from the Docker Engine API.
    Docker => 4..8,
    /// Task metadata from the ECS agent.
    Ecs => 8..12,
    /// Docker's container event stream (one connection).
    DockerEvents => 12..13,
    /// The receivers' `/features`: the core probe's client, then the process agent's.
    Features => 13..15,
    /// The docker pass's events to `/intake/`, when some are pending.
    DockerEventsPass => 0..0,
    /// The outbox's HTTP clients, one token per origin.
    Forwarder => 16..1024,
    /// The trace intake's listeners and connections.
    TraceIntake => (1 << 20)..(1 << 21),
    /// The HTTP capture rings, one per network namespace (the connections check opens them).
    HttpCapture => (1 << 21)..(1 << 22),
    /// The OTLP/HTTP receiver's listener and connections.
    OtlpIntake => (1 << 22)..(1 << 23),
    /// DogStatsD: its UDP socket and its Unix socket, and its 15 s flush.
    DogStatsd => (1 << 23)..((1 << 23) + 2),
    /// `/live` and `/ready` on `STS_HEALTH_PORT`: the listener and its connections.
    HealthPort => (1 << 24)..((1 << 24) + 64),
    /// Sending the pending trace payload when it is due.
    TraceFlush => 0..0,
    /// The end of the shutdown grace period (or of `--once`'s send limit).
    Shutdown => 0..0,
}

impl Source {
    /// The first token of the range (where the source registers its first handle).
    pub(super) const fn token(self) -> Token {
        Token(self.tokens().start)
    }

    /// The source that owns `t`; `None` for a token nobody owns (ignored).
    pub(super) fn of(t: Token) -> Option<Source> {
        Source::ALL.iter().copied().find(|s| s.tokens().contains(&t.0))
    }
}

impl App {
    /// When `s` next needs [`App::on_deadline`]; a past instant means now.
    pub(super) fn deadline(&self, s: Source) -> Option<Instant> {
        match s {
            Source::HostCheck => self.host_timer.next,
            Source::ProcessCheck => self.process_timer.next,
            Source::DockerCheck => self.docker_timer.next,
            Source::ConnectionsCheck => {
                let t = self.connection_timer.next?;
                // `--once`: the connections check reports on the process check's table, so it
                // runs after that check's run, not while the process check waits for Docker.
                match self.process_timer.next {
                    Some(p) if self.opts.once && self.process_timer.runs <= self.connection_timer.runs => {
                        Some(t.max(p))
                    }
                    _ => Some(t),
                }
            }
            Source::Signals => None,
            Source::Docker => self.docker.as_ref().and_then(|d| d.deadline()),
            Source::Ecs => self.ecs.as_ref().and_then(|e| e.deadline()),
            Source::DockerEvents => self.docker_events.as_ref().and_then(|e| e.deadline()),
            Source::DockerEventsPass => self.events_pass,
            Source::Features => self.features.deadline(),
            Source::Forwarder => self.sink.forwarder().and_then(|f| f.deadline()),
            Source::TraceIntake => self.intake.as_ref().and_then(|i| i.deadline()),
            Source::OtlpIntake => self.otlp_intake.as_ref().and_then(|i| i.deadline()),
            Source::HealthPort => self.health_listener.as_ref().and_then(|i| i.deadline()),
            // Event-driven: the kernel hands a block over within its retire timeout.
            Source::HttpCapture => None,
            Source::DogStatsd => {
                let room = self.sink.room_for(super::sink::Payload::Series);
                self.dogstatsd.as_ref().and_then(|d| d.deadline(room))
            }
            Source::TraceFlush => self.traces.as_ref().and_then(|t| t.deadline()),
            Source::Shutdown => self.stop_by,
        }
    }

    /// Runs the timed work of `s` (its deadline has come).
    pub(super) fn on_deadline(&mut self, s: Source, now: Instant) -> io::Result<()> {
        let registry = self.poll.registry();
        match s {
            Source::HostCheck => self.host_check(now)?,
            Source::ProcessCheck => self.process_check_or_wait(now)?,
            Source::DockerCheck => self.docker_pass_or_wait(now)?,
            Source::ConnectionsCheck => self.connections_check(now)?,
            Source::Signals => {}
            Source::Docker => {
                if let Some(d) = self.docker.as_mut() {
                    d.on_timeout(registry, now);
                }
            }
            Source::Ecs => {
                if let Some(e) = self.ecs.as_mut() {
                    e.on_timeout(registry, now);
                }
            }
            Source::DockerEvents => self.on_docker_events(now, false),
            Source::DockerEventsPass => self.docker_events_pass(now)?,
            Source::Features => self.features.on_deadline(registry, now),
            Source::Forwarder => {
                if let Some(f) = self.sink.forwarder_mut() {
                    f.on_timeout(registry, now);
                }
            }
            Source::TraceIntake => {
                if let Some(i) = self.intake.as_mut() {
                    i.on_timeout(registry, now);
                }
            }
            Source::OtlpIntake => {
                if let Some(i) = self.otlp_intake.as_mut() {
                    i.on_timeout(registry, now);
                }
            }
            Source::HealthPort => {
                if let Some(i) = self.health_listener.as_mut() {
                    i.on_timeout(registry, now);
                }
            }
            Source::HttpCapture => {}
            Source::DogStatsd => self.dogstatsd_due(now)?,
            Source::TraceFlush => self.flush_traces()?,
            // The loop ends at this deadline (see `App::finished`).
            Source::Shutdown => {}
        }
        Ok(())
    }

    /// Handles readiness of `token`, which lies in the range of `s`.
    pub(super) fn on_event(&mut self, s: Source, token: Token, now: Instant) -> io::Result<()> {
        let registry = self.poll.registry();
        match s {
            Source::HostCheck
            | Source::ProcessCheck
            | Source::DockerCheck
            | Source::ConnectionsCheck
            | Source::TraceFlush
            | Source::DockerEventsPass
            | Source::Shutdown => {}
            Source::Signals => self.on_signal(now),
            Source::DockerEvents => self.on_docker_events(now, true),
            Source::Features => self.features.on_event(registry, token, now),
            Source::Docker => {
                if let Some(d) = self.docker.as_mut() {
                    d.on_event(registry, now);
                }
            }
            Source::Ecs => {
                if let Some(e) = self.ecs.as_mut() {
                    e.on_event(registry, now);
                }
            }
            Source::Forwarder => {
                if let Some(f) = self.sink.forwarder_mut() {
                    f.on_event(registry, token, now);
                }
            }
            Source::TraceIntake => self.on_intake_event(token, now)?,
            Source::OtlpIntake => self.on_otlp_event(token, now)?,
            Source::HealthPort => self.on_health_port_event(token, now)?,
            Source::DogStatsd => self.on_dogstatsd(now),
            Source::HttpCapture => {
                if let Some(c) = self.connections.as_mut() {
                    c.on_capture();
                }
            }
        }
        Ok(())
    }

    /// The earliest deadline of every source: the loop sleeps until then.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        Source::ALL.iter().filter_map(|&s| self.deadline(s)).min()
    }

    /// Runs every source whose deadline has come, in [`Source::ALL`]'s order.
    pub(super) fn run_due(&mut self, now: Instant) -> io::Result<()> {
        for &s in Source::ALL {
            if self.deadline(s).is_some_and(|t| t <= now) {
                self.on_deadline(s, now)?;
            }
        }
        Ok(())
    }

    /// Whether `s` has bounded work left that it does a step a turn (DogStatsD's flush, a series
    /// chunk a turn): its deadline stays in the past on purpose until the work is done, and the
    /// poll between steps (timeout 0) serves every other source.
    fn stepping(&self, s: Source) -> bool {
        match s {
            Source::DogStatsd => self.dogstatsd.as_ref().is_some_and(|d| d.flushing()),
            _ => false,
        }
    }

    /// After the due sources ran (and the run did not end): a deadline still in the past breaks
    /// the contract, as the poll timeout would be 0 until it moves (unless the source works in
    /// steps). Said once per source.
    pub(super) fn check_honest(&mut self, now: Instant) {
        for (i, &s) in Source::ALL.iter().enumerate() {
            if self.stepping(s) {
                continue;
            }
            if self.dishonest & (1 << i) == 0 && self.deadline(s).is_some_and(|t| t <= now) {
                self.dishonest |= 1 << i;
                warn!(
                    "loop: the {s:?} source kept a deadline in the past after it ran (the loop spins until it moves)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ranges_do_not_overlap_and_every_token_has_one_owner() {
        for (i, a) in Source::ALL.iter().enumerate() {
            for b in &Source::ALL[i + 1..] {
                let (x, y) = (a.tokens(), b.tokens());
                assert!(
                    x.is_empty() || y.is_empty() || x.end <= y.start || y.end <= x.start,
                    "{a:?} and {b:?} overlap"
                );
            }
            if !a.tokens().is_empty() {
                assert_eq!(Source::of(a.token()), Some(*a));
                assert_eq!(Source::of(Token(a.tokens().end - 1)), Some(*a));
            }
        }
        assert_eq!(Source::of(Token(3)), None);
        // One bit each in `App::dishonest`.
        assert!(Source::ALL.len() <= 32);
        assert_eq!(Source::of(Token(usize::MAX)), None);
    }

    #[test]
    fn the_intake_and_forwarder_fit_their_ranges() {
        // Intake: two listeners and at most 10,000 connections (STS_APM_MAX_CONNECTIONS).
        assert!(Source::TraceIntake.tokens().len() >= 2 + 10_000);
        // Forwarder: one origin per route at most.
        assert!(Source::Forwarder.tokens().len() >= super::super::sink::ENDPOINTS.len());
    }
}
