//! Host disk metrics come from the host's mount table, not the agent's: in its ECS task the agent
//! has a mount namespace of its own, which lacks the instance's EBS data volumes and instance
//! store. Here the "host" is a pid namespace whose pid 1 has a real ext4 filesystem (a loop
//! device) mounted; the agent runs in a mount namespace of its own where it is not mounted, with
//! that pid namespace's procfs as HOST_PROC, as the ECS task mounts the host's /proc.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_filesystem_only_the_hosts_mount_table_has_is_reported() {
    for tool in ["unshare", "mkfs.ext4", "losetup"] {
        assert!(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success(),
            "cannot run: no {tool} (util-linux, e2fsprogs)"
        );
    }
    let t = TempDir::new("hostdisk");
    let (img, mnt, hp, dev) = (t.0.join("img"), t.0.join("data"), t.0.join("hostproc"), t.0.join("dev"));
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&hp).unwrap();
    std::fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img).output().unwrap();
    assert!(mkfs.status.success(), "{}", String::from_utf8_lossy(&mkfs.stderr));
    let (img, mnt, hp, dev) = (img.display(), mnt.display(), hp.display(), dev.display());
    // pid 1 of the new pid namespace (in a mount namespace of its own, so nothing outlives the
    // test: the loop device is released with it) mounts the filesystem; the agent, its child,
    // unmounts it in its own mount namespace, as a container never had it.
    let script = format!(
        "mount -o loop {img} {mnt} && losetup -j {img} | cut -d: -f1 > {dev} && mount -t proc proc {hp} && \
         unshare --mount sh -c 'umount {mnt} && ! grep -q \" {mnt} \" /proc/self/mountinfo && exec {AGENT} --once'"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STS_HOSTNAME", "disk-host")
        .env("STS_EC2_METADATA_URL", "http://127.0.0.1:9")
        .env("STS_APM_RECEIVER_PORT", port.to_string())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("HOST_PROC", hp.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let dev = std::fs::read_to_string(t.0.join("dev")).unwrap().trim().to_string();
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let series: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["endpoint"] == "/api/v1/series")
        .flat_map(|v| v["payload"]["series"].as_array().unwrap().clone())
        .collect();
    let on_dev = |s: &&serde_json::Value| {
        s["device"] == dev.as_str() || s["tags"].as_array().unwrap().iter().any(|t| *t == format!("device:{dev}"))
    };
    let total = series
        .iter()
        .filter(on_dev)
        .find(|s| s["metric"] == "system.disk.total")
        .unwrap_or_else(|| panic!("no system.disk.total for {dev}\n{stderr}"));
    let kib = total["points"][0][1].as_f64().unwrap();
    assert!((10_000.0..=16_384.0).contains(&kib), "{kib} KiB for a 16 MiB ext4");
    assert!(series.iter().filter(on_dev).any(|s| s["metric"] == "system.fs.inodes.total"));
}
