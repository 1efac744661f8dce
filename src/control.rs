//! The commands that ask a running agent (`sts-agent status`, `sts-agent health`): where its
//! local API is, one bounded request there, and the readable status report. The agent answers
//! `/status` and `/health` on its trace intake (TCP port or Unix socket) and, when
//! `STS_HEALTH_PORT` is set, `/health` there too (for local peers only). No shell, no file
//! written: it works in the `FROM scratch` image with a read-only root.

use crate::config::Config;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the agent's local API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The agent's loopback-only `/health` port when `STS_APM_ENABLED=false` and `STS_HEALTH_PORT`
/// is unset (Datadog's `health_port` examples use 5555).
pub const LOCAL_HEALTH_PORT: u16 = 5555;

/// Where to ask for `path`: `/health` prefers `STS_HEALTH_PORT` (it exists whether or not the
/// trace intake does), then `LOCAL_HEALTH_PORT` when the trace intake is off; otherwise the
/// trace intake's Unix socket, else its port on loopback. `None`: the agent does not serve
/// `path` in this configuration (`/status` is on the trace intake only).
pub fn target(cfg: &Config, path: &str) -> Option<Target> {
    let health_port = match (cfg.health_port, cfg.apm_enabled) {
        (Some(p), _) => Some(p),
        (None, false) => Some(LOCAL_HEALTH_PORT),
        (None, true) => None,
    };
    if let (Some(p), "/health") = (health_port, path) {
        return Some(Target::Tcp(SocketAddr::from(([127, 0, 0, 1], p))));
    }
    if !cfg.apm_enabled {
        return None;
    }
    Some(match &cfg.apm_socket {
        Some(p) => Target::Unix(p.clone()),
        None => Target::Tcp(SocketAddr::from(([127, 0, 0, 1], cfg.apm_port))),
    })
}

/// The replies this client reads are small; a larger one is cut here (memory bounded).
const MAX_REPLY: u64 = 4 << 20;

/// An HTTP reply: its status, head (status line and headers) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The first header called `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` at `target`, the whole exchange within `limit`. A reply that is not HTTP/1.x is
/// an `InvalidData` error (something else answers there).
pub fn get(target: &Target, path: &str, limit: Duration) -> io::Result<Reply> {
    let deadline = Instant::now() + limit;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {limit:?}")))
    };
    let mut response = Vec::new();
    // A stopped agent's kernel still accepts the connection: the read's timeout is what fails.
    let mut exchange = |s: &mut dyn ReadWrite| -> io::Result<()> {
        s.write_all(request.as_bytes())?;
        let mut buf = [0u8; 8192];
        loop {
            s.set_timeout(Some(left()?))?;
            match s.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.len() as u64 > MAX_REPLY {
                        return Err(io::Error::other("reply larger than 4 MiB"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {limit:?}")))
                }
                Err(e) => return Err(e),
            }
        }
    };
    match target {
        Target::Tcp(a) => {
            let mut s = TcpStream::connect_timeout(a, left()?)?;
            s.set_write_timeout(Some(left()?))?;
            exchange(&mut s)?
        }
        Target::Unix(p) => {
            let mut s = connect_unix(p, &left)?;
            s.set_write_timeout(Some(left()?))?;
            exchange(&mut s)?
        }
    }
    parse_reply(&response)
}

/// A whole reply (read to its end) as a [`Reply`]; not HTTP/1.x: `InvalidData`.
pub fn parse_reply(response: &[u8]) -> io::Result<Reply> {
    let text = String::from_utf8_lossy(response);
    let not_http = || io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP reply: {:?}", excerpt(&text)));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(not_http)?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5).filter(|_| r.get(1..2) == Some(" ")))
        .and_then(|c| c.parse().ok())
        .ok_or_else(not_http)?;
    Ok(Reply { status, head: head.to_string(), body: body.to_string() })
}

/// The first line of `text`, at most 60 characters: what a FAIL line quotes of a stranger.
fn excerpt(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    line.char_indices().nth(60).map_or(line, |(i, _)| &line[..i])
}

/// `Ok` when `reply` is the running agent's own health report: marked with
/// [`HEALTH_MARK`](crate::transport::http_server::HEALTH_MARK), one `PASS`/`FAIL` line per
/// component beginning with the loop's, and a status that agrees with them (200 when all pass,
/// 503 otherwise). Anything else is something other than the agent answering on the port it
/// asks (another program holding it while the agent could not bind it, or the agent not
/// running); `Err` then says what answered.
pub fn health_report(reply: &Reply) -> Result<(), String> {
    let (mark, value) = crate::transport::http_server::HEALTH_MARK;
    let lines_ok = reply.body.starts_with("PASS loop: ")
        && reply.body.ends_with('\n')
        && reply.body.lines().all(|l| l.starts_with("PASS ") || l.starts_with("FAIL "));
    let failing = reply.body.lines().any(|l| l.starts_with("FAIL "));
    let status_ok = matches!((reply.status, failing), (200, false) | (503, true));
    if reply.header(mark) == Some(value) && lines_ok && status_ok {
        return Ok(());
    }
    let mut what = format!("HTTP {}", reply.status);
    if let Some(server) = reply.header("Server") {
        let _ = write!(what, " from {:?}", excerpt(server));
    }
    let _ = write!(what, ", {:?}", excerpt(&reply.body));
    if reply.header(mark) != Some(value) {
        let _ = write!(what, " (no {mark}: {value} header: not the agent's report)");
    } else {
        let _ = write!(what, " (not a report of PASS/FAIL lines)");
    }
    Err(what)
}

/// Connects to a Unix socket within what `left` allows. `UnixStream::connect` blocks while a
/// stopped agent's listen backlog is full; a non-blocking connect answers `EAGAIN` at once then
/// (a Unix socket's connect never completes later, so it is retried until the deadline).
fn connect_unix(path: &std::path::Path, left: &dyn Fn() -> io::Result<Duration>) -> io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path)?;
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        match rustix::net::connect_unix(&fd, &addr) {
            Ok(()) => {
                let s = UnixStream::from(fd);
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                std::thread::sleep(left()?.min(Duration::from_millis(20)));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

trait ReadWrite: Read + Write {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl ReadWrite for TcpStream {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl ReadWrite for UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// `1h 2m 3s`, `2m 0s`, `5s`.
fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m {}s", s / 3600, s % 3600 / 60, s % 60),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn f(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The sum of an object's counters (drops by reason).
fn sum(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_object).map_or(0, |o| o.values().filter_map(Value::as_u64).sum())
}

/// What each check's `last_count` counts.
fn produced(check: &str) -> &'static str {
    match check {
        "host" | "docker" => "series",
        "process" => "processes reported",
        "connections" => "connections reported",
        _ => "items",
    }
}

/// The readable status report (`sts-agent status`) from `/status`'s JSON; fields it does not
/// know are left to `--json`. `now_unix`: the wall clock, for "last ran N ago".
pub fn render_status(s: &Value, now_unix: u64) -> String {
    let mut o = String::new();
    let host = s.get("hostname").and_then(Value::as_str).unwrap_or("?");
    let version = s.get("version").and_then(Value::as_str).unwrap_or("?");
    let _ = writeln!(o, "sts-agent {version} on {host}, up {}", duration(u(s, "uptime_s")));
    if s.get("api_key_rejected") == Some(&Value::Bool(true)) {
        let _ = writeln!(o, "!! the receiver rejected the API key (HTTP 403): check STS_API_KEY");
    }

    let _ = writeln!(o, "\nChecks");
    match s.get("checks").and_then(Value::as_object) {
        Some(checks) if !checks.is_empty() => {
            for (name, c) in checks {
                if u(c, "runs") == 0 {
                    let _ = writeln!(o, "  {name:<12} not run yet");
                    continue;
                }
                let ago = now_unix.saturating_sub(u(c, "last_run_unix"));
                let _ = writeln!(
                    o,
                    "  {name:<12} {} runs, last {} ago: {:.1} ms ({:.1} ms CPU), {} {}; {:.0} ms CPU in all",
                    u(c, "runs"),
                    duration(ago),
                    f(c, "last_duration_ms"),
                    f(c, "last_cpu_ms"),
                    u(c, "last_count"),
                    produced(name),
                    f(c, "total_cpu_ms")
                );
            }
        }
        _ => {
            let _ = writeln!(o, "  none enabled");
        }
    }
    if let Some(p) = s.get("process_source").filter(|p| p.is_object()) {
        // In the agent's order of reasons, not the JSON map's.
        let by_reason = &p["listings_by_reason"];
        let reasons: Vec<String> = crate::sources::new_pids::Why::ALL
            .iter()
            .map(|w| (w.name(), u(by_reason, w.name())))
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  processes    {} known, {} left unread last cycle (not run since read); {} listings of /proc ({}), {} probes{}; {} skipped for want of descriptors, {} descriptor counts",
            u(p, "processes"),
            u(p, "unread_last_cycle"),
            u(p, "listings"),
            if reasons.is_empty() { "none".to_string() } else { reasons.join(", ") },
            u(p, "probes"),
            if p.get("probe_usable").and_then(Value::as_bool) == Some(false) { " (probing unavailable)" } else { "" },
            u(p, "skipped_no_fds_total"),
            u(p, "descriptor_counts_total")
        );
    }

    let _ = writeln!(o, "\nEndpoints");
    match s.get("endpoints").and_then(Value::as_object) {
        None => {
            let _ = writeln!(o, "  dry run: payloads are printed, not sent (STS_STS_URL unset or --dry-run)");
        }
        Some(eps) => {
            for (name, e) in eps {
                let url = e.get("url").and_then(Value::as_str).unwrap_or("?");
                let _ = writeln!(o, "  {name:<15} {url}");
                let _ = writeln!(
                    o,
                    "  {:<15} {} delivered of {}, {} queued ({}), {} dropped, {} retries",
                    "",
                    u(e, "delivered"),
                    u(e, "enqueued"),
                    u(e, "queued"),
                    bytes(u(e, "queued_bytes")),
                    sum(e.get("dropped")),
                    u(e, "retries"),
                );
                let backoff = f(e, "backoff_s");
                if backoff > 0.0 {
                    let _ = writeln!(o, "  {:<15} backing off: next attempt in {backoff:.1}s", "");
                }
                if let Some(err) = e.get("last_error").and_then(Value::as_str) {
                    // With its age: an error long past (delivered since) reads as such.
                    match e.get("last_error_age_s").and_then(Value::as_u64) {
                        Some(age) => {
                            let _ = writeln!(o, "  {:<15} last error {} ago: {err}", "", duration(age));
                        }
                        None => {
                            let _ = writeln!(o, "  {:<15} last error: {err}", "");
                        }
                    }
                }
            }
        }
    }

    if let Some(fs) = s.get("features").filter(|f| !f.is_null()) {
        let _ = writeln!(o, "\nReceiver features");
        for who in ["core", "process_agent"] {
            let Some(p) = fs.get(who) else { continue };
            let state = p.get("state").and_then(Value::as_str).unwrap_or("?");
            let on: Vec<&str> = p
                .get("features")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter(|(_, v)| v.as_bool() == Some(true)).map(|(k, _)| k.as_str()).collect())
                .unwrap_or_default();
            let on = if on.is_empty() { "none".to_string() } else { on.join(", ") };
            let by = if p.get("answered_by").is_some() { " (the core's answer)" } else { "" };
            let _ = writeln!(o, "  {who:<15} {state}{by}: {on}");
            if let Some(err) = p.get("last_error").and_then(Value::as_str) {
                let _ = writeln!(o, "  {:<15} last error: {err}", "");
            }
        }
    }

    let _ = writeln!(o, "\nIntakes");
    match s.get("trace_intake").filter(|t| !t.is_null()) {
        None => {
            let _ = writeln!(o, "  traces       off");
        }
        Some(t) => {
            let _ = writeln!(
                o,
                "  traces       {} requests, {} traces, {} spans, {} payloads sent, {} rejected, {} traces dropped, {} open connections",
                u(t, "requests"),
                u(t, "traces"),
                u(t, "spans"),
                u(t, "flushed_payloads"),
                sum(t.get("rejected")),
                u(t, "dropped_traces"),
                u(t, "connections_open"),
            );
            if let Some(ot) = t.get("opentelemetry").filter(|t| !t.is_null()) {
                let _ = writeln!(
                    o,
                    "  opentelemetry {} OTLP requests, {} /open-telemetry requests, {} spans rejected, {} attributes dropped",
                    u(ot, "otlp_requests"),
                    u(ot, "open_telemetry_requests"),
                    u(ot, "otlp_rejected_spans"),
                    u(ot, "otlp_dropped_attributes"),
                );
            }
        }
    }
    match s.get("dogstatsd").filter(|t| !t.is_null()) {
        None => {
            let _ = writeln!(o, "  dogstatsd    off");
        }
        Some(d) if d.get("disabled").is_some() => {
            let why = d["disabled"].as_str().unwrap_or("?");
            let _ = writeln!(o, "  dogstatsd    disabled: {why}");
        }
        Some(d) => {
            let _ = writeln!(
                o,
                "  dogstatsd    {} packets, {} metrics, {} events, {} service checks, {} contexts, {} parse errors, {} dropped",
                u(d, "udp_packets") + u(d, "uds_packets"),
                u(d, "metrics"),
                u(d, "events"),
                u(d, "service_checks"),
                u(d, "contexts"),
                sum(d.get("parse_errors")),
                sum(d.get("drops")),
            );
        }
    }
    // A DogStatsD socket that did not open, with why (its variables and what they take).
    if let Some(l) = s.get("dogstatsd").and_then(|d| d.get("listeners")).and_then(Value::as_object) {
        for (name, x) in l {
            if let Some(e) = x.get("error").and_then(Value::as_str) {
                let _ = writeln!(o, "  dogstatsd    {name} listener down: {e}");
            }
        }
    }
    if let Some(e) = s.get("docker_events").filter(|t| !t.is_null()) {
        let connected = e.get("connected") == Some(&Value::Bool(true));
        let _ = writeln!(
            o,
            "  docker       events stream {}, {} received, {} dropped, {} bundles",
            if connected { "connected" } else { "not connected" },
            u(e, "received"),
            u(e, "dropped"),
            u(e, "bundles"),
        );
    }
    if let Some(h) = s.get("http_capture").filter(|t| !t.is_null()) {
        let _ = writeln!(
            o,
            "  http         {} namespaces, {} packets, {} responses, {} ring drops",
            u(h, "namespaces"),
            u(h, "packets"),
            u(h, "responses"),
            u(h, "ring_drops"),
        );
    }
    o
}

/// Seconds since the epoch (the status report's instants are wall-clock).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap()
    }

    #[test]
    fn health_prefers_the_health_port_and_status_the_trace_intake() {
        let loopback = |p| Some(Target::Tcp(SocketAddr::from(([127, 0, 0, 1], p))));
        let c = cfg(&[]);
        assert_eq!(target(&c, "/health"), loopback(8126));
        let c = cfg(&[("STS_HEALTH_PORT", "5555")]);
        assert_eq!(target(&c, "/health"), loopback(5555));
        assert_eq!(target(&c, "/status"), loopback(8126));
        let c = cfg(&[("STS_APM_RECEIVER_SOCKET", "/run/apm.sock")]);
        assert_eq!(target(&c, "/status"), Some(Target::Unix("/run/apm.sock".into())));
        // APM off: health on the loopback default or STS_HEALTH_PORT; no /status anywhere.
        let c = cfg(&[("STS_APM_ENABLED", "false")]);
        assert_eq!(target(&c, "/health"), loopback(LOCAL_HEALTH_PORT));
        assert_eq!(target(&c, "/status"), None);
        let c = cfg(&[("STS_APM_ENABLED", "false"), ("STS_HEALTH_PORT", "6000")]);
        assert_eq!(target(&c, "/health"), loopback(6000));
        assert_eq!(target(&c, "/status"), None);
    }

    /// Issue 19 review: what answers on the health port is believed only when it is the agent's
    /// report (the real one passes: `app::health`'s test); a stranger is named, not printed.
    #[test]
    fn health_takes_only_the_agents_report() {
        let reply = |raw: &str| parse_reply(raw.as_bytes()).unwrap();
        let report = "PASS loop: answered (up 3s)\nFAIL check host: last ran 99s ago\n";
        let marked = |status: &str, body: &str| {
            format!("HTTP/1.1 {status}\r\nX-Sts-Agent: health\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        };
        assert_eq!(health_report(&reply(&marked("503 Service Unavailable", report))), Ok(()));
        assert_eq!(health_report(&reply(&marked("200 OK", "PASS loop: answered (up 3s)\n"))), Ok(()));

        // A Python http.server answering `ok`: HTTP/1.0, no mark.
        let python = reply("HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\nok\n");
        let why = health_report(&python).unwrap_err();
        assert_eq!(
            why,
            "HTTP 200 from \"SimpleHTTP/0.6 Python/3.11.2\", \"ok\" (no X-Sts-Agent: health header: not the agent's report)"
        );
        // Lines that look like a report, unmarked; marked but not a report; a verdict that
        // disagrees with its lines.
        assert!(health_report(&reply(&format!("HTTP/1.1 200 OK\r\n\r\n{report}"))).is_err());
        assert!(health_report(&reply(&marked("200 OK", "ok\n"))).unwrap_err().contains("not a report"));
        assert!(health_report(&reply(&marked("200 OK", report))).is_err(), "200 with a FAIL line");
        assert!(health_report(&reply(&marked("503 Service Unavailable", "PASS loop: x\n"))).is_err());
        assert!(health_report(&reply(&marked("200 OK", "PASS check host: x\nPASS loop: x\n"))).is_err());
        // Not HTTP at all: InvalidData, with the first line quoted (60 characters at most).
        let e = parse_reply(format!("SSH-2.0-OpenSSH_9.2p1 {}\r\n", "x".repeat(100)).as_bytes()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), format!("not an HTTP reply: \"SSH-2.0-OpenSSH_9.2p1 {}\"", "x".repeat(38)));
        assert_eq!(python.header("server"), Some("SimpleHTTP/0.6 Python/3.11.2"));
    }

    #[test]
    fn the_readable_report_names_each_check_endpoint_and_intake() {
        let s: Value = serde_json::from_str(
            r#"{"version":"0.1.0","hostname":"h1","uptime_s":3725,"api_key_rejected":false,
            "endpoints":{"series":{"url":"https://r/api/v1/series","enqueued":5,"delivered":3,
              "dropped":{"overflow":1,"too_large":0},"queued":1,"queued_bytes":2048,"retries":4,
              "split":0,"last_error":"HTTP 503 \"busy\"","last_error_age_s":125,"backoff_s":7.5}},
            "checks":{"host":{"runs":2,"last_run_unix":990,"last_duration_ms":1.25,"last_count":57,
              "last_cpu_ms":1.0,"total_cpu_ms":2.0}},
            "trace_intake":{"requests":9,"payloads":4,"traces":8,"spans":21,"dropped_traces":0,
              "flushed_payloads":2,"rejected":{"decode":1,"busy":2},"connections_open":1,
              "opentelemetry":{"open_telemetry_requests":1,"otlp_requests":6,"otlp_rejected_spans":2,
              "otlp_dropped_attributes":0}},
            "features":{"configured":false,
              "core":{"state":"answered","requests":1,"last_error":null,
                "features":{"health-states":true,"incremental-topology":false,"upgrade-to-multi-metrics":true}},
              "process_agent":{"state":"answered","requests":0,"answered_by":"core","last_error":null,
                "features":{"health-states":true,"incremental-topology":false,"upgrade-to-multi-metrics":true}}},
            "http_capture":null,"docker_events":null,"dogstatsd":null}"#,
        )
        .unwrap();
        let text = render_status(&s, 1000);
        for want in [
            "sts-agent 0.1.0 on h1, up 1h 2m 5s",
            "host         2 runs, last 10s ago: 1.2 ms (1.0 ms CPU), 57 series",
            "series          https://r/api/v1/series",
            "3 delivered of 5, 1 queued (2.0 KiB), 1 dropped, 4 retries",
            "backing off: next attempt in 7.5s",
            "last error 2m 5s ago: HTTP 503 \"busy\"",
            "traces       9 requests, 8 traces, 21 spans, 2 payloads sent, 3 rejected",
            "dogstatsd    off",
            "opentelemetry 6 OTLP requests, 1 /open-telemetry requests, 2 spans rejected",
            "core            answered: health-states, upgrade-to-multi-metrics",
            "process_agent   answered (the core's answer): health-states, upgrade-to-multi-metrics",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("API key"), "{text}");
    }
}
