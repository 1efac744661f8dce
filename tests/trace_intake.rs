//! The trace intake's defences against a real agent process, over real sockets: limits decided
//! from the head (413 before the body), chunked bodies past the limit, cross-site requests, bad
//! heads and bodies (4xx, and the connection keeps working after a 400), a request whose body
//! never comes (408 after the read timeout), and a flood of idle connections past the cap while a
//! well-behaved client is served promptly.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

const V04: &[u8] = include_bytes!("fixtures/traces/ddtrace-4.16-v0.4.msgpack");

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(max_conns: &str) -> (Agent, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent = Agent(spawn_agent(
        &[],
        &[
            ("STS_APM_RECEIVER_PORT", &port.to_string()),
            ("STS_APM_MAX_PAYLOAD_SIZE", "65536"),
            ("STS_APM_MAX_CONNECTIONS", max_conns),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
            ("STS_HOST_CHECK_INTERVAL", "3600"),
        ],
    ));
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

/// Reads one response (head + Content-Length body); returns (status, body, elapsed).
fn response(s: &mut TcpStream) -> (u16, String) {
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
    let (status, reason) = response(&mut s);
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
    assert_eq!(response(&mut s).0, 413);

    // A browser page posting cross-site.
    let mut s = connect(port);
    s.write_all(b"POST /v0.4/traces HTTP/1.1\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 1\r\n\r\n\x90").unwrap();
    assert_eq!(response(&mut s).0, 403);

    // A malformed head.
    let mut s = connect(port);
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).0, 400);

    // A hostile body gets 400 with a reason, and the same connection then works.
    let mut s = connect(port);
    s.write_all(&traces_request(&[0xdd, 0xff, 0xff, 0xff, 0xff])).unwrap();
    let (status, reason) = response(&mut s);
    assert_eq!(status, 400);
    assert!(reason.contains("array length exceeds the body"), "{reason}");
    s.write_all(&traces_request(V04)).unwrap();
    let (status, body) = response(&mut s);
    assert_eq!((status, body.as_str()), (200, "{\"rate_by_service\":{\"service:,env:\":1}}"));
    // Unknown paths.
    s.write_all(b"POST /v0.7/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).0, 404);

    // A flood of idle connections past the cap (8): a new client is still served promptly.
    let idle: Vec<TcpStream> = (0..30).map(|_| connect(port)).collect();
    let t = Instant::now();
    let mut s = connect(port);
    s.write_all(&traces_request(V04)).unwrap();
    assert_eq!(response(&mut s).0, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "served in {:?}", t.elapsed());
    drop(idle);

    // The stalled request: 408 around the 5 s read timeout (unless it was evicted by the flood,
    // which closes it without a reply; either way it is not left hanging).
    let mut b = [0u8; 512];
    let n = stalled.read(&mut b).unwrap_or(0);
    let text = String::from_utf8_lossy(&b[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
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
        assert_eq!(response(&mut s).0, 200);
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
