//! A cgroup in each v1 controller (memory, cpuacct, cpu, blkio) under a test-unique name, with a
//! process moved in; everything is killed and removed on drop, even when the test fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub const CONTROLLERS: [&str; 4] = ["memory", "cpuacct", "cpu", "blkio"];

/// A cgroup in every v1 controller, removed (after its process is killed) on drop.
pub struct TestCgroup {
    rel: String,
    parents: Vec<String>,
    child: Option<Child>,
}

/// Why a test that needs [`TestCgroup`] cannot run here, if it cannot.
pub fn v1_missing() -> Option<&'static str> {
    (!PathBuf::from("/sys/fs/cgroup/memory").is_dir())
        .then_some("no cgroup v1 memory controller at /sys/fs/cgroup/memory (this test lays out v1 cgroups)")
}

impl TestCgroup {
    /// Like [`TestCgroup::new`], but a host without cgroup v1 fails the test, with the reason.
    pub fn require(parents: &[String], id: &str) -> TestCgroup {
        if let Some(why) = v1_missing() {
            panic!("cannot run: {why}");
        }
        TestCgroup::new(parents, id).expect("v1 cgroups")
    }

    pub fn new(parents: &[String], id: &str) -> Option<TestCgroup> {
        if v1_missing().is_some() {
            return None;
        }
        let rel = format!("{}/{id}", parents.last().unwrap());
        for c in CONTROLLERS {
            std::fs::create_dir_all(format!("/sys/fs/cgroup/{c}/{rel}")).unwrap();
        }
        Some(TestCgroup { rel, parents: parents.to_vec(), child: None })
    }

    pub fn path(&self, c: &str, f: &str) -> String {
        format!("/sys/fs/cgroup/{c}/{}/{f}", self.rel)
    }

    pub fn run(&mut self, code: &str) -> u32 {
        let child = Command::new("python3").args(["-c", code]).stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        for c in CONTROLLERS {
            std::fs::write(self.path(c, "cgroup.procs"), pid.to_string()).unwrap();
        }
        self.child = Some(child);
        pid
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Anything else still inside (a launcher's helper processes) goes too; then remove the
        // directories, retrying while the kernel finishes tearing the last task down.
        for _ in 0..100 {
            for c in CONTROLLERS {
                for pid in std::fs::read_to_string(self.path(c, "cgroup.procs")).unwrap_or_default().lines() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let mut left = 0;
            for c in CONTROLLERS {
                let own = format!("/sys/fs/cgroup/{c}/{}", self.rel);
                if std::fs::remove_dir(&own).is_err() && std::path::Path::new(&own).exists() {
                    left += 1;
                    continue;
                }
                for p in self.parents.iter().rev() {
                    let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}/{p}"));
                }
            }
            if left == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A pseudo-random lowercase hex string of `len` digits, unique per call site and run.
pub fn hex_id(seed: &str, len: usize) -> String {
    let mut x = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ std::process::id() as u64;
    for b in seed.bytes() {
        x = x.wrapping_mul(0x100_0000_01b3) ^ u64::from(b);
    }
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap()
        })
        .collect()
}

/// A cgroup named `rel` in every hierarchy mounted here (each v1 controller, the v2 tree), for
/// putting a process (the agent) somewhere other than a hierarchy's root before it unshares its
/// cgroup namespace. Whatever is still inside is killed, and the directories removed, on drop.
pub struct PlacedCgroup {
    dirs: Vec<PathBuf>,
}

impl PlacedCgroup {
    pub fn new(rel: &str) -> PlacedCgroup {
        let mut dirs = Vec::new();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for l in mounts.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let Some(dash) = f.iter().position(|x| *x == "-") else { continue };
            let fs = f.get(dash + 1).copied().unwrap_or("");
            let mp = f[4];
            let supers = f.get(dash + 3).copied().unwrap_or("");
            // A new cpuset cgroup has no CPUs until given some; the agent stays at its root there.
            if supers.split(',').any(|o| o == "cpuset") {
                continue;
            }
            if (fs == "cgroup" || fs == "cgroup2") && mp.starts_with("/sys/fs/cgroup") && f[3] == "/" {
                let d = PathBuf::from(mp).join(rel);
                std::fs::create_dir_all(&d).unwrap();
                dirs.push(d);
            }
        }
        assert!(!dirs.is_empty(), "no cgroup hierarchy mounted under /sys/fs/cgroup");
        PlacedCgroup { dirs }
    }

    /// A shell line that moves the shell running it (`$$`) into this cgroup everywhere.
    pub fn enter_script(&self) -> String {
        self.dirs.iter().map(|d| format!("echo $$ > {}/cgroup.procs && ", d.display())).collect()
    }
}

impl Drop for PlacedCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let mut left = 0;
            for d in &self.dirs {
                for pid in std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
                if std::fs::remove_dir(d).is_err() && d.exists() {
                    left += 1;
                }
            }
            if left == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
