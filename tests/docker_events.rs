//! Docker container events against a real Docker Engine (Debian's `docker.io`), the agent in a
//! dry run with a 2 s docker pass. The truth every test compares with is Docker's own record:
//! `docker events --since … --until …` (or a `docker events` subscriber of the test's own).
//!
//! - a container started, one stopped, one killed by its memory limit (`oom`), one restarted in
//!   place (`docker restart`), laid out as ECS lays out a task (`--cgroup-parent <…>/<task id>`,
//!   the `com.amazonaws.ecs.*` labels): the `/intake/` bundles carry every event once, with the
//!   original's titles, texts, alert types and tags, each within one pass of the event;
//! - a **private dockerd** (its own data root, exec root, pid file and socket) stopped and started
//!   again while containers change: the events Docker logged while the agent could not read
//!   (a restart-policy start during the daemon's start, containers created and removed before the
//!   agent reconnected) still arrive, once;
//! - a quiet event stream costs nothing: over 10 s without events the agent with the stream
//!   open is woken no more often, and uses no more CPU, than the same agent without it.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "support/docker_cli.rs"]
mod docker_cli;
use docker_cli::*;

const INTERVAL: u64 = 2;
const HOST: &str = "evhost";

/// The agent in a dry run; every stdout line is kept with the wall-clock time it was read.
struct RunningAgent {
    child: Child,
    port: u16,
    out: Arc<Mutex<Vec<(SystemTime, String)>>>,
    err: Arc<Mutex<String>>,
}

impl RunningAgent {
    fn start(env: &[(&str, &str)]) -> RunningAgent {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let interval = INTERVAL.to_string();
        let mut cmd = Command::new(AGENT);
        cmd.arg("--dry-run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
            .env("STS_ECS_AGENT_URL", "http://127.0.0.1:9")
            .env("STS_APM_RECEIVER_PORT", port.to_string())
            // No DogStatsD: UDP 8125 may be taken by another agent.
            .env("STS_DOGSTATSD_PORT", "0")
            .env("STS_HOSTNAME", HOST)
            .env("STS_NETWORK_TRACING_ENABLED", "false")
            .env("STS_DOCKER_CHECK_INTERVAL", &interval)
            .env("STS_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn agent");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o, stdout) = (out.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().unwrap().push((SystemTime::now(), l));
            }
        });
        let (e, stderr) = (err.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut e = e.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        RunningAgent { child, port, out, err }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// `/status`, or None while the agent does not answer yet.
    fn status(&self) -> Option<Value> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let (code, body) = read_response(&mut s);
        assert_eq!(code, 200, "{body}");
        Some(serde_json::from_str(&body).unwrap())
    }

    fn events_status(&self) -> Value {
        self.status().map(|s| s["docker_events"].clone()).unwrap_or(Value::Null)
    }

    /// Waits (up to 30 s) until `/status` says the event stream is open.
    fn wait_connected(&self) {
        let t = Instant::now();
        while self.events_status()["connected"] != true {
            assert!(t.elapsed() < Duration::from_secs(30), "event stream never connected:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every `/intake/` docker event bundle for `image`, with the time its line was read.
    fn bundles(&self, image: &str) -> Vec<(SystemTime, Value)> {
        let key = format!("docker:{image}");
        let mut got = Vec::new();
        for (t, l) in self.out.lock().unwrap().iter() {
            let Ok(v) = serde_json::from_str::<Value>(l) else { continue };
            // Other events (the agent's "Agent Startup") are not the docker pass's.
            if v["endpoint"] != "/intake/" || v["payload"]["events"]["docker"].is_null() {
                continue;
            }
            let p = &v["payload"];
            assert_eq!(p["apiKey"], "");
            assert_eq!(p["internalHostname"], HOST);
            assert_eq!(p["events"].as_object().unwrap().len(), 1, "only docker events: {p}");
            for b in p["events"]["docker"].as_array().unwrap() {
                if b["aggregation_key"] == key.as_str() {
                    got.push((*t, b.clone()));
                }
            }
        }
        got
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One container event as Docker logged it.
#[derive(Debug, Clone)]
struct Logged {
    action: String,
    name: String,
    id: String,
    nanos: i64,
}

const FILTERED: [&str; 4] = ["top", "exec_create", "exec_start", "exec_die"];

/// Docker's container events (JSON lines as `docker events --format '{{json .}}'` writes them)
/// for `image`, the filtered actions left out, `Action` cut at its first `:`.
fn logged(lines: &str, image: &str) -> Vec<Logged> {
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["Type"] == "container" && v["Actor"]["Attributes"]["image"] == image)
        .map(|v| Logged {
            action: v["Action"].as_str().unwrap().split(':').next().unwrap().to_string(),
            name: v["Actor"]["Attributes"]["name"].as_str().unwrap().to_string(),
            id: v["Actor"]["ID"].as_str().unwrap().to_string(),
            nanos: v["timeNano"].as_i64().unwrap(),
        })
        .filter(|e| !FILTERED.contains(&e.action.as_str()))
        .collect()
}

fn docker_log(engine: &Engine, image: &str, since: SystemTime, until: SystemTime) -> Vec<Logged> {
    let ts = |t: SystemTime| format!("{:.9}", t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
    let out = engine.ok(&[
        "events",
        "--since",
        &ts(since),
        "--until",
        &ts(until),
        "--filter",
        "type=container",
        "--format",
        "{{json .}}",
    ]);
    logged(&out, image)
}

/// `(ACTION, name)` lines of a bundle's text, after checking its frame and its title against them.
fn check_bundle(b: &Value, image: &str) -> Vec<(String, String)> {
    let title = b["msg_title"].as_str().unwrap();
    let text = b["msg_text"].as_str().unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(lines.len() >= 6, "{text:?}");
    assert_eq!(lines[0], "%%% ");
    assert_eq!(lines[1], title);
    assert_eq!(lines[2], "```");
    assert_eq!(lines[lines.len() - 2], "```");
    assert_eq!(lines[lines.len() - 1], " %%%");
    let events: Vec<(String, String)> = lines[3..lines.len() - 2]
        .iter()
        .map(|l| {
            let (a, n) = l.split_once('\t').unwrap_or_else(|| panic!("line {l:?}"));
            (a.to_lowercase(), n.to_string())
        })
        .collect();
    // Title: `<image> <n> <action> … on <host>`, actions sorted, counts as in the text.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (a, _) in &events {
        *counts.entry(a.clone()).or_default() += 1;
    }
    let mut want = image.to_string();
    for (a, n) in &counts {
        want.push_str(&format!(" {n} {a}"));
    }
    want.push_str(&format!(" on {HOST}"));
    assert_eq!(title, want);
    let error = counts.contains_key("oom") || counts.contains_key("kill");
    assert_eq!(b.get("alert_type"), error.then(|| Value::from("error")).as_ref(), "{b}");
    assert_eq!(b["priority"], "normal");
    assert_eq!(b["host"], HOST);
    assert_eq!(b["source_type_name"], "docker");
    assert_eq!(b["event_type"], "docker");
    let tags: Vec<&str> = b["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let mut sorted = tags.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(tags, sorted, "tags sorted and de-duplicated");
    events
}

/// Every logged event is in exactly one bundle (none missing, none twice), and every bundle
/// came out within one pass of each of its events.
fn check_exactly_once(bundles: &[(SystemTime, Value)], log: &[Logged], image: &str) {
    let mut in_bundles: Vec<(SystemTime, String, String)> = Vec::new();
    for (t, b) in bundles {
        for (a, n) in check_bundle(b, image) {
            in_bundles.push((*t, a, n));
        }
    }
    let mut want: Vec<(String, String)> = log.iter().map(|e| (e.action.clone(), e.name.clone())).collect();
    let mut got: Vec<(String, String)> = in_bundles.iter().map(|(_, a, n)| (a.clone(), n.clone())).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the bundles' events against Docker's log");
    // Timing: each logged event (in time order) is matched with the first bundle line read
    // after it for the same action and container.
    let mut left = in_bundles.clone();
    let mut log = log.to_vec();
    log.sort_by_key(|e| e.nanos);
    for e in &log {
        let at = UNIX_EPOCH + Duration::from_nanos(e.nanos as u64);
        let i = left
            .iter()
            .position(|(t, a, n)| *t >= at && *a == e.action && *n == e.name)
            .unwrap_or_else(|| panic!("{e:?} in no bundle sent after it"));
        let (t, _, _) = left.remove(i);
        let late = t.duration_since(at).unwrap();
        assert!(late <= Duration::from_millis(INTERVAL * 1000 + 1500), "{e:?} sent {late:?} after it happened");
    }
}

fn ecs_labels<'a>(task_arn: &'a str, role: &'a str) -> Vec<String> {
    vec![
        format!("com.amazonaws.ecs.task-arn={task_arn}"),
        "com.amazonaws.ecs.task-definition-family=evt".into(),
        "com.amazonaws.ecs.task-definition-version=3".into(),
        format!("com.amazonaws.ecs.container-name={role}"),
        "com.amazonaws.ecs.cluster=evtcluster".into(),
    ]
}

#[test]
fn container_lifecycle_events_reach_intake_once_each_with_the_originals_titles_and_tags() {
    let engine = Engine::default();
    engine.require();
    assert!(std::path::Path::new("/sys/fs/cgroup/memory").is_dir(), "cannot run: no cgroup v1 memory controller");
    let tmp = TempDir::new("events");
    let img = engine.busybox(&tmp.0);
    let task_id = format!("{:032x}", u128::from(std::process::id()) << 64 | 0xe7e7);
    let task = TaskCgroup(format!("/{}/{task_id}", unique("ecs")));
    let task_arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/evtcluster/{task_id}");
    let agent = RunningAgent::start(&[]);
    agent.wait_connected();
    let since = SystemTime::now();
    let mut ctrs = Containers(engine.clone(), Vec::new());
    let mut run = |role: &str, opts: &[&str], script: &str| -> String {
        let name = unique(role);
        ctrs.1.push(name.clone());
        let labels = ecs_labels(&task_arn, role);
        let mut args = vec!["run", "-d", "--name", &name, "--network", "none", "--cgroup-parent", &task.0];
        for l in &labels {
            args.extend_from_slice(&["--label", l]);
        }
        args.extend_from_slice(opts);
        args.extend_from_slice(&[&img.name, "sh", "-c", script]);
        engine.ok(&args);
        name
    };
    let started = run("started", &[], "sleep 600");
    let stopped = run("stopped", &[], "sleep 600");
    let oom = run("oom", &["--memory", "8m", "--memory-swap", "8m"], "head -c 64000000 /dev/zero | tail");
    let restarted = run("restarted", &[], "sleep 600");
    engine.ok(&["stop", "-t", "1", &stopped]);
    engine.ok(&["restart", "-t", "1", &restarted]);
    let t = Instant::now();
    while engine.ok(&["inspect", "-f", "{{.State.Status}}", &oom]) != "exited" {
        assert!(t.elapsed() < Duration::from_secs(30), "the memory hog was not killed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(engine.ok(&["inspect", "-f", "{{.State.OOMKilled}}", &oom]), "true");
    // One pass and some, then what Docker logged in the meantime.
    std::thread::sleep(Duration::from_millis(INTERVAL * 1000 + 1500));
    let until = SystemTime::now();
    let log = docker_log(&engine, &img.name, since, until);
    let has = |action: &str, name: &str| log.iter().any(|e| e.action == action && e.name == name);
    assert!(
        has("oom", &oom) && has("restart", &restarted) && has("stop", &stopped) && has("start", &started),
        "{log:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let bundles = agent.bundles(&img.name);
    let stderr = agent.stderr();
    assert!(!bundles.is_empty(), "no bundle for {}:\n{stderr}", img.name);
    eprintln!(
        "{} events logged by Docker, {} bundles: {:?}",
        log.len(),
        bundles.len(),
        bundles.iter().map(|(_, b)| b["msg_title"].as_str().unwrap()).collect::<Vec<_>>()
    );
    check_exactly_once(&bundles, &log, &img.name);
    // Tags: every container of a bundle with its Docker and ECS tags.
    let (image_name, _) = img.name.rsplit_once(':').unwrap();
    for (_, b) in &bundles {
        let tags: Vec<&str> = b["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        for (_, name) in check_bundle(b, &img.name) {
            let id = &log.iter().find(|e| e.name == name).unwrap().id;
            let role = name.split('-').nth(3).unwrap();
            for want in [
                format!("container_id:{id}"),
                format!("container_name:{name}"),
                format!("docker_image:{}", img.name),
                format!("image_name:{image_name}"),
                format!("short_image:{image_name}"),
                "image_tag:latest".into(),
                format!("task_arn:{task_arn}"),
                "task_family:evt".into(),
                "task_name:evt".into(),
                "task_version:3".into(),
                format!("ecs_container_name:{role}"),
                "cluster_name:evtcluster".into(),
                "ecs_cluster_name:evtcluster".into(),
            ] {
                assert!(tags.contains(&want.as_str()), "{want} missing in {tags:?}");
            }
        }
    }
    // The OOM kill's bundle is an error (and so is every bundle with a `kill`, as `docker stop` makes).
    let oom_bundle = bundles.iter().find(|(_, b)| b["msg_text"].as_str().unwrap().contains("\nOOM\t")).unwrap();
    assert_eq!(oom_bundle.1["alert_type"], "error");
    let s = agent.events_status();
    assert_eq!((s["connected"].clone(), s["dropped"].clone()), (Value::from(true), Value::from(0)), "{s}");
    assert!(s["received"].as_u64().unwrap() >= log.len() as u64, "{s}");
    drop(ctrs);
    drop(task);
}

/// A stop (SIGTERM) between two passes sends the events kept for the next one before the agent
/// exits: with a pass 10 minutes away, only the stop can have sent them.
#[test]
fn events_pending_at_sigterm_are_sent_before_the_agent_exits() {
    let engine = Engine::default();
    engine.require();
    let tmp = TempDir::new("evterm");
    let img = engine.busybox(&tmp.0);
    let mut agent = RunningAgent::start(&[("STS_DOCKER_CHECK_INTERVAL", "600")]);
    agent.wait_connected();
    let since = SystemTime::now();
    let name = unique("term");
    let ctrs = Containers(engine.clone(), vec![name.clone()]);
    engine.ok(&["run", "-d", "--name", &name, "--network", "none", &img.name, "sleep", "600"]);
    let log = docker_log(&engine, &img.name, since, SystemTime::now());
    assert!(log.iter().any(|e| e.action == "start" && e.name == name), "{log:?}");
    // The agent holds them for the next pass.
    let t = Instant::now();
    while agent.events_status()["pending"].as_u64().unwrap_or(0) < log.len() as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "events never pending: {}\n{}",
            agent.events_status(),
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(agent.bundles(&img.name).is_empty(), "no pass ran yet");
    assert!(Command::new("kill").args(["-TERM", &agent.pid().to_string()]).status().unwrap().success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "the agent did not exit after SIGTERM:\n{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}:\n{}", agent.stderr());
    // The reader threads reach the end of the pipes.
    std::thread::sleep(Duration::from_millis(300));
    let bundles = agent.bundles(&img.name);
    assert!(!bundles.is_empty(), "the pending events were lost at SIGTERM:\n{}", agent.stderr());
    check_exactly_once(&bundles, &log, &img.name);
    drop(ctrs);
}

/// A dockerd of this test's own: its own data root, exec root, pid file and socket, its own
/// network namespace; no bridge, no iptables. Stopped (SIGTERM, then SIGKILL) on drop.
struct PrivateDockerd {
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateDockerd {
    fn start(dir: &std::path::Path) -> PrivateDockerd {
        assert!(
            Command::new("dockerd").arg("--version").output().is_ok_and(|o| o.status.success()),
            "cannot run: no dockerd binary (docker.io)"
        );
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("dockerd.log")).unwrap();
        // In a network namespace of its own: a dockerd started with `--bridge none` deletes the
        // host's `docker0` (libnetwork's removeDefaultBridgeInterface), which would cut the
        // machine's shared engine off its default network. The socket is a path, reachable from
        // any namespace.
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .args(["--data-root", &dir.join("data").display().to_string()])
            .args(["--exec-root", &dir.join("exec").display().to_string()])
            .args(["--pidfile", &dir.join("docker.pid").display().to_string()])
            .args(["-H", &format!("unix://{}", dir.join("docker.sock").display())])
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let d = PrivateDockerd { dir: dir.to_path_buf(), child: Some(child) };
        let e = d.engine();
        let t = Instant::now();
        while !e.run(&["version"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "private dockerd did not start: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn engine(&self) -> Engine {
        Engine(Some(self.host()))
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let t = Instant::now();
        while c.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Everything on this daemon is the test's own.
            let e = self.engine();
            let ids = e.run(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = e.run(&["rm", "-f", id]);
            }
        }
        self.stop();
    }
}

#[test]
fn events_of_a_docker_restart_arrive_once_after_the_agent_reconnects() {
    Engine::default().require();
    let tmp = TempDir::new("evdockerd");
    let mut d1 = PrivateDockerd::start(&tmp.0);
    let engine = d1.engine();
    let img = engine.busybox(&tmp.0);
    let host = d1.host();
    let agent = RunningAgent::start(&[("DOCKER_HOST", &host)]);
    agent.wait_connected();
    // The test's own subscriber: what the first daemon logged, up to its very end.
    let mut sub = Command::new("docker")
        .args(["-H", &host, "events", "--filter", "type=container", "--format", "{{json .}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sub_out = sub.stdout.take().unwrap();
    let sub_lines = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(sub_out), &mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(500));
    let keeper = unique("keeper");
    let gone = unique("gone");
    let fresh = unique("fresh");
    engine.ok(&["run", "-d", "--name", &keeper, "--restart", "always", "--network", "none", &img.name, "sleep", "600"]);
    engine.ok(&["run", "-d", "--name", &gone, "--network", "none", &img.name, "sleep", "600"]);
    std::thread::sleep(Duration::from_millis(500));
    // The agent cannot read from now on (as if busy, or slow to reconnect); Docker restarts:
    // the first daemon stops its containers, the second restarts `keeper` by its policy while
    // it starts; then, before the agent reads again, `fresh` is created and `gone` removed.
    let pid = agent.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    d1.stop();
    let _ = sub.wait();
    let first = logged(&sub_lines.join().unwrap(), &img.name);
    let restarted_at = SystemTime::now();
    let d2 = PrivateDockerd::start(&tmp.0);
    engine.ok(&["run", "-d", "--name", &fresh, "--network", "none", &img.name, "sleep", "600"]);
    engine.ok(&["rm", "-f", &gone]);
    std::thread::sleep(Duration::from_millis(300));
    let second = docker_log(&engine, &img.name, restarted_at, SystemTime::now());
    let missed: Vec<&Logged> = second.iter().collect();
    assert!(
        missed.iter().any(|e| e.action == "start" && e.name == keeper),
        "the second daemon restarted {keeper} by its policy: {missed:?}"
    );
    assert!(missed.iter().any(|e| e.action == "destroy" && e.name == gone), "{missed:?}");
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    // The agent reconnects (1 s after the stream ended) and catches up; one pass later the
    // bundles are out.
    let t = Instant::now();
    let want = (first.len() + second.len()) as u64;
    while agent.events_status()["received"].as_u64().unwrap_or(0) < want {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} events received of {want}:\n{}",
            agent.events_status(),
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(INTERVAL * 1000 + 1500));
    let bundles = agent.bundles(&img.name);
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    let mut got: Vec<(String, String)> = Vec::new();
    for (_, b) in &bundles {
        got.extend(check_bundle(b, &img.name));
    }
    let mut want: Vec<(String, String)> = all.iter().map(|e| (e.action.clone(), e.name.clone())).collect();
    got.sort();
    want.sort();
    eprintln!(
        "first daemon {} events, second {} ({:?}); bundles {:?}",
        first.len(),
        second.len(),
        second.iter().map(|e| format!("{} {}", e.action, e.name)).collect::<Vec<_>>(),
        bundles.iter().map(|(_, b)| b["msg_title"].as_str().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(got, want, "each event of both daemons once:\n{}", agent.stderr());
    let s = agent.events_status();
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["connected"], true, "{s}");
    drop(img);
    drop(d2);
}

/// `(utime + stime ticks, voluntary context switches)` of `pid`: CPU used, and times it slept
/// and was woken.
fn cost(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    (ticks, switches)
}

#[test]
fn a_quiet_event_stream_costs_no_wake_up_and_no_cpu() {
    Engine::default().require();
    let tmp = TempDir::new("evquiet");
    let d = PrivateDockerd::start(&tmp.0);
    let host = d.host();
    // Checks far apart, so that only what the stream itself does could wake the agents.
    let quiet = [
        ("DOCKER_HOST", host.as_str()),
        ("STS_HOST_CHECK_INTERVAL", "3600"),
        ("STS_PROCESS_CHECK_INTERVAL", "3600"),
        ("STS_DOCKER_CHECK_INTERVAL", "3600"),
    ];
    let with = RunningAgent::start(&quiet);
    let mut env = quiet.to_vec();
    env.push(("STS_DOCKER_EVENTS_ENABLED", "false"));
    let without = RunningAgent::start(&env);
    with.wait_connected();
    assert_eq!(without.events_status(), Value::Null, "the stream is off");
    // Let the start-up work settle (first checks, metadata look-ups).
    std::thread::sleep(Duration::from_secs(3));
    let (a0, b0) = (cost(with.pid()), cost(without.pid()));
    std::thread::sleep(Duration::from_secs(10));
    let (a1, b1) = (cost(with.pid()), cost(without.pid()));
    let (with_ticks, with_wakes) = (a1.0 - a0.0, a1.1 - a0.1);
    let (without_ticks, without_wakes) = (b1.0 - b0.0, b1.1 - b0.1);
    eprintln!(
        "10 s idle: with the stream {with_ticks} ticks, {with_wakes} wake-ups; without {without_ticks} ticks, {without_wakes} wake-ups"
    );
    assert_eq!(with_wakes, 0, "the open, quiet stream woke the agent");
    assert!(with_wakes <= without_wakes && with_ticks <= without_ticks + 1);
    assert_eq!(with.events_status()["connected"], true, "the stream was open all along");
    drop(d);
}
