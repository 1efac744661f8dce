//! The forwarder under faults, against a scripted real TLS receiver, watched through the agent's
//! own `/status` report: a 503 storm then recovery (every payload delivered once, nothing
//! duplicated), and the accounting invariant enqueued = delivered + Σdropped + queued at every read.

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
    assert_eq!(st["api_key_rejected"], false);
    // `sts-agent status` prints the same report.
    let cli = std::process::Command::new(AGENT)
        .arg("status")
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
