//! Real Docker containers for the budget's containers phase, laid out as ECS lays out a task's
//! containers: `--cgroup-parent /ecs/<task id>`, the `com.amazonaws.ecs.*` labels, a memory limit
//! per container. The image is imported from Debian's busybox-static (no registry is reachable).
//! Everything is removed on drop.

use std::process::Command;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker (Debian's docker.io; .ci/run installs it)")
}

/// Whether a Docker Engine answers on its default socket.
pub fn engine_up() -> bool {
    Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().is_ok_and(|o| o.status.success())
}

pub struct Containers {
    image: String,
    pub ids: Vec<String>,
    names: Vec<String>,
    rootfs: std::path::PathBuf,
}

impl Containers {
    /// `n` containers sleeping in `tasks` ECS tasks (round robin), named `sts-bench-<pid>-<i>`.
    pub fn start(n: usize, per_task: usize) -> Containers {
        let bb = std::path::Path::new("/bin/busybox");
        assert!(bb.is_file(), "the containers phase needs /bin/busybox (Debian's busybox-static)");
        let tag = format!("sts-bench-{}", std::process::id());
        let rootfs = std::env::temp_dir().join(format!("{tag}-rootfs"));
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
        for app in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).unwrap();
        }
        let image = format!("{tag}:latest");
        let o = Command::new("sh")
            .args(["-c", &format!("tar -C {} -c . | docker import - {image}", rootfs.display())])
            .output()
            .unwrap();
        assert!(o.status.success(), "docker import: {}", String::from_utf8_lossy(&o.stderr));
        let mut c = Containers { image, ids: Vec::new(), names: Vec::new(), rootfs };
        let per_task = per_task.max(1);
        for i in 0..n {
            let task = format!("{:032x}", (std::process::id() as u128) << 32 | (i / per_task) as u128);
            let family = format!("bench-{}", i / per_task);
            let name = format!("{tag}-{i}");
            let labels = [
                format!("com.amazonaws.ecs.task-arn=arn:aws:ecs:eu-west-1:123456789012:task/bench/{task}"),
                format!("com.amazonaws.ecs.task-definition-family={family}"),
                "com.amazonaws.ecs.task-definition-version=1".to_string(),
                format!("com.amazonaws.ecs.container-name=c{}", i % per_task),
                "com.amazonaws.ecs.cluster=bench".to_string(),
            ];
            let parent = format!("/ecs/{task}");
            let mut args = vec!["run", "-d", "--name", &name, "--network", "none", "--memory", "32m"];
            args.extend(["--cgroup-parent", &parent]);
            for l in &labels {
                args.extend(["--label", l]);
            }
            args.extend([c.image.as_str(), "sleep", "3600"]);
            let o = docker(&args);
            assert!(o.status.success(), "docker run: {}", String::from_utf8_lossy(&o.stderr));
            c.ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
            c.names.push(name);
        }
        c
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for chunk in self.names.chunks(25) {
            let mut args = vec!["rm", "-f"];
            args.extend(chunk.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
        let _ = std::fs::remove_dir_all(&self.rootfs);
    }
}
