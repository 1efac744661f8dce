//! Encoded payloads waiting for delivery, per route, within one byte budget; one request in
//! flight per origin; status classification and jittered exponential backoff.
//!
//! Status rules (spec/protocol.md §2, reliability.md §0): 2xx delivered; 400 and 413 dropped at
//! once with an error (resending the same bytes cannot succeed), except that a route that can
//! split a payload sends a 413'd one once as two halves (a process-agent group grows by one
//! message, `RouteSpec::regroup`); 403 dropped and flagged as an
//! API-key problem; 404, 408, 429, 5xx and every transport failure retried after a backoff (1 s
//! doubling to 60 s with jitter, `Retry-After` honoured up to that cap; a 404 can be a proxy or
//! region misconfigured for a while). When the budget is full the oldest payload of the fullest
//! queue is dropped. Every payload is accounted for: enqueued = delivered + dropped + queued.

use crate::transport::client::{Failure, FailureKind, HttpClient, Outcome};
use crate::url::{percent_encode, Url};
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What a route sends and where.
pub struct RouteSpec {
    /// Short name for logs, e.g. `series`.
    pub name: &'static str,
    pub base: Url,
    /// Path after the base URL, e.g. `/api/v1/series`.
    pub path: &'static str,
    pub api_key_query: bool,
    /// Sent with every request besides `sts-api-key` and `User-Agent`.
    pub headers: Vec<(&'static str, String)>,
    /// Splits a payload refused with 413 into two carrying the same data (once; see
    /// `encode::split`). `None`: a 413 drops the payload.
    pub split: Option<Splitter>,
    /// After a split, rewrites a payload queued behind the halves that belongs with them (a
    /// chunk of the same process-agent group takes the halves' `groupSize`); `None` ends the
    /// walk (see `encode::split::process_regroup`).
    pub regroup: Option<Regrouper>,
}

/// Splits a payload into two halves that together carry the same data.
pub type Splitter = fn(&[u8]) -> Option<[Vec<u8>; 2]>;

/// `(a half, a queued payload)` to the queued payload rewritten to agree with the half, or `None`
/// when it does not belong with it.
pub type Regrouper = fn(&[u8], &[u8]) -> Option<Vec<u8>>;

/// The version the process-agent endpoints are told (`sts-processagentversion`).
pub const PROCESS_AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

impl RouteSpec {
    /// The core forwarder's framing (spec/protocol.md E1/E2): zlib JSON, key in header and query.
    pub fn core_json(name: &'static str, base: &Url, path: &'static str) -> RouteSpec {
        RouteSpec {
            name,
            base: base.clone(),
            path,
            api_key_query: true,
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("Content-Encoding", "deflate".into()),
                ("DD-Agent-Version", env!("CARGO_PKG_VERSION").into()),
            ],
            split: None,
            regroup: None,
        }
    }

    /// The process agent's messages (E5/E6): header + zstd(protobuf), `x-zip` as a label only.
    pub fn process_agent(name: &'static str, base: &Url, path: &'static str, host: &str) -> RouteSpec {
        RouteSpec {
            name,
            base: base.clone(),
            path,
            api_key_query: false,
            headers: vec![
                ("Content-Encoding", "x-zip".into()),
                ("sts-hostname", host.into()),
                ("sts-processagentversion", PROCESS_AGENT_VERSION.into()),
            ],
            split: Some(crate::encode::split::process_message),
            regroup: Some(crate::encode::split::process_regroup),
        }
    }

    /// The trace agent's payloads (E9): gzip(protobuf `TracePayload`), key in the header only.
    pub fn traces(base: &Url) -> RouteSpec {
        RouteSpec {
            name: "traces",
            base: base.clone(),
            path: "/api/v0.2/traces",
            api_key_query: false,
            headers: vec![("Content-Type", "application/x-protobuf".into()), ("Content-Encoding", "gzip".into())],
            split: None,
            regroup: None,
        }
    }

    /// The process agent's `/intake` side channel (E8): gzip JSON, key in header and query.
    pub fn process_intake(base: &Url, host: &str) -> RouteSpec {
        RouteSpec {
            name: "process-intake",
            base: base.clone(),
            path: "/intake",
            api_key_query: true,
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("Content-Encoding", "gzip".into()),
                ("sts-hostname", host.into()),
            ],
            split: None,
            regroup: None,
        }
    }
}

/// Dropped payloads by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// The outbox was full: the oldest payload made room.
    pub overflow: u64,
    /// A single payload larger than the whole budget.
    pub oversized: u64,
    /// 400: rejected as malformed.
    pub bad_request: u64,
    /// 403: the API key was rejected.
    pub forbidden: u64,
    /// 413: too large for the receiver.
    pub too_large: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.overflow + self.oversized + self.bad_request + self.forbidden + self.too_large
    }

    /// `(reason, count)` pairs, for reports.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("overflow", self.overflow),
            ("oversized", self.oversized),
            ("bad_request", self.bad_request),
            ("forbidden", self.forbidden),
            ("too_large", self.too_large),
        ]
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RouteStats {
    /// Payloads handed to the outbox, plus one for each 413 split (one payload became two).
    pub enqueued: u64,
    /// Payloads refused with 413 and split in two.
    pub split: u64,
    pub delivered: u64,
    pub dropped: Drops,
    pub retries: u64,
}

struct Route {
    spec: RouteSpec,
    origin: usize,
    /// Base path + path + query; holds the API key, so it is never logged.
    target: String,
    /// Base URL + path, for the status report (no key in it).
    url: String,
    queue: VecDeque<Vec<u8>>,
    /// How many payloads at the front of `queue` are halves of a split (never split again).
    split_front: usize,
    stats: RouteStats,
    /// The last failure, for the status report (the API key never appears in it).
    last_error: Option<String>,
    /// When `last_error` happened (its age in the status report and health lines).
    last_error_at: Option<Instant>,
    /// When a payload of this route was last delivered (for `sts-agent health`).
    last_delivered: Option<Instant>,
    /// When this route's current run of failures (retries, or a 403) began; cleared by a
    /// delivery on this route (another route of the origin delivering says nothing about it),
    /// or when the route has nothing left queued or in flight (`rest`): a route is failing only
    /// while something of it waits for the receiver, unless the receiver refused the key.
    failing_since: Option<Instant>,
    /// The last answer on this route was 403 (the key): it stays failing when empty, since
    /// every payload it will have is refused the same way.
    key_refused: bool,
    /// Since when this route has had payloads waiting with no delivery of its own (set by
    /// `pump` when its queue is non-empty, cleared by its delivery or an empty queue): catches a
    /// route starved behind another one's backoff.
    waiting_since: Option<Instant>,
}

struct Origin {
    client: HttpClient,
    in_flight: Option<(usize, Vec<u8>)>,
    /// The payload in flight is a half of a split.
    in_flight_split: bool,
    retry_at: Option<Instant>,
    failures: u32,
    last_logged: Option<(FailureKind, String)>,
    next_route: usize,
}

/// One route's delivery state, for `sts-agent health` (`app::health`).
#[derive(Debug, Clone, Copy)]
pub struct RouteHealth<'a> {
    pub name: &'static str,
    pub last_delivered: Option<Instant>,
    /// This route has failed (retried or 403) without a delivery of its own since then.
    pub failing_since: Option<Instant>,
    /// This route has had payloads queued or in flight, with no delivery, since then.
    pub waiting_since: Option<Instant>,
    /// The origin waits this long before its next attempt (0: not backing off).
    pub backoff: Duration,
    pub queued: usize,
    pub last_error: Option<&'a str>,
    /// When `last_error` happened.
    pub last_error_at: Option<Instant>,
}

/// Spare buffers hold at most 1/SPARE_SHARE of the budget, and at most MAX_SPARES of them.
const SPARE_SHARE: usize = 4;
const MAX_SPARES: usize = 256;

pub struct Forwarder {
    routes: Vec<Route>,
    origins: Vec<Origin>,
    api_key: String,
    /// The API key in every form it can take in text, scrubbed from what a receiver sends back
    /// before it reaches `last_error` or the log.
    secrets: Vec<String>,
    user_agent: String,
    budget: usize,
    queued: usize,
    /// Buffers of delivered or dropped payloads, reused by `enqueue` (steady state allocates
    /// nothing); their capacity is at most `SPARE_SHARE` of the budget.
    spare: Vec<Vec<u8>>,
    spare_bytes: usize,
    rng: u64,
    /// A receiver answered 403: the API key is wrong (a health flag).
    pub key_rejected: bool,
}

pub type RouteId = usize;

impl Forwarder {
    /// `first_token`: origins get consecutive tokens from here.
    pub fn new(
        specs: Vec<RouteSpec>,
        api_key: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        budget: usize,
        first_token: usize,
        seed: u64,
    ) -> Result<Forwarder, String> {
        let mut origins: Vec<Origin> = Vec::new();
        let mut routes = Vec::new();
        for spec in specs {
            let key = |u: &Url| (u.scheme, u.host.clone(), u.port);
            let origin = match origins.iter().position(|o| key(o.client.origin()) == key(&spec.base)) {
                Some(i) => i,
                None => {
                    let client = HttpClient::new(spec.base.clone(), tls.clone(), Token(first_token + origins.len()))?;
                    origins.push(Origin {
                        client,
                        in_flight: None,
                        in_flight_split: false,
                        retry_at: None,
                        failures: 0,
                        last_logged: None,
                        next_route: 0,
                    });
                    origins.len() - 1
                }
            };
            let mut target = format!("{}{}", spec.base.base_path, spec.path);
            if spec.api_key_query {
                target.push_str("?api_key=");
                target.push_str(&percent_encode(api_key));
            }
            routes.push(Route {
                url: format!("{}{}", spec.base, spec.path),
                spec,
                origin,
                target,
                queue: VecDeque::new(),
                split_front: 0,
                stats: RouteStats::default(),
                last_error: None,
                last_error_at: None,
                last_delivered: None,
                failing_since: None,
                key_refused: false,
                waiting_since: None,
            });
        }
        // No log line may carry the key, whoever writes it (a reply echoing the request URL).
        crate::log::register_secret(api_key);
        Ok(Forwarder {
            routes,
            origins,
            api_key: api_key.to_string(),
            secrets: crate::log::secret_forms(api_key),
            user_agent: format!("sts-agent/{}", env!("CARGO_PKG_VERSION")),
            budget,
            queued: 0,
            spare: Vec::new(),
            spare_bytes: 0,
            rng: seed | 1,
            key_rejected: false,
        })
    }

    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.origins.iter().map(|o| o.client.token())
    }

    pub fn stats(&self, route: RouteId) -> RouteStats {
        self.routes.get(route).map(|r| r.stats).unwrap_or_default()
    }

    /// Every route's accounting as a JSON object keyed by route name: `{"enqueued","delivered",
    /// "dropped":{reason:n},"queued","queued_bytes","last_error","last_error_age_s","backoff_s"}`.
    /// `queued` counts the payload in flight, so enqueued = delivered + Σdropped + queued.
    pub fn status_json(&self, out: &mut Vec<u8>, now: Instant) {
        use crate::encode::json;
        out.push(b'{');
        for (i, r) in self.routes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let o = &self.origins[r.origin];
            let (queued, bytes) = self.queue_of(i);
            json::str(out, r.spec.name);
            out.extend_from_slice(b":{\"url\":");
            json::str(out, &r.url);
            out.extend_from_slice(b",\"enqueued\":");
            json::u64(out, r.stats.enqueued);
            out.extend_from_slice(b",\"delivered\":");
            json::u64(out, r.stats.delivered);
            out.extend_from_slice(b",\"dropped\":{");
            json::u64_fields(out, &r.stats.dropped.by_reason());
            out.extend_from_slice(b"},\"queued\":");
            json::u64(out, queued);
            out.extend_from_slice(b",\"queued_bytes\":");
            json::u64(out, bytes);
            out.extend_from_slice(b",\"retries\":");
            json::u64(out, r.stats.retries);
            out.extend_from_slice(b",\"split\":");
            json::u64(out, r.stats.split);
            out.extend_from_slice(b",\"last_error\":");
            match &r.last_error {
                Some(e) => json::str(out, e),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"last_error_age_s\":");
            match r.last_error_at {
                Some(t) => json::u64(out, now.saturating_duration_since(t).as_secs()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"backoff_s\":");
            let backoff = o.retry_at.map_or(0.0, |t| t.saturating_duration_since(now).as_secs_f64());
            json::f64(out, (backoff * 10.0).round() / 10.0);
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// Every route's delivery state (`sts-agent health`).
    pub fn health(&self, now: Instant) -> impl Iterator<Item = RouteHealth<'_>> + '_ {
        self.routes.iter().enumerate().map(move |(i, r)| {
            let o = &self.origins[r.origin];
            let in_flight = o.in_flight.as_ref().is_some_and(|(ri, _)| *ri == i);
            RouteHealth {
                name: r.spec.name,
                last_delivered: r.last_delivered,
                failing_since: r.failing_since,
                waiting_since: r.waiting_since,
                backoff: o.retry_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
                queued: r.queue.len() + usize::from(in_flight),
                last_error: r.last_error.as_deref(),
                last_error_at: r.last_error_at,
            }
        })
    }

    /// Route `i`'s queue: `(payloads, bytes)`, the one in flight included (as `/status` shows it).
    pub fn queue_of(&self, i: RouteId) -> (u64, u64) {
        let Some(r) = self.routes.get(i) else { return (0, 0) };
        let o = &self.origins[r.origin];
        let in_flight = o.in_flight.as_ref().filter(|(ri, _)| *ri == i).map(|(_, b)| b.len());
        let queued = r.queue.len() as u64 + u64::from(in_flight.is_some());
        let bytes = r.queue.iter().map(Vec::len).sum::<usize>() + in_flight.unwrap_or(0);
        (queued, bytes as u64)
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// `(enqueued, delivered, dropped)` over every route.
    pub fn totals(&self) -> (u64, u64, u64) {
        self.routes
            .iter()
            .fold((0, 0, 0), |(e, d, x), r| (e + r.stats.enqueued, d + r.stats.delivered, x + r.stats.dropped.total()))
    }

    pub fn route_name(&self, route: RouteId) -> &'static str {
        self.routes.get(route).map_or("?", |r| r.spec.name)
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queued == 0 && self.origins.iter().all(|o| o.in_flight.is_none())
    }

    /// Payloads of `route` waiting to be sent (not counting one in flight).
    pub fn waiting(&self, route: RouteId) -> usize {
        self.routes.get(route).map_or(0, |r| r.queue.len())
    }

    pub fn queued_payloads(&self) -> usize {
        self.routes.iter().map(|r| r.queue.len()).sum::<usize>()
            + self.origins.iter().filter(|o| o.in_flight.is_some()).count()
    }

    /// Queues a copy of `body` (a buffer from the spare pool, so steady state does not allocate).
    pub fn enqueue(&mut self, route: RouteId, body: &[u8]) {
        if route >= self.routes.len() {
            return;
        }
        self.routes[route].stats.enqueued += 1;
        if body.len() > self.budget {
            self.routes[route].stats.dropped.oversized += 1;
            error!(
                "{}: dropped a {} byte payload larger than the whole outbox budget ({} bytes)",
                self.routes[route].spec.name,
                body.len(),
                self.budget
            );
            return;
        }
        self.make_room(body.len());
        let mut buf = self.take_spare(body.len());
        buf.clear();
        buf.extend_from_slice(body);
        self.queued += buf.len();
        self.routes[route].queue.push_back(buf);
    }

    /// The earliest time `on_timeout` (or `pump`) should run. Honest, as the loop contract asks:
    /// an origin's backoff counts only while that origin waits to send (nothing in flight, a
    /// payload of its own queued), so a retry in flight never leaves a deadline in the past and
    /// the loop sleeps on the request's I/O and its timeout instead of spinning.
    pub fn deadline(&self) -> Option<Instant> {
        self.origins
            .iter()
            .enumerate()
            .flat_map(|(oi, o)| {
                let waiting =
                    o.in_flight.is_none() && self.routes.iter().any(|r| r.origin == oi && !r.queue.is_empty());
                [o.client.deadline(), o.retry_at.filter(|_| waiting)]
            })
            .flatten()
            .min()
    }

    /// Starts a request on every idle origin that has work and is not backing off.
    pub fn pump(&mut self, registry: &Registry, now: Instant) {
        for ri in 0..self.routes.len() {
            if !self.rest(ri) {
                self.routes[ri].waiting_since.get_or_insert(now);
            }
        }
        for oi in 0..self.origins.len() {
            loop {
                if self.origins[oi].client.is_busy() {
                    break;
                }
                let Some((ri, body)) = self.next_payload(oi, now) else { break };
                let r = &self.routes[ri];
                let mut headers: smallvec::SmallVec<[(&str, &str); 8]> = smallvec::SmallVec::new();
                headers.push(("sts-api-key", self.api_key.as_str()));
                headers.push(("User-Agent", self.user_agent.as_str()));
                headers.extend(r.spec.headers.iter().map(|(k, v)| (*k, v.as_str())));
                let sent = self.origins[oi].client.send(registry, "POST", &r.target, &headers, &body, now);
                drop(headers);
                match sent {
                    Ok(()) => {
                        self.origins[oi].in_flight = Some((ri, body));
                        // Readiness is edge-triggered: a kept-alive socket that is already
                        // writable gives no new event, so write now.
                        if let Some(outcome) = self.origins[oi].client.write_now(registry, now) {
                            self.settle(oi, outcome, now);
                        }
                        break;
                    }
                    Err(f) => {
                        self.origins[oi].in_flight = Some((ri, body));
                        self.settle(oi, Outcome::Failed(f), now);
                    }
                }
            }
        }
    }

    /// When route `ri` has nothing queued or in flight, it is neither waiting nor failing (a
    /// 400 or 413 that dropped its last payload, or the budget that did, leaves nothing of it
    /// for the receiver to take; it would otherwise fail health forever while idle), unless the
    /// receiver refused the key. Returns whether it is at rest.
    fn rest(&mut self, ri: RouteId) -> bool {
        let in_flight = self.origins[self.routes[ri].origin].in_flight.as_ref().is_some_and(|(i, _)| *i == ri);
        let r = &mut self.routes[ri];
        let at_rest = r.queue.is_empty() && !in_flight;
        if at_rest {
            r.waiting_since = None;
            if !r.key_refused {
                r.failing_since = None;
            }
        }
        at_rest
    }

    /// The next payload origin `oi` may send now (none while one is in flight or backing off):
    /// the routes of an origin take turns; each route's queue is first in, first out.
    fn next_payload(&mut self, oi: usize, now: Instant) -> Option<(usize, Vec<u8>)> {
        let o = &self.origins[oi];
        if o.in_flight.is_some() || o.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let n = self.routes.len();
        let start = o.next_route;
        let ri = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.routes[i].origin == oi && !self.routes[i].queue.is_empty())?;
        let body = self.routes[ri].queue.pop_front()?;
        // The backoff is over: forget it, so nothing reads a past time as a pending wake-up.
        self.origins[oi].retry_at = None;
        let r = &mut self.routes[ri];
        self.origins[oi].in_flight_split = r.split_front > 0;
        r.split_front = r.split_front.saturating_sub(1);
        self.queued -= body.len();
        self.origins[oi].next_route = (ri + 1) % n;
        Some((ri, body))
    }

    pub fn on_event(&mut self, registry: &Registry, token: Token, now: Instant) {
        if let Some(oi) = self.origins.iter().position(|o| o.client.token() == token) {
            if let Some(outcome) = self.origins[oi].client.on_ready(registry, now) {
                self.settle(oi, outcome, now);
            }
        }
    }

    pub fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        for oi in 0..self.origins.len() {
            if let Some(outcome) = self.origins[oi].client.on_timeout(registry, now) {
                self.settle(oi, outcome, now);
            }
        }
    }

    /// Ends every backoff, so a shutdown makes one last attempt at what is queued.
    pub fn retry_now(&mut self) {
        for o in &mut self.origins {
            o.retry_at = None;
        }
    }

    pub fn close_all(&mut self, registry: &Registry) {
        for o in &mut self.origins {
            o.client.close(registry);
        }
    }

    fn settle(&mut self, oi: usize, outcome: Outcome, now: Instant) {
        let Some((ri, body)) = self.origins[oi].in_flight.take() else { return };
        let was_split = std::mem::take(&mut self.origins[oi].in_flight_split);
        let name = self.routes[ri].spec.name;
        match outcome {
            Outcome::Response { status, .. } if (200..300).contains(&status) => {
                self.routes[ri].stats.delivered += 1;
                let r = &mut self.routes[ri];
                r.last_delivered = Some(now);
                r.failing_since = None;
                r.key_refused = false;
                r.waiting_since = None;
                let o = &mut self.origins[oi];
                if o.failures > 0 {
                    info!(
                        "{} accepts payloads again (after {} failed attempts)",
                        self.routes[ri].spec.base, o.failures
                    );
                }
                o.failures = 0;
                o.retry_at = None;
                o.last_logged = None;
                self.recycle(body);
            }
            Outcome::Response { status: 413, .. } if !was_split && self.split(ri, &body) => {
                self.recycle(body);
            }
            Outcome::Response { status, body_excerpt, .. } if matches!(status, 400 | 403 | 413) => {
                let body_excerpt = crate::log::scrub(&body_excerpt, &self.secrets);
                let r = &mut self.routes[ri];
                // The receiver answered: it is reachable. A 403 says every payload of this route
                // will be refused (failing even when empty); a 400 or 413 is about this payload
                // only (and says the key was taken).
                r.key_refused = status == 403;
                let d = &mut r.stats.dropped;
                let why = match status {
                    403 => {
                        d.forbidden += 1;
                        self.key_rejected = true;
                        r.failing_since.get_or_insert(now);
                        "the API key was rejected (check STS_API_KEY)"
                    }
                    413 => {
                        d.too_large += 1;
                        "payload too large"
                    }
                    _ => {
                        d.bad_request += 1;
                        "rejected as malformed"
                    }
                };
                r.last_error = Some(format!("HTTP {status}: {why}"));
                r.last_error_at = Some(now);
                error!(
                    "{name}: {} answered {status}: {why}; payload dropped ({} bytes); response: {:?}",
                    self.routes[ri].spec.base,
                    body.len(),
                    body_excerpt
                );
                self.recycle(body);
                // Was it the route's last payload? Then it rests now (not only at the next
                // `pump`): no longer failing, unless this was a 403.
                self.rest(ri);
            }
            Outcome::Response { status, retry_after, body_excerpt, .. } => {
                let hint = if status == 404 { " (endpoint not found: check the base URL)" } else { "" };
                // The excerpt is the receiver's text (a proxy may echo the request URL and its
                // `?api_key=`): scrubbed before it is stored or logged.
                let body_excerpt = crate::log::scrub(&body_excerpt, &self.secrets);
                let reason =
                    Failure { kind: FailureKind::Protocol, detail: format!("HTTP {status}{hint} {body_excerpt:?}") };
                let hint = retry_after.map(Duration::from_secs);
                self.retry(oi, ri, body, was_split, reason, hint, now);
            }
            Outcome::Failed(f) => self.retry(oi, ri, body, was_split, f, None, now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn retry(
        &mut self,
        oi: usize,
        ri: usize,
        body: Vec<u8>,
        was_split: bool,
        why: Failure,
        hint: Option<Duration>,
        now: Instant,
    ) {
        let name = self.routes[ri].spec.name;
        let base = self.routes[ri].spec.base.to_string();
        // Transport failures carry text from TLS and the peer too: scrubbed like an excerpt.
        let why = Failure { kind: why.kind, detail: crate::log::scrub(&why.detail, &self.secrets) };
        self.routes[ri].stats.retries += 1;
        self.routes[ri].last_error = Some(why.to_string());
        self.routes[ri].last_error_at = Some(now);
        self.queued += body.len();
        self.routes[ri].queue.push_front(body);
        if was_split {
            self.routes[ri].split_front += 1;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let o = &mut self.origins[oi];
        o.failures = o.failures.saturating_add(1);
        self.routes[ri].failing_since.get_or_insert(now);
        let exp = BACKOFF_BASE.saturating_mul(1u32 << (o.failures - 1).min(16)).min(BACKOFF_CAP);
        // Full jitter between half and all of the step, so agents do not retry in lockstep.
        let jittered = exp / 2 + Duration::from_millis(self.rng % (exp.as_millis() as u64 / 2 + 1));
        let delay = hint.map_or(jittered, |h| h.min(BACKOFF_CAP).max(jittered));
        o.retry_at = Some(now + delay);
        let key = (why.kind, why.detail.clone());
        if o.last_logged.as_ref() != Some(&key) {
            error!(
                "{name}: sending to {base} failed: {why}; retrying with backoff (next in {:.1}s)",
                delay.as_secs_f64()
            );
            o.last_logged = Some(key);
        } else {
            debug!("{name}: still failing ({} attempts): {why}", o.failures);
        }
        // Keep the budget even when retried payloads come back.
        self.make_room(0);
    }

    /// Drops the oldest payloads of the fullest queue (by count; the later route on a tie) until
    /// `need` more bytes fit the budget.
    fn make_room(&mut self, need: usize) {
        while self.queued + need > self.budget {
            let fullest = (0..self.routes.len()).max_by_key(|&i| self.routes[i].queue.len());
            let Some(victim) = fullest.filter(|&i| !self.routes[i].queue.is_empty()) else { break };
            let Some(old) = self.routes[victim].queue.pop_front() else { break };
            self.routes[victim].split_front = self.routes[victim].split_front.saturating_sub(1);
            self.queued -= old.len();
            let r = &mut self.routes[victim];
            r.stats.dropped.overflow += 1;
            // One line per power of two, so a long outage does not flood the log.
            if r.stats.dropped.overflow.is_power_of_two() {
                warn!(
                    "{}: outbox full ({} byte budget); dropped the oldest payload ({} dropped so far)",
                    r.spec.name, self.budget, r.stats.dropped.overflow
                );
            }
            self.recycle(old);
        }
    }

    /// Replaces a payload refused with 413 by its two halves, at the front of its queue; `false`
    /// when the route cannot split it (then it is dropped).
    fn split(&mut self, ri: usize, body: &[u8]) -> bool {
        let Some(splitter) = self.routes[ri].spec.split else { return false };
        let Some([a, b]) = splitter(body) else { return false };
        let r = &mut self.routes[ri];
        warn!(
            "{}: the receiver refused a {} byte payload as too large (413); sending it in two halves",
            r.spec.name,
            body.len()
        );
        r.stats.split += 1;
        r.stats.enqueued += 1;
        self.queued += a.len() + b.len();
        r.queue.push_front(b);
        r.queue.push_front(a);
        r.split_front += 2;
        // The rest of a process-agent group, queued right behind (a cycle queues its chunks
        // together), learns that the group grew: every chunk still to send says the same size.
        if let Some(regroup) = r.spec.regroup {
            let mut k = 2;
            while let (Some(half), Some(queued)) = (r.queue.front(), r.queue.get(k)) {
                let Some(new) = regroup(half, queued) else { break };
                self.queued = self.queued - queued.len() + new.len();
                if let Some(slot) = r.queue.get_mut(k) {
                    *slot = new;
                }
                k += 1;
            }
        }
        self.make_room(0);
        true
    }

    /// Keeps a buffer for reuse: a cycle queues many payloads at once (5,000 connections are 50
    /// messages), so the pool holds one cycle's worth, bounded by a share of the budget.
    fn recycle(&mut self, body: Vec<u8>) {
        if self.spare_bytes + body.capacity() <= self.budget / SPARE_SHARE && self.spare.len() < MAX_SPARES {
            self.spare_bytes += body.capacity();
            self.spare.push(body);
        }
    }

    /// The smallest spare buffer that holds `len` bytes, else the largest (grown once), else new.
    fn take_spare(&mut self, len: usize) -> Vec<u8> {
        let fits = self.spare.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity());
        let pick = fits.or_else(|| self.spare.iter().enumerate().max_by_key(|(_, b)| b.capacity())).map(|(i, _)| i);
        match pick {
            Some(i) => {
                let b = self.spare.swap_remove(i);
                self.spare_bytes -= b.capacity();
                b
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
impl Forwarder {
    /// Takes the next payload of the first origin, its backoff ignored, as if sent, and settles
    /// it with `outcome` at `now` (no socket: other modules' tests drive the outbox's state).
    pub(crate) fn test_settle_next(&mut self, outcome: Outcome, now: Instant) {
        self.origins[0].retry_at = None;
        let (ri, body) = self.next_payload(0, now).expect("a payload queued");
        self.origins[0].in_flight = Some((ri, body));
        self.settle(0, outcome, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference model: what the outbox promises, written as plainly as possible.
    #[derive(Default)]
    struct Model {
        queues: Vec<std::collections::VecDeque<(u32, usize)>>,
        budget: usize,
        in_flight: Option<(usize, u32, usize)>,
        next_route: usize,
        delivered: Vec<u32>,
        dropped: Vec<(u32, &'static str)>,
    }

    impl Model {
        fn queued(&self) -> usize {
            self.queues.iter().flatten().map(|p| p.1).sum()
        }
        fn enqueue(&mut self, route: usize, id: u32, size: usize) {
            if size > self.budget {
                self.dropped.push((id, "oversized"));
                return;
            }
            self.make_room(size);
            self.queues[route].push_back((id, size));
        }
        fn make_room(&mut self, need: usize) {
            while self.queued() + need > self.budget {
                // The oldest payload of the fullest queue (the later route on a tie).
                let mut fullest = 0;
                for i in 0..self.queues.len() {
                    if self.queues[i].len() >= self.queues[fullest].len() {
                        fullest = i;
                    }
                }
                let Some((id, _)) = self.queues[fullest].pop_front() else { break };
                self.dropped.push((id, "overflow"));
            }
        }
        fn take(&mut self) -> Option<(usize, u32)> {
            if self.in_flight.is_some() {
                return None;
            }
            let n = self.queues.len();
            let r = (0..n).map(|k| (self.next_route + k) % n).find(|&i| !self.queues[i].is_empty())?;
            let (id, size) = self.queues[r].pop_front()?;
            self.next_route = (r + 1) % n;
            self.in_flight = Some((r, id, size));
            Some((r, id))
        }
        fn settle(&mut self, status: u16) {
            let Some((r, id, size)) = self.in_flight.take() else { return };
            match status {
                200..=299 => self.delivered.push(id),
                400 => self.dropped.push((id, "bad_request")),
                403 => self.dropped.push((id, "forbidden")),
                413 => self.dropped.push((id, "too_large")),
                _ => {
                    self.queues[r].push_front((id, size));
                    self.make_room(0);
                }
            }
        }
    }

    fn payload_id(b: &[u8]) -> u32 {
        u32::from_le_bytes(b[..4].try_into().unwrap())
    }

    /// Random sequences of enqueue, send, status and time advance: the outbox delivers, drops
    /// and orders exactly as the model, backs off as promised, and keeps its accounting.
    #[test]
    fn the_outbox_behaves_like_its_reference_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..300 {
            let budget = 200 + rand(2000) as usize;
            let mut f = fwd(budget);
            let mut m = Model { queues: vec![Default::default(); 2], budget, ..Model::default() };
            let mut now = Instant::now();
            let mut next_id = 0u32;
            for step in 0..200 {
                match rand(10) {
                    0..=3 => {
                        let route = rand(2) as usize;
                        let size = 4 + rand(budget as u64 / 3 + 1) as usize;
                        let mut body = next_id.to_le_bytes().to_vec();
                        body.resize(size.max(4), 0);
                        f.enqueue(route, &body);
                        m.enqueue(route, next_id, body.len());
                        next_id += 1;
                    }
                    4..=5 => {
                        let real = f.next_payload(0, now);
                        let backing_off = f.origins[0].retry_at.is_some_and(|t| now < t);
                        let model = if backing_off { None } else { m.take() };
                        assert_eq!(real.as_ref().map(|(r, b)| (*r, payload_id(b))), model, "case {case} step {step}");
                        if let Some((ri, body)) = real {
                            f.origins[0].in_flight = Some((ri, body));
                        }
                    }
                    6..=8 => {
                        let status = [202, 202, 400, 403, 413, 404, 429, 500, 503][rand(9) as usize];
                        if f.origins[0].in_flight.is_some() {
                            let failures = f.origins[0].failures;
                            let outcome = Outcome::Response {
                                status,
                                retry_after: None,
                                body_excerpt: String::new(),
                                body: Vec::new(),
                            };
                            f.settle(0, outcome, now);
                            m.settle(status);
                            if !(200..300).contains(&status) && ![400, 403, 413].contains(&status) {
                                // Backoff: between half and all of base × 2^(failures), capped.
                                let step = BACKOFF_BASE.saturating_mul(1 << failures.min(16)).min(BACKOFF_CAP);
                                let d = f.origins[0].retry_at.unwrap() - now;
                                assert!(d >= step / 2 && d <= step, "case {case}: backoff {d:?} for step {step:?}");
                            }
                        }
                    }
                    _ => now += Duration::from_millis(rand(70_000)),
                }
                // Same deliveries, drops and order; the accounting holds.
                let delivered: u64 = (0..2).map(|r| f.stats(r).delivered).sum();
                assert_eq!(delivered as usize, m.delivered.len(), "case {case} step {step}");
                let drops: u64 = (0..2).map(|r| f.stats(r).dropped.total()).sum();
                assert_eq!(drops as usize, m.dropped.len(), "case {case} step {step}");
                for r in 0..2 {
                    let ids: Vec<u32> = f.routes[r].queue.iter().map(|b| payload_id(b)).collect();
                    let want: Vec<u32> = m.queues[r].iter().map(|p| p.0).collect();
                    assert_eq!(ids, want, "case {case} step {step}: queue {r}");
                    let s = f.stats(r);
                    let queued = f.routes[r].queue.len() as u64
                        + u64::from(f.origins[0].in_flight.as_ref().is_some_and(|(ri, _)| *ri == r));
                    assert_eq!(s.enqueued, s.delivered + s.dropped.total() + queued, "case {case} step {step}");
                }
                assert!(f.queued <= budget);
                assert_eq!(f.queued, m.queued());
            }
        }
    }

    fn fwd(budget: usize) -> Forwarder {
        let base = Url::parse("http://127.0.0.1:9/stsAgent").unwrap();
        let spec = |name, path| RouteSpec::core_json(name, &base, path);
        Forwarder::new(vec![spec("series", "/api/v1/series"), spec("intake", "/intake/")], "k y", None, budget, 10, 7)
            .unwrap()
    }

    /// A 413 on a splittable payload queues its two halves first; a half is never split again.
    #[test]
    fn a_413_splits_once() {
        fn halves(b: &[u8]) -> Option<[Vec<u8>; 2]> {
            (b.len() >= 2).then(|| [b[..b.len() / 2].to_vec(), b[b.len() / 2..].to_vec()])
        }
        let base = Url::parse("http://127.0.0.1:9/stsAgent").unwrap();
        let spec = RouteSpec { split: Some(halves), ..RouteSpec::core_json("series", &base, "/api/v1/series") };
        let mut f = Forwarder::new(vec![spec], "k", None, 1000, 10, 7).unwrap();
        let now = Instant::now();
        let resp =
            |status| Outcome::Response { status, retry_after: None, body_excerpt: String::new(), body: Vec::new() };
        f.enqueue(0, &[1, 2, 3, 4]);
        f.enqueue(0, &[9; 6]);
        let (ri, body) = f.next_payload(0, now).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        f.settle(0, resp(413), now);
        let q: Vec<Vec<u8>> = f.routes[0].queue.iter().cloned().collect();
        assert_eq!(q, vec![vec![1, 2], vec![3, 4], vec![9; 6]], "the halves go first, in order");
        let s = f.stats(0);
        assert_eq!((s.split, s.enqueued, s.dropped.total()), (1, 3, 0));
        // The first half is refused again: dropped, not split again.
        let (ri, body) = f.next_payload(0, now).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        f.settle(0, resp(413), now);
        assert_eq!(f.stats(0).dropped.too_large, 1);
        // The second half fails (503) and is retried: still a half, still never split.
        let (ri, body) = f.next_payload(0, now).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        f.settle(0, resp(503), now);
        assert_eq!(f.routes[0].split_front, 1);
        f.origins[0].retry_at = None;
        let (ri, body) = f.next_payload(0, now).unwrap();
        assert_eq!(body, vec![3, 4]);
        f.origins[0].in_flight = Some((ri, body));
        f.settle(0, resp(413), now);
        let s = f.stats(0);
        assert_eq!((s.split, s.dropped.too_large, s.enqueued), (1, 2, 3));
        // The untouched payload can still be split.
        let (ri, body) = f.next_payload(0, now).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        f.settle(0, resp(413), now);
        assert_eq!(f.stats(0).split, 2);
        let s = f.stats(0);
        assert_eq!(s.enqueued, s.delivered + s.dropped.total() + f.routes[0].queue.len() as u64);
    }

    /// A retry in flight leaves no deadline in the past (issue 14: the loop polled with a zero
    /// timeout for the whole wait on a hung retry): the backoff counts only while the origin
    /// waits to send, and is the deadline then.
    #[test]
    fn a_retry_in_flight_leaves_no_deadline_in_the_past() {
        let mut f = fwd(1000);
        let t0 = Instant::now();
        let resp =
            |status| Outcome::Response { status, retry_after: None, body_excerpt: String::new(), body: Vec::new() };
        f.enqueue(0, &[1; 10]);
        f.enqueue(1, &[2; 10]);
        let (ri, body) = f.next_payload(0, t0).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        f.settle(0, resp(503), t0);
        // Backing off with payloads queued: the backoff's end is the deadline.
        let retry_at = f.origins[0].retry_at.unwrap();
        assert!(retry_at > t0);
        assert_eq!(f.deadline(), Some(retry_at));
        // The backoff ends and the retry goes out; another payload still waits behind it.
        let t1 = retry_at + Duration::from_secs(1);
        let (ri, body) = f.next_payload(0, t1).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        assert!(!f.routes[0].queue.is_empty() || !f.routes[1].queue.is_empty());
        // While it is in flight, nothing is due before `t1` (the client's own request timeout
        // is the only deadline a real send sets).
        assert!(f.deadline().is_none_or(|d| d > t1), "deadline {:?} is in the past", f.deadline().map(|d| t1 - d));
        // It fails again: a new backoff, in the future, is the deadline again.
        f.settle(0, resp(503), t1);
        let d = f.deadline().unwrap();
        assert!(d > t1);
        // A backoff with nothing queued for its origin is no deadline at all.
        f.routes.iter_mut().for_each(|r| r.queue.clear());
        f.queued = 0;
        assert_eq!(f.deadline(), None);
    }

    /// Issue 14: a process-agent chunk refused with 413 is split and its group grows by one:
    /// the halves and the group's chunks still queued behind them all say `groupSize` 4 (of 3);
    /// the next cycle's group is untouched, and the accounting holds.
    #[test]
    fn a_413_split_grows_the_group_of_every_chunk_still_queued() {
        use crate::encode::proto;
        let chunk = |id: i32, items: u64| {
            let mut p = Vec::new();
            for n in 0..items {
                proto::message(&mut p, 3, |m| proto::uint64(m, 2, n + 1));
            }
            proto::int32(&mut p, 6, id);
            proto::int32(&mut p, 7, 3);
            let mut body = Vec::new();
            crate::encode::process_msg::header(&mut body, 12, 0);
            body.extend_from_slice(&zstd::bulk::compress(&p, 1).unwrap());
            body
        };
        let group = |b: &[u8]| {
            let raw = zstd::stream::decode_all(&b[16..]).unwrap();
            let (mut id, mut size, mut pos) = (0, 0, 0);
            while pos < raw.len() {
                let key = raw[pos];
                pos += 1;
                let mut v = 0u64;
                let mut shift = 0;
                loop {
                    let byte = raw[pos];
                    pos += 1;
                    v |= u64::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 {
                        break;
                    }
                }
                match (key >> 3, key & 7) {
                    (6, 0) => id = v as i64 as i32,
                    (7, 0) => size = v as i32,
                    (_, 2) => pos += v as usize,
                    _ => {}
                }
            }
            (id, size)
        };
        let base = Url::parse("http://127.0.0.1:9/stsAgent").unwrap();
        let spec = RouteSpec::process_agent("collector", &base, "/api/v1/collector", "h");
        let mut f = Forwarder::new(vec![spec], "k", None, 1 << 20, 10, 7).unwrap();
        let now = Instant::now();
        for body in [chunk(7, 4), chunk(7, 2), chunk(7, 2), chunk(8, 2)] {
            f.enqueue(0, &body);
        }
        let (ri, body) = f.next_payload(0, now).unwrap();
        f.origins[0].in_flight = Some((ri, body));
        f.settle(
            0,
            Outcome::Response { status: 413, retry_after: None, body_excerpt: String::new(), body: Vec::new() },
            now,
        );
        let groups: Vec<(i32, i32)> = f.routes[0].queue.iter().map(|b| group(b)).collect();
        assert_eq!(groups, [(7, 4), (7, 4), (7, 4), (7, 4), (8, 3)], "halves, the rest of group 7, then group 8");
        assert_eq!(f.queued, f.routes[0].queue.iter().map(Vec::len).sum::<usize>(), "bytes re-counted");
        let s = f.stats(0);
        assert_eq!((s.split, s.enqueued), (1, 5));
        assert_eq!(s.enqueued, s.delivered + s.dropped.total() + f.routes[0].queue.len() as u64);
    }

    /// Issue 19 review: a route is failing only while something of it waits for the receiver.
    /// A 503 then a 400 that drops its only payload leaves it at rest (health would otherwise
    /// fail forever on an idle route); with another payload still queued it stays failing; a
    /// 403 keeps it failing though empty (every payload will be refused); a route the budget
    /// emptied rests at the next pump.
    #[test]
    fn a_route_is_failing_only_while_something_of_it_waits() {
        let t0 = Instant::now();
        let resp =
            |status| Outcome::Response { status, retry_after: None, body_excerpt: String::new(), body: Vec::new() };
        fn intake(f: &Forwarder, now: Instant) -> RouteHealth<'_> {
            f.health(now).nth(1).unwrap()
        }
        let mut f = fwd(1000);
        f.enqueue(1, &[1; 10]);
        f.test_settle_next(resp(503), t0);
        assert_eq!(intake(&f, t0).failing_since, Some(t0));
        let t1 = t0 + Duration::from_secs(2);
        f.test_settle_next(resp(400), t1);
        let h = intake(&f, t1);
        assert_eq!((h.failing_since, h.queued), (None, 0), "the 400 left nothing of it to deliver");
        assert_eq!((h.last_error, h.last_error_at), (Some("HTTP 400: rejected as malformed"), Some(t1)));
        assert_eq!(f.stats(1).dropped.bad_request, 1);

        // Another payload of the route still queued: the 400 says nothing about it.
        let mut f = fwd(1000);
        f.enqueue(1, &[1; 10]);
        f.test_settle_next(resp(503), t0);
        f.enqueue(1, &[2; 10]);
        f.test_settle_next(resp(400), t1);
        assert_eq!((intake(&f, t1).failing_since, intake(&f, t1).queued), (Some(t0), 1));
        assert!(!f.rest(1), "one queued: not at rest");
        assert_eq!(intake(&f, t1).failing_since, Some(t0));

        // 403: failing though empty, until a delivery on the route.
        let mut f = fwd(1000);
        f.enqueue(1, &[1; 10]);
        f.test_settle_next(resp(403), t0);
        assert!(f.rest(1));
        assert_eq!((intake(&f, t1).failing_since, intake(&f, t1).queued), (Some(t0), 0));
        f.enqueue(1, &[1; 10]);
        f.test_settle_next(resp(202), t1);
        assert_eq!(intake(&f, t1).failing_since, None);

        // Emptied by the budget while failing: at rest (and not failing) at the next pump.
        let mut f = fwd(100);
        f.enqueue(1, &[1; 40]);
        f.test_settle_next(resp(503), t0);
        f.enqueue(0, &[2; 50]);
        assert_eq!(intake(&f, t1).failing_since, Some(t0));
        f.enqueue(0, &[3; 20]);
        assert_eq!(f.stats(1).dropped.overflow, 1, "one payload each: the later route's went");
        assert!(f.routes[1].queue.is_empty());
        assert!(f.rest(1));
        assert_eq!(intake(&f, t1).failing_since, None);
    }

    #[test]
    fn routes_share_one_origin_and_carry_the_key_in_the_query() {
        let f = fwd(100);
        assert_eq!(f.origins.len(), 1);
        assert_eq!(f.routes[0].target, "/stsAgent/api/v1/series?api_key=k%20y");
        assert_eq!(f.routes[1].target, "/stsAgent/intake/?api_key=k%20y");
    }

    #[test]
    fn budget_drops_oldest_of_the_fullest_queue() {
        let mut f = fwd(100);
        f.enqueue(0, &[1; 40]);
        f.enqueue(0, &[2; 40]);
        f.enqueue(1, &[3; 10]);
        assert_eq!(f.queued, 90);
        f.enqueue(1, &[4; 30]);
        assert_eq!(f.stats(0).dropped.overflow, 1);
        assert_eq!(f.routes[0].queue.front().unwrap()[0], 2);
        assert_eq!(f.queued, 80);
        f.enqueue(1, &[5; 101]);
        assert_eq!(f.stats(1).dropped.oversized, 1);
        assert!(!f.is_idle());
    }

    #[test]
    fn status_classification_and_backoff() {
        let mut f = fwd(1000);
        let now = Instant::now();
        let resp =
            |status| Outcome::Response { status, retry_after: None, body_excerpt: String::new(), body: Vec::new() };
        f.origins[0].in_flight = Some((0, vec![0; 10]));
        f.settle(0, resp(202), now);
        assert_eq!(f.stats(0).delivered, 1);
        for (i, s) in [400, 403, 413].into_iter().enumerate() {
            f.origins[0].in_flight = Some((1, vec![0; 10]));
            f.settle(0, resp(s), now);
            assert_eq!(f.stats(1).dropped.total(), i as u64 + 1);
        }
        let d = f.stats(1).dropped;
        assert_eq!((d.bad_request, d.forbidden, d.too_large), (1, 1, 1));
        assert!(f.key_rejected, "403 flags the key");
        assert!(f.is_idle());
        // 404 is retried (a proxy or region misconfigured for a while), not dropped.
        f.origins[0].in_flight = Some((1, vec![0; 10]));
        f.settle(0, resp(404), now);
        assert_eq!(f.stats(1).dropped.total(), 3);
        assert_eq!(f.routes[1].queue.len(), 1);
        f.routes[1].queue.clear();
        f.queued = 0;
        f.origins[0].retry_at = None;
        f.origins[0].failures = 0;

        let mut last = Duration::ZERO;
        for n in 1..=8u32 {
            f.origins[0].in_flight = Some((0, vec![0; 10]));
            f.settle(0, resp(503), now);
            let d = f.origins[0].retry_at.unwrap() - now;
            let step = BACKOFF_BASE.saturating_mul(1 << (n - 1)).min(BACKOFF_CAP);
            assert!(d >= step / 2 && d <= step, "attempt {n}: {d:?}");
            assert!(d >= last / 2);
            last = d;
            f.routes[0].queue.clear();
            f.queued = 0;
        }
        assert_eq!(f.stats(0).retries, 8);
        f.origins[0].in_flight = Some((0, vec![0; 10]));
        f.settle(
            0,
            Outcome::Response { status: 429, retry_after: Some(30), body_excerpt: String::new(), body: Vec::new() },
            now,
        );
        assert!(f.origins[0].retry_at.unwrap() - now >= Duration::from_secs(30));
    }
}
