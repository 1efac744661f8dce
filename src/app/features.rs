//! Receiver feature discovery (spec/protocol.md E4, E7): `GET <STS_STS_URL>/features?api_key=…`
//! as the core agent asks, and `GET <STS_PROCESS_AGENT_URL>/features` as the process agent asks,
//! each on its own keep-alive client of the transport (non-blocking, in the loop). One probe per
//! distinct base URL: when the process agent's URL is the core's (the fallback), the core probe's
//! answer serves both. Any HTTP reply is final: a 2xx JSON object is the set, any other status
//! (404: the receiver has no such endpoint) means "no features" for the run, as the original
//! takes it, and nothing more is asked. A failure without an HTTP answer (network, TLS, timeout)
//! is asked again 5 s later during the first minute since start, as the process agent polls
//! until it gets an answer (a receiver starting after the agent is heard from within seconds),
//! then a minute later; a 2xx body that is not a features object (an answer, but not a usable
//! one) a minute later. One request in flight per probe, never more.
//! `STS_FEATURES` fixes the set instead (no request at all).

use crate::config::FeaturesSetting;
use crate::encode::json;
use crate::outbox::PROCESS_AGENT_VERSION;
use crate::parse::features::{self, Features};
use crate::transport::client::{HttpClient, Outcome};
use crate::url::{percent_encode, Url};
use mio::{Registry, Token};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After a failure without an HTTP answer, during the first minute since start: the next
/// request (the process agent's `featuresTicker`, 5 s until any HTTP response).
pub const RETRY_EARLY: Duration = Duration::from_secs(5);
/// How long from start failures are asked again every [`RETRY_EARLY`].
pub const EARLY_WINDOW: Duration = Duration::from_secs(60);
/// After that, or after a malformed 2xx reply: the next request.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// When to ask again after a failure without an HTTP answer at `now`, for a probe created at
/// `started`: every 5 s in the first minute, then every minute.
pub fn retry_after_failure(started: Instant, now: Instant) -> Duration {
    if now.saturating_duration_since(started) < EARLY_WINDOW {
        RETRY_EARLY
    } else {
        RETRY_AFTER
    }
}

/// Where a probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Not asked yet, or the first request is in flight.
    Pending,
    /// The last request got no usable answer: no features until one comes.
    NoAnswer,
    /// The receiver replied with a status other than 2xx: no features, final for the run.
    Refused,
    /// The receiver answered (or `STS_FEATURES` set it).
    Known(Features),
}

pub(super) struct FeatureProbe {
    /// `core` or `process_agent`.
    pub name: &'static str,
    client: HttpClient,
    /// Base path + `/features` (+ `?api_key=`): never logged.
    target: String,
    headers: Vec<(&'static str, String)>,
    pub state: Discovery,
    /// When the probe was made (the agent's start): failures are asked again sooner in the first minute.
    started: Instant,
    next_at: Option<Instant>,
    pub requests: u64,
    /// The last reply that was not the answer, or the last failure (no key in it).
    pub last_error: Option<String>,
    /// The last failure was asked again at the early (5 s) pace: the log says when that ends.
    last_early: bool,
    /// The API key in every form it can take in text, scrubbed from failure details.
    secrets: Vec<String>,
}

impl FeatureProbe {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        base: &Url,
        tls: Option<Arc<rustls::ClientConfig>>,
        token: Token,
        headers: Vec<(&'static str, String)>,
        api_key: &str,
        key_in_query: bool,
        now: Instant,
    ) -> Result<FeatureProbe, String> {
        let client = HttpClient::new(base.clone(), tls, token)?.keeping_bodies();
        let mut target = format!("{}/features", base.base_path);
        if key_in_query {
            target.push_str("?api_key=");
            target.push_str(&percent_encode(api_key));
        }
        Ok(FeatureProbe {
            name,
            client,
            target,
            headers,
            state: Discovery::Pending,
            started: now,
            next_at: Some(now),
            requests: 0,
            last_error: None,
            last_early: false,
            secrets: crate::log::secret_forms(api_key),
        })
    }

    /// The features in effect: the answer, or none (the defaults) until there is one.
    pub fn features(&self) -> Features {
        match self.state {
            Discovery::Known(f) => f,
            _ => Features::default(),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        [self.next_at, self.client.deadline()].into_iter().flatten().min()
    }

    fn on_deadline(&mut self, registry: &Registry, api_key: &str, now: Instant) {
        if let Some(o) = self.client.on_timeout(registry, now) {
            self.settle(registry, o, now);
        }
        if self.next_at.is_none_or(|t| t > now) || self.client.is_busy() {
            return;
        }
        self.next_at = None;
        self.requests += 1;
        let mut headers: smallvec::SmallVec<[(&str, &str); 8]> = smallvec::SmallVec::new();
        headers.push(("sts-api-key", api_key));
        headers.extend(self.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let sent = self.client.send(registry, "GET", &self.target, &headers, b"", now);
        drop(headers);
        match sent {
            // Edge-triggered readiness: a kept-alive socket gives no new event, so write now.
            Ok(()) => {
                if let Some(o) = self.client.on_ready(registry, now) {
                    self.settle(registry, o, now);
                }
            }
            Err(f) => self.settle(registry, Outcome::Failed(f), now),
        }
    }

    fn on_event(&mut self, registry: &Registry, token: Token, now: Instant) {
        if token == self.client.token() {
            if let Some(o) = self.client.on_ready(registry, now) {
                self.settle(registry, o, now);
            }
        }
    }

    fn settle(&mut self, registry: &Registry, outcome: Outcome, now: Instant) {
        let (why, delay) = match outcome {
            Outcome::Response { status, body, .. } if (200..300).contains(&status) => match features::parse(&body) {
                Ok(f) => {
                    let known = self.state == Discovery::Known(f);
                    self.state = Discovery::Known(f);
                    self.last_error = None;
                    if !known {
                        info!("{} /features: {}", self.name, Listed(f));
                    }
                    // The answer is kept for the run: the connection is no longer needed.
                    self.client.close(registry);
                    return;
                }
                // An answer, but not a usable one: asked again, at the receiver's pace.
                Err(e) => {
                    (format!("HTTP {status} with a reply that is not a features object: {}", e.what), RETRY_AFTER)
                }
            },
            Outcome::Response { status, .. } => {
                let why = if status == 404 {
                    "HTTP 404: the receiver has no /features endpoint".to_string()
                } else {
                    format!("HTTP {status}")
                };
                info!("{} /features: {why}; sending as to a receiver without features (not asking again)", self.name);
                self.last_error = Some(why);
                self.state = Discovery::Refused;
                self.next_at = None;
                self.client.close(registry);
                return;
            }
            Outcome::Failed(f) => {
                (crate::log::scrub(&f.to_string(), &self.secrets), retry_after_failure(self.started, now))
            }
        };
        // Logged when the reason changes (or the pace does), not at every 5 s attempt.
        let early = delay < RETRY_AFTER;
        if self.last_error.as_deref() != Some(why.as_str()) || self.last_early != early {
            info!(
                "{} /features: {why}; sending as to a receiver without features, asking again in {}s{}",
                self.name,
                delay.as_secs(),
                if early { " (every 5 s in the first minute since start)" } else { "" }
            );
        }
        self.last_early = early;
        self.last_error = Some(why);
        if self.state == Discovery::Pending {
            self.state = Discovery::NoAnswer;
        }
        self.next_at = Some(now + delay);
    }
}

/// A feature set as a log line: the advertised names, or `none`.
struct Listed(Features);

impl std::fmt::Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut any = false;
        for (name, on) in self.0.by_name() {
            if on {
                write!(f, "{}{name}", if any { ", " } else { "" })?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Both probes (either may be absent: a dry run, `STS_FEATURES`, no process agent), or the
/// configured set.
pub(super) struct FeatureDiscovery {
    pub core: Option<FeatureProbe>,
    pub process_agent: Option<FeatureProbe>,
    /// `STS_FEATURES`: the set every endpoint is taken to have.
    pub configured: Option<Features>,
    /// The process agent's base URL is the core's: the core probe answers for both.
    process_agent_shares_core: bool,
    api_key: String,
}

impl FeatureDiscovery {
    /// `tokens`: two, the core probe's and the process agent's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        setting: &FeaturesSetting,
        sts_url: Option<&Url>,
        process_agent_url: Option<&Url>,
        api_key: &str,
        hostname: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        tokens: std::ops::Range<usize>,
        now: Instant,
    ) -> FeatureDiscovery {
        let mut d = FeatureDiscovery {
            core: None,
            process_agent: None,
            configured: None,
            process_agent_shares_core: false,
            api_key: api_key.into(),
        };
        if let FeaturesSetting::Fixed(f) = setting {
            info!("STS_FEATURES: taking the receiver to have {} (not asking /features)", Listed(*f));
            d.configured = Some(*f);
            return d;
        }
        let version = env!("CARGO_PKG_VERSION").to_string();
        if let Some(base) = sts_url {
            // E4: as the core agent's transactional client sends it (key in the query too).
            // `sts-hostname` holds the base URL, as the original's client sends it (E3).
            let headers = vec![
                ("sts-hostname", base.to_string()),
                ("sts-agent-version", version.clone()),
                ("User-Agent", format!("sts-agent/{version}")),
            ];
            match FeatureProbe::new("core", base, tls.clone(), Token(tokens.start), headers, api_key, true, now) {
                Ok(p) => d.core = Some(p),
                Err(e) => warn!("core /features: not asked: {e}"),
            }
        }
        if let (Some(pa), Some(core)) = (process_agent_url, sts_url) {
            if pa == core && d.core.is_some() {
                info!("process agent /features: same base URL as the core agent's, one request serves both");
                d.process_agent_shares_core = true;
                return d;
            }
        }
        if let Some(base) = process_agent_url {
            // E7: the process agent's headers, `content-encoding: identity`, no key in the query.
            let headers = vec![
                ("Content-Encoding", "identity".to_string()),
                ("sts-hostname", hostname.to_string()),
                ("sts-processagentversion", PROCESS_AGENT_VERSION.to_string()),
            ];
            match FeatureProbe::new("process_agent", base, tls, Token(tokens.start + 1), headers, api_key, false, now) {
                Ok(p) => d.process_agent = Some(p),
                Err(e) => warn!("process agent /features: not asked: {e}"),
            }
        }
        d
    }

    /// Nothing configured and nothing to ask (a dry run): the defaults.
    pub fn none() -> FeatureDiscovery {
        FeatureDiscovery {
            core: None,
            process_agent: None,
            configured: None,
            process_agent_shares_core: false,
            api_key: String::new(),
        }
    }

    /// What the process agent's payloads follow.
    pub fn process_agent(&self) -> Features {
        let probe = if self.process_agent_shares_core { &self.core } else { &self.process_agent };
        self.configured.or_else(|| probe.as_ref().map(FeatureProbe::features)).unwrap_or_default()
    }

    /// What the core agent's payloads follow.
    pub fn core(&self) -> Features {
        self.configured.or_else(|| self.core.as_ref().map(FeatureProbe::features)).unwrap_or_default()
    }

    /// The process agent's first request has not been answered yet (`--once` waits a moment).
    pub fn process_agent_pending(&self) -> bool {
        let probe = if self.process_agent_shares_core { &self.core } else { &self.process_agent };
        probe.as_ref().is_some_and(|p| p.state == Discovery::Pending)
    }

    fn probes_mut(&mut self) -> impl Iterator<Item = &mut FeatureProbe> {
        self.core.iter_mut().chain(self.process_agent.iter_mut())
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.core.iter().chain(self.process_agent.iter()).filter_map(FeatureProbe::deadline).min()
    }

    pub fn on_deadline(&mut self, registry: &Registry, now: Instant) {
        let key = std::mem::take(&mut self.api_key);
        for p in self.probes_mut() {
            p.on_deadline(registry, &key, now);
        }
        self.api_key = key;
    }

    pub fn on_event(&mut self, registry: &Registry, token: Token, now: Instant) {
        for p in self.probes_mut() {
            p.on_event(registry, token, now);
        }
    }

    pub fn close(&mut self, registry: &Registry) {
        for p in self.probes_mut() {
            p.client.close(registry);
        }
    }

    /// `/status`'s `"features"` object: per probe its state, requests and last error, and the
    /// set in effect for each side.
    pub fn status_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"configured\":");
        out.extend_from_slice(if self.configured.is_some() { b"true" } else { b"false" });
        let pa_probe = if self.process_agent_shares_core { &self.core } else { &self.process_agent };
        for (name, probe, set, own) in [
            ("core", &self.core, self.core(), true),
            ("process_agent", pa_probe, self.process_agent(), !self.process_agent_shares_core),
        ] {
            out.push(b',');
            json::str(out, name);
            out.extend_from_slice(b":{\"state\":");
            let state = match (probe, self.configured) {
                (_, Some(_)) => "configured",
                (None, None) => "not_asked",
                (Some(p), None) => match p.state {
                    Discovery::Pending => "pending",
                    Discovery::NoAnswer => "no_answer",
                    Discovery::Refused => "refused",
                    Discovery::Known(_) => "answered",
                },
            };
            json::str(out, state);
            out.extend_from_slice(b",\"requests\":");
            // A shared probe's requests are counted once, under `core`.
            json::u64(out, probe.as_ref().filter(|_| own).map_or(0, |p| p.requests));
            if !own {
                out.extend_from_slice(b",\"answered_by\":\"core\"");
            }
            out.extend_from_slice(b",\"last_error\":");
            match probe.as_ref().and_then(|p| p.last_error.as_deref()) {
                Some(e) => json::str(out, e),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"features\":{");
            for (i, (f, on)) in set.by_name().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::str(out, f);
                out.extend_from_slice(if *on { b":true" } else { b":false" });
            }
            out.extend_from_slice(b"}}");
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure without an HTTP answer is asked again 5 s later during the first minute since
    /// start (a receiver coming up after the agent is heard from within seconds), then a minute
    /// later (no storm against a receiver that stays away).
    #[test]
    fn failures_are_asked_again_every_5_s_in_the_first_minute_then_every_minute() {
        let t0 = Instant::now();
        let at = |s: u64| retry_after_failure(t0, t0 + Duration::from_secs(s));
        for s in [0, 1, 5, 30, 59] {
            assert_eq!(at(s), Duration::from_secs(5), "{s} s after start");
        }
        for s in [60, 61, 300, 86_400] {
            assert_eq!(at(s), Duration::from_secs(60), "{s} s after start");
        }
        // A clock read before the probe's start (it cannot happen, but must not panic).
        assert_eq!(retry_after_failure(t0 + Duration::from_secs(1), t0), Duration::from_secs(5));
    }
}
