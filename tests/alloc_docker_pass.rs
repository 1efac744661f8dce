//! A steady-state docker pass (sample the containers' cgroups, compute the `docker.*` series,
//! the counts and the topology, encode both bodies) performs no heap allocation, whether it
//! reads the cgroup files itself or shares the process check's reads of the same moment.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
#[path = "support/test_cgroup.rs"]
mod test_cgroup;
use std::collections::HashMap;
use sts_agent::app::{DockerCheck, ProcessCheck};
use sts_agent::config::Config;
use sts_agent::parse::docker::ContainerMeta;
use sts_agent::sources::docker::Metadata;

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_docker_pass_allocates_nothing() {
    let env: HashMap<String, String> = [("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    // A Docker-style cgroup with a process in it, described as Docker would (running).
    let id = test_cgroup::hex_id("allocdocker", 64);
    let mut ctr = test_cgroup::TestCgroup::require(&[format!("sts-test-{}-docker", std::process::id())], &id);
    ctr.run("import time; time.sleep(60)");
    let mut meta = Metadata::default();
    let tags = [
        format!("container_id:{id}"),
        "container_name:web-1".into(),
        "docker_image:nginx:1.25".into(),
        "image_name:nginx".into(),
        "short_image:nginx".into(),
        "image_tag:1.25".into(),
        "task_arn:arn:aws:ecs:eu-west-1:1:task/prod/t1".into(),
        "task_family:web".into(),
        "ecs_container_name:web".into(),
        "cluster_name:prod".into(),
    ];
    let m = ContainerMeta {
        name: "web-1".into(),
        image: "nginx:1.25".into(),
        state_text: "running".into(),
        tags: tags.to_vec(),
        ..Default::default()
    };
    let exited = ContainerMeta { state_text: "exited".into(), ..m.clone() };
    meta.by_id = vec![(id.as_bytes().try_into().unwrap(), m), ([b'e'; 64], exited)];
    meta.listed = true;

    let mut process = ProcessCheck::new(&cfg, false).unwrap();
    let mut pass = DockerCheck::new(&cfg.host_proc);
    let (mut msg, mut series, mut topology) = (Vec::new(), Vec::new(), Vec::new());
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    let mut run_process = |p: &mut ProcessCheck, mono: f64, shared: bool| {
        p.want_docker_samples(shared);
        p.run(
            mono,
            1_700_000_000_000 + (mono * 1000.0) as i64,
            "i-0abc",
            false,
            &meta,
            &mut msg,
            &mut zstd,
            &mut |_| {},
        );
    };
    let mut steady = 0;
    for i in 0..30u64 {
        let mono = i as f64 * 2.0;
        // Every third pass shares the process check's reads of its moment; the others read alone.
        let shared = i % 3 == 0;
        run_process(&mut process, mono, shared);
        let at = if shared { mono } else { mono + 1.0 };
        let before = allocations();
        let counts = pass.run(&mut process, &meta, true, at, 1_700_000_000 + i, "i-0abc", &mut series, &mut topology);
        let n = allocations() - before;
        assert_eq!(counts.containers_measured, 1, "pass {i}");
        assert_eq!(counts.components, 2);
        // The first passes grow the buffers; after that, and from the second sample on (rates),
        // nothing more.
        if i >= 3 {
            assert_eq!(n, 0, "pass {i} ({}): {n} allocations", if shared { "shared" } else { "alone" });
            steady += 1;
        }
        if i >= 1 {
            let v: serde_json::Value = serde_json::from_slice(&series).unwrap();
            let names: Vec<&str> =
                v["series"].as_array().unwrap().iter().map(|s| s["metric"].as_str().unwrap()).collect();
            assert!(names.contains(&"docker.cpu.usage") && names.contains(&"docker.containers.running"), "{names:?}");
        }
    }
    assert!(steady >= 20);
}
