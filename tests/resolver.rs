//! Name resolution against the real agent binary, with a real nameserver on loopback.
//!
//! The agent reads the real `/etc/resolv.conf` and `/etc/hosts` paths; each test runs it in a
//! private mount namespace (`unshare -m`, propagation private) where the test's own files are
//! bind-mounted over those two. That is closer to production than an environment-variable hook:
//! no test-only code path in the agent, and the very files glibc would read are the ones
//! replaced (so the same setup shows what the old `getaddrinfo` code did). Needs root (to
//! unshare and to bind UDP port 53 on 127.x.y.z, since resolv.conf has no port syntax): without it
//! the tests fail, they do not pass silently.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A UDP socket on port 53 of a loopback address of its own (127.53.x.y).
fn port53() -> UdpSocket {
    let seed = std::process::id() as usize;
    for i in 0..200 {
        let n = seed.wrapping_mul(31).wrapping_add(i * 7919);
        let ip = Ipv4Addr::new(127, 53, (n >> 8) as u8, (n % 250) as u8 + 2);
        match UdpSocket::bind((ip, 53)) {
            Ok(s) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                panic!("binding UDP port 53 needs root (CAP_NET_BIND_SERVICE): {e}")
            }
            Err(_) => continue,
        }
    }
    panic!("no free 127.53.x.y:53");
}

/// A nameserver that reads every query and never answers; counts what it got.
fn silent_nameserver() -> (SocketAddr, Arc<AtomicUsize>) {
    let s = port53();
    let addr = s.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while s.recv_from(&mut buf).is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, n)
}

/// A nameserver that answers A queries for `name` with `ips` (TTL 300, in this order), AAAA with
/// no record, and anything else NXDOMAIN, as real DNS messages. Records each (name, qtype).
/// The (name, qtype) of every query a test nameserver received.
type Asked = Arc<Mutex<Vec<(String, u16)>>>;

fn answering_nameserver(name: &'static str, ips: Vec<Ipv4Addr>) -> (SocketAddr, Asked) {
    let s = port53();
    let addr = s.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let q = &buf[..n];
            let mut i = 12;
            let mut qname = String::new();
            while i < n && q[i] != 0 {
                let l = q[i] as usize;
                qname.push_str(&String::from_utf8_lossy(&q[i + 1..i + 1 + l]));
                qname.push('.');
                i += 1 + l;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            log.lock().unwrap().push((qname.clone(), qtype));
            let known = qname.eq_ignore_ascii_case(&format!("{name}."));
            let mut r = q[..i + 5].to_vec();
            r[2] = 0x81; // QR, RD
            r[3] = if known { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
            let answers: &[Ipv4Addr] = if known && qtype == 1 { &ips } else { &[] };
            r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
            for ip in answers {
                r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
                r.extend_from_slice(&ip.octets());
            }
            let _ = s.send_to(&r, from);
        }
    });
    (addr, seen)
}

/// Runs the agent with `resolv_conf` and `hosts` bind-mounted over /etc/resolv.conf and
/// /etc/hosts in a mount namespace of its own.
fn spawn_with_files(dir: &Path, resolv_conf: &str, hosts: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let (r, h) = (dir.join("resolv.conf"), dir.join("hosts"));
    std::fs::write(&r, resolv_conf).unwrap();
    std::fs::write(&h, hosts).unwrap();
    let script = r#"mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && shift 2 && exec "$@""#;
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"])
        .arg(&r)
        .arg(&h)
        .arg(AGENT)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        // No DogStatsD listener: 127.0.0.1:8125 may be another agent's.
        .env("STS_DOGSTATSD_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn unshare (util-linux)")
}

/// One HTTP/1.1 GET on a new connection; the status line and body, and how long it took.
fn get(port: u16, path: &str) -> std::io::Result<(String, Duration)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok((out, t.elapsed()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn host_runs(status: &str) -> u64 {
    let body = &status[status.find("\r\n\r\n").expect("HTTP response") + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["checks"]["host"]["runs"].as_u64().unwrap_or_else(|| panic!("no host runs in {v}"))
}

#[test]
fn a_nameserver_that_never_answers_stalls_neither_the_trace_intake_nor_collection() {
    let (ns1, asked1) = silent_nameserver();
    let (ns2, asked2) = silent_nameserver();
    let dir = TempDir::new("resolver-silent");
    let port = free_port();
    let url = "https://receiver.sts-resolver-test:7443/stsAgent";
    let child = spawn_with_files(
        &dir.0,
        &format!("nameserver {}\nnameserver {}\noptions timeout:1 attempts:2\n", ns1.ip(), ns2.ip()),
        "127.0.0.1 localhost\n",
        &[],
        &[
            ("STS_STS_URL", url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "resolver-test"),
            ("STS_HOST_CHECK_INTERVAL", "1"),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
            ("STS_APM_RECEIVER_PORT", &port.to_string()),
            ("STS_LOG_LEVEL", "debug"),
        ],
    );
    let mut kids = Kids(vec![child]);
    let start = Instant::now();
    while get(port, "/info").is_err() {
        if let Ok(Some(st)) = kids.0[0].try_wait() {
            panic!("agent exited early: {st}");
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the trace intake never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Eight seconds of /info every 20 ms and /status every half second (both on the intake's port).
    let window = Duration::from_secs(8);
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut infos = 0;
    let mut runs0 = None;
    let mut last_status = String::new();
    let mut next_status = t0;
    while t0.elapsed() < window {
        if Instant::now() >= next_status {
            let (reply, took) = get(port, "/status").expect("/status");
            slowest = slowest.max(took);
            runs0.get_or_insert(host_runs(&reply));
            last_status = reply;
            next_status += Duration::from_millis(500);
        }
        let (reply, took) = get(port, "/info").expect("/info");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        slowest = slowest.max(took);
        infos += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let runs0 = runs0.unwrap();
    let runs = host_runs(&last_status) - runs0;
    let elapsed = t0.elapsed();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kids.0[0].id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let out = wait_with_timeout(kids.0.remove(0), Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("slowest request {slowest:?} of {infos} /info; {runs} host check runs in {elapsed:?}");
    assert!(slowest < Duration::from_millis(100), "a request took {slowest:?} ({infos} /info):\n{stderr}");
    // STS_HOST_CHECK_INTERVAL=1: one run a second went on while the name never resolved.
    let want = elapsed.as_secs().saturating_sub(2);
    assert!(runs >= want, "{runs} host check runs in {elapsed:?} (slowest /info {slowest:?} of {infos}):\n{stderr}");
    // The resolver did ask, both nameservers (retry to the next one), and said what failed.
    let (a1, a2) = (asked1.load(Ordering::SeqCst), asked2.load(Ordering::SeqCst));
    assert!(a1 >= 2 && a2 >= 2, "queries: {a1} to {ns1}, {a2} to {ns2}\n{stderr}");
    assert!(stderr.contains("name resolution failed") && stderr.contains("no answer from"), "{stderr}");
    assert!(last_status.contains("name resolution failed"), "{last_status}");
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn a_name_whose_first_address_refuses_is_delivered_through_the_next() {
    // The receiver listens on 127.0.0.2 only; the same port on 127.0.0.1 refuses connections.
    let rx = Receiver::start_on("127.0.0.2", true, vec![202]);
    let port = rx.addr.port();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "127.0.0.1:{port} must refuse"
    );
    // The refusing address first (glibc's sort would also put 127.0.0.1 first: longest prefix).
    let (ns, asked) = answering_nameserver(
        "receiver.sts-resolver-test",
        vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)],
    );
    let dir = TempDir::new("resolver-multi");
    let url = format!("https://receiver.sts-resolver-test:{port}/stsAgent");
    let child = spawn_with_files(
        &dir.0,
        &format!("nameserver {}\noptions timeout:1 attempts:1\n", ns.ip()),
        "127.0.0.1 localhost\n",
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_HOSTNAME", "resolver-multi"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
            ("STS_APM_RECEIVER_PORT", &free_port().to_string()),
            ("STS_LOG_LEVEL", "debug"),
        ],
    );
    let out = wait_with_timeout(child, Duration::from_secs(40));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}:\n{stderr}", out.status);
    let targets: Vec<String> = rx.requests().iter().map(|r| r.target.clone()).collect();
    assert!(targets.iter().any(|t| t.starts_with("/stsAgent/api/v1/series")), "{targets:?}\n{stderr}");
    assert!(targets.iter().any(|t| t.starts_with("/stsAgent/intake/")), "{targets:?}\n{stderr}");
    assert!(stderr.contains(" 0 undelivered"), "{stderr}");
    // Both were tried: the refusal is in the debug log, and the name went to our nameserver.
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    let asked = asked.lock().unwrap().clone();
    assert!(asked.contains(&("receiver.sts-resolver-test.".to_string(), 1)), "{asked:?}");
}
