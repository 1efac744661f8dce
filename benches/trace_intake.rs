//! Trace-path budget. Payloads of BENCH_SPANS spans (default 1,000; 8 meta, 3 metrics each, as
//! a web service's spans look) in v0.4 msgpack. Ours: decode + normalise + interpret + encode
//! the TracePayload + complete it + gzip. Side by side, in the same run: a general-purpose
//! decoder (rmpv's value tree) decoding the same bytes and nothing else.
//! SQL-heavy payloads: every span of type `sql` with a realistic query holding literals, against
//! the same spans typed `db` (not obfuscated): the difference is what obfuscation costs per span.
//! Then the whole agent (release binary) under a steady 2,000 spans/s for BENCH_LOAD_SECS
//! (default 15 s), sending to a local HTTP sink: its CPU and peak RSS.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nix::sys::resource::{getrusage, UsageWho};
use rmpv::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use sts_agent::app::TraceAgent;
use sts_agent::encode::compress::Gzip;
use sts_agent::sources::trace_intake::Peer;
use sts_agent::transport::http_server::parse_head;

fn cpu_secs() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// A v0.4 body: traces of 5 spans each.
fn payload(spans: usize, seed: u64) -> Vec<u8> {
    let s = |v: &str| Value::from(v);
    let mut traces = Vec::new();
    let mut id = seed * 1_000_000 + 1;
    for t in 0..spans.div_ceil(5) {
        let trace_id = seed * 1_000_000 + t as u64 + 1;
        let mut trace = Vec::new();
        for k in 0..5.min(spans - t * 5) {
            id += 1;
            let meta = vec![
                (s("http.method"), s("GET")),
                (s("http.url"), s("https://shop.example.com/api/v1/cart/items?id=12345")),
                (s("http.status_code"), s("200")),
                (s("component"), s("flask")),
                (s("span.kind"), s(if k == 0 { "server" } else { "client" })),
                (s("runtime-id"), s("7d2236c4b3a44d46af238a50e659bdd9")),
                (s("language"), s("python")),
                (s("db.instance"), s("orders")),
            ];
            let metrics = vec![
                (s("_sampling_priority_v1"), Value::F64(1.0)),
                (s("_dd.top_level"), Value::F64(1.0)),
                (s("process_id"), Value::F64(4242.0)),
            ];
            trace.push(Value::Map(vec![
                (s("service"), s(if k == 0 { "shop" } else { "postgres" })),
                (s("name"), s(if k == 0 { "flask.request" } else { "postgres.query" })),
                (s("resource"), s("SELECT * FROM items WHERE cart_id = ?")),
                (s("trace_id"), Value::from(trace_id)),
                (s("span_id"), Value::from(id)),
                (s("parent_id"), Value::from(if k == 0 { 0 } else { id - k as u64 })),
                (s("start"), Value::from(1_700_000_000_000_000_000i64 + id as i64 * 1000)),
                (s("duration"), Value::from(150_000i64)),
                (s("error"), Value::from(0)),
                (s("type"), s(if k == 0 { "web" } else { "sql" })),
                (s("meta"), Value::Map(meta)),
                (s("metrics"), Value::Map(metrics)),
            ]));
        }
        traces.push(Value::Array(trace));
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &Value::Array(traces)).unwrap();
    out
}

/// Realistic queries with literals (ORM and hand-written), varied by `id`.
fn sql_query(id: u64) -> String {
    match id % 6 {
        0 => format!("SELECT * FROM users WHERE id = {id} AND email = 'user{id}@example.com'"),
        1 => format!(
            "SELECT o.id, o.total, o.created_at FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE c.id IN ({id}, {}, {}) AND o.status = 'paid' ORDER BY o.created_at DESC LIMIT 20 OFFSET 40",
            id + 1,
            id + 2
        ),
        2 => format!(
            "INSERT INTO events (user_id, kind, payload, at) VALUES ({id}, 'click', '{{\"x\": {id}}}', \
             '2024-01-01 00:00:{:02}')",
            id % 60
        ),
        3 => format!("UPDATE carts SET quantity = {}, price = 19.99, note = NULL WHERE cart_id = {id}", id % 7),
        4 => format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE expires_at > $1 AND user_agent LIKE '%Firefox%' /* {id} */"
        ),
        _ => format!("DELETE FROM tokens WHERE token = 'a1b2c3d4{id:08x}' AND revoked = TRUE"),
    }
}

/// A v0.4 body of `spans` spans of type `typ` (traces of 5), each with an SQL resource with
/// literals and the meta a database client span carries.
fn sql_payload(spans: usize, seed: u64, typ: &str) -> Vec<u8> {
    let s = |v: &str| Value::from(v);
    let mut traces = Vec::new();
    let mut id = seed * 1_000_000 + 1;
    for t in 0..spans.div_ceil(5) {
        let trace_id = seed * 1_000_000 + t as u64 + 1;
        let mut trace = Vec::new();
        for k in 0..5.min(spans - t * 5) {
            id += 1;
            let meta = vec![
                (s("component"), s("psycopg")),
                (s("span.kind"), s("client")),
                (s("db.system"), s("postgresql")),
                (s("db.user"), s("shop")),
                (s("db.instance"), s("orders")),
                (s("out.host"), s("db.internal")),
            ];
            trace.push(Value::Map(vec![
                (s("service"), s("postgres")),
                (s("name"), s("postgres.query")),
                (s("resource"), Value::from(sql_query(id))),
                (s("trace_id"), Value::from(trace_id)),
                (s("span_id"), Value::from(id)),
                (s("parent_id"), Value::from(if k == 0 { 0 } else { id - k as u64 })),
                (s("start"), Value::from(1_700_000_000_000_000_000i64 + id as i64 * 1000)),
                (s("duration"), Value::from(150_000i64)),
                (s("error"), Value::from(0)),
                (s("type"), s(typ)),
                (s("meta"), Value::Map(meta)),
            ]));
        }
        traces.push(Value::Array(trace));
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &Value::Array(traces)).unwrap();
    out
}

/// The SQL-heavy payload typed `sql` (obfuscated) and `db` (not): µs per span of each, and the
/// obfuscation function alone over the same queries.
fn sql_spans(c: &mut Criterion) {
    let spans: usize = std::env::var("BENCH_SPANS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let bodies = [("sql", sql_payload(spans, 1, "sql")), ("db", sql_payload(spans, 1, "db"))];
    let heads: Vec<_> = bodies
        .iter()
        .map(|(_, body)| {
            let h = format!(
                "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            parse_head(h.as_bytes(), 1 << 30).unwrap().unwrap()
        })
        .collect();
    let mut agent = TraceAgent::new(false);
    let (mut reply, mut out, mut zipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut gzip = Gzip::default();
    let peer = Peer { pid: None, unix: false, loopback: true };
    let mut ours = |agent: &mut TraceAgent, i: usize| {
        reply.clear();
        let st = agent.handle(
            &heads[i],
            &bodies[i].1,
            peer,
            &mut reply,
            Instant::now(),
            1_700_000_000_000_000_000,
            "i-0abc",
            None,
        );
        assert_eq!(st.0, 200);
        agent.take_payload("i-0abc", &mut out);
        gzip.compress(&out, &mut zipped);
        zipped.len()
    };
    let queries: Vec<String> = (0..spans as u64).map(sql_query).collect();
    let mut ob = sts_agent::checks::obfuscate::SqlObfuscator::default();
    let mut obfuscate_all = || queries.iter().map(|q| ob.obfuscate(q).map_or(0, |o| o.len())).sum::<usize>();
    let mut g = c.benchmark_group("sql_spans");
    g.sample_size(20);
    g.bench_function("ours_sql_typed_obfuscated", |b| b.iter(|| black_box(ours(&mut agent, 0))));
    g.bench_function("ours_db_typed_not_obfuscated", |b| b.iter(|| black_box(ours(&mut agent, 1))));
    g.bench_function("sql_obfuscate_function_only", |b| b.iter(|| black_box(obfuscate_all())));
    g.finish();

    let rounds = 200;
    let (mut sql, mut db, mut func) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        let t = cpu_secs();
        black_box(ours(&mut agent, 0));
        sql += cpu_secs() - t;
        let t = cpu_secs();
        black_box(ours(&mut agent, 1));
        db += cpu_secs() - t;
        let t = cpu_secs();
        black_box(obfuscate_all());
        func += cpu_secs() - t;
    }
    let per = |secs: f64| secs * 1e6 / (rounds * spans) as f64;
    println!(
        "SQL spans ({spans} spans, {} B msgpack): {:.3} µs CPU per span typed sql (obfuscated) vs {:.3} µs typed db \
         (not obfuscated): obfuscation adds {:.3} µs per span; the obfuscation function alone {:.3} µs per query",
        bodies[0].1.len(),
        per(sql),
        per(db),
        per(sql) - per(db),
        per(func)
    );
}

fn trace_path(c: &mut Criterion) {
    let spans: usize = std::env::var("BENCH_SPANS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let body = payload(spans, 1);
    let head = format!(
        "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let head = parse_head(head.as_bytes(), 1 << 30).unwrap().unwrap();
    let mut agent = TraceAgent::new(false);
    let (mut reply, mut out, mut zipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut gzip = Gzip::default();
    let peer = Peer { pid: None, unix: false, loopback: true };
    let mut ours = |agent: &mut TraceAgent| {
        reply.clear();
        let st =
            agent.handle(&head, &body, peer, &mut reply, Instant::now(), 1_700_000_000_000_000_000, "i-0abc", None);
        assert_eq!(st.0, 200);
        agent.take_payload("i-0abc", &mut out);
        gzip.compress(&out, &mut zipped);
        zipped.len()
    };
    let baseline = |body: &[u8]| rmpv::decode::read_value(&mut &body[..]).unwrap();
    // OTLP/HTTP: the Python SDK's captured export (4 spans) repeated to the same span count, as
    // one request on /v1/traces (repeated `resource_spans`).
    let otlp_body = include_bytes!("../tests/fixtures/otlp/python-sdk-1.45.2.pb").repeat(spans.div_ceil(4));
    let otlp_head = format!(
        "POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        otlp_body.len()
    );
    let otlp_head = parse_head(otlp_head.as_bytes(), 1 << 30).unwrap().unwrap();
    let (mut otlp_reply, mut otlp_out, mut otlp_zipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut otlp_gzip = Gzip::default();
    let mut otlp = |agent: &mut TraceAgent| {
        otlp_reply.clear();
        let st = agent.otlp(
            &otlp_head,
            &otlp_body,
            peer,
            &mut otlp_reply,
            Instant::now(),
            1_700_000_000_000_000_000,
            "i-0abc",
            None,
        );
        assert_eq!(st.0, 200);
        agent.take_payload("i-0abc", &mut otlp_out);
        otlp_gzip.compress(&otlp_out, &mut otlp_zipped);
        otlp_zipped.len()
    };

    let mut g = c.benchmark_group("trace_path");
    g.sample_size(20);
    g.bench_function("baseline_rmpv_decode_only", |b| b.iter(|| black_box(baseline(&body))));
    g.bench_function("ours_decode_interpret_encode_gzip", |b| b.iter(|| black_box(ours(&mut agent))));
    g.bench_function("ours_otlp_protobuf_decode_interpret_encode_gzip", |b| b.iter(|| black_box(otlp(&mut agent))));
    g.finish();

    let rounds = 200;
    let (mut base, mut full) = (0.0, 0.0);
    let mut zipped_len = 0;
    for _ in 0..rounds {
        let t = cpu_secs();
        black_box(baseline(&body));
        base += cpu_secs() - t;
        let t = cpu_secs();
        zipped_len = black_box(ours(&mut agent));
        full += cpu_secs() - t;
    }
    let per = |secs: f64| secs * 1e6 / (rounds * spans) as f64;
    println!(
        "trace path ({spans} spans, {} B msgpack → {zipped_len} B gzip protobuf): {:.3} µs CPU per span \
         (decode + interpret + encode + gzip) vs rmpv decode only {:.3} µs per span: ratio {:.2}",
        body.len(),
        per(full),
        per(base),
        full / base
    );
}

/// A sink that answers 202 to every request (keep-alive), counting bodies.
fn sink() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    port
}

fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut b = [0u8; 65536];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&b[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&b[..n]),
            }
        }
        buf.drain(..end + 4 + len);
        if s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}").is_err() {
            return;
        }
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = &st[st.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn agent_under_load(_c: &mut Criterion) {
    let secs: u64 = std::env::var("BENCH_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let sink_port = sink();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_sts-agent"))
        .env_clear()
        .env("STS_STS_URL", format!("http://127.0.0.1:{sink_port}/stsAgent"))
        .env("STS_API_KEY", "bench-key")
        .env("STS_HOSTNAME", "bench-host")
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port.to_string())
        // No DogStatsD: UDP 8125 may be taken by another agent.
        .env("STS_DOGSTATSD_PORT", "0")
        .env("STS_PROCESS_AGENT_ENABLED", "disabled")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let t = Instant::now();
    let mut conn = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    // 200 spans every 100 ms: 2,000 spans/s, each payload different.
    let payloads: Vec<Vec<u8>> = (0..50).map(|i| payload(200, i + 2)).collect();
    let ticks0 = cpu_ticks(pid);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut resp = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(secs) {
        let body = &payloads[(sent as usize) % payloads.len()];
        let head = format!(
            "PUT /v0.4/traces HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body).unwrap();
        let n = conn.read(&mut resp).unwrap();
        assert!(resp[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&resp[..n]));
        sent += 1;
        let next = Duration::from_millis(100 * sent);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks0;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let (hwm, rss) = (status_kib(pid, "VmHWM:"), status_kib(pid, "VmRSS:"));
    let _ = agent.kill();
    let _ = agent.wait();
    let spans = sent * 200;
    println!(
        "agent under load: {spans} spans in {elapsed:.1} s ({:.0} spans/s): CPU {:.2}% of a core, {:.2} µs per span all in; \
         peak RSS {:.1} MiB, RSS at the end {:.1} MiB",
        spans as f64 / elapsed,
        ticks as f64 / hz / elapsed * 100.0,
        ticks as f64 / hz * 1e6 / spans as f64,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = trace_path, sql_spans, agent_under_load
}
criterion_main!(benches);
