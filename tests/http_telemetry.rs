//! HTTP telemetry on connections, end to end: real HTTP/1.1 servers (Python's `http.server`, one
//! in its own network namespace joined by a veth pair, one on loopback), real keep-alive and
//! pipelining clients that count their responses per status and time each request, and the agent
//! binary as a daemon sending to a real TLS receiver. Every `/api/v1/connections` message is
//! decoded here with prost structs written from spec/http-inspection.md §2 (independent of the
//! agent's encoders), and for each server connection the requests per status class and the
//! response-time quantiles are compared with what the client itself saw.
//!
//! Needs root, `ip netns` and python3; a test whose prerequisite is missing fails and says which.

mod common;
#[path = "support/netns.rs"]
mod netns;
use common::pa_proto::{self, Addr};
use common::*;
use netns::Netns;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "http-test-key-0123456789";
const HOST: &str = "http-host";
const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http_server.py");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http_client.py");
/// The agents of these tests must not see each other's servers, nor share the CPU while timing.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// Prerequisites and fixtures.

/// Fails (does not skip) when the test cannot run here, and says why.
fn prerequisites() {
    assert!(rustix::process::geteuid().is_root(), "prerequisite missing: these tests need root (ip netns, AF_PACKET)");
    let ip = Command::new("ip").args(["netns", "list"]).output();
    assert!(
        ip.as_ref().is_ok_and(|o| o.status.success()),
        "prerequisite missing: `ip netns list` does not run (iproute2): {ip:?}"
    );
    let py = Command::new("python3").arg("--version").output();
    assert!(py.as_ref().is_ok_and(|o| o.status.success()), "prerequisite missing: python3: {py:?}");
}

/// `tests/support/http_server.py` on `host` (inside `netns` if given), on a port of its choosing.
struct Server {
    _kids: Kids,
    pid: u32,
    port: u16,
}

impl Server {
    fn start(netns: Option<&str>, host: &str) -> Server {
        let mut cmd = netns::python_in(netns, SERVER);
        let mut child =
            cmd.args([host, "0"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port = line.strip_prefix("ready ").and_then(|p| p.trim().parse().ok());
        let pid = child.id();
        let _kids = Kids(vec![child]);
        let port = port.unwrap_or_else(|| panic!("http_server.py on {host} did not start: {line:?}"));
        // `ip netns exec` execs python3: the server's pid is the child's.
        Server { _kids, pid, port }
    }
}

/// What one client connection saw: its local port, responses per exact status, and (keep-alive
/// connections) each request's latency in ms.
#[derive(Debug, Clone, Default)]
struct ClientConn {
    port: u16,
    codes: BTreeMap<u16, u64>,
    latency_ms: Vec<f64>,
}

/// `tests/support/http_client.py` with a plan; its connections are open once `start` returns.
struct Client {
    _kids: Kids,
    pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    ports: Vec<u16>,
}

impl Client {
    fn start(host: &str, port: u16, conns: serde_json::Value) -> Client {
        Client::start_in(None, host, port, conns)
    }

    /// The client inside network namespace `netns` when given.
    fn start_in(netns: Option<&str>, host: &str, port: u16, conns: serde_json::Value) -> Client {
        let plan = serde_json::json!({"host": host, "port": port, "conns": conns});
        let mut child = netns::python_in(netns, CLIENT)
            .arg(plan.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let pid = child.id();
        let _kids = Kids(vec![child]);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("http_client.py did not connect ({e}): {line:?}"));
        let ports = v["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u16).collect();
        Client { _kids, pid, stdin, stdout, ports }
    }

    /// Starts the requests.
    fn go(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the requests to finish; what each connection saw (the connections stay open).
    fn results(&mut self) -> Vec<ClientConn> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("http_client.py failed ({e}): {line:?}"));
        v["conns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ClientConn {
                port: c["port"].as_u64().unwrap() as u16,
                codes: c["codes"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, n)| (k.parse().unwrap(), n.as_u64().unwrap()))
                    .collect(),
                latency_ms: c["latency_ms"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
            })
            .collect()
    }
}

/// The agent as a daemon (every check each 2 s, nothing held back as short-lived) sending to a
/// TLS receiver; its stderr is kept for failure messages.
struct Daemon {
    child: Option<Child>,
    rx: Receiver,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Daemon {
    fn start(extra: &[(&str, &str)]) -> Daemon {
        Daemon::start_wrapped(extra, None)
    }

    /// The agent started by `sh -c <script>` (which ends with `exec $AGENT`) under `wrapper`
    /// (e.g. `unshare …`), when given, instead of directly.
    fn start_wrapped(extra: &[(&str, &str)], wrapped: Option<(&[&str], &str)>) -> Daemon {
        let rx = Receiver::start(true, vec![202]);
        let url = rx.url("/stsAgent");
        let mut env = vec![
            ("STS_STS_URL", url.as_str()),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", HOST),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_LOG_LEVEL", "info"),
            ("STS_PROCESS_CHECK_INTERVAL", "2"),
            ("STS_CONNECTION_CHECK_INTERVAL", "2"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ("STS_ECS_AGENT_URL", "http://127.0.0.1:9"),
        ];
        env.extend_from_slice(extra);
        let mut child = match wrapped {
            None => spawn_agent(&[], &env),
            Some((wrapper, script)) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let mut cmd = Command::new(wrapper[0]);
                cmd.args(&wrapper[1..]).args(["sh", "-c", script]).env_clear();
                cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("AGENT", AGENT);
                cmd.env("STS_EC2_METADATA_URL", "http://127.0.0.1:9").env("STS_APM_RECEIVER_PORT", port.to_string());
                // No DogStatsD listener: 127.0.0.1:8125 may be another agent's.
                cmd.env("STS_DOGSTATSD_PORT", "0");
                cmd.envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
                cmd.spawn().expect("spawn the wrapped agent")
            }
        };
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                keep.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Daemon { child: Some(child), rx, stderr }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Every connections message so far, decoded, in arrival order.
    fn messages(&self) -> Vec<Msg> {
        self.rx
            .requests()
            .iter()
            .filter(|r| r.target == "/stsAgent/api/v1/connections")
            .map(|r| {
                let (version, encoding, kind, ..) = pa_proto::header(&r.body);
                assert_eq!((version, encoding, kind), (3, 2, 22), "a CollectorConnections message");
                let ts = pa_proto::header(&r.body).5;
                let m = Conns::decode(&pa_proto::unzstd(&r.body)[..]).expect("CollectorConnections");
                Msg { ts, interval_ms: m.collection_interval, conns: m.connections }
            })
            .collect()
    }

    /// Connections checks reported so far (their messages share the check's timestamp).
    fn checks(&self) -> usize {
        self.messages().iter().map(|m| m.ts).collect::<BTreeSet<_>>().len()
    }

    /// Waits until `done` holds for the messages so far; fails after `limit` with the agent's log.
    fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut(&[Msg]) -> bool) {
        let start = Instant::now();
        loop {
            if done(&self.messages()) {
                return;
            }
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}; agent stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `n` more connections checks than now have been reported.
    fn wait_checks(&self, n: usize) {
        let target = self.checks() + n;
        self.wait_for(&format!("{n} more connections checks"), Duration::from_secs(20), |m| {
            m.iter().map(|m| m.ts).collect::<BTreeSet<_>>().len() >= target
        });
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then the exit (the agent flushes what is pending first).
    fn stop(&mut self) -> Vec<Msg> {
        let child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let out = wait_with_timeout(child, Duration::from_secs(15));
        assert!(out.status.success(), "agent exit {:?}; stderr:\n{}", out.status, self.stderr());
        self.messages()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// An independent decoder of what spec/http-inspection.md §2.1 says field 53 and 54 carry.

#[derive(Clone, PartialEq, Message)]
struct Conns {
    #[prost(message, repeated, tag = "3")]
    connections: Vec<Conn>,
    #[prost(int32, tag = "8")]
    collection_interval: i32,
}

#[derive(Clone, PartialEq, Message)]
struct Conn {
    #[prost(int32, tag = "1")]
    pid: i32,
    #[prost(message, optional, tag = "5")]
    laddr: Option<Addr>,
    #[prost(message, optional, tag = "6")]
    raddr: Option<Addr>,
    #[prost(int32, tag = "51")]
    direction: i32,
    #[prost(string, tag = "53")]
    application_protocol: String,
    #[prost(message, repeated, tag = "54")]
    metrics: Vec<Metric>,
}

#[derive(Clone, PartialEq, Message)]
struct Metric {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(map = "string, string", tag = "2")]
    tags: HashMap<String, String>,
    #[prost(message, optional, tag = "3")]
    value: Option<MetricValue>,
}

#[derive(Clone, PartialEq, Message)]
struct MetricValue {
    #[prost(oneof = "Value", tags = "1, 2")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(message, tag = "1")]
    Histogram(DdSketch),
    #[prost(double, tag = "2")]
    Number(f64),
}

#[derive(Clone, PartialEq, Message)]
struct DdSketch {
    #[prost(message, optional, tag = "1")]
    mapping: Option<IndexMapping>,
    #[prost(message, optional, tag = "2")]
    positive_values: Option<Store>,
    #[prost(message, optional, tag = "3")]
    negative_values: Option<Store>,
    #[prost(double, tag = "4")]
    zero_count: f64,
}

#[derive(Clone, PartialEq, Message)]
struct IndexMapping {
    #[prost(double, tag = "1")]
    gamma: f64,
    #[prost(double, tag = "2")]
    index_offset: f64,
    #[prost(int32, tag = "3")]
    interpolation: i32,
}

#[derive(Clone, PartialEq, Message)]
struct Store {
    #[prost(map = "sint32, double", tag = "1")]
    bin_counts: HashMap<i32, f64>,
    #[prost(double, repeated, tag = "2")]
    contiguous_bin_counts: Vec<f64>,
    #[prost(sint32, tag = "3")]
    contiguous_bin_index_offset: i32,
}

struct Msg {
    ts: i64,
    interval_ms: i32,
    conns: Vec<Conn>,
}

const RATE: &str = "http_requests_per_second";
const TIME: &str = "http_response_time_seconds";
const GROUPS: [&str; 7] = ["any", "success", "1xx", "2xx", "3xx", "4xx", "5xx"];
/// γ for α = 0.01, as SK's logarithmic mapping computes it (spec §2.4: bytes fd 4a 81 5a bf 52 f0 3f).
const GAMMA_BITS: u64 = 0x3ff0_52bf_5a81_4afd;

/// The status codes a group tag stands for (spec §2.2).
fn in_group(group: &str, code: u16) -> bool {
    match group {
        "any" => (100..=999).contains(&code),
        "success" => (100..=399).contains(&code),
        g => g.as_bytes()[0].wrapping_sub(b'0') as u16 == code / 100,
    }
}

/// A merged sketch: positive bins by index, and the zero count.
#[derive(Debug, Clone, Default)]
struct Sketch {
    bins: BTreeMap<i32, f64>,
    zero: f64,
}

impl Sketch {
    fn count(&self) -> f64 {
        self.zero + self.bins.values().sum::<f64>()
    }

    /// SK v1.1.1 `GetValueAtQuantile`: rank q·(n−1), the first bin whose cumulative count passes
    /// it, that bin's representative value (1+α)·γ^i.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * (self.count() - 1.0);
        if rank < self.zero {
            return 0.0;
        }
        let gamma = f64::from_bits(GAMMA_BITS);
        let mut n = self.zero;
        for (&i, &c) in &self.bins {
            n += c;
            if n > rank {
                return 1.01 * gamma.powi(i);
            }
        }
        f64::NAN
    }
}

/// The same quantile over raw samples: the sample at rank ⌊q·(n−1)⌋.
fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v[(q * (v.len() - 1) as f64).floor() as usize]
}

/// HTTP telemetry of one connection, summed over every message that reported it.
#[derive(Debug, Default)]
struct Http {
    /// Responses per `code` tag: Σ rate × interval over the messages.
    counts: BTreeMap<String, f64>,
    sketches: BTreeMap<String, Sketch>,
    protocols: BTreeSet<String>,
    /// Messages that reported the connection, and those of them with HTTP metrics.
    reported: usize,
    with_metrics: usize,
    /// Format faults seen in single messages (spec §2.2 rules).
    faults: Vec<String>,
}

impl Http {
    fn count(&self, tag: &str) -> f64 {
        self.counts.get(tag).copied().unwrap_or(0.0)
    }
}

/// (pid, local port, remote port): how a reported connection is matched with a client's.
fn key(c: &Conn) -> (i32, i32, i32) {
    (c.pid, c.laddr.as_ref().map_or(0, |a| a.port), c.raddr.as_ref().map_or(0, |a| a.port))
}

fn has_http(c: &Conn) -> bool {
    c.metrics.iter().any(|m| m.name == RATE || m.name == TIME)
}

/// Sums the HTTP telemetry of the connections `pick` selects, per (pid, local port, remote port),
/// and checks each message's metrics against the rules of spec §2.2 on the way.
fn collect(msgs: &[Msg], mut pick: impl FnMut(&Conn) -> bool) -> BTreeMap<(i32, i32, i32), Http> {
    let mut out: BTreeMap<(i32, i32, i32), Http> = BTreeMap::new();
    for m in msgs {
        let secs = f64::from(m.interval_ms) / 1000.0;
        for c in m.conns.iter().filter(|c| pick(c)) {
            let h = out.entry(key(c)).or_default();
            h.reported += 1;
            if !c.application_protocol.is_empty() {
                h.protocols.insert(c.application_protocol.clone());
            }
            if !has_http(c) {
                continue;
            }
            h.with_metrics += 1;
            let mut rates: BTreeMap<String, f64> = BTreeMap::new();
            let mut sketches: BTreeMap<String, Sketch> = BTreeMap::new();
            for metric in c.metrics.iter().filter(|x| x.name == RATE || x.name == TIME) {
                let Some(code) = metric.tags.get("code").filter(|_| metric.tags.len() == 1) else {
                    h.faults.push(format!("{} with tags {:?} (one tag, code, expected)", metric.name, metric.tags));
                    continue;
                };
                match (metric.name.as_str(), metric.value.as_ref().and_then(|v| v.value.as_ref())) {
                    (RATE, Some(Value::Number(r))) => {
                        let n = r * secs;
                        if (n - n.round()).abs() > 0.01 + 0.001 * n {
                            h.faults
                                .push(format!("rate {r} for code {code} x interval {secs}s = {n}, not a whole count"));
                        }
                        if rates.insert(code.clone(), n.round()).is_some() {
                            h.faults.push(format!("two rates for code {code}"));
                        }
                    }
                    (TIME, Some(Value::Histogram(s))) => {
                        let mapping = s.mapping.clone().unwrap_or_default();
                        if mapping.gamma.to_bits() != GAMMA_BITS
                            || mapping.index_offset != 0.0
                            || mapping.interpolation != 0
                        {
                            h.faults
                                .push(format!("sketch mapping {mapping:?} (gamma 1.02020202020202, offset 0, NONE)"));
                        }
                        let neg = s.negative_values.clone().unwrap_or_default();
                        if !neg.contiguous_bin_counts.iter().all(|&x| x == 0.0) || !neg.bin_counts.is_empty() {
                            h.faults.push(format!("negative response times in the sketch for code {code}"));
                        }
                        let mut k = Sketch { zero: s.zero_count, ..Sketch::default() };
                        if let Some(p) = &s.positive_values {
                            for (j, &n) in p.contiguous_bin_counts.iter().enumerate() {
                                if n != 0.0 {
                                    *k.bins.entry(p.contiguous_bin_index_offset + j as i32).or_default() += n;
                                }
                            }
                            for (&i, &n) in &p.bin_counts {
                                *k.bins.entry(i).or_default() += n;
                            }
                        }
                        if k.count() == 0.0 {
                            h.faults.push(format!("an empty sketch for code {code} (empty ones are not sent)"));
                        }
                        if sketches.insert(code.clone(), k).is_some() {
                            h.faults.push(format!("two sketches for code {code}"));
                        }
                    }
                    (name, v) => h.faults.push(format!("{name} {code}: value {v:?}")),
                }
            }
            for g in GROUPS {
                if !rates.contains_key(g) {
                    h.faults.push(format!("no {RATE} for group {g} (all 7 are sent, 0 included)"));
                }
            }
            // Each exact code's and each group's sketch counts what its rate counts; a group is
            // the sum of its codes.
            let exact: Vec<(u16, f64)> = rates.iter().filter_map(|(k, &n)| Some((k.parse().ok()?, n))).collect();
            for (tag, &n) in &rates {
                let sketch = sketches.get(tag).map_or(0.0, Sketch::count);
                if sketch != n {
                    h.faults.push(format!("code {tag}: the rate counts {n}, the sketch {sketch}"));
                }
                if GROUPS.contains(&tag.as_str()) {
                    let sum: f64 = exact.iter().filter(|(c, _)| in_group(tag, *c)).map(|(_, n)| n).sum();
                    if sum != n {
                        h.faults.push(format!("group {tag} counts {n}, its codes {sum}"));
                    }
                }
            }
            for tag in sketches.keys().filter(|t| !rates.contains_key(*t)) {
                h.faults.push(format!("a sketch for code {tag} without its rate"));
            }
            for (tag, n) in rates {
                *h.counts.entry(tag).or_default() += n;
            }
            for (tag, k) in sketches {
                let s = h.sketches.entry(tag).or_default();
                s.zero += k.zero;
                for (i, n) in k.bins {
                    *s.bins.entry(i).or_default() += n;
                }
            }
        }
    }
    out
}

/// The client's counts per `code` tag: each exact code, and the seven groups.
fn client_counts(c: &ClientConn) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = GROUPS.iter().map(|g| (g.to_string(), 0.0)).collect();
    for (&code, &n) in &c.codes {
        *out.entry(code.to_string()).or_default() += n as f64;
        for g in GROUPS {
            if in_group(g, code) {
                *out.get_mut(g).unwrap() += n as f64;
            }
        }
    }
    out
}

/// Where a test collects its failures, to report them all at once with the figures.
#[derive(Default)]
struct Verdict {
    failures: Vec<String>,
    figures: Vec<String>,
}

impl Verdict {
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.failures.push(what);
        }
    }

    fn done(self, agent_log: &str) {
        for f in &self.figures {
            println!("{f}");
        }
        assert!(
            self.failures.is_empty(),
            "{} failed checks:\n  {}\nfigures:\n  {}\nagent stderr (last 4 KiB):\n{}",
            self.failures.len(),
            self.failures.join("\n  "),
            self.figures.join("\n  "),
            &agent_log[agent_log.len().saturating_sub(4096)..]
        );
    }
}

/// Compares one server connection's telemetry with its client's own view: counts per status
/// class within 5 % (every tag the client saw, and 0 where it saw none), and, for latency
/// connections, p50 and p95 within 10 % or 2 ms.
fn compare(v: &mut Verdict, label: &str, h: Option<&Http>, client: &ClientConn, latency: bool) {
    let Some(h) = h else {
        v.failures.push(format!("{label}: the server connection (client port {}) was never reported", client.port));
        return;
    };
    for f in &h.faults {
        v.failures.push(format!("{label}: {f}"));
    }
    v.check(
        h.protocols.len() == 1 && h.protocols.contains("http"),
        format!("{label}: applicationProtocol {:?} (http expected)", h.protocols),
    );
    let want = client_counts(client);
    let fmt = |m: &BTreeMap<String, f64>| m.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(" ");
    v.figures.push(format!(
        "{label}: client {} | agent {} ({} messages, {} with HTTP metrics)",
        fmt(&want),
        fmt(&h.counts),
        h.reported,
        h.with_metrics
    ));
    for (tag, &n) in &want {
        let got = h.count(tag);
        v.check(
            (got - n).abs() <= (0.05 * n).floor(),
            format!("{label}: code {tag}: agent counted {got}, the client {n} (within 5 %)"),
        );
    }
    for (tag, &got) in &h.counts {
        v.check(want.contains_key(tag), format!("{label}: code {tag} counted {got}, the client saw none"));
    }
    if latency {
        let Some(s) = h.sketches.get("200") else {
            v.failures.push(format!("{label}: no response-time sketch for code 200"));
            return;
        };
        for q in [0.5, 0.95] {
            let (agent, mine) = (s.quantile(q) * 1000.0, quantile(&client.latency_ms, q));
            v.figures.push(format!(
                "{label}: p{:.0} response time: agent {agent:.3} ms, client {mine:.3} ms ({} samples)",
                q * 100.0,
                client.latency_ms.len()
            ));
            v.check(
                (agent - mine).abs() <= (0.1 * mine).max(2.0),
                format!("{label}: p{:.0}: agent {agent:.3} ms, client {mine:.3} ms (within 10 % or 2 ms)", q * 100.0),
            );
        }
    }
}

/// Packet sockets (`ss -0p`) `pid` holds in the host's namespace or in `netns`.
fn packet_sockets(netns: Option<&str>, pid: u32) -> usize {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ss"]);
            c
        }
        None => Command::new("ss"),
    };
    let out = cmd.args(["-0", "-p"]).output().expect("ss");
    assert!(out.status.success(), "ss -0p: {}", String::from_utf8_lossy(&out.stderr));
    let tag = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&tag)).count()
}

fn keepalive(paths: Vec<String>) -> serde_json::Value {
    serde_json::json!({"kind": "keepalive", "paths": paths})
}

/// `n` requests cycling through `mix` (path, weight): an interleaved 200/404/503 sequence.
fn mix(n: usize, mix: &[(&str, usize)]) -> Vec<String> {
    let cycle: Vec<&str> = mix.iter().flat_map(|&(p, w)| std::iter::repeat_n(p, w)).collect();
    (0..n).map(|i| cycle[i % cycle.len()].to_string()).collect()
}

fn pipeline(batches: usize, batch: &[&str]) -> serde_json::Value {
    serde_json::json!({"kind": "pipeline", "batches": vec![batch; batches]})
}

/// Pipelined batches whose requests leave `gap_ms` apart, each in its own segment.
fn staggered(batches: usize, batch: &[&str], gap_ms: u32) -> serde_json::Value {
    serde_json::json!({"kind": "pipeline", "batches": vec![batch; batches], "gap_ms": gap_ms})
}

/// The server side of each client connection, and the client side, as the agent reports them.
fn server_key(server: &Server, client_port: u16) -> (i32, i32, i32) {
    (server.pid as i32, i32::from(server.port), i32::from(client_port))
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Two servers (one across a veth pair in its own namespace, one on loopback), keep-alive
/// clients with 200/404/503 mixes, pipelining clients, and clients of a server that sleeps 20
/// and 50 ms: every server connection's counts per status class and response-time p50/p95 match
/// the client's own, the client sockets carry no HTTP metrics, and the server connections are
/// labelled `http`.
#[test]
fn request_rates_and_response_times_match_the_clients() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    prerequisites();
    let ns = Netns::new("sts-http", "sth", 150);
    let far = Server::start(Some(&ns.name), &ns.ns_ip);
    let near = Server::start(None, "127.0.0.1");
    let sleep = |ms: u32, n: usize| keepalive(vec![format!("/sleep?ms={ms}"); n]);
    // (label, connection, whether its response times are compared). Across the veth pair: two
    // keep-alive mixes (different, so a swap shows), pipelined batches, a 20 ms server, and
    // pipelined batches of three 20 ms requests (answered at about 20, 40 and 60 ms after the
    // batch was sent: each response must pair with its own request).
    let far_plan = [
        ("veth keep-alive 200/404/503 mix A", keepalive(mix(110, &[("/ok", 6), ("/missing", 3), ("/busy", 2)])), false),
        ("veth keep-alive mix B", keepalive(mix(50, &[("/ok", 5), ("/busy", 3), ("/missing", 2)])), false),
        ("veth pipelined x5", pipeline(10, &["/ok", "/missing", "/busy", "/ok", "/ok"]), false),
        ("veth /sleep?ms=20", sleep(20, 40), true),
        ("veth pipelined /sleep?ms=20 x3", pipeline(6, &["/sleep?ms=20"; 3]), true),
    ];
    // On loopback (each packet is seen arriving there, once).
    let near_plan = [
        ("loopback keep-alive mix", keepalive(mix(80, &[("/ok", 2), ("/missing", 1), ("/busy", 1)])), false),
        ("loopback pipelined x4", pipeline(8, &["/busy", "/ok", "/missing", "/ok"]), false),
        ("loopback /sleep?ms=20", sleep(20, 40), true),
        ("loopback /sleep?ms=50", sleep(50, 40), true),
        // A 60 ms request, and 20 ms later (its own segment) an immediate one queued behind it:
        // answered 60 and about 40 ms after each was sent. Timing each response from the latest
        // request instead of its own would make both about 40 ms.
        ("loopback staggered pipeline 60 ms + 0 ms", staggered(6, &["/sleep?ms=60", "/sleep?ms=0"], 20), true),
    ];
    let conns = |plan: &[(&str, serde_json::Value, bool)]| plan.iter().map(|p| p.1.clone()).collect::<Vec<_>>();
    let mut far_client = Client::start(&ns.ns_ip, far.port, serde_json::json!(conns(&far_plan)));
    let mut near_client = Client::start("127.0.0.1", near.port, serde_json::json!(conns(&near_plan)));

    let mut agent = Daemon::start(&[]);
    // The server ends must be known to the agent before the load: reported at least once.
    let servers: Vec<(i32, i32, i32)> = far_client
        .ports
        .iter()
        .map(|&p| server_key(&far, p))
        .chain(near_client.ports.iter().map(|&p| server_key(&near, p)))
        .collect();
    agent.wait_for("the server connections reported", Duration::from_secs(20), |msgs| {
        let seen: BTreeSet<(i32, i32, i32)> = msgs.iter().flat_map(|m| &m.conns).map(key).collect();
        servers.iter().all(|k| seen.contains(k))
    });
    // Nothing was requested yet: no connection of ours carries HTTP metrics so far.
    let before = collect(&agent.messages(), |c| servers.contains(&key(c)));
    let early: Vec<_> = before.iter().filter(|(_, h)| h.with_metrics > 0).map(|(k, _)| *k).collect();

    let t = Instant::now();
    far_client.go();
    near_client.go();
    let far_seen = far_client.results();
    let near_seen = near_client.results();
    let load = t.elapsed();
    // The capture: a packet socket of the agent's in the host's namespace and in the server's.
    let agent_pid = agent.pid();
    let sockets = (packet_sockets(None, agent_pid), packet_sockets(Some(&ns.name), agent_pid));
    // Two more checks: the one during which the load ended, and one after it.
    agent.wait_checks(2);
    let msgs = agent.stop();
    let log = agent.stderr();
    let (far_client_pid, near_client_pid) = (far_client.pid, near_client.pid);
    drop(far_client);
    drop(near_client);

    let mut v = Verdict::default();
    v.figures.push(format!("load took {load:?}; {} connections messages", msgs.len()));
    v.check(early.is_empty(), format!("HTTP metrics before any request on {early:?}"));
    let by_server = collect(&msgs, |c| c.pid == far.pid as i32 || c.pid == near.pid as i32);
    v.figures
        .push(format!("agent packet sockets: {} in the host's namespace, {} in the server's", sockets.0, sockets.1));
    v.check(sockets.0 >= 1 && sockets.1 >= 1, format!("packet sockets (host, server namespace): {sockets:?}"));
    for ((label, _, latency), c) in far_plan.iter().zip(&far_seen) {
        compare(&mut v, label, by_server.get(&server_key(&far, c.port)), c, *latency);
    }
    for ((label, _, latency), c) in near_plan.iter().zip(&near_seen) {
        compare(&mut v, label, by_server.get(&server_key(&near, c.port)), c, *latency);
    }
    // The client ends of the same connections read the responses: no HTTP metrics on them.
    let clients = collect(&msgs, |c| c.pid == far_client_pid as i32 || c.pid == near_client_pid as i32);
    let client_ports: BTreeSet<i32> = far_seen.iter().chain(&near_seen).map(|c| i32::from(c.port)).collect();
    let reported: BTreeSet<i32> = clients.keys().map(|k| k.1).filter(|p| client_ports.contains(p)).collect();
    v.check(reported == client_ports, format!("client sockets reported: ports {reported:?} of {client_ports:?}"));
    for ((pid, lport, rport), h) in &clients {
        v.check(
            h.with_metrics == 0,
            format!("client socket pid {pid} :{lport} -> :{rport} carries HTTP metrics: {:?}", h.counts),
        );
        if !h.protocols.is_empty() {
            v.figures.push(format!("client socket :{lport} -> :{rport}: applicationProtocol {:?}", h.protocols));
        }
    }
    v.done(&log);
}

/// With `STS_PROTOCOL_INSPECTION_ENABLED=false` the same kind of traffic leaves no HTTP metric
/// and no protocol label on any connection, though the server connections are reported.
#[test]
fn protocol_inspection_off_sends_no_http_metrics() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    prerequisites();
    let server = Server::start(None, "127.0.0.1");
    let plan = serde_json::json!([
        keepalive(mix(40, &[("/ok", 2), ("/missing", 1), ("/busy", 1)])),
        pipeline(5, &["/ok", "/busy", "/missing"]),
    ]);
    let mut client = Client::start("127.0.0.1", server.port, plan);
    let mut agent = Daemon::start(&[("STS_PROTOCOL_INSPECTION_ENABLED", "false")]);
    let servers: Vec<(i32, i32, i32)> = client.ports.iter().map(|&p| server_key(&server, p)).collect();
    agent.wait_for("the server connections reported", Duration::from_secs(20), |msgs| {
        let seen: BTreeSet<(i32, i32, i32)> = msgs.iter().flat_map(|m| &m.conns).map(key).collect();
        servers.iter().all(|k| seen.contains(k))
    });
    let reported_before = agent.messages().len();
    let sockets = packet_sockets(None, agent.pid());
    client.go();
    let seen = client.results();
    agent.wait_checks(2);
    let msgs = agent.stop();
    let log = agent.stderr();

    let mut v = Verdict::default();
    let sent: u64 = seen.iter().flat_map(|c| c.codes.values()).sum();
    v.check(sent == 55, format!("the client got {sent} responses of 55"));
    let after: Vec<&Conn> = msgs[reported_before..].iter().flat_map(|m| &m.conns).collect();
    for k in &servers {
        v.check(after.iter().any(|c| key(c) == *k), format!("server connection {k:?} not reported after the load"));
    }
    v.check(sockets == 0, format!("inspection off, yet the agent holds {sockets} packet sockets"));
    let labelled: Vec<String> = msgs
        .iter()
        .flat_map(|m| &m.conns)
        .filter(|c| has_http(c) || !c.application_protocol.is_empty())
        .map(|c| format!("pid {} {:?} -> {:?}: {:?} {:?}", c.pid, c.laddr, c.raddr, c.application_protocol, c.metrics))
        .collect();
    v.check(labelled.is_empty(), format!("inspection off, yet HTTP telemetry on: {labelled:?}"));
    v.figures.push(format!(
        "inspection off: {} messages, {sent} responses, {} labelled connections",
        msgs.len(),
        labelled.len()
    ));
    drop(client);
    drop(server);
    v.done(&log);
}

/// A client the agent cannot see (its namespace holds none of the agent's processes: the agent
/// runs in a pid namespace of its own with the server) reaches the server through a VXLAN link,
/// as a client beyond the host's NIC would: the responses arrive nowhere the agent looks, so they
/// are captured leaving the server's namespace, on the interface that leaves the host (its
/// socket on every interface ignores what leaves). Counts and response times still match.
#[test]
fn responses_to_a_client_beyond_the_host_are_captured_leaving_it() {
    client_beyond_the_host(false);
}

/// The same with the VXLAN link coming up after the agent's first checks: the interface is
/// learnt from the namespace's link notifications, and its capture opened at the next check.
#[test]
fn an_interface_that_comes_up_later_is_captured_leaving_it() {
    client_beyond_the_host(true);
}

fn client_beyond_the_host(late: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    prerequisites();
    let link = Overlay::new(!late);
    let port = 20_000 + (std::process::id() % 20_000) as u16 + u16::from(late);
    // The server starts inside the agent's pid namespace, so the agent reports its sockets.
    let script = format!(
        "ip netns exec {} python3 {SERVER} {} {port} >/dev/null & exec \"$AGENT\"",
        link.server_ns, link.server_ip
    );
    let wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"];
    let agent = Daemon::start_wrapped(&[], Some((&wrapper, &script)));
    link.wait_listening(port);
    if late {
        // Two connections checks ran (the first one's message is the second's): the namespace
        // was visited, its links listed, the VXLAN link down and so not captured.
        agent.wait_checks(1);
        let before = ss_packet_sockets(&link.server_ns, wrapped_agent_pid(agent.pid()));
        assert_eq!(before, ["*:*"], "before the link comes up: the socket on every interface only");
        link.set_up();
    }
    let plan = [
        ("vxlan keep-alive 200/404/503 mix", keepalive(mix(90, &[("/ok", 5), ("/missing", 2), ("/busy", 2)])), false),
        ("vxlan pipelined x3", pipeline(8, &["/ok", "/busy", "/missing"]), false),
        ("vxlan /sleep?ms=20", keepalive(vec!["/sleep?ms=20".to_string(); 40]), true),
    ];
    let conns: Vec<serde_json::Value> = plan.iter().map(|p| p.1.clone()).collect();
    let mut client = Client::start_in(Some(&link.client_ns), &link.server_ip, port, serde_json::json!(conns));
    let ports: BTreeSet<i32> = client.ports.iter().map(|p| i32::from(*p)).collect();
    let is_server_end = |c: &Conn| {
        c.laddr.as_ref().is_some_and(|a| a.port == i32::from(port))
            && c.raddr.as_ref().is_some_and(|a| ports.contains(&a.port))
    };
    agent.wait_for("the server connections reported", Duration::from_secs(20), |msgs| {
        let seen: BTreeSet<i32> =
            msgs.iter().flat_map(|m| &m.conns).filter(|c| is_server_end(c)).map(|c| key(c).2).collect();
        seen == ports
    });
    client.go();
    let seen = client.results();
    // What the agent holds in the server's namespace: its socket on every interface and the
    // one on the VXLAN link (the veth under it leads nowhere off the host).
    let sockets = ss_packet_sockets(&link.server_ns, wrapped_agent_pid(agent.pid()));
    agent.wait_checks(2);
    let msgs = agent.messages();
    let log = agent.stderr();
    drop(client);
    drop(agent);

    let mut v = Verdict::default();
    // Keyed by the client's port: pids are the agent's pid namespace's.
    let by_port: BTreeMap<i32, Http> =
        collect(&msgs, |c| is_server_end(c)).into_iter().map(|((_, _, rport), h)| (rport, h)).collect();
    v.figures.push(format!("agent packet sockets in the server's namespace: {sockets:?}"));
    v.check(
        sockets.len() == 2,
        format!("packet sockets in the server's namespace: {sockets:?} (every interface, and the VXLAN link)"),
    );
    for ((label, _, latency), c) in plan.iter().zip(&seen) {
        compare(&mut v, label, by_port.get(&i32::from(c.port)), c, *latency);
    }
    v.done(&log);
}

/// Two network namespaces, a server's and a client's, joined by a veth pair carrying a VXLAN
/// link: the client's packets reach the server on the VXLAN interface, and the server's
/// responses leave on it, as over a NIC. Unique names; both namespaces deleted on drop.
struct Overlay {
    server_ns: String,
    client_ns: String,
    server_ip: String,
}

impl Overlay {
    /// `up`: the VXLAN link up at once (else see [`Overlay::set_up`]).
    fn new(up: bool) -> Overlay {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let o = Overlay {
            server_ns: format!("sts-vxs-{pid}-{n}"),
            client_ns: format!("sts-vxc-{pid}-{n}"),
            server_ip: format!("10.{}.{}.5", 230 + n % 20, pid % 250),
        };
        let net = format!("10.{}.{}", 230 + n % 20, pid % 250);
        let (under_s, under_c) = (format!("vxu{}{n}s", pid % 100_000), format!("vxu{}{n}c", pid % 100_000));
        netns::ip(&["netns", "add", &o.server_ns]);
        netns::ip(&["netns", "add", &o.client_ns]);
        netns::ip(&["link", "add", &under_s, "type", "veth", "peer", "name", &under_c]);
        netns::ip(&["link", "set", &under_s, "netns", &o.server_ns]);
        netns::ip(&["link", "set", &under_c, "netns", &o.client_ns]);
        for (ns, under, me, peer, overlay) in [(&o.server_ns, &under_s, 1, 2, 5), (&o.client_ns, &under_c, 2, 1, 6)] {
            let n = |args: &[&str]| {
                let mut all = vec!["-n", ns.as_str()];
                all.extend_from_slice(args);
                netns::ip(&all);
            };
            n(&["link", "set", "lo", "up"]);
            n(&["addr", "add", &format!("{net}.{me}/30"), "dev", under]);
            n(&["link", "set", under, "up"]);
            n(&[
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                &format!("{net}.{me}"),
                "remote",
                &format!("{net}.{peer}"),
                "dev",
                under,
            ]);
            n(&["addr", "add", &format!("{net}.{overlay}/30"), "dev", "vx0"]);
            if up {
                n(&["link", "set", "vx0", "up"]);
            }
        }
        o
    }

    /// Brings the VXLAN link up on both sides.
    fn set_up(&self) {
        for ns in [&self.server_ns, &self.client_ns] {
            netns::ip(&["-n", ns, "link", "set", "vx0", "up"]);
        }
    }

    /// Waits until something listens on `port` in the server's namespace.
    fn wait_listening(&self, port: u16) {
        let start = Instant::now();
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.server_ns, "ss", "-ltnH", &format!("sport = :{port}")])
                .output()
                .expect("ss");
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the server did not listen on :{port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links (the veth pair goes with the first).
        let _ = Command::new("ip").args(["netns", "del", &self.server_ns]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.client_ns]).output();
    }
}

/// The packet sockets of process `pid` in namespace `netns` (`ss -0p`): the interface each is
/// bound to (`*`: every one). By pid: an agent of another test run would see this namespace too.
fn ss_packet_sockets(netns: &str, pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "exec", netns, "ss", "-0", "-p", "-H"]).output().expect("ss");
    assert!(out.status.success(), "ss -0p: {}", String::from_utf8_lossy(&out.stderr));
    let tag = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&tag))
        .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        .collect()
}

/// The agent's pid when it runs under a wrapper (`unshare --fork`): the wrapper's child.
fn wrapped_agent_pid(wrapper: u32) -> u32 {
    let start = Instant::now();
    loop {
        let children = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the wrapper {wrapper} started no agent");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server in a Docker container on Docker's default bridge (ECS's bridge mode), its client on
/// the host talking to the container's address: each request is seen arriving in the container's
/// namespace, each response arriving on the bridge in the host's (its copy on the bridge port,
/// addressed to the bridge, is dropped). Counts and response times match the client's. A real
/// Docker Engine (`dockerd --iptables=false`: no NAT is involved on this path); the container runs
/// the host's Debian `/usr/bin/python3` from a read-only `/usr`.
#[test]
fn a_server_in_a_container_on_dockers_bridge_is_measured() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    prerequisites();
    let ctr = BridgedServer::start();
    let mut agent = Daemon::start(&[]);
    let plan = [
        ("bridge keep-alive 200/404/503 mix", keepalive(mix(90, &[("/ok", 5), ("/missing", 2), ("/busy", 2)])), false),
        ("bridge pipelined x3", pipeline(8, &["/ok", "/busy", "/missing"]), false),
        ("bridge /sleep?ms=20", keepalive(vec!["/sleep?ms=20".to_string(); 40]), true),
    ];
    let conns: Vec<serde_json::Value> = plan.iter().map(|p| p.1.clone()).collect();
    let mut client = Client::start(&ctr.ip, ctr.port, serde_json::json!(conns));
    let server = Server { _kids: Kids(vec![]), pid: ctr.pid, port: ctr.port };
    let servers: Vec<(i32, i32, i32)> = client.ports.iter().map(|&p| server_key(&server, p)).collect();
    agent.wait_for("the container's server connections reported", Duration::from_secs(20), |msgs| {
        let seen: BTreeSet<(i32, i32, i32)> = msgs.iter().flat_map(|m| &m.conns).map(key).collect();
        servers.iter().all(|k| seen.contains(k))
    });
    client.go();
    let seen = client.results();
    agent.wait_checks(2);
    let msgs = agent.stop();
    let log = agent.stderr();
    drop(client);

    let mut v = Verdict::default();
    let by_server = collect(&msgs, |c| c.pid == ctr.pid as i32);
    for ((label, _, latency), c) in plan.iter().zip(&seen) {
        compare(&mut v, label, by_server.get(&server_key(&server, c.port)), c, *latency);
    }
    v.done(&log);
}

/// `tests/support/http_server.py` in a container on Docker's default bridge network, from an
/// image of nothing but the merged-`/usr` links (the host's `/usr` is mounted read-only). Its
/// address, port and host pid; the container and image are removed on drop.
struct BridgedServer {
    name: String,
    image: String,
    ip: String,
    port: u16,
    pid: u32,
}

impl BridgedServer {
    fn start() -> BridgedServer {
        let docker = |args: &[&str]| {
            let o = Command::new("docker").args(args).stdin(Stdio::null()).output().expect("the docker CLI");
            assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let engine = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
        assert!(
            engine.as_ref().is_ok_and(|o| o.status.success()),
            "cannot run: no Docker Engine answers `docker info` (.ci/run starts `dockerd --iptables=false`): {engine:?}"
        );
        assert!(
            std::path::Path::new("/usr/bin/python3").is_file(),
            "cannot run: no /usr/bin/python3 (Debian's python3; .ci/run installs it)"
        );
        let tag = format!("sts-test-{}-httpbr", std::process::id());
        let root = TempDir::new("bridge-rootfs");
        for dir in ["usr", "tmp", "etc"] {
            std::fs::create_dir_all(root.0.join(dir)).unwrap();
        }
        for (link, to) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")] {
            std::os::unix::fs::symlink(to, root.0.join(link)).unwrap();
        }
        let image = format!("{tag}:latest");
        let import = format!("tar -C {} -c . | docker import - {image}", root.0.display());
        let o = Command::new("sh").args(["-c", &import]).output().unwrap();
        assert!(o.status.success(), "docker import: {}", String::from_utf8_lossy(&o.stderr));
        let port = 30_000 + (std::process::id() % 20_000) as u16;
        let mut s = BridgedServer { name: tag.clone(), image, ip: String::new(), port, pid: 0 };
        let script = format!("{SERVER}:{SERVER}:ro");
        let port_s = port.to_string();
        docker(&[
            "run",
            "-d",
            "--name",
            &s.name,
            "--network",
            "bridge",
            "-v",
            "/usr:/usr:ro",
            "-v",
            &script,
            &s.image,
            "/usr/bin/python3",
            SERVER,
            "0.0.0.0",
            &port_s,
        ]);
        s.ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &s.name]);
        s.pid = docker(&["inspect", "-f", "{{.State.Pid}}", &s.name]).parse().unwrap();
        assert!(!s.ip.is_empty() && s.pid > 0, "container address {:?}, pid {}", s.ip, s.pid);
        let start = Instant::now();
        while std::net::TcpStream::connect((s.ip.as_str(), port)).is_err() {
            let logs = Command::new("docker").args(["logs", &s.name]).output().unwrap();
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the server in the container does not answer on {}:{port}: {}",
                s.ip,
                String::from_utf8_lossy(&logs.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }
}

impl Drop for BridgedServer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.name]).output();
        let _ = Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}
