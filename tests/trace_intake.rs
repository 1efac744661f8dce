//! The trace intake's defences against a real agent process, over real sockets: limits decided
//! from the head (413 before the body), chunked bodies past the limit, cross-site requests, bad
//! heads and bodies (4xx, and the connection keeps working after a 400), a request whose body
//! never comes (408 after the read timeout), a flood of idle connections past the cap while a
//! well-behaved client is served promptly and one mid-request keeps its connection, a pipelining
//! client that does not hold the loop, idle keep-alive clients and bare request heads that do not
//! starve the byte budget,
//! `/status` for loopback only (a network namespace of the test's own), and a Unix-socket client
//! outside the agent's pid namespace (pid 0 from the kernel).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const V04: &[u8] = include_bytes!("fixtures/traces/ddtrace-4.16-v0.4.msgpack");

fn start(max_conns: &str) -> (Agent, u16) {
    start_with(&[("STS_APM_MAX_PAYLOAD_SIZE", "65536"), ("STS_APM_MAX_CONNECTIONS", max_conns)])
}

/// The agent with its trace intake on a port of its own, `env` added; its output is drained (a
/// dry run prints every payload, and an undrained pipe would block the agent).
fn start_with(env: &[(&str, &str)]) -> (Agent, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_s = port.to_string();
    let mut all = vec![
        ("STS_APM_RECEIVER_PORT", port_s.as_str()),
        ("STS_PROCESS_AGENT_ENABLED", "disabled"),
        ("STS_HOST_CHECK_INTERVAL", "3600"),
    ];
    all.extend_from_slice(env);
    let agent = drained(spawn_agent(&[], &all));
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(15), "no intake on {port}");
        std::thread::sleep(Duration::from_millis(30));
    }
    (agent, port)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn traces_request(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "PUT /v0.4/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\nX-Datadog-Trace-Count: 3\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn the_intake_defends_itself_and_keeps_serving() {
    let (_agent, port) = start("8");

    // A body that never comes: 408 after the read timeout (5 s); checked at the end.
    let mut stalled = connect(port);
    stalled
        .write_all(
            b"PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .unwrap();
    let stalled_at = Instant::now();

    // 413 from the head alone: no body byte is sent.
    let mut s = connect(port);
    let t = Instant::now();
    s.write_all(b"PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 65537\r\n\r\n").unwrap();
    let (status, reason) = read_response(&mut s);
    assert_eq!(status, 413, "{reason}");
    assert!(t.elapsed() < Duration::from_secs(1));

    // Chunked past the limit.
    let mut s = connect(port);
    s.write_all(b"POST /v0.5/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = vec![b'x'; 30_000];
    for _ in 0..3 {
        // Writes may fail once the agent has answered and closed.
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = s.write_all(&chunk);
        let _ = s.write_all(b"\r\n");
    }
    assert_eq!(read_response(&mut s).0, 413);

    // A browser page posting cross-site.
    let mut s = connect(port);
    s.write_all(b"POST /v0.4/traces HTTP/1.1\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 1\r\n\r\n\x90").unwrap();
    assert_eq!(read_response(&mut s).0, 403);

    // A malformed head.
    let mut s = connect(port);
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 400);

    // A hostile body gets 400 with a reason, and the same connection then works.
    let mut s = connect(port);
    s.write_all(&traces_request(&[0xdd, 0xff, 0xff, 0xff, 0xff])).unwrap();
    let (status, reason) = read_response(&mut s);
    assert_eq!(status, 400);
    assert!(reason.contains("array length exceeds the body"), "{reason}");
    s.write_all(&traces_request(V04)).unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!((status, body.as_str()), (200, "{\"rate_by_service\":{\"service:,env:\":1}}"));
    // Unknown paths.
    s.write_all(b"POST /v0.7/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 404);

    // A flood of idle connections past the cap (8): a new client is still served promptly.
    let idle: Vec<TcpStream> = (0..30).map(|_| connect(port)).collect();
    let t = Instant::now();
    let mut s = connect(port);
    s.write_all(&traces_request(V04)).unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "served in {:?}", t.elapsed());
    drop(idle);

    // The stalled request: 408 around the 5 s read timeout (the flood of idle connections closed
    // idle ones to make room, not this one in the middle of its request).
    let mut b = [0u8; 512];
    let n = stalled.read(&mut b).unwrap_or(0);
    let text = String::from_utf8_lossy(&b[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "the stalled request's reply: {text:?}");
    assert!(stalled_at.elapsed() < Duration::from_secs(9));
}

#[test]
fn a_slow_head_times_out_while_others_are_served() {
    let (_agent, port) = start("128");
    // A byte every 300 ms: the head never completes within the 5 s read timeout.
    let mut slow = connect(port);
    let t = Instant::now();
    let head = b"PUT /v0.4/traces HTTP/1.1\r\nHost: a-very-long-host-name-sent-slowly\r\n";
    let mut got = None;
    for &byte in head.iter() {
        if slow.write_all(&[byte]).is_err() {
            break;
        }
        // Meanwhile a normal client is served at once.
        let mut s = connect(port);
        s.write_all(b"GET /info HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).0, 200);
        std::thread::sleep(Duration::from_millis(300));
        if t.elapsed() > Duration::from_secs(7) {
            break;
        }
        slow.set_nonblocking(true).unwrap();
        let mut b = [0u8; 256];
        if let Ok(n) = slow.read(&mut b) {
            got = Some(String::from_utf8_lossy(&b[..n]).to_string());
            break;
        }
        slow.set_nonblocking(false).unwrap();
    }
    let got = got.expect("the slow client was answered");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(7), "408 after {took:?}");
}

#[test]
fn apm_disabled_means_no_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _agent = Agent(spawn_agent(
        &[],
        &[
            ("STS_APM_ENABLED", "false"),
            ("STS_APM_RECEIVER_PORT", &port.to_string()),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
            ("STS_HOST_CHECK_INTERVAL", "3600"),
        ],
    ));
    // Long enough for an enabled agent to have bound (the other tests see it in milliseconds).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "STS_APM_ENABLED=false still listens");
}

/// Reads one response from any stream (head + Content-Length body): (status, body).
fn response_from(s: &mut impl Read) -> (u16, String) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).expect("a response before the read timeout");
        assert!(n > 0, "closed without a response: {:?}", String::from_utf8_lossy(&buf));
        buf.push(b[0]);
        if buf.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the whole body");
    (head[9..12].parse().unwrap(), String::from_utf8_lossy(&body).to_string())
}

/// A client in the middle of its request is not the one closed to make room: a flood of idle
/// connections past `STS_APM_MAX_CONNECTIONS` evicts idle ones, and the working client (and an
/// idle keep-alive one that was served before, when there is room for it) keep their connection.
#[test]
fn a_request_in_progress_survives_a_flood_of_idle_connections() {
    let (_agent, port) = start("8");
    let req = traces_request(V04);
    // A client that has sent half its request (its read deadline, 5 s, is the earliest of all).
    let mut working = connect(port);
    working.write_all(&req[..req.len() / 2]).unwrap();
    // Make sure the agent has read it before the flood arrives.
    let mut probe = connect(port);
    probe.write_all(b"GET /info HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut probe).0, 200);
    drop(probe);
    // 30 connections that never send a byte (the cap is 8).
    let idle: Vec<TcpStream> = (0..30).map(|_| connect(port)).collect();
    // A request on a 31st: the agent has accepted the whole flood once this is answered.
    let mut last = connect(port);
    last.write_all(b"GET /info HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut last).0, 200);
    // The working client completes its request and gets its answer.
    working.write_all(&req[req.len() / 2..]).expect("the working client's connection is open");
    let (status, body) = read_response(&mut working);
    assert_eq!((status, body.as_str()), (200, "{\"rate_by_service\":{\"service:,env:\":1}}"));
    // The idle ones were closed oldest first: the first of the flood is gone.
    // Closed is end of stream or a reset; a read timeout means it is still open.
    let mut first = idle.into_iter().next().unwrap();
    let mut b = [0u8; 16];
    match first.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("the oldest idle connection got {n} bytes instead of being closed"),
        Err(e) => panic!("the oldest idle connection is still open after 10 s: {e}"),
    }
}

/// Request heads alone hold nothing of the intake's byte budget: four connections declaring
/// 10 + 10 + 10 + 2 MiB less 1 KiB (the default body limit is 10 MiB, the budget for bodies
/// 14 MiB; it was 32 MiB, counted from the heads, so these left less than 1 KiB) and sending no
/// body do not lock other clients out with 429; a client's bytes count as they arrive.
#[test]
fn bare_request_heads_do_not_lock_clients_out() {
    let (_agent, port) = start_with(&[]);
    let heads: Vec<TcpStream> = [10usize << 20, 10 << 20, 10 << 20, (2 << 20) - 1024]
        .iter()
        .map(|n| {
            let mut s = connect(port);
            let head = format!(
                "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {n}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    // The agent has read the four heads (nothing left in its receive queues) before these.
    wait_read_by_server(port, &heads);
    for _ in 0..3 {
        let mut s = connect(port);
        s.write_all(&traces_request(V04)).unwrap();
        let (status, body) = read_response(&mut s);
        assert_eq!(status, 200, "a trace request while four heads wait for their bodies: {body}");
    }
    drop(heads);
}

/// A client pipelining requests as fast as it can does not hold the loop: another client is
/// answered promptly meanwhile, and every pipelined request is still answered, in order.
#[test]
fn a_pipelining_client_does_not_hold_the_loop() {
    let (_agent, port) = start("128");
    let pipelined = connect(port);
    let reader = pipelined.try_clone().unwrap();
    reader.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Requests alternate between /info (200) and an unknown path (404): the order shows.
    let batch: Vec<u8> = (0..1000)
        .flat_map(|i| {
            if i % 2 == 0 {
                b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
            } else {
                b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
            }
        })
        .collect();
    let writer = std::thread::spawn(move || {
        let mut w = pipelined;
        let t = Instant::now();
        let mut sent = 0usize;
        // Four seconds of requests, written faster than the agent answers them.
        while t.elapsed() < Duration::from_secs(4) {
            w.write_all(&batch).unwrap();
            sent += 1000;
        }
        (w, sent)
    });
    let answers = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut got = 0usize;
        let mut r = std::io::BufReader::with_capacity(1 << 16, reader);
        // Until the agent closes, after the last answer (the writer shuts its side down).
        while !r.fill_buf().expect("answers before the read timeout").is_empty() {
            let (status, _) = response_from(&mut r);
            assert_eq!(status, if got % 2 == 0 { 200 } else { 404 }, "reply {got} out of order");
            got += 1;
        }
        got
    });
    // Another client, while the pipelining one is at it: answered promptly.
    std::thread::sleep(Duration::from_millis(1000));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let mut s = connect(port);
        let t = Instant::now();
        s.write_all(b"GET /info HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).0, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (w, sent) = writer.join().unwrap();
    eprintln!("worst latency of another client: {worst:?}; {sent} requests pipelined");
    assert!(worst < Duration::from_millis(500), "another client waited {worst:?} behind the pipelining one");
    // Every pipelined request is answered, then the connection closes (the client shut down its
    // sending side).
    w.shutdown(std::net::Shutdown::Write).unwrap();
    let got = answers.join().unwrap();
    assert_eq!(got, sent, "answers to the pipelined requests");
}

/// Idle keep-alive connections hold no buffer that counts against the intake's byte budget:
/// after 150 clients each sent a 250 kB request and stayed connected (37 MB in all, the budget
/// is 8 MiB: the 4 MiB body limit + 4 MiB), a new request is still accepted, not refused 429.
#[test]
fn idle_keep_alive_connections_do_not_starve_the_byte_budget() {
    let (_agent, port) = start_with(&[("STS_APM_MAX_PAYLOAD_SIZE", "4194304"), ("STS_APM_MAX_CONNECTIONS", "300")]);
    let mut big = b"POST /info HTTP/1.1\r\nContent-Length: 250000\r\n\r\n".to_vec();
    big.resize(big.len() + 250_000, b'x');
    let idle: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = connect(port);
            s.write_all(&big).unwrap();
            assert_eq!(read_response(&mut s).0, 200);
            s
        })
        .collect();
    let mut s = connect(port);
    s.write_all(&traces_request(V04)).unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "a new request while 150 keep-alive clients are idle: {body}");
    let mut more = b"POST /info HTTP/1.1\r\nContent-Length: 3000000\r\n\r\n".to_vec();
    more.resize(more.len() + 3_000_000, b'y');
    s.write_all(&more).unwrap();
    assert_eq!(read_response(&mut s).0, 200, "a 3 MB request");
    // And the idle ones still work.
    for mut c in idle.into_iter().step_by(30) {
        c.write_all(b"GET /info HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c).0, 200);
    }
}

/// A network namespace of the test's own, removed on drop, with lo up and a non-loopback address.
struct Netns(String);
impl Netns {
    fn new(addr: &str) -> Netns {
        let name = format!("sts-intake-test-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = std::process::Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?} failed (the test needs root and iproute2)");
        };
        let _ =
            std::process::Command::new("ip").args(["netns", "del", &name]).stderr(std::process::Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.0, "addr", "add", addr, "dev", "lo"]);
        ns
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let f_ns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(f_ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                .expect("setns");
            f()
        })
        .join()
        .unwrap()
    }
}
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// With `STS_APM_NON_LOCAL_TRAFFIC=true` the intake listens on every interface, but `/status` is
/// answered only on loopback: a client from another address gets 404 (and traces and /info).
#[test]
fn status_is_served_on_loopback_only() {
    let ns = Netns::new("10.213.7.1/32");
    let port = 18126u16;
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &ns.0, AGENT])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port.to_string())
        .env("STS_APM_NON_LOCAL_TRAFFIC", "true")
        .env("STS_PROCESS_AGENT_ENABLED", "disabled")
        .env("STS_HOST_CHECK_INTERVAL", "3600")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let _agent = drained(cmd.spawn().expect("spawn the agent in the namespace"));
    let get = |addr: &'static str, path: &'static str| {
        ns.run(move || {
            let t = Instant::now();
            let mut s = loop {
                match TcpStream::connect((addr, port)) {
                    Ok(s) => break s,
                    Err(e) => assert!(t.elapsed() < Duration::from_secs(15), "no intake on {addr}:{port}: {e}"),
                }
                std::thread::sleep(Duration::from_millis(30));
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(s.local_addr().unwrap().ip().to_string(), addr, "the client's own address");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
            read_response(&mut s)
        })
    };
    let (status, body) = get("127.0.0.1", "/status");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with('{') && body.contains("intake"), "{body}");
    let (status, body) = get("10.213.7.1", "/status");
    assert_eq!((status, body.as_str()), (404, "not found\n"), "/status to a non-loopback client");
    assert_eq!(get("10.213.7.1", "/info").0, 200, "the intake itself serves every interface");
}

/// A Unix-socket client outside the agent's pid namespace: the kernel reports its pid as 0 (it
/// has none there). The request is answered, with no pid for the client, and the agent lives on.
#[test]
fn a_unix_client_outside_the_agents_pid_namespace_is_served() {
    let dir = TempDir::new("intake-pidns");
    let sock = dir.0.join("apm.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = std::process::Command::new("unshare");
    // The agent is pid 1 of a new pid namespace; --kill-child ends it with unshare.
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", AGENT])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port.to_string())
        .env("STS_APM_RECEIVER_SOCKET", &sock)
        .env("STS_PROCESS_AGENT_ENABLED", "disabled")
        .env("STS_HOST_CHECK_INTERVAL", "3600")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut agent = drained(cmd.spawn().expect("spawn unshare"));
    let t = Instant::now();
    let mut s = loop {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "no intake on {}", sock.display());
        std::thread::sleep(Duration::from_millis(30));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&traces_request(V04)).unwrap();
    let (status, body) = response_from(&mut s);
    assert_eq!((status, body.as_str()), (200, "{\"rate_by_service\":{\"service:,env:\":1}}"));
    // The Unix socket is local: /status is served there.
    s.write_all(b"GET /status HTTP/1.1\r\n\r\n").unwrap();
    let (status, body) = response_from(&mut s);
    assert_eq!(status, 200, "{body}");
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent is still running");
}

/// A client that pipelines requests and never reads the replies holds at most a bounded amount
/// of them in the agent: the agent stops reading its requests (the client's writes block) rather
/// than buffering replies without end, and other clients are served meanwhile.
#[test]
fn a_client_that_does_not_read_its_replies_is_not_buffered_without_end() {
    let (agent, port) = start("128");
    let hwm_kib = || {
        let s = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id())).unwrap();
        s.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").parse::<u64>().unwrap()
    };
    let before = hwm_kib();
    let mut s = connect(port);
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let batch = b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n".repeat(10_000);
    let mut sent = 0usize;
    // Up to 8 MB of requests (about 100 MB of replies); the agent should stop taking them long before.
    while sent < 8 << 20 {
        match s.write(&batch) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let mut other = connect(port);
    other.write_all(b"GET /info HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut other).0, 200);
    let grew = hwm_kib().saturating_sub(before);
    eprintln!("sent {sent} bytes of requests unread; the agent's peak RSS grew by {grew} KiB");
    assert!(sent < 8 << 20, "the agent took all {sent} bytes of requests whose replies are not read");
    assert!(grew < 24 * 1024, "the agent's peak RSS grew by {grew} KiB");
}
