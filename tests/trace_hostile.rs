//! Trace bodies that decode and then amplify, against the real agent binary: every amplifying
//! shape (v0.4 msgpack empty span maps, with declared counts and with honest ones, spans that
//! survive normalisation, JSON `[[{},{},…]]`, v0.5 table strings, v0.5 spans referencing a long
//! table string, one v0.5 span naming a long table string in the four STS keys, meta entries in
//! v0.4 and v0.5, an invalid UTF-8 string), each at 1 MB and at the body limit
//! (`STS_APM_MAX_PAYLOAD_SIZE`, default 10 MiB). The agent's peak RSS (VmHWM) must stay within
//! its documented bound — the body plus eight times the body and 4 MiB, at most 24 MiB (README,
//! Traces) — and each gets 4xx with a reason or 200. Bodies held on other connections beside an
//! amplifying request stay within the agent-wide bound. Then: one large legitimate request
//! becomes several payloads, each within the trace writer's 3.2 MB, together carrying every span.

mod common;
use common::trace_proto;
use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use sts_agent::app::{request_limit, COST_CAP, MAX_PAYLOAD};

const V04: &[u8] = include_bytes!("fixtures/traces/ddtrace-4.16-v0.4.msgpack");
const KEY: &str = "hostile-test-key-0123456789";
/// The default `STS_APM_MAX_PAYLOAD_SIZE`.
const MAX_BODY: usize = 10 * 1024 * 1024;
const MB: usize = 1_000_000;

fn start(rx: &Receiver) -> (Agent, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = rx.url("/stsAgent");
    let agent = drained(spawn_agent(
        &[],
        &[
            ("STS_APM_RECEIVER_PORT", &port.to_string()),
            ("STS_STS_URL", &url),
            ("STS_API_KEY", KEY),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_HOSTNAME", "hostile-host"),
            ("STS_PROCESS_AGENT_ENABLED", "disabled"),
            ("STS_HOST_CHECK_INTERVAL", "3600"),
            ("STS_LOG_LEVEL", "warn"),
        ],
    ));
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(15), "no intake on {port}");
        std::thread::sleep(Duration::from_millis(30));
    }
    (agent, port)
}

fn head(path: &str, ctype: &str, len: usize) -> String {
    format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n")
}

/// Sends one request on a new connection; returns the status and the reply body.
fn send(port: u16, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(head(path, ctype, body.len()).as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s)
}

/// Sends one request on a new connection, its body only when the head was not answered at once
/// (429 from the head); returns the status. A refusal that comes later than the 300 ms wait
/// closes the socket under the body: a failed write then reads the reply that was sent.
fn send_unless_refused(port: u16, path: &str, ctype: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head(path, ctype, body.len()).as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut b = [0u8; 12];
    match s.read(&mut b) {
        Ok(n) if n >= 12 => return String::from_utf8_lossy(&b[9..12]).parse().unwrap(),
        Ok(n) => panic!("{n} bytes of a reply"),
        Err(e) => assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}"),
    }
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    if let Err(e) = s.write_all(body) {
        assert!(matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset), "{e}");
    }
    read_response(&mut s).0
}

/// VmHWM of a process, bytes.
fn hwm(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

fn array32(n: usize) -> Vec<u8> {
    let mut v = vec![0xdd];
    v.extend_from_slice(&(n as u32).to_be_bytes());
    v
}

fn map32(n: usize) -> Vec<u8> {
    let mut v = vec![0xdf];
    v.extend_from_slice(&(n as u32).to_be_bytes());
    v
}

fn str32(s: &[u8]) -> Vec<u8> {
    let mut v = vec![0xdb];
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s);
    v
}

/// `{trace_id: 1, span_id: 1}`: a span normalisation keeps (20 bytes).
const KEPT_SPAN: &[u8] = b"\x82\xa8trace_id\x01\xa7span_id\x01";

/// The amplifying shapes, each sized to `size` bytes exactly: (name, path, content type, body).
fn shapes(size: usize) -> Vec<(&'static str, &'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // v0.4: one trace of one-byte empty span maps.
    let n = size - 6;
    let mut b = vec![0x91];
    b.extend(array32(n));
    b.resize(size, 0x80);
    out.push(("v0.4 empty span maps", "/v0.4/traces", "application/msgpack", b));
    // v0.4: one trace of spans with ids (they survive normalisation and get the STS meta).
    let n = (size - 6) / KEPT_SPAN.len();
    let mut b = vec![0x91];
    b.extend(array32(n));
    for _ in 0..n {
        b.extend_from_slice(KEPT_SPAN);
    }
    out.push(("v0.4 spans with ids", "/v0.4/traces", "application/msgpack", b));
    // v0.3 JSON: [[{},{},…]].
    let n = (size - 4) / 3;
    let mut b = b"[[{}".to_vec();
    for _ in 1..n {
        b.extend_from_slice(b",{}");
    }
    b.extend_from_slice(b"]]");
    out.push(("JSON empty spans", "/v0.3/traces", "application/json", b));
    // v0.5: a table of one-byte empty strings.
    let n = size - 7;
    let mut b = vec![0x92];
    b.extend(array32(n));
    b.resize(1 + 5 + n, 0xa0);
    b.push(0x90);
    out.push(("v0.5 table strings", "/v0.5/traces", "application/msgpack", b));
    // v0.5: a 64 KiB table string that every 13-byte span names as its resource.
    let long = vec![b'r'; 64 * 1024];
    let mut b = vec![0x92, 0x92, 0xa0];
    b.extend(str32(&long));
    let span = [0x9c, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0x80, 0x80, 0];
    let n = (size - b.len() - 6) / span.len();
    b.push(0x91);
    b.extend(array32(n));
    for _ in 0..n {
        b.extend_from_slice(&span);
    }
    out.push(("v0.5 spans naming a long table string", "/v0.5/traces", "application/msgpack", b));
    // v0.4: one span with a meta map of two-byte entries.
    let n = (size - 40) / 2;
    let mut b = vec![0x91, 0x91, 0x83];
    b.extend_from_slice(&KEPT_SPAN[1..]);
    b.extend_from_slice(b"\xa4meta");
    b.extend(map32(n));
    b.resize(b.len() + 2 * n, 0xa0);
    out.push(("v0.4 meta entries", "/v0.4/traces", "application/msgpack", b));
    // v0.5: one span with a meta map of two-byte entries naming a 64 KiB table string.
    let mut b = vec![0x92, 0x92, 0xa1, b's'];
    b.extend(str32(&long));
    b.extend_from_slice(&[0x91, 0x91, 0x9c, 0, 0, 0, 1, 1, 0, 0, 0, 0]);
    let n = (size - b.len() - 10) / 2;
    b.extend(map32(n));
    for _ in 0..n {
        b.extend_from_slice(&[1, 1]);
    }
    b.extend_from_slice(&[0x80, 0]);
    out.push(("v0.5 meta entries naming a long table string", "/v0.5/traces", "application/msgpack", b));
    // v0.5: one span whose db.instance, span.hostname, span.pid and span.starttime all name
    // the same long table string, with span.kind: the STS interpretation would copy it six
    // times (service name, service URN, and the instance URN holding four more).
    let keys = ["db.instance", "span.hostname", "span.pid", "span.starttime", "span.kind"];
    let long = vec![b'h'; size - 100];
    let mut b = vec![0x92, 0x97, 0xa1, b's'];
    b.extend(str32(&long));
    for k in keys {
        b.push(0xa0 | k.len() as u8);
        b.extend_from_slice(k.as_bytes());
    }
    b.extend_from_slice(&[0x91, 0x91, 0x9c, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0x85]);
    b.extend_from_slice(&[2, 1, 3, 1, 4, 1, 5, 1, 6, 0, 0x80, 0]);
    out.push(("v0.5 one span naming a long table string in four STS keys", "/v0.5/traces", "application/msgpack", b));
    // v0.4: one span whose resource is invalid UTF-8 (each byte is repaired into a 3-byte U+FFFD).
    let mut b = vec![0x91, 0x91, 0x83];
    b.extend_from_slice(&KEPT_SPAN[1..]);
    b.extend_from_slice(b"\xa8resource");
    b.extend(str32(&vec![0xff; size - 50]));
    out.push(("v0.4 an invalid UTF-8 resource", "/v0.4/traces", "application/msgpack", b));
    // v0.4 with honest counts: traces of 10,000 empty span maps each (a count is declared only
    // for what follows, so the limit is reached while decoding, not from a count alone).
    // The last trace takes what is left, so the body is `size` bytes.
    let per = 10_000;
    let n = (size - 5).div_ceil(3 + per);
    let mut b = vec![0xdd];
    b.extend_from_slice(&(n as u32).to_be_bytes());
    for _ in 0..n {
        let k = per.min(size.saturating_sub(b.len() + 3));
        b.extend_from_slice(&[0xdc, (k >> 8) as u8, k as u8]);
        b.resize(b.len() + k, 0x80);
    }
    out.push(("v0.4 traces of 10,000 empty span maps, honest counts", "/v0.4/traces", "application/msgpack", b));
    for (what, _, _, body) in &out {
        assert!(body.len() <= size && body.len() + 64 >= size, "{what}: {} bytes for {size}", body.len());
    }
    out
}

/// What one request may cost the agent, documented in README (Traces): its body, held while it
/// is answered, plus `request_limit` (8 × the body + 4 MiB, at most 24 MiB) for what it decodes
/// to, plus 2 MiB for the allocator's rounding and the intake's read buffer.
fn bound(body: usize) -> usize {
    body + request_limit(body) + (2 << 20)
}

#[test]
fn amplifying_bodies_stay_within_the_documented_memory_bound() {
    let rx = Receiver::start(true, vec![202]);
    for (i, (what, ..)) in shapes(MB).iter().enumerate() {
        let (agent, port) = start(&rx);
        let pid = agent.0.id();
        assert_eq!(send(port, "/v0.4/traces", "application/msgpack", V04).0, 200, "warm-up");
        let base = hwm(pid);
        for size in [MB, MAX_BODY] {
            let shape = shapes(size).swap_remove(i);
            let (_, path, ctype, body) = &shape;
            let t = Instant::now();
            let (status, reason) = send(port, path, ctype, body);
            let took = t.elapsed();
            let peak = hwm(pid);
            let grew = peak.saturating_sub(base);
            eprintln!(
                "{what}, {} bytes: {status} in {took:?} ({}), peak RSS {:.1} MiB (+{:.1} MiB, bound {:.1} MiB)",
                body.len(),
                reason.trim(),
                peak as f64 / 1048576.0,
                grew as f64 / 1048576.0,
                bound(body.len()) as f64 / 1048576.0
            );
            assert!(status == 200 || (400..500).contains(&status), "{what}: status {status}");
            // Answered promptly too (a key looked up over 500,000 entries naming a 64 KiB
            // string once took 6.5 s here: every comparison checked the string's UTF-8).
            assert!(took < Duration::from_secs(3), "{what}: took {took:?}");
            if status != 200 {
                assert!(reason.len() > 10, "{what}: a reason is given: {reason:?}");
            }
            assert!(
                grew <= bound(body.len()),
                "{what}, {} bytes: the agent grew by {grew} bytes, more than its bound {}",
                body.len(),
                bound(body.len())
            );
        }
        // And the agent keeps serving.
        assert_eq!(send(port, "/v0.4/traces", "application/msgpack", V04).0, 200, "{what}: served after");
    }
}

/// What the trace path may add to the agent with the default configuration (README, Traces):
/// the bodies held on all connections (the intake's budget: the 10 MiB body limit + 4 MiB), the
/// cost of the request being answered with the payloads pending (`COST_CAP`, 24 MiB), and 2 MiB
/// of allocator rounding: 40 MiB over the idle agent, whose ECS task is limited to 64 MiB.
const AGENT_WIDE: usize = (MAX_BODY + (4 << 20)) + COST_CAP + (2 << 20);

/// Bodies in flight on other connections do not add to what an amplifying request may cost:
/// one connection holds 10 MiB less a byte of its body, a second one tries the same, then a
/// 10 MiB JSON `[[{},…]]` and a 3.9 MB one (which fits beside the first body and is decoded up to
/// its limit). The agent's peak RSS stays within the agent-wide bound.
#[test]
fn bodies_in_flight_and_an_amplifying_request_stay_within_the_agent_wide_bound() {
    let rx = Receiver::start(true, vec![202]);
    let (agent, port) = start(&rx);
    let pid = agent.0.id();
    assert_eq!(send(port, "/v0.4/traces", "application/msgpack", V04).0, 200, "warm-up");
    let base = hwm(pid);
    // Two connections sending 10 MiB bodies all but their last byte (the agent may refuse the
    // second one from its head: then its writes fail, and that is all).
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(head("/v0.4/traces", "application/msgpack", MAX_BODY).as_bytes());
            let _ = s.write_all(&vec![0x90; MAX_BODY - 1]);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let json = |size: usize| shapes(size).swap_remove(2);
    let (what, path, ctype, body) = json(MAX_BODY);
    let status = send_unless_refused(port, path, ctype, &body);
    let grew = hwm(pid).saturating_sub(base);
    eprintln!("{what}, {} bytes beside two held bodies: {status}, +{:.1} MiB", body.len(), grew as f64 / 1048576.0);
    assert!(grew <= AGENT_WIDE, "the agent grew by {grew} bytes, more than the agent-wide bound {AGENT_WIDE}");
    assert!(status == 413 || status == 429, "{status}");
    let (what, path, ctype, body) = json(3_900_000);
    let status = send_unless_refused(port, path, ctype, &body);
    let grew = hwm(pid).saturating_sub(base);
    eprintln!("{what}, {} bytes beside a held body: {status}, +{:.1} MiB", body.len(), grew as f64 / 1048576.0);
    assert_eq!(status, 413, "decoded up to its limit beside the held body");
    assert!(grew <= AGENT_WIDE, "the agent grew by {grew} bytes, more than the agent-wide bound {AGENT_WIDE}");
    drop(holders);
    assert_eq!(send(port, "/v0.4/traces", "application/msgpack", V04).0, 200, "served after");
}

/// The traces of a v0.4 body (no outer array header): `traces` traces of `per_trace` spans each,
/// with realistic strings; trace ids from `first_trace`, span ids from `*id + 1`.
fn large_traces(first_trace: u64, traces: usize, per_trace: usize, id: &mut u64) -> Vec<u8> {
    let mut b = Vec::new();
    for t in first_trace..first_trace + traces as u64 {
        b.extend(array32(per_trace));
        for _ in 0..per_trace {
            b.push(0x88);
            for (k, v) in [("service", "checkout"), ("name", "web.request"), ("resource", "GET /api/v1/cart/items")] {
                b.push(0xa0 | k.len() as u8);
                b.extend_from_slice(k.as_bytes());
                b.push(0xa0 | v.len() as u8);
                b.extend_from_slice(v.as_bytes());
            }
            b.extend_from_slice(b"\xa8trace_id\xcf");
            b.extend_from_slice(&t.to_be_bytes());
            *id += 1;
            b.extend_from_slice(b"\xa7span_id\xcf");
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(b"\xa5start\xcf");
            b.extend_from_slice(&1_700_000_000_000_000_000u64.to_be_bytes());
            b.extend_from_slice(b"\xa8duration\xce");
            b.extend_from_slice(&1000u32.to_be_bytes());
            b.extend_from_slice(b"\xa4meta\x82\xabhttp.method\xa3GET\xa8http.url\xd9\x40");
            b.extend_from_slice(&[b'u'; 0x40]);
        }
    }
    b
}

#[test]
fn a_large_request_becomes_several_payloads_within_the_writer_limit() {
    let rx = Receiver::start(true, vec![202]);
    let (_agent, port) = start(&rx);
    // One trace of 20,000 spans (more than one payload holds) and 2,000 traces of 10.
    let (big, small, per_small) = (20_000, 2_000, 10);
    let mut id = 0;
    let mut body = array32(1 + small);
    body.extend(large_traces(1, 1, big, &mut id));
    body.extend(large_traces(2, small, per_small, &mut id));
    assert!(body.len() > 2 * MAX_PAYLOAD, "{} bytes", body.len());
    let (status, reply) = send(port, "/v0.4/traces", "application/msgpack", &body);
    assert_eq!(status, 200, "{reply}");
    let total = big + small * per_small;
    let t = Instant::now();
    let payloads = loop {
        let payloads =
            rx.requests().into_iter().filter(|r| r.target == "/stsAgent/api/v0.2/traces").collect::<Vec<_>>();
        let spans: usize = payloads
            .iter()
            .map(|r| trace_proto::decode(&r.body).traces.iter().map(|t| t.spans.len()).sum::<usize>())
            .sum();
        if spans >= total || t.elapsed() > Duration::from_secs(30) {
            break payloads;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(payloads.len() >= 3, "{} bytes of body became {} payloads", body.len(), payloads.len());
    let mut seen = HashSet::new();
    let mut spans = 0;
    for r in &payloads {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
        assert!(raw.len() <= MAX_PAYLOAD, "a payload of {} bytes (limit {MAX_PAYLOAD})", raw.len());
        let p = trace_proto::decode(&r.body);
        assert_eq!(p.host_name, "hostile-host");
        for t in &p.traces {
            assert!(t.spans.iter().all(|s| s.trace_id == t.trace_id), "one trace per APITrace");
            for s in &t.spans {
                assert!(seen.insert(s.span_id), "span {} twice", s.span_id);
                assert_eq!(s.meta["span.serviceURN"], "urn:service:/checkout");
                spans += 1;
            }
        }
    }
    assert_eq!(spans, total, "every span, once");
    assert_eq!(seen, (1..=total as u64).collect::<HashSet<_>>());
}

/// A dense, realistic v0.5 body (table strings named with one byte; 8 meta entries and 3
/// metrics per span, as a web service's spans look) of 2.5 MB: v0.5 costs about 9 times its size
/// once decoded and encoded, and is still accepted whole (up to about 2.6 MB, where the cost
/// reaches the 24 MiB cap).
#[test]
fn a_dense_realistic_v05_body_is_accepted() {
    let rx = Receiver::start(true, vec![202]);
    let (agent, port) = start(&rx);
    let table: &[&str] = &[
        "shop",
        "flask.request",
        "SELECT * FROM items WHERE cart_id = ?",
        "web",
        "http.method",
        "GET",
        "http.url",
        "https://shop.example.com/api/v1/cart/items?id=12345",
        "http.status_code",
        "200",
        "component",
        "flask",
        "span.kind",
        "server",
        "runtime-id",
        "7d2236c4b3a44d46af238a50e659bdd9",
        "language",
        "python",
        "db.instance",
        "orders",
        "_sampling_priority_v1",
        "_dd.top_level",
        "process_id",
    ];
    let (traces, per) = (5_200usize, 5usize);
    let mut b = vec![0x92, 0xdc];
    b.extend_from_slice(&(table.len() as u16).to_be_bytes());
    for s in table {
        b.push(0xa0 | s.len().min(31) as u8);
        if s.len() > 31 {
            b.pop();
            b.extend_from_slice(&[0xd9, s.len() as u8]);
        }
        b.extend_from_slice(s.as_bytes());
    }
    b.extend(array32(traces));
    let mut id = 0u64;
    for t in 0..traces as u64 {
        b.push(0x90 | per as u8);
        for k in 0..per as u64 {
            id += 1;
            b.extend_from_slice(&[0x9c, 0, 1, 2, 0xcf]);
            b.extend_from_slice(&(t + 1).to_be_bytes());
            b.push(0xcf);
            b.extend_from_slice(&id.to_be_bytes());
            b.push(0xcf);
            b.extend_from_slice(&(if k == 0 { 0 } else { id - k }).to_be_bytes());
            b.push(0xcf);
            b.extend_from_slice(&(1_700_000_000_000_000_000 + id * 1000).to_be_bytes());
            b.extend_from_slice(&[0xce, 0, 2, 0x49, 0xf0, 0]);
            b.push(0x88);
            for e in 0..8u8 {
                b.extend_from_slice(&[4 + 2 * e, 5 + 2 * e]);
            }
            b.push(0x83);
            for (key, v) in [(20u8, 1.0f64), (21, 1.0), (22, 4242.0)] {
                b.extend_from_slice(&[key, 0xcb]);
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.push(3);
        }
    }
    let body = b;
    assert!(body.len() > 2_400_000, "{} bytes", body.len());
    let before = hwm(agent.0.id());
    let (status, reply) = send(port, "/v0.5/traces", "application/msgpack", &body);
    assert_eq!(status, 200, "{reply}");
    let grew = hwm(agent.0.id()).saturating_sub(before);
    eprintln!("dense v0.5, {} bytes: peak RSS +{:.1} MiB", body.len(), grew as f64 / 1048576.0);
    assert!(grew <= bound(body.len()), "grew by {grew}");
    let total = traces * per;
    let t = Instant::now();
    loop {
        let spans: usize = rx
            .requests()
            .iter()
            .filter(|r| r.target == "/stsAgent/api/v0.2/traces")
            .map(|r| trace_proto::decode(&r.body).traces.iter().map(|t| t.spans.len()).sum::<usize>())
            .sum();
        if spans == total {
            break;
        }
        assert!(spans < total && t.elapsed() < Duration::from_secs(30), "{spans} of {total} spans forwarded");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// In process: a span larger than a payload travels alone in its own payload; the traces around
/// it share the others, each within the limit, and nothing is lost or sent empty.
#[test]
fn a_span_larger_than_a_payload_travels_alone() {
    use sts_agent::app::TraceAgent;
    use sts_agent::sources::trace_intake::Peer;
    use sts_agent::transport::http_server::parse_head;
    let mut id = 0;
    let mut body = array32(3);
    body.extend(large_traces(1, 1, 3, &mut id));
    // Trace 2: one span of 3.5 MB: 700 meta values of 5,000 bytes (longer ones are truncated).
    id += 1;
    body.extend_from_slice(b"\x91\x83\xa8trace_id\x02\xa7span_id\xcf");
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(b"\xa4meta");
    body.extend(map32(700));
    for k in 0..700u16 {
        body.push(0xa4);
        body.extend_from_slice(format!("k{k:03}").as_bytes());
        body.extend(str32(&[b'q'; 5000]));
    }
    body.extend(large_traces(3, 1, 3, &mut id));
    let h = format!(
        "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let head = parse_head(h.as_bytes(), 1 << 30).unwrap().unwrap();
    let mut agent = TraceAgent::new(false);
    let mut reply = Vec::new();
    let peer = Peer { pid: None, unix: false, loopback: true };
    let status = agent.handle(&head, &body, peer, &mut reply, Instant::now(), 1_700_000_000_000_000_000, "h", None).0;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    assert!(agent.due(Instant::now()), "full payloads are due at once");
    let mut payloads = Vec::new();
    let mut p = Vec::new();
    while agent.take_payload("h", &mut p) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&p).unwrap();
        payloads.push((p.len(), trace_proto::decode(&gz.finish().unwrap())));
    }
    let spans: Vec<Vec<u64>> = payloads
        .iter()
        .map(|(_, p)| p.traces.iter().flat_map(|t| t.spans.iter().map(|s| s.span_id)).collect())
        .collect();
    assert_eq!(
        spans,
        vec![vec![1, 2, 3], vec![4], vec![5, 6, 7]],
        "payload sizes {:?}",
        payloads.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert!(payloads[0].0 <= MAX_PAYLOAD && payloads[2].0 <= MAX_PAYLOAD && payloads[1].0 > MAX_PAYLOAD);
    assert!(!agent.due(Instant::now()) && agent.deadline().is_none(), "nothing left pending");
}

/// In process: the payloads still pending share the cost cap with the next request (pipelined
/// requests are answered before the loop sends what the first one filled). A request accepted
/// alone gets 413 while an earlier one's payloads are pending, and 200 once they are sent.
#[test]
fn pending_payloads_share_the_cost_cap() {
    use sts_agent::app::TraceAgent;
    use sts_agent::sources::trace_intake::Peer;
    use sts_agent::transport::http_server::parse_head;
    let mut id = 0;
    let mut body = array32(4_000);
    body.extend(large_traces(1, 4_000, 10, &mut id));
    let h = format!(
        "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let head = parse_head(h.as_bytes(), 1 << 30).unwrap().unwrap();
    let peer = Peer { pid: None, unix: false, loopback: true };
    let mut agent = TraceAgent::new(false);
    let mut reply = Vec::new();
    let mut handle = |agent: &mut TraceAgent| {
        reply.clear();
        agent.handle(&head, &body, peer, &mut reply, Instant::now(), 1_700_000_000_000_000_000, "h", None).0
    };
    assert_eq!(handle(&mut agent), 200, "alone");
    let pending = agent.pending_bytes();
    eprintln!("{} bytes of body, {pending} bytes of payloads pending", body.len());
    assert!(pending > COST_CAP / 3, "{pending}");
    assert_eq!(handle(&mut agent), 413, "beside {pending} bytes of pending payloads");
    let mut p = Vec::new();
    while agent.take_payload("h", &mut p) {}
    assert_eq!(agent.pending_bytes(), 0);
    assert_eq!(handle(&mut agent), 200, "once they are sent");
}

/// A `/status` field of the agent's process, bytes (`VmHWM`, `VmSize`, …).
fn vm(pid: u32, key: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect(key);
    kb * 1024
}

/// Storage a large request left on its connection counts until it is given back, and is given
/// back after the reply even when the next request's first byte is already in: seven
/// connections each send a 10 MiB body to `/info` then one byte of a next request (`G`), and
/// three more do the same with a chunked body. Each is answered; the agent's peak RSS grows by
/// at most the intake's budget (10 MiB + 4 MiB) and 2 MiB of rounding (it grew by ~100 MiB when
/// a connection counted only the bytes it held, 1, and kept a 10 MiB buffer); a 10 MiB request
/// is still served beside them.
#[test]
fn storage_left_by_answered_requests_is_not_kept() {
    let rx = Receiver::start(true, vec![202]);
    let (agent, port) = start(&rx);
    let pid = agent.0.id();
    assert_eq!(send(port, "/v0.4/traces", "application/msgpack", V04).0, 200, "warm-up");
    let base = hwm(pid);
    let body = vec![b'x'; MAX_BODY];
    let mut held = Vec::new();
    for i in 0..10 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        if i < 7 {
            s.write_all(format!("POST /info HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n").as_bytes())
                .unwrap();
            s.write_all(&body).unwrap();
        } else {
            let n = MAX_BODY - 1024;
            s.write_all(
                format!("POST /info HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n").as_bytes(),
            )
            .unwrap();
            s.write_all(&body[..n]).unwrap();
            s.write_all(b"\r\n0\r\n\r\n").unwrap();
        }
        s.write_all(b"G").unwrap();
        let status = read_response(&mut s).0;
        assert!(status == 200 || status == 429, "connection {i}: {status}");
        held.push(s);
    }
    let grew = hwm(pid).saturating_sub(base);
    let bound = MAX_BODY + (4 << 20) + (2 << 20);
    eprintln!(
        "ten answered 10 MiB requests with a next one begun: +{:.1} MiB (bound {:.1} MiB)",
        grew as f64 / 1048576.0,
        bound as f64 / 1048576.0
    );
    assert!(grew <= bound, "the agent grew by {grew} bytes, more than the intake's budget {bound}");
    assert_eq!(send(port, "/info", "application/json", &body).0, 200, "a 10 MiB request beside them");
    drop(held);
}

/// A head declaring a large body reserves nothing: 100 connections each send a head declaring
/// 10 MiB and no body; the agent's address space (VmSize) grows by less than 100 MiB (it
/// reserved 10 MiB per head, 1 GiB, which fails under strict overcommit and aborts the agent).
#[test]
fn heads_declaring_large_bodies_reserve_nothing() {
    let rx = Receiver::start(true, vec![202]);
    let (agent, port) = start(&rx);
    let pid = agent.0.id();
    assert_eq!(send(port, "/v0.4/traces", "application/msgpack", V04).0, 200, "warm-up");
    let base = vm(pid, "VmSize");
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(head("/v0.4/traces", "application/msgpack", MAX_BODY).as_bytes()).unwrap();
            s
        })
        .collect();
    // Until the agent has read every head.
    wait_read_by_server(port, &conns);
    std::thread::sleep(Duration::from_millis(100));
    let grew = vm(pid, "VmSize").saturating_sub(base);
    eprintln!("100 heads declaring 10 MiB: VmSize +{:.1} MiB", grew as f64 / 1048576.0);
    assert!(grew < 100 << 20, "the agent's address space grew by {grew} bytes");
    drop(conns);
}
