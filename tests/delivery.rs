//! The agent binary against a real HTTPS receiver on loopback: what arrives, decoded with
//! independent code; certificate verification on and off; retry after a 503; clean SIGTERM.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn check_delivery(rx: &Receiver, host: &str, stderr: &str) {
    let reqs = rx.requests();
    // The host check's (the docker check's pass sends to the same endpoints where Docker runs).
    let series: Vec<_> = reqs
        .iter()
        .filter(|r| r.target.starts_with("/stsAgent/api/v1/series"))
        .filter(|r| !r.json()["series"][0]["metric"].as_str().unwrap_or("").starts_with("docker."))
        .collect();
    let intake: Vec<_> = reqs
        .iter()
        .filter(|r| r.target.starts_with("/stsAgent/intake/"))
        .filter(|r| r.json()["topologies"][0]["instance"]["type"] != "container")
        .filter(|r| r.json()["events"].is_null())
        .collect();
    // The core agent's "Agent Startup" event, once per run, with the first flush.
    let startup: Vec<_> = reqs
        .iter()
        .filter(|r| r.target.starts_with("/stsAgent/intake/"))
        .filter(|r| r.json()["events"]["System"][0]["event_type"] == "Agent Startup")
        .collect();
    assert_eq!(startup.len(), 1, "{stderr}");
    assert_eq!(startup[0].json()["events"]["System"][0]["host"], host);
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(series.len(), 1, "{targets:#?}\n{stderr}");
    assert_eq!(intake.len(), 1, "{targets:#?}\n{stderr}");
    for r in [series[0], intake[0]] {
        assert_eq!(r.method, "POST");
        assert!(r.target.ends_with(&format!("?api_key={KEY}")), "{}", r.target);
        assert_eq!(r.header("sts-api-key"), Some(KEY));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("content-encoding"), Some("deflate"));
        assert!(r.header("user-agent").unwrap().starts_with("sts-agent/"));
    }

    let v = series[0].json();
    let all = v["series"].as_array().unwrap();
    let names: BTreeSet<&str> = all.iter().map(|s| s["metric"].as_str().unwrap()).collect();
    for want in [
        "system.cpu.user",
        "system.cpu.system",
        "system.cpu.iowait",
        "system.cpu.idle",
        "system.cpu.stolen",
        "system.cpu.guest",
        "system.mem.total",
        "system.mem.usable",
        "system.mem.pct_usable",
        "system.swap.total",
        "system.load.1",
        "system.load.norm.15",
        "system.net.bytes_rcvd",
        "system.net.tcp.in_segs",
        "system.net.udp.in_datagrams",
        "system.disk.total",
        "system.disk.in_use",
        "system.fs.inodes.in_use",
        "system.uptime",
        "system.fs.file_handles.in_use",
        "system.fs.file_handles.max",
    ] {
        assert!(names.contains(want), "missing {want}; have {names:?}");
    }
    let now = unix_now();
    for s in all {
        assert_eq!(s["host"], host);
        let ts = s["points"][0][0].as_i64().unwrap();
        assert!((now - 120..=now + 5).contains(&ts), "timestamp {ts} vs now {now}");
        assert!(s["points"][0][1].is_number());
        let t = s["type"].as_str().unwrap();
        // The check's interval and no source type, but for the series the Agent V2 sends about
        // itself (spec/dogstatsd.md §4.1): `running` and `payload.dropped` with `System` and no
        // interval; `started`, the only count, as a DogStatsD serie (interval 10).
        let (interval, source_type) = match s["metric"].as_str().unwrap() {
            "stackstate.agent.running" | "n_o_i_n_d_e_x.stackstate.agent.payload.dropped" => (0, Some("System")),
            "stackstate.agent.started" => (10, None),
            _ => (15, None),
        };
        assert_eq!((s["interval"].as_u64(), s["source_type_name"].as_str()), (Some(interval), source_type), "{s}");
        assert!(t == "gauge" || t == "rate" || (t == "count" && s["metric"] == "stackstate.agent.started"), "{s}");
    }
    for name in ["stackstate.agent.running", "n_o_i_n_d_e_x.stackstate.agent.payload.dropped"] {
        assert!(names.contains(name), "missing {name}; have {names:?}");
    }
    let kind = |m: &str| all.iter().find(|s| s["metric"] == m).unwrap()["type"].as_str().unwrap().to_string();
    assert_eq!(kind("system.net.bytes_rcvd"), "rate");
    assert_eq!(kind("system.mem.total"), "gauge");
    let total = all.iter().find(|s| s["metric"] == "system.mem.total").unwrap()["points"][0][1].as_f64().unwrap();
    let mut meminfo = String::new();
    std::fs::File::open("/proc/meminfo").unwrap().read_to_string(&mut meminfo).unwrap();
    let kib: f64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((total - kib / 1024.0).abs() < 1.0, "system.mem.total {total} MiB vs /proc/meminfo {kib} KiB");
    let cpu: f64 = ["user", "system", "iowait", "idle", "stolen"]
        .iter()
        .map(|k| {
            all.iter().find(|s| s["metric"] == format!("system.cpu.{k}")).unwrap()["points"][0][1].as_f64().unwrap()
        })
        .sum();
    assert!((cpu - 100.0).abs() < 1.0, "cpu states add to {cpu}");

    let t = intake[0].json();
    assert_eq!(t["internalHostname"], host);
    let c = &t["topologies"][0]["components"][0];
    assert_eq!(c["externalId"], format!("urn:host:/{host}"));
    assert_eq!(c["type"]["name"], "host");
    assert_eq!(c["data"]["host"], host);
    assert!(t["health"].is_array() && t["metrics"].is_array());
}

#[test]
fn delivers_series_and_host_topology_over_tls_without_verification() {
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent/");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "i-0abc1234test"),
            ("STS_LOG_LEVEL", "debug"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}; stderr:\n{stderr}", out.status);
    check_delivery(&rx, "i-0abc1234test", &stderr);
    assert!(!stderr.contains(KEY) && !String::from_utf8_lossy(&out.stdout).contains(KEY), "API key in output");
}

#[test]
fn verification_on_trusts_a_configured_ca() {
    let rx = Receiver::start(true, vec![202]);
    let dir = TempDir::new("ca");
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, &rx.pki.as_ref().unwrap().ca_pem).unwrap();
    let url = rx.url("/stsAgent");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "verified-host"),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr:\n{stderr}");
    check_delivery(&rx, "verified-host", &stderr);
}

#[test]
fn verification_on_refuses_an_unknown_certificate_and_sigterm_exits_cleanly() {
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let child = spawn_agent(
        &[],
        &[("STS_STS_URL", &url), ("STS_API_KEY", KEY), ("STS_HOSTNAME", "h1"), ("STS_HOST_CHECK_INTERVAL", "1")],
    );
    let pid = child.id() as i32;
    // Let it try (and back off) a few times.
    std::thread::sleep(Duration::from_millis(3500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = std::time::Instant::now();
    let out = wait_with_timeout(child, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}; stderr:\n{stderr}", out.status);
    assert!(start.elapsed() < Duration::from_secs(7), "took {:?} to stop", start.elapsed());
    assert!(rx.requests().is_empty(), "a payload got through an unverified certificate");
    assert!(stderr.contains("certificate"), "the cause is not named:\n{stderr}");
    // Logged once, not once per retry.
    // (The /features probes say it too, once each: their own requests.)
    let forwarder_lines = stderr.lines().filter(|l| l.contains("TLS failed") && !l.contains("/features"));
    assert_eq!(forwarder_lines.count(), 1, "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(!stderr.contains(KEY));
}

#[test]
fn retries_after_a_server_error_then_delivers() {
    let rx = Receiver::start(false, vec![503, 202]);
    let url = rx.url("/stsAgent");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "h2"),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr:\n{stderr}");
    let reqs = rx.requests();
    // The 503'd payload was sent again: four requests for three payloads (series, host
    // topology, the startup event).
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    let series: Vec<_> = reqs.iter().filter(|r| r.target.contains("/api/v1/series")).collect();
    assert_eq!(series.len(), 2, "{reqs:#?}");
    assert_eq!(series[0].body, series[1].body, "retry must resend the same payload");
    assert!(stderr.contains("HTTP 503") && stderr.contains("accepts payloads again"), "{stderr}");
}

#[test]
fn a_rejected_payload_is_dropped_not_retried() {
    let rx = Receiver::start(false, vec![400]);
    let url = rx.url("");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "h3"),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr:\n{stderr}");
    // Series, host topology and the startup event: each refused once, none resent.
    assert_eq!(rx.requests().len(), 3);
    assert_eq!(stderr.matches("answered 400").count(), 3, "{stderr}");
}

#[test]
fn a_receiver_that_never_answers_does_not_stall_collection() {
    // Accepts TCP (from the kernel backlog) but never speaks TLS or HTTP.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/stsAgent", silent.local_addr().unwrap());
    let child = spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "h4"),
            ("STS_HOST_CHECK_INTERVAL", "1"),
            ("STS_LOG_LEVEL", "debug"),
        ],
    );
    std::thread::sleep(Duration::from_millis(4500));
    let t = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One check a second went on while the only request hung.
    let checks = stderr.matches("host check:").count();
    assert!(checks >= 4, "only {checks} host checks in 4.5 s:\n{stderr}");
    assert!(t.elapsed() < Duration::from_secs(7), "stop took {:?}", t.elapsed());
    assert!(stderr.contains("undelivered"), "{stderr}");
    drop(silent);
}

#[test]
fn sigterm_flushes_payloads_waiting_in_backoff() {
    let rx = Receiver::start(false, vec![503, 202]);
    let url = rx.url("/stsAgent");
    let child = spawn_agent(
        &[],
        &[("STS_STS_URL", &url), ("STS_API_KEY", KEY), ("STS_HOSTNAME", "h5"), ("STS_LOG_LEVEL", "debug")],
    );
    let start = std::time::Instant::now();
    while rx.requests().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "no request arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first payload was refused and is now waiting out its backoff; the second is queued.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reqs = rx.requests();
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    // The refused series payload, its retry, and the intake payload: nothing lost.
    let series = targets.iter().filter(|t| t.contains("/api/v1/series")).count();
    let intake = targets.iter().filter(|t| t.contains("/intake/")).count();
    assert!(series >= 2 && intake >= 1, "{targets:#?}\n{stderr}");
    // The last line accounts for the run: nothing left undelivered.
    assert!(stderr.contains(" 0 undelivered") && !stderr.contains("stopping with"), "{stderr}");
}
