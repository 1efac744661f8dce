//! Container metadata from the Docker Engine API on its Unix socket, through the same
//! non-blocking HTTP client as the forwarder: `GET /containers/json` when a container the
//! agent has not seen described appears, and every minute. No Docker is normal: containers are
//! still reported from their cgroups, without names, images or ECS tags.

use crate::parse::docker::{container_list, inspect, ContainerMeta};
use crate::transport::client::{HttpClient, Outcome};
use mio::{Registry, Token};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Containers waiting for a re-inspection at most (a burst of events beyond it is caught by the
/// next events for those containers, or their next start).
const MAX_REINSPECT: usize = 1024;

/// What is known of the host's containers, by id.
#[derive(Debug, Default)]
pub struct Metadata {
    pub by_id: Vec<([u8; 64], ContainerMeta)>,
    /// The ECS information generation last merged in, and whether Docker's list changed since.
    ecs_applied: u64,
    changed: bool,
    /// Docker answered a list at least once.
    pub listed: bool,
    /// When Docker last answered a list, and whether the look-up after it failed.
    listed_at: Option<Instant>,
    list_failed: bool,
}

/// Tag keys the ECS agent's API is authoritative for.
const ECS_TAG_KEYS: [&str; 7] = [
    "task_arn:",
    "task_family:",
    "task_name:",
    "task_version:",
    "ecs_container_name:",
    "cluster_name:",
    "ecs_cluster_name:",
];

impl Metadata {
    /// Puts the ECS agent's task tags on the containers it knows (replacing label-derived ones).
    /// Cheap when nothing changed since the last call.
    pub fn apply_ecs(&mut self, ecs: &crate::sources::ecs::EcsInfo) {
        if ecs.generation == 0 || (ecs.generation == self.ecs_applied && !self.changed) {
            return;
        }
        for (id, m) in &mut self.by_id {
            if let Some((_, c)) = ecs.by_id.iter().find(|(i, _)| i == id) {
                m.tags.retain(|t| !ECS_TAG_KEYS.iter().any(|k| t.starts_with(k)));
                m.tags.extend(crate::parse::ecs::tags(c, ecs.cluster.as_deref()));
            }
        }
        self.ecs_applied = ecs.generation;
        self.changed = false;
    }

    /// Whether the list says what Docker lists now: its last look-up succeeded, at most
    /// `max_age` before `now`.
    pub fn current(&self, now: Instant, max_age: Duration) -> bool {
        !self.list_failed && self.listed_at.is_some_and(|t| now.saturating_duration_since(t) <= max_age)
    }

    pub fn get(&self, id: &[u8]) -> Option<&ContainerMeta> {
        self.by_id.iter().find(|(i, _)| i[..] == *id).map(|(_, m)| m)
    }
}

pub struct DockerSource {
    client: HttpClient,
    socket: PathBuf,
    pub meta: Metadata,
    next_at: Option<Instant>,
    last_start: Option<Instant>,
    busy: bool,
    unavailable_logged: bool,
    /// Containers to inspect (for their start time), one request at a time after each list.
    to_inspect: Vec<[u8; 64]>,
    inspecting: Option<[u8; 64]>,
    /// Known containers whose inspected state is stale (started again in place, or a new health
    /// status): inspected again after the next list.
    reinspect: Vec<[u8; 64]>,
}

impl DockerSource {
    pub fn new(socket: PathBuf, token: Token, now: Instant) -> DockerSource {
        DockerSource {
            client: HttpClient::unix(socket.clone(), token),
            socket,
            meta: Metadata::default(),
            next_at: Some(now),
            last_start: None,
            busy: false,
            unavailable_logged: false,
            to_inspect: Vec::new(),
            inspecting: None,
            reinspect: Vec::new(),
        }
    }

    /// A refresh is in flight or due now.
    pub fn refreshing(&self, now: Instant) -> bool {
        self.busy || !self.to_inspect.is_empty() || self.next_at.is_some_and(|t| t <= now)
    }

    pub fn token(&self) -> Token {
        self.client.token()
    }

    /// The earliest time [`Self::on_timeout`] should run.
    pub fn deadline(&self) -> Option<Instant> {
        [self.client.deadline(), self.next_at.filter(|_| !self.busy)].into_iter().flatten().min()
    }

    /// Asks for a refresh soon (a container without metadata appeared).
    pub fn request_refresh(&mut self, now: Instant) {
        self.next_at = Some(super::refresh_soon(self.last_start, now));
    }

    /// A container's start time or health changed (a `start` or `health_status` event): it is
    /// inspected again after the next list, which is asked for soon.
    pub fn request_inspect(&mut self, id: &[u8], now: Instant) {
        let Ok(id) = <[u8; 64]>::try_from(id) else { return };
        if !self.reinspect.contains(&id) {
            if self.reinspect.len() >= MAX_REINSPECT {
                debug!("docker: more than {MAX_REINSPECT} containers to inspect again; skipping one");
            } else {
                self.reinspect.push(id);
            }
        }
        self.request_refresh(now);
    }

    /// Asks for a list by `at`: the docker pass wants a fresh one for its next run (the
    /// original lists containers at every run). Not while Docker is failing: the retry's
    /// backoff stands.
    pub fn refresh_by(&mut self, at: Instant) {
        if !self.unavailable_logged && self.next_at.is_none_or(|t| t > at) {
            self.next_at = Some(at);
        }
    }

    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        if let Some(o) = self.client.on_timeout(registry, now) {
            self.settle(registry, o, now);
        }
        if !self.busy && self.next_at.is_some_and(|t| now >= t) {
            self.start(registry, now);
        }
    }

    pub fn on_event(&mut self, registry: &Registry, now: Instant) {
        if let Some(o) = self.client.on_ready(registry, now) {
            self.settle(registry, o, now);
        }
    }

    fn start(&mut self, registry: &Registry, now: Instant) {
        self.next_at = None;
        self.last_start = Some(now);
        match self.client.send(registry, "GET", "/containers/json?all=1", &[("Accept", "application/json")], b"", now) {
            Ok(()) => {
                self.busy = true;
                if let Some(o) = self.client.on_ready(registry, now) {
                    self.settle(registry, o, now);
                }
            }
            Err(f) => self.failed(&f.to_string(), now),
        }
    }

    /// Inspects the next queued container, if any.
    fn inspect_next(&mut self, registry: &Registry, now: Instant) {
        while let Some(id) = self.to_inspect.pop() {
            let path = format!("/containers/{}/json", String::from_utf8_lossy(&id));
            if self.client.send(registry, "GET", &path, &[("Accept", "application/json")], b"", now).is_ok() {
                self.busy = true;
                self.inspecting = Some(id);
                if let Some(o) = self.client.on_ready(registry, now) {
                    self.settle(registry, o, now);
                }
                return;
            }
        }
    }

    fn settle(&mut self, registry: &Registry, o: Outcome, now: Instant) {
        self.busy = false;
        if let Some(id) = self.inspecting.take() {
            if let Outcome::Response { status: 200, body, .. } = &o {
                match inspect(body) {
                    Ok((started, health)) => {
                        if let Some((_, m)) = self.meta.by_id.iter_mut().find(|(i, _)| *i == id) {
                            m.started = started;
                            m.health = health.unwrap_or(m.health);
                        }
                    }
                    Err(e) => debug!("docker: inspect {}: {e}", String::from_utf8_lossy(&id)),
                }
            }
            self.inspect_next(registry, now);
            return;
        }
        match o {
            Outcome::Response { status: 200, body, .. } => match container_list(&body) {
                Ok(list) => {
                    debug!("docker: {} containers described (every state)", list.len());
                    if self.unavailable_logged {
                        info!("docker: {} answers again", self.socket.display());
                        self.unavailable_logged = false;
                    }
                    let mut list = list;
                    merge_list(&self.meta.by_id, &mut list, &self.reinspect, &mut self.to_inspect);
                    self.reinspect.clear();
                    self.meta.by_id = list;
                    self.meta.changed = true;
                    self.meta.listed = true;
                    (self.meta.listed_at, self.meta.list_failed) = (Some(now), false);
                    // A refresh asked for while this list was in flight (an event of a change
                    // this list may predate) stays due: the list is refreshed every minute
                    // besides.
                    let every = now + REFRESH_EVERY;
                    self.next_at = Some(self.next_at.map_or(every, |asked| asked.min(every)));
                    self.inspect_next(registry, now);
                }
                Err(e) => self.failed(&e, now),
            },
            Outcome::Response { status, body_excerpt, .. } => {
                self.failed(&format!("HTTP {status} {body_excerpt:?}"), now)
            }
            Outcome::Failed(f) => self.failed(&f.to_string(), now),
        }
    }

    fn failed(&mut self, why: &str, now: Instant) {
        self.busy = false;
        self.meta.list_failed = true;
        if !self.unavailable_logged {
            info!(
                "docker: no metadata from {} ({why}); containers are reported from cgroups only",
                self.socket.display()
            );
            self.unavailable_logged = true;
        }
        self.next_at = Some(now + RETRY_AFTER_FAILURE);
    }
}

/// Keeps what inspection found for the containers already known, and queues for inspection
/// the new ones and those in `stale`. The list's own health (from its `Status` text) is the
/// newer one when it gives one; a stale container keeps its old start time until inspected
/// again.
fn merge_list(
    old: &[([u8; 64], ContainerMeta)],
    list: &mut [([u8; 64], ContainerMeta)],
    stale: &[[u8; 64]],
    to_inspect: &mut Vec<[u8; 64]>,
) {
    to_inspect.clear();
    for (id, m) in list.iter_mut() {
        match old.iter().find(|(i, _)| i == id).and_then(|(_, o)| o.started.map(|s| (s, o.health))) {
            Some((started, health)) => {
                m.started = Some(started);
                if m.health == 0 {
                    m.health = health;
                }
                if stale.contains(id) {
                    to_inspect.push(*id);
                }
            }
            None => to_inspect.push(*id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, started: Option<i64>, health: i32) -> ([u8; 64], ContainerMeta) {
        ([b'a' + n; 64], ContainerMeta { started, health, ..Default::default() })
    }

    #[test]
    fn a_list_keeps_inspected_state_takes_its_own_health_and_queues_stale_containers() {
        // a: known, healthy by inspection; b: known, restarted in place (stale); c: new.
        let old = [entry(0, Some(100), 2), entry(1, Some(100), 0)];
        // The list says a is unhealthy now, b has no health in its status, c is new.
        let mut list = [entry(0, None, 3), entry(1, None, 0), entry(2, None, 1)];
        let mut to_inspect = vec![[b'z'; 64]];
        merge_list(&old, &mut list, &[[b'b'; 64]], &mut to_inspect);
        assert_eq!((list[0].1.started, list[0].1.health), (Some(100), 3), "the list's health wins");
        assert_eq!((list[1].1.started, list[1].1.health), (Some(100), 0), "the old start until inspected");
        assert_eq!((list[2].1.started, list[2].1.health), (None, 1));
        assert_eq!(to_inspect, [[b'b'; 64], [b'c'; 64]], "stale and new; a is not inspected again");
        // No health in the list's status: the inspected one stands.
        let mut list = [entry(0, None, 0)];
        merge_list(&old, &mut list, &[], &mut to_inspect);
        assert_eq!((list[0].1.health, to_inspect.len()), (2, 0));
    }

    /// A stand-in Docker Engine on a Unix socket: answers the list with `list()` and each
    /// inspection with `inspect(id)`, one request per connection (`Connection: close`), and
    /// records the request lines.
    fn stand_in(
        path: &std::path::Path,
        list: impl Fn() -> String + Send + 'static,
        inspect: impl Fn(&str) -> String + Send + 'static,
    ) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut r = BufReader::new(conn);
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut h = String::new();
                while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let target = first.split(' ').nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(target.clone());
                let body = match target.strip_prefix("/containers/").and_then(|t| t.strip_suffix("/json")) {
                    Some(id) => inspect(id),
                    None => list(),
                };
                let mut c = r.into_inner();
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        seen
    }

    /// Drives the source through a real poll until `done` (or 5 s).
    fn drive(d: &mut DockerSource, poll: &mut mio::Poll, now: Instant, done: impl Fn(&DockerSource) -> bool) {
        let mut events = mio::Events::with_capacity(8);
        let t = Instant::now();
        while !done(d) {
            assert!(t.elapsed() < Duration::from_secs(5), "the stand-in was not answered in time");
            poll.poll(&mut events, Some(Duration::from_millis(20))).unwrap();
            if !events.is_empty() {
                d.on_event(poll.registry(), now);
            }
            d.on_timeout(poll.registry(), now);
        }
    }

    #[test]
    fn a_start_event_re_inspects_a_known_container_for_its_new_start_time() {
        let dir = std::env::temp_dir().join(format!("sts-docker-reinspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        let id = "c".repeat(64);
        let started = std::sync::Arc::new(std::sync::Mutex::new("2023-11-14T22:13:20Z"));
        let s2 = started.clone();
        let list_id = id.clone();
        let seen = stand_in(
            &path,
            move || {
                format!(
                    r#"[{{"Id":"{list_id}","Names":["/web"],"Image":"nginx","State":"running","Status":"Up 1 second"}}]"#
                )
            },
            move |_| format!(r#"{{"State":{{"Status":"running","StartedAt":"{}"}}}}"#, s2.lock().unwrap()),
        );
        let mut poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut d = DockerSource::new(path, Token(7), t0);
        let started_of = |d: &DockerSource| d.meta.get(id.as_bytes()).and_then(|m| m.started);
        drive(&mut d, &mut poll, t0, |d| started_of(d).is_some() && !d.refreshing(t0));
        assert_eq!(started_of(&d), Some(1_700_000_000));
        // A later list alone does not inspect a known container again.
        let t1 = t0 + REFRESH_EVERY;
        let before = seen.lock().unwrap().len();
        drive(&mut d, &mut poll, t1, |d| d.next_at.is_some_and(|t| t > t1) && !d.refreshing(t1));
        assert_eq!(seen.lock().unwrap()[before..], ["/containers/json?all=1".to_string()]);
        // `docker restart`: the same container, started again.
        *started.lock().unwrap() = "2023-11-14T22:15:00Z";
        let t2 = t1 + Duration::from_secs(5);
        d.request_inspect(id.as_bytes(), t2);
        drive(&mut d, &mut poll, t2, |d| started_of(d) == Some(1_700_000_100) && !d.refreshing(t2));
        assert_eq!(seen.lock().unwrap().last().unwrap(), &format!("/containers/{id}/json"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An event of a change that a list in flight may predate asks for a refresh: that refresh
    /// stays due when the list is answered, rather than waiting out the minute.
    #[test]
    fn a_refresh_asked_for_while_a_list_is_in_flight_stays_due() {
        let dir = std::env::temp_dir().join(format!("sts-docker-inflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        // The list is answered late: answered at once, the stand-in's reply can complete the
        // exchange within `on_timeout` itself (its first read follows the send), and no list
        // would be in flight when the refresh is asked for (seen in CI).
        let list = || {
            std::thread::sleep(Duration::from_millis(300));
            r#"[{"Id":"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd","Names":["/a"],"Image":"x","State":"running","Status":"Up 1 second"}]"#.to_string()
        };
        let _seen = stand_in(&path, list, |_| {
            r#"{"State":{"Status":"running","StartedAt":"2023-11-14T22:13:20Z"}}"#.to_string()
        });
        let mut poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut d = DockerSource::new(path, Token(7), t0);
        d.on_timeout(poll.registry(), t0);
        assert!(d.busy, "the first list is in flight");
        let asked = t0 + Duration::from_secs(1);
        d.request_refresh(asked);
        drive(&mut d, &mut poll, asked, |d| d.meta.listed && !d.busy && d.to_inspect.is_empty());
        let due = d.next_at.expect("a refresh is due");
        assert!(due <= t0 + Duration::from_secs(2), "the asked-for refresh is due in {:?}, not at once", due - t0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The loop contract: a deadline in the past means "now", so while a look-up waits on the
    /// socket the deadline is the request's timeout, not a refresh already asked for.
    #[test]
    fn deadline_is_not_in_the_past_while_a_look_up_is_in_flight() {
        let dir = std::env::temp_dir().join(format!("sts-docker-deadline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let _ = std::fs::remove_file(&path);
        // Accepts (the kernel's backlog) and never answers.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut d = DockerSource::new(path, Token(7), t0);
        assert_eq!(d.deadline(), Some(t0), "the first look-up is due at once");
        d.on_timeout(poll.registry(), t0);
        assert!(d.refreshing(t0));
        let later = t0 + Duration::from_secs(3);
        d.request_refresh(later);
        let deadline = d.deadline().expect("the request's timeout");
        assert!(deadline > later, "deadline {:?} after start, in the past at +3 s", deadline - t0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A list is current while its look-up was the last and is recent; a failed look-up or age
    /// ends that (the docker pass then holds back counts and topology).
    #[test]
    fn a_list_is_current_until_a_look_up_fails_or_it_ages() {
        let dir = std::env::temp_dir().join(format!("sts-docker-current-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let poll = mio::Poll::new().unwrap();
        let t0 = Instant::now();
        let mut d = DockerSource::new(dir.join("absent.sock"), Token(7), t0);
        let age = Duration::from_secs(80);
        assert!(!d.meta.current(t0, age), "never listed");
        let listed =
            Outcome::Response { status: 200, retry_after: None, body_excerpt: String::new(), body: b"[]".to_vec() };
        d.settle(poll.registry(), listed, t0);
        assert!(d.meta.listed && d.meta.current(t0 + Duration::from_secs(79), age));
        assert!(!d.meta.current(t0 + Duration::from_secs(81), age), "too old");
        d.on_timeout(poll.registry(), t0 + Duration::from_secs(61));
        assert!(!d.meta.current(t0 + Duration::from_secs(61), age), "the socket is not there: the look-up failed");
        assert!(d.meta.listed, "what it listed is still known (for tags)");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
