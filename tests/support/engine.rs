//! A real Docker Engine for tests (Debian's `docker.io`; `.ci/run` installs it and starts
//! `dockerd --iptables=false`): the CLI, images made with `docker import` of a busybox rootfs (no
//! registry needed), containers and ECS-style task cgroups, each with a name unique to the test
//! run and removed on drop, even when an assertion fails.
#![allow(dead_code)]

use crate::common::TempDir;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).stdin(Stdio::null()).output().expect("the docker CLI (docker.io) is installed")
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Fails the test, with the reason, when no engine answers: these tests must not pass unrun.
pub fn require_engine() {
    let o = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match o {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "cannot run: no Docker Engine answers `docker info` (.ci/run installs docker.io and starts \
             `dockerd --iptables=false`): {other:?}"
        ),
    }
}

pub fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sts-test-{}-{tag}-{n}", std::process::id())
}

/// A busybox image imported from a local rootfs, removed on drop.
pub struct Image(pub String);

impl Image {
    pub fn busybox() -> Image {
        let bb = std::path::Path::new("/bin/busybox");
        assert!(bb.is_file(), "cannot run: no /bin/busybox (Debian's busybox-static; .ci/run installs it)");
        let root = TempDir::new("rootfs");
        std::fs::create_dir_all(root.0.join("bin")).unwrap();
        std::fs::copy(bb, root.0.join("bin/busybox")).unwrap();
        for app in ["sh", "yes", "head", "tr", "sleep", "cat", "dd", "true"] {
            std::os::unix::fs::symlink("busybox", root.0.join("bin").join(app)).unwrap();
        }
        let name = format!("{}:latest", unique("busybox"));
        let cmd = format!("tar -C {} -c . | docker import - {name}", root.0.display());
        let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
        assert!(o.status.success(), "docker import: {}", String::from_utf8_lossy(&o.stderr));
        Image(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// A running container, removed (forcibly) on drop.
pub struct Ctr {
    pub name: String,
    pub id: String,
}

impl Ctr {
    /// `sh -c <script>` in `image`, with a tenth of a CPU and 128 MiB, and no network.
    pub fn run(image: &Image, tag: &str, script: &str) -> Ctr {
        Ctr::run_in(image, tag, "none", script)
    }

    /// The same in the Docker network `network` (`none`, `host`).
    pub fn run_in(image: &Image, tag: &str, network: &str, script: &str) -> Ctr {
        Ctr::run_with(image, tag, &["--network", network, "--cpus", "0.1"], script)
    }

    /// `sh -c <script>` in `image` with 128 MiB and the `docker run` options `opts`.
    pub fn run_with(image: &Image, tag: &str, opts: &[&str], script: &str) -> Ctr {
        let name = unique(tag);
        let mut args = vec!["run", "-d", "--name", &name, "--memory", "128m"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[&image.0, "sh", "-c", script]);
        let id = docker_ok(&args);
        assert_eq!(id.len(), 64, "container id {id}");
        Ctr { name, id }
    }

    pub fn pid(&self) -> u32 {
        docker_ok(&["inspect", "-f", "{{.State.Pid}}", &self.name]).parse().unwrap()
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// An ECS task's cgroup as the ECS agent lays it out on cgroup v1 (`/ecs/<task id>/<container>`,
/// here under a test-unique name): Docker makes it (`--cgroup-parent`); removed on drop, after
/// the containers in it.
pub struct TaskCgroup(pub String);

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let mut left = 0;
            for c in ["memory", "cpu", "cpuacct", "blkio", "pids", "cpuset", "devices", "freezer", "systemd", "unified"]
            {
                let task = format!("/sys/fs/cgroup/{c}{}", self.0);
                let _ = std::fs::remove_dir(&task);
                let _ = std::fs::remove_dir(std::path::Path::new(&task).parent().unwrap());
                left += usize::from(std::path::Path::new(&task).exists());
            }
            if left == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A user-defined Docker bridge network (the engine here runs without the default `docker0`),
/// removed on drop (after the containers in it).
pub struct Network(pub String);

impl Network {
    pub fn create(tag: &str) -> Network {
        let name = unique(tag);
        docker_ok(&["network", "create", &name]);
        Network(name)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

/// The host's cgroup2 tree: the whole hierarchy on a v2 host, the `unified` one on a hybrid host
/// (whose controllers are then on v1). Fails the test when there is none.
pub fn cgroup2_tree() -> &'static str {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|d| std::path::Path::new(d).join("cgroup.controllers").is_file())
        .expect("cannot run: no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
}
