//! Hostname from EC2 instance metadata (IMDSv2), against a local server that speaks the
//! documented protocol (there is no EC2 here): `PUT /latest/api/token` with a TTL header gives
//! a token; `GET /latest/meta-data/instance-id` answers only with that token, 401 otherwise.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "AQAEAtest-token==";

fn fake_imds(instance_id: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let line = req.lines().next().unwrap_or("").to_string();
            let has = |h: &str| req.lines().any(|l| l.to_ascii_lowercase().starts_with(&h.to_ascii_lowercase()));
            log2.lock().unwrap().push(line.clone());
            let (status, body) =
                if line.starts_with("PUT /latest/api/token ") && has("x-aws-ec2-metadata-token-ttl-seconds:") {
                    ("200 OK", TOKEN.to_string())
                } else if line.starts_with("GET /latest/meta-data/instance-id ") {
                    if req.lines().any(|l| l.eq_ignore_ascii_case(&format!("x-aws-ec2-metadata-token: {TOKEN}"))) {
                        ("200 OK", instance_id.to_string())
                    } else {
                        ("401 Unauthorized", String::new())
                    }
                } else {
                    ("400 Bad Request", String::new())
                };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (url, log)
}

#[test]
fn instance_id_becomes_the_hostname() {
    let (url, log) = fake_imds("i-0123456789abcdef0");
    let out = run_agent(&["--once"], &[("STS_EC2_METADATA_URL", &url)], Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["payload"]["series"][0]["host"], "i-0123456789abcdef0");
    let log = log.lock().unwrap();
    assert!(log[0].starts_with("PUT /latest/api/token"), "{log:?}");
    assert!(log[1].starts_with("GET /latest/meta-data/instance-id"), "{log:?}");
}

#[test]
fn configured_hostname_wins_and_garbage_falls_back_to_the_os_name() {
    let (url, log) = fake_imds("i-0123456789abcdef0");
    let out =
        run_agent(&["--once"], &[("STS_EC2_METADATA_URL", &url), ("STS_HOSTNAME", "given")], Duration::from_secs(20));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"host\":\"given\""));
    assert!(log.lock().unwrap().is_empty(), "IMDS asked although STS_HOSTNAME is set");

    let (url, _) = fake_imds("<html>not an id</html>");
    let out = run_agent(&["--once"], &[("STS_EC2_METADATA_URL", &url)], Duration::from_secs(20));
    let os = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\"host\":\"{os}\"")));
}

#[test]
fn a_metadata_service_that_never_answers_costs_under_a_second() {
    // Accepts connections (the kernel completes them from the backlog) but never replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let start = std::time::Instant::now();
    let out = run_agent(&["--once"], &[("STS_EC2_METADATA_URL", &url)], Duration::from_secs(20));
    let elapsed = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let os = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\"host\":\"{os}\"")));
    // --once itself takes one second (two samples); the look-up adds at most its 400 ms timeout.
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    drop(silent);
}
