//! The docker check's pass against a real Docker Engine, decoded at a real TLS receiver: an ECS
//! task laid out as ECS lays it out (`--cgroup-parent /<ecs>/<task id>`, the `com.amazonaws.ecs.*`
//! labels, the ECS agent's introspection API on loopback), with its CPU quota (half a core) and
//! memory limit on the task's cgroup, not the containers'. In it:
//! - a busy container (a busy loop, 16 MB held): `docker.cpu.usage` ≈ the task's half core,
//!   `docker.cpu.throttled` > 0, `docker.cpu.limit` 50, `docker.mem.limit` the task's,
//!   `docker.mem.rss` within 5 % of its `memory.stat`; restarted in place (`docker restart`)
//!   halfway: every point stays sane (no negative rate, no spike) and its figures are non-zero
//!   after the restart;
//! - a container that writes a known number of bytes with `dd oflag=direct`: `docker.io.write_*`
//!   summed over the passes match its `blkio.throttle.*` files, under `device:<disk>`;
//! - an exited container, and one stopped while the agent runs: counted in
//!   `docker.containers.stopped`, in the topology as `exited`;
//! - outside the task, a container on a Docker bridge network (`docker.net.*` under its name)
//!   and one in the host's network namespace (no `docker.net.*`).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "support/engine.rs"]
mod engine;
use engine::*;
#[path = "support/test_cgroup.rs"]
mod test_cgroup;

/// Burns CPU (the task's quota caps it) and holds 16 MB in a shell variable.
const BURN: &str = "v=$(head -c 16000000 /dev/zero | tr '\\000' x); yes > /dev/null";
const INTERVAL_S: f64 = 2.0;

/// A decoded series point: (metric, value, tags, device).
#[derive(Debug, Clone)]
struct Point {
    metric: String,
    value: f64,
    tags: Vec<String>,
    device: Option<String>,
    interval: u64,
    kind: String,
    source_type: String,
}

fn points(reqs: &[Request]) -> Vec<Point> {
    reqs.iter()
        .filter(|r| r.target.contains("/api/v1/series"))
        .flat_map(|r| r.json()["series"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["metric"].as_str().is_some_and(|m| m.starts_with("docker.")))
        .map(|s| Point {
            metric: s["metric"].as_str().unwrap().to_string(),
            value: s["points"][0][1].as_f64().unwrap(),
            tags: s["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect(),
            device: s["device"].as_str().map(String::from),
            interval: s["interval"].as_u64().unwrap(),
            kind: s["type"].as_str().unwrap().to_string(),
            source_type: s["source_type_name"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

fn of<'a>(ps: &'a [Point], metric: &str, id: &str) -> Vec<&'a Point> {
    let tag = format!("container_id:{id}");
    ps.iter().filter(|p| p.metric == metric && p.tags.contains(&tag)).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `key value` from a cgroup file.
fn stat(path: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()).unwrap()
}

/// `MAJ:MIN` of the disk behind Docker's data root, and its `/dev` path.
fn docker_disk() -> (String, String) {
    let o = std::process::Command::new("df").args(["--output=source", "/var/lib/docker"]).output().unwrap();
    let dev = String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().trim().to_string();
    assert!(dev.starts_with("/dev/"), "cannot run: Docker's data root is not on a block device ({dev})");
    let o = std::process::Command::new("lsblk").args(["-dno", "MAJ:MIN", &dev]).output().unwrap();
    (String::from_utf8_lossy(&o.stdout).trim().to_string(), dev)
}

#[test]
fn docker_series_counts_and_topology_of_an_ecs_task() {
    require_engine();
    assert!(std::path::Path::new("/sys/fs/cgroup/cpu").is_dir(), "cannot run: no cgroup v1 cpu controller");
    let img = Image::busybox();
    let task_id = test_cgroup::hex_id("dockertask", 32);
    let task = TaskCgroup(format!("/{}/{task_id}", unique("ecs")));
    let (disk_num, disk_dev) = docker_disk();
    let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/prod/{task_id}");
    let labels = |name: &str| -> Vec<String> {
        [
            ("com.amazonaws.ecs.cluster", "prod"),
            ("com.amazonaws.ecs.container-name", name),
            ("com.amazonaws.ecs.task-arn", arn.as_str()),
            ("com.amazonaws.ecs.task-definition-family", "shop"),
            ("com.amazonaws.ecs.task-definition-version", "7"),
        ]
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
    };
    let run = |name: &str, extra: &[&str], script: &str| {
        let mut opts: Vec<String> = vec!["--network".into(), "none".into(), "--cgroup-parent".into(), task.0.clone()];
        opts.extend(labels(name));
        opts.extend(extra.iter().map(|s| s.to_string()));
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        Ctr::run_with(&img, name, &opts, script)
    };
    let busy = run("busy", &[], BURN);
    // The task's limits, as ECS sets them: half a core, 96 MiB (below the container's own 128 MiB).
    let cpu_task = format!("/sys/fs/cgroup/cpu{}", task.0);
    std::fs::write(format!("{cpu_task}/cpu.cfs_quota_us"), "50000").unwrap();
    std::fs::write(format!("/sys/fs/cgroup/memory{}/memory.limit_in_bytes", task.0), "100663296").unwrap();
    // This kernel counts `blkio.throttle.*` only for devices with a throttle rule: a generous one
    // (1 GB/s) so the writes are counted and not slowed.
    let write_rule = format!("{disk_dev}:1gb");
    const BLOCKS: u64 = 2560; // 10 MiB in 4 KiB direct writes, once the test says so
    let io = run(
        "io",
        &["--device-write-bps", &write_rule],
        &format!(
            "while [ ! -e /go ]; do sleep 0.1; done; dd if=/dev/zero of=/data bs=4096 count={BLOCKS} oflag=direct; exec sleep 600"
        ),
    );
    let done = run("done", &[], "true");
    // Stopped while the agent runs.
    let stopper = run("stopper", &[], "exec sleep 600");
    // Outside the task: one on a Docker bridge network, one in the host's network namespace.
    let network = Network::create("net");
    let bridged = Ctr::run_in(&img, "bridged", &network.0, "exec sleep 600");
    let host_net = Ctr::run_in(&img, "hostnet", "host", "exec sleep 600");
    docker_ok(&["wait", &done.name]);
    let ecs = common::fake_ecs_agent(
        r#"{"Cluster":"prod","ContainerInstanceArn":"arn:aws:ecs:eu-west-1:123456789012:container-instance/prod/1","Version":"Amazon ECS Agent - v1.80.0"}"#.into(),
        format!(
            r#"{{"Tasks":[{{"Arn":"{arn}","DesiredStatus":"RUNNING","KnownStatus":"RUNNING","Family":"shop","Version":"7","Containers":[
               {{"DockerId":"{}","DockerName":"{}","Name":"busy"}},{{"DockerId":"{}","DockerName":"{}","Name":"io"}},
               {{"DockerId":"{}","DockerName":"{}","Name":"done"}}]}}]}}"#,
            busy.id, busy.name, io.id, io.name, done.id, done.name
        ),
    );
    let rx = Receiver::start(true, vec![202]);
    let dir = TempDir::new("dockerca");
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, &rx.pki.as_ref().unwrap().ca_pem).unwrap();
    let url = rx.url("/stsAgent");
    let agent = spawn_agent(
        &[],
        &[
            ("STS_STS_URL", &url),
            ("STS_API_KEY", "k"),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
            ("STS_HOSTNAME", "docker-host"),
            ("STS_ECS_AGENT_URL", &ecs),
            ("STS_DOCKER_CHECK_INTERVAL", "2"),
            // Less often than the pass: the passes do not wait for its cycles (they stay 2 s
            // apart, which the sums below rely on) and read alone
            // (`every_pass_shares_a_process_cycle` has the other case).
            ("STS_PROCESS_CHECK_INTERVAL", "3"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("STS_LOG_LEVEL", "debug"),
        ],
    );
    let agent = Logged::new(agent);
    // The writes start once the agent has measured the container twice (its rates are primed).
    let start = Instant::now();
    while of(&points(&rx.requests()), "docker.mem.rss", &io.id).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "the io container is not measured");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The task cgroup's throttling counters (where the task's quota throttles), read right after
    // a pass's series arrived: between two such reads, the passes' rates × interval must add up
    // to what the counters gained.
    let task_cpu_stat = format!("{cpu_task}/cpu.stat");
    let after_a_pass = |from: usize| -> (usize, u64, u64) {
        let start = Instant::now();
        loop {
            let reqs = rx.requests();
            if let Some(i) =
                (from..reqs.len()).find(|&i| !of(&points(&reqs[i..=i]), "docker.cpu.throttled", &busy.id).is_empty())
            {
                return (i, stat(&task_cpu_stat, "throttled_time"), stat(&task_cpu_stat, "nr_throttled"));
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no docker.cpu.throttled of the busy container");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let throttled_from = after_a_pass(rx.requests().len());
    docker_ok(&["exec", &io.name, "sh", "-c", ": > /go"]);
    std::thread::sleep(Duration::from_secs(10));
    let throttled_to = after_a_pass(rx.requests().len());
    // Restarted in place: the same id, a new cgroup (its counters from 0).
    let before_restart = rx.requests().len();
    docker_ok(&["restart", "-t", "1", &busy.name]);
    docker_ok(&["stop", "-t", "1", &stopper.name]);
    let restarted_at = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    let busy_rss = stat(&format!("/sys/fs/cgroup/memory{}/{}/memory.stat", task.0, busy.id), "total_rss");
    let stderr = agent.stop();
    let reqs = rx.requests();
    let all = points(&reqs);
    let ctx = || format!("{} requests\n{stderr}", reqs.len());
    assert!(restarted_at.elapsed() >= Duration::from_secs(10));

    // Wire form: gauges, interval 0, "System"; no negative value anywhere.
    assert!(!all.is_empty(), "no docker.* series\n{}", ctx());
    for p in &all {
        assert_eq!((p.kind.as_str(), p.interval, p.source_type.as_str()), ("gauge", 0, "System"), "{p:?}");
        assert!(p.value >= 0.0 && p.value.is_finite(), "{p:?}");
        let mut sorted = p.tags.clone();
        sorted.sort();
        assert_eq!(p.tags, sorted, "tags sorted");
    }

    // Tags: the tagger's, with the ECS task's.
    let usage = of(&all, "docker.cpu.usage", &busy.id);
    let tags = &usage.first().unwrap_or_else(|| panic!("no docker.cpu.usage of the busy container\n{}", ctx())).tags;
    for t in [
        format!("container_id:{}", busy.id),
        format!("container_name:{}", busy.name),
        format!("docker_image:{}", img.0),
        format!("image_name:{}", img.0.trim_end_matches(":latest")),
        format!("short_image:{}", img.0.trim_end_matches(":latest")),
        "image_tag:latest".into(),
        format!("task_arn:{arn}"),
        "task_family:shop".into(),
        "task_name:shop".into(),
        "task_version:7".into(),
        "ecs_container_name:busy".into(),
        "cluster_name:prod".into(),
        "ecs_cluster_name:prod".into(),
    ] {
        assert!(tags.contains(&t), "missing {t} in {tags:?}");
    }
    assert_eq!(tags.len(), 13, "{tags:?}");

    // CPU before the restart: the task's half core, throttled (the quota is the task's only).
    let split = |metric: &str, id: &str| -> (Vec<f64>, Vec<f64>) {
        let before: Vec<Point> = points(&reqs[..before_restart]);
        let b: Vec<f64> = of(&before, metric, id).iter().map(|p| p.value).collect();
        let a: Vec<f64> = of(&points(&reqs[before_restart..]), metric, id).iter().map(|p| p.value).collect();
        (b, a)
    };
    let (cpu_before, cpu_after) = split("docker.cpu.usage", &busy.id);
    assert!(cpu_before.len() >= 4, "{cpu_before:?}\n{}", ctx());
    let steady = median(cpu_before[1..].to_vec());
    assert!((35.0..=52.0).contains(&steady), "docker.cpu.usage {cpu_before:?}: half a core");
    // Throttling: the rates × interval of the passes between the two reads against what the task
    // cgroup's `cpu.stat` gained (`throttled_time` in ns, as 1e7 ns a second per
    // `docker.cpu.throttled.time` unit; `nr_throttled` periods).
    let ((ia, time_a, nr_a), (ib, time_b, nr_b)) = (throttled_from, throttled_to);
    let window = points(&reqs[ia + 1..=ib]);
    let summed = |metric: &str| -> (f64, usize) {
        let v: Vec<f64> = of(&window, metric, &busy.id).iter().map(|p| p.value).collect();
        (v.iter().sum::<f64>() * INTERVAL_S, v.len())
    };
    let ((time, n_time), (periods, n_periods)) = (summed("docker.cpu.throttled.time"), summed("docker.cpu.throttled"));
    let (want_time, want_periods) = ((time_b - time_a) as f64 / 1e7, (nr_b - nr_a) as f64);
    assert!(n_time >= 4 && n_periods == n_time, "{n_time} passes, {n_periods}\n{}", ctx());
    eprintln!(
        "throttling over {n_time} passes: time {time:.1} vs {want_time:.1}, periods {periods:.1} vs {want_periods:.1}"
    );
    assert!(want_periods >= 40.0, "the premise: the task was throttled ({want_periods} periods)");
    assert!(
        (time - want_time).abs() <= want_time * 0.12,
        "docker.cpu.throttled.time × interval {time} over {n_time} passes, cpu.stat throttled_time/1e7 {want_time}"
    );
    assert!(
        (periods - want_periods).abs() <= want_periods * 0.12,
        "docker.cpu.throttled × interval {periods} over {n_periods} passes, cpu.stat nr_throttled {want_periods}"
    );
    let limits: Vec<f64> = of(&all, "docker.cpu.limit", &busy.id).iter().map(|p| p.value).collect();
    assert!(!limits.is_empty() && limits.iter().all(|l| *l == 50.0), "docker.cpu.limit {limits:?}: the task's");
    // Memory: the task's limit (the least of the hierarchy), RSS as its memory.stat says.
    let mem_limits: Vec<f64> = of(&all, "docker.mem.limit", &busy.id).iter().map(|p| p.value).collect();
    assert!(mem_limits.iter().all(|l| *l == 100_663_296.0), "docker.mem.limit {mem_limits:?}");
    let rss = of(&all, "docker.mem.rss", &busy.id).last().unwrap().value;
    assert!((rss - busy_rss as f64).abs() <= busy_rss as f64 * 0.05, "docker.mem.rss {rss}, memory.stat {busy_rss}");
    assert!(rss >= 4e6, "{rss}");

    // The restart: no point of the old cgroup's counters against the new one (no spike, no
    // negative), and the figures after it are the busy container's again.
    assert!(cpu_after.len() >= 3, "docker.cpu.usage after the restart {cpu_after:?}\n{}", ctx());
    assert!(cpu_after.iter().all(|v| *v <= 55.0), "after the restart {cpu_after:?}");
    assert!(cpu_after[cpu_after.len() - 2..].iter().all(|v| *v > 20.0), "after the restart {cpu_after:?}");
    let (_, rss_after) = split("docker.mem.rss", &busy.id);
    assert!(rss_after.last().is_some_and(|r| *r >= 4e6), "docker.mem.rss after the restart {rss_after:?}");
    let (_, uptime_after) = split("docker.uptime", &busy.id);
    assert!(uptime_after.last().is_some_and(|u| *u > 0.0 && *u < 14.0), "docker.uptime after {uptime_after:?}");
    // The pass that first measured it after the restart started its rates afresh: its memory, no
    // CPU rate (whether the process check's cycle or the pass noticed the new cgroup first).
    let afresh = reqs[before_restart..].iter().any(|r| {
        let ps = points(std::slice::from_ref(r));
        !of(&ps, "docker.mem.rss", &busy.id).is_empty() && of(&ps, "docker.cpu.usage", &busy.id).is_empty()
    });
    assert!(afresh, "no pass after the restart without rates (the old cgroup's counters against the new)\n{}", ctx());

    // I/O: the bytes and writes dd made, summed over the passes (rate × interval), against the
    // container's blkio files, under the disk's name.
    let blkio = |file: &str, op: &str| -> u64 {
        let path = format!("/sys/fs/cgroup/blkio{}/{}/{file}", task.0, io.id);
        let s = std::fs::read_to_string(&path).unwrap();
        s.lines().find_map(|l| l.strip_prefix(&format!("{disk_num} {op} "))?.trim().parse().ok()).unwrap_or(0)
    };
    let (written, writes) =
        (blkio("blkio.throttle.io_service_bytes", "Write"), blkio("blkio.throttle.io_serviced", "Write"));
    assert!(written >= BLOCKS * 4096, "the premise: blkio counted the writes ({written})");
    let io_points = of(&all, "docker.io.write_bytes", &io.id);
    let disk_name = io_points.iter().find_map(|p| p.device.clone()).unwrap_or_else(|| panic!("{io_points:?}"));
    assert!(!disk_name.contains(':'), "a device name, not a number: {disk_name}");
    assert!(io_points.iter().all(|p| p.tags.contains(&format!("device_name:{disk_name}"))));
    assert!(!io_points.iter().any(|p| p.tags.iter().any(|t| t.starts_with("device:"))), "device is a field");
    let sum = |metric: &str| -> f64 {
        of(&all, metric, &io.id)
            .iter()
            .filter(|p| p.device.as_deref() == Some(&disk_name))
            .map(|p| p.value)
            .sum::<f64>()
            * INTERVAL_S
    };
    let (bytes, ops) = (sum("docker.io.write_bytes"), sum("docker.io.write_operations"));
    assert!((bytes - written as f64).abs() <= written as f64 * 0.05, "write_bytes × interval {bytes}, blkio {written}");
    assert!((ops - writes as f64).abs() <= writes as f64 * 0.05, "write_operations × interval {ops}, blkio {writes}");

    // Counts: per low-card group (the ECS container name tells them apart), and the totals.
    let count = |metric: &str, name: &str| -> Vec<f64> {
        all.iter()
            .filter(|p| p.metric == metric && p.tags.contains(&format!("ecs_container_name:{name}")))
            .inspect(|p| assert!(!p.tags.iter().any(|t| t.starts_with("container_id:") || t.starts_with("task_arn:"))))
            .map(|p| p.value)
            .collect()
    };
    assert_eq!(count("docker.containers.stopped", "done").last(), Some(&1.0), "{}", ctx());
    assert_eq!(count("docker.containers.running", "done").last(), Some(&0.0));
    assert_eq!(count("docker.containers.running", "io").last(), Some(&1.0));
    assert_eq!(count("docker.containers.running", "stopper").first(), Some(&1.0));
    assert_eq!(count("docker.containers.stopped", "stopper").last(), Some(&1.0), "stopped while running");
    let totals: Vec<&Point> = all.iter().filter(|p| p.metric == "docker.containers.stopped.total").collect();
    assert!(totals.last().is_some_and(|p| p.tags.is_empty() && p.value >= 1.0), "{totals:?}");
    // The exited container has no per-container series.
    assert!(of(&all, "docker.mem.rss", &done.id).is_empty());

    // Network: per interface, the bridged container's eth0 under its Docker network; none for the
    // host-network container (its figures would be the host's, not its own).
    let net = of(&all, "docker.net.bytes_rcvd", &bridged.id);
    assert!(
        !net.is_empty() && net.iter().all(|p| p.tags.contains(&format!("docker_network:{}", network.0))),
        "{net:?}\n{}",
        ctx()
    );
    assert!(!of(&all, "docker.mem.rss", &host_net.id).is_empty(), "the host-network container is measured");
    assert!(
        of(&all, "docker.net.bytes_rcvd", &host_net.id).is_empty()
            && of(&all, "docker.net.bytes_sent", &host_net.id).is_empty()
    );

    // The process check still reports running containers only (Docker is now listed in every
    // state): the busy one, not the exited one.
    let reported: Vec<String> = reqs
        .iter()
        .filter(|r| r.target.ends_with("/api/v1/collector"))
        .flat_map(|r| pa_proto::collector_proc(&r.body).containers)
        .map(|c| c.id)
        .collect();
    assert!(reported.contains(&busy.id), "{reported:?}\n{}", ctx());
    assert!(!reported.contains(&done.id), "the exited container in the process agent's containers");

    // Topology: every container Docker lists, the exited one as `exited`, merged with the process
    // agent's container by its identifier.
    let components: Vec<serde_json::Value> = reqs
        .iter()
        .filter(|r| r.target.contains("/intake/"))
        .map(|r| r.json())
        .flat_map(|v| v["topologies"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["instance"] == serde_json::json!({"type": "container", "url": "agents"}))
        .flat_map(|t| t["components"].as_array().cloned().unwrap_or_default())
        .collect();
    // One producer per component: the docker pass (`/intake/`) sends Docker's containers; the
    // process agent's side channel (`/intake?`) sends none of the same external ids in the same
    // instance (it has its own data for them: two producers would flip the component).
    let ids_from = |prefix: &str| -> std::collections::BTreeSet<String> {
        reqs.iter()
            .filter(|r| r.target.starts_with(prefix))
            .flat_map(|r| r.json()["topologies"].as_array().cloned().unwrap_or_default())
            .filter(|t| t["instance"] == serde_json::json!({"type": "container", "url": "agents"}))
            .flat_map(|t| t["components"].as_array().cloned().unwrap_or_default())
            .map(|c| c["externalId"].as_str().unwrap().to_string())
            .collect()
    };
    let (from_pass, from_side) = (ids_from("/stsAgent/intake/"), ids_from("/stsAgent/intake?"));
    let both: Vec<&String> = from_pass.intersection(&from_side).collect();
    assert!(both.is_empty(), "sent by both the docker pass and the side channel: {both:?}");
    assert!(from_pass.contains(&format!("urn:container:docker:/docker-host:{}", busy.id)), "{from_pass:?}");
    assert!(reqs.iter().any(|r| r.target.starts_with("/stsAgent/intake?")), "the side channel was sent");
    let component = |c: &Ctr| {
        components
            .iter()
            .rfind(|x| x["externalId"] == format!("urn:container:docker:/docker-host:{}", c.id).as_str())
            .unwrap_or_else(|| panic!("no component of {}\n{}", c.name, ctx()))
            .clone()
    };
    let d = component(&done);
    assert_eq!(d["data"]["state"], "exited");
    assert_eq!(d["data"]["name"], format!("/{}", done.name).as_str());
    assert_eq!(d["data"]["image"], img.0.as_str());
    assert_eq!(d["data"]["type"], "docker");
    assert_eq!(d["data"]["labels"], serde_json::json!(["runtime:docker"]));
    assert_eq!(d["data"]["identifiers"], serde_json::json!([format!("urn:container:/docker-host:{}", done.id)]));
    assert!(d["sourceProperties"].is_null());
    assert_eq!(component(&busy)["data"]["state"], "running");
    assert_eq!(component(&stopper)["data"]["state"], "exited", "the last topology after its stop");
    let by_metric: BTreeMap<&str, usize> = of_all_metrics(&all, &busy.id);
    for m in
        ["docker.cpu.shares", "docker.thread.count", "docker.mem.cache", "docker.container.open_fds", "docker.uptime"]
    {
        assert!(by_metric.contains_key(m), "{m} missing: {by_metric:?}");
    }
}

fn of_all_metrics<'a>(ps: &'a [Point], id: &str) -> BTreeMap<&'a str, usize> {
    let tag = format!("container_id:{id}");
    let mut m = BTreeMap::new();
    for p in ps.iter().filter(|p| p.tags.contains(&tag)) {
        *m.entry(p.metric.as_str()).or_default() += 1;
    }
    m
}

/// The agent, its stdout drained and its stderr kept; killed and reaped on drop.
struct Logged {
    agent: Agent,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Logged {
    fn new(mut child: std::process::Child) -> Logged {
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut std::io::BufReader::new(out), &mut std::io::sink()));
        let err = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = e2.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        Logged { agent: Agent(child), stderr }
    }

    /// Stops the agent; its log so far.
    fn stop(self) -> String {
        drop(self.agent);
        std::thread::sleep(Duration::from_millis(100));
        let s = self.stderr.lock().unwrap().clone();
        s
    }
}

/// The process check every 2 s, the pass every 3 s: each pass waits for the next process cycle
/// and measures from that cycle's reads (none of its own), and the passes still come every 3 s
/// on average.
#[test]
fn every_pass_shares_a_process_cycle() {
    require_engine();
    let img = Image::busybox();
    let c = Ctr::run_with(&img, "grid", &["--network", "none"], "exec sleep 600");
    let agent = Logged::new(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", "http://127.0.0.1:9/sts"),
            // Not a letter the log's masking would hide everywhere.
            ("STS_API_KEY", "grid-test-api-key-0123"),
            ("STS_HOSTNAME", "grid-host"),
            ("STS_ECS_AGENT_URL", "http://127.0.0.1:9"),
            ("STS_DOCKER_CHECK_INTERVAL", "3"),
            ("STS_PROCESS_CHECK_INTERVAL", "2"),
            ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
            ("STS_LOG_LEVEL", "debug"),
        ],
    ));
    std::thread::sleep(Duration::from_secs(20));
    let stderr = agent.stop();
    // `docker pass: N containers measured (M from the process check's reads), …`
    let passes: Vec<(usize, usize)> = stderr
        .lines()
        .filter_map(|l| l.split("docker pass: ").nth(1))
        .filter_map(|l| {
            let (n, rest) = l.split_once(" containers measured (")?;
            let (m, _) = rest.split_once(" from the process check's reads)")?;
            Some((n.parse().ok()?, m.parse().ok()?))
        })
        .collect();
    let measuring: Vec<_> = passes.iter().filter(|(n, _)| *n > 0).collect();
    assert!(measuring.len() >= 4, "passes {passes:?} (container {})\n{stderr}", c.id);
    assert!(measuring.iter().all(|(n, m)| n == m), "a pass read alone: {passes:?}");
    // About one every 3 s over 20 s (0, then 6 or 7 more), not one per process cycle (11).
    assert!((5..=8).contains(&passes.len()), "{} passes: {passes:?}", passes.len());
}

/// Docker answers lists, then only errors: the counts and the topology stop once the list is not
/// current (said once in the log), rather than going out from the last list indefinitely.
#[test]
fn counts_and_topology_stop_when_docker_stops_answering() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new("deaddocker");
    let sock = dir.0.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let broken = std::sync::Arc::new(AtomicBool::new(false));
    let broken2 = broken.clone();
    let id = "d".repeat(64);
    let list = format!(
        r#"[{{"Id":"{id}","Names":["/gone"],"Image":"busybox:1","Created":1700000000,"State":"exited","Status":"Exited (0)","Labels":{{}},"Mounts":[]}}]"#
    );
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { break };
            let (broken, list) = (broken2.clone(), list.clone());
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let (mut line, mut first) = (String::new(), String::new());
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if first.is_empty() {
                        first = line.clone();
                    } else if line == "\r\n" {
                        let (status, body) = if broken.load(Ordering::SeqCst) {
                            ("500 Internal Server Error", r#"{"message":"down"}"#.to_string())
                        } else if first.starts_with("GET /containers/json") {
                            ("200 OK", list.clone())
                        } else {
                            ("404 Not Found", "{}".to_string())
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = w.write_all(format!("{head}{body}").as_bytes());
                        first.clear();
                    }
                    line.clear();
                }
            });
        }
    });
    let agent = Logged::new(spawn_agent(
        &[],
        &[
            ("STS_STS_URL", "http://127.0.0.1:9/sts"),
            ("STS_API_KEY", "dead-docker-test-key-0123"),
            ("STS_HOSTNAME", "dead-host"),
            ("STS_ECS_AGENT_URL", "http://127.0.0.1:9"),
            ("DOCKER_HOST", &format!("unix://{}", sock.display())),
            ("STS_DOCKER_CHECK_INTERVAL", "1"),
            ("STS_PROCESS_CHECK_INTERVAL", "1"),
            ("STS_LOG_LEVEL", "debug"),
        ],
    ));
    std::thread::sleep(Duration::from_secs(4));
    broken.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(6));
    let stderr = agent.stop();
    // `docker pass: N containers measured (…), S series, C topology components`
    let pass = |l: &str| -> Option<(usize, usize)> {
        let rest = l.split("docker pass: ").nth(1)?;
        let (_, rest) = rest.split_once("reads), ")?;
        let (series, rest) = rest.split_once(" series, ")?;
        let (comps, _) = rest.split_once(" topology")?;
        Some((series.parse().ok()?, comps.parse().ok()?))
    };
    let lines: Vec<&str> = stderr.lines().collect();
    let stale_at =
        lines.iter().position(|l| l.contains("container list is not current")).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(stderr.matches("container list is not current").count(), 1, "said once\n{stderr}");
    let before: Vec<_> = lines[..stale_at].iter().filter_map(|l| pass(l)).collect();
    let after: Vec<_> = lines[stale_at..].iter().filter_map(|l| pass(l)).collect();
    // Listed: the totals and the one group's counts (4 series), its component.
    assert!(before.iter().any(|&(s, c)| s == 4 && c == 1), "{before:?}\n{stderr}");
    assert!(after.len() >= 3, "the passes go on: {after:?}\n{stderr}");
    assert!(after.iter().all(|&(s, c)| s == 0 && c == 0), "counts or topology from an old list: {after:?}\n{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
}

/// `--once`: the pass runs twice, a second apart (a rate needs two samples), and sends from the
/// second: the busy container's CPU rate, its memory, the counts and the topology.
#[test]
fn once_sends_the_second_pass() {
    require_engine();
    let img = Image::busybox();
    let c = Ctr::run_with(&img, "once", &["--network", "none", "--cpus", "0.3"], BURN);
    std::thread::sleep(Duration::from_millis(500));
    let out = run_agent(
        &["--once"],
        &[("STS_HOSTNAME", "once-host"), ("STS_ECS_AGENT_URL", "http://127.0.0.1:9")],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    let docker_series: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["endpoint"] == "/api/v1/series")
        .filter(|l| l["payload"]["series"][0]["metric"].as_str().is_some_and(|m| m.starts_with("docker.")))
        .collect();
    assert_eq!(docker_series.len(), 1, "one docker pass sent (the first only primes)\n{stderr}");
    let tag = format!("container_id:{}", c.id);
    let find = |metric: &str| {
        docker_series[0]["payload"]["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metric"] == metric && s["tags"].as_array().unwrap().iter().any(|t| *t == tag.as_str()))
            .map(|s| s["points"][0][1].as_f64().unwrap())
    };
    let cpu = find("docker.cpu.usage").unwrap_or_else(|| panic!("no docker.cpu.usage\n{stderr}"));
    assert!((15.0..=33.0).contains(&cpu), "docker.cpu.usage {cpu}: 0.3 of a core, busy");
    assert!(find("docker.mem.rss").is_some_and(|r| r >= 4e6));
    assert_eq!(find("docker.cpu.limit"), Some(30.0));
    let topology = lines
        .iter()
        .filter(|l| l["endpoint"] == "/intake/")
        .find(|l| l["payload"]["topologies"][0]["instance"]["type"] == "container")
        .unwrap_or_else(|| panic!("no container topology\n{stderr}"));
    let ids: Vec<&str> = topology["payload"]["topologies"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["data"]["containerId"].as_str())
        .collect();
    assert!(ids.contains(&c.id.as_str()), "{ids:?}");
}

/// The v2 column against the real kernel: the host's cgroup2 tree as `HOST_SYS/fs/cgroup` (the
/// whole hierarchy on a v2 host, the `unified` one on a hybrid host, bind-mounted in a private
/// mount namespace as an ECS task mounts `HOST_SYS`). CPU comes from the container's `cpu.stat`
/// (`usage_usec`); memory only where the tree has the memory controller — on a hybrid host it has
/// not, and then no `docker.mem.*` is sent rather than zeros.
#[test]
fn the_v2_tree_gives_cpu_from_cpu_stat() {
    require_engine();
    let v2 = cgroup2_tree();
    let memory = std::fs::read_to_string(format!("{v2}/cgroup.controllers")).unwrap().contains("memory");
    let img = Image::busybox();
    let c = Ctr::run_with(&img, "v2", &["--network", "none", "--cpus", "0.3"], BURN);
    let sys = TempDir::new("v2dockersys");
    let cg = sys.0.join("fs/cgroup");
    std::fs::create_dir_all(&cg).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let script = format!("mount --bind {v2} {} && exec {AGENT} --once", cg.display());
    let out = run_agent_under(
        &["unshare", "--mount", "sh", "-c", &script],
        &[
            ("STS_HOSTNAME", "v2-host"),
            ("HOST_SYS", sys.0.to_str().unwrap()),
            ("STS_ECS_AGENT_URL", "http://127.0.0.1:9"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("containers: cgroup v2"), "HOST_SYS/fs/cgroup is the v2 tree\n{stderr}");
    let tag = format!("container_id:{}", c.id);
    let series: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["endpoint"] == "/api/v1/series")
        .flat_map(|l| l["payload"]["series"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["tags"].as_array().unwrap().iter().any(|t| *t == tag.as_str()))
        .collect();
    let find = |m: &str| series.iter().find(|s| s["metric"] == m).map(|s| s["points"][0][1].as_f64().unwrap());
    let cpu = find("docker.cpu.usage").unwrap_or_else(|| panic!("no docker.cpu.usage\n{stderr}"));
    assert!((15.0..=33.0).contains(&cpu), "docker.cpu.usage {cpu} from cpu.stat: 0.3 of a core");
    let user = find("docker.cpu.user").unwrap();
    assert!(user > 5.0 && user <= cpu + 1.0, "docker.cpu.user {user}");
    assert!(find("docker.uptime").is_some_and(|u| u > 0.0));
    assert!(find("docker.container.open_fds").is_some_and(|n| n >= 3.0));
    if memory {
        assert!(find("docker.mem.rss").is_some_and(|r| r >= 4e6), "{series:?}");
    } else {
        assert!(!series.iter().any(|s| s["metric"].as_str().unwrap().starts_with("docker.mem.")), "{series:?}");
    }
}

/// Runs `argv` (which execs the agent) to completion with a clean environment and `env`.
fn run_agent_under(argv: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    wait_with_timeout(cmd.spawn().unwrap(), Duration::from_secs(60))
}
