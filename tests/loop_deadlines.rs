//! The loop contract: every source's deadline reaches the poll timeout. A Docker Engine
//! stand-in (a real Unix socket server) and an ECS agent stand-in (a real TCP server) note, from
//! their side, when the agent's requests arrive and when it gives up on one; the check timers are
//! set an hour apart, nothing is sent anywhere (a dry run) and the trace intake is off, so nothing
//! but the Docker and ECS sources' own deadlines can wake the loop at those times. And a deadline
//! is honest: none stays in the past while its source waits (the loop would spin).

mod common;

use common::{spawn_agent, wait_with_timeout, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The retry after a failed Docker look-up (`sources/docker.rs`, `RETRY_AFTER_FAILURE`).
const DOCKER_RETRY: Duration = Duration::from_secs(30);
/// The HTTP client's request timeout (`transport/client.rs`, `REQUEST_TIMEOUT`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How far from its deadline a wake-up may land on a loaded test machine.
const SLACK: Duration = Duration::from_secs(3);

/// Environment in which only the Docker and ECS sources have deadlines inside the test's window.
fn quiet_env<'a>(docker_host: &'a str, ecs_url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DOCKER_HOST", docker_host),
        ("STS_ECS_AGENT_URL", ecs_url),
        ("STS_HOSTNAME", "loop-host"),
        ("STS_APM_ENABLED", "false"),
        ("STS_NETWORK_TRACING_ENABLED", "false"),
        ("STS_HOST_CHECK_INTERVAL", "3600"),
        ("STS_PROCESS_CHECK_INTERVAL", "3600"),
        ("STS_CONNECTION_CHECK_INTERVAL", "3600"),
        ("STS_LOG_LEVEL", "debug"),
    ]
}

/// What the loop says when a source keeps a past deadline after it ran (`app/source.rs`).
const DISHONEST: &str = "kept a deadline in the past";

fn stop(child: std::process::Child) -> String {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(DISHONEST), "{stderr}");
    stderr
}

/// Reads one request head; `None` at end of stream.
fn read_head(r: &mut impl BufRead) -> Option<String> {
    let (mut line, mut request) = (String::new(), String::new());
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if request.is_empty() {
            request = line.trim().to_string();
        }
        if line == "\r\n" {
            return Some(request);
        }
    }
}

/// A Docker Engine API stand-in on a Unix socket: it answers the first request with `first`
/// (`500 …` makes the agent retry after `DOCKER_RETRY`) and every later one with an empty
/// container list, and sends the arrival time of each request.
fn docker_stand_in(sock: &std::path::Path, first: &'static str) -> mpsc::Receiver<(Instant, String)> {
    let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut n = 0;
        for s in listener.incoming() {
            let Ok(s) = s else { break };
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            while let Some(request) = read_head(&mut r) {
                let _ = tx.send((Instant::now(), request));
                n += 1;
                let (status, body) =
                    if n == 1 { (first, if first.starts_with("200") { "[]" } else { "{}" }) } else { ("200 OK", "[]") };
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    rx
}

#[test]
fn docker_retry_deadline_wakes_the_loop() {
    let dir = TempDir::new("loop-docker");
    let sock = dir.0.join("docker.sock");
    let rx = docker_stand_in(&sock, "500 Internal Server Error");
    let docker_host = format!("unix://{}", sock.display());
    let started = Instant::now();
    // ECS: nothing listens on the discard port, so its look-ups fail at once (retried in a minute).
    let child = spawn_agent(&[], &quiet_env(&docker_host, "http://127.0.0.1:9"));
    let first = rx.recv_timeout(Duration::from_secs(10));
    let second = first.as_ref().ok().map(|_| rx.recv_timeout(DOCKER_RETRY + SLACK + Duration::from_secs(5)));
    let stderr = stop(child);
    let (t1, r1) = first.unwrap_or_else(|_| panic!("no Docker request within 10 s of the start\n{stderr}"));
    assert!(r1.starts_with("GET /containers/json?all=1 "), "{r1}");
    assert!(t1 - started < Duration::from_secs(10));
    let (t2, r2) = second.unwrap().unwrap_or_else(|_| {
        panic!(
            "no Docker retry within {:?} of the failed look-up\n{stderr}",
            DOCKER_RETRY + SLACK + Duration::from_secs(5)
        )
    });
    assert!(r2.starts_with("GET /containers/json?all=1 "), "{r2}");
    let gap = t2 - t1;
    assert!(
        gap >= DOCKER_RETRY - Duration::from_millis(500) && gap <= DOCKER_RETRY + SLACK,
        "the Docker retry came {gap:?} after the failed look-up, not at its deadline ({DOCKER_RETRY:?})\n{stderr}"
    );
}

#[test]
fn ecs_request_deadline_wakes_the_loop() {
    let dir = TempDir::new("loop-ecs");
    // Docker answers at once (its next look-up is a minute later, after this test's window).
    let sock = dir.0.join("docker.sock");
    let _docker = docker_stand_in(&sock, "200 OK");
    let docker_host = format!("unix://{}", sock.display());
    // The stand-in reads the first request and never answers it; it reports when the request
    // arrived and when the agent closed the connection (its request timeout).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel::<(&'static str, Instant, String)>();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { break };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                while let Some(request) = read_head(&mut r) {
                    let _ = tx.send(("request", Instant::now(), request));
                }
                let _ = tx.send(("closed", Instant::now(), String::new()));
            });
        }
    });
    let started = Instant::now();
    let child = spawn_agent(&[], &quiet_env(&docker_host, &url));
    let first = rx.recv_timeout(Duration::from_secs(10));
    let closed = first.as_ref().ok().map(|_| rx.recv_timeout(REQUEST_TIMEOUT + SLACK + Duration::from_secs(5)));
    let stderr = stop(child);
    let (what, t1, r1) = first.unwrap_or_else(|_| panic!("no ECS request within 10 s of the start\n{stderr}"));
    assert_eq!(what, "request");
    assert!(r1.starts_with("GET /v1/metadata "), "{r1}");
    assert!(t1 - started < Duration::from_secs(10));
    let (what, t2, _) = closed.unwrap().unwrap_or_else(|_| {
        panic!("the agent did not give up on the unanswered ECS request within {:?}\n{stderr}", REQUEST_TIMEOUT + SLACK)
    });
    assert_eq!(what, "closed", "{stderr}");
    let gap = t2 - t1;
    assert!(
        gap >= REQUEST_TIMEOUT - Duration::from_millis(500) && gap <= REQUEST_TIMEOUT + SLACK,
        "the agent gave up on the ECS request {gap:?} after sending it, not at its timeout ({REQUEST_TIMEOUT:?})\n{stderr}"
    );
}

/// This process's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1 over the whole line.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap().unwrap() as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// `--once` waits up to 4 s for a Docker look-up in flight before its reporting process check;
/// the connections check, which follows the process check, must not keep its past deadline
/// meanwhile (the poll timeout would be 0 and the loop would spin).
#[test]
fn once_waiting_for_docker_does_not_spin() {
    let dir = TempDir::new("loop-once");
    let sock = dir.0.join("docker.sock");
    // Accepts (the kernel's backlog) and never answers.
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let docker_host = format!("unix://{}", sock.display());
    let env = [
        ("DOCKER_HOST", docker_host.as_str()),
        ("STS_ECS_AGENT_URL", "http://127.0.0.1:9"),
        ("STS_HOSTNAME", "loop-host"),
        ("STS_NETWORK_TRACING_ENABLED", "true"),
        ("STS_LOG_LEVEL", "debug"),
    ];
    let child = spawn_agent(&["--once"], &env);
    let pid = child.id();
    // The rate samples are 1 s apart; the wait for Docker lasts until 4 s after the start.
    std::thread::sleep(Duration::from_millis(1500));
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_millis(2000));
    let spent = cpu_time(pid) - before;
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("connections check:"), "the connections check ran\n{stderr}");
    assert!(!stderr.contains(DISHONEST), "{stderr}");
    assert!(spent < Duration::from_millis(150), "{spent:?} of CPU in 2 s of waiting for Docker\n{stderr}");
}
