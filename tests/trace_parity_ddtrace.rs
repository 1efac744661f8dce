//! Trace pipeline parity with a real client (issue 17; spec/traces-parity.md §1, §3, §4): Python
//! `ddtrace` sends to the agent, which forwards to a real TLS receiver where an independent
//! decoder (tests/common/trace_proto.rs) reads the payloads.
//! * Priority sampling: traces the client rejects (`USER_REJECT`, the `manual.drop` tag, and
//!   `AUTO_REJECT` without an error) never reach the receiver, the ones it keeps (and an
//!   `AUTO_REJECT` one with an error) do, and `/status` counts each drop by reason.
//! * Obfuscation: `sqlite3` queries with literals (patched by ddtrace) reach the receiver with
//!   obfuscated resources and no literal anywhere in the payload bytes.

mod common;
use common::trace_proto::{self, Span, TracePayload};
use common::*;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "trace-parity-key-0123456789";
const HOST: &str = "trace-parity-host";
const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/traced_parity_app.py");
const SERVICE: &str = "svc-parity";

/// Where ddtrace is installed when the machine has none (as tests/traces.rs does).
const PYDEPS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/pydeps");
const DDTRACE: &str = "ddtrace==4.16.0";

fn require_ddtrace() {
    let importable = || {
        Command::new("python3")
            .args(["-c", "import ddtrace"])
            .env("PYTHONPATH", PYDEPS)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return;
    }
    let st = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", PYDEPS, DDTRACE])
        .status()
        .expect("python3 -m pip");
    assert!(st.success() && importable(), "could not install {DDTRACE} from PyPI into {PYDEPS}");
}

/// The agent, killed on drop (a failing test leaves no process behind).
struct Agent {
    child: Option<Child>,
    port: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_agent(rx: &Receiver) -> Agent {
    let url = rx.url("/stsAgent");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let child = spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", HOST),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_APM_RECEIVER_PORT", &port_s),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
        ],
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "the trace intake never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Agent { child: Some(child), port }
}

/// Runs the traced app in `mode` to completion against the agent (its traces are answered, so
/// processed, when it exits: ddtrace's flush waits for the reply).
fn run_app(mode: &str, port: u16) {
    let mut child = Command::new("python3")
        .args([APP, mode])
        .env("PYTHONPATH", PYDEPS)
        .env("DD_TRACE_AGENT_URL", format!("http://127.0.0.1:{port}"))
        .env("DD_TELEMETRY_ENABLED", "false")
        .env("DD_REMOTE_CONFIGURATION_ENABLED", "false")
        .env("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(st.success(), "traced_parity_app.py {mode} failed: {err}");
            assert!(!err.to_lowercase().contains("failed to send"), "{mode}: {err}");
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("traced_parity_app.py {mode} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent's `/status` (served on the trace port to loopback clients).
fn status(port: u16) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (code, body) = read_response(&mut s);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/status is JSON")
}

/// Stops the agent with SIGTERM (which flushes what is pending) and waits for it.
fn stop(mut agent: Agent) {
    let child = agent.child.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every trace payload the receiver got: its inflated bytes and its decoding.
fn payloads(rx: &Receiver) -> Vec<(Vec<u8>, TracePayload)> {
    let got: Vec<(Vec<u8>, TracePayload)> = rx
        .requests()
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v0.2/traces")
        .map(|r| {
            assert_eq!(r.header("sts-api-key"), Some(KEY));
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).expect("gzip body");
            (raw, trace_proto::decode(&r.body))
        })
        .collect();
    assert!(!got.is_empty(), "no /api/v0.2/traces request reached the receiver");
    got
}

fn root(spans: &[Span]) -> &Span {
    spans.iter().find(|s| s.parent_id == 0).expect("a root span")
}

#[test]
fn ddtrace_rejected_traces_never_reach_the_receiver_and_are_counted() {
    require_ddtrace();
    let rx = Receiver::start(true, vec![202]);
    let agent = start_agent(&rx);
    run_app("sampling", agent.port);

    // The rejected traces reached the agent (it counts them) and were dropped there.
    let st = status(agent.port);
    let t = &st["trace_intake"];
    assert_eq!(
        t["sampling_dropped"],
        serde_json::json!({"priority_negative": 2, "priority_zero": 1}),
        "USER_REJECT and manual.drop (priority -1), AUTO_REJECT without an error (0): {t}"
    );
    assert_eq!(t["traces"], 3, "kept: AUTO_KEEP, AUTO_REJECT with an error, USER_KEEP: {t}");
    assert_eq!(t["spans"], 6, "{t}");
    assert_eq!(t["dropped_traces"], 0, "nothing dropped by normalisation: {t}");
    stop(agent);

    let got = payloads(&rx);
    let mut kept: Vec<(String, f64, usize)> = Vec::new();
    for (raw, p) in &got {
        // Nothing of a rejected trace (its resources, root's and child's, are in no payload;
        // `GET /auto-reject` is a prefix of the kept `GET /auto-reject-error`, so whole strings).
        for rejected in ["GET /user-reject", "GET /manual-drop", "GET /auto-reject work"] {
            assert!(!raw.windows(rejected.len()).any(|w| w == rejected.as_bytes()), "{rejected} in a payload");
        }
        for trace in &p.traces {
            let r = root(&trace.spans);
            assert_eq!(r.service, SERVICE);
            kept.push((r.resource.clone(), r.metrics["_sampling_priority_v1"], trace.spans.len()));
            assert!(trace.spans.iter().all(|s| s.resource != "GET /auto-reject"), "{trace:?}");
        }
    }
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kept,
        [
            ("GET /auto-reject-error".to_string(), 0.0, 2),
            ("GET /kept".to_string(), 1.0, 2),
            ("GET /user-keep".to_string(), 2.0, 2),
        ],
        "the kept traces, whole, with the client's priority"
    );
}

#[test]
fn ddtrace_sqlite_queries_reach_the_receiver_obfuscated() {
    require_ddtrace();
    let rx = Receiver::start(true, vec![202]);
    let agent = start_agent(&rx);
    run_app("sqlite", agent.port);
    stop(agent);

    let got = payloads(&rx);
    let spans: Vec<&Span> = got.iter().flat_map(|(_, p)| &p.traces).flat_map(|t| &t.spans).collect();
    let queries: Vec<&Span> = spans.iter().copied().filter(|s| s.name == "sqlite.query").collect();
    assert_eq!(queries.len(), 4, "CREATE, INSERT, SELECT, UPDATE: {spans:#?}");
    assert!(queries.iter().all(|s| s.r#type == "sql" && s.service == "sqlite"), "{queries:#?}");
    assert!(spans.iter().any(|s| s.resource == "POST /signup" && s.parent_id == 0), "the web request");

    // No literal anywhere in what reached the receiver (every payload's bytes, inflated).
    let literals = ["alice.secret@example.com", "73519286401", "8642.75", "x@y.z"];
    let leaks: Vec<String> = literals
        .iter()
        .filter_map(|l| {
            let where_: Vec<String> = spans
                .iter()
                .flat_map(|s| {
                    let mut w = Vec::new();
                    if s.resource.contains(l) {
                        w.push(format!("{}: resource", s.name));
                    }
                    w.extend(
                        s.meta.iter().filter(|(_, v)| v.contains(l)).map(|(k, _)| format!("{}: meta {k}", s.name)),
                    );
                    w
                })
                .collect();
            let in_bytes = got.iter().any(|(raw, _)| raw.windows(l.len()).any(|w| w == l.as_bytes()));
            (in_bytes || !where_.is_empty()).then(|| format!("{l} in {where_:?}"))
        })
        .collect();
    assert!(leaks.is_empty(), "literals reached the receiver: {leaks:#?}");

    // The resources as the original obfuscates them (spec §1), and `sql.query` set to the same.
    let mut resources: Vec<&str> = queries.iter().map(|s| s.resource.as_str()).collect();
    resources.sort();
    assert_eq!(
        resources,
        [
            "CREATE TABLE users ( id INTEGER, email TEXT, balance REAL )",
            "INSERT INTO users VALUES ( ? )",
            "SELECT id, balance FROM users WHERE email = ? AND id = ?",
            "UPDATE users SET balance = ? WHERE email IN ( ? )",
        ]
    );
    for s in &queries {
        assert_eq!(s.meta.get("sql.query"), Some(&s.resource), "{s:#?}");
    }
}
