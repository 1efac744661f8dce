//! Receiver feature discovery and the agent's own telemetry, against the real TLS receiver
//! stand-in (tests/common): each `/features` answer changes the payloads as
//! spec/protocol.md §4.2/§4.4 says (decoded at the receiver, a real cgroup container in them);
//! a receiver without the endpoint (404) gets the defaults and one `/features` request per
//! distinct base URL for the run; the self-telemetry series decoded at the receiver equal `/status`.

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

/// One `--once` run against a receiver answering `/features` with `reply`;
/// `STS_REPORT_CHECK_HEALTH_STATE=false`, so that only `health-states` brings the health stream.
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
            ("STS_REPORT_CHECK_HEALTH_STATE", "false"),
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
        // STS_PROCESS_AGENT_URL falls back to STS_STS_URL: one base URL, one request (the core's
        // form, E4), its answer serving both agents.
        let asked = rx.features_requests();
        assert_eq!(asked.len(), 1, "{asked:?}\n{what}");
        let r = &asked[0].1;
        assert_eq!(r.target, format!("/stsAgent/features?api_key={KEY}"), "{what}");
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("sts-api-key"), Some(KEY));
        assert_eq!(r.header("sts-hostname"), Some(rx.url("/stsAgent").as_str()), "E3: the base URL");

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
        // The throttling metrics on /intake either way (as the process agent 4.0.x sends them).
        assert!(raw.contains(&"cpuThreadCount"), "cpuThreadCount in {raw:?}\n{what}");
        assert!(raw.iter().all(|n| METRICS.contains(n) || n.starts_with("cpu")), "{raw:?}");
        if multi {
            // The eleven as raw metrics on /intake, nothing inside Container.
            for name in ["totalPct", "userPct", "memRss", "memCache"] {
                assert!(raw.contains(&name), "{name} in {raw:?}\n{what}");
            }
            assert_eq!((c.total_pct, c.mem_rss, c.user_pct), (0.0, 0, 0.0), "{what}");
        } else {
            // Only inside Container (issue 19, docker-check.md §4.1): none of the eleven raw.
            assert!(raw.iter().all(|n| n.starts_with("cpu")), "no container rate as a raw metric: {raw:?}\n{what}");
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

/// The serie object `name` (with `tag`, if given) in a decoded series payload.
fn serie_obj<'a>(payload: &'a Value, name: &str, tag: Option<&str>) -> Option<&'a Value> {
    payload["series"].as_array()?.iter().find(|s| {
        s["metric"] == name && tag.is_none_or(|t| s["tags"].as_array().is_some_and(|ts| ts.iter().any(|x| x == t)))
    })
}

/// The outbox series `.dropped` for `route` and `reason` in a decoded series payload.
fn dropped(payload: &Value, route: &str, reason: &str) -> Option<f64> {
    let (route, reason) = (format!("endpoint:{route}"), format!("reason:{reason}"));
    payload["series"].as_array().unwrap().iter().find_map(|s| {
        let tags = s["tags"].as_array().unwrap();
        (s["metric"] == "stackstate.agent.outbox.dropped"
            && tags.iter().any(|t| *t == route)
            && tags.iter().any(|t| *t == reason))
        .then(|| s["points"][0][1].as_f64().unwrap())
    })
}

const PAYLOAD_DROPPED: &str = "n_o_i_n_d_e_x.stackstate.agent.payload.dropped";

/// A receiver without `/features` (404, an HTTP reply: final): the defaults, exactly one request
/// per distinct base URL for the run (a process agent would poll every 5 s), and `/status` says
/// so. The same run checks the self telemetry: once the agent is quiet, the series of a flush
/// equal `/status`, with a real cgroup container on the host and two payloads refused (400 to the
/// second series payload, 413 to the first `/intake/` one), so that the drop series are not 0.
#[test]
fn a_receiver_without_features_gets_the_defaults_and_one_request_per_base_url() {
    let id = hex_id("nofeat", 64);
    let mut cg = TestCgroup::require(&[format!("sts-nofeat-{}-docker", std::process::id())], &id);
    cg.run("import time\ntime.sleep(600)");
    let rx = Receiver::start(true, vec![202]);
    // Dropped at once, each counted by reason: a series payload (after the first, which carries
    // `stackstate.agent.started`) as malformed, an `/intake/` one as too large (not split).
    rx.refuse("/stsAgent/api/v1/series", 2, 400);
    rx.refuse("/stsAgent/intake/", 1, 413);
    let url = rx.url("/stsAgent");
    // The process agent's own base URL: two probes.
    let pa_url = rx.url("/pa");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let dsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dsd_port = dsd.local_addr().unwrap().port();
    drop(dsd);
    let dsd_port_s = dsd_port.to_string();
    let started = Instant::now();
    let unix_at_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let agent = drained(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_PROCESS_AGENT_URL", &pa_url),
            ("STS_DOGSTATSD_PORT", &dsd_port_s),
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
    // DogStatsD: three packets, four metrics, one line that does not parse.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in ["feat.a:1|c", "feat.b:2|g\nfeat.c:3|c", "feat.d:4|h\nnot a metric"] {
        client.send_to(p.as_bytes(), ("127.0.0.1", dsd_port)).unwrap();
    }

    // Once a flush after those shows them (and both refusals), the agent is quiet: its series
    // equal `/status`. `k`: how many series payloads the receiver got before that one.
    let (k, payload, st) = loop {
        let last = rx
            .requests()
            .iter()
            .filter(|r| r.target.starts_with("/stsAgent/api/v1/series"))
            .map(|r| r.json())
            .enumerate()
            .filter(|(_, v)| serie(v, "stackstate.agent.running", None).is_some())
            .last();
        if let Some((k, v)) = last.filter(|(_, v)| {
            serie(v, "stackstate.agent.trace_intake.payloads", None) == Some(3.0)
                && serie(v, "stackstate.agent.dogstatsd.udp_packets", None) == Some(3.0)
                && dropped(v, "series", "bad_request").is_some()
                && dropped(v, "intake", "too_large").is_some()
        }) {
            break (k, v, status(port));
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no flush with the trace intake's counts and the drops");
        std::thread::sleep(Duration::from_millis(100));
    };
    let version = format!("version:{}", st["version"].as_str().unwrap());
    assert_eq!(serie(&payload, "stackstate.agent.running", Some(&version)), Some(1.0));
    // The two series the Agent V2 appends to every flush (spec/dogstatsd.md §4.1): gauges with
    // `source_type_name` `System`, no interval (0), the flush's time (the host check's series'),
    // `payload.dropped` without tags.
    let flush_ts =
        serie_obj(&payload, "system.uptime", None).expect("the host check's series")["points"][0][0].as_u64().unwrap();
    for name in ["stackstate.agent.running", PAYLOAD_DROPPED] {
        let s = serie_obj(&payload, name, None).unwrap_or_else(|| panic!("no {name}: {payload}"));
        assert_eq!((s["type"].as_str(), s["interval"].as_u64()), (Some("gauge"), Some(0)), "{s}");
        assert_eq!((s["source_type_name"].as_str(), s["host"].as_str()), (Some("System"), Some("nofeat-host")), "{s}");
        let ts = s["points"][0][0].as_u64().unwrap();
        assert!(ts.abs_diff(flush_ts) <= 1, "{name} at {ts}, the flush at {flush_ts}");
    }
    assert_eq!(serie_obj(&payload, PAYLOAD_DROPPED, None).unwrap()["tags"], serde_json::json!([]));
    // Ours keep the host check's interval and carry no source type.
    let ours = serie_obj(&payload, "stackstate.agent.uptime_s", None).unwrap();
    assert_eq!(ours["interval"], 2, "{ours}");
    assert!(ours.get("source_type_name").is_none(), "{ours}");
    let ti = &st["trace_intake"];
    for f in ["requests", "payloads", "traces", "spans"] {
        assert_eq!(serie(&payload, &format!("stackstate.agent.trace_intake.{f}"), None), ti[f].as_f64(), "{f}");
    }
    assert_eq!(ti["rejected"]["decode"], 1);
    // Refusal and drop series only for reasons that happened.
    let nonzero = |n: &Value| n.as_f64().filter(|n| *n != 0.0);
    for (reason, n) in ti["rejected"].as_object().unwrap() {
        let tag = format!("reason:{reason}");
        assert_eq!(serie(&payload, "stackstate.agent.trace_intake.rejected", Some(&tag)), nonzero(n), "{reason}");
    }
    let d = &st["dogstatsd"];
    assert_eq!((d["udp_packets"].as_u64(), d["metrics"].as_u64()), (Some(3), Some(4)), "{d}");
    for f in ["udp_packets", "uds_packets", "metrics", "events", "service_checks"] {
        assert_eq!(serie(&payload, &format!("stackstate.agent.dogstatsd.{f}"), None), d[f].as_f64(), "{f}");
    }
    assert_eq!(d["parse_errors"]["metric"], 1, "{d}");
    for (kind, n) in d["parse_errors"].as_object().unwrap() {
        let tag = format!("kind:{kind}");
        assert_eq!(serie(&payload, "stackstate.agent.dogstatsd.parse_errors", Some(&tag)), nonzero(n), "{kind}");
    }
    for (reason, n) in d["drops"].as_object().unwrap() {
        let tag = format!("reason:{reason}");
        assert_eq!(serie(&payload, "stackstate.agent.dogstatsd.dropped", Some(&tag)), nonzero(n), "{reason}");
    }
    let p = &st["checks"]["process"];
    for f in ["runs", "last_duration_ms", "last_cpu_ms", "total_cpu_ms"] {
        assert_eq!(
            serie(&payload, &format!("stackstate.agent.check.{f}"), Some("check:process")),
            p[f].as_f64(),
            "{f}"
        );
    }
    // How the process check found its processes: the first cycle listed /proc (for that reason
    // where the probe may be used, else every cycle lists, as unavailable), and the listings add
    // up by reason.
    let ps = &st["process_source"];
    if ps["probe_usable"] == true {
        assert_eq!(ps["listings_by_reason"]["first"], 1, "{ps}");
    } else {
        // Never usable (every cycle lists, unavailable), or refused after it started: either way
        // a listing says so.
        assert!(ps["listings_by_reason"]["unavailable"].as_u64().unwrap() >= 1, "{ps}");
    }
    let by_reason: u64 = ps["listings_by_reason"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(Some(by_reason), ps["listings"].as_u64(), "{ps}");
    assert_eq!(ps["listings"].as_u64().unwrap() + ps["probes"].as_u64().unwrap(), p["runs"].as_u64().unwrap(), "{ps}");
    assert!(ps["processes"].as_u64().unwrap() > 1 && ps["probe_usable"].is_boolean(), "{ps}");
    // The refused payloads: dropped by reason, the same counts as `/status` (they happened once,
    // so they hold still); every other reason absent, as `/status` has it 0.
    assert_eq!(dropped(&payload, "series", "bad_request"), Some(1.0));
    assert_eq!(dropped(&payload, "intake", "too_large"), Some(1.0));
    let endpoints = st["endpoints"].as_object().unwrap();
    for route in ["series", "intake", "collector", "process-intake", "traces"] {
        assert!(endpoints.contains_key(route), "{route}: {st}");
    }
    for (route, e) in endpoints {
        let tag = format!("endpoint:{route}");
        for (reason, n) in e["dropped"].as_object().unwrap() {
            assert_eq!(dropped(&payload, route, reason), nonzero(n), "{route} {reason}");
        }
        let got = |f: &str| {
            serie(&payload, &format!("stackstate.agent.outbox.{f}"), Some(&tag))
                .unwrap_or_else(|| panic!("no stackstate.agent.outbox.{f} for {route}"))
        };
        let dropped_sum: f64 = e["dropped"].as_object().unwrap().values().map(|n| n.as_f64().unwrap()).sum();
        // Each flush's figures are one moment's: every payload accounted for.
        assert_eq!(got("enqueued"), got("delivered") + dropped_sum + got("queued"), "{route}");
        // Nothing failed here: no retries, in the flush as in `/status`.
        assert_eq!(Some(got("retries")), e["retries"].as_f64(), "{route}");
        let fields = ["enqueued", "delivered", "queued", "queued_bytes", "retries"];
        if ["collector", "process-intake"].contains(&route.as_str()) {
            // The process agent's routes are quiet until its next run (a minute after the first,
            // which only primes the rates): every figure as `/status` has it now.
            for f in fields {
                assert_eq!(Some(got(f)), e[f].as_f64(), "{route} {f}");
            }
        } else {
            // The busy routes kept sending since that flush: the counters only grew.
            for f in ["enqueued", "delivered"] {
                assert!(got(f) <= e[f].as_f64().unwrap(), "{route} {f}: {} then {}", got(f), e[f]);
            }
        }
    }
    // The series route's payloads are sent one at a time, in order: the flush's `enqueued` is
    // the number the receiver got before it (the host check's and DogStatsD's).
    assert_eq!(serie(&payload, "stackstate.agent.outbox.enqueued", Some("endpoint:series")), Some(k as f64));
    // The Agent V2's payload drops: the core agent's payloads dropped for their size (the 413),
    // as `/status` has them (`too_large` + `oversized` of `series` and `intake`).
    let size_drops: f64 = ["series", "intake"]
        .iter()
        .flat_map(|r| ["too_large", "oversized"].map(|x| endpoints[*r]["dropped"][x].as_f64().unwrap()))
        .sum();
    assert_eq!(size_drops, 1.0, "{st}");
    assert_eq!(serie(&payload, PAYLOAD_DROPPED, None), Some(size_drops));
    // The processes the process check reported (the process agent's `len(processes)`).
    assert_eq!(serie(&payload, "stackstate.process_agent.processes.host_count", None), p["last_count"].as_f64(), "{p}");
    assert_eq!(serie(&payload, "stackstate.process_agent.running", Some(&version)), Some(1.0));

    // Over 65 s and more: each base URL asked once (a 404 is final), never again. Polled, so
    // that a second request fails the test when it comes, not at a fixed moment.
    let core_target = format!("/stsAgent/features?api_key={KEY}");
    let counts = || {
        let asked = rx.features_requests();
        let n = |t: &str| asked.iter().filter(|(_, r)| r.target == t).count();
        (n(&core_target), n("/pa/features"), asked.len())
    };
    while started.elapsed() < Duration::from_secs(70) {
        let (core, pa, all) = counts();
        assert!(core <= 1 && pa <= 1 && all == core + pa, "{:?}", rx.features_requests());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(counts(), (1, 1, 2), "{:?}", rx.features_requests());
    let asked = rx.features_requests();
    assert!(asked.iter().all(|(_, r)| r.status == 404));
    let pa_req = &asked.iter().find(|(_, r)| r.target == "/pa/features").unwrap().1;
    assert_eq!(pa_req.header("content-encoding"), Some("identity"));
    assert_eq!(pa_req.header("sts-hostname"), Some("nofeat-host"));
    assert_eq!(pa_req.header("sts-api-key"), Some(KEY));
    let st = status(port);
    // The process check's second run (at 60 s) reported processes; a flush since says as many.
    let p = &st["checks"]["process"];
    assert_eq!(p["runs"], 2, "{p}");
    assert!(p["last_count"].as_u64().unwrap() > 1, "{p}");
    let last = rx
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/stsAgent/api/v1/series"))
        .map(|r| r.json())
        .rfind(|v| serie(v, "stackstate.agent.check.runs", Some("check:process")) == Some(2.0))
        .expect("a flush after the process check's second run");
    assert_eq!(serie(&last, "stackstate.process_agent.processes.host_count", None), p["last_count"].as_f64());
    // The process agent's routes carried that run's payloads and are quiet again (until 120 s):
    // that flush's figures are `/status`'s.
    for route in ["collector", "process-intake"] {
        let (e, tag) = (&st["endpoints"][route], format!("endpoint:{route}"));
        for f in ["enqueued", "delivered", "queued", "queued_bytes", "retries"] {
            assert_eq!(serie(&last, &format!("stackstate.agent.outbox.{f}"), Some(&tag)), e[f].as_f64(), "{route} {f}");
        }
        assert!(e["delivered"].as_u64().unwrap() >= 1, "{route}: {e}");
    }
    // The container on the host: the process check's run counted it, as its side channel
    // (`containers.total_count`) and `/api/v1/collector` (every container, by id) say.
    let reqs = rx.requests();
    let collector: Vec<_> =
        reqs.iter().filter(|r| r.target == "/pa/api/v1/collector").map(|r| pa_proto::collector_proc(&r.body)).collect();
    let group = collector.last().expect("the second run's collector messages").group_id;
    let mut ids: Vec<String> = collector
        .iter()
        .filter(|m| m.group_id == group)
        .flat_map(|m| m.containers.iter().map(|c| c.id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    assert!(ids.contains(&id), "the test's container in {ids:?}");
    let side_count = reqs
        .iter()
        .rev()
        .filter(|r| r.target.starts_with("/pa/intake?"))
        .filter_map(|r| {
            let v = r.json();
            let m =
                v["metrics"].as_array()?.iter().find(|m| m[0] == "stackstate.process_agent.containers.total_count")?;
            m[2].as_f64()
        })
        .next()
        .expect("the side channel's container count");
    let host_count = serie(&last, "stackstate.process_agent.containers.host_count", None);
    assert_eq!(host_count, Some(ids.len() as f64), "{ids:?}");
    assert_eq!(host_count, Some(side_count));
    for probe in ["core", "process_agent"] {
        let f = &st["features"][probe];
        assert_eq!(f["state"], "refused", "{st}");
        assert_eq!(f["requests"], 1, "{st}");
        assert!(f["last_error"].as_str().unwrap().contains("404"), "{f}");
        assert_eq!(f["features"]["health-states"], false);
    }

    // The defaults: the agent topology and health stream (STS_REPORT_CHECK_HEALTH_STATE
    // defaults to true).
    let reqs = rx.requests();
    let side: Vec<Value> = reqs.iter().filter(|r| r.target.starts_with("/pa/intake?")).map(|r| r.json()).collect();
    assert!(!side.is_empty());
    for v in &side {
        assert_eq!(v["health"].as_array().unwrap().len(), 1, "{v}");
        assert!(v["topologies"].as_array().unwrap().iter().any(|t| t["instance"]["type"] == "agent"), "{v}");
    }
    // `stackstate.agent.started` and the startup event: once in the run.
    let series: Vec<Value> =
        reqs.iter().filter(|r| r.target.starts_with("/stsAgent/api/v1/series")).map(|r| r.json()).collect();
    let started_count =
        series.iter().filter(|v| serie(v, "stackstate.agent.started", Some(&version)).is_some()).count();
    assert_eq!(started_count, 1);
    // `started` as the original's DogStatsD time sampler flushes it: a count, interval 10, no
    // source type, the start's 10 s bucket.
    let first = series.iter().find(|v| serie(v, "stackstate.agent.started", None).is_some()).unwrap();
    let s = serie_obj(first, "stackstate.agent.started", Some(&version)).unwrap();
    assert_eq!((s["type"].as_str(), s["interval"].as_u64()), (Some("count"), Some(10)), "{s}");
    assert!(s.get("source_type_name").is_none(), "{s}");
    let ts = s["points"][0][0].as_u64().unwrap();
    assert!(ts % 10 == 0 && (unix_at_start - 10..=unix_at_start + 10).contains(&ts), "{ts} vs start {unix_at_start}");
    // Every host-check flush carries both of the Agent V2's series; DogStatsD's flushes neither.
    let host_flushes = series.iter().filter(|v| serie(v, "system.uptime", None).is_some()).count();
    assert!(host_flushes > 10, "a flush every 2 s: {host_flushes}");
    for name in ["stackstate.agent.running", PAYLOAD_DROPPED] {
        assert_eq!(series.iter().filter(|v| serie(v, name, None).is_some()).count(), host_flushes, "{name}");
    }
    let events = reqs
        .iter()
        .filter(|r| r.target.starts_with("/stsAgent/intake/"))
        .map(|r| r.json())
        .filter(|v| v["events"]["System"][0]["event_type"] == "Agent Startup")
        .count();
    assert_eq!(events, 1);
    drop(agent);
}

/// A free loopback port (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A receiver that is not listening when the agent starts (a failure without an HTTP answer)
/// and comes up ~6 s later: as the process agent polls every 5 s until it gets an answer, the
/// features are taken within seconds of it coming up (~10 s from start), not a minute later;
/// one request at a time, and none after the answer.
#[test]
fn a_receiver_that_comes_up_after_the_agent_gets_asked_within_seconds() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = format!("https://{addr}/stsAgent");
    let port = free_port();
    let port_s = port.to_string();
    let started = Instant::now();
    let agent = drained(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "late-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_APM_RECEIVER_PORT", &port_s),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    ));
    // The first request failed (nothing listens): no features for now, asked again.
    let first = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let st = status(port);
            if st["features"]["core"]["state"] == "no_answer" {
                break st;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no failed /features request in the first 5 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let f = &first["features"]["core"];
    assert!(f["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{f}");
    assert_eq!(first["features"]["process_agent"]["features"]["health-states"], false, "{first}");
    std::thread::sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    let rx = Receiver::start_at(addr, true, vec![202], Some((200, r#"{"health-states":true}"#)));
    let up = Instant::now();
    let answered = loop {
        let st = status(port);
        if st["features"]["core"]["state"] == "answered" {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "features not taken 20 s after start (the receiver came up at 6 s): {}",
            st["features"]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(13), "features taken {took:?} after start (receiver up at 6 s)");
    // The answer serves the process agent too (its URL falls back to the core's).
    assert_eq!(answered["features"]["process_agent"]["features"]["health-states"], true, "{answered}");
    // Asked every 5 s while nothing answered: two or three failures before, no more.
    let n = answered["features"]["core"]["requests"].as_u64().unwrap();
    assert!((2..=4).contains(&n), "{n} requests in {took:?}: {}", answered["features"]);
    // The receiver: one request, within one 5 s step of coming up; then none (an answer is final).
    std::thread::sleep(Duration::from_secs(6));
    let asked = rx.features_requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].0.duration_since(up) < Duration::from_millis(5500), "{:?} after it came up", asked[0].0 - up);
    assert_eq!(asked[0].1.target, format!("/stsAgent/features?api_key={KEY}"));
    assert_eq!(status(port)["features"]["core"]["requests"], n);
    drop(agent);
}

/// A receiver that takes each connection and closes it without a reply (no HTTP answer, ever):
/// `/features` is asked every 5 s during the first minute, then a minute apart; one request at a
/// time. Plain HTTP, so that the probe's requests are told from the forwarder's by their line.
#[test]
fn a_receiver_that_never_answers_is_asked_every_5_s_for_a_minute_then_every_minute() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Default::default();
    let rec = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let rec = rec.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut b) {
                        Ok(n) if n > 0 => head.extend_from_slice(&b[..n]),
                        _ => return,
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                rec.lock().unwrap().push((Instant::now(), line));
                // Dropped: the connection closes with no reply.
            });
        }
    });
    let started = Instant::now();
    let agent = drained(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &format!("http://{addr}/stsAgent")),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "silent-host"),
            ("STS_NETWORK_TRACING_ENABLED", "false"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    ));
    let probes = || -> Vec<Duration> {
        let target = format!("GET /stsAgent/features?api_key={KEY} ");
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.starts_with(&target))
            .map(|(t, _)| t.duration_since(started))
            .collect()
    };
    // Polled, so that a request too soon fails the test when it comes.
    while started.elapsed() < Duration::from_secs(85) {
        let p = probes();
        for w in p.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(4500), "two requests {:?} apart: {p:?}", w[1] - w[0]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = probes();
    // Every 5 s through the first minute since start (0 s to 60 s: 13 requests)...
    let early: Vec<Duration> = p.iter().copied().filter(|t| *t < Duration::from_secs(70)).collect();
    assert!(early[0] < Duration::from_secs(3), "{p:?}");
    assert!((12..=13).contains(&early.len()), "{p:?}");
    for w in early.windows(2) {
        assert!(w[1] - w[0] <= Duration::from_millis(6500), "{:?} between two requests: {p:?}", w[1] - w[0]);
    }
    // ...then a minute apart: none in the 15 s and more since.
    assert_eq!(p.len(), early.len(), "{p:?}");
    // The forwarder's payloads came to the same receiver and failed too (it was not the port).
    assert!(seen.lock().unwrap().iter().any(|(_, l)| l.starts_with("POST /stsAgent/api/v1/series")));
    drop(agent);
}

/// `incremental-topology`: `CollectorCommands` every run (the first all "update"), and besides it
/// a full `CollectorProc` on the first run and then once a minute: a process already sent comes
/// as "metrics", a new one as "update", one gone as "delete". Messages are told apart by groupId
/// (a busy host's snapshot is several type-12 messages of one group).
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
    // (type, groupId, groupSize) per message, and the groups in the order they came.
    let heads: Vec<(u8, i32, i32)> = msgs
        .iter()
        .map(|r| match pa_proto::header(&r.body).2 {
            12 => {
                let m = pa_proto::collector_proc(&r.body);
                (12, m.group_id, m.group_size)
            }
            t => {
                let m = pa_proto::collector_commands(&r.body);
                (t, m.group_id, m.group_size)
            }
        })
        .collect();
    let mut groups: Vec<(u8, i32)> = heads.iter().map(|h| (h.0, h.1)).collect();
    groups.dedup();
    for &(t, g) in &groups {
        let n = heads.iter().filter(|h| h.1 == g).count();
        assert!(heads.iter().filter(|h| h.1 == g).all(|h| h.0 == t && h.2 as usize == n), "group {g}: {heads:?}");
    }
    // The first run: its increment (every process an "update"), then the full snapshot; within
    // the minute no other snapshot, increments only.
    assert_eq!((groups[0].0, groups[1].0), (13, 12), "{heads:?}");
    assert_eq!(groups.iter().filter(|g| g.0 == 12).count(), 1, "{heads:?}");
    let first_incr: Vec<_> = msgs
        .iter()
        .zip(&heads)
        .filter(|(_, h)| h.1 == groups[0].1)
        .flat_map(|(r, _)| pa_proto::collector_commands(&r.body).commands)
        .collect();
    assert!(first_incr.iter().any(|c| c.update_process.as_ref().is_some_and(|p| p.pid == steady_pid as i32)));
    assert!(first_incr.iter().all(|c| c.update_process_metrics.is_none() && c.delete_process.is_none()));
    let full: Vec<_> = msgs
        .iter()
        .zip(&heads)
        .filter(|(_, h)| h.1 == groups[1].1)
        .flat_map(|(r, _)| pa_proto::collector_proc(&r.body).processes)
        .collect();
    assert!(full.iter().any(|p| p.pid == steady_pid as i32));
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
