//! OpenTelemetry intake end to end with real SDKs: Python `opentelemetry-sdk` with
//! `opentelemetry-exporter-otlp-proto-http` (default settings, then gzip) and Node
//! `@opentelemetry/sdk-trace-node` with the OTLP protobuf and JSON exporters send to the agent's
//! OTLP/HTTP receiver (`/v1/traces`); StackState's `/open-telemetry` route gets a request built
//! with the SDK's protobuf classes, over TCP and the Unix socket. Every span is checked where it
//! arrives: a real TLS receiver, decoded with an independent decoder (prost structs, flate2).
//!
//! The SDKs are installed (pinned) under `target/` when missing; without python3, node or the
//! package registries the tests fail, they do not skip.

mod common;
use common::trace_proto::{self, Span, TracePayload};
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "otlp-test-key-0123456789";
const HOST: &str = "otlp-host";
const PY_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/otel_app.py");
const JS_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/otel_app.js");
const PYDEPS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/otel-py");
const NODEDEPS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/otel-node");
/// Pinned (also installed by `.ci/run`).
const PY_PACKAGES: &[&str] = &["opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp-proto-http==1.45.2"];
const NODE_PACKAGES: &[&str] = &[
    "@opentelemetry/api@1.9.0",
    "@opentelemetry/sdk-trace-node@2.0.1",
    "@opentelemetry/resources@2.0.1",
    "@opentelemetry/exporter-trace-otlp-proto@0.202.0",
    "@opentelemetry/exporter-trace-otlp-http@0.202.0",
];

fn require_python_sdk() {
    let importable = || {
        Command::new("python3")
            .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http.trace_exporter"])
            .env("PYTHONPATH", PYDEPS)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return;
    }
    let st = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", PYDEPS])
        .args(PY_PACKAGES)
        .status()
        .expect("python3 -m pip");
    assert!(st.success() && importable(), "could not install {PY_PACKAGES:?} from PyPI into {PYDEPS}");
}

fn require_node_sdk() {
    let modules = format!("{NODEDEPS}/node_modules");
    let loadable = || {
        Command::new("node")
            .args(["-e", "for (const m of ['@opentelemetry/sdk-trace-node', '@opentelemetry/resources', '@opentelemetry/exporter-trace-otlp-proto', '@opentelemetry/exporter-trace-otlp-http']) require(m)"])
            .env("NODE_PATH", &modules)
            .stderr(Stdio::null())
            .status()
            .expect("node is required for this test (Node.js 18 or later)")
            .success()
    };
    if loadable() {
        return;
    }
    std::fs::create_dir_all(NODEDEPS).unwrap();
    let st = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix", NODEDEPS])
        .args(NODE_PACKAGES)
        .status()
        .expect("npm is required for this test");
    assert!(st.success() && loadable(), "could not install {NODE_PACKAGES:?} from npm into {NODEDEPS}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "nothing listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent under test, killed on drop (a failing assertion leaves nothing running).
struct TestAgent {
    child: Option<Child>,
    port: u16,
    otlp_port: u16,
    sock: std::path::PathBuf,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.sock);
    }
}

fn start_agent(rx: &Receiver, tag: &str, extra: &[(&str, &str)]) -> TestAgent {
    let (port, otlp_port) = (free_port(), free_port());
    let sock = std::env::temp_dir().join(format!("sts-test-{}-{tag}.sock", std::process::id()));
    let url = rx.url("/stsAgent");
    let (port_s, otlp_s) = (port.to_string(), otlp_port.to_string());
    let sock_s = sock.to_str().unwrap().to_string();
    let mut env = vec![
        ("STS_STS_URL", url.as_str()),
        ("STS_API_KEY", KEY),
        ("STS_HOSTNAME", HOST),
        ("STS_SKIP_SSL_VALIDATION", "true"),
        ("STS_APM_RECEIVER_PORT", &port_s),
        ("STS_APM_RECEIVER_SOCKET", &sock_s),
        ("STS_OTLP_ENABLED", "true"),
        ("STS_OTLP_HTTP_PORT", &otlp_s),
        ("STS_PROCESS_AGENT_ENABLED", "disabled"),
        ("STS_NETWORK_TRACING_ENABLED", "false"),
    ];
    env.extend_from_slice(extra);
    let child = spawn_agent(&[], &env);
    let a = TestAgent { child: Some(child), port, otlp_port, sock };
    wait_for_port(port);
    wait_for_port(otlp_port);
    a
}

/// SIGTERM (which flushes what is pending), then the payloads the receiver decoded.
fn stop_and_collect(a: &mut TestAgent, rx: &Receiver) -> Vec<TracePayload> {
    let child = a.child.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    rx.requests()
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v0.2/traces")
        .map(|r| {
            assert_eq!(r.header("sts-api-key"), Some(KEY));
            trace_proto::decode(&r.body)
        })
        .collect()
}

/// One HTTP/1.1 request; the reply's status, content type and body.
fn post(s: &mut (impl Read + Write), path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let field = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let len: usize = field("content-length").map_or(0, |v| v.parse().unwrap());
            while buf.len() < end + 4 + len {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&b[..n]);
            }
            let status = head[9..12].parse().unwrap();
            return (status, field("content-type").unwrap_or_default(), buf[end + 4..end + 4 + len].to_vec());
        }
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed without a response");
        buf.extend_from_slice(&b[..n]);
    }
}

fn tcp(port: u16) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn status_json(port: u16) -> serde_json::Value {
    let mut s = tcp(port);
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Runs an instrumented app to its end; the trace ids it printed.
fn run_app(mut cmd: Command, what: &str) -> Vec<String> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut ids = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        ids.push(line.unwrap().trim().to_string());
    }
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {err}");
    assert!(!err.to_lowercase().contains("failed") && !err.to_lowercase().contains("error"), "{what}: {err}");
    ids
}

#[test]
fn python_and_node_sdks_reach_the_receiver_with_the_sts_interpretation() {
    require_python_sdk();
    require_node_sdk();
    let rx = Receiver::start(true, vec![202]);
    let mut agent = start_agent(&rx, "sdks", &[]);
    let endpoint = format!("http://127.0.0.1:{}", agent.otlp_port);
    const N: usize = 6;
    let py = |service: &str, gzip: bool| {
        let mut c = Command::new("python3");
        c.args([PY_APP, "sdk", &N.to_string()])
            .env("PYTHONPATH", PYDEPS)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_SERVICE_NAME", service);
        if gzip {
            c.env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
        }
        c
    };
    let js = |service: &str, exporter: &str| {
        let mut c = Command::new("node");
        c.args([JS_APP, exporter, &N.to_string()])
            .env("NODE_PATH", format!("{NODEDEPS}/node_modules"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_SERVICE_NAME", service);
        c
    };
    let apps = [
        ("py-default", run_app(py("py-default", false), "python, default settings")),
        ("py-gzip", run_app(py("py-gzip", true), "python, gzip")),
        ("js-proto", run_app(js("js-proto", "proto"), "node, protobuf exporter")),
        ("js-json", run_app(js("js-json", "json"), "node, JSON exporter")),
    ];
    let status = status_json(agent.port);
    assert_eq!(
        status["trace_intake"]["opentelemetry"]["otlp_requests"].as_u64().map(|n| n >= 4),
        Some(true),
        "{status}"
    );
    assert_eq!(status["trace_intake"]["opentelemetry"]["otlp_rejected_spans"], 0, "{status}");
    let payloads = stop_and_collect(&mut agent, &rx);
    assert!(payloads.iter().all(|p| p.host_name == HOST));
    // The SQL literal the apps put in their statements appears nowhere in what was sent.
    let sent: Vec<u8> = rx
        .requests()
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v0.2/traces")
        .flat_map(|r| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut raw).unwrap();
            raw
        })
        .collect();
    assert!(sent.windows(b"SELECT".len()).any(|w| w == b"SELECT"), "the statements were sent");
    assert!(!sent.windows(b"item-secret".len()).any(|w| w == b"item-secret"), "a SQL literal reached the receiver");
    let mut by_trace: HashMap<u64, Vec<&Span>> = HashMap::new();
    for t in payloads.iter().flat_map(|p| &p.traces) {
        by_trace.entry(t.trace_id).or_default().extend(t.spans.iter());
    }
    for (service, ids) in &apps {
        assert_eq!(ids.len(), N, "{service}: trace ids printed");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(id.len(), 32, "{service}: {id}");
            // The Datadog id: the last 8 bytes of the OTLP trace id.
            let trace_id = u64::from_str_radix(&id[16..], 16).unwrap();
            let spans = by_trace.get(&trace_id).unwrap_or_else(|| panic!("{service}: trace {id} did not arrive"));
            assert_eq!(spans.len(), 2, "{service}: {id}: {spans:#?}");
            let root = spans.iter().find(|s| s.parent_id == 0).expect("a root span");
            let child = spans.iter().find(|s| s.parent_id == root.span_id).expect("its child");
            for s in [root, child] {
                assert_eq!(s.service, *service);
                assert_eq!(s.trace_id, trace_id);
                assert!(s.span_id != 0 && s.start > 1_700_000_000_000_000_000 && s.duration > 0, "{s:?}");
                // The STS interpretation.
                assert_eq!(s.meta["span.serviceName"], *service, "{s:?}");
                assert_eq!(s.meta["span.serviceURN"], format!("urn:service:/{service}"));
                assert_eq!(s.meta["service.name"], *service, "resource attributes are meta");
                assert!(s.meta["instrumentation_library"].starts_with("otel_app"), "{s:?}");
            }
            assert_eq!(
                (root.name.as_str(), root.resource.as_str(), root.r#type.as_str()),
                ("GET /items/{id}", "GET /items/{id}", "web")
            );
            assert_eq!(root.meta["span.kind"], "server");
            assert_eq!(root.meta["http.status_code"], "200");
            assert_eq!(root.error, i32::from(i == 0), "{service}: the first root is an error");
            if i == 0 {
                assert_eq!(root.meta["error.msg"], "boom");
            }
            assert_eq!((child.name.as_str(), child.r#type.as_str()), ("SELECT items", "sql"));
            // The statement is the resource, obfuscated (`sql.query` too); the raw statement is
            // not forwarded (checked on the payloads' bytes below).
            assert_eq!(child.resource, "SELECT * FROM items WHERE id = ?", "{child:?}");
            assert_eq!(child.meta.get("sql.query").map(String::as_str), Some("SELECT * FROM items WHERE id = ?"));
            assert!(!child.meta.contains_key("db.statement"), "{child:?}");
            assert_eq!(child.meta["span.kind"], "client");
            assert_eq!(child.meta["db.rows"], i.to_string());
            assert_eq!(child.meta["ratio"], "0.5");
            assert_eq!(child.error, 0);
        }
    }
}

#[test]
fn the_open_telemetry_route_answers_as_stackstate_does() {
    require_python_sdk();
    let dir = TempDir::new("otel-route");
    let req_path = dir.0.join("request.pb");
    let st = Command::new("python3")
        .args([PY_APP, "stackstate-request", req_path.to_str().unwrap()])
        .env("PYTHONPATH", PYDEPS)
        .status()
        .unwrap();
    assert!(st.success());
    let body = std::fs::read(&req_path).unwrap();
    let rx = Receiver::start(true, vec![202]);
    let mut agent = start_agent(&rx, "otel", &[]);
    let pb = [("Content-Type", "application/x-protobuf")];
    let mut s = tcp(agent.port);
    assert_eq!(post(&mut s, "/open-telemetry", &pb, &body), (200, "text/plain".into(), b"OK\n".to_vec()));
    // Over the Unix socket too.
    let mut u = std::os::unix::net::UnixStream::connect(&agent.sock).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(post(&mut u, "/open-telemetry", &pb, &body).0, 200);
    // Any other type: 415 with the original's text.
    let (code, _, text) = post(&mut s, "/open-telemetry", &[("Content-Type", "application/json")], b"{}");
    assert_eq!(code, 415);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with(
            "unsupported media type: \"application/json\", OpenTelemetry only supports application/x-protobuf"
        ),
        "{text}"
    );
    // Undecodable, and gzip (which the route does not take): an empty 200, counted.
    assert_eq!(post(&mut s, "/open-telemetry", &pb, b"\x0a\xff\xff"), (200, "text/plain".into(), Vec::new()));
    let gz = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")];
    assert_eq!(post(&mut s, "/open-telemetry", &gz, &gzip(&body)).2, Vec::<u8>::new());
    let status = status_json(agent.port);
    assert_eq!(status["trace_intake"]["opentelemetry"]["open_telemetry_requests"], 5, "{status}");
    assert_eq!(status["trace_intake"]["rejected"]["decode"], 2, "{status}");
    // Not a route of the trace intake.
    assert_eq!(post(&mut s, "/v1/traces", &pb, &body).0, 404);

    let payloads = stop_and_collect(&mut agent, &rx);
    let spans: Vec<&Span> = payloads.iter().flat_map(|p| &p.traces).flat_map(|t| &t.spans).collect();
    // The id hash of the spec (Go's []rune decoding of the binary ids).
    let lambda: Vec<_> = spans.iter().filter(|s| s.span_id == 25828942560).collect();
    assert_eq!(lambda.len(), 2, "one lambda span per accepted request: {spans:#?}");
    let s3: Vec<_> = spans.iter().filter(|s| s.meta.contains_key("aws.request.bucket")).collect();
    assert_eq!(s3.len(), 2);
    for s in lambda.iter().chain(&s3) {
        assert_eq!(s.trace_id, 60782875);
        // The §5.3 interpreters' common output (`AwsSpanBuilder`).
        assert_eq!((s.r#type.as_str(), s.meta["service"].as_str()), ("aws", s.service.as_str()), "{s:?}");
        assert_eq!(s.meta["span.serviceName"], s.name, "{s:?}");
        assert_eq!(s.meta["span.serviceType"], "open-telemetry", "{s:?}");
        assert_eq!(s.meta["source"], "open-telemetry", "{s:?}");
        assert_eq!(s.meta["sts.origin"], "open-telemetry", "{s:?}");
        assert_eq!(s.meta["aws.account.id"], "123456789012");
        assert_eq!(s.start, 1_700_000_000_000_000_000 + if s.span_id == 25828942560 { 0 } else { 1_000_000 });
    }
    const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:orders";
    for l in &lambda {
        // `openTelemetryLambdaEntry`: the function (ARN part 6), the ARN as the identifier.
        assert_eq!(
            (l.name.as_str(), l.service.as_str(), l.resource.as_str()),
            ("Lambda: orders", "aws.lambda", "aws.lambda")
        );
        assert_eq!(l.meta["span.kind"], "producer");
        assert_eq!(l.meta["span.serviceURN"], format!("urn:service:/{}", ARN.to_lowercase()));
        assert_eq!(l.meta["sts.service.identifiers"], ARN);
        assert!(!l.meta.contains_key("span.errorClass"), "{l:?}");
        assert_eq!(l.parent_id, 0, "aws-lambda spans have no parent");
        assert_eq!(l.meta["instrumentation_library"], "@opentelemetry/instrumentation-aws-lambda");
        assert_eq!(l.meta["faas.coldstart"], "true");
        assert_eq!(l.duration, 9_000_000);
    }
    for s in &s3 {
        // `openTelemetryS3`: the bucket.
        assert_eq!(
            (s.name.as_str(), s.service.as_str(), s.resource.as_str()),
            ("S3: orders-bucket", "aws.s3", "aws.s3")
        );
        assert_eq!(s.meta["span.kind"], "consumer");
        assert_eq!(s.meta["span.serviceURN"], "urn:service:/arn:aws:s3:::orders-bucket");
        assert_eq!(s.meta["sts.service.identifiers"], "arn:aws:s3:::orders-bucket");
        assert_eq!(s.meta["span.errorClass"], "4xx");
        // The http child merged into it: its status code is the span's error.
        assert_eq!(s.error, 404);
        assert_eq!(s.metrics.get("http.status_code"), Some(&404.0));
        assert_eq!(s.meta["http.status_code"], "404");
        assert_eq!(s.meta["retries"], "2");
        assert_eq!(s.meta["ratio"], "1.500000", "Go's %f");
        assert_eq!(s.parent_id, 25828942560);
        assert_eq!(s.meta["instrumentation_library"], "@opentelemetry/instrumentation-aws-sdk");
    }
    assert!(
        !spans.iter().any(|s| s.meta.contains_key("http.url") && !s.meta.contains_key("aws.request.bucket")),
        "the merged http span is not forwarded"
    );
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// `ExportTraceServiceResponse` with its `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected_spans: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

#[test]
fn otlp_http_replies_gzip_and_limits() {
    use prost::Message;
    let rx = Receiver::start(true, vec![202]);
    let mut agent = start_agent(&rx, "otlp", &[("STS_APM_MAX_PAYLOAD_SIZE", "1048576")]);
    let mut s = tcp(agent.otlp_port);
    let json = [("Content-Type", "application/json")];
    let json_gz = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")];
    let pb = [("Content-Type", "application/x-protobuf")];
    let pb_gz = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")];
    let good = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl-svc"}}]},
        "scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
        "name":"hello","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"}]}]}]}"#;
    assert_eq!(
        post(&mut s, "/v1/traces", &json_gz, &gzip(good.as_bytes())),
        (200, "application/json".into(), b"{}".to_vec())
    );
    // A span whose trace id is zero is dropped: partial success.
    let zero = good.replace("5B8EFFF798038103D269B633813FC60C", "00000000000000000000000000000000");
    let (code, ctype, reply) = post(&mut s, "/v1/traces", &json, zero.as_bytes());
    assert_eq!((code, ctype.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    // Undecodable: 400 with a google.rpc.Status in the request's type.
    let (code, ctype, reply) = post(&mut s, "/v1/traces", &pb, b"\x0a\x05\x12");
    assert_eq!((code, ctype.as_str()), (400, "application/x-protobuf"));
    let st = RpcStatus::decode(&reply[..]).unwrap();
    assert_eq!(st.code, 3, "INVALID_ARGUMENT");
    assert!(st.message.contains("protobuf"), "{st:?}");
    let (code, _, reply) = post(&mut s, "/v1/traces", &json, b"{\"resourceSpans\":[{");
    assert_eq!(code, 400);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&reply).unwrap()["code"], 3);
    let (code, _, _) = post(&mut s, "/v1/traces", &pb_gz, b"\x1f\x8b\x08\x00garbage");
    assert_eq!(code, 400);
    // A protobuf request that decodes: an empty ExportTraceServiceResponse.
    let (code, ctype, reply) = post(&mut s, "/v1/traces", &pb, b"");
    assert_eq!((code, ctype.as_str(), reply.len()), (200, "application/x-protobuf", 0));
    assert_eq!(ExportResponse::decode(&reply[..]).unwrap().partial_success, None);
    // A zip bomb: 64 MiB of zeros in ~64 KiB inflates past the 1 MiB limit: 413, and the agent
    // stays small.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 100_000);
    let (code, _, reply) = post(&mut s, "/v1/traces", &pb_gz, &bomb);
    assert_eq!(code, 413);
    assert_eq!(RpcStatus::decode(&reply[..]).unwrap().code, 8, "RESOURCE_EXHAUSTED");
    let pid = agent.child.as_ref().unwrap().id();
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        .unwrap();
    assert!(rss_kb < 48 * 1024, "peak RSS {rss_kb} kB after a zip bomb");
    // Other types, encodings and paths.
    assert_eq!(post(&mut s, "/v1/traces", &[("Content-Type", "text/plain")], b"x").0, 415);
    assert_eq!(
        post(&mut s, "/v1/traces", &[("Content-Type", "application/json"), ("Content-Encoding", "br")], b"x").0,
        415
    );
    assert_eq!(post(&mut s, "/v1/logs", &json, b"{}").0, 404);
    // Only POST.
    let mut g = tcp(agent.otlp_port);
    g.write_all(b"GET /v1/traces HTTP/1.1\r\nHost: agent\r\n\r\n").unwrap();
    let mut head = [0u8; 256];
    let n = g.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && head.contains("\r\nAllow: POST\r\n"), "{head}");
    // Past the body limit (1 MiB here): 413 naming the limit in bytes.
    let mut big = tcp(agent.otlp_port);
    big.write_all(
        b"POST /v1/traces HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
    )
    .unwrap();
    let mut reply = String::new();
    let _ = big.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 413 ") && reply.contains("limit of 1048576 bytes"), "{reply}");
    let status = status_json(agent.port);
    assert_eq!(status["trace_intake"]["opentelemetry"]["otlp_rejected_spans"], 1, "{status}");

    let payloads = stop_and_collect(&mut agent, &rx);
    let spans: Vec<&Span> = payloads.iter().flat_map(|p| &p.traces).flat_map(|t| &t.spans).collect();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let sp = spans[0];
    assert_eq!((sp.trace_id, sp.span_id, sp.parent_id), (0xd269b633813fc60c, 0xeee19b7ec3c1b174, 0));
    assert_eq!((sp.service.as_str(), sp.name.as_str(), sp.r#type.as_str()), ("curl-svc", "hello", "web"));
    assert_eq!(sp.meta["span.serviceName"], "curl-svc");
    assert_eq!(sp.duration, 1_000_000);
}

// Protobuf by hand (the wire format; independent of the agent's reader).
fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn pb_len(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    pb_varint(out, field << 3 | 2);
    pb_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}
fn pb_kv(out: &mut Vec<u8>, field: u64, key: &str, value: &str) {
    let mut any = Vec::new();
    pb_len(&mut any, 1, value.as_bytes());
    let mut kv = Vec::new();
    pb_len(&mut kv, 1, key.as_bytes());
    pb_len(&mut kv, 2, &any);
    pb_len(out, field, &kv);
}

/// 12,000 spans of a resource with 30 attributes (3.9 MB): under the body limit, so accepted;
/// the spans carry the named resource attributes only (copying all 30 to every span made this
/// request decode past its limit: a 413, which OTLP clients do not retry).
#[test]
fn a_large_batch_of_a_resource_with_many_attributes_is_accepted() {
    use prost::Message;
    const SPANS: u64 = 12_000;
    let mut resource = Vec::new();
    let keys = [
        "service.name",
        "service.version",
        "service.namespace",
        "service.instance.id",
        "deployment.environment",
        "host.name",
        "host.arch",
        "host.id",
        "os.type",
        "os.description",
        "cloud.provider",
        "cloud.region",
        "cloud.account.id",
        "cloud.platform",
        "container.id",
        "k8s.pod.name",
        "k8s.namespace.name",
        "k8s.node.name",
        "telemetry.sdk.language",
        "telemetry.sdk.name",
        "telemetry.sdk.version",
        "process.pid",
        "process.executable.name",
        "process.executable.path",
        "process.command",
        "process.command_line",
        "process.runtime.name",
        "process.runtime.version",
        "process.runtime.description",
        "process.owner",
    ];
    assert_eq!(keys.len(), 30);
    for k in keys {
        let v = if k == "service.name" { "big-batch".to_string() } else { format!("value-of-{k}-0123456789") };
        pb_kv(&mut resource, 1, k, &v);
    }
    let mut scope = Vec::new();
    pb_len(&mut scope, 1, &[0x0a, 3, b'l', b'i', b'b']);
    for i in 1..=SPANS {
        let mut sp = Vec::new();
        let mut trace = [0u8; 16];
        trace[8..].copy_from_slice(&i.to_be_bytes());
        pb_len(&mut sp, 1, &trace);
        pb_len(&mut sp, 2, &(i << 8).to_be_bytes());
        pb_len(&mut sp, 5, b"GET /api/v1/items/{id}");
        sp.extend_from_slice(&[6 << 3, 2]);
        sp.push(7 << 3 | 1);
        sp.extend_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
        sp.push(8 << 3 | 1);
        sp.extend_from_slice(&1_700_000_000_001_000_000u64.to_le_bytes());
        pb_kv(&mut sp, 9, "http.method", "GET");
        pb_kv(&mut sp, 9, "http.route", "/api/v1/items/{id}");
        pb_kv(&mut sp, 9, "http.target", &format!("/api/v1/items/{i}?expand=details&page=1"));
        pb_kv(&mut sp, 9, "http.user_agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)");
        pb_kv(&mut sp, 9, "net.peer.ip", "10.0.12.34");
        pb_kv(&mut sp, 9, "http.scheme", "https");
        pb_len(&mut scope, 2, &sp);
    }
    let mut rs = Vec::new();
    pb_len(&mut rs, 1, &resource);
    pb_len(&mut rs, 2, &scope);
    let mut body = Vec::new();
    pb_len(&mut body, 1, &rs);
    assert!(body.len() > 3_800_000 && body.len() < 4 << 20, "{}", body.len());

    let rx = Receiver::start(true, vec![202]);
    let mut agent = start_agent(&rx, "bigbatch", &[]);
    let (code, _, reply) =
        post(&mut tcp(agent.otlp_port), "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body);
    assert_eq!(code, 200, "{:?}", RpcStatus::decode(&reply[..]));
    let rejected = ExportResponse::decode(&reply[..]).unwrap().partial_success.map_or(0, |p| p.rejected_spans);
    let payloads = stop_and_collect(&mut agent, &rx);
    let spans: Vec<&Span> = payloads.iter().flat_map(|p| &p.traces).flat_map(|t| &t.spans).collect();
    assert_eq!(spans.len() as u64 + rejected as u64, SPANS, "every span arrived or was reported rejected");
    assert!(!spans.is_empty());
    for s in spans {
        assert_eq!(s.service, "big-batch");
        for k in
            ["service.version", "deployment.environment", "host.name", "cloud.region", "k8s.pod.name", "container.id"]
        {
            assert!(s.meta.contains_key(k), "{k}: {s:?}");
        }
        for k in ["telemetry.sdk.language", "process.pid", "process.command_line", "os.type"] {
            assert!(!s.meta.contains_key(k), "{k}: {s:?}");
        }
    }
}
