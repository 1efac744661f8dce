//! Containers from real cgroups made by this test (cgroup v1 controllers are mounted here; we
//! are root), laid out the Docker way (`…docker/<id>`) and the ECS way (`…/ecs/<task>/<id>`),
//! with real processes moved in and limits set. The agent runs against a TLS receiver; what
//! arrives is decoded independently and compared with the cgroup files.

mod common;
use common::pa_proto::{self, CollectorProc};
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use test_cgroup::{hex_id, TestCgroup};

fn cgroup_value(cg: &TestCgroup, c: &str, f: &str, key: &str) -> f64 {
    let s = std::fs::read_to_string(cg.path(c, f)).unwrap();
    s.lines().find_map(|l| l.strip_prefix(&format!("{key} "))).unwrap().trim().parse().unwrap()
}

#[test]
fn docker_and_ecs_layouts_on_real_cgroups() {
    let tag = format!("sts-test-{}", std::process::id());
    let docker_id = hex_id("docker", 64);
    let ecs_id = hex_id("ecs", 64);
    let task = hex_id("task", 32);
    let mut docker = TestCgroup::require(&[format!("{tag}-docker")], &docker_id);
    let mut ecs = TestCgroup::require(&[format!("{tag}-ecs"), format!("{tag}-ecs/{task}")], &ecs_id);
    std::fs::write(docker.path("memory", "memory.limit_in_bytes"), "268435456").unwrap();
    std::fs::write(docker.path("cpu", "cpu.cfs_quota_us"), "50000").unwrap();
    let docker_pid = docker.run("import time; x = b'1' * (48 << 20); time.sleep(60)");
    let ecs_pid = ecs.run("import time\nwhile True: pass");
    std::thread::sleep(Duration::from_millis(700));

    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    // What the busy one really got while the agent ran (the machine may be shared and loaded).
    let usage =
        || std::fs::read_to_string(ecs.path("cpuacct", "cpuacct.usage")).unwrap().trim().parse::<f64>().unwrap();
    let (u0, t0) = (usage(), std::time::Instant::now());
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", "k"),
            ("STS_HOSTNAME", "ctr-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            // The container metrics read below as raw metrics (tests/features.rs covers the
            // receiver's answer deciding it).
            ("STS_FEATURES", "upgrade-to-multi-metrics"),
            // No Docker: these cgroups are all there is to know (with Docker, the docker pass
            // would send the topology of Docker's containers; see the next test).
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
        Duration::from_secs(60),
    );
    let got = (usage() - u0) / t0.elapsed().as_secs_f64() / 1e7;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reqs = rx.requests();
    let msgs: Vec<CollectorProc> = reqs
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v1/collector")
        .map(|r| pa_proto::collector_proc(&r.body))
        .collect();
    let ctrs: Vec<_> = msgs.iter().flat_map(|m| &m.containers).collect();
    let d = ctrs.iter().find(|c| c.id == docker_id).expect("the docker-layout container is reported");
    let e = ctrs.iter().find(|c| c.id == ecs_id).expect("the ECS-layout container is reported");
    assert_eq!(d.r#type, "docker");
    assert_eq!(d.memory_limit, 268_435_456);
    assert!((d.cpu_limit - 50.0).abs() < 0.01, "cpu limit {}", d.cpu_limit);
    assert_eq!(e.memory_limit, 0, "no limit set");
    assert_eq!(d.state, 3);
    assert!(d.tags.contains(&format!("container_id:{docker_id}")));
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now_s - 120..=now_s).contains(&d.created), "created {}", d.created);
    // Process → container.
    let procs: Vec<_> = msgs.iter().flat_map(|m| &m.processes).collect();
    assert_eq!(procs.iter().find(|p| p.pid == docker_pid as i32).unwrap().container_id, docker_id);
    assert_eq!(procs.iter().find(|p| p.pid == ecs_pid as i32).unwrap().container_id, ecs_id);

    // Raw metrics against the cgroup files.
    let side = reqs.iter().find(|r| r.target.starts_with("/stsAgent/intake?")).unwrap().json();
    let metric = |name: &str, id: &str| -> f64 {
        side["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m[0] == name && m[3]["tags"][0] == format!("containerId:{id}"))
            .unwrap_or_else(|| panic!("no {name} for {id}"))[2]
            .as_f64()
            .unwrap()
    };
    let rss_now = cgroup_value(&docker, "memory", "memory.stat", "rss");
    let rss = metric("memRss", &docker_id);
    assert!(
        rss >= 48.0 * 1024.0 * 1024.0 && (rss / rss_now - 1.0).abs() < 0.1,
        "memRss {rss} vs memory.stat rss {rss_now}"
    );
    let busy = metric("totalPct", &ecs_id);
    assert!(got > 10.0, "the busy container got only {got}% of a CPU while the agent ran");
    // Relative both ways (the machine may be loaded), and one thread never passes 100%: a
    // doubled figure fails one of the upper bounds.
    assert!(
        busy > got * 0.5 && busy < got * 1.8 + 10.0 && busy < 110.0,
        "the busy container at {busy}%, {got}% on average"
    );
    assert!(metric("userPct", &ecs_id) > busy * 0.5);
    assert!(metric("totalPct", &docker_id) < 20.0);
    let total = side["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == "stackstate.process_agent.containers.total_count")
        .unwrap();
    assert!(total[2].as_f64().unwrap() >= 2.0);
    // Topology with the identity shared by core and process agent (from the side channel: there
    // is no Docker).
    let comps: Vec<_> = side["topologies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["components"].as_array().unwrap().clone())
        .collect();
    let c = comps.iter().find(|c| c["externalId"] == format!("urn:container:docker:/ctr-host:{docker_id}")).unwrap();
    assert_eq!(c["type"]["name"], "container");
    assert_eq!(c["data"]["identifiers"][0], format!("urn:container:/ctr-host:{docker_id}"));
}

/// A local Docker Engine API on a Unix socket: `GET /containers/json` answers `list` (the
/// documented container-list JSON), `GET /containers/<id>/json` answers `inspect`; anything
/// else is a 404. Records request lines.
fn fake_docker(
    dir: &std::path::Path,
    list: String,
    inspect: String,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let sock = dir.join("docker.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { break };
            let (seen, list, inspect) = (seen2.clone(), list.clone(), inspect.clone());
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                let mut request = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if request.is_empty() {
                        request = line.trim().to_string();
                    }
                    if line == "\r\n" {
                        seen.lock().unwrap().push(request.clone());
                        let (status, body) = if request.starts_with("GET /containers/json?all=1 ") {
                            ("200 OK", list.as_str())
                        } else if request.starts_with("GET /containers/") && request.contains("/json ") {
                            ("200 OK", inspect.as_str())
                        } else {
                            ("404 Not Found", "{}")
                        };
                        let _ = write!(
                            w,
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        request.clear();
                    }
                    line.clear();
                }
            });
        }
    });
    (format!("unix://{}", sock.display()), seen)
}

#[test]
fn docker_metadata_names_images_and_ecs_task_tags() {
    let tag = format!("sts-test-{}-meta", std::process::id());
    let web_id = hex_id("web", 64);
    let task = hex_id("task2", 32);
    let mut web = TestCgroup::require(&[format!("{tag}-ecs"), format!("{tag}-ecs/{task}")], &web_id);
    let bare_id = hex_id("bare", 64);
    let mut bare = TestCgroup::require(&[format!("{tag}-docker")], &bare_id);
    web.run("import time; time.sleep(60)");
    bare.run("import time; time.sleep(60)");
    let dir = TempDir::new("docker");
    let list = format!(
        r#"[{{"Id":"{web_id}","Names":["/ecs-web-3-web-8ab1"],"Image":"nginx:1.25","ImageID":"sha256:1","Command":"nginx","Created":1700000000,
             "State":"running","Status":"Up 3 minutes (unhealthy)","Ports":[],"Labels":{{
               "com.amazonaws.ecs.cluster":"prod","com.amazonaws.ecs.container-name":"web",
               "com.amazonaws.ecs.task-arn":"arn:aws:ecs:eu-west-1:123456789012:task/prod/{task}",
               "com.amazonaws.ecs.task-definition-family":"web","com.amazonaws.ecs.task-definition-version":"3"}},
             "HostConfig":{{"NetworkMode":"bridge"}},"Mounts":[]}}]"#
    );
    let inspect = r#"{"Id":"x","State":{"Status":"running","Running":true,"StartedAt":"2023-11-14T22:15:00.000000001Z","Health":{"Status":"unhealthy","FailingStreak":3}}}"#;
    let (docker_host, seen) = fake_docker(&dir.0, list, inspect.to_string());
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", "k"),
            ("STS_HOSTNAME", "meta-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("DOCKER_HOST", &docker_host),
            ("STS_LOG_LEVEL", "debug"),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(seen.lock().unwrap().iter().any(|r| r.starts_with("GET /containers/json")), "{:?}", seen.lock().unwrap());
    let reqs = rx.requests();
    let msgs: Vec<CollectorProc> = reqs
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v1/collector")
        .map(|r| pa_proto::collector_proc(&r.body))
        .collect();
    let ctrs: Vec<_> = msgs.iter().flat_map(|m| &m.containers).collect();
    let w = ctrs.iter().find(|c| c.id == web_id).expect("described container");
    assert_eq!((w.r#type.as_str(), w.state, w.created), ("docker", 3, 1_700_000_000), "{stderr}");
    // From the inspect call: the start time; the health check's verdict (the list's status text
    // says the same: a list after the inspection keeps its own, as fresh).
    assert_eq!((w.started, w.health), (1_700_000_100, 3), "{stderr}");
    assert!(seen.lock().unwrap().iter().any(|r| r.starts_with(&format!("GET /containers/{web_id}/json"))));
    for t in [
        format!("container_id:{web_id}"),
        "container_name:ecs-web-3-web-8ab1".into(),
        "docker_image:nginx:1.25".into(),
        "image_name:nginx".into(),
        "short_image:nginx".into(),
        "image_tag:1.25".into(),
        format!("task_arn:arn:aws:ecs:eu-west-1:123456789012:task/prod/{task}"),
        "task_family:web".into(),
        "task_name:web".into(),
        "task_version:3".into(),
        "ecs_container_name:web".into(),
        "cluster_name:prod".into(),
    ] {
        assert!(w.tags.contains(&t), "missing {t} in {:?}", w.tags);
    }
    // Docker does not know the other one: still reported, from its cgroup.
    let b = ctrs.iter().find(|c| c.id == bare_id).expect("undescribed container still reported");
    assert_eq!(b.tags, [format!("container_id:{bare_id}")]);
    // Its component: from the docker pass (`/intake/`, Docker's name with its `/`) only; the
    // process agent's side channel (`/intake?`) leaves Docker's containers to it, and the
    // undescribed one in a Docker-style cgroup too (Docker answers lists here).
    let components = |prefix: &str| -> Vec<serde_json::Value> {
        reqs.iter()
            .filter(|r| r.target.starts_with(prefix))
            .flat_map(|r| r.json()["topologies"].as_array().cloned().unwrap_or_default())
            .filter(|t| t["instance"]["type"] == "container")
            .flat_map(|t| t["components"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let (pass, side) = (components("/stsAgent/intake/"), components("/stsAgent/intake?"));
    let web_urn = format!("urn:container:docker:/meta-host:{web_id}");
    let c = pass.iter().find(|c| c["externalId"] == web_urn.as_str()).unwrap_or_else(|| panic!("{pass:?}\n{stderr}"));
    assert_eq!(
        (c["data"]["name"].as_str(), c["data"]["image"].as_str(), c["data"]["state"].as_str()),
        (Some("/ecs-web-3-web-8ab1"), Some("nginx:1.25"), Some("running"))
    );
    // (Other tests' cgroups on this host may show up there, laid out for other runtimes.)
    for id in [&web_id, &bare_id] {
        assert!(
            !side.iter().any(|c| c["externalId"].as_str().is_some_and(|x| x.ends_with(id.as_str()))),
            "the side channel sends {id} as well: {side:?}"
        );
    }
}

#[test]
fn in_its_own_pid_namespace_with_host_proc_and_sys_mounted_elsewhere() {
    let tag = format!("sts-test-{}-ns", std::process::id());
    let id = hex_id("ns", 64);
    let mut ctr = TestCgroup::require(&[format!("{tag}-docker")], &id);
    let host_pid = ctr.run("import time; time.sleep(60)");
    assert!(
        Command::new("unshare").arg("--version").output().is_ok(),
        "cannot run: no unshare (util-linux) here to make the agent's pid and mount namespaces"
    );
    let root = TempDir::new("ns");
    let (hp, hs) = (root.0.join("host/proc"), root.0.join("host/sys"));
    std::fs::create_dir_all(&hp).unwrap();
    std::fs::create_dir_all(&hs).unwrap();
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    // As the ECS task runs it: a private pid namespace whose own /proc shows only itself, and
    // the host's /proc and /sys bind-mounted at HOST_PROC and HOST_SYS.
    let script = format!(
        "mount --rbind /proc {hp} && mount --rbind /sys {hs} && mount -t proc proc /proc && exec {AGENT} --once",
        hp = hp.display(),
        hs = hs.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STS_STS_URL", &url)
        .env("STS_API_KEY", "k")
        .env("STS_HOSTNAME", "ns-host")
        .env("STS_SKIP_SSL_VALIDATION", "true")
        .env("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("HOST_PROC", &hp)
        .env("HOST_SYS", &hs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reqs = rx.requests();
    let msgs: Vec<CollectorProc> = reqs
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v1/collector")
        .map(|r| pa_proto::collector_proc(&r.body))
        .collect();
    let procs: Vec<_> = msgs.iter().flat_map(|m| &m.processes).collect();
    // Host pids, not the namespace's: the process this test started is there under its host pid.
    let p = procs.iter().find(|p| p.pid == host_pid as i32).unwrap_or_else(|| {
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        panic!("host pid {host_pid} not reported; reported {pids:?}\n{stderr}")
    });
    assert_eq!(p.container_id, id);
    assert!(msgs.iter().flat_map(|m| &m.containers).any(|c| c.id == id), "container from HOST_SYS cgroups");
    assert!(procs.len() > 3, "the host's processes, not just the namespace's");
    // The agent's own entry is its host pid too.
    let side = reqs.iter().find(|r| r.target.starts_with("/stsAgent/intake?")).unwrap().json();
    let ident = side["topologies"][0]["components"][0]["data"]["identifiers"][0].as_str().unwrap().to_string();
    let agent_pid: i32 = ident.split(':').nth(3).unwrap().parse().unwrap();
    assert!(agent_pid > 1, "agent identified by its host pid, got {ident}");
}

#[test]
fn ecs_agent_api_tags_containers_by_task() {
    let tag = format!("sts-test-{}-ecsapi", std::process::id());
    let id = hex_id("ecsapi", 64);
    let mut ctr = TestCgroup::require(&[format!("{tag}-docker")], &id);
    ctr.run("import time; time.sleep(60)");
    let dir = TempDir::new("ecsapi");
    // Docker knows the container but carries no ECS labels on it.
    let list = format!(
        r#"[{{"Id":"{id}","Names":["/api-1"],"Image":"api:5","Created":1700000001,"State":"running","Status":"Up 1 minute","Labels":{{}}}}]"#
    );
    let (docker_host, _) = fake_docker(&dir.0, list, "{}".into());
    let ecs = common::fake_ecs_agent(
        r#"{"Cluster":"stage","ContainerInstanceArn":"arn:aws:ecs:eu-west-1:123456789012:container-instance/stage/1","Version":"Amazon ECS Agent - v1.80.0"}"#.into(),
        format!(
            r#"{{"Tasks":[{{"Arn":"arn:aws:ecs:eu-west-1:123456789012:task/stage/t1","DesiredStatus":"RUNNING","KnownStatus":"RUNNING",
               "Family":"api","Version":"5","Containers":[{{"DockerId":"{id}","DockerName":"ecs-api-5-api-1","Name":"api"}}]}}]}}"#
        ),
    );
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let out = run_agent(
        &["--once"],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", "k"),
            ("STS_HOSTNAME", "ecs-host"),
            ("STS_SKIP_SSL_VALIDATION", "true"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("DOCKER_HOST", &docker_host),
            ("STS_ECS_AGENT_URL", &ecs),
            ("STS_LOG_LEVEL", "debug"),
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let msgs: Vec<CollectorProc> = rx
        .requests()
        .iter()
        .filter(|r| r.target == "/stsAgent/api/v1/collector")
        .map(|r| pa_proto::collector_proc(&r.body))
        .collect();
    let c = msgs.iter().flat_map(|m| &m.containers).find(|c| c.id == id).expect("container reported");
    for t in [
        "task_arn:arn:aws:ecs:eu-west-1:123456789012:task/stage/t1",
        "task_family:api",
        "task_name:api",
        "task_version:5",
        "ecs_container_name:api",
        "cluster_name:stage",
        "container_name:api-1",
    ] {
        assert!(c.tags.iter().any(|x| x == t), "missing {t} in {:?}\n{stderr}", c.tags);
    }
}
