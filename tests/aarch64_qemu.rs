//! Issue 20: the static aarch64 binary (packaging/build-static.sh --target aarch64), run with
//! `--once` under qemu-user on this x86_64 host, reports the host and its real processes, and its
//! connections check says clearly that qemu-user refuses NETLINK_SOCK_DIAG sockets (DEVIATING
//! health, one logged reason) while every other check goes on.
//!
//! Ignored in the plain `cargo test`: it needs the aarch64 build. .ci/run's aarch64 step builds
//! it and runs this with `--ignored`; then a missing binary or qemu fails the test.

mod common;
#[path = "support/docker_cli.rs"]
mod docker_cli;
use common::{wait_with_timeout, Kids, TempDir};
use docker_cli::{unique, Containers, Engine, Image};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const QEMU: &str = "qemu-aarch64-static";

/// The two tests run one at a time: the image test's container would add the per-image Docker
/// series to one `--once` run and not the other.
static DOCKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The static binary build-static.sh leaves for `arch` (`override_var` names another path, e.g.
/// with CARGO_TARGET_DIR set).
fn static_binary(override_var: &str, arch: &str) -> PathBuf {
    std::env::var_os(override_var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/{arch}-unknown-linux-musl/release/sts-agent"))
    })
}

fn aarch64_binary() -> PathBuf {
    static_binary("STS_AARCH64_BIN", "aarch64")
}

#[test]
#[ignore = "needs the aarch64 binary (packaging/build-static.sh --target aarch64) and Debian's qemu-user-static; .ci/run runs it with --ignored"]
fn aarch64_binary_under_qemu_reports_host_metrics_and_real_processes() {
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let bin = aarch64_binary();
    assert!(bin.is_file(), "no aarch64 binary at {} (packaging/build-static.sh --target aarch64)", bin.display());
    // A process of ours with a marker in its command line: the agent must report its real pid.
    let marker = format!("sts-test-aarch64-{}", std::process::id());
    let kids = Kids(vec![Command::new("python3")
        .args(["-c", "import time; time.sleep(120)", &marker])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sleep")]);
    let sleeper = kids.0[0].id();
    // Wait until /proc shows its command line (exec has happened).
    for _ in 0..100 {
        if std::fs::read(format!("/proc/{sleeper}/cmdline"))
            .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let qemu = run_once(Command::new(QEMU).arg(&bin));
    // The same on this machine's native build (the x86_64 binary of this cargo test), just
    // after: the aarch64 binary must find what it finds.
    let native = run_once(&mut Command::new(env!("CARGO_BIN_EXE_sts-agent")));
    let (stdout, stderr) = (&qemu.stdout, &qemu.stderr);
    let by = |ep: &'static str| qemu.payloads(ep);

    // Host metrics: the CPU and memory figures of this host.
    let series: Vec<&serde_json::Value> = by("/api/v1/series").flat_map(|p| p["series"].as_array().unwrap()).collect();
    for metric in ["system.cpu.user", "system.mem.total", "system.load.1"] {
        assert!(series.iter().any(|s| s["metric"] == metric && s["host"] == "qemu-host"), "no {metric} in {stdout}");
    }
    let cores = series.iter().find(|s| s["metric"] == "system.cpu.num_cores").expect("system.cpu.num_cores");
    assert!(cores["points"][0][1].as_f64().unwrap() >= 1.0);
    let topo = by("/intake/").next().expect("host topology");
    assert_eq!(topo["topologies"][0]["components"][0]["externalId"], "urn:host:/qemu-host");

    // Processes, with their real pids: ours, and the sleeper with its marker and real parent.
    let procs: Vec<&serde_json::Value> =
        by("/api/v1/collector").flat_map(|p| p["processes"].as_array().unwrap()).collect();
    let sleeping = procs.iter().find(|p| p["pid"] == sleeper).unwrap_or_else(|| panic!("pid {sleeper} not reported"));
    let args = sleeping["command"]["args"].as_array().unwrap();
    assert_eq!(args.last().unwrap(), marker.as_str());
    assert_eq!(sleeping["command"]["ppid"], std::process::id());
    assert!(procs.iter().any(|p| p["pid"] == 1), "pid 1 not reported");

    // Connections: qemu-user refuses NETLINK_SOCK_DIAG; health DEVIATING with the reason, logged once.
    let health: Vec<&serde_json::Value> = by("/intake")
        .flat_map(|p| p["health"].as_array().into_iter().flatten())
        .flat_map(|h| h["check_states"].as_array().unwrap())
        .collect();
    let conn = health
        .iter()
        .find(|s| s["name"] == "connections")
        .unwrap_or_else(|| panic!("no connections health in {stdout}"));
    assert_eq!(conn["health"], "DEVIATING");
    assert!(conn["message"].as_str().unwrap_or("").contains("NETLINK_SOCK_DIAG"), "{conn}");
    assert_eq!(stderr.matches("refuses NETLINK_SOCK_DIAG").count(), 1, "{stderr}");
    assert!(!by("/api/v1/connections").any(|_| true), "connections sent although none can be collected");
    let process_health = health.iter().find(|s| s["name"] == "process").expect("process check health");
    assert_eq!(process_health["health"], "CLEAR");

    // What the native build sends, the aarch64 one sends too, but for the connections it cannot
    // collect under qemu: the same endpoints, the same series, the same host figures.
    let mut native_endpoints = native.endpoints();
    assert!(native_endpoints.remove("/api/v1/connections"), "the native build sent no connections");
    assert_eq!(qemu.endpoints(), native_endpoints, "endpoints: aarch64 left, native right");
    let (ours, theirs) = (qemu.series_names(), native.series_names());
    assert!(
        ours == theirs,
        "series only from the aarch64 binary: {:?}; only from the native one: {:?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    for metric in ["system.cpu.num_cores", "system.mem.total", "system.swap.total"] {
        let value = qemu.first_point(metric);
        assert!(value.is_some(), "no {metric} from the aarch64 binary");
        assert_eq!(value, native.first_point(metric), "{metric}: aarch64 left, native right");
    }
    // Every online CPU (the cpuN lines of /proc/stat), whatever this test's affinity or quota.
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpus = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit));
    assert_eq!(qemu.first_point("system.cpu.num_cores"), Some(cpus.count() as f64), "num_cores against /proc/stat");
    let mem_total_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let reported = qemu.first_point("system.mem.total").unwrap();
    // system.mem.total is in MiB, as the original's.
    assert!(
        (reported - mem_total_kib / 1024.0).abs() < 1.0,
        "system.mem.total {reported} against MemTotal {mem_total_kib} kB"
    );
    for pid in [1, u64::from(sleeper)] {
        assert!(native.pids().contains(&pid) && qemu.pids().contains(&pid), "pid {pid} not in both");
    }
    drop(kids);
}

/// What one `--once` run printed.
struct Once {
    lines: Vec<serde_json::Value>,
    stdout: String,
    stderr: String,
}

impl Once {
    fn payloads<'a>(&'a self, ep: &'static str) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        self.lines.iter().filter(move |l| l["endpoint"] == ep).map(|l| &l["payload"])
    }

    fn endpoints(&self) -> BTreeSet<String> {
        self.lines.iter().map(|l| l["endpoint"].as_str().unwrap().to_string()).collect()
    }

    fn series(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.payloads("/api/v1/series").flat_map(|p| p["series"].as_array().unwrap())
    }

    fn series_names(&self) -> BTreeSet<String> {
        self.series().map(|s| s["metric"].as_str().unwrap().to_string()).collect()
    }

    fn first_point(&self, metric: &str) -> Option<f64> {
        self.series().find(|s| s["metric"] == metric)?["points"][0][1].as_f64()
    }

    fn pids(&self) -> BTreeSet<u64> {
        self.payloads("/api/v1/collector")
            .flat_map(|p| p["processes"].as_array().unwrap())
            .filter_map(|p| p["pid"].as_u64())
            .collect()
    }
}

/// Runs `cmd --once` (the agent, or qemu with the agent) with a clean environment: no server, no
/// EC2 metadata, free intake ports.
fn run_once(cmd: &mut Command) -> Once {
    let port = |udp: bool| {
        if udp {
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        }
    };
    let child = cmd
        .arg("--once")
        .env_clear()
        .env("STS_HOSTNAME", "qemu-host")
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port(false).to_string())
        .env("STS_DOGSTATSD_PORT", port(true).to_string())
        .env("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (qemu: Debian's qemu-user-static): {e}"));
    let out = wait_with_timeout(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    Once { lines, stdout, stderr }
}

/// packaging/Dockerfile, built for each platform as the README says (`--platform`, and
/// TARGETARCH, which BuildKit sets from it and the classic builder takes as a build argument),
/// gives an image of that architecture holding that architecture's binary. No registry here: the
/// certificates stage is this machine's CA bundle instead of Debian's image, and the manifest list
/// `buildx --push` makes is not made (that needs a registry).
#[test]
#[ignore = "needs both static binaries (packaging/build-static.sh, with and without --target aarch64) and a Docker Engine; .ci/run runs it with --ignored"]
fn the_dockerfile_builds_an_image_per_architecture_with_its_binary() {
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let engine = Engine::default();
    engine.require();
    let bins =
        [("amd64", static_binary("STS_STATIC_BIN", "x86_64"), "x86-64"), ("arm64", aarch64_binary(), "ARM aarch64")];
    for (_, bin, _) in &bins {
        assert!(bin.is_file(), "no static binary at {} (packaging/build-static.sh [--target aarch64])", bin.display());
    }
    let dir = TempDir::new("dockerfile-arch");
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/Dockerfile")).unwrap();
    let certs_from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM ") && l.ends_with(" AS certs"))
        .expect("packaging/Dockerfile has a certs stage");
    let certs_run = dockerfile.lines().skip_while(|l| *l != certs_from).nth(1).unwrap();
    assert!(certs_run.starts_with("RUN "), "the certs stage changed: update this test ({certs_run})");
    let local = dockerfile
        .replace(certs_from, "FROM scratch AS certs")
        .replace(certs_run, "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt");
    std::fs::create_dir_all(dir.0.join("packaging")).unwrap();
    std::fs::write(dir.0.join("packaging/Dockerfile"), local).unwrap();
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", dir.0.join("ca-certificates.crt"))
        .expect("this machine's CA bundle (Debian's ca-certificates)");
    for ((arch, bin, kind), triple) in bins.iter().zip(["x86_64", "aarch64"]) {
        // Only this architecture's binary in the context: the other one need not be built.
        let target = dir.0.join("target");
        let _ = std::fs::remove_dir_all(&target);
        let release = target.join(format!("{triple}-unknown-linux-musl/release"));
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(bin, release.join("sts-agent")).unwrap();
        let image = Image { engine: engine.clone(), name: format!("{}:latest", unique(&format!("image-{arch}"))) };
        let platform = format!("linux/{arch}");
        let o = std::process::Command::new("docker")
            // --no-cache: the classic builder's cache does not key on the platform (the other
            // platform's build of the same stage would be taken, and refused as not this one's).
            .args([
                "build",
                "-q",
                "--no-cache",
                "--platform",
                &platform,
                "-f",
                "packaging/Dockerfile",
                "-t",
                &image.name,
            ])
            .args(["--build-arg", &format!("TARGETARCH={arch}")])
            .arg(".")
            .current_dir(&dir.0)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("docker CLI");
        assert!(o.status.success(), "docker build --platform {platform}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(engine.ok(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", &image.name]), platform);
        // The binary in the image is this architecture's, byte for byte (taken out without
        // running it: an arm64 image does not run here).
        let ctr = Containers(engine.clone(), vec![unique(&format!("image-{arch}"))]);
        engine.ok(&["create", "--name", &ctr.1[0], &image.name]);
        let out = dir.0.join(format!("out-{arch}"));
        engine.ok(&["cp", &format!("{}:/sts-agent", ctr.1[0]), &out.to_string_lossy()]);
        assert!(std::fs::read(&out).unwrap() == std::fs::read(bin).unwrap(), "{platform}: not {}", bin.display());
        let file = std::process::Command::new("file").arg(&out).output().expect("file(1)");
        let file = String::from_utf8_lossy(&file.stdout);
        assert!(file.contains(kind), "{platform}: {file}");
        let ca = dir.0.join("ca");
        engine.ok(&["cp", &format!("{}:/etc/ssl/certs/ca-certificates.crt", ctr.1[0]), &ca.to_string_lossy()]);
        assert!(std::fs::read(&ca).unwrap() == std::fs::read(dir.0.join("ca-certificates.crt")).unwrap());
        // What the binary stages carried along stays behind.
        let stray = engine.run(&["cp", &format!("{}:/Dockerfile", ctr.1[0]), &dir.0.join("stray").to_string_lossy()]);
        assert!(!stray.status.success(), "{platform}: the image holds the Dockerfile");
    }
}
