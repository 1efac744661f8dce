//! Shared integration-test fixtures: a real HTTPS (or HTTP) receiver on loopback that records
//! and decodes what the agent sends with code independent of the agent's encoders, and helpers
//! to run the agent binary.
#![allow(dead_code)]

pub mod pa_proto;
pub mod trace_proto;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_sts-agent");

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body, inflated per its Content-Encoding (deflate = zlib, as the Datadog forwarder sends).
    pub fn json(&self) -> serde_json::Value {
        let raw = match self.header("content-encoding") {
            Some("deflate") => {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&self.body[..]).read_to_end(&mut out).expect("zlib body");
                out
            }
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out).expect("gzip body");
                out
            }
            _ => self.body.clone(),
        };
        serde_json::from_slice(&raw).expect("JSON body")
    }
}

/// A temporary directory removed on drop, named uniquely per test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sts-agent-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a leaf certificate for 127.0.0.1 signed by it, made fresh for each test.
pub struct TestPki {
    pub ca_pem: String,
    pub leaf_der: CertificateDer<'static>,
    pub leaf_key: PrivatePkcs8KeyDer<'static>,
}

pub fn make_pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sts-agent test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        leaf_der: leaf.der().clone(),
        leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    }
}

/// Scripted receiver statuses that are not statuses: never answer, or cut the reply short.
pub const HANG: u16 = 0;
pub const CUT: u16 = 1;

#[derive(Default)]
pub struct Recorded {
    pub requests: Vec<Request>,
    pub tls_errors: Vec<String>,
    /// `GET …/features` requests, kept apart (they do not take a scripted status).
    pub features_requests: Vec<(Instant, Request)>,
    /// The `/features` reply: `None` answers 404, as a receiver without the endpoint.
    pub features_reply: Option<(u16, String)>,
    /// One-off refusals: `(path prefix, n, status)` answers `status` to the n-th request (from 1)
    /// whose path (before `?`) starts with the prefix, instead of the scripted status.
    pub refusals: Vec<(String, usize, u16)>,
    /// Requests seen so far per refusal (same order as `refusals`).
    pub refusal_seen: Vec<usize>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub recorded: Arc<Mutex<Recorded>>,
    pub pki: Option<TestPki>,
}

impl Receiver {
    /// Starts a receiver that answers each request with the next status of `statuses`
    /// (the last one repeats). `tls`: serve HTTPS with a fresh test PKI.
    pub fn start(tls: bool, statuses: Vec<u16>) -> Receiver {
        Receiver::start_on("127.0.0.1", tls, statuses)
    }

    /// The same on another loopback address (`ip`, e.g. "127.0.0.2").
    pub fn start_on(ip: &str, tls: bool, statuses: Vec<u16>) -> Receiver {
        Receiver::start_listening(TcpListener::bind((ip, 0)).unwrap(), tls, statuses, Recorded::default())
    }

    /// The same on a given address (e.g. a port reserved earlier, for a receiver that comes up
    /// after the agent started), answering `/features` with `features` from the first request
    /// on (as `answer_features`; `None`: 404).
    pub fn start_at(addr: SocketAddr, tls: bool, statuses: Vec<u16>, features: Option<(u16, &str)>) -> Receiver {
        let recorded = Recorded { features_reply: features.map(|(s, b)| (s, b.to_string())), ..Default::default() };
        Receiver::start_listening(TcpListener::bind(addr).unwrap(), tls, statuses, recorded)
    }

    fn start_listening(listener: TcpListener, tls: bool, statuses: Vec<u16>, recorded: Recorded) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(recorded));
        let pki = tls.then(make_pki);
        let server_cfg = pki.as_ref().map(|p| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(vec![p.leaf_der.clone()], PrivateKeyDer::Pkcs8(p.leaf_key.clone_key()))
                    .unwrap(),
            )
        });
        let rec = recorded.clone();
        let statuses = Arc::new(Mutex::new(statuses.into_iter().collect::<std::collections::VecDeque<u16>>()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let rec = rec.clone();
                let cfg = server_cfg.clone();
                let statuses = statuses.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                    match cfg {
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            let mut tls = rustls::StreamOwned::new(conn, stream);
                            serve(&mut tls, &rec, &statuses, true);
                        }
                        None => {
                            let mut s = stream;
                            serve(&mut s, &rec, &statuses, false);
                        }
                    }
                });
            }
        });
        Receiver { addr, recorded, pki }
    }

    pub fn url(&self, base_path: &str) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{base_path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.recorded.lock().unwrap().requests.clone()
    }

    pub fn tls_errors(&self) -> Vec<String> {
        self.recorded.lock().unwrap().tls_errors.clone()
    }

    /// Answers `GET …/features` with `status` and `body` from now on (404 until then).
    pub fn answer_features(&self, status: u16, body: &str) {
        self.recorded.lock().unwrap().features_reply = Some((status, body.to_string()));
    }

    /// Answers `status` instead of the scripted one to the `n`-th request (from 1) whose path
    /// starts with `path_prefix`, once (e.g. 400 to the second series payload).
    pub fn refuse(&self, path_prefix: &str, n: usize, status: u16) {
        let mut r = self.recorded.lock().unwrap();
        r.refusals.push((path_prefix.to_string(), n, status));
        r.refusal_seen.push(0);
    }

    /// The `/features` requests so far, with when each arrived.
    pub fn features_requests(&self) -> Vec<(Instant, Request)> {
        self.recorded.lock().unwrap().features_requests.clone()
    }
}

fn serve<S: Read + Write>(
    s: &mut S,
    rec: &Mutex<Recorded>,
    statuses: &Mutex<std::collections::VecDeque<u16>>,
    tls: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        // Read one request: head, then Content-Length bytes of body.
        let req = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = r.parse(&buf) {
                let hs: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let len: usize = hs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if buf.len() >= head + len {
                    let req = Request {
                        method: r.method.unwrap().to_string(),
                        target: r.path.unwrap().to_string(),
                        headers: hs,
                        body: buf[head..head + len].to_vec(),
                        status: 0,
                    };
                    buf.drain(..head + len);
                    break req;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    if tls {
                        rec.lock().unwrap().tls_errors.push(e.to_string());
                    }
                    return;
                }
            }
        };
        let path = req.target.split('?').next().unwrap_or("");
        if req.method == "GET" && path.ends_with("/features") {
            let (status, body) = {
                let mut r = rec.lock().unwrap();
                let reply = r.features_reply.clone().unwrap_or((404, "404 page not found".into()));
                let mut req = req;
                req.status = reply.0;
                r.features_requests.push((Instant::now(), req));
                reply
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(reply.as_bytes()).and_then(|_| s.flush()).is_err() {
                return;
            }
            continue;
        }
        // The refusal count, the status and the record in one lock: the n-th refused is the
        // n-th recorded, whichever connections the requests came on.
        let status = {
            let mut r = rec.lock().unwrap();
            let r = &mut *r;
            let mut refused = None;
            for ((prefix, n, status), seen) in r.refusals.iter().zip(r.refusal_seen.iter_mut()) {
                if path.starts_with(prefix.as_str()) {
                    *seen += 1;
                    if *seen == *n {
                        refused = refused.or(Some(*status));
                    }
                }
            }
            let status = refused.unwrap_or_else(|| {
                let mut q = statuses.lock().unwrap();
                if q.len() > 1 {
                    q.pop_front().unwrap()
                } else {
                    *q.front().unwrap_or(&202)
                }
            });
            let mut req = req;
            req.status = status;
            r.requests.push(req);
            status
        };
        match status {
            // HANG: never answer (the connection stays open until the client gives up).
            HANG => {
                let mut b = [0u8; 1024];
                while s.read(&mut b).is_ok_and(|n| n > 0) {}
                return;
            }
            // CUT: the head and part of the body, then the connection ends mid-response.
            CUT => {
                let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n{\"par");
                let _ = s.flush();
                return;
            }
            _ => {}
        }
        let retry_after = if status == 429 { "Retry-After: 2\r\n" } else { "" };
        let reply = format!("HTTP/1.1 {status} X\r\n{retry_after}Content-Length: 2\r\n\r\n{{}}");
        if s.write_all(reply.as_bytes()).and_then(|_| s.flush()).is_err() {
            return;
        }
    }
}

/// Runs the agent to completion with `env` (and a clean environment otherwise).
pub fn run_agent(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let child = spawn_agent(args, env);
    wait_with_timeout(child, timeout)
}

pub fn spawn_agent(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(AGENT);
    cmd.args(args).env_clear().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // No IMDS here: keep the look-up from waiting on 169.254.169.254 unless a test points it somewhere.
    cmd.env("STS_EC2_METADATA_URL", "http://127.0.0.1:9");
    // A trace intake port of its own (not 8126), so agents of parallel tests do not collide.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cmd.env("STS_APM_RECEIVER_PORT", port.to_string());
    // And a DogStatsD port of its own (not 8125), for the same reason.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cmd.env("STS_DOGSTATSD_PORT", port.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn agent")
}

/// Waits for the child, draining its stdout and stderr all along (a dry run can print more than
/// a pipe holds; an undrained pipe would block the agent's writes).
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!("agent did not exit within {timeout:?}; stderr:\n{}", String::from_utf8_lossy(&stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// Children killed on drop, so a failing assertion leaves nothing running.
pub struct Kids(pub Vec<std::process::Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A process's createTime the naive way: boot time + start ticks / CLK_TCK, in ms.
pub fn create_time_ms(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let start: i64 = after.split_whitespace().nth(19).unwrap().parse().unwrap();
    let btime: i64 = std::fs::read_to_string("/proc/stat").unwrap().lines().find(|l| l.starts_with("btime")).unwrap()
        [6..]
        .trim()
        .parse()
        .unwrap();
    btime * 1000 + start * 1000 / rustix::param::clock_ticks_per_second() as i64
}

/// The agent's configuration with the short-lived filters off (every process and connection is
/// reported from its first cycle), for tests that run the checks in-process.
pub fn report_everything() -> sts_agent::config::Config {
    let env: std::collections::HashMap<&str, &str> = [
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
    ]
    .into_iter()
    .collect();
    sts_agent::config::Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap()
}

/// Reads one HTTP/1.1 response (head + Content-Length body) from `s`: its status and body. Fails
/// the test when the peer closes first or the socket's read timeout passes.
pub fn read_response(s: &mut impl std::io::Read) -> (u16, String) {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&b[..n]);
            }
            let status = head[9..12].parse().unwrap();
            return (status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string());
        }
        let n = s.read(&mut b).expect("a response before the read timeout");
        assert!(n > 0, "closed without a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&b[..n]);
    }
}

/// Waits until a local TCP server on `port` has read everything `clients` sent it: the
/// server's end of each connection (in /proc/net/tcp) exists with nothing in its receive queue.
/// Panics after 10 s.
pub fn wait_read_by_server(port: u16, clients: &[std::net::TcpStream]) {
    let peers: Vec<u16> = clients.iter().map(|c| c.local_addr().unwrap().port()).collect();
    let t = std::time::Instant::now();
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let drained = peers
            .iter()
            .filter(|&&peer| {
                table.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let port_of = |a: &str| a.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
                    f.len() > 4
                        && port_of(f[1]) == Some(port)
                        && port_of(f[2]) == Some(peer)
                        && f[4].rsplit(':').next().and_then(|q| u64::from_str_radix(q, 16).ok()) == Some(0)
                })
            })
            .count();
        if drained == peers.len() {
            return;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{drained} of {} connections read", peers.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The agent, killed and reaped on drop.
pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent with its stdout and stderr drained all along (an unread pipe that fills would
/// block the agent's writes).
pub fn drained(mut child: Child) -> Agent {
    fn drain(p: Option<impl std::io::Read + Send + 'static>) {
        if let Some(mut p) = p {
            std::thread::spawn(move || std::io::copy(&mut p, &mut std::io::sink()));
        }
    }
    drain(child.stdout.take());
    drain(child.stderr.take());
    Agent(child)
}

/// A local ECS agent introspection API (v1) on loopback TCP, with the documented JSON.
pub fn fake_ecs_agent(metadata: String, tasks: String) -> String {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { break };
            let (metadata, tasks) = (metadata.clone(), tasks.clone());
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let (mut line, mut request) = (String::new(), String::new());
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if request.is_empty() {
                        request = line.trim().to_string();
                    }
                    if line == "\r\n" {
                        let body = if request.starts_with("GET /v1/metadata ") {
                            metadata.as_str()
                        } else if request.starts_with("GET /v1/tasks ") {
                            tasks.as_str()
                        } else {
                            "{}"
                        };
                        let _ = write!(
                            w,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        request.clear();
                    }
                    line.clear();
                }
            });
        }
    });
    url
}
