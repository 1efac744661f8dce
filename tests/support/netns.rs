//! A network namespace joined to the host by a veth pair, for tests: a unique name
//! (`<name>-<pid>-<n>`), a /30 of its own, deleted on drop (also when the test fails).
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static FIXTURES: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// `python3 <script>`, inside namespace `netns` when given (`ip netns exec`).
pub fn python_in(netns: Option<&str>, script: &str) -> Command {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "python3"]);
            c
        }
        None => Command::new("python3"),
    };
    c.arg(script);
    c
}

impl Netns {
    /// `name`: the namespace's prefix; `if_tag`: three letters for the veth names (at most 15
    /// bytes with the pid and counter); `net`: the second octet's base, distinct per test file
    /// (test files may run at the same time).
    pub fn new(name: &str, if_tag: &str, net: u32) -> Netns {
        let n = FIXTURES.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{name}-{pid}-{n}");
        let host_if = format!("{if_tag}{}{}h", pid % 100_000, n);
        let peer_if = format!("{if_tag}{}{}n", pid % 100_000, n);
        let net = format!("10.{}.{}", net + n % 40, pid % 250);
        let ns = Netns { name, host_if, host_ip: format!("{net}.1"), ns_ip: format!("{net}.2") };
        ip(&["netns", "add", &ns.name]);
        ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &peer_if]);
        ip(&["link", "set", &peer_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&["-n", &ns.name, "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &peer_if]);
        ip(&["-n", &ns.name, "link", "set", &peer_if, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's inode, as `/proc/<pid>/ns/net` of a process inside it shows it.
    pub fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.name)).unwrap().ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
    }
}
