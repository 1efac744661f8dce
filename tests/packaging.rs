//! The ECS task definitions: the two files differ only in the cgroup host path, put `pidMode`
//! and `networkMode` at the task level, carry every variable of the StackState table with values
//! this agent accepts, and are accepted by the real AWS CLI (awscli from PyPI) against a local ECS
//! endpoint (moto's server), where a DAEMON service is created from each.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STANDARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ecs/stackstate-agent-v2-ecs.json");
const AMAZON_LINUX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ecs/stackstate-agent-v2-ecs-amazon-linux.json");
/// The StackState ECS table's parameters.
const STACKSTATE_TABLE: &[&str] = &[
    "STS_API_KEY",
    "STS_STS_URL",
    "STS_PROCESS_AGENT_URL",
    "STS_APM_URL",
    "STS_SKIP_SSL_VALIDATION",
    "STS_PROCESS_BLACKLIST_PATTERNS",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_CPU",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_READ",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_IO_WRITE",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD",
    "STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD",
    "STS_PROCESS_AGENT_ENABLED",
    "STS_APM_ENABLED",
    "STS_NETWORK_TRACING_ENABLED",
];

fn load(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_two_manifests_differ_only_in_the_cgroup_host_path() {
    let (mut a, b) = (load(STANDARD), load(AMAZON_LINUX));
    let cgroup = |v: &Value| -> String {
        let vols = v["volumes"].as_array().unwrap();
        vols.iter().find(|x| x["name"] == "cgroup").unwrap()["host"]["sourcePath"].as_str().unwrap().to_string()
    };
    assert_eq!(cgroup(&a), "/sys/fs/cgroup/");
    assert_eq!(cgroup(&b), "/cgroup/", "the original Amazon Linux AMI mounts cgroups under /cgroup");
    let vols = a["volumes"].as_array_mut().unwrap();
    let i = vols.iter().position(|x| x["name"] == "cgroup").unwrap();
    vols[i]["host"]["sourcePath"] = Value::from("/cgroup/");
    assert_eq!(a, b, "nothing else differs");
}

#[test]
fn the_manifest_is_shaped_as_ecs_and_the_agent_expect() {
    let t = load(STANDARD);
    assert_eq!((t["pidMode"].as_str(), t["networkMode"].as_str()), (Some("host"), Some("host")));
    assert_eq!(t["requiresCompatibilities"], serde_json::json!(["EC2"]));
    let c = &t["containerDefinitions"][0];
    assert!(c.get("pidMode").is_none() && c.get("networkMode").is_none(), "task-level fields only");
    assert!(c.get("privileged").is_none(), "least privilege: capabilities, not privileged");
    assert_eq!(c["linuxParameters"]["capabilities"]["add"], serde_json::json!(["SYS_ADMIN", "SYS_PTRACE", "NET_RAW"]));
    assert_eq!(c["linuxParameters"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // Traces (8126), the OTLP/HTTP receiver (4318) and DogStatsD (8125/udp).
    assert_eq!(
        c["portMappings"],
        serde_json::json!([
            {"containerPort": 8126, "hostPort": 8126, "protocol": "tcp"},
            {"containerPort": 4318, "hostPort": 4318, "protocol": "tcp"},
            {"containerPort": 8125, "hostPort": 8125, "protocol": "udp"}
        ])
    );
    // The container health check ECS runs (Datadog's documented values), exec form: the image
    // has no shell.
    assert_eq!(
        c["healthCheck"],
        serde_json::json!({"command": ["CMD", "/sts-agent", "health"], "interval": 30, "timeout": 5,
            "retries": 3, "startPeriod": 15})
    );
    let (res, hard) = (c["memoryReservation"].as_u64().unwrap(), c["memory"].as_u64().unwrap());
    assert!(res >= 16 && hard >= 2 * res && hard <= 128, "reservations from the measured budget: {res}/{hard} MiB");
    // Mounts: every one read-only, each backed by a host volume.
    let vols: HashMap<&str, &str> = t["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["host"]["sourcePath"].as_str().unwrap()))
        .collect();
    let mounts: HashMap<&str, &str> = c["mountPoints"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|m| assert_eq!(m["readOnly"], true, "{m}"))
        .map(|m| (m["containerPath"].as_str().unwrap(), vols[m["sourceVolume"].as_str().unwrap()]))
        .collect();
    assert_eq!(mounts["/host/proc"], "/proc/");
    assert_eq!(mounts["/host/sys/fs/cgroup"], "/sys/fs/cgroup/");
    assert_eq!(mounts["/var/run/docker.sock"], "/var/run/docker.sock");
    assert_eq!(mounts["/etc/passwd"], "/etc/passwd");

    // Every variable of the StackState table, plus the roots and non-local traffic; with the
    // placeholders filled in, this agent's configuration accepts every value.
    let env: HashMap<String, String> = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    for v in STACKSTATE_TABLE {
        assert!(env.contains_key(*v), "{v} missing from the manifest");
        assert!(sts_agent::config::VARS.iter().any(|d| d.name == *v), "{v} not a variable of this agent");
    }
    assert_eq!((env["HOST_PROC"].as_str(), env["HOST_SYS"].as_str()), ("/host/proc", "/host/sys"));
    assert_eq!(env["STS_APM_NON_LOCAL_TRAFFIC"], "true");
    assert_eq!((env["STS_OTLP_ENABLED"].as_str(), env["STS_OTLP_HTTP_PORT"].as_str()), ("true", "4318"));
    // Containers on the bridge (or awsvpc) reach DogStatsD at the host's address, not loopback.
    assert_eq!(env["STS_DOGSTATSD_NON_LOCAL_TRAFFIC"], "true");
    for (k, v) in &env {
        if v.starts_with('<') {
            assert!(
                ["STS_API_KEY", "STS_STS_URL", "STS_PROCESS_AGENT_URL", "STS_APM_URL"].contains(&k.as_str()),
                "{k}"
            );
        }
    }
    let filled: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| {
            let v = match v.as_str() {
                "<STS_API_KEY>" => "0123456789abcdef".to_string(),
                s if s.starts_with('<') => "https://stackstate.example.com/stsAgent".to_string(),
                _ => v.clone(),
            };
            // The roots exist only inside the task; here the machine's own stand in.
            let v = v.replace("/host/proc", "/proc").replace("/host/sys", "/sys");
            (k.clone(), v)
        })
        .collect();
    let cfg = sts_agent::config::Config::from_lookup(|k| filled.get(k).cloned().filter(|v| !v.is_empty()));
    assert!(cfg.is_ok(), "the manifest's values: {:?}", cfg.err().map(|e| e.to_string()));
}

/// awscli and moto's server: the machine's, else installed from PyPI into the target dir.
const PYDEPS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/pydeps-aws");

fn python(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.args(args)
        .env("PYTHONPATH", PYDEPS)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c
}

fn require_aws_tools() {
    let ok = || {
        python(&["-c", "import awscli, moto.server, flask"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if ok() {
        return;
    }
    let st = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", PYDEPS])
        .args(["awscli==1.45.11", "moto[server]==5.2.1"])
        .status()
        .expect("python3 -m pip");
    assert!(st.success() && ok(), "could not install awscli and moto from PyPI into {PYDEPS}");
}

#[test]
fn the_aws_cli_registers_both_and_creates_daemon_services() {
    require_aws_tools();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = python(&["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Kids(vec![server]);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "moto server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = |args: &[&str]| -> (bool, String) {
        let mut full = vec!["-m", "awscli", "--endpoint-url", &endpoint, "--output", "json"];
        full.extend_from_slice(args);
        let out = python(&full).output().unwrap();
        let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).to_string();
        (out.status.success(), text)
    };
    let (ok, text) = aws(&["ecs", "create-cluster", "--cluster-name", "sts"]);
    assert!(ok, "{text}");
    for (path, service) in [(STANDARD, "sts-agent"), (AMAZON_LINUX, "sts-agent-al1")] {
        let (ok, text) = aws(&["ecs", "register-task-definition", "--cli-input-json", &format!("file://{path}")]);
        assert!(ok, "{path}: {text}");
        let td: Value = serde_json::from_str(&text).unwrap();
        let td = &td["taskDefinition"];
        assert_eq!((td["pidMode"].as_str(), td["networkMode"].as_str()), (Some("host"), Some("host")));
        // The health check registers as written.
        let hc = &td["containerDefinitions"][0]["healthCheck"];
        assert_eq!(hc["command"], serde_json::json!(["CMD", "/sts-agent", "health"]), "{hc}");
        assert_eq!(
            (hc["interval"].as_u64(), hc["timeout"].as_u64(), hc["retries"].as_u64(), hc["startPeriod"].as_u64()),
            (Some(30), Some(5), Some(3), Some(15)),
            "{hc}"
        );
        let arn = td["taskDefinitionArn"].as_str().unwrap();
        let (ok, text) = aws(&[
            "ecs",
            "create-service",
            "--cluster",
            "sts",
            "--service-name",
            service,
            "--task-definition",
            arn,
            "--scheduling-strategy",
            "DAEMON",
            "--launch-type",
            "EC2",
        ]);
        assert!(ok, "{text}");
        let svc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(svc["service"]["schedulingStrategy"], "DAEMON");
        assert_eq!(svc["service"]["taskDefinition"], arn);
    }
    // The CLI really validates: pidMode misplaced inside the container definition is refused.
    let dir = TempDir::new("ecs");
    let mut bad = load(STANDARD);
    bad["containerDefinitions"][0]["pidMode"] = Value::from("host");
    let bad_path = dir.0.join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let (ok, text) =
        aws(&["ecs", "register-task-definition", "--cli-input-json", &format!("file://{}", bad_path.display())]);
    assert!(!ok && text.contains("Unknown parameter in containerDefinitions[0]: \"pidMode\""), "{text}");
}
