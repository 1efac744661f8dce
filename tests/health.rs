//! `sts-agent health`, `sts-agent status` and `--once`'s summary, against the real agent binary
//! on this host: a healthy agent passes; a stopped one (SIGSTOP) fails within 2 s; a receiver
//! that refuses everything passes while the outbox backs off and fails once the retry horizon
//! is over; `/live` and `/ready` on `STS_HEALTH_PORT`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `sts-agent <args>` as a client with `env` (the agent's own configuration).
fn client(args: &[&str], env: &[(&str, String)]) -> (Output, Duration) {
    let t = Instant::now();
    let mut cmd = Command::new(AGENT);
    cmd.args(args).env_clear().stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out, t.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits until `sts-agent health` passes (the agent is up and its checks ran).
fn wait_healthy(env: &[(&str, String)]) -> String {
    let t = Instant::now();
    loop {
        let (out, _) = client(&["health"], env);
        if out.status.success() {
            return text(&out.stdout);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never healthy:\n{}{}", text(&out.stdout), text(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET path` on loopback `port`: `(status, body)`.
fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_at(std::net::Ipv4Addr::LOCALHOST.into(), port, path)
}

/// This host's address on its default route (not loopback): what a remote peer looks like.
fn non_loopback_ip() -> std::net::IpAddr {
    let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    u.connect("192.0.2.254:9")
        .or_else(|_| u.connect("8.8.8.8:53"))
        .expect("a route off this host (to test a remote peer)");
    let ip = u.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "no non-loopback address: {ip}");
    ip
}

/// `GET path` at `ip:port`: `(status, body)`.
fn http_get_at(ip: std::net::IpAddr, port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect((ip, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_string())
}

#[test]
fn a_running_agent_passes_and_a_stopped_one_fails_within_two_seconds() {
    let port = free_port().to_string();
    let env = [("STS_APM_RECEIVER_PORT", port.clone()), ("STS_USE_DOGSTATSD", "false".into())];
    let agent =
        drained(spawn_agent(&["--dry-run"], &[("STS_APM_RECEIVER_PORT", &port), ("STS_USE_DOGSTATSD", "false")]));
    let report = wait_healthy(&env);
    for want in [
        "PASS loop: answered",
        "PASS check host: last ran",
        "PASS check process: last ran",
        &format!("PASS trace-intake: listening on 127.0.0.1:{port}"),
        "PASS endpoints: dry run",
    ] {
        assert!(report.contains(want), "{want:?} missing:\n{report}");
    }
    assert!(!report.contains("FAIL"), "{report}");

    // The readable status report and the JSON.
    let (out, _) = client(&["status"], &env);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}{}", text(&out.stderr));
    for want in [
        "sts-agent ",
        "\nChecks\n",
        "  host ",
        " series;",
        "\nEndpoints\n  dry run",
        "\nReceiver features\n  core            not_asked: none",
        "\nIntakes\n  traces ",
        "\n  opentelemetry ",
    ] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
    let (out, _) = client(&["status", "--json"], &env);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert!(v["checks"]["host"]["runs"].as_u64().unwrap() >= 1, "{v}");

    // Stopped: the kernel still accepts the connection, nobody answers; the command gives up in time.
    let pid = nix::unistd::Pid::from_raw(agent.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (out, took) = client(&["health"], &env);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(s.starts_with("FAIL loop: no answer from 127.0.0.1:"), "{s}");
    // Running again: healthy again.
    wait_healthy(&env);
}

#[test]
fn a_receiver_refusing_everything_fails_health_after_the_horizon() {
    let receiver = Receiver::start(false, vec![503]);
    let url = receiver.url("/stsAgent");
    let (port, health_port) = (free_port().to_string(), free_port());
    let env = [
        ("STS_APM_RECEIVER_PORT", port.clone()),
        ("STS_USE_DOGSTATSD", "false".to_string()),
        ("STS_PROCESS_AGENT_ENABLED", "disabled".to_string()),
        ("STS_STS_URL", url.clone()),
        ("STS_API_KEY", "0123456789abcdef".to_string()),
        ("STS_HEALTH_RETRY_HORIZON", "4".to_string()),
        ("STS_HEALTH_PORT", health_port.to_string()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _agent = drained(spawn_agent(&[], &env_refs));
    // The first refusal: within the horizon the endpoint is in documented backoff.
    let t = Instant::now();
    while !receiver.requests().iter().any(|r| r.target.starts_with("/stsAgent/api/v1/series")) {
        assert!(t.elapsed() < Duration::from_secs(20), "the agent sent nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The receiver records a request before it answers: wait (within the horizon) for the agent
    // to have taken the 503 in.
    let s = poll_health(&env, Duration::from_secs(4), |s| s.contains("PASS endpoint series: failing for "));
    assert!(s.contains("in backoff"), "{s}");
    assert!(s.contains("HTTP 503"), "the last error is named: {s}");
    // /live answers while the loop does; /ready follows the verdict.
    assert_eq!(http_get(health_port, "/live").0, 200);
    assert_eq!(http_get(health_port, "/ready").0, 200);

    // Past the horizon (4 s), still refused: unhealthy, and the endpoint says why.
    std::thread::sleep(Duration::from_secs(5));
    let (out, took) = client(&["health"], &env);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(s.contains("FAIL endpoint series: nothing delivered for "), "{s}");
    assert!(s.contains("longer than the 4s retry horizon"), "{s}");
    assert!(s.contains("PASS check host"), "the checks still run: {s}");
    let (code, body) = http_get(health_port, "/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("FAIL endpoint series"), "{body}");
    // A remote peer gets the verdict, not the report (endpoints, errors, timings).
    let (code, body) = http_get_at(non_loopback_ip(), health_port, "/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("not ready") && !body.contains("endpoint"), "{body}");
    assert_eq!(http_get(health_port, "/live").0, 200);
    assert_eq!(http_get(health_port, "/status").0, 404, "the health port serves health only");
}

/// Polls `sts-agent health` until `done(stdout)` or `limit`; returns the last stdout.
fn poll_health(env: &[(&str, String)], limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let (out, _) = client(&["health"], env);
        let s = text(&out.stdout);
        if done(&s) {
            return s;
        }
        assert!(t.elapsed() < limit, "not seen within {limit:?}:\n{s}{}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a [`receiver_by_path`] answered, in order: `(when, path, status)`.
type Answered = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String, u16)>>>;

/// A receiver stand-in that answers by path: a path of `script` gets its statuses in turn (the
/// last repeats), every other path `otherwise` (keep-alive HTTP/1.1, Content-Length bodies, as
/// the agent sends them). Returns its base URL and what it answered.
fn receiver_by_path(script: &[(&'static str, &'static [u16])], otherwise: u16) -> (String, Answered) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answered = Answered::default();
    let log = answered.clone();
    let script = script.to_vec();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let (log, script) = (log.clone(), script.clone());
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if r.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("").split('?').next().unwrap_or("");
                    let status = {
                        let mut log = log.lock().unwrap();
                        let status = match script.iter().find(|(p, _)| path.ends_with(p)) {
                            Some((p, statuses)) => {
                                let n = log.iter().filter(|(_, q, _)| q.ends_with(p)).count();
                                statuses[n.min(statuses.len() - 1)]
                            }
                            None => otherwise,
                        };
                        log.push((Instant::now(), path.to_string(), status));
                        status
                    };
                    if write!(w, "HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, answered)
}

/// Health is judged per route: series delivering does not hide another route of the same
/// receiver that never does.
#[test]
fn a_route_that_never_delivers_fails_even_when_another_route_delivers() {
    let (url, _) = receiver_by_path(&[("/api/v1/series", &[200])], 503);
    let port = free_port().to_string();
    let env = [
        ("STS_APM_RECEIVER_PORT", port.clone()),
        ("STS_USE_DOGSTATSD", "false".to_string()),
        ("STS_PROCESS_AGENT_ENABLED", "disabled".to_string()),
        ("STS_STS_URL", url),
        ("STS_API_KEY", "0123456789abcdef".to_string()),
        ("STS_HEALTH_RETRY_HORIZON", "4".to_string()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _agent = drained(spawn_agent(&[], &env_refs));
    // The host metadata (`intake`) is refused from the start; past the 4 s horizon it fails
    // (series' next payload is 15 s away, so series has nothing waiting yet).
    let s = poll_health(&env, Duration::from_secs(14), |s| s.contains("FAIL endpoint intake: nothing delivered for "));
    assert!(s.contains("PASS endpoint series: delivered "), "{s}");
    assert!(s.contains("HTTP 503"), "{s}");
    let (out, _) = client(&["health"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
}

/// Issue 19 review: a route whose retried payload a final answer then dropped (503, then 400:
/// "says nothing about the endpoint") has nothing left to deliver; idle afterwards, it passes
/// past the horizon (it failed forever before, "0 queued"), its line naming the 400 and its age,
/// as `sts-agent status` does.
#[test]
fn a_route_whose_retried_payload_a_400_dropped_passes_past_the_horizon() {
    const HORIZON: u64 = 4;
    let (url, answered) = receiver_by_path(&[("/api/v0.2/traces", &[503, 400])], 200);
    let port = free_port().to_string();
    let env = [
        ("STS_APM_RECEIVER_PORT", port.clone()),
        ("STS_USE_DOGSTATSD", "false".to_string()),
        ("STS_PROCESS_AGENT_ENABLED", "disabled".to_string()),
        ("STS_STS_URL", url),
        ("STS_API_KEY", "0123456789abcdef".to_string()),
        ("STS_HEALTH_RETRY_HORIZON", HORIZON.to_string()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _agent = drained(spawn_agent(&[], &env_refs));
    wait_healthy(&env);
    // One trace: one payload on the traces route (flushed 5 s later).
    let v04: &[u8] = include_bytes!("fixtures/traces/ddtrace-4.16-v0.4.msgpack");
    let mut client_conn = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    write!(
        client_conn,
        "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
        v04.len()
    )
    .unwrap();
    client_conn.write_all(v04).unwrap();
    assert_eq!(read_response(&mut client_conn).0, 200);
    let traces = || -> Vec<(Instant, u16)> {
        let log = answered.lock().unwrap();
        log.iter().filter(|(_, p, _)| p.ends_with("/api/v0.2/traces")).map(|(t, _, s)| (*t, *s)).collect()
    };
    let t = Instant::now();
    while traces().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "the payload was not retried: {:?}", traces());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (refused_at, statuses) = (traces()[0].0, traces().iter().map(|(_, s)| *s).collect::<Vec<_>>());
    assert_eq!(statuses, [503, 400]);
    // The receiver logs before it answers: wait for the agent to have taken the 400 in.
    poll_health(&env, Duration::from_secs(3), |s| s.contains("HTTP 400: rejected as malformed"));
    // Past the horizon counted from the 503, the route idle (nothing more on it).
    std::thread::sleep((refused_at + Duration::from_secs(HORIZON + 2)).saturating_duration_since(Instant::now()));
    let (out, _) = client(&["health"], &env);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    let line = s.lines().find(|l| l.contains("endpoint traces:")).expect(&s);
    assert!(line.starts_with("PASS endpoint traces: nothing delivered yet (0 queued); last error "), "{s}");
    assert!(line.ends_with("s ago: HTTP 400: rejected as malformed"), "{s}");
    assert!(s.contains("PASS endpoint series: delivered "), "{s}");
    assert_eq!(traces().len(), 2, "nothing more was sent on traces");
    // The readable status names the error with its age too.
    let (out, _) = client(&["status"], &env);
    let st = text(&out.stdout);
    let traces_block = &st[st.find("  traces          ").expect(&st)..];
    let err_line = traces_block.lines().find(|l| l.contains("last error")).expect(traces_block);
    assert!(
        err_line.trim_start().starts_with("last error ") && err_line.contains(" ago: HTTP 400: rejected as malformed"),
        "{st}"
    );
}

/// Serves `reply` to every connection on a loopback port (read the request head, answer, close):
/// a stranger on the port the health command asks. Returns the port.
fn stranger(reply: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let _ = s.write_all(reply);
        }
    });
    port
}

/// Issue 19 review: with no agent running, whatever else answers on the port the command asks
/// (a web server answering 200 "ok", something not HTTP) is no healthy agent: exit 1, and the
/// line says what answered; on STS_HEALTH_PORT and on the trace intake's port alike.
#[test]
fn something_else_answering_on_the_port_fails_and_is_named() {
    // As the review's Python server answered: HTTP/1.1, 200, "ok".
    let web = stranger(
        b"HTTP/1.1 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
    let ssh = stranger(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    for (port, env_var, apm, what) in [
        (
            web,
            "STS_HEALTH_PORT",
            "false",
            "HTTP 200 from \"SimpleHTTP/0.6 Python/3.11.2\", \"ok\" (no X-Sts-Agent: health header: not the agent's report)",
        ),
        (
            web,
            "STS_APM_RECEIVER_PORT",
            "true",
            "HTTP 200 from \"SimpleHTTP/0.6 Python/3.11.2\", \"ok\" (no X-Sts-Agent: health header: not the agent's report)",
        ),
        (ssh, "STS_HEALTH_PORT", "false", "not an HTTP reply: \"SSH-2.0-OpenSSH_9.2p1 Debian-2\""),
    ] {
        let env = [("STS_APM_ENABLED", apm.to_string()), (env_var, port.to_string())];
        let (out, took) = client(&["health"], &env);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {s}");
        assert_eq!(s, format!("FAIL loop: something else answers on 127.0.0.1:{port}: {what}\n"), "{env:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}

#[test]
fn health_works_through_the_health_port_without_the_trace_intake() {
    let health_port = free_port();
    let env = [
        ("STS_APM_ENABLED", "false".to_string()),
        ("STS_USE_DOGSTATSD", "false".to_string()),
        ("STS_HEALTH_PORT", health_port.to_string()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _agent = drained(spawn_agent(&["--dry-run"], &env_refs));
    let report = wait_healthy(&env);
    assert!(report.contains("PASS trace-intake: disabled"), "{report}");
    // /status lives on the trace intake only: status says so rather than "404".
    let (out, _) = client(&["status"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/status is served on the trace intake only"), "{}", text(&out.stderr));
}

/// With a Unix socket, health and status go through it, and the trace-intake line names it.
#[test]
fn health_over_the_unix_socket_names_it() {
    let dir = std::env::temp_dir().join(format!("sts-health-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let sock = dir.join("apm.sock").display().to_string();
    let port = free_port().to_string();
    let env = [
        ("STS_APM_RECEIVER_PORT", port.clone()),
        ("STS_APM_RECEIVER_SOCKET", sock.clone()),
        ("STS_USE_DOGSTATSD", "false".to_string()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _agent = drained(spawn_agent(&["--dry-run"], &env_refs));
    let report = wait_healthy(&env);
    assert!(report.contains(&format!("PASS trace-intake: listening on 127.0.0.1:{port} and unix:{sock}")), "{report}");
}

/// APM off and no STS_HEALTH_PORT: /health is still served, on 127.0.0.1:5555 (an ECS health
/// check must have something to ask).
#[test]
fn without_apm_or_a_health_port_health_is_on_the_loopback_default() {
    // The prerequisite: nobody else holds the port (another agent would answer in our place).
    drop(std::net::TcpListener::bind("127.0.0.1:5555").expect("127.0.0.1:5555 is free for this test"));
    let env = [("STS_APM_ENABLED", "false".to_string()), ("STS_USE_DOGSTATSD", "false".to_string())];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _agent = drained(spawn_agent(&["--dry-run"], &env_refs));
    let report = wait_healthy(&env);
    assert!(report.contains("PASS trace-intake: disabled"), "{report}");
    // Loopback only.
    assert!(std::net::TcpStream::connect((non_loopback_ip(), 5555)).is_err(), "5555 is loopback-only");
}

/// A configured STS_HEALTH_PORT that cannot be bound stops the agent with exit 2 and says why;
/// `--once` does not open it.
#[test]
fn a_health_port_in_use_is_a_configuration_error() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let env = [("STS_HEALTH_PORT", port.as_str()), ("STS_USE_DOGSTATSD", "false"), ("STS_APM_ENABLED", "false")];
    let out = run_agent(&["--dry-run"], &env, Duration::from_secs(30));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("STS_HEALTH_PORT={port}: cannot listen on 0.0.0.0:{port}")), "{err}");
    let out = run_agent(&["--once", "--dry-run"], &env, Duration::from_secs(60));
    assert!(out.status.success(), "--once does not open the health port: {}", text(&out.stderr));
}

#[test]
fn once_ends_with_a_summary_on_stderr() {
    let out = run_agent(&["--once", "--dry-run"], &[("STS_USE_DOGSTATSD", "false")], Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let summary = &err[err.find("sts-agent --once: printed on stdout (dry run)").expect(&err)..];
    // Each endpoint line agrees with what was printed on stdout.
    let stdout = text(&out.stdout);
    for endpoint in ["/api/v1/series", "/intake/", "/api/v1/collector"] {
        let printed = stdout.lines().filter(|l| l.contains(&format!("\"endpoint\":\"{endpoint}\""))).count();
        assert!(printed > 0, "{endpoint} printed nothing");
        let line = summary.lines().find(|l| l.trim_start().starts_with(&format!("{endpoint} "))).expect(summary);
        assert!(line.contains(&format!(" {printed} payload(s), ")), "{line} vs {printed} printed");
    }
    let found = summary.lines().find(|l| l.starts_with("found: 1 host")).expect(summary);
    let processes: u64 = found.split(", ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(processes > 1, "this host runs processes: {found}");
    for want in [" containers, ", " connections reported, ", " spans"] {
        assert!(found.contains(want), "{want:?} missing: {found}");
    }
}

/// `--once` with a receiver: the summary says "sent", and each endpoint's delivered and dropped
/// counts agree with what the receiver answered (the first request refused with 400).
#[test]
fn once_summary_in_sent_mode_counts_delivered_and_dropped() {
    let receiver = Receiver::start(false, vec![400, 200]);
    let url = receiver.url("/stsAgent");
    let env = [
        ("STS_USE_DOGSTATSD", "false"),
        ("STS_STS_URL", url.as_str()),
        ("STS_API_KEY", "0123456789abcdef"),
        ("STS_PROCESS_AGENT_ENABLED", "disabled"),
    ];
    let out = run_agent(&["--once"], &env, Duration::from_secs(60));
    let err = text(&out.stderr);
    assert!(out.status.code().is_some(), "{err}");
    let summary = &err[err.find("sts-agent --once: sent\n").expect(&err)..];
    let (mut delivered, mut dropped) = (0, 0);
    for line in summary.lines().filter(|l| l.contains(" payload(s), ")) {
        let n = |word: &str| -> u64 {
            let (before, _) = line.split_once(word).expect(line);
            before.rsplit(' ').next().unwrap().parse().expect(line)
        };
        assert_eq!(n(" payload(s)"), n(" delivered") + n(" dropped"), "{line}");
        delivered += n(" delivered");
        dropped += n(" dropped");
    }
    let answered = receiver.requests();
    assert_eq!(dropped, answered.iter().filter(|r| r.status == 400).count() as u64, "{summary}");
    assert_eq!(delivered, answered.iter().filter(|r| r.status == 200).count() as u64, "{summary}");
    assert_eq!(dropped, 1, "{summary}");
    assert!(delivered >= 1, "{summary}");
}
