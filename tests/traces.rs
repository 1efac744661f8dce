//! The trace intake end to end with a real tracing client: Python `ddtrace` (from PyPI) sends
//! traces over TCP and over the Unix socket, with its default protocol (v0.5) and with v0.4
//! forced; the agent forwards them to a real TLS receiver, where an independent decoder (prost
//! structs written from the spec, flate2) checks every trace, span and the STS meta.

mod common;
use common::trace_proto::{self, Span, TracePayload};
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "trace-test-key-0123456789";
const HOST: &str = "trace-host";
const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/traced_app.py");

/// Where ddtrace is installed when the machine has none (so `cargo test` works on a fresh one).
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "the trace intake never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct App {
    service: String,
    pid: u32,
    create_ms: i64,
    child: Child,
}

/// Starts the traced app; returns once it printed its pid (its create time is read right away).
fn start_app(service: &str, n: u32, agent_url: &str, api: Option<&str>, delay: &str) -> App {
    let mut cmd = Command::new("python3");
    cmd.args([APP, service, &n.to_string()])
        .env("PYTHONPATH", PYDEPS)
        .env("DD_TRACE_AGENT_URL", agent_url)
        .env("DD_TELEMETRY_ENABLED", "false")
        .env("DD_REMOTE_CONFIGURATION_ENABLED", "false")
        .env("TRACED_APP_DELAY", delay)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(v) = api {
        cmd.env("DD_TRACE_API_VERSION", v);
    }
    let mut child = cmd.spawn().expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let pid: u32 = line.trim().parse().expect("the app prints its pid");
    App { service: service.into(), pid, create_ms: create_time_ms(pid), child }
}

fn finish_app(mut a: App) -> App {
    let start = Instant::now();
    loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            let mut err = String::new();
            a.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(st.success(), "{} failed: {err}", a.service);
            assert!(!err.to_lowercase().contains("failed to send"), "{}: {err}", a.service);
            return a;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{} did not finish", a.service);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn root_and_child(spans: &[Span]) -> (&Span, &Span) {
    let root = spans.iter().find(|s| s.parent_id == 0).expect("a root span");
    let child = spans.iter().find(|s| s.parent_id == root.span_id).expect("a child span");
    (root, child)
}

#[test]
fn ddtrace_over_tcp_and_unix_socket_reaches_the_receiver_intact() {
    require_ddtrace();
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("sts-test-{}-apm.sock", std::process::id()));
    let port_s = port.to_string();
    let sock_s = sock.to_str().unwrap().to_string();
    let agent = spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", HOST),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_APM_RECEIVER_PORT", &port_s),
            ("STS_APM_RECEIVER_SOCKET", &sock_s),
            ("STS_PROCESS_CHECK_INTERVAL", "1"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
        ],
    );
    struct Stop(Option<Child>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut agent = Stop(Some(agent));
    wait_for_port(port);

    // /info as a client sees it.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut info = String::new();
    s.read_to_string(&mut info).unwrap();
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    let body: serde_json::Value = serde_json::from_str(info.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["client_drop_p0s"], false);
    assert_eq!(body["endpoints"], serde_json::json!(["/v0.3/traces", "/v0.4/traces", "/v0.5/traces", "/info"]));

    const N: u32 = 25;
    let tcp = format!("http://127.0.0.1:{port}");
    let uds = format!("unix://{sock_s}");
    // Unix-socket clients wait for a process check (every second here) to have seen them.
    let apps: Vec<App> = vec![
        start_app("svc-tcp-default", N, &tcp, None, "0"),
        start_app("svc-tcp-v04", N, &tcp, Some("v0.4"), "0"),
        start_app("svc-uds-default", N, &uds, None, "2.5"),
        start_app("svc-uds-v04", N, &uds, Some("v0.4"), "2.5"),
    ];
    let apps: Vec<App> = apps.into_iter().map(finish_app).collect();

    // SIGTERM flushes what is pending.
    let mut child = agent.0.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(15), "the agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = wait_with_timeout(child, Duration::from_secs(5));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!sock.exists(), "the Unix socket is removed at exit");

    let payloads: Vec<TracePayload> = rx
        .requests()
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v0.2/traces")
        .map(|r| {
            assert_eq!(r.header("sts-api-key"), Some(KEY));
            assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            trace_proto::decode(&r.body)
        })
        .collect();
    assert!(!payloads.is_empty(), "no /api/v0.2/traces request");
    assert!(payloads.iter().all(|p| p.host_name == HOST && p.env == "none" && p.transactions.is_empty()));

    let mut by_service: HashMap<String, Vec<&Vec<Span>>> = HashMap::new();
    for t in payloads.iter().flat_map(|p| &p.traces) {
        assert!(t.spans.iter().all(|s| s.trace_id == t.trace_id), "one APITrace per trace");
        let (root, _) = root_and_child(&t.spans);
        by_service.entry(root.service.clone()).or_default().push(&t.spans);
    }
    for a in &apps {
        let traces = by_service.get(&a.service).map_or(&[][..], |v| &v[..]);
        assert_eq!(traces.len(), N as usize, "{}: traces forwarded", a.service);
        let mut resources: Vec<&str> = Vec::new();
        for spans in traces {
            assert_eq!(spans.len(), 2, "{}: spans per trace", a.service);
            let (root, child) = root_and_child(spans);
            resources.push(&root.resource);
            assert_eq!(root.name, "web.request");
            assert_eq!(root.meta["span.serviceName"], a.service);
            assert_eq!(root.meta["span.serviceURN"], format!("urn:service:/{}", a.service));
            assert_eq!(root.meta["span.kind"], "server");
            assert_eq!((child.service.as_str(), child.r#type.as_str()), ("pg", "sql"));
            assert_eq!(child.meta["span.serviceName"], "pg:orders", "db.instance names the service");
            assert_eq!(child.meta["span.serviceURN"], "urn:service:/pg:orders");
            assert!(root.start > 1_700_000_000_000_000_000 && root.duration >= child.duration && child.duration > 0);
            assert!(root.metrics.contains_key("_sampling_priority_v1"));
            if a.service.starts_with("svc-uds") {
                // The agent knows a Unix-socket client: pid, host and start time, hence the instance.
                assert_eq!(root.meta["span.pid"], a.pid.to_string());
                assert_eq!(root.meta["span.hostname"], HOST);
                assert_eq!(root.meta["span.starttime"], a.create_ms.to_string());
                assert_eq!(root.meta["span.serviceType"], "service");
                assert_eq!(
                    root.meta["span.serviceInstanceURN"],
                    format!("urn:service-instance:/{}:/{HOST}:{}:{}", a.service, a.pid, a.create_ms)
                );
            } else {
                assert!(!root.meta.contains_key("span.pid") && !root.meta.contains_key("span.serviceInstanceURN"));
            }
        }
        resources.sort();
        resources.dedup();
        assert_eq!(resources.len(), N as usize, "{}: every trace once", a.service);
    }
}
