//! Receiver feature discovery and the agent's own telemetry, against the real TLS receiver
//! stand-in (tests/common): each `/features` answer changes the payloads as
//! spec/protocol.md §4.2/§4.4 says (decoded at the receiver, a real cgroup container in them);
//! a receiver without the endpoint (404) gets the defaults and one `/features` request a minute
//! per probe; the self-telemetry series decoded at the receiver equal `/status`.

mod common;
use common::pa_proto;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use test_cgroup::{hex_id, TestCgroup};

const KEY: &str = "feat-key-123";
const METRICS: [&str; 11] = [
    "rbps",
    "wbps",
    "netRcvdPs",
    "netSentPs",
    "netRcvdBps",
    "netSentBps",
    "userPct",
    "systemPct",
    "totalPct",
    "memRss",
    "memCache",
];

/// One `--once` run against a receiver answering `/features` with `reply`.
fn once_with(reply: Option<&str>, host: &str) -> (Receiver, String) {
    let rx = Receiver::start(true, vec![202]);
    if let Some(r) = reply {
        rx.answer_features(200, r);
    }
    let url = rx.url("/stsAgent");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", host),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (rx, stderr)
}

#[test]
fn each_feature_combination_changes_the_payloads_as_the_spec_says() {
    let tag = format!("sts-feat-{}", std::process::id());
    let id = hex_id("features", 64);
    let mut cg = TestCgroup::require(&[format!("{tag}-docker")], &id);
    cg.run("import time\nx = b'1' * (16 << 20)\nwhile True: pass");
    std::thread::sleep(Duration::from_millis(500));

    let combos: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];
    let runs: Vec<_> = combos
        .iter()
        .enumerate()
        .map(|(i, &(multi, health))| {
            let reply = format!(r#"{{"upgrade-to-multi-metrics":{multi},"health-states":{health},"other":[1]}}"#);
            std::thread::spawn(move || (multi, health, once_with(Some(&reply), &format!("feat-{i}"))))
        })
        .collect();
    for run in runs {
        let (multi, health, (rx, stderr)) = run.join().unwrap();
        let what = format!("multi-metrics {multi}, health-states {health}\n{stderr}");
        // Both probes asked, each as its original does.
        let asked = rx.features_requests();
        let core: Vec<_> =
            asked.iter().filter(|(_, r)| r.target == format!("/stsAgent/features?api_key={KEY}")).collect();
        let pa: Vec<_> = asked.iter().filter(|(_, r)| r.target == "/stsAgent/features").collect();
        assert_eq!((core.len(), pa.len()), (1, 1), "{asked:?}\n{what}");
        for (_, r) in core.iter().chain(&pa) {
            assert_eq!(r.method, "GET");
            assert_eq!(r.header("sts-api-key"), Some(KEY));
        }
        assert_eq!(pa[0].1.header("content-encoding"), Some("identity"));
        assert!(pa[0].1.header("sts-hostname").is_some_and(|h| h.starts_with("feat-")));

        let reqs = rx.requests();
        let ctrs: Vec<_> = reqs
            .iter()
            .filter(|r| r.target == "/stsAgent/api/v1/collector")
            .flat_map(|r| pa_proto::collector_proc(&r.body).containers)
            .collect();
        let c = ctrs.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("container reported\n{what}"));
        let side: Vec<Value> =
            reqs.iter().filter(|r| r.target.starts_with("/stsAgent/intake?")).map(|r| r.json()).collect();
        assert!(!side.is_empty(), "{what}");
        let raw: Vec<&str> = side
            .iter()
            .flat_map(|v| v["metrics"].as_array().unwrap().iter())
            .filter(|m| m[3]["tags"][0] == format!("containerId:{id}"))
            .map(|m| m[0].as_str().unwrap())
            .collect();
        let raw_eleven = raw.iter().filter(|n| METRICS.contains(n)).count();
        if multi {
            // Raw metrics on /intake, nothing inside Container.
            assert!(raw.contains(&"totalPct") && raw.contains(&"memRss"), "{raw:?}\n{what}");
            assert_eq!((c.total_pct, c.mem_rss, c.user_pct), (0.0, 0, 0.0), "{what}");
        } else {
            // Inside Container only.
            assert_eq!(raw_eleven, 0, "{raw:?}\n{what}");
            assert!(c.mem_rss >= 16 << 20, "memRss inside Container: {}\n{what}", c.mem_rss);
            assert!(c.total_pct > 5.0, "the busy container's totalPct inside Container: {}\n{what}", c.total_pct);
        }
        let v = &side[0];
        let agent_topology = v["topologies"].as_array().unwrap().iter().any(|t| t["instance"]["type"] == "agent");
        let healths = v["health"].as_array().unwrap();
        if health {
            assert!(agent_topology, "{v}\n{what}");
            assert_eq!(healths.len(), 1, "{what}");
            assert_eq!(
                healths[0]["stream"]["urn"],
                format!("urn:health:stackstate-process-agent:{}", v["internalHostname"].as_str().unwrap())
            );
            assert_eq!(healths[0]["check_states"][0]["health"], "CLEAR");
        } else {
            assert!(!agent_topology, "{v}\n{what}");
            assert!(healths.is_empty(), "{what}");
        }
        // The process agent's self-metrics go either way.
        assert!(v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m[0] == "stackstate.process_agent.processes.total_count"));
    }
}

/// `/status` from the agent's trace port.
fn status(port: u16) -> Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (code, body) = read_response(&mut s);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn post(port: u16, path: &str, body: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s).0
}

/// The series `name` (with `tag`, if given) in a decoded series payload.
fn serie(payload: &Value, name: &str, tag: Option<&str>) -> Option<f64> {
    payload["series"].as_array()?.iter().find_map(|s| {
        let tagged = tag.is_none_or(|t| s["tags"].as_array().is_some_and(|ts| ts.iter().any(|x| x == t)));
        (s["metric"] == name && tagged).then(|| s["points"][0][1].as_f64().unwrap())
    })
}

/// A receiver without `/features`: the defaults, one request a minute per probe (a process agent
/// would poll every 5 s), and `/status` says so. The same run checks the self telemetry: once
/// the agent is quiet, the series of a flush equal `/status`.
#[test]
fn a_receiver_without_features_gets_the_defaults_and_one_request_a_minute() {
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let started = Instant::now();
    let agent = drained(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "nofeat-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_APM_RECEIVER_PORT", &port_s),
            ("STS_HOST_CHECK_INTERVAL", "2"),
            // The process check runs at start (and a minute later): its figures stay put between.
            ("STS_PROCESS_CHECK_INTERVAL", "60"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    ));
    // The trace intake: three accepted payloads and one that does not decode.
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the trace intake never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    for i in 1..=3u64 {
        let body = format!(
            r#"[[{{"trace_id":{i},"span_id":{i},"parent_id":0,"service":"svc","name":"op","resource":"r","start":{now_ns},"duration":1000}}]]"#
        );
        assert_eq!(post(port, "/v0.4/traces", body.as_bytes()), 200);
    }
    assert_eq!(post(port, "/v0.4/traces", b"[[{\"trace_id\":"), 400);

    // Once a flush after those shows them, the agent is quiet: its series equal `/status`.
    let (payload, st) = loop {
        let last = rx
            .requests()
            .iter()
            .filter(|r| r.target.starts_with("/stsAgent/api/v1/series"))
            .map(|r| r.json())
            .rfind(|v| serie(v, "stackstate.agent.running", None).is_some());
        if let Some(v) = last.filter(|v| serie(v, "stackstate.agent.trace_intake.payloads", None) == Some(3.0)) {
            break (v, status(port));
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no flush with the trace intake's counts");
        std::thread::sleep(Duration::from_millis(100));
    };
    let version = format!("version:{}", st["version"].as_str().unwrap());
    assert_eq!(serie(&payload, "stackstate.agent.running", Some(&version)), Some(1.0));
    let ti = &st["trace_intake"];
    for f in ["requests", "payloads", "traces", "spans"] {
        assert_eq!(serie(&payload, &format!("stackstate.agent.trace_intake.{f}"), None), ti[f].as_f64(), "{f}");
    }
    assert_eq!(ti["rejected"]["decode"], 1);
    for (reason, n) in ti["rejected"].as_object().unwrap() {
        let tag = format!("reason:{reason}");
        assert_eq!(serie(&payload, "stackstate.agent.trace_intake.rejected", Some(&tag)), n.as_f64(), "{reason}");
    }
    let p = &st["checks"]["process"];
    for f in ["runs", "last_duration_ms", "last_cpu_ms", "total_cpu_ms"] {
        assert_eq!(
            serie(&payload, &format!("stackstate.agent.check.{f}"), Some("check:process")),
            p[f].as_f64(),
            "{f}"
        );
    }
    for (route, e) in st["endpoints"].as_object().unwrap() {
        let tag = format!("endpoint:{route}");
        for (reason, n) in e["dropped"].as_object().unwrap() {
            let got = payload["series"].as_array().unwrap().iter().find(|s| {
                s["metric"] == "stackstate.agent.outbox.dropped"
                    && s["tags"].as_array().unwrap().iter().any(|t| *t == tag)
                    && s["tags"].as_array().unwrap().iter().any(|t| *t == format!("reason:{reason}"))
            });
            assert_eq!(got.and_then(|s| s["points"][0][1].as_f64()), n.as_f64(), "{route} {reason}");
        }
    }
    assert!(serie(&payload, "stackstate.process_agent.processes.host_count", None).unwrap() > 1.0);
    assert_eq!(serie(&payload, "stackstate.process_agent.running", Some(&version)), Some(1.0));

    // A minute and a bit: each probe asked at start and once more a minute later, no more.
    let until = started + Duration::from_secs(66);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let asked = rx.features_requests();
    for target in [format!("/stsAgent/features?api_key={KEY}"), "/stsAgent/features".to_string()] {
        let at: Vec<Instant> = asked.iter().filter(|(_, r)| r.target == target).map(|(t, _)| *t).collect();
        assert_eq!(at.len(), 2, "{target}: {} requests in 66 s", at.len());
        let gap = at[1].duration_since(at[0]);
        assert!(gap >= Duration::from_secs(59), "{target}: asked again after {gap:?}");
        assert!(asked.iter().all(|(_, r)| r.status == 404));
    }
    let st = status(port);
    let f = &st["features"]["process_agent"];
    assert_eq!(f["state"], "no_answer", "{st}");
    assert_eq!(f["requests"], 2);
    assert!(f["last_error"].as_str().unwrap().contains("404"), "{f}");
    assert_eq!(f["features"]["health-states"], false);
    assert_eq!(st["features"]["core"]["state"], "no_answer");

    // The defaults: no agent topology or health stream, no raw container metrics.
    let reqs = rx.requests();
    let side: Vec<Value> =
        reqs.iter().filter(|r| r.target.starts_with("/stsAgent/intake?")).map(|r| r.json()).collect();
    assert!(!side.is_empty());
    for v in &side {
        assert!(v["health"].as_array().unwrap().is_empty(), "{v}");
        assert!(v["topologies"].as_array().unwrap().iter().all(|t| t["instance"]["type"] != "agent"), "{v}");
    }
    // `stackstate.agent.started` and the startup event: once in the run.
    let series: Vec<Value> =
        reqs.iter().filter(|r| r.target.starts_with("/stsAgent/api/v1/series")).map(|r| r.json()).collect();
    let started_count =
        series.iter().filter(|v| serie(v, "stackstate.agent.started", Some(&version)).is_some()).count();
    assert_eq!(started_count, 1);
    assert!(series.len() > 10, "a flush every 2 s: {}", series.len());
    let events = reqs
        .iter()
        .filter(|r| r.target.starts_with("/stsAgent/intake/"))
        .map(|r| r.json())
        .filter(|v| v["events"]["System"][0]["event_type"] == "Agent Startup")
        .count();
    assert_eq!(events, 1);
    drop(agent);
}

/// `incremental-topology`: a full `CollectorProc` first, then `CollectorCommands` every run (a
/// full one only a minute later): a process already sent comes as "metrics", a new one as
/// "update", one gone as "delete".
#[test]
fn incremental_topology_sends_increments_between_full_snapshots() {
    let rx = Receiver::start(true, vec![202]);
    rx.answer_features(200, r#"{"incremental-topology":true}"#);
    let url = rx.url("/stsAgent");
    let steady = Kids(vec![std::process::Command::new("python3")
        .args(["-c", "import time; time.sleep(120)", "sts-incr-steady"])
        .spawn()
        .unwrap()]);
    let agent = drained(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "incr-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_CHECK_INTERVAL", "1"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    ));
    let collector =
        || -> Vec<Request> { rx.requests().into_iter().filter(|r| r.target == "/stsAgent/api/v1/collector").collect() };
    let commands = |pid: u32| -> Vec<(usize, &'static str)> {
        let mut seen = Vec::new();
        for (n, r) in collector().iter().enumerate() {
            if pa_proto::header(&r.body).2 != 13 {
                continue;
            }
            for c in pa_proto::collector_commands(&r.body).commands {
                let kind = [
                    (c.update_process.as_ref(), "update"),
                    (c.update_process_metrics.as_ref(), "metrics"),
                    (c.delete_process.as_ref(), "delete"),
                ]
                .into_iter()
                .find_map(|(p, k)| p.filter(|p| p.pid == pid as i32).map(|_| k));
                if let Some(k) = kind {
                    seen.push((n, k));
                }
            }
        }
        seen
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(30), "waited for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let steady_pid = steady.0[0].id();
    wait("increments about the steady process", &|| commands(steady_pid).iter().any(|c| c.1 == "metrics"));
    let mut newcomer = Kids(vec![std::process::Command::new("python3")
        .args(["-c", "import time; time.sleep(120)", "sts-incr-new"])
        .spawn()
        .unwrap()]);
    let new_pid = newcomer.0[0].id();
    let new_create = create_time_ms(new_pid);
    wait("the newcomer's update", &|| commands(new_pid).iter().any(|c| c.1 == "update"));
    wait("the newcomer's metrics", &|| commands(new_pid).iter().any(|c| c.1 == "metrics"));
    for c in &mut newcomer.0 {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    wait("the newcomer's delete", &|| commands(new_pid).iter().any(|c| c.1 == "delete"));

    let msgs = collector();
    let types: Vec<u8> = msgs.iter().map(|r| pa_proto::header(&r.body).2).collect();
    // One full snapshot (within the minute), then increments only.
    assert_eq!(types[0], 12, "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == 12).count(), 1, "{types:?}");
    assert!(types[1..].iter().all(|t| *t == 13), "{types:?}");
    let full = pa_proto::collector_proc(&msgs[0].body);
    assert!(full.processes.iter().any(|p| p.pid == steady_pid as i32));
    // The newcomer: update, then metrics, then delete, in that order; its update carries the process.
    let new_cmds = commands(new_pid);
    let first = |k: &str| new_cmds.iter().position(|c| c.1 == k).unwrap();
    assert!(first("update") < first("metrics") && first("metrics") < first("delete"), "{new_cmds:?}");
    let update = msgs
        .iter()
        .filter(|r| pa_proto::header(&r.body).2 == 13)
        .flat_map(|r| pa_proto::collector_commands(&r.body).commands)
        .find_map(|c| c.update_process.filter(|p| p.pid == new_pid as i32))
        .unwrap();
    assert!(update.command.as_ref().unwrap().args.iter().any(|a| a == "sts-incr-new"));
    assert_eq!(update.create_time, new_create);
    drop(agent);
}
