//! Docker's container event stream in the loop: each event asks the metadata caches for a
//! refresh when it changes what they hold (and a re-inspection of a container started, or with
//! a new health status), marks a container started again (restarted in place) for its cgroups
//! to be found anew, and is kept for the next docker pass, which sends the pass's events to
//! `/intake/` bundled per image.
//!
//! The pass runs every `STS_DOCKER_CHECK_INTERVAL` on a fixed grid from the agent's start,
//! and only when events are pending: a quiet Docker costs no wake-up at all.

use super::sink::Payload;
use super::App;
use crate::checks::docker_events::Pushed;
use crate::parse::docker_events::Event;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Actions after which Docker's container list (names, images, labels, health) differs.
const REFRESHING: [&[u8]; 8] =
    [b"create", b"start", b"rename", b"health_status", b"destroy", b"die", b"pause", b"unpause"];

impl App {
    /// Readiness of the stream (`ready`), or its deadline (a reconnection, a timeout).
    pub(super) fn on_docker_events(&mut self, now: Instant, ready: bool) {
        let App {
            docker_events,
            docker,
            ecs,
            process,
            event_bundler,
            events_pass,
            no_metadata,
            poll,
            cfg,
            clock_origin,
            ..
        } = self;
        let Some(stream) = docker_events.as_mut() else { return };
        let interval = cfg.docker_check_interval;
        let origin = *clock_origin;
        let mut handle = |e: &Event<'_>| {
            let action = e.action.raw();
            if REFRESHING.contains(&action) {
                if let Some(d) = docker.as_mut() {
                    d.request_refresh(now);
                    // The list does not say when a container started, nor (reliably) its
                    // health: a container started again in place, or with a new health status,
                    // is inspected anew.
                    if action == b"start" || action == b"health_status" {
                        d.request_inspect(e.id.raw(), now);
                    }
                }
                if let Some(ecs) = ecs.as_mut().filter(|_| action == b"create" || action == b"start") {
                    ecs.request_refresh(now);
                }
            }
            if action == b"start" {
                if let Some(p) = process.as_mut() {
                    p.containers.mark_started(e.id.raw());
                }
            }
            let meta = docker.as_ref().map_or(&*no_metadata, |d| &d.meta);
            if event_bundler.push(e, meta, now) == Pushed::Kept && events_pass.is_none() {
                *events_pass = Some(next_pass(origin, interval, now));
            }
        };
        let registry = poll.registry();
        if ready {
            stream.on_ready(registry, now, &mut handle);
        } else {
            let unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
            stream.on_timeout(registry, now, unix_ns, &mut handle);
        }
    }

    /// The docker pass's events: one `/intake/` body with a bundle per image.
    pub(super) fn docker_events_pass(&mut self, now: Instant) -> io::Result<()> {
        self.events_pass = None;
        let meta = self.docker.as_ref().map_or(&self.no_metadata, |d| &d.meta);
        let n = self.event_bundler.flush(&self.hostname, meta, now, &mut self.events_buf);
        if n == 0 {
            return Ok(());
        }
        debug!("docker events: {n} bundles");
        self.sink.deliver(Payload::Intake, &self.events_buf)
    }
}

/// The first pass after `now` on the grid `origin + k × interval`.
fn next_pass(origin: Instant, interval: Duration, now: Instant) -> Instant {
    let iv = interval.as_nanos().max(1);
    let k = now.saturating_duration_since(origin).as_nanos() / iv + 1;
    origin + Duration::from_nanos(u64::try_from(k * iv).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_fall_on_the_grid_and_never_now() {
        let o = Instant::now();
        let iv = Duration::from_secs(40);
        assert_eq!(next_pass(o, iv, o), o + iv);
        assert_eq!(next_pass(o, iv, o + Duration::from_secs(39)), o + iv);
        assert_eq!(next_pass(o, iv, o + iv), o + iv * 2);
        assert_eq!(next_pass(o, iv, o + Duration::from_secs(121)), o + iv * 4);
    }
}
