//! The Docker CLI against the machine's engine (or a private one, `-H unix://…`), a busybox image
//! made with `docker import` (no registry), and unique `sts-test-<pid>-…` names. Shared by the
//! tests that need a real Docker Engine.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Which engine: the default socket, or `unix://<path>`.
#[derive(Clone, Debug, Default)]
pub struct Engine(pub Option<String>);

impl Engine {
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("docker");
        if let Some(h) = &self.0 {
            c.args(["-H", h]);
        }
        c.args(args).stdin(Stdio::null()).output().expect("the docker CLI (docker.io) is installed")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Fails the test, with the reason, when no engine answers: these tests must not pass unrun.
    pub fn require(&self) {
        let o = self.run(&["info", "--format", "{{.ServerVersion}}"]);
        assert!(
            o.status.success(),
            "cannot run: no Docker Engine answers `docker info` (.ci/run installs docker.io and starts \
             `dockerd --iptables=false`): {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A busybox image imported from a local rootfs (removed on drop).
    pub fn busybox(&self, tmp: &Path) -> Image {
        let bb = Path::new("/bin/busybox");
        assert!(bb.is_file(), "cannot run: no /bin/busybox (Debian's busybox-static; .ci/run installs it)");
        let root = tmp.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy(bb, root.join("bin/busybox")).unwrap();
        for app in ["sh", "yes", "head", "tail", "tr", "sleep", "cat", "true"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
        }
        let name = format!("{}:latest", unique("busybox"));
        let host = self.0.as_deref().map(|h| format!("-H {h} ")).unwrap_or_default();
        let cmd = format!("tar -C {} -c . | docker {host}import - {name}", root.display());
        let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
        assert!(o.status.success(), "docker import: {}", String::from_utf8_lossy(&o.stderr));
        Image { engine: self.clone(), name }
    }
}

pub fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sts-test-{}-{tag}-{n}", std::process::id())
}

pub struct Image {
    pub engine: Engine,
    pub name: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = self.engine.run(&["rmi", "-f", &self.name]);
    }
}

/// Containers removed (forcibly) on drop, by name.
pub struct Containers(pub Engine, pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = self.0.run(&["rm", "-f", n]);
        }
    }
}

/// An ECS task's cgroup as the ECS agent lays it out on cgroup v1 (`<parent>/<task id>/<container>`,
/// under a test-unique parent): Docker makes it (`--cgroup-parent`); removed on drop, after the
/// containers in it.
pub struct TaskCgroup(pub String);

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let mut left = 0;
            for c in ["memory", "cpu", "cpuacct", "blkio", "pids", "cpuset", "devices", "freezer", "systemd", "unified"]
            {
                let task = format!("/sys/fs/cgroup/{c}{}", self.0);
                let _ = std::fs::remove_dir(&task);
                let _ = std::fs::remove_dir(Path::new(&task).parent().unwrap());
                left += usize::from(Path::new(&task).exists());
            }
            if left == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
