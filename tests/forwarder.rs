//! The forwarder under faults, against a scripted real TLS receiver, watched through the agent's
//! own `/status` report, with the accounting invariant enqueued = delivered + Σdropped + queued
//! checked at every read: a 503 storm then recovery, the status classification (400/403/413
//! dropped or split, 404/429 retried with Retry-After), a reply cut mid-body, a backend that never
//! answers, TLS failures, a 413 split, and a long outage under trace load.

mod common;
use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

struct Agent(Option<Child>);
impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn status(port: u16) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Some(serde_json::from_str(body).expect("status is JSON"))
}

/// enqueued = delivered + Σdropped + queued, for every endpoint.
fn check_invariant(st: &serde_json::Value) {
    for (name, e) in st["endpoints"].as_object().expect("endpoints") {
        let n = |k: &str| e[k].as_u64().unwrap();
        let dropped: u64 = e["dropped"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(n("enqueued"), n("delivered") + dropped + n("queued"), "{name}: {e}");
    }
}

#[test]
fn a_503_storm_then_recovery_delivers_everything_once() {
    let rx = Receiver::start(true, vec![503, 503, 503, 202]);
    let url = rx.url("/stsAgent");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let mut agent = Agent(Some(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", "fwd-test-key-0123456789"),
            ("STS_HOSTNAME", "fwd-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_HOST_CHECK_INTERVAL", "1"),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
            ("STS_APM_RECEIVER_PORT", &port_s),
        ],
    )));
    let start = Instant::now();
    let (mut saw_backoff, mut saw_error, mut last) = (false, false, None);
    loop {
        assert!(start.elapsed() < Duration::from_secs(40), "never recovered: {last:?}");
        std::thread::sleep(Duration::from_millis(200));
        let Some(st) = status(port) else { continue };
        check_invariant(&st);
        let series = &st["endpoints"]["series"];
        saw_backoff |= series["backoff_s"].as_f64().unwrap() > 0.0;
        saw_error |= series["last_error"].as_str().is_some_and(|e| e.contains("503"));
        let settled = st["endpoints"].as_object().unwrap().values().all(|e| e["queued"] == 0);
        let delivered = series["delivered"].as_u64().unwrap();
        last = Some(st.clone());
        if settled && delivered >= 6 {
            break;
        }
    }
    assert!(saw_backoff && saw_error, "the storm showed in /status: {last:?}");
    let st = last.unwrap();
    assert!(st["checks"]["host"]["runs"].as_u64().unwrap() >= 6, "{st}");
    // Each check's CPU time: the last run's is part of the total, and the total is not zero after
    // six runs that read /proc (the thread CPU clock counts nanoseconds).
    let host = &st["checks"]["host"];
    let (last, total) = (host["last_cpu_ms"].as_f64().unwrap(), host["total_cpu_ms"].as_f64().unwrap());
    assert!(last >= 0.0 && total >= last && total > 0.0, "{host}");
    // Allocation counts only come from a counting build (benches/budget.sh builds one).
    assert_eq!(st["allocations"], serde_json::Value::Null, "{st}");
    assert!(host.get("last_allocations").is_none(), "{host}");
    assert_eq!(st["api_key_rejected"], false);
    // `sts-agent status --json` prints the same report.
    let cli = std::process::Command::new(AGENT)
        .args(["status", "--json"])
        .env_clear()
        .env("STS_APM_RECEIVER_PORT", &port_s)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    check_invariant(&printed);
    assert_eq!(printed["hostname"], "fwd-host");

    // Stop, then compare with what the receiver accepted.
    let child = agent.0.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(15));
    assert!(out.status.success());
    let reqs = rx.requests();
    let accepted: Vec<&Request> =
        reqs.iter().filter(|r| r.status == 202 && r.target.starts_with("/stsAgent/api/v1/series")).collect();
    let refused = reqs.iter().filter(|r| r.status == 503).count();
    assert_eq!(refused, 3, "three 503s were served");
    // Each accepted series payload is distinct (nothing delivered twice) and every one the
    // agent enqueued by the last status read is among them.
    let distinct: HashSet<&Vec<u8>> = accepted.iter().map(|r| &r.body).collect();
    assert_eq!(distinct.len(), accepted.len(), "a payload was delivered twice");
    let delivered = st["endpoints"]["series"]["delivered"].as_u64().unwrap() as usize;
    assert!(accepted.len() >= delivered, "{} accepted < {delivered} delivered", accepted.len());
    // The 503'd payloads were retried, not lost: no drops at all.
    for e in st["endpoints"].as_object().unwrap().values() {
        assert!(e["dropped"].as_object().unwrap().values().all(|v| v == 0), "{e}");
    }
}

fn start_agent(url: &str, extra: &[(&str, &str)]) -> (Agent, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let mut env = vec![
        ("STS_STS_URL", url),
        ("STS_API_KEY", "fwd-test-key-0123456789"),
        ("STS_HOSTNAME", "fwd-host"),
        ("STS_HOST_CHECK_INTERVAL", "1"),
        ("STS_PROCESS_AGENT_ENABLED", "disabled"),
        ("STS_APM_RECEIVER_PORT", &port_s),
    ];
    env.extend_from_slice(extra);
    let agent = Agent(Some(spawn_agent(&[], &env)));
    let t = Instant::now();
    while status(port).is_none() {
        assert!(t.elapsed() < Duration::from_secs(15), "no /status");
        std::thread::sleep(Duration::from_millis(50));
    }
    (agent, port)
}

/// Polls `/status` until `done` holds (checking the invariant at every read); returns the last.
fn wait_status(port: u16, secs: u64, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let t = Instant::now();
    loop {
        if let Some(st) = status(port) {
            check_invariant(&st);
            if done(&st) {
                return st;
            }
            assert!(t.elapsed() < Duration::from_secs(secs), "timed out; last status {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn series(st: &serde_json::Value) -> &serde_json::Value {
    &st["endpoints"]["series"]
}

#[test]
fn status_classification_drop_or_retry() {
    // 400, 403 and 413 are dropped at once (never resent); 404 and 429 (Retry-After: 2) are retried.
    let rx = Receiver::start(true, vec![400, 403, 413, 404, 429, 202]);
    let (_agent, port) = start_agent(&rx.url("/stsAgent"), &[("STS_SKIP_SSL_VALIDATION", "true")]);
    // Retry-After: 2 is honoured: right after the 429 the backoff is about 2 s (jitter alone
    // would give at most 2 s only on the third failure of a row).
    let saw_retry_after = std::cell::Cell::new(0.0f64);
    let st = wait_status(port, 40, |st| {
        for e in st["endpoints"].as_object().unwrap().values() {
            if e["last_error"].as_str().is_some_and(|l| l.contains("429")) {
                saw_retry_after.set(saw_retry_after.get().max(e["backoff_s"].as_f64().unwrap()));
            }
        }
        let delivered: u64 =
            st["endpoints"].as_object().unwrap().values().map(|e| e["delivered"].as_u64().unwrap()).sum();
        delivered >= 4
    });
    assert!(saw_retry_after.get() >= 1.0, "backoff after a 429 with Retry-After: 2 was {}", saw_retry_after.get());
    let all = st["endpoints"].as_object().unwrap();
    let sum = |reason: &str| all.values().map(|e| e["dropped"][reason].as_u64().unwrap()).sum::<u64>();
    // A 413 is split once when the payload can be split (series), else dropped (topology):
    // either way it is never resent unchanged.
    let splits: u64 = all.values().map(|e| e["split"].as_u64().unwrap()).sum();
    assert_eq!((sum("bad_request"), sum("forbidden"), sum("too_large") + splits), (1, 1, 1), "{st}");
    assert_eq!(st["api_key_rejected"], true, "a 403 flags the key");
    let reqs = rx.requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..6], &[400, 403, 413, 404, 429, 202]);
    // Series payloads differ from cycle to cycle (the topology payload may not), so they show
    // what was resent: a dropped one never again, a retried one again and then accepted.
    for r in reqs.iter().take(5).filter(|r| r.target.starts_with("/stsAgent/api/v1/series")) {
        let copies = reqs.iter().filter(|o| o.body == r.body).count();
        let accepted = reqs.iter().filter(|o| o.body == r.body && o.status == 202).count();
        match r.status {
            400 | 403 | 413 => assert_eq!(copies, 1, "a payload answered {} was resent", r.status),
            _ => assert_eq!(accepted, 1, "a payload answered {} was not delivered once", r.status),
        }
    }
}

#[test]
fn a_reply_cut_mid_body_is_retried_and_delivered_once() {
    let rx = Receiver::start(true, vec![CUT, 202]);
    let (_agent, port) = start_agent(&rx.url("/stsAgent"), &[("STS_SKIP_SSL_VALIDATION", "true")]);
    let st = wait_status(port, 30, |st| series(st)["delivered"].as_u64().unwrap() >= 3);
    let reqs = rx.requests();
    assert_eq!(reqs[0].status, CUT);
    assert!(st["endpoints"].as_object().unwrap().values().any(|e| e["retries"].as_u64().unwrap() >= 1), "{st}");
    let first = &reqs[0].body;
    assert_eq!(reqs.iter().filter(|r| &r.body == first && r.status == 202).count(), 1, "retried and delivered once");
}

#[test]
fn a_backend_that_never_answers_does_not_stall_collection_or_the_intake() {
    let rx = Receiver::start(true, vec![HANG]);
    let (_agent, port) = start_agent(&rx.url("/stsAgent"), &[("STS_SKIP_SSL_VALIDATION", "true")]);
    let t = Instant::now();
    let first_runs = status(port).unwrap()["checks"]["host"]["runs"].as_u64().unwrap();
    let mut slowest = Duration::ZERO;
    while t.elapsed() < Duration::from_secs(4) {
        let q = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"));
        slowest = slowest.max(q.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = status(port).unwrap();
    check_invariant(&st);
    let runs = st["checks"]["host"]["runs"].as_u64().unwrap() - first_runs;
    assert!(runs >= 3, "host check ran {runs} times in 4 s with the backend hanging");
    assert!(slowest < Duration::from_millis(100), "the intake took {slowest:?}");
    assert!(series(&st)["queued"].as_u64().unwrap() >= 1, "payloads wait: {st}");
    assert!(rx.requests().iter().all(|r| r.status == HANG));
}

#[test]
fn tls_failures_are_retried_with_the_cause_named() {
    // Verification on, and the receiver's CA unknown: refused, kept for retry.
    let rx = Receiver::start(true, vec![202]);
    let (_agent, port) = start_agent(&rx.url("/stsAgent"), &[]);
    let st = wait_status(port, 20, |st| series(st)["retries"].as_u64().unwrap() >= 1);
    let err = series(&st)["last_error"].as_str().unwrap().to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");
    assert_eq!(series(&st)["delivered"], 0);
    assert!(rx.requests().is_empty(), "nothing was sent over an unverified connection");

    // The CA trusted (SSL_CERT_FILE) but the wrong host name: refused too.
    let dir = TempDir::new("tls");
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, &rx.pki.as_ref().unwrap().ca_pem).unwrap();
    let url = rx.url("/stsAgent").replace("127.0.0.1", "localhost");
    let (_agent2, port2) = start_agent(&url, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let st = wait_status(port2, 20, |st| series(st)["retries"].as_u64().unwrap() >= 1);
    let err = series(&st)["last_error"].as_str().unwrap().to_lowercase();
    assert!(err.contains("name") || err.contains("certificate"), "{err}");
    assert!(rx.requests().is_empty());
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines().find_map(|l| l.strip_prefix(key)).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// The backend down for the whole run, under a steady trace load: the outbox stays within its
/// budget (the oldest payloads dropped and counted), RSS within the budget plus a fixed baseline,
/// the accounting exact at every read, and the last log line says what was never sent.
#[test]
fn a_long_outage_under_trace_load_stays_within_the_budget() {
    const BUDGET: u64 = 16 * 1024;
    // A closed port: every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{closed}/stsAgent");
    let budget = BUDGET.to_string();
    let (mut agent, port) = start_agent(&url, &[("STS_FORWARDER_RETRY_QUEUE_MAX_SIZE", &budget)]);
    let pid = agent.0.as_ref().unwrap().id();
    let v04: &[u8] = include_bytes!("fixtures/traces/ddtrace-4.16-v0.4.msgpack");
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
        v04.len()
    );
    let start = Instant::now();
    let mut sent = 0u64;
    let mut last = serde_json::Value::Null;
    let mut resp = [0u8; 1024];
    // 100 payloads of 6 spans per second for 14 s.
    while start.elapsed() < Duration::from_secs(14) {
        client.write_all(head.as_bytes()).unwrap();
        client.write_all(v04).unwrap();
        let n = client.read(&mut resp).unwrap();
        assert!(resp[..n].starts_with(b"HTTP/1.1 200"));
        sent += 1;
        if sent % 50 == 0 {
            let st = status(port).unwrap();
            check_invariant(&st);
            let bytes: u64 =
                st["endpoints"].as_object().unwrap().values().map(|e| e["queued_bytes"].as_u64().unwrap()).sum();
            assert!(bytes <= BUDGET, "{bytes} bytes queued over a {BUDGET} budget");
            last = st;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let peak_kib = vm_kib(pid, "VmHWM:");
    let all = last["endpoints"].as_object().unwrap();
    let overflow: u64 = all.values().map(|e| e["dropped"]["overflow"].as_u64().unwrap()).sum();
    assert!(overflow > 0, "a full outbox dropped its oldest payloads: {last}");
    assert!(all.values().all(|e| e["delivered"] == 0), "{last}");
    assert!(all["series"]["last_error"].as_str().is_some_and(|e| e.contains("refused")), "{last}");
    assert!(last["trace_intake"]["spans"].as_u64().unwrap() >= sent * 6 / 2);
    // A fixed baseline (the agent with its trace path busy) plus the budget.
    assert!(peak_kib <= 16 * 1024 + BUDGET / 1024, "peak RSS {peak_kib} KiB");
    // SIGTERM: the last line counts what was never sent.
    let child = agent.0.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(15));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap_or("");
    assert!(line.contains("exiting:") && line.contains("undelivered") && line.contains(" 0 delivered"), "{line}");
    eprintln!("outage: {sent} trace payloads in, peak RSS {peak_kib} KiB; {line}");
}

#[test]
fn a_413_series_payload_is_split_once_and_both_halves_delivered() {
    let rx = Receiver::start(true, vec![413, 202]);
    let (_agent, port) = start_agent(&rx.url("/stsAgent"), &[("STS_SKIP_SSL_VALIDATION", "true")]);
    let st = wait_status(port, 20, |st| series(st)["delivered"].as_u64().unwrap() >= 3);
    assert_eq!(series(&st)["split"], 1);
    assert!(series(&st)["dropped"].as_object().unwrap().values().all(|v| v == 0), "{st}");
    let reqs = rx.requests();
    let series_reqs: Vec<&Request> = reqs.iter().filter(|r| r.target.starts_with("/stsAgent/api/v1/series")).collect();
    assert_eq!(series_reqs[0].status, 413);
    let names =
        |r: &Request| -> Vec<String> { r.json()["series"].as_array().unwrap().iter().map(|s| s.to_string()).collect() };
    let whole = names(series_reqs[0]);
    assert!(whole.len() >= 2);
    let (a, b) = (names(series_reqs[1]), names(series_reqs[2]));
    assert!(series_reqs[1].status == 202 && series_reqs[2].status == 202);
    assert!(!a.is_empty() && !b.is_empty());
    assert_eq!([a, b].concat(), whole, "the two halves carry exactly the refused payload's series");
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Issue 14: the first request answered 503, the retry never answered. While the retry hangs
/// (with another payload queued behind it) the loop must sleep on the socket and the request's
/// timeout, not poll with a zero timeout because the spent backoff stayed in the past: the agent's
/// CPU over a few seconds of the wait is under 1 % of a core.
#[test]
fn a_hung_retry_leaves_the_loop_idle() {
    let rx = Receiver::start(true, vec![503, HANG]);
    // Long check intervals: after the first cycle (a series and a topology payload, so one
    // waits behind the other) the agent has nothing to do but wait on the hung retry.
    let (agent, port) =
        start_agent(&rx.url("/stsAgent"), &[("STS_SKIP_SSL_VALIDATION", "true"), ("STS_HOST_CHECK_INTERVAL", "300")]);
    let pid = agent.0.as_ref().unwrap().id();
    let t = Instant::now();
    while rx.requests().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(15), "no retry: {:?}", rx.requests().len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = status(port).unwrap();
    check_invariant(&st);
    let queued: u64 = st["endpoints"].as_object().unwrap().values().map(|e| e["queued"].as_u64().unwrap()).sum();
    assert!(queued >= 2, "the retry in flight and a payload behind it: {st}");
    // The retry is in flight (its request timeout is 30 s): measure a few seconds of the wait.
    std::thread::sleep(Duration::from_millis(300));
    let (c0, w0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (c1, wall) = (cpu_ticks(pid), w0.elapsed());
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let share = (c1 - c0) as f64 / hz / wall.as_secs_f64();
    let reqs = rx.requests();
    assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), [503, HANG], "still waiting on the retry");
    assert!(share < 0.01, "the agent used {:.1} % of a core while the retry hung", share * 100.0);
    eprintln!("hung retry: {} ticks in {wall:?} ({:.2} % of a core)", c1 - c0, share * 100.0);
}

/// A request a scripted receiver saw: target, body, the status it answered.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>, u16)>>>;

/// A real TLS receiver (fresh test PKI) that answers each request with what `answer` makes of
/// its head (request line and headers) and its target's count so far: `(status, body)`.
fn scripted_receiver(answer: fn(&str, usize) -> (u16, String)) -> (String, Seen) {
    use std::sync::{Arc, Mutex};
    let pki = make_pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.leaf_der.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.leaf_key.clone_key()),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/stsAgent", listener.local_addr().unwrap());
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let (cfg, log) = (cfg.clone(), log.clone());
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), stream);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tls.read(&mut chunk) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                        .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
                    while buf.len() < end + 4 + len {
                        match tls.read(&mut chunk) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    buf.drain(..end + 4 + len);
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, reply_body) = {
                        let mut log = log.lock().unwrap();
                        let n = log.iter().filter(|(t, _, _)| *t == target).count();
                        let (status, reply_body) = answer(&head, n);
                        log.push((target, body, status));
                        (status, reply_body)
                    };
                    let reply =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{reply_body}", reply_body.len());
                    if tls.write_all(reply.as_bytes()).and_then(|_| tls.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Answers `status` with a body echoing what it was sent (request line and `sts-api-key`
/// header), as a misconfigured proxy's error page does.
fn echo_receiver(status: u16) -> (String, Seen) {
    fn echo(head: &str, status: u16) -> (u16, String) {
        let line = head.lines().next().unwrap_or("");
        let key = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("sts-api-key")))
            .map_or("", |(_, v)| v.trim());
        (status, format!("upstream error for {line} (sts-api-key: {key}) {{\"api_key\":\"{key}\"}}"))
    }
    match status {
        503 => scripted_receiver(|head, _| echo(head, 503)),
        _ => scripted_receiver(|head, _| echo(head, 400)),
    }
}

/// Issue 14: a receiver (or proxy) whose error reply echoes the request URL with its
/// `?api_key=` and the key header: neither `/status` (GET /status, `sts-agent status`) nor any
/// log line carries the key, yet both still show the scrubbed reply.
#[test]
fn an_echoed_api_key_reaches_neither_status_nor_the_log() {
    const KEY: &str = "echoed-secret-key-0123456789abcdef";
    for status_code in [503, 400] {
        let (url, seen) = echo_receiver(status_code);
        let (mut agent, port) =
            start_agent(&url, &[("STS_SKIP_SSL_VALIDATION", "true"), ("STS_API_KEY", KEY), ("STS_LOG_LEVEL", "debug")]);
        let t = Instant::now();
        while seen.lock().unwrap().len() < 3 {
            assert!(t.elapsed() < Duration::from_secs(20), "the receiver saw too few requests");
            std::thread::sleep(Duration::from_millis(100));
        }
        // GET /status, raw: the key in no form.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        assert!(!raw.contains(KEY) && !raw.contains(&KEY[..12]), "{status_code}: /status shows the key: {raw}");
        if status_code == 503 {
            // The retried failure's excerpt is there, scrubbed.
            let st = status(port).unwrap();
            let errors: Vec<&str> =
                st["endpoints"].as_object().unwrap().values().filter_map(|e| e["last_error"].as_str()).collect();
            assert!(
                errors.iter().any(|e| e.contains("upstream error for POST") && e.contains("api_key=***")),
                "{errors:?}"
            );
        }
        // `sts-agent status --json` prints the same report, and the readable one shows no key either.
        for (args, marker) in [(&["status", "--json"][..], "\"endpoints\""), (&["status"][..], "\nEndpoints\n")] {
            let cli = std::process::Command::new(AGENT)
                .args(args)
                .env_clear()
                .env("STS_APM_RECEIVER_PORT", port.to_string())
                .output()
                .unwrap();
            assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
            let printed = String::from_utf8_lossy(&cli.stdout);
            assert!(printed.contains(marker) && !printed.contains(KEY), "{printed}");
        }
        // The log, at debug level, from start to exit.
        let child = agent.0.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let out = wait_with_timeout(child, Duration::from_secs(15));
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(log.contains("upstream error for POST"), "the reply is logged: {log}");
        assert!(!log.contains(KEY) && !log.contains(&KEY[..12]), "{status_code}: the log shows the key:\n{log}");
    }
}

/// Issue 14: a process-agent chunk refused with 413 is split in two, and its group grows by one
/// message. With more than 100 processes the run is a group of several `CollectorProc` chunks;
/// the first is refused once. Decoded with the independent prost structs: every accepted chunk
/// of that group says the same `groupSize`, that size is the number of chunks accepted, and the
/// halves carry exactly the refused chunk's processes.
#[test]
fn a_413_process_chunk_split_grows_its_group_by_one() {
    // Enough processes for at least two chunks of 100.
    let mut kids = Kids(Vec::new());
    for _ in 0..150 {
        kids.0.push(std::process::Command::new("sleep").arg("120").spawn().unwrap());
    }
    let (sts, _) = scripted_receiver(|_, _| (202, "{}".into()));
    // The first collector request is refused as too large; everything else is accepted.
    let (pa, seen) = scripted_receiver(|head, n| {
        let collector = head.split_whitespace().nth(1).is_some_and(|t| t.starts_with("/stsAgent/api/v1/collector"));
        (if collector && n == 0 { 413 } else { 202 }, "{}".into())
    });
    let (_agent, port) = start_agent(
        &sts,
        &[
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_AGENT_ENABLED", "true"),
            ("STS_PROCESS_AGENT_URL", &pa),
            ("STS_PROCESS_CHECK_INTERVAL", "2"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            // Report every process (the default list leaves out `sleep`).
            ("STS_PROCESS_BLACKLIST_PATTERNS", "^no-such-process-x$"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("STS_HOST_CHECK_INTERVAL", "300"),
        ],
    );
    let collector = |seen: &Seen| -> Vec<(pa_proto::CollectorProc, u16)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t.starts_with("/stsAgent/api/v1/collector"))
            .map(|(_, b, s)| (pa_proto::collector_proc(b), *s))
            .collect()
    };
    let t = Instant::now();
    let (refused, group) = loop {
        assert!(t.elapsed() < Duration::from_secs(30), "no split group delivered");
        std::thread::sleep(Duration::from_millis(200));
        let msgs = collector(&seen);
        let Some((refused, _)) = msgs.iter().find(|(_, s)| *s == 413) else { continue };
        let group: Vec<&pa_proto::CollectorProc> =
            msgs.iter().filter(|(m, s)| *s == 202 && m.group_id == refused.group_id).map(|(m, _)| m).collect();
        // The group is complete once as many chunks as the largest size any says arrived.
        if group.iter().map(|m| m.group_size as usize).max().is_some_and(|n| group.len() >= n) {
            break (refused.clone(), group.into_iter().cloned().collect::<Vec<_>>());
        }
    };
    assert!(refused.group_size >= 2, "a group of several chunks: {}", refused.group_size);
    for m in &group {
        assert_eq!(m.group_size, refused.group_size + 1, "every accepted chunk says the grown size");
    }
    assert_eq!(group.len() as i32, refused.group_size + 1, "the group has one message more");
    // The first two accepted chunks are the halves: the refused chunk's processes, once each.
    let pids = |m: &pa_proto::CollectorProc| m.processes.iter().map(|p| p.pid).collect::<Vec<_>>();
    assert_eq!([pids(&group[0]), pids(&group[1])].concat(), pids(&refused));
    let st = status(port).unwrap();
    check_invariant(&st);
    assert_eq!(st["endpoints"]["collector"]["split"], 1, "{st}");
}

/// A 413 on a chunk in the middle of a group: the chunks already delivered cannot be changed, so
/// they keep the old `groupSize`; the halves and every chunk still queued say the grown one. What
/// the receiver gets: N + 1 messages with one `groupId`, the first saying N and the rest N + 1
/// (the group's true size, and the size the last message says).
#[test]
fn a_413_on_a_middle_chunk_leaves_the_delivered_chunks_with_the_old_group_size() {
    // Enough processes for at least three chunks of 100.
    let mut kids = Kids(Vec::new());
    for _ in 0..250 {
        kids.0.push(std::process::Command::new("sleep").arg("120").spawn().unwrap());
    }
    let (sts, _) = scripted_receiver(|_, _| (202, "{}".into()));
    // The second collector request is refused as too large; everything else is accepted.
    let (pa, seen) = scripted_receiver(|head, n| {
        let collector = head.split_whitespace().nth(1).is_some_and(|t| t.starts_with("/stsAgent/api/v1/collector"));
        (if collector && n == 1 { 413 } else { 202 }, "{}".into())
    });
    let (_agent, port) = start_agent(
        &sts,
        &[
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_AGENT_ENABLED", "true"),
            ("STS_PROCESS_AGENT_URL", &pa),
            ("STS_PROCESS_CHECK_INTERVAL", "2"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("STS_PROCESS_BLACKLIST_PATTERNS", "^no-such-process-x$"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("STS_HOST_CHECK_INTERVAL", "300"),
        ],
    );
    let collector = |seen: &Seen| -> Vec<(pa_proto::CollectorProc, u16)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t.starts_with("/stsAgent/api/v1/collector"))
            .map(|(_, b, s)| (pa_proto::collector_proc(b), *s))
            .collect()
    };
    let t = Instant::now();
    let (refused, group) = loop {
        assert!(t.elapsed() < Duration::from_secs(30), "no split group delivered");
        std::thread::sleep(Duration::from_millis(200));
        let msgs = collector(&seen);
        let Some((refused, _)) = msgs.iter().find(|(_, s)| *s == 413) else { continue };
        let group: Vec<&pa_proto::CollectorProc> =
            msgs.iter().filter(|(m, s)| *s == 202 && m.group_id == refused.group_id).map(|(m, _)| m).collect();
        if group.len() as i32 > refused.group_size {
            break (refused.clone(), group.into_iter().cloned().collect::<Vec<_>>());
        }
    };
    let n = refused.group_size;
    assert!(n >= 3, "a group of at least three chunks: {n}");
    // Delivered before the refusal: the old size.
    assert_eq!(group[0].group_size, n, "the chunk delivered first keeps the old size");
    // The halves and the chunks queued behind: the grown size.
    for (i, m) in group.iter().enumerate().skip(1) {
        assert_eq!(m.group_size, n + 1, "accepted message {i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let all = collector(&seen);
    let count = all.iter().filter(|(m, s)| *s == 202 && m.group_id == refused.group_id).count();
    assert_eq!(count as i32, n + 1, "the group has one message more, no more");
    let pids = |m: &pa_proto::CollectorProc| m.processes.iter().map(|p| p.pid).collect::<Vec<_>>();
    assert_eq!([pids(&group[1]), pids(&group[2])].concat(), pids(&refused));
    let st = status(port).unwrap();
    check_invariant(&st);
    assert_eq!(st["endpoints"]["collector"]["split"], 1, "{st}");
}
