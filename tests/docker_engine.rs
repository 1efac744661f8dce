//! The agent against a real Docker Engine (Debian's `docker.io`; `.ci/run` installs it and starts
//! `dockerd --iptables=false`). Images are made here with `docker import` of a busybox rootfs
//! (Debian's `busybox-static`), so no registry is needed. Every container, image and cgroup has a
//! name unique to this test run and is removed on drop, even when an assertion fails.
//!
//! - the agent in a **private cgroup namespace** (`unshare -C`, after moving it out of the
//!   hierarchies' roots, as an ECS task's container is on AL2023): every container's cgroup path
//!   then reads `/../docker/<id>`, on the v1 controllers and on the v2 tree;
//! - the **agent's own container** with the agent in it in a private cgroup namespace (`docker run
//!   --cgroupns private --pid host`, as an ECS task on AL2023): its processes read `/`, and the
//!   container and the agent's own process must still be reported with the container's id;
//! - a container **restarted in place** (`docker restart`: same id, new cgroup directories): its
//!   first observation after the restart primes its rates (no CPU figure sent, not a 0);
//! - CPU, memory and throttling reported non-zero for every container (each burns CPU under a
//!   CFS quota and holds some memory);
//! - throttling of a container in an ECS-style task cgroup (`--cgroup-parent`) whose limit is the
//!   task's, not the container's;
//! - no network figures for a container in the host's network namespace (`--network host`).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/engine.rs"]
mod engine;
#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use engine::*;
use test_cgroup::PlacedCgroup;

/// Burns CPU (the quota given to the container caps it) and holds 16 MB in a shell variable.
const BURN: &str = "v=$(head -c 16000000 /dev/zero | tr '\\000' x); yes > /dev/null";

/// The agent run by `sh -c <script>`, with a clean environment and `env`.
fn agent_under_sh(script: &str, env: &[(&str, &str)]) -> std::process::Child {
    agent_under(&["sh", "-c", script], env)
}

/// The agent run by `argv` (which execs it), with a clean environment and `env`.
fn agent_under(argv: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port.to_string())
        .env("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")
        // The container metrics are read as raw metrics (sent so when the receiver advertises
        // upgrade-to-multi-metrics; tests/features.rs covers its answer deciding it).
        .env("STS_FEATURES", "upgrade-to-multi-metrics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The dry run's lines for `endpoint`.
fn payloads(stdout: &[u8], endpoint: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["endpoint"] == endpoint)
        .map(|v| v["payload"].clone())
        .collect()
}

/// The value of the process agent's raw metric `name` for container `id` in one `/intake` payload.
fn raw(side: &serde_json::Value, name: &str, id: &str) -> Option<f64> {
    let tag = format!("containerId:{id}");
    side["metrics"].as_array()?.iter().find(|m| m[0] == name && m[3]["tags"][0] == tag.as_str())?[2].as_f64()
}

/// Every raw metric of container `id` in one `/intake` payload, as `name=value` (for failures).
fn raw_all(side: &serde_json::Value, id: &str) -> String {
    let tag = format!("containerId:{id}");
    let metrics = side["metrics"].as_array().cloned().unwrap_or_default();
    let named = metrics.iter().filter(|m| m[3]["tags"][0] == tag.as_str());
    named.map(|m| format!("{}={}", m[0].as_str().unwrap_or("?"), m[2])).collect::<Vec<_>>().join(" ")
}

/// Runs the agent once, in a private cgroup namespace made after moving it into `placed`, with
/// `prefix` run first (inside the same shell). Returns (stdout, stderr).
fn once_in_private_cgroupns(placed: &PlacedCgroup, prefix: &str, env: &[(&str, &str)]) -> (Vec<u8>, String) {
    let script = format!("{prefix}{}exec unshare --cgroup {AGENT} --once", placed.enter_script());
    let out = wait_with_timeout(agent_under_sh(&script, env), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (out.stdout, stderr)
}

/// The process check's `/intake` payload (the connections check sends one too).
fn process_side(stdout: &[u8], stderr: &str) -> serde_json::Value {
    payloads(stdout, "/intake")
        .into_iter()
        .rfind(|p| p["health"][0]["stream"]["sub_stream_id"] == "process")
        .unwrap_or_else(|| panic!("no /intake payload of the process check\n{stderr}"))
}

/// Every container is reported with CPU and memory, from the dry run's `/intake` payload.
fn assert_measured(stdout: &[u8], stderr: &str, ctrs: &[&Ctr], memory: bool) {
    assert!(!stderr.contains("cannot open the cgroup") && !stderr.contains("own cgroup was not found"), "{stderr}");
    let collector = payloads(stdout, "/api/v1/collector");
    let side = &process_side(stdout, stderr);
    for c in ctrs {
        assert!(
            collector
                .iter()
                .flat_map(|p| p["containers"].as_array().unwrap().clone())
                .any(|x| x["id"] == c.id.as_str()),
            "{} not in the collector payloads\n{stderr}",
            c.name
        );
        let cpu = raw(side, "totalPct", &c.id).unwrap_or_else(|| panic!("no totalPct for {}\n{stderr}", c.name));
        assert!(
            cpu > 0.5 && cpu < 50.0,
            "{}: totalPct {cpu} (a tenth of a CPU, busy); its raw metrics: {}\n{stderr}",
            c.name,
            raw_all(side, &c.id)
        );
        if memory {
            let rss = raw(side, "memRss", &c.id).unwrap();
            assert!(rss >= 4e6, "{}: memRss {rss} (up to 16 MB held)\n{stderr}", c.name);
        }
    }
}

#[test]
fn containers_seen_from_a_private_cgroup_namespace_on_v1_controllers() {
    require_engine();
    let img = Image::busybox();
    let (a, b) = (Ctr::run(&img, "a", BURN), Ctr::run(&img, "b", BURN));
    let placed = PlacedCgroup::new(&unique("agent"));
    // The premise: from the agent's namespace, another container's cgroup is outside its root.
    let seen = Command::new("sh")
        .args(["-c", &format!("{}exec unshare --cgroup cat /proc/{}/cgroup", placed.enter_script(), a.pid())])
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).to_string();
    assert!(seen.contains(&format!(":memory:/../docker/{}", a.id)), "{seen}");
    std::thread::sleep(Duration::from_millis(500));
    let (stdout, stderr) = once_in_private_cgroupns(&placed, "", &[("STS_HOSTNAME", "cgns-v1")]);
    assert_measured(&stdout, &stderr, &[&a, &b], true);
    // Throttling: a tenth of a CPU for a busy container is throttled every period.
    let side = &process_side(&stdout, &stderr);
    for c in [&a, &b] {
        let nr = raw(side, "cpuNrThrottled", &c.id).unwrap_or_else(|| panic!("no cpuNrThrottled\n{stderr}"));
        let time = raw(side, "cpuThrottledTime", &c.id).unwrap();
        let threads = raw(side, "cpuThreadCount", &c.id).unwrap();
        assert!(nr > 1.0 && time > 1.0, "{}: {nr} throttled periods/s, {time} cs/s", c.name);
        assert!(threads >= 1.0, "{}: {threads} tasks", c.name);
    }
}

#[test]
fn containers_seen_from_a_private_cgroup_namespace_on_the_v2_tree() {
    require_engine();
    // The host's cgroup2 tree as HOST_SYS/fs/cgroup: the whole hierarchy on a v2 host, the
    // `unified` one on a hybrid host (the v1 controllers are then elsewhere).
    let v2 = cgroup2_tree();
    let img = Image::busybox();
    let (a, b) = (Ctr::run(&img, "a2", BURN), Ctr::run(&img, "b2", BURN));
    let placed = PlacedCgroup::new(&unique("agent2"));
    let sys = TempDir::new("v2sys");
    let cg = sys.0.join("fs/cgroup");
    std::fs::create_dir_all(&cg).unwrap();
    // The container's v2 directory: its memory figures exist only where the tree has the memory
    // controller (not on a hybrid host, whose memory controller is v1).
    let unified = Command::new("sh")
        .args(["-c", &format!("grep '^0::' /proc/{}/cgroup | cut -d: -f3", a.pid())])
        .output()
        .unwrap();
    let rel = String::from_utf8_lossy(&unified.stdout).trim().to_string();
    let memory = std::path::Path::new(v2).join(rel.trim_start_matches('/')).join("memory.current").is_file();
    std::thread::sleep(Duration::from_millis(500));
    // In a private mount namespace (the bind mount goes with it), as the ECS task mounts HOST_SYS.
    let prefix = format!("mount --bind {v2} {} && ", cg.display());
    let script = format!("{prefix}{}exec unshare --cgroup {AGENT} --once", placed.enter_script());
    let out = wait_with_timeout(
        agent_under(
            &["unshare", "--mount", "sh", "-c", &script],
            &[("STS_HOSTNAME", "cgns-v2"), ("HOST_SYS", sys.0.to_str().unwrap())],
        ),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("containers: cgroup v2"), "HOST_SYS/fs/cgroup is the v2 tree\n{stderr}");
    assert_measured(&out.stdout, &stderr, &[&a, &b], memory);
}

#[test]
fn the_agents_own_container_is_reported_from_a_private_cgroup_namespace_on_v1_controllers() {
    require_engine();
    assert!(std::path::Path::new("/sys/fs/cgroup/memory").is_dir(), "cannot run: no cgroup v1 memory controller");
    own_container_reported("/sys/fs/cgroup", true);
}

#[test]
fn the_agents_own_container_is_reported_from_a_private_cgroup_namespace_on_the_v2_tree() {
    require_engine();
    let v2 = cgroup2_tree();
    // Memory figures only where the v2 tree has the memory controller (not on a hybrid host).
    let memory = std::fs::read_to_string(format!("{v2}/cgroup.controllers")).unwrap().contains("memory");
    own_container_reported(v2, memory);
}

/// The agent in a container of its own, as its ECS task runs it: `pidMode: host`, the host's
/// /proc and the cgroup tree `tree` mounted (as `HOST_SYS/fs/cgroup`), and its own cgroup
/// namespace (`--cgroupns private`, what an ECS task gets on AL2023). Its processes then read `/`
/// as their cgroup path, which names no container; the agent must still report its container
/// (and a busy process beside it) and give its own process that container's id. The dynamically
/// linked agent runs from the host's libraries, mounted read-only.
fn own_container_reported(tree: &str, memory: bool) {
    let img = Image::busybox();
    // A name of its own, to tell it from the agents other tests run at the same time (all of them
    // see each other's processes, with the host's pid namespace).
    let exe = unique("sts-agent");
    let libs = ["/lib/x86_64-linux-gnu", "/lib64", "/usr/lib/x86_64-linux-gnu"];
    let mut opts: Vec<String> =
        ["--network", "none", "--cpus", "0.3", "--pid", "host", "--cgroupns", "private"].map(String::from).to_vec();
    for lib in libs.iter().filter(|l| std::path::Path::new(l).is_dir()) {
        opts.extend(["-v".into(), format!("{lib}:{lib}:ro")]);
    }
    opts.extend(["-v".into(), format!("{AGENT}:/{exe}:ro"), "-v".into(), format!("{tree}:/host/sys/fs/cgroup:ro")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    for (k, v) in [
        ("HOST_SYS", "/host/sys"),
        ("STS_HOSTNAME", "own-ctr"),
        ("STS_EC2_METADATA_URL", "http://127.0.0.1:9"),
        ("STS_APM_RECEIVER_PORT", &port),
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("DOCKER_HOST", "unix:///nonexistent.sock"),
        ("STS_ECS_AGENT_URL", "http://127.0.0.1:9"),
        ("STS_FEATURES", "upgrade-to-multi-metrics"),
    ] {
        opts.extend(["-e".into(), format!("{k}={v}")]);
    }
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    // A busy process beside the agent, in the same container (and cgroup namespace).
    let script =
        format!("echo '>>>' >&2; cat /proc/self/cgroup >&2; echo '<<<' >&2; ({BURN}) & sleep 1; exec /{exe} --once");
    let c = Ctr::run_with(&img, "own", &opts, &script);
    let waited = Command::new("timeout").args(["90", "docker", "wait", &c.name]).output().unwrap();
    let logs = docker(&["logs", &c.name]);
    let (stdout, stderr) = (logs.stdout, String::from_utf8_lossy(&logs.stderr).to_string());
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "0", "the agent's exit status\n{stderr}");
    // The premise: the agent's own cgroup paths name no container (`/` in every hierarchy).
    let own = stderr.split(">>>\n").nth(1).and_then(|r| r.split("<<<").next()).unwrap_or_default();
    assert!(!own.is_empty() && own.lines().all(|l| l.ends_with(":/")), "own cgroup paths: {own:?}\n{stderr}");
    assert_measured(&stdout, &stderr, &[&c], memory);
    // Its processes carry the container's id.
    let procs: Vec<serde_json::Value> = payloads(&stdout, "/api/v1/collector")
        .iter()
        .flat_map(|p| p["processes"].as_array().cloned().unwrap_or_default())
        .collect();
    let me = procs
        .iter()
        .find(|p| p["command"]["args"][0] == format!("/{exe}").as_str())
        .unwrap_or_else(|| panic!("the agent's process\n{stderr}"));
    assert_eq!(me["containerId"], c.id.as_str(), "{me}");
}

#[test]
fn a_container_restarted_in_place_is_measured_again() {
    require_engine();
    let img = Image::busybox();
    let c = Ctr::run(&img, "restart", BURN);
    let first_pid = c.pid();
    // In a private cgroup namespace too: the directories are found again through the held anchor.
    let placed = PlacedCgroup::new(&unique("agent3"));
    let mut child = agent_under_sh(
        &format!("{}exec unshare --cgroup {AGENT} --dry-run", placed.enter_script()),
        &[("STS_HOSTNAME", "restart-host"), ("STS_PROCESS_CHECK_INTERVAL", "1")],
    );
    let lines: Arc<Mutex<Vec<(Instant, serde_json::Value)>>> = Arc::default();
    let (out, l2) = (child.stdout.take().unwrap(), lines.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["endpoint"] == "/intake" {
                    l2.lock().unwrap().push((Instant::now(), v["payload"].clone()));
                }
            }
        }
    });
    let err = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let e2 = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            e2.lock().unwrap().push_str(&line);
            e2.lock().unwrap().push('\n');
        }
    });
    let agent_pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _agent = Kids(vec![child]);
    // Reports from `since` on that carry the container: (cpu, rss) of it in each, cpu absent
    // where its rate is only being primed.
    let reports = |since: Instant| -> Vec<(Option<f64>, f64)> {
        let l = lines.lock().unwrap();
        l.iter()
            .filter(|(t, _)| *t >= since)
            .filter_map(|(_, p)| Some((raw(p, "totalPct", &c.id), raw(p, "memRss", &c.id)?)))
            .collect()
    };
    let figures = |since: Instant| -> Vec<(f64, f64)> {
        reports(since).into_iter().filter_map(|(cpu, rss)| Some((cpu?, rss))).collect()
    };
    let wait_for = |since: Instant, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while figures(since).len() < n {
            assert!(Instant::now() < deadline, "{} reports\n{}", figures(since).len(), stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let start = Instant::now();
    wait_for(start, 3);
    let before = figures(start);
    assert!(before.last().is_some_and(|&(cpu, rss)| cpu > 0.5 && rss >= 4e6), "before the restart: {before:?}");
    // The agent is paused across the restart, so that its next cycle always meets the same id
    // with stale directories (unpaused, a cycle can fall in the ~0.1 s without any process and
    // forget the container: the restart path would then be tested only by chance).
    use nix::sys::signal::{kill, Signal};
    kill(agent_pid, Signal::SIGSTOP).expect("pause the agent");
    docker_ok(&["restart", "-t", "1", &c.name]);
    assert_ne!(c.pid(), first_pid, "restarted: a new process in the same container");
    // Taken before the agent resumes: its first report after the restart comes at once.
    let restarted = Instant::now();
    kill(agent_pid, Signal::SIGCONT).expect("resume the agent");
    wait_for(restarted, 4);
    // The first observation after the restart (new cgroup, counters from 0) only primes the
    // rates: that report has the container's memory but no CPU figure, not a 0 (spec/docker-check.md
    // §5.1: that point is dropped). Every CPU figure after it is the busy container's.
    let after = reports(restarted);
    let why = || format!("after the restart: {after:?}\n{}", stderr.lock().unwrap());
    assert!(after[0].0.is_none(), "the first report primes: {}", why());
    for &(cpu, _) in &after {
        assert!(cpu.is_none_or(|cpu| cpu > 0.5), "{}", why());
    }
    let measured = figures(restarted);
    for &(cpu, rss) in &measured[2..] {
        assert!(cpu > 0.5 && rss >= 4e6, "{}", why());
    }
}

#[test]
fn a_host_network_container_has_no_network_figures() {
    require_engine();
    let img = Image::busybox();
    let (own, host) = (Ctr::run(&img, "ownnet", BURN), Ctr::run_in(&img, "hostnet", "host", BURN));
    std::thread::sleep(Duration::from_millis(500));
    let out = wait_with_timeout(
        agent_under_sh(&format!("exec {AGENT} --once"), &[("STS_HOSTNAME", "hostnet")]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert_measured(&out.stdout, &stderr, &[&own, &host], true);
    let side = &process_side(&out.stdout, &stderr);
    for m in ["netRcvdPs", "netSentPs", "netRcvdBps", "netSentBps"] {
        assert!(raw(side, m, &own.id).is_some(), "{m} of the container with its own network namespace");
        // The host's totals are not the container's.
        assert_eq!(raw(side, m, &host.id), None, "{m} of the host-network container");
    }
}

#[test]
fn throttling_of_an_ecs_task_shows_on_its_containers() {
    require_engine();
    assert!(std::path::Path::new("/sys/fs/cgroup/cpu").is_dir(), "cannot run: no cgroup v1 cpu controller");
    let img = Image::busybox();
    let task_id = test_cgroup::hex_id("task", 32);
    let task = TaskCgroup(format!("/{}/{task_id}", unique("ecs")));
    // Shares only on the container; the limit on the task, as ECS sets them: half a core.
    let c = Ctr::run_with(&img, "intask", &["--network", "none", "--cgroup-parent", &task.0], BURN);
    let cpu = format!("/sys/fs/cgroup/cpu{}", task.0);
    std::fs::write(format!("{cpu}/cpu.cfs_period_us"), "100000").unwrap();
    std::fs::write(format!("{cpu}/cpu.cfs_quota_us"), "50000").unwrap();
    let own = std::fs::read_to_string(format!("{cpu}/{}/cpu.cfs_quota_us", c.id)).unwrap();
    assert_eq!(own.trim(), "-1", "the container has no quota of its own");
    std::thread::sleep(Duration::from_millis(500));
    // What the task really had, per second, over the agent's run (its two samples fall inside).
    let stat = || {
        let s = std::fs::read_to_string(format!("{cpu}/cpu.stat")).unwrap();
        let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<f64>().ok()).unwrap();
        (Instant::now(), get("nr_throttled "), get("throttled_time "))
    };
    let before = stat();
    let out = wait_with_timeout(
        agent_under_sh(&format!("exec {AGENT} --once"), &[("STS_HOSTNAME", "task-host")]),
        Duration::from_secs(60),
    );
    let after = stat();
    let secs = after.0.duration_since(before.0).as_secs_f64();
    let (real_nr, real_cs) = ((after.1 - before.1) / secs, (after.2 - before.2) / 1e7 / secs);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let side = &process_side(&out.stdout, &stderr);
    let nr = raw(side, "cpuNrThrottled", &c.id).unwrap_or_else(|| panic!("no cpuNrThrottled\n{stderr}"));
    let time = raw(side, "cpuThrottledTime", &c.id).unwrap();
    // A busy loop under half a core is throttled every 100 ms period for about 50 ms: ~10
    // periods and ~50 centiseconds a second, as the task's cpu.stat says over the same run.
    // Under other load the burner gets less than its half core and is throttled less (12-17 cs/s
    // seen with two builds beside it): the premise is that it was throttled at all.
    assert!(real_nr > 5.0 && real_cs > 5.0, "the premise: the task was throttled ({real_nr}/s, {real_cs} cs/s)");
    eprintln!("agent: {nr} periods/s, {time} cs/s; the task's cpu.stat: {real_nr} periods/s, {real_cs} cs/s");
    // The agent's one-second window sits inside the test's: the periods are steady, the
    // throttled time less so when other work competes for the CPU (30-44 cs/s seen), hence the
    // wider margin; a unit error (x10, /100) or the container's own cpu.stat (0) is far outside.
    let near = |a: f64, b: f64, margin: f64| (a - b).abs() <= margin * b;
    assert!(
        near(nr, real_nr, 0.25) && near(time, real_cs, 0.35),
        "cpuNrThrottled {nr}/s and cpuThrottledTime {time} cs/s, the task's cpu.stat {real_nr}/s and {real_cs} cs/s"
    );
}
