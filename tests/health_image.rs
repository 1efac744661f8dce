//! `sts-agent health` in the built image (packaging/Dockerfile's final stage: `FROM scratch`, the
//! static binary, no shell) under the real Docker engine, run as the ECS task definition runs it:
//! read-only root, every capability dropped but the three it adds, host PID and network
//! namespaces, the host's /proc and cgroups mounted read-only. `docker exec … /sts-agent health`
//! (what ECS's `healthCheck` runs) exits 0 with a healthy agent, 1 when the agent is stopped
//! (SIGSTOP) and 1 when the receiver has refused everything for longer than the retry horizon;
//! and Docker's own health-check runner, given the task's `healthCheck` as a `HEALTHCHECK`, marks
//! the container healthy, unhealthy when the agent is stopped, and healthy again. The container
//! runs with the task's environment (placeholders filled, fixed ports made free ones).
//!
//! It needs the static binary, which CI builds after the test suite (`packaging/build-static.sh`),
//! so it is ignored in the plain `cargo test` and run by .ci/run right after that build:
//! `cargo test --test health_image -- --ignored`.

mod common;
#[path = "support/docker_cli.rs"]
mod docker_cli;
use common::*;
use docker_cli::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/Dockerfile");
const TASK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ecs/stackstate-agent-v2-ecs.json");

/// The static binary: `STS_STATIC_BIN`, else where packaging/build-static.sh puts it.
fn static_binary() -> PathBuf {
    let path = match std::env::var_os("STS_STATIC_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")), PathBuf::from);
            target.join("x86_64-unknown-linux-musl/release/sts-agent")
        }
    };
    assert!(
        path.is_file(),
        "cannot run: no static binary at {} (run packaging/build-static.sh first, or set STS_STATIC_BIN)",
        path.display()
    );
    path
}

/// The image: packaging/Dockerfile's final stage, with the CA bundle taken from this machine
/// instead of the Debian stage (no registry here).
fn build_image(engine: &Engine, dir: &TempDir, healthcheck: Option<&str>) -> Image {
    let dockerfile = std::fs::read_to_string(DOCKERFILE).unwrap();
    // The final stage: the last `FROM scratch` (the ones before it pick the binary by TARGETARCH).
    let scratch = dockerfile.rfind("\nFROM scratch\n").expect("packaging/Dockerfile ends with a FROM scratch stage");
    let certs_line = "COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt";
    let bin_line = "COPY --from=bin /sts-agent /sts-agent";
    let stage = &dockerfile[scratch + 1..];
    assert!(
        stage.contains(certs_line) && stage.contains(bin_line),
        "packaging/Dockerfile's final stage changed: update this test"
    );
    let stage = stage
        .replace(certs_line, "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt")
        .replace(bin_line, "COPY sts-agent /sts-agent");
    let stage = match healthcheck {
        Some(line) => format!("{stage}\n{line}\n"),
        None => stage,
    };
    std::fs::write(dir.0.join("Dockerfile"), stage).unwrap();
    let bundle = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    assert!(bundle.is_file(), "cannot run: no CA bundle at {} (Debian's ca-certificates)", bundle.display());
    std::fs::copy(bundle, dir.0.join("ca-certificates.crt")).unwrap();
    std::fs::copy(static_binary(), dir.0.join("sts-agent")).unwrap();
    let name = format!("{}:latest", unique("agent-image"));
    let o = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &name])
        .arg(&dir.0)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker CLI");
    assert!(o.status.success(), "docker build: {}", String::from_utf8_lossy(&o.stderr));
    Image { engine: engine.clone(), name }
}

/// `docker run` arguments that apply the task definition's restrictions.
fn task_restrictions() -> Vec<String> {
    let t: Value = serde_json::from_str(&std::fs::read_to_string(TASK).unwrap()).unwrap();
    let c = &t["containerDefinitions"][0];
    let mut args = vec![
        format!("--pid={}", t["pidMode"].as_str().unwrap()),
        format!("--network={}", t["networkMode"].as_str().unwrap()),
    ];
    assert_eq!(c["readonlyRootFilesystem"], true);
    args.push("--read-only".into());
    for cap in c["linuxParameters"]["capabilities"]["drop"].as_array().unwrap() {
        args.push(format!("--cap-drop={}", cap.as_str().unwrap()));
    }
    for cap in c["linuxParameters"]["capabilities"]["add"].as_array().unwrap() {
        args.push(format!("--cap-add={}", cap.as_str().unwrap()));
    }
    // The host's /proc and cgroups, read-only, where the image expects them.
    args.push("-v=/proc:/host/proc:ro".into());
    args.push("-v=/sys/fs/cgroup:/host/sys/fs/cgroup:ro".into());
    args
}

/// Starts the agent's container sending to `receiver`, with the task definition's environment
/// (its placeholders filled with the receiver, its fixed host ports replaced by free ones: the
/// container shares this machine's network namespace with other tests); returns its name.
fn start_agent(engine: &Engine, image: &Image, receiver: &Receiver, horizon: u32, kids: &mut Containers) -> String {
    let name = unique("health");
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), format!("--name={name}")];
    args.extend(task_restrictions());
    let task: Value = serde_json::from_str(&std::fs::read_to_string(TASK).unwrap()).unwrap();
    let url = receiver.url("/stsAgent");
    for e in task["containerDefinitions"][0]["environment"].as_array().unwrap() {
        let (k, v) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
        let v = match k {
            "STS_API_KEY" => "0123456789abcdef".to_string(),
            "STS_STS_URL" | "STS_PROCESS_AGENT_URL" | "STS_APM_URL" => url.clone(),
            "STS_OTLP_HTTP_PORT" => free(),
            _ => {
                assert!(!v.starts_with('<'), "a placeholder this test does not fill: {k}={v}");
                v.to_string()
            }
        };
        args.push(format!("-e={k}={v}"));
    }
    for (k, v) in [
        ("STS_APM_RECEIVER_PORT", free()),
        ("STS_DOGSTATSD_PORT", free()),
        ("STS_EC2_METADATA_URL", "http://127.0.0.1:9".into()),
        ("STS_HEALTH_RETRY_HORIZON", horizon.to_string()),
    ] {
        args.push(format!("-e={k}={v}"));
    }
    args.push(image.name.clone());
    kids.1.push(name.clone());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    engine.ok(&refs);
    name
}

/// The task definition's `healthCheck` as a Dockerfile `HEALTHCHECK` (exec form, as ECS runs
/// it: the image has no shell), its interval and start period shortened to `interval_s` for the
/// test, its timeout kept and one retry.
fn task_healthcheck(interval_s: u32) -> String {
    let t: Value = serde_json::from_str(&std::fs::read_to_string(TASK).unwrap()).unwrap();
    let hc = &t["containerDefinitions"][0]["healthCheck"];
    let cmd: Vec<&str> = hc["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(cmd[0], "CMD", "exec form (no shell in the image): {cmd:?}");
    let argv = serde_json::to_string(&cmd[1..]).unwrap();
    format!(
        "HEALTHCHECK --interval={interval_s}s --timeout={}s --start-period={interval_s}s --retries=1 CMD {argv}",
        hc["timeout"].as_u64().unwrap()
    )
}

/// Docker's own verdict from its health-check runner: `healthy`, `unhealthy` or `starting`.
fn docker_health(engine: &Engine, name: &str) -> String {
    engine.ok(&["inspect", "-f", "{{.State.Health.Status}}", name])
}

fn wait_docker_health(engine: &Engine, name: &str, want: &str, within: Duration) {
    let t = Instant::now();
    loop {
        let got = docker_health(engine, name);
        if got == want {
            return;
        }
        assert!(
            t.elapsed() < within,
            "Docker's health check says {got}, not {want}, after {:?}; last probes:\n{}\nlogs:\n{}",
            t.elapsed(),
            engine.ok(&["inspect", "-f", "{{json .State.Health.Log}}", name]),
            logs(engine, name)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `docker exec <name> /sts-agent health`: `(exit code, output, how long)`.
fn health(engine: &Engine, name: &str) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let o = engine.run(&["exec", name, "/sts-agent", "health"]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code(), text, t.elapsed())
}

fn logs(engine: &Engine, name: &str) -> String {
    let o = engine.run(&["logs", "--tail", "30", name]);
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn wait_healthy(engine: &Engine, name: &str) -> String {
    let t = Instant::now();
    loop {
        let (code, out, _) = health(engine, name);
        if code == Some(0) {
            return out;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never healthy:\n{out}\nlogs:\n{}", logs(engine, name));
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs the static binary: .ci/run runs it after packaging/build-static.sh (cargo test --test health_image -- --ignored)"]
fn health_in_the_image_passes_then_fails_when_stopped_or_refused() {
    let engine = Engine::default();
    engine.require();
    let dir = TempDir::new("health-image");
    let image = build_image(&engine, &dir, None);
    let mut kids = Containers(engine.clone(), Vec::new());

    // Healthy: a receiver that accepts everything.
    let accepting = Receiver::start(false, vec![200]);
    let name = start_agent(&engine, &image, &accepting, 300, &mut kids);
    let report = wait_healthy(&engine, &name);
    assert!(report.contains("PASS check host: last ran"), "{report}");
    // The task's STS_APM_NON_LOCAL_TRAFFIC=true: every interface (the command asks loopback).
    assert!(report.contains("PASS trace-intake: listening on 0.0.0.0:"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    // The agent delivered, and health says so once it has.
    let t = Instant::now();
    loop {
        let (_, out, _) = health(&engine, &name);
        if out.contains("PASS endpoint series: delivered ") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{out}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Stopped: the health command's own deadline (1.5 s) fails it, well within ECS's 5 s timeout.
    let pid: i32 = engine.ok(&["inspect", "-f", "{{.State.Pid}}", &name]).parse().unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (code, out, took) = health(&engine, &name);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL loop: no answer from 127.0.0.1:"), "{out}");
    assert!(took < Duration::from_secs(5), "docker exec health took {took:?}");
    wait_healthy(&engine, &name);

    // A receiver that refuses everything: in backoff first, FAIL past the horizon (20 s here:
    // long enough that the in-backoff verdict is always seen first, on a loaded machine too).
    let horizon: u32 = 20;
    let horizon_time = Duration::from_secs(horizon.into());
    let refusing = Receiver::start(false, vec![503]);
    let name = start_agent(&engine, &image, &refusing, horizon, &mut kids);
    let t = Instant::now();
    while refusing.requests().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing sent; logs:\n{}", logs(&engine, &name));
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_refusal = Instant::now();
    // The receiver records a request before the agent has read the 503: poll for the verdict.
    let out = poll_health(&engine, &name, first_refusal + horizon_time, |code, out| {
        code == Some(0) && out.contains("PASS endpoint series: failing for ")
    });
    assert!(out.contains("in backoff") && out.contains("HTTP 503"), "{out}");
    let out = poll_health(&engine, &name, first_refusal + horizon_time + Duration::from_secs(30), |code, out| {
        code == Some(1) && out.contains("FAIL endpoint series: nothing delivered for ")
    });
    assert!(out.contains("HTTP 503") && out.contains(&format!("longer than the {horizon}s retry horizon")), "{out}");
}

/// Polls `docker exec … health` until `done(code, output)` or `deadline`; returns the output.
fn poll_health(engine: &Engine, name: &str, deadline: Instant, done: impl Fn(Option<i32>, &str) -> bool) -> String {
    loop {
        let (code, out, _) = health(engine, name);
        if done(code, &out) {
            return out;
        }
        assert!(Instant::now() < deadline, "not seen in time (exit {code:?}):\n{out}\nlogs:\n{}", logs(engine, name));
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
#[ignore = "needs the static binary: .ci/run runs it after packaging/build-static.sh (cargo test --test health_image -- --ignored)"]
fn dockers_own_health_check_runner_with_the_tasks_health_check_follows_the_agent() {
    let engine = Engine::default();
    engine.require();
    let dir = TempDir::new("health-image-hc");
    let image = build_image(&engine, &dir, Some(&task_healthcheck(2)));
    let mut kids = Containers(engine.clone(), Vec::new());
    let accepting = Receiver::start(false, vec![200]);
    let name = start_agent(&engine, &image, &accepting, 300, &mut kids);
    wait_docker_health(&engine, &name, "healthy", Duration::from_secs(60));

    // Stopped: Docker's next probe (the exec-form command, in the stopped container) fails within
    // its deadline and Docker marks the container unhealthy (one retry here).
    let pid: i32 = engine.ok(&["inspect", "-f", "{{.State.Pid}}", &name]).parse().unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let stopped = std::panic::catch_unwind(|| wait_docker_health(&engine, &name, "unhealthy", Duration::from_secs(30)));
    let probes: Value =
        serde_json::from_str(&engine.ok(&["inspect", "-f", "{{json .State.Health.Log}}", &name])).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    if let Err(e) = stopped {
        std::panic::resume_unwind(e);
    }
    let last = probes.as_array().and_then(|p| p.last()).expect("probes logged");
    assert_eq!(last["ExitCode"], 1, "{last}");
    assert!(last["Output"].as_str().unwrap().contains("FAIL loop: no answer from 127.0.0.1:"), "{last}");
    // Running again: healthy again.
    wait_docker_health(&engine, &name, "healthy", Duration::from_secs(30));
}
