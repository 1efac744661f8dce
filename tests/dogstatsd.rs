//! DogStatsD end to end: real clients (the `datadog` package from PyPI, over UDP and the Unix
//! socket) send gauges, counters with sample rates, sets, histograms, timers, distributions,
//! events and service checks with tags to the agent binary; the series decoded at a real TLS
//! receiver equal, bucket by bucket, a reference aggregation written here from the spec
//! (spec/dogstatsd.md §3); events arrive on `/intake/`; distributions and service checks are
//! counted as dropped in `/status`. Hostile datagrams neither crash the agent nor grow it past
//! its bounds.

mod common;
use common::*;
#[path = "support/engine.rs"]
mod engine;
#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const HOST: &str = "dsd-host";
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dogstatsd_client.py");

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET /status` from the agent's trace-intake port.
fn status(port: u16) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let (code, body) = read_response(&mut s);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["dogstatsd"].clone()
}

fn wait_status(port: u16) -> Value {
    let t = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return status(port);
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no /status on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running agent sending to a TLS receiver, with DogStatsD on `udp` (and `socket`).
struct Setup {
    rx: Receiver,
    agent: Agent,
    status_port: u16,
    /// The agent's stderr so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    /// The thread that reads it (done once the agent exited).
    log_reader: std::thread::JoinHandle<()>,
    _dir: TempDir,
}

/// The agent with its stdout drained and its stderr kept (an unread pipe that fills would block
/// the agent's writes).
fn logged(
    mut child: std::process::Child,
) -> (Agent, std::sync::Arc<std::sync::Mutex<String>>, std::thread::JoinHandle<()>) {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut std::io::BufReader::new(out), &mut std::io::sink()));
    let err = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let l2 = log.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let mut l = l2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    (Agent(child), log, reader)
}

fn start(udp: u16, extra: &[(&str, &str)]) -> Setup {
    let rx = Receiver::start(true, vec![202]);
    let dir = TempDir::new("dsd");
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, &rx.pki.as_ref().unwrap().ca_pem).unwrap();
    let url = rx.url("/stsAgent");
    let status_port = free_tcp_port();
    let (port, sp) = (udp.to_string(), status_port.to_string());
    let mut env: Vec<(&str, &str)> = vec![
        ("STS_STS_URL", &url),
        // The log masks the key wherever it appears: a one-letter key masked every `k` in it.
        ("STS_API_KEY", "dsd-test-api-key-0123456789"),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ("STS_HOSTNAME", HOST),
        ("STS_DOGSTATSD_PORT", &port),
        ("STS_APM_RECEIVER_PORT", &sp),
        ("STS_PROCESS_AGENT_ENABLED", "disabled"),
        ("STS_NETWORK_TRACING_ENABLED", "false"),
        ("STS_DOCKER_EVENTS_ENABLED", "false"),
    ];
    env.extend_from_slice(extra);
    let (agent, log, log_reader) = logged(spawn_agent(&[], &env));
    wait_status(status_port);
    Setup { rx, agent, status_port, log, log_reader, _dir: dir }
}

/// One sample as the client is told to send it.
#[derive(Clone)]
struct Sample {
    kind: &'static str,
    name: String,
    value: Value,
    rate: Option<f64>,
    tags: Vec<String>,
}

fn s(kind: &'static str, name: &str, value: impl Into<Value>, rate: Option<f64>, tags: &[&str]) -> Sample {
    Sample { kind, name: name.into(), value: value.into(), rate, tags: tags.iter().map(|t| t.to_string()).collect() }
}

fn to_json(x: &Sample) -> Value {
    json!({"kind": x.kind, "name": x.name, "value": x.value, "rate": x.rate, "tags": x.tags})
}

/// Series key: (metric, tags, host) → points (bucket start → (value, type)).
type Series = BTreeMap<(String, Vec<String>, String), BTreeMap<u64, (f64, String)>>;

/// The reference aggregation of `phases` (one bucket each), written from the spec: the context
/// is name + sorted, de-duplicated tags (without `host:`) + host; gauge = last; counter =
/// Σ v·(1/r) ÷ 10 as `rate`; set = distinct members; histogram and timer = max, lower median,
/// avg = Σ v·(1/r) / Σw, count = Σw ÷ 10 (rate), 95th percentile, with w = ⌊1/r⌋. A counter
/// also has a zero point for every bucket without samples after its last one (for 300 s, §3.6),
/// here for the buckets from the first phase's to the last's, which the run covers.
fn reference(phases: &[(u64, Vec<Sample>)]) -> Series {
    let mut out = Series::new();
    let mut counters = std::collections::BTreeSet::new();
    for (bucket, samples) in phases {
        // Per context, in arrival order.
        let mut ctx: BTreeMap<(String, Vec<String>, String), Vec<&Sample>> = BTreeMap::new();
        for x in samples {
            if x.kind == "distribution" {
                continue;
            }
            let mut host = HOST.to_string();
            let mut tags: Vec<String> = Vec::new();
            for t in &x.tags {
                match t.strip_prefix("host:") {
                    Some(h) => host = h.to_string(),
                    None if !t.is_empty() => tags.push(t.clone()),
                    None => {}
                }
            }
            tags.sort();
            tags.dedup();
            ctx.entry((x.name.clone(), tags, host)).or_default().push(x);
        }
        for ((name, tags, host), xs) in ctx {
            let mut put = |suffix: &str, v: f64, ty: &str| {
                out.entry((format!("{name}{suffix}"), tags.clone(), host.clone()))
                    .or_default()
                    .insert(*bucket, (v, ty.to_string()));
            };
            let val = |x: &Sample| match x.kind {
                "decrement" => -x.value.as_f64().unwrap(),
                _ => x.value.as_f64().unwrap(),
            };
            match xs[0].kind {
                "gauge" => put("", val(xs.last().unwrap()), "gauge"),
                "increment" | "decrement" => {
                    let sum: f64 = xs.iter().map(|x| val(x) * (1.0 / x.rate.unwrap_or(1.0))).sum();
                    put("", sum / 10.0, "rate");
                    counters.insert((name.clone(), tags.clone(), host.clone()));
                }
                "set" => {
                    let mut m: Vec<String> = xs.iter().map(|x| x.value.to_string()).collect();
                    m.sort();
                    m.dedup();
                    put("", m.len() as f64, "gauge");
                }
                "histogram" | "timing" => {
                    let mut w: Vec<(f64, i64)> =
                        xs.iter().map(|x| (val(x), (1.0 / x.rate.unwrap_or(1.0)) as i64)).collect();
                    let sum: f64 = xs.iter().map(|x| val(x) * (1.0 / x.rate.unwrap_or(1.0))).sum();
                    w.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let count: i64 = w.iter().map(|p| p.1).sum();
                    let rank = |target: i64| {
                        let mut run = 0;
                        w.iter()
                            .find(|p| {
                                run += p.1;
                                run > target
                            })
                            .unwrap()
                            .0
                    };
                    put(".max", w.last().unwrap().0, "gauge");
                    put(".median", rank((count - 1) / 2), "gauge");
                    put(".avg", sum / count as f64, "gauge");
                    put(".count", count as f64 / 10.0, "rate");
                    put(".95percentile", rank((95 * count - 1) / 100), "gauge");
                }
                k => panic!("{k}"),
            }
        }
    }
    // The phases' samples are sent in seconds 1-5 of their bucket, so each bucket after a
    // counter's last one, up to 300 s later, gets a zero.
    let (first, last) = (phases.iter().map(|p| p.0).min().unwrap(), phases.iter().map(|p| p.0).max().unwrap());
    for key in counters {
        let pts = out.get_mut(&key).unwrap();
        let data: Vec<u64> = pts.keys().copied().collect();
        for b in (first..=last).step_by(10) {
            let before = data.iter().filter(|&&d| d < b).max();
            if !data.contains(&b) && before.is_some_and(|&l| b <= l + 300) {
                pts.insert(b, (0.0, "rate".to_string()));
            }
        }
    }
    out
}

/// Every `dsd.*` serie the receiver decoded, by key, each point with its type; checks the
/// fixed fields of a DogStatsD serie on the way.
fn received(rx: &Receiver) -> Series {
    let mut out = Series::new();
    for r in rx.requests().iter().filter(|r| r.target.contains("/api/v1/series")) {
        for x in r.json()["series"].as_array().unwrap() {
            let name = x["metric"].as_str().unwrap();
            if !name.starts_with("dsd.") {
                continue;
            }
            assert_eq!(x["interval"], 10, "{x}");
            assert!(x.get("source_type_name").is_none(), "{x}");
            let tags: Vec<String> = x["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().into()).collect();
            let key = (name.to_string(), tags, x["host"].as_str().unwrap().to_string());
            let pts = out.entry(key).or_default();
            for p in x["points"].as_array().unwrap() {
                let ts = p[0].as_u64().unwrap();
                assert_eq!(ts % 10, 0, "points are stamped with their bucket's start: {x}");
                let prev = pts.insert(ts, (p[1].as_f64().unwrap(), x["type"].as_str().unwrap().into()));
                assert!(prev.is_none(), "a bucket sent twice: {x}");
            }
        }
    }
    out
}

/// Runs the Python client with `phases` (each inside one bucket); returns the bucket of each phase.
fn run_client(target: Value, buffered: bool, phases: &[Vec<Sample>], events: &[Value]) -> Vec<u64> {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(CLIENT);
    run(cmd, target, buffered, phases, events)
}

fn run(
    mut cmd: std::process::Command,
    target: Value,
    buffered: bool,
    phases: &[Vec<Sample>],
    events: &[Value],
) -> Vec<u64> {
    let mut ph: Vec<Vec<Value>> = phases.iter().map(|p| p.iter().map(to_json).collect()).collect();
    ph[0].extend(events.iter().cloned());
    let mut cfg = json!({"buffered": buffered, "phases": ph});
    for (k, v) in target.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let out = cmd.arg(cfg.to_string()).output().expect("the client runs");
    assert!(
        out.status.success(),
        "the datagram client failed (are `datadog==0.56.0` (pip) and `hot-shots@17.1.1` (npm, under target/npm) installed? .ci/run installs both): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["buckets"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect()
}

fn phases() -> Vec<Vec<Sample>> {
    let env = ["env:test", "zone:a"];
    let mut p1 = vec![
        s("gauge", "dsd.temp", 20, None, &env),
        s("gauge", "dsd.temp", 21.5, None, &env),
        s("gauge", "dsd.temp", -3, None, &["zone:a", "env:test", "zone:a"]),
        s("gauge", "dsd.hostless", 7, None, &["host:"]),
        s("decrement", "dsd.req", 2, None, &["route:/a"]),
        s("set", "dsd.users", "alice", None, &env),
        s("set", "dsd.users", "bob", None, &env),
        s("set", "dsd.users", "alice", None, &env),
        s("distribution", "dsd.dist", 1.5, None, &env),
        s("distribution", "dsd.dist", 2.5, Some(0.5), &env),
    ];
    for _ in 0..10 {
        p1.push(s("increment", "dsd.req", 1, Some(0.5), &["route:/a"]));
        p1.push(s("increment", "dsd.req", 3, None, &["route:/b", "host:web-1"]));
    }
    for v in 1..=20 {
        p1.push(s("histogram", "dsd.size", v, if v % 3 == 0 { Some(0.3) } else { None }, &["env:test"]));
    }
    for v in [10, 30, 20, 5] {
        p1.push(s("timing", "dsd.lat", v, Some(0.25), &[]));
    }
    let mut p2 = vec![
        s("gauge", "dsd.temp", 22.25, None, &env),
        s("set", "dsd.users", "carol", None, &env),
        s("distribution", "dsd.dist", 9, None, &[]),
    ];
    for v in [0.5, 0.25, 4.0] {
        p2.push(s("timing", "dsd.lat", v, None, &[]));
    }
    p2.push(s("increment", "dsd.req", 5, Some(0.1), &["route:/a"]));
    // 20 samples of weight 1: 95 × 20 is a multiple of 100, so the 95th percentile's rank
    // ((95 × count - 1) / 100 = 18: the 19th) differs from 95 × count / 100 (the 20th, the max).
    for v in [13, 2, 20, 7, 16, 1, 19, 10, 4, 17, 8, 14, 3, 18, 11, 6, 15, 9, 12, 5] {
        p2.push(s("histogram", "dsd.p95", v, None, &["env:test"]));
    }
    vec![p1, p2]
}

fn events() -> Vec<Value> {
    vec![
        json!({"kind": "event", "title": "Deploy", "text": "v42 rolled out\nto prod", "tags": ["team:a", "env:prod"],
               "alert_type": "success", "aggregation_key": "deploy-42", "priority": "low", "date_happened": 1_700_000_003}),
        json!({"kind": "event", "title": "Build", "text": "ok", "source_type_name": "jenkins", "hostname": "ci-1"}),
        json!({"kind": "service_check", "name": "dsd.db.up", "status": 2, "tags": ["db:main"], "message": "down"}),
        json!({"kind": "service_check", "name": "dsd.db.up", "status": 0}),
    ]
}

/// Waits until the receiver holds a point at `last_bucket` for every serie of `want` (a counter's
/// zero there included), then compares: every point of the reference is there, equal (values to
/// 1e-9; the counters' zeros after their last sample included), and any other point is a
/// counter's zero after `last_bucket` (the flushes after it, which the run does not wait for).
fn compare(rx: &Receiver, want: &Series, last_bucket: u64) {
    let t = Instant::now();
    let got = loop {
        let got = received(rx);
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, pts)| {
                pts.contains_key(&last_bucket) && !got.get(*k).is_some_and(|g| g.contains_key(&last_bucket))
            })
            .map(|(k, pts)| (k, &pts[&last_bucket]))
            .collect();
        if missing.is_empty() {
            break got;
        }
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "no point at {last_bucket} after 45 s for {missing:?}\nwant {want:#?}\ngot {got:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let keys = |s: &Series| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(want), "the same series");
    for (k, w) in want {
        let g = &got[k];
        for (b, (v, ty)) in w {
            let (gv, gty) = g.get(b).unwrap_or_else(|| panic!("{k:?} has no point at {b}: {g:?}"));
            assert_eq!(gty, ty, "{k:?} at {b}");
            assert!((gv - v).abs() <= 1e-9 * v.abs().max(1.0), "{k:?} at {b}: got {gv}, want {v}");
        }
        for (b, (v, ty)) in g.iter().filter(|(b, _)| !w.contains_key(b)) {
            assert!(
                ty == "rate" && *v == 0.0 && !k.0.ends_with(".count") && *b > last_bucket,
                "{k:?}: an unexpected point at {b}: {v} {ty}"
            );
        }
    }
}

/// What the reference of [`phases`] must hold for [`compare`] to see the arithmetic it is
/// meant to: a 95th percentile whose rank formula matters (19 of 1..=20; without the `- 1`, 20)
/// and a counter's required zero (`route:/b`, sent in the first phase only).
fn premises(want: &Series, buckets: &[u64]) {
    let key = |name: &str, tags: &[&str], host: &str| (name.to_string(), strings(tags), host.to_string());
    let p95 = &want[&key("dsd.p95.95percentile", &["env:test"], HOST)];
    assert_eq!((p95[&buckets[1]].0, want[&key("dsd.p95.max", &["env:test"], HOST)][&buckets[1]].0), (19.0, 20.0));
    let b = &want[&key("dsd.req", &["route:/b"], "web-1")];
    assert_eq!(b[&buckets[1]], (0.0, "rate".to_string()), "{b:?}");
    assert_eq!(b[&buckets[0]].0, 3.0, "{b:?}");
}

fn check_events_and_drops(setup: &Setup, n_dist: u64) {
    let t = Instant::now();
    let events = loop {
        let ev: Vec<Value> = setup
            .rx
            .requests()
            .iter()
            .filter(|r| r.target.contains("/intake/"))
            .map(|r| r.json())
            .filter(|v| v.get("events").is_some())
            // Not the agent's own "Agent Startup" event.
            .filter(|v| v["events"]["System"][0]["event_type"] != "Agent Startup")
            .collect();
        if !ev.is_empty() {
            break ev;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no events on /intake/");
        std::thread::sleep(Duration::from_millis(200));
    };
    let body = &events[0];
    assert_eq!((body["apiKey"].as_str(), body["internalHostname"].as_str()), (Some(""), Some(HOST)));
    assert_eq!(
        body["events"]["api"],
        json!([{"msg_title": "Deploy", "msg_text": "v42 rolled out\nto prod", "timestamp": 1_700_000_003u64,
                "priority": "low", "host": HOST, "tags": ["env:prod", "team:a"], "alert_type": "success",
                "aggregation_key": "deploy-42"}])
    );
    let j = &body["events"]["jenkins"][0];
    assert_eq!(
        (j["msg_title"].as_str(), j["host"].as_str(), j["source_type_name"].as_str()),
        (Some("Build"), Some("ci-1"), Some("jenkins"))
    );
    assert_eq!((j["priority"].as_str(), j["alert_type"].as_str()), (Some("normal"), Some("info")));
    let st = status(setup.status_port);
    assert_eq!(st["drops"]["distribution_dropped"], n_dist, "{st}");
    assert_eq!(st["drops"]["service_check_dropped"], 2, "{st}");
    assert_eq!(st["service_checks"], 2, "{st}");
    assert_eq!(st["events"], 2, "{st}");
    assert_eq!(st["events_flushed"], 2, "{st}");
    for (k, v) in st["parse_errors"].as_object().unwrap() {
        assert_eq!(v, 0, "parse error {k}: {st}");
    }
}

#[test]
fn datadog_client_over_udp_equals_the_reference_bucket_by_bucket() {
    let port = free_udp_port();
    let setup = start(port, &[]);
    let phases = phases();
    let buckets = run_client(json!({"udp_port": port}), false, &phases, &events());
    assert_eq!(buckets.len(), 2);
    let want = reference(&buckets.iter().copied().zip(phases.iter().cloned()).collect::<Vec<_>>());
    premises(&want, &buckets);
    compare(&setup.rx, &want, buckets[1]);
    check_events_and_drops(&setup, 3);
    let st = status(setup.status_port);
    let sent: usize = phases.iter().map(Vec::len).sum::<usize>() + 4;
    assert_eq!(st["udp_packets"], sent as u64, "one datagram per message unbuffered: {st}");
    drop(setup.agent);
}

#[test]
fn datadog_client_over_the_unix_socket_buffered_equals_the_reference() {
    let dir = TempDir::new("dsd-uds");
    let sock = dir.0.join("dsd.socket");
    let setup = start(
        free_udp_port(),
        &[("STS_DOGSTATSD_SOCKET", sock.to_str().unwrap()), ("STS_DOGSTATSD_ORIGIN_DETECTION", "true")],
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o722);
    let phases = phases();
    let buckets = run_client(json!({"socket": sock.to_str().unwrap()}), true, &phases, &events());
    let want = reference(&buckets.iter().copied().zip(phases.iter().cloned()).collect::<Vec<_>>());
    premises(&want, &buckets);
    compare(&setup.rx, &want, buckets[1]);
    check_events_and_drops(&setup, 3);
    let st = status(setup.status_port);
    let packets = st["uds_packets"].as_u64().unwrap();
    assert!((2..20).contains(&packets), "buffered: several messages per datagram: {st}");
    assert_eq!(st["udp_packets"], 0, "{st}");
    // The client runs outside any container: its pid is known (no origin error), no tags added.
    assert_eq!(st["drops"]["origin_detection_errors"], 0, "{st}");
    // A clean stop (SIGTERM) removes the socket file it bound.
    terminate_and_wait(setup.agent);
    assert!(!sock.exists(), "{} left behind", sock.display());
}

/// Stops the agent with SIGTERM and waits (10 s at most) for it to exit.
fn terminate_and_wait(mut agent: Agent) {
    let pid = nix::unistd::Pid::from_raw(agent.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let t = Instant::now();
    while agent.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10), "the agent did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// A local sender that passes descriptors (`SCM_RIGHTS`) with its datagrams: the agent closes
/// every one (its descriptor table does not grow), drops and counts the datagrams whose control
/// data did not fit, keeps the metrics of the others, and stays up.
#[test]
fn descriptors_passed_on_the_unix_socket_are_closed() {
    let dir = TempDir::new("dsd-fds");
    let sock = dir.0.join("dsd.socket");
    let setup = start(free_udp_port(), &[("STS_DOGSTATSD_SOCKET", sock.to_str().unwrap())]);
    let pid = setup.agent.0.id();
    let before = open_fds(pid);
    // 2,000 datagrams with 10 descriptors each, 500 with 250 (more than the control room).
    let code = format!(
        "import socket, os, time\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.connect({:?})\n\
         fd = os.open('/dev/null', os.O_RDONLY)\n\
         few = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(__import__('array').array('i', [fd] * 10))))]\n\
         many = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(__import__('array').array('i', [fd] * 250))))]\n\
         for i in range(500):\n\
         \x20   for j in range(4):\n\
         \x20       s.sendmsg([b'dsd.fds.ok:1|c'], few)\n\
         \x20   s.sendmsg([b'dsd.fds.cut:1|c'], many)\n\
         \x20   time.sleep(0.002)\n",
        sock.to_str().unwrap()
    );
    let out = std::process::Command::new("python3").args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = Instant::now();
    let st = loop {
        let st = status(setup.status_port);
        if st["uds_packets"] == 2500 {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "not all received: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = open_fds(pid);
    assert!(after <= before + 5, "the agent's descriptors grew from {before} to {after}");
    assert_eq!(st["drops"]["control_truncated"], 500, "{st}");
    // The 2,000 whole ones (20,000 descriptors), and of the cut ones what fit in the room.
    let closed = st["drops"]["passed_fds_closed"].as_u64().unwrap();
    assert!((20_000..=20_000 + 500 * 250).contains(&closed), "{st}");
    assert_eq!(st["metrics"], 2000, "{st}");
    drop(setup.agent);
}

/// hot-shots (npm) over UDP, buffered (several messages per datagram): the same reference.
#[test]
fn hot_shots_over_udp_equals_the_reference_bucket_by_bucket() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/npm/node_modules/hot-shots");
    assert!(
        std::path::Path::new(dir).join("package.json").exists(),
        "hot-shots is not installed: npm install --prefix target/npm hot-shots@17.1.1 (.ci/run does)"
    );
    let port = free_udp_port();
    let setup = start(port, &[]);
    let phases = phases();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hotshots_client.js")).env("HOT_SHOTS_DIR", dir);
    let buckets = run(cmd, json!({"udp_port": port}), true, &phases, &events());
    let want = reference(&buckets.iter().copied().zip(phases.iter().cloned()).collect::<Vec<_>>());
    premises(&want, &buckets);
    compare(&setup.rx, &want, buckets[1]);
    check_events_and_drops(&setup, 3);
    let st = status(setup.status_port);
    assert!(st["udp_packets"].as_u64().unwrap() < 20, "buffered: {st}");
    drop(setup.agent);
}

/// Origin detection: a client in a container's cgroup (a v1 cgroup named like Docker's, with the
/// client moved in) sends on the Unix socket; its metrics carry `container_id:<id>`, found from
/// the pid the kernel attached (`SO_PASSCRED`) and that pid's cgroup.
#[test]
fn unix_socket_origin_detection_tags_the_senders_container() {
    let id = test_cgroup::hex_id("dsd-origin", 64);
    let mut ctr = test_cgroup::TestCgroup::require(&[format!("sts-test-{}-dsd-docker", std::process::id())], &id);
    let dir = TempDir::new("dsd-origin");
    let sock = dir.0.join("dsd.socket");
    let setup = start(
        free_udp_port(),
        &[("STS_DOGSTATSD_SOCKET", sock.to_str().unwrap()), ("STS_DOGSTATSD_ORIGIN_DETECTION", "true")],
    );
    let code = format!(
        "import time\nfrom datadog.dogstatsd.base import DogStatsd\n\
         c = DogStatsd(socket_path={:?}, disable_telemetry=True)\n\
         c.gauge('dsd.origin', 5, tags=['app:web'])\nc.increment('dsd.origin.hits', 2)\ntime.sleep(60)\n",
        sock.to_str().unwrap()
    );
    ctr.run(&code);
    let want_tags = vec!["app:web".to_string(), format!("container_id:{id}")];
    let t = Instant::now();
    loop {
        let got = received(&setup.rx);
        let gauge = got.iter().find(|(k, _)| k.0 == "dsd.origin");
        let hits = got.iter().find(|(k, _)| k.0 == "dsd.origin.hits");
        if let (Some((g, gp)), Some((h, _))) = (gauge, hits) {
            assert_eq!(g.1, want_tags, "{got:?}");
            assert_eq!(h.1, vec![format!("container_id:{id}")], "{got:?}");
            assert_eq!(gp.values().next().unwrap().0, 5.0);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(45), "no origin-tagged series: {got:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let st = status(setup.status_port);
    assert_eq!(st["drops"]["origin_detection_errors"], 0, "{st}");
    drop(setup.agent);
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
}

#[test]
fn hostile_datagrams_are_counted_and_bounded() {
    let port = free_udp_port();
    let setup = start(port, &[("STS_DOGSTATSD_SO_RCVBUF", "4194304")]);
    let pid = setup.agent.0.id();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", port);
    // Truncated: 10,000 bytes of whole lines into an 8,192-byte buffer.
    let mut d = Vec::new();
    let mut lines = 0;
    while d.len() < 10_000 {
        d.extend_from_slice(format!("trunc.m:{lines}|c\n").as_bytes());
        lines += 1;
    }
    c.send_to(&d, to).unwrap();
    // 65,000 bytes of `|` (cut to the buffer: a second truncation, its one partial line dropped),
    // and 8,000 (whole: one refused line); invalid UTF-8 in a name and a tag; NaN, inf, 1e999.
    c.send_to(&vec![b'|'; 65_000], to).unwrap();
    c.send_to(&vec![b'|'; 8_000], to).unwrap();
    c.send_to(b"bad.\xff\xfe:1|g|#t:\xc3\x28\nx:nan|g\nx:inf|c\nx:1e999|h\nx:Infinity|g", to).unwrap();
    // 4,000 tags on one metric (8 KiB; ten distinct, the rest duplicates).
    let tags: Vec<String> = (0..4000).map(|i| format!("{}", i % 10)).collect();
    let many = format!("many.tags:1|g|#{}", tags.join(","));
    assert!(many.len() < 8192);
    c.send_to(many.as_bytes(), to).unwrap();
    // Broken events and service checks.
    c.send_to(b"_e{-1,5}:abcdefg\n_e{99,1}:t|x\n_e{1,1}:tx|\n_sc|x|9\n_sc", to).unwrap();
    // 65,536 distinct contexts, 100 per datagram, paced so the kernel buffer keeps up.
    let mut sent = 0;
    for chunk in 0..656 {
        let mut d = String::new();
        for i in 0..100 {
            let n = chunk * 100 + i;
            if n < 65_536 {
                d.push_str(&format!("ctx.{n}:1|g|#k:v\n"));
                sent += 1;
            }
        }
        c.send_to(d.as_bytes(), to).unwrap();
        if chunk % 16 == 15 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(sent, 65_536);
    let t = Instant::now();
    let st = loop {
        let st = status(setup.status_port);
        if st["udp_packets"].as_u64().unwrap() >= 6 + 656 || t.elapsed() > Duration::from_secs(20) {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let d = &st["drops"];
    assert_eq!(d["kernel_drops"], 0, "the kernel dropped datagrams; the counts below would be short: {st}");
    assert_eq!(st["udp_packets"], 6 + 656, "{st}");
    assert_eq!(d["truncated"], 2, "{st}");
    assert_eq!(d["non_finite"], 1, "1e999: {st}");
    assert_eq!(st["parse_errors"]["metric"], 1 + 3, "the whole pipes; nan, inf, Infinity: {st}");
    assert_eq!(st["parse_errors"]["event"], 3, "{st}");
    assert_eq!(st["parse_errors"]["service_check"], 2, "{st}");
    // Contexts: the cap (4,096 by default) holds; the rest are refused and counted.
    let contexts = st["contexts"].as_u64().unwrap();
    assert_eq!(contexts, 4096, "{st}");
    // trunc.m (the lines before the cut), bad., many.tags, then ctx.* up to the cap.
    let accepted_before_ctx = 3;
    assert_eq!(d["contexts_over_limit"].as_u64().unwrap(), 65_536 - (4096 - accepted_before_ctx), "{st}");
    let rss = rss_kib(pid);
    assert!(rss < 64 * 1024, "RSS {rss} KiB after 65,536 contexts (cap 4,096)");
    // Still serving: a plain gauge afterwards is accepted.
    c.send_to(b"after.hostile:1|g", to).unwrap();
    let m0 = st["metrics"].as_u64().unwrap();
    let t = Instant::now();
    while status(setup.status_port)["metrics"].as_u64().unwrap() == m0 {
        assert!(t.elapsed() < Duration::from_secs(5), "the agent stopped reading");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(setup.agent.0.id() == pid);
}

/// The points of the series named `name`, by tags.
fn series_named(rx: &Receiver, name: &str) -> BTreeMap<Vec<String>, BTreeMap<u64, (f64, String)>> {
    received(rx).into_iter().filter(|(k, _)| k.0 == name).map(|(k, v)| (k.1, v)).collect()
}

fn wait_series(rx: &Receiver, name: &str, secs: u64) -> BTreeMap<Vec<String>, BTreeMap<u64, (f64, String)>> {
    let t = Instant::now();
    loop {
        let got = series_named(rx, name);
        if !got.is_empty() {
            return got;
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "no {name} series after {secs} s: {:?}", received(rx));
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn wait_status_until(port: u16, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let st = status(port);
        if ok(&st) {
            return st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{what}: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `STS_BIND_HOST=::1` with `STS_DOGSTATSD_TAGS` as a JSON array: the real client reaches the
/// agent over IPv6 loopback; IPv4 loopback does not reach it (it is bound to ::1 alone); the
/// configured tags are on every serie and event, sorted in with the sender's own.
#[test]
fn ipv6_bind_host_and_configured_tags() {
    let port = UdpSocket::bind("[::1]:0").expect("IPv6 loopback (::1) is available").local_addr().unwrap().port();
    let setup = start(port, &[("STS_BIND_HOST", "::1"), ("STS_DOGSTATSD_TAGS", r#"["team:dsd", "env:ci"]"#)]);
    // Over IPv4 loopback: nobody listens there on this port.
    let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    v4.send_to(b"dsd.v4:1|g", ("127.0.0.1", port)).unwrap();
    let code = format!(
        "from datadog.dogstatsd.base import DogStatsd\n\
         c = DogStatsd(host='::1', port={port}, disable_telemetry=True)\n\
         c.gauge('dsd.v6', 3, tags=['app:web', 'env:ci'])\n\
         c.increment('dsd.v6.hits')\n\
         c.event('Deploy', 'v6', tags=['app:web'])\n\
         assert c.socket.family.name == 'AF_INET6', c.socket\n"
    );
    let out = std::process::Command::new("python3").args(["-c", &code]).output().unwrap();
    assert!(out.status.success(), "the datadog client over IPv6: {}", String::from_utf8_lossy(&out.stderr));
    let st = wait_status_until(setup.status_port, "three datagrams over IPv6", |st| {
        st["udp_packets"] == 3 && st["metrics"] == 2 && st["events"] == 1
    });
    assert_eq!(st["udp_packets"], 3, "{st}");
    let gauge = wait_series(&setup.rx, "dsd.v6", 45);
    assert_eq!(gauge.keys().collect::<Vec<_>>(), [&strings(&["app:web", "env:ci", "team:dsd"])]);
    let hits = wait_series(&setup.rx, "dsd.v6.hits", 45);
    assert_eq!(hits.keys().collect::<Vec<_>>(), [&strings(&["env:ci", "team:dsd"])]);
    assert!(series_named(&setup.rx, "dsd.v4").is_empty());
    let t = Instant::now();
    let ev = loop {
        let ev = setup
            .rx
            .requests()
            .iter()
            .filter(|r| r.target.contains("/intake/"))
            .map(|r| r.json())
            // DogStatsD's events, not the agent's own "Agent Startup".
            .find(|v| v.get("events").is_some() && v["events"].get("api").is_some());
        if let Some(ev) = ev {
            break ev;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no event on /intake/");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ev["events"]["api"][0]["tags"], json!(["app:web", "env:ci", "team:dsd"]), "{ev}");
    drop(setup.agent);
}

/// Non-local traffic binds `::` dual-stack: the real client reaches it over IPv4 and over IPv6.
#[test]
fn non_local_traffic_is_dual_stack() {
    let port = free_udp_port();
    let setup = start(port, &[("STS_DOGSTATSD_NON_LOCAL_TRAFFIC", "true")]);
    for host in ["127.0.0.1", "::1"] {
        let code = format!(
            "from datadog.dogstatsd.base import DogStatsd\n\
             c = DogStatsd(host='{host}', port={port}, disable_telemetry=True)\n\
             c.gauge('dsd.stack', 1, tags=['from:{host}'])\n"
        );
        let out = std::process::Command::new("python3").args(["-c", &code]).output().unwrap();
        assert!(out.status.success(), "{host}: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_status_until(setup.status_port, "both datagrams", |st| st["udp_packets"] == 2 && st["metrics"] == 2);
    let t = Instant::now();
    loop {
        let got = series_named(&setup.rx, "dsd.stack");
        if got.len() == 2 {
            assert!(
                got.contains_key(&strings(&["from:127.0.0.1"])) && got.contains_key(&strings(&["from:::1"])),
                "{got:?}"
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(45), "not both series: {got:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(setup.agent);
}

/// A malformed STS_DOGSTATSD_TAGS or STS_BIND_HOST stops the agent at start with the variable
/// named and the expected form.
#[test]
fn malformed_tags_or_bind_host_stop_the_agent() {
    for (var, v, expected) in
        [("STS_DOGSTATSD_TAGS", "[\"env:ci\"", "JSON array"), ("STS_BIND_HOST", "agent.example", "an IP address")]
    {
        let out = std::process::Command::new(AGENT).env_clear().env(var, v).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={v} accepted: {err}");
        assert!(err.contains(var) && err.contains(expected), "{var}: {err}");
    }
}

/// The agent's log lines so far that contain every one of `words`.
fn log_lines(setup: &Setup, words: &[&str]) -> Vec<String> {
    let log = setup.log.lock().unwrap();
    log.lines().filter(|l| words.iter().all(|w| l.contains(w))).map(str::to_string).collect()
}

/// A Unix socket that cannot be bound (its directory does not exist) leaves UDP working: a
/// metric sent over UDP is counted and reaches the receiver; the log's error names
/// STS_DOGSTATSD_SOCKET with the path, the reason and what is expected; `/status` says the
/// Unix listener is down and why.
#[test]
fn a_unix_socket_that_cannot_open_leaves_udp_working() {
    let port = free_udp_port();
    let setup = start(port, &[("STS_DOGSTATSD_SOCKET", "/nonexistent/dir/dsd.socket")]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"dsd.udp.alone:3|g|#k:v\ndsd.udp.alone.hits:2|c", ("127.0.0.1", port)).unwrap();
    let st = wait_status_until(setup.status_port, "the UDP datagram counted", |st| {
        st["udp_packets"] == 1 && st["metrics"] == 2
    });
    let l = &st["listeners"];
    assert_eq!(l["udp"], json!({"address": format!("127.0.0.1:{port}"), "up": true}), "{st}");
    assert_eq!(l["unix"]["up"], false, "{st}");
    let why = l["unix"]["error"].as_str().unwrap();
    assert!(why.contains("STS_DOGSTATSD_SOCKET=/nonexistent/dir/dsd.socket") && why.contains("No such file"), "{st}");
    let gauge = wait_series(&setup.rx, "dsd.udp.alone", 45);
    assert_eq!(gauge.keys().collect::<Vec<_>>(), [&strings(&["k:v"])]);
    assert_eq!(gauge.values().next().unwrap().values().next().unwrap().0, 3.0);
    let errors = log_lines(&setup, &["ERROR", "STS_DOGSTATSD_SOCKET=/nonexistent/dir/dsd.socket"]);
    assert_eq!(errors.len(), 1, "{}", setup.log.lock().unwrap());
    for w in ["No such file or directory", "expected a path in an existing directory", "goes on over UDP only"] {
        assert!(errors[0].contains(w), "{w:?} missing: {}", errors[0]);
    }
    assert!(log_lines(&setup, &["dogstatsd disabled"]).is_empty(), "{}", setup.log.lock().unwrap());
    assert_eq!(log_lines(&setup, &["dogstatsd on udp 127.0.0.1:"]).len(), 1, "{}", setup.log.lock().unwrap());
    drop(setup.agent);
}

/// A UDP port another socket holds leaves the Unix socket working: a metric sent on the socket
/// is counted and reaches the receiver, while what is sent to the port reaches the other
/// socket; the log's error names STS_DOGSTATSD_PORT (and STS_BIND_HOST) with the reason;
/// `/status` says the UDP listener is down and why.
#[test]
fn a_taken_udp_port_leaves_the_unix_socket_working() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = TempDir::new("dsd-udp-taken");
    let sock = dir.0.join("dsd.socket");
    let setup = start(port, &[("STS_DOGSTATSD_SOCKET", sock.to_str().unwrap())]);
    let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
    c.send_to(b"dsd.uds.alone:4|g|#k:v", &sock).unwrap();
    let st = wait_status_until(setup.status_port, "the Unix datagram counted", |st| {
        st["uds_packets"] == 1 && st["metrics"] == 1
    });
    assert_eq!(st["udp_packets"], 0, "{st}");
    // The port is the other socket's: what is sent there reaches it, not the agent.
    UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"dsd.stolen:1|g", ("127.0.0.1", port)).unwrap();
    holder.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    let n = holder.recv(&mut b).unwrap();
    assert_eq!(&b[..n], b"dsd.stolen:1|g");
    let l = &st["listeners"];
    assert_eq!(l["unix"], json!({"address": sock.to_str().unwrap(), "up": true}), "{st}");
    assert_eq!(l["udp"]["up"], false, "{st}");
    assert!(l["udp"]["error"].as_str().unwrap().contains("STS_DOGSTATSD_PORT"), "{st}");
    let gauge = wait_series(&setup.rx, "dsd.uds.alone", 45);
    assert_eq!(gauge.values().next().unwrap().values().next().unwrap().0, 4.0);
    let errors = log_lines(&setup, &["ERROR", "UDP listener on"]);
    assert_eq!(errors.len(), 1, "{}", setup.log.lock().unwrap());
    for w in [
        &format!("127.0.0.1:{port}"),
        "STS_DOGSTATSD_PORT",
        "STS_BIND_HOST",
        "Address already in use",
        "goes on over the Unix socket only",
    ] {
        assert!(errors[0].contains(w), "{w:?} missing: {}", errors[0]);
    }
    assert!(log_lines(&setup, &["dogstatsd disabled"]).is_empty(), "{}", setup.log.lock().unwrap());
    drop(setup.agent);
}

/// Neither socket opens: DogStatsD is disabled, the agent runs on, and `/status` names both with
/// why (it was `null`, as if DogStatsD were off by configuration).
#[test]
fn no_socket_opening_disables_dogstatsd_and_status_says_why() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let setup = start(port, &[("STS_DOGSTATSD_SOCKET", "/nonexistent/dir/dsd.socket")]);
    let st = status(setup.status_port);
    assert_eq!(st["disabled"], "no listener opened", "{st}");
    assert_eq!(
        (st["listeners"]["udp"]["up"].as_bool(), st["listeners"]["unix"]["up"].as_bool()),
        (Some(false), Some(false)),
        "{st}"
    );
    assert!(st["listeners"]["udp"]["error"].as_str().unwrap().contains("no DogStatsD listener is open"), "{st}");
    assert_eq!(log_lines(&setup, &["ERROR", "dogstatsd disabled: no listener opened"]).len(), 1);
    assert_eq!(log_lines(&setup, &["ERROR", "STS_DOGSTATSD_PORT"]).len(), 1);
    assert_eq!(log_lines(&setup, &["ERROR", "STS_DOGSTATSD_SOCKET="]).len(), 1);
    drop(holder);
    drop(setup.agent);
}

/// A hostile sender (thousands of malformed lines a second) does not flood the log: the first
/// of each reason is logged at once, then one line per period per reason with the count since
/// (the period is 60 s; `STS_DOGSTATSD_DROP_LOG_SECS` shortens it to 10 s here); the counts of
/// the lines add up to what `/status` counted. The kernel may drop datagrams under the flood
/// (its own counter, logged too): the test holds whatever the receive buffer.
#[test]
fn parse_errors_are_logged_rate_limited_per_reason() {
    const EVERY: u64 = 10;
    let port = free_udp_port();
    let setup = start(port, &[("STS_DOGSTATSD_SO_RCVBUF", "4194304"), ("STS_DOGSTATSD_DROP_LOG_SECS", "10")]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let flood = |rounds: u64| {
        for i in 0..rounds {
            // 50 malformed metric lines, 2 malformed events, one good line per datagram.
            let mut d = String::new();
            for j in 0..50 {
                d.push_str(&format!("bad.{j}:{i}|x|y|z|w\n"));
            }
            d.push_str("_e{-1,5}:abcdefg\n_e{9,1}:t|x\ndsd.ok:1|c");
            c.send_to(d.as_bytes(), ("127.0.0.1", port)).unwrap();
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        rounds
    };
    // Until every datagram sent was read or counted as dropped by the kernel (whose count comes
    // with the next datagram read): one good datagram more each time.
    let settle = |sent: &mut u64| -> Value {
        let t = Instant::now();
        loop {
            c.send_to(b"dsd.sync:1|c", ("127.0.0.1", port)).unwrap();
            *sent += 1;
            std::thread::sleep(Duration::from_millis(100));
            let st = status(setup.status_port);
            let seen = st["udp_packets"].as_u64().unwrap() + st["drops"]["kernel_drops"].as_u64().unwrap();
            if seen == *sent {
                return st;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{sent} datagrams sent, {seen} accounted for: {st}");
        }
    };
    let lines = |what: &str| -> Vec<String> {
        let log = setup.log.lock().unwrap();
        log.lines().filter(|l| l.contains("dogstatsd: ") && l.contains(what)).map(str::to_string).collect()
    };
    let count_of = |l: &str| -> u64 {
        let rest = &l[l.find("dogstatsd: ").unwrap() + 11..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let wait_log = |what: &str, ok: &dyn Fn() -> bool, secs: u64| {
        let t = Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(secs), "{what}:\n{}", setup.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let t0 = Instant::now();
    let mut sent = flood(1000);
    wait_log(
        "the first line of each reason",
        &|| !lines("malformed metric").is_empty() && !lines("malformed event").is_empty(),
        20,
    );
    assert!(lines("malformed metric")[0].contains("first seen"), "{:?}", lines("malformed metric"));
    // More within the period: still one line each (when the machine was quick enough to be
    // within it; the lines' spacing is checked below whatever the timing).
    sent += flood(1000);
    settle(&mut sent);
    if t0.elapsed() < Duration::from_secs(EVERY) {
        let (m, e) = (lines("malformed metric"), lines("malformed event"));
        assert_eq!((m.len(), e.len()), (1, 1), "one line per reason, not per datagram:\n{m:?}\n{e:?}");
    }
    // After the period: the lines' counts add up to /status's (nothing is sent any more).
    let st = status(setup.status_port);
    let (want_m, want_e) =
        (st["parse_errors"]["metric"].as_u64().unwrap(), st["parse_errors"]["event"].as_u64().unwrap());
    assert!(want_m >= 50 && want_e >= 2, "{st}");
    let sum = |what: &str| lines(what).iter().map(|l| count_of(l)).sum::<u64>();
    wait_log(
        &format!("logged counts adding up to /status's ({want_m} metric lines, {want_e} events)"),
        &|| sum("malformed metric") == want_m && sum("malformed event") == want_e,
        2 * EVERY + 20,
    );
    let elapsed = t0.elapsed().as_secs();
    let (m, e) = (lines("malformed metric"), lines("malformed event"));
    assert!(m.len() >= 2 && e.len() >= 2, "a summary line after the first:\n{m:?}\n{e:?}");
    for l in m.iter().chain(&e) {
        assert!(!l.contains("(first seen)") || l == &m[0] || l == &e[0], "first seen twice: {l}");
    }
    for l in m[1..].iter().chain(&e[1..]) {
        let secs: u64 = l.rsplit("in the last ").next().unwrap().trim_end_matches('s').parse().unwrap();
        assert!(secs >= EVERY, "a line {secs} s after the previous one: {l}");
    }
    let most = 2 + elapsed / EVERY;
    assert!(m.len() as u64 <= most && e.len() as u64 <= most, "over {most} lines in {elapsed} s:\n{m:?}\n{e:?}");
    // Those two reasons and perhaps the kernel's drops: nothing else is logged per datagram.
    let all = setup.log.lock().unwrap().lines().filter(|l| l.contains("dogstatsd: ")).count() as u64;
    assert!(all <= 3 * most, "{all} dogstatsd lines in {elapsed} s:\n{}", setup.log.lock().unwrap());
    drop(setup.agent);
}

/// SIGTERM inside a bucket: the open bucket (and the pending event) are flushed and delivered
/// to the TLS receiver before the agent exits, stamped with the bucket's start. Should the
/// bucket close before the stop (a slow machine), it is tried again in a later bucket.
#[test]
fn sigterm_flushes_the_open_bucket() {
    let phase = vec![
        s("gauge", "dsd.last", 4, None, &["k:v"]),
        s("increment", "dsd.last.hits", 3, None, &[]),
        s("histogram", "dsd.last.size", 8, None, &[]),
    ];
    let ev = vec![json!({"kind": "event", "title": "Stop", "text": "bye"})];
    for attempt in 1..=3 {
        let port = free_udp_port();
        let setup = start(port, &[]);
        let buckets = run_client(json!({"udp_port": port}), false, std::slice::from_ref(&phase), &ev);
        wait_status_until(setup.status_port, "all read", |st| st["metrics"] == 3 && st["events"] == 1);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        if now >= (buckets[0] + 10) as f64 - 0.5 {
            eprintln!("attempt {attempt}: the bucket closed before the stop; again in a later one");
            drop(setup.agent);
            continue;
        }
        assert!(received(&setup.rx).is_empty(), "nothing flushed before the stop");
        let Setup { rx, agent, log, log_reader, .. } = setup;
        terminate_and_wait(agent);
        // The agent has exited: its stderr reaches EOF and the reader has every line.
        log_reader.join().unwrap();
        let log = log.lock().unwrap().clone();
        let want = reference(&[(buckets[0], phase)]);
        let got = received(&rx);
        assert_eq!(got, want, "the open bucket at exit\n{log}");
        let ev = rx
            .requests()
            .iter()
            .filter(|r| r.target.contains("/intake/"))
            .map(|r| r.json())
            // DogStatsD's events, not the agent's own "Agent Startup".
            .find(|v| v.get("events").is_some() && v["events"].get("api").is_some());
        assert_eq!(ev.expect("the pending event sent at exit")["events"]["api"][0]["msg_title"], "Stop");
        assert!(log.contains("dogstatsd: stopped; flushed 7 series and 1 events\n"), "{log}");
        return;
    }
    panic!("three attempts, and each time the bucket closed before the stop");
}

/// hot-shots over the Unix datagram socket (`protocol: 'uds'`, with its optional native module
/// `unix-dgram`), buffered: the same reference.
#[test]
fn hot_shots_over_the_unix_socket_equals_the_reference() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/npm/node_modules");
    assert!(
        std::path::Path::new(dir).join("unix-dgram/build/Release/unix_dgram.node").exists(),
        "unix-dgram (hot-shots' optional module for `uds`) is not built: npm install --prefix target/npm \
         unix-dgram@2.0.7, then node-gyp rebuild in target/npm/node_modules/unix-dgram (.ci/run does)"
    );
    let sock_dir = TempDir::new("dsd-hs-uds");
    let sock = sock_dir.0.join("dsd.socket");
    let setup = start(free_udp_port(), &[("STS_DOGSTATSD_SOCKET", sock.to_str().unwrap())]);
    let phases = phases();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hotshots_client.js"))
        .env("HOT_SHOTS_DIR", format!("{dir}/hot-shots"));
    let buckets = run(cmd, json!({"socket": sock.to_str().unwrap()}), true, &phases, &events());
    let want = reference(&buckets.iter().copied().zip(phases.iter().cloned()).collect::<Vec<_>>());
    premises(&want, &buckets);
    compare(&setup.rx, &want, buckets[1]);
    check_events_and_drops(&setup, 3);
    let st = status(setup.status_port);
    let packets = st["uds_packets"].as_u64().unwrap();
    assert!((2..20).contains(&packets), "buffered over the Unix socket: {st}");
    assert_eq!(st["udp_packets"], 0, "{st}");
    drop(setup.agent);
}

/// Origin detection with a real container: a busybox container of an ECS task (labels, and the
/// ECS agent stand-in listing it), with the agent's socket directory bind-mounted, sends over the
/// Unix socket with a tiny static sender (busybox has no DogStatsD client and its `nc` no Unix
/// sockets); the series carry `container_id:<id>` and the task's low-cardinality tags, as the
/// original's tagger gives them (no `task_arn`: that is orchestrator cardinality), and the
/// configured STS_DOGSTATSD_TAGS after them. The labels and the stand-in disagree on purpose
/// (family, version, container and cluster): the series carry the stand-in's values, which only
/// the ECS agent's API could have given.
#[test]
fn a_containers_metrics_carry_its_id_and_ecs_task_tags() {
    use engine::*;
    require_engine();
    let dir = TempDir::new("dsd-ctr");
    let sender = dir.0.join("dsd_send");
    let cc = std::process::Command::new("cc")
        .args(["-static", "-Os", "-o", sender.to_str().unwrap()])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dsd_send.c"))
        .output()
        .expect("cannot run: no C compiler (`cc`, gcc with static glibc) to build the in-container sender");
    assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));
    let img = Image::busybox();
    let task_id = test_cgroup::hex_id("dsdtask", 32);
    let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/prod/{task_id}");
    let mount = format!("{}:/dsd", dir.0.display());
    let mut opts: Vec<String> = strings(&["--network", "none", "-v", &mount]);
    for (k, v) in [
        ("com.amazonaws.ecs.cluster", "prod-label"),
        ("com.amazonaws.ecs.container-name", "web-label"),
        ("com.amazonaws.ecs.task-arn", arn.as_str()),
        ("com.amazonaws.ecs.task-definition-family", "shop-label"),
        ("com.amazonaws.ecs.task-definition-version", "6"),
    ] {
        opts.extend(["--label".to_string(), format!("{k}={v}")]);
    }
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    // Waits for the go (the agent knows the container by then), sends, stays 30 s for its pid.
    let ctr = Ctr::run_with(
        &img,
        "dsd-origin",
        &opts,
        "while [ ! -e /dsd/go ]; do sleep 0.1; done; \
         exec /dsd/dsd_send /dsd/dsd.socket 'dsd.ctr:7|g|#app:web' 'dsd.ctr.hits:2|c' 30",
    );
    let ecs = fake_ecs_agent(
        r#"{"Cluster":"prod-ecs","ContainerInstanceArn":"arn:aws:ecs:eu-west-1:123456789012:container-instance/prod/1","Version":"Amazon ECS Agent - v1.80.0"}"#.into(),
        format!(
            r#"{{"Tasks":[{{"Arn":"{arn}","DesiredStatus":"RUNNING","KnownStatus":"RUNNING","Family":"shop-ecs","Version":"7","Containers":[
               {{"DockerId":"{}","DockerName":"{}","Name":"web-ecs"}}]}}]}}"#,
            ctr.id, ctr.name
        ),
    );
    let sock = dir.0.join("dsd.socket");
    let setup = start(
        free_udp_port(),
        &[
            ("STS_DOGSTATSD_SOCKET", sock.to_str().unwrap()),
            ("STS_DOGSTATSD_ORIGIN_DETECTION", "true"),
            ("STS_ECS_AGENT_URL", &ecs),
            ("STS_DOCKER_CHECK_INTERVAL", "2"),
            ("STS_DOGSTATSD_TAGS", "team:dsd env:ci"),
            // Containers only (the docker pass; `start` turns the process agent off).
            ("STS_PROCESS_AGENT_ENABLED", "false"),
        ],
    );
    // The agent knows the container, with the stand-in's task tags, once its docker.* series
    // carry its id and the stand-in's family and cluster.
    let id_tag = format!("container_id:{}", ctr.id);
    let from_ecs = [id_tag.as_str(), "task_family:shop-ecs", "cluster_name:prod-ecs"];
    let t = Instant::now();
    while !setup.rx.requests().iter().filter(|r| r.target.contains("/api/v1/series")).any(|r| {
        r.json()["series"].as_array().unwrap().iter().any(|x| {
            let tags = x["tags"].as_array().unwrap();
            x["metric"].as_str().unwrap().starts_with("docker.")
                && from_ecs.iter().all(|w| tags.iter().any(|t| t.as_str() == Some(w)))
        })
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "the agent has not seen the container {} with the ECS stand-in's tags",
            ctr.id
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(dir.0.join("go"), b"").unwrap();
    let image = img.0.trim_end_matches(":latest").to_string();
    let task_tags = vec![
        id_tag.clone(),
        "cluster_name:prod-ecs".to_string(),
        format!("docker_image:{}", img.0),
        "ecs_container_name:web-ecs".to_string(),
        "env:ci".to_string(),
        format!("image_name:{image}"),
        "image_tag:latest".to_string(),
        format!("short_image:{image}"),
        "task_family:shop-ecs".to_string(),
        "task_name:shop-ecs".to_string(),
        "task_version:7".to_string(),
        "team:dsd".to_string(),
    ];
    let mut want_gauge = task_tags.clone();
    want_gauge.push("app:web".into());
    want_gauge.sort();
    let mut want_hits = task_tags;
    want_hits.sort();
    let gauge = wait_series(&setup.rx, "dsd.ctr", 45);
    let logs = || docker_ok(&["logs", &ctr.name]);
    assert_eq!(gauge.keys().collect::<Vec<_>>(), [&want_gauge], "sender: {}", logs());
    assert_eq!(gauge.values().next().unwrap().values().next().unwrap().0, 7.0);
    let hits = wait_series(&setup.rx, "dsd.ctr.hits", 45);
    assert_eq!(hits.keys().collect::<Vec<_>>(), [&want_hits]);
    let st = status(setup.status_port);
    assert_eq!(
        (st["uds_packets"].as_u64(), st["drops"]["origin_detection_errors"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );
    drop(setup.agent);
}

/// The task definitions' hard memory limit (`ecs/*.json` `"memory"`, MiB), the same in each.
fn task_memory_mib() -> u64 {
    let mut mib = Vec::new();
    for f in ["stackstate-agent-v2-ecs.json", "stackstate-agent-v2-ecs-amazon-linux.json"] {
        let p = format!("{}/ecs/{f}", env!("CARGO_MANIFEST_DIR"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        mib.push(v["containerDefinitions"][0]["memory"].as_u64().unwrap_or_else(|| panic!("{p}: no memory")));
    }
    assert!(mib.windows(2).all(|w| w[0] == w[1]), "{mib:?}");
    mib[0]
}

/// `/status` whole (the forwarder's routes under `endpoints`); `None` when the agent does not
/// answer (it may have died: the caller says why).
fn full_status(port: u16) -> Option<Value> {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    reply.windows(4).any(|w| w == b"\r\n\r\n").then_some(())?;
    let (code, body) = read_response(&mut &reply[..]);
    assert_eq!(code, 200, "{body}");
    Some(serde_json::from_str(&body).unwrap())
}

/// One field of a cgroup v1 `memory.oom_control`-style file (`name value` lines).
fn field(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_else(|| panic!("{name} in {text}"))
}

/// A payload's series bound (`app/dogstatsd.rs`, `CHUNK_BYTES`), uncompressed.
const CHUNK: usize = 1 << 20;

/// The agent binary in a cgroup v1 memory cgroup limited to the task definitions' memory (swap
/// included), sending to a TLS receiver, with a debug log (each flush's line). The cgroup is
/// removed on drop, its processes killed, even when the test fails.
struct CappedAgent {
    rx: Receiver,
    agent: Agent,
    udp: u16,
    status_port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    log_reader: std::thread::JoinHandle<()>,
    limit: u64,
    idle: u64,
    _dir: TempDir,
    // Last: dropped after the agent was killed.
    cg: test_cgroup::TestCgroup,
}

impl CappedAgent {
    fn start(tag: &str, extra: &[(&str, &str)]) -> CappedAgent {
        let limit = task_memory_mib() << 20;
        let cg = test_cgroup::TestCgroup::require(&[format!("sts-test-{}-{tag}", std::process::id())], "agent");
        std::fs::write(cg.path("memory", "memory.limit_in_bytes"), limit.to_string()).unwrap();
        let memsw = cg.path("memory", "memory.memsw.limit_in_bytes");
        if std::path::Path::new(&memsw).exists() {
            std::fs::write(&memsw, limit.to_string()).unwrap();
        }
        let rx = Receiver::start(true, vec![202]);
        let dir = TempDir::new(tag);
        let ca = dir.0.join("ca.pem");
        std::fs::write(&ca, &rx.pki.as_ref().unwrap().ca_pem).unwrap();
        let (udp, status_port) = (free_udp_port(), free_tcp_port());
        // The agent enters the cgroup before it starts (the shell moves itself in, then execs
        // it), so every page it touches is charged there.
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(format!("echo $$ > {} && exec \"$0\"", cg.path("memory", "cgroup.procs"))).arg(AGENT);
        cmd.env_clear().stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        for (k, v) in [
            ("STS_STS_URL", rx.url("/stsAgent")),
            ("STS_API_KEY", "k".into()),
            ("SSL_CERT_FILE", ca.to_str().unwrap().into()),
            ("STS_HOSTNAME", HOST.into()),
            ("STS_DOGSTATSD_PORT", udp.to_string()),
            ("STS_APM_RECEIVER_PORT", status_port.to_string()),
            ("STS_EC2_METADATA_URL", "http://127.0.0.1:9".into()),
            ("STS_PROCESS_AGENT_ENABLED", "disabled".into()),
            ("STS_NETWORK_TRACING_ENABLED", "false".into()),
            ("STS_DOCKER_EVENTS_ENABLED", "false".into()),
            ("STS_LOG_LEVEL", "debug".into()),
        ] {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let (agent, log, log_reader) = logged(cmd.spawn().unwrap());
        wait_status(status_port);
        let procs = std::fs::read_to_string(cg.path("memory", "cgroup.procs")).unwrap();
        assert_eq!(procs.trim(), agent.0.id().to_string(), "the agent runs in the cgroup");
        let mut a = CappedAgent { rx, agent, udp, status_port, log, log_reader, limit, idle: 0, _dir: dir, cg };
        a.idle = a.memory("memory.usage_in_bytes");
        a
    }

    fn memory(&self, file: &str) -> u64 {
        std::fs::read_to_string(self.cg.path("memory", file)).unwrap().trim().parse().unwrap()
    }

    /// Sends `datagrams` over UDP, in rounds of 256 that the agent has read before the next.
    fn send(&self, datagrams: impl Iterator<Item = Vec<u8>>) {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = status(self.status_port)["udp_packets"].as_u64().unwrap();
        let mut sent = 0;
        let mut datagrams = datagrams.peekable();
        while let Some(d) = datagrams.next() {
            c.send_to(&d, ("127.0.0.1", self.udp)).unwrap();
            sent += 1;
            if sent % 256 == 0 || datagrams.peek().is_none() {
                wait_status_until(self.status_port, "read", |st| st["udp_packets"].as_u64() >= Some(base + sent));
            }
        }
    }

    /// The flush lines of the debug log so far (those that wrote something).
    fn flushes(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.lines()
            .filter(|l| l.contains("dogstatsd: flushed") && !l.contains("flushed 0 series in 0"))
            .map(String::from)
            .collect()
    }

    /// Waits until `series` DogStatsD series were flushed and the series and intake routes
    /// delivered everything, none dropped.
    fn wait_delivered(&mut self, series: u64) {
        let t = Instant::now();
        loop {
            let Some(s) = full_status(self.status_port) else {
                self.alive();
                std::thread::sleep(Duration::from_millis(500));
                continue;
            };
            let flushed = s["dogstatsd"]["series_flushed"].as_u64().unwrap();
            let done = |r: &Value| r["queued"] == 0 && r["delivered"] == r["enqueued"];
            let (sr, ir) = (&s["endpoints"]["series"], &s["endpoints"]["intake"]);
            if flushed >= series && s["dogstatsd"]["events_pending"] == 0 && done(sr) && done(ir) {
                let none = json!({"overflow": 0, "oversized": 0, "bad_request": 0, "forbidden": 0, "too_large": 0});
                assert_eq!((&sr["dropped"], &ir["dropped"]), (&none, &none), "{s}");
                return;
            }
            self.alive();
            assert!(t.elapsed() < Duration::from_secs(300), "the flush did not end: {flushed} series; {s}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Fails the test, saying how, if the agent is gone (killed by the OOM killer, say).
    fn alive(&mut self) {
        if let Some(exit) = self.agent.0.try_wait().unwrap() {
            let oom = std::fs::read_to_string(self.cg.path("memory", "memory.oom_control")).unwrap();
            let peak = self.memory("memory.max_usage_in_bytes");
            panic!(
                "the agent died ({exit}); the cgroup's memory.oom_control: {oom:?}, peak {:.1} MiB of {:.0} MiB; log tail: {}",
                mib(peak),
                mib(self.limit),
                self.log.lock().unwrap().lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            );
        }
    }

    /// The series payloads that carry metrics starting with `prefix`: each one's uncompressed and
    /// compressed size, and its series.
    fn series_payloads(&self, prefix: &str) -> Vec<(usize, usize, Vec<Value>)> {
        let mut out = Vec::new();
        for r in self.rx.requests().iter().filter(|r| r.target.contains("/api/v1/series")) {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&r.body[..]), &mut raw).unwrap();
            let v: Value = serde_json::from_slice(&raw).unwrap();
            let ours: Vec<Value> = v["series"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["metric"].as_str().unwrap().starts_with(prefix))
                .cloned()
                .collect();
            if !ours.is_empty() {
                out.push((raw.len(), r.body.len(), ours));
            }
        }
        out
    }

    /// Not killed, never at the limit, no dishonest deadline; then exits 0 on SIGTERM. Returns
    /// the cgroup's peak usage.
    fn stop(self) -> u64 {
        let oom = std::fs::read_to_string(self.cg.path("memory", "memory.oom_control")).unwrap();
        let (failcnt, peak) = (self.memory("memory.failcnt"), self.memory("memory.max_usage_in_bytes"));
        assert_eq!((field(&oom, "oom_kill "), field(&oom, "under_oom ")), (0, 0), "{oom}");
        assert_eq!(failcnt, 0, "the cgroup reached its limit (peak {:.1} MiB)", mib(peak));
        // A chunk a turn keeps DogStatsD's deadline in the past on purpose: not a dishonest one.
        assert!(!self.log.lock().unwrap().contains("kept a deadline in the past"), "{}", self.log.lock().unwrap());
        let CappedAgent { mut agent, log, log_reader, cg, .. } = self;
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        let pid = nix::unistd::Pid::from_raw(agent.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let t = Instant::now();
        let exit = loop {
            if let Some(s) = agent.0.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "the agent did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        log_reader.join().unwrap();
        assert!(exit.success(), "exit {exit}: {}", log.lock().unwrap());
        drop(agent);
        drop(cg);
        peak
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// `n` pseudo-random hex digits.
fn hex(seed: &mut u64, n: usize) -> String {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            char::from_digit((*seed % 16) as u32, 16).unwrap()
        })
        .collect()
}

/// Histogram contexts by name: their sorted tags and their one value.
type Wanted = BTreeMap<String, (Vec<String>, f64)>;

/// `n` histogram contexts `{prefix}NNNNN` with 2,012-byte keys (20 tags `tNN:` + 95 random hex
/// digits: as long as a key may be, and as poorly compressible as tags get), one sample each
/// (its index + 0.5): the datagrams, and each context's sorted tags and value.
fn long_key_histograms(prefix: &str, n: usize) -> (Vec<Vec<u8>>, Wanted) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut datagrams, mut want) = (Vec::new(), BTreeMap::new());
    for i in 0..n {
        let name = format!("{prefix}{i:05}");
        let mut tags: Vec<String> = (0..20).map(|j| format!("t{j:02}:{}", hex(&mut seed, 95))).collect();
        assert_eq!(name.len() + tags.iter().map(|t| t.len() + 1).sum::<usize>() - 1, 2012);
        let v = i as f64 + 0.5;
        datagrams.push(format!("{name}:{v}|h|#{}", tags.join(",")).into_bytes());
        tags.sort();
        want.insert(name, (tags, v));
    }
    (datagrams, want)
}

/// Checks that every context of `want` has its five histogram series in `payloads`, once each,
/// with its tags and value.
fn check_histograms(payloads: &[(usize, usize, Vec<Value>)], want: &Wanted) {
    // Context name → suffix → (tags, value, type).
    type Point = (Vec<String>, f64, String);
    let mut got: BTreeMap<String, BTreeMap<String, Point>> = BTreeMap::new();
    for x in payloads.iter().flat_map(|p| &p.2) {
        let metric = x["metric"].as_str().unwrap();
        let (name, suffix) = metric.rsplit_once('.').unwrap();
        if !want.contains_key(name) {
            continue;
        }
        let tags = x["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
        assert_eq!(x["points"].as_array().unwrap().len(), 1, "{metric}");
        let p = (tags, x["points"][0][1].as_f64().unwrap(), x["type"].as_str().unwrap().to_string());
        assert!(got.entry(name.to_string()).or_default().insert(suffix.to_string(), p).is_none(), "{metric} twice");
    }
    assert_eq!(got.len(), want.len(), "contexts with series");
    for (name, (tags, v)) in want {
        let s = &got[name];
        for (suffix, value, ty) in [
            ("max", *v, "gauge"),
            ("median", *v, "gauge"),
            ("avg", *v, "gauge"),
            ("count", 0.1, "rate"),
            ("95percentile", *v, "gauge"),
        ] {
            assert_eq!(s.get(suffix), Some(&(tags.clone(), value, ty.to_string())), "{name}.{suffix}");
        }
    }
}

/// The reviewer's case (issue 18 review, finding 1) in the shipped task's memory, with the cap
/// it had then (16,384): 16,384 histogram contexts of 2,012-byte keys over UDP, then a flush.
/// Their series are 172 MB of JSON; as one payload they killed the agent at the flush (oom_kill
/// 1). Now they arrive at the TLS receiver in payloads of at most 1 MiB uncompressed, every
/// context's five series with their tags and values, and the agent is neither killed nor
/// brought to the limit (`memory.failcnt` 0), and exits 0 on SIGTERM.
#[test]
fn long_key_histograms_flush_in_chunks_within_the_tasks_memory() {
    const CONTEXTS: usize = 16_384;
    let mut a = CappedAgent::start("dsd-mem", &[("STS_DOGSTATSD_MAX_CONTEXTS", "16384")]);
    let (datagrams, want) = long_key_histograms("dsd.big.", CONTEXTS);
    a.send(datagrams.into_iter());
    let st = status(a.status_port);
    assert_eq!(st["drops"]["kernel_drops"], 0, "{st}");
    assert_eq!(
        (st["contexts"].as_u64(), st["drops"]["context_key_too_long"].as_u64()),
        (Some(16_384), Some(0)),
        "{st}"
    );
    let after_contexts = a.memory("memory.usage_in_bytes");
    a.wait_delivered(5 * CONTEXTS as u64);
    let payloads = a.series_payloads("dsd.big.");
    check_histograms(&payloads, &want);
    for (raw, _, _) in &payloads {
        assert!(*raw <= CHUNK, "a series payload of {raw} bytes (uncompressed) over {CHUNK}");
    }
    assert!(payloads.len() >= 100, "{} series payloads", payloads.len());
    let largest = payloads.iter().map(|p| p.0).max().unwrap();
    let compressed = payloads.iter().map(|p| p.1).max().unwrap();
    let (limit, idle, flushes) = (a.limit, a.idle, a.flushes());
    let peak = a.stop();
    eprintln!(
        "cgroup limit {:.0} MiB: idle {:.1} MiB, after {CONTEXTS} contexts {:.1} MiB, peak {:.1} MiB; {} series payloads, the largest {largest} bytes ({compressed} compressed at most); {flushes:?}",
        mib(limit),
        mib(idle),
        mib(after_contexts),
        mib(peak),
        payloads.len(),
    );
}

/// Every DogStatsD bound full at once, at the defaults, in the task's memory: contexts to the
/// cap (4,096) with 2,012-byte keys (100 more refused), histogram samples to their storage bound
/// (1 Mi slots: 16 contexts of 70,000 samples, the rest refused), and events to theirs (4 MiB of
/// random text, the rest refused), sent right after a flush so that the next one carries them
/// all: its events in bodies and its series in chunks of at most 1 MiB. Everything accepted
/// arrives at the TLS receiver; the cgroup never reaches its limit.
#[test]
fn every_dogstatsd_bound_full_at_once_fits_the_tasks_memory() {
    const CAP: usize = 4096;
    const SAMPLED: usize = 16;
    const SAMPLES: usize = 70_000;
    let mut a = CappedAgent::start("dsd-worst", &[]);
    let (datagrams, mut want) = long_key_histograms("dsd.cap.", CAP - SAMPLED + 100);
    // The contexts past the cap: refused.
    let refused: Vec<String> = want.keys().skip(CAP - SAMPLED).cloned().collect();
    for k in &refused {
        want.remove(k);
    }
    // Contexts of their own for the samples, made first (one sample each); then packed
    // samples, 4,000 a datagram ("1:1:…").
    let seeds: Vec<Vec<u8>> = (0..SAMPLED).map(|k| format!("dsd.samples.{k:02}:1|h").into_bytes()).collect();
    let samples: Vec<Vec<u8>> = (0..SAMPLED)
        .flat_map(|k| {
            (0..SAMPLES.div_ceil(4000)).map(move |r| {
                let n = 4000.min(SAMPLES - r * 4000);
                format!("dsd.samples.{k:02}:{}|h", vec!["1"; n].join(":")).into_bytes()
            })
        })
        .collect();
    let sent_samples = SAMPLED as u64 * (1 + SAMPLES as u64);
    // Events of 7,000 random hex digits: 650 pass the 4 MiB.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let events: Vec<Vec<u8>> = (0..650)
        .map(|i| {
            let (title, text) = (format!("worst {i}"), hex(&mut seed, 7000));
            format!("_e{{{},{}}}:{title}|{text}", title.len(), text.len()).into_bytes()
        })
        .collect();
    // Right after a flush: 15 s until the next one.
    let flushes = || a.log.lock().unwrap().matches("dogstatsd: flushed").count();
    let (n, t) = (flushes(), Instant::now());
    while flushes() == n {
        assert!(t.elapsed() < Duration::from_secs(20), "no flush in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    a.send(seeds.into_iter().chain(datagrams).chain(samples).chain(events));
    let sending = start.elapsed();
    let st = status(a.status_port);
    let d = &st["drops"];
    assert_eq!(d["kernel_drops"], 0, "{st}");
    assert_eq!((st["contexts"].as_u64(), d["contexts_over_limit"].as_u64()), (Some(CAP as u64), Some(100)), "{st}");
    let over = d["samples_over_limit"].as_u64().unwrap();
    assert!(over > 0, "the samples' bound was reached: {st}");
    assert!(d["events_dropped"].as_u64().unwrap() > 0, "the events' bound was reached: {st}");
    let events = st["events"].as_u64().unwrap() - d["events_dropped"].as_u64().unwrap();
    let full = a.memory("memory.usage_in_bytes");
    a.wait_delivered(5 * CAP as u64);
    let payloads = a.series_payloads("dsd.");
    check_histograms(&payloads, &want);
    for (raw, _, _) in &payloads {
        assert!(*raw <= CHUNK, "a series payload of {raw} bytes (uncompressed) over {CHUNK}");
    }
    // Every accepted sample counted once: Σ .count × 10 over the sampled contexts' points.
    let counted: f64 = payloads
        .iter()
        .flat_map(|p| &p.2)
        .filter(|x| {
            x["metric"].as_str().unwrap().starts_with("dsd.samples.")
                && x["metric"].as_str().unwrap().ends_with(".count")
        })
        .flat_map(|x| x["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap() * 10.0))
        .sum();
    assert_eq!(counted.round() as u64, sent_samples - over);
    // The events: in bodies of at most 1 MiB, every accepted one once.
    let mut titles = std::collections::BTreeSet::new();
    let mut bodies = 0;
    for r in a.rx.requests().iter().filter(|r| r.target.contains("/intake/")) {
        let v = r.json();
        let Some(api) = v.get("events").and_then(|e| e.get("api")) else { continue };
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&r.body[..]), &mut raw).unwrap();
        assert!(raw.len() <= CHUNK, "an events body of {} bytes", raw.len());
        bodies += 1;
        for e in api.as_array().unwrap() {
            assert!(titles.insert(e["msg_title"].as_str().unwrap().to_string()), "{} twice", e["msg_title"]);
        }
    }
    assert_eq!(titles.len() as u64, events);
    assert!(bodies >= 4, "{bodies} events bodies");
    let (limit, idle, flushes) = (a.limit, a.idle, a.flushes());
    let peak = a.stop();
    eprintln!(
        "cgroup limit {:.0} MiB: idle {:.1} MiB, with every bound full {:.1} MiB (sent in {sending:?}), peak {:.1} MiB; {} series payloads, {bodies} events bodies; {flushes:?}",
        mib(limit),
        mib(idle),
        mib(full),
        mib(peak),
        payloads.len(),
    );
}
