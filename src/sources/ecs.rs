//! The ECS agent's introspection API (`STS_ECS_AGENT_URL`, default `http://localhost:51678`,
//! reachable with the task's host networking): the cluster name and which task each container
//! belongs to. Two requests in turn through the non-blocking client, refreshed every minute and
//! when an unknown container appears. Off ECS (or with the API unreachable) the
//! `com.amazonaws.ecs.*` Docker labels stand in.

use crate::parse::ecs::{cluster, tasks, EcsContainer};
use crate::transport::client::{HttpClient, Outcome};
use crate::url::Url;
use mio::{Registry, Token};
use std::time::{Duration, Instant};

const REFRESH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct EcsInfo {
    pub cluster: Option<String>,
    pub by_id: Vec<([u8; 64], EcsContainer)>,
    /// Bumped on every successful refresh, so consumers re-apply only on change.
    pub generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    Metadata,
    Tasks,
}

pub struct EcsSource {
    client: HttpClient,
    base: Url,
    pub info: EcsInfo,
    cluster_pending: Option<String>,
    step: Step,
    next_at: Option<Instant>,
    last_start: Option<Instant>,
    unavailable_logged: bool,
}

impl EcsSource {
    pub fn new(base: Url, token: Token, now: Instant) -> Result<EcsSource, String> {
        Ok(EcsSource {
            client: HttpClient::new(base.clone(), None, token)?.keeping_bodies(),
            base,
            info: EcsInfo::default(),
            cluster_pending: None,
            step: Step::Idle,
            next_at: Some(now),
            last_start: None,
            unavailable_logged: false,
        })
    }

    pub fn token(&self) -> Token {
        self.client.token()
    }

    pub fn refreshing(&self, now: Instant) -> bool {
        self.step != Step::Idle || self.next_at.is_some_and(|t| t <= now)
    }

    pub fn deadline(&self) -> Option<Instant> {
        [self.client.deadline(), self.next_at.filter(|_| self.step == Step::Idle)].into_iter().flatten().min()
    }

    pub fn request_refresh(&mut self, now: Instant) {
        self.next_at = Some(super::refresh_soon(self.last_start, now));
    }

    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        if let Some(o) = self.client.on_timeout(registry, now) {
            self.settle(registry, o, now);
        }
        if self.step == Step::Idle && self.next_at.is_some_and(|t| now >= t) {
            self.next_at = None;
            self.last_start = Some(now);
            self.get(registry, Step::Metadata, now);
        }
    }

    pub fn on_event(&mut self, registry: &Registry, now: Instant) {
        if let Some(o) = self.client.on_ready(registry, now) {
            self.settle(registry, o, now);
        }
    }

    fn get(&mut self, registry: &Registry, step: Step, now: Instant) {
        let path = match step {
            Step::Metadata => format!("{}/v1/metadata", self.base.base_path),
            _ => format!("{}/v1/tasks", self.base.base_path),
        };
        self.step = step;
        match self.client.send(registry, "GET", &path, &[("Accept", "application/json")], b"", now) {
            Ok(()) => {
                if let Some(o) = self.client.on_ready(registry, now) {
                    self.settle(registry, o, now);
                }
            }
            Err(f) => self.failed(&f.to_string(), now),
        }
    }

    fn settle(&mut self, registry: &Registry, o: Outcome, now: Instant) {
        let body = match o {
            Outcome::Response { status: 200, body, .. } => body,
            Outcome::Response { status, body_excerpt, .. } => {
                return self.failed(&format!("HTTP {status} {body_excerpt:?}"), now)
            }
            Outcome::Failed(f) => return self.failed(&f.to_string(), now),
        };
        match self.step {
            Step::Metadata => match cluster(&body) {
                Ok(c) => {
                    self.cluster_pending = Some(c);
                    self.get(registry, Step::Tasks, now);
                }
                Err(e) => self.failed(&e, now),
            },
            Step::Tasks => match tasks(&body) {
                Ok(t) => {
                    debug!("ecs: cluster {:?}, {} task containers", self.cluster_pending, t.len());
                    if self.unavailable_logged {
                        info!("ecs: the ECS agent at {} answers again", self.base);
                        self.unavailable_logged = false;
                    }
                    self.info.cluster = self.cluster_pending.take();
                    self.info.by_id = t;
                    self.info.generation += 1;
                    self.step = Step::Idle;
                    self.next_at = Some(now + REFRESH_EVERY);
                }
                Err(e) => self.failed(&e, now),
            },
            Step::Idle => {}
        }
    }

    fn failed(&mut self, why: &str, now: Instant) {
        self.step = Step::Idle;
        if !self.unavailable_logged {
            info!("ecs: no task metadata from the ECS agent at {} ({why}); using container labels", self.base);
            self.unavailable_logged = true;
        }
        self.next_at = Some(now + REFRESH_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop contract: while a look-up waits on the ECS agent the deadline is the request's
    /// timeout, not a refresh already asked for (a past deadline would make the loop spin).
    #[test]
    fn deadline_is_not_in_the_past_while_a_look_up_is_in_flight() {
        // Accepts (the kernel's backlog) and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut e = EcsSource::new(url, Token(9), t0).unwrap();
        assert_eq!(e.deadline(), Some(t0), "the first look-up is due at once");
        e.on_timeout(poll.registry(), t0);
        assert!(e.refreshing(t0));
        let later = t0 + Duration::from_secs(3);
        e.request_refresh(later);
        let deadline = e.deadline().expect("the request's timeout");
        assert!(deadline > later, "deadline {:?} after start, in the past at +3 s", deadline - t0);
    }
}
