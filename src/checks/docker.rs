//! The docker check's series (spec/docker-check.md §2): per running, non-pause container the
//! `docker.*` figures from two consecutive passes' samples, and `docker.containers.running` /
//! `.stopped` per group of containers with the same low-cardinality tags. Every series is a
//! gauge (rates are computed here, as the original's aggregator does, and sent as gauges);
//! a rate needs a previous sample and a counter that did not go back (a restart in place resets
//! the cgroup's counters: that point is skipped, §5.1). Allocates nothing: tags are borrowed
//! from the container's metadata into a stack vector.

use super::metric::{Kind, MetricSink, Tag};
use crate::model::docker::{DeviceIo, DockerSample};
use crate::parse::docker::{split_image, ContainerMeta};
use smallvec::SmallVec;
use std::cmp::Ordering;

pub type Tags<'a> = SmallVec<[Tag<'a>; 24]>;

/// The tagger's tags on every per-container series (§2.4), sorted.
const HIGH_CARD: [&str; 13] = [
    "cluster_name",
    "container_id",
    "container_name",
    "docker_image",
    "ecs_cluster_name",
    "ecs_container_name",
    "image_name",
    "image_tag",
    "short_image",
    "task_arn",
    "task_family",
    "task_name",
    "task_version",
];

/// The low-cardinality ones, which group `docker.containers.*` (§2.5): no container or task
/// identity.
fn low_card(key: &str) -> bool {
    !matches!(key, "container_id" | "container_name" | "task_arn")
}

/// Appends `meta`'s tags whose keys `keep` accepts (keys mapped to their static names; a tag of
/// another key is not the docker check's).
fn push_meta_tags<'a>(meta: &'a ContainerMeta, keep: fn(&str) -> bool, out: &mut Tags<'a>) {
    for t in &meta.tags {
        let Some((k, v)) = t.split_once(':') else { continue };
        let Some(&key) = HIGH_CARD.iter().find(|&&h| h == k) else { continue };
        if keep(key) && !out.iter().any(|x| x.key == key) {
            out.push(Tag { key, value: v.as_bytes() });
        }
    }
}

/// The container's tags on its series.
pub fn container_tags<'a>(meta: &'a ContainerMeta, out: &mut Tags<'a>) {
    out.clear();
    push_meta_tags(meta, |_| true, out);
    sort(out);
}

/// Orders tags as their `key:value` strings sort (the aggregator sorts the tag strings).
pub fn sort(tags: &mut [Tag<'_>]) {
    tags.sort_unstable_by(|a, b| cmp(a, b));
}

fn cmp<'a>(a: &Tag<'a>, b: &Tag<'a>) -> Ordering {
    let s = |t: &Tag<'a>| t.key.as_bytes().iter().chain(b":").chain(t.value.iter());
    s(a).cmp(s(b))
}

/// An ECS pause container (`amazon/amazon-ecs-pause`), or a Kubernetes-style `pause` image:
/// excluded from series, counted under its image's tags (§5.4).
pub fn is_pause(meta: &ContainerMeta) -> bool {
    let (name, short, _) = split_image(&meta.image);
    name.ends_with("amazon-ecs-pause") || short == "pause"
}

/// Block device names by number, from `/proc/diskstats` (read once per pass into fixed room:
/// the first 64 devices, names of at most 32 bytes; the others are counted in
/// [`Self::dropped`]; `docker.io.*`, per named device, leaves their I/O out).
#[derive(Debug)]
pub struct DeviceNames {
    entries: [(u32, u32, [u8; 32], u8); 64],
    len: usize,
    dropped: usize,
}

impl Default for DeviceNames {
    fn default() -> Self {
        DeviceNames { entries: [(0, 0, [0; 32], 0); 64], len: 0, dropped: 0 }
    }
}

impl DeviceNames {
    pub fn clear(&mut self) {
        (self.len, self.dropped) = (0, 0);
    }

    pub fn push(&mut self, major: u32, minor: u32, name: &[u8]) {
        if self.len < self.entries.len() && name.len() <= 32 {
            let e = &mut self.entries[self.len];
            e.2[..name.len()].copy_from_slice(name);
            (e.0, e.1, e.3) = (major, minor, name.len() as u8);
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Devices since [`Self::clear`] that found no room (or had too long a name).
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    pub fn get(&self, major: u32, minor: u32) -> Option<&[u8]> {
        self.entries[..self.len].iter().find(|e| (e.0, e.1) == (major, minor)).map(|e| &e.2[..usize::from(e.3)])
    }
}

/// What a container's series need besides its samples.
pub struct ContainerPass<'a> {
    /// Its tags, sorted (see [`container_tags`]).
    pub tags: &'a [Tag<'a>],
    pub cur: &'a DockerSample,
    /// The previous pass's sample and the seconds since it; `None` on first sight and after a
    /// restart in place (rates are skipped then).
    pub prev: Option<(&'a DockerSample, f64)>,
    /// Seconds since the container (its cgroup) started.
    pub uptime_secs: Option<f64>,
    /// The host's CPUs × 100: the CPU limit of a container without one.
    pub host_cpu_pct: f64,
    pub devices: &'a DeviceNames,
    /// Its one Docker network, when it has exactly one: its one interface is tagged with it.
    pub network: Option<&'a str>,
}

/// The per-container series (§2.3): the 2.13–2.18 set, plus `docker.uptime` and
/// `docker.io.read_operations`/`write_operations` of 2.19. Returns how many were emitted.
pub fn container_series(sink: &mut dyn MetricSink, p: &ContainerPass<'_>) -> usize {
    let mut n = 0;
    let mut gauge = |sink: &mut dyn MetricSink, name: &str, v: f64, tags: &[Tag<'_>]| {
        sink.metric(name, Kind::Gauge, v, tags);
        n += 1;
    };
    let (c, b) = (p.cur, &p.cur.base);
    let tags = p.tags;
    // A rate from a counter pair: none without a previous sample, or when it went back.
    let rate = |f: fn(&DockerSample) -> u64| -> Option<f64> {
        let (prev, dt) = p.prev?;
        let (a, z) = (f(prev), f(c));
        (dt > 0.0 && z >= a).then(|| (z - a) as f64 / dt)
    };
    // ns of CPU per second → percent of one core.
    // CPU time only where the CPU accounting file was read, now and before.
    let cpu_read = c.cpu_read && p.prev.is_some_and(|(s, _)| s.cpu_read);
    for (name, f) in [
        ("docker.cpu.user", (|s: &DockerSample| s.base.cpu_user_ns) as fn(&DockerSample) -> u64),
        ("docker.cpu.system", |s| s.base.cpu_system_ns),
        ("docker.cpu.usage", |s| s.base.cpu_total_ns),
    ] {
        if let Some(r) = rate(f).filter(|_| cpu_read) {
            gauge(sink, name, r / 1e7, tags);
        }
    }
    if let Some(r) = rate(|s| s.base.throttled_ns) {
        gauge(sink, "docker.cpu.throttled.time", r / 1e7, tags);
    }
    if let Some(r) = rate(|s| s.base.throttled_periods) {
        gauge(sink, "docker.cpu.throttled", r, tags);
    }
    if let Some(shares) = c.cpu_shares {
        gauge(sink, "docker.cpu.shares", shares as f64, tags);
    }
    // The original sends `limit × uptime` as a rate: the limit, from the second run on.
    if p.prev.is_some() {
        gauge(sink, "docker.cpu.limit", c.cpu_limit_pct.unwrap_or(p.host_cpu_pct), tags);
    }
    if b.threads != 0 {
        gauge(sink, "docker.thread.count", b.threads as f64, tags);
    }
    if let Some(l) = c.thread_limit {
        gauge(sink, "docker.thread.limit", l as f64, tags);
    }
    if c.mem_read {
        gauge(sink, "docker.mem.cache", b.mem_cache as f64, tags);
        gauge(sink, "docker.mem.rss", b.mem_rss as f64, tags);
        gauge(sink, "docker.mem.failed_count", b.mem_failcnt as f64, tags);
    }
    if let Some(swap) = c.mem_swap {
        gauge(sink, "docker.mem.swap", swap as f64, tags);
    }
    if let Some(l) = c.mem_limit {
        gauge(sink, "docker.mem.limit", l as f64, tags);
        gauge(sink, "docker.mem.in_use", b.mem_rss as f64 / l as f64, tags);
    }
    if let Some(l) = c.mem_sw_limit {
        gauge(sink, "docker.mem.sw_limit", l as f64, tags);
        let used = c.mem_swap.unwrap_or(0).saturating_add(b.mem_rss);
        gauge(sink, "docker.mem.sw_in_use", used as f64 / l as f64, tags);
    }
    if let Some(l) = c.mem_soft_limit {
        gauge(sink, "docker.mem.soft_limit", l as f64, tags);
    }
    if let Some(k) = c.kmem {
        gauge(sink, "docker.kmem.usage", k as f64, tags);
    }
    let io = io_series(sink, p);
    gauge(sink, "docker.container.open_fds", c.open_fds as f64, tags);
    let net = net_series(sink, p);
    if let Some(u) = p.uptime_secs.filter(|u| *u > 0.0) {
        gauge(sink, "docker.uptime", u, tags);
    }
    n + io + net
}

/// A counter of a device's I/O.
type DeviceCounter = fn(&DeviceIo) -> u64;

const IO: [(&str, DeviceCounter); 4] = [
    ("docker.io.read_bytes", |d| d.read_bytes),
    ("docker.io.write_bytes", |d| d.write_bytes),
    ("docker.io.read_operations", |d| d.read_ops),
    ("docker.io.write_operations", |d| d.write_ops),
];

/// Per named device (`device:` and `device_name:`); if no device has a name, one untagged total
/// (0 before any I/O), as the original does.
fn io_series(sink: &mut dyn MetricSink, p: &ContainerPass<'_>) -> usize {
    let Some((prev, dt)) = p.prev.filter(|(_, dt)| *dt > 0.0) else { return 0 };
    let mut n = 0;
    let named = p.cur.devices().iter().any(|d| p.devices.get(d.major, d.minor).is_some());
    if !named {
        for (name, f) in IO {
            let sum = |s: &DockerSample| s.devices().iter().map(f).fold(0u64, u64::saturating_add);
            if let Some(d) = sum(p.cur).checked_sub(sum(prev)) {
                sink.metric(name, Kind::Gauge, d as f64 / dt, p.tags);
                n += 1;
            }
        }
        return n;
    }
    for dev in p.cur.devices() {
        let Some(dev_name) = p.devices.get(dev.major, dev.minor) else { continue };
        // A device first used since the last pass: its counters were 0 then.
        let before = prev.devices().iter().find(|d| (d.major, d.minor) == (dev.major, dev.minor));
        let mut tags: Tags<'_> = p.tags.iter().copied().collect();
        tags.push(Tag { key: "device", value: dev_name });
        tags.push(Tag { key: "device_name", value: dev_name });
        sort(&mut tags);
        for (name, f) in IO {
            if let Some(d) = f(dev).checked_sub(before.map_or(0, f)) {
                sink.metric(name, Kind::Gauge, d as f64 / dt, &tags);
                n += 1;
            }
        }
    }
    n
}

/// Per interface, tagged `docker_network:` with the container's Docker network when it has one
/// network and one interface, else with the interface's name (§5.3).
fn net_series(sink: &mut dyn MetricSink, p: &ContainerPass<'_>) -> usize {
    let Some((prev, dt)) = p.prev.filter(|(_, dt)| *dt > 0.0) else { return 0 };
    let mut n = 0;
    let one = p.cur.ifaces().len() == 1;
    for i in p.cur.ifaces() {
        let Some(before) = prev.ifaces().iter().find(|x| x.name() == i.name()) else { continue };
        let network = match p.network {
            Some(net) if one => net.as_bytes(),
            _ => i.name(),
        };
        let mut tags: Tags<'_> = p.tags.iter().copied().collect();
        tags.push(Tag { key: "docker_network", value: network });
        sort(&mut tags);
        for (name, a, z) in [
            ("docker.net.bytes_rcvd", before.rx_bytes, i.rx_bytes),
            ("docker.net.bytes_sent", before.tx_bytes, i.tx_bytes),
        ] {
            if let Some(d) = z.checked_sub(a) {
                sink.metric(name, Kind::Gauge, d as f64 / dt, &tags);
                n += 1;
            }
        }
    }
    n
}

/// Whether a tag key is one a container is counted under (§2.5): its low-cardinality tags; a
/// pause container's are its image's four.
fn count_key_kept(pause: bool, key: &str) -> bool {
    if pause {
        matches!(key, "docker_image" | "image_name" | "image_tag" | "short_image")
    } else {
        low_card(key)
    }
}

/// At most this many tags make a group's key: one per [`HIGH_CARD`] key.
const KEY_LEN: usize = HIGH_CARD.len();

/// A container's group key: the indices (in its `tags`) of the tags it is counted under, in the
/// order their `key:value` strings sort, as [`sort`] orders them.
#[derive(Debug, Clone, Copy)]
struct GroupKey {
    container: u32,
    tags: [u16; KEY_LEN],
    len: u8,
}

impl GroupKey {
    fn of(container: u32, m: &ContainerMeta) -> GroupKey {
        let mut k = GroupKey { container, tags: [0; KEY_LEN], len: 0 };
        let pause = is_pause(m);
        let mut keys: [&str; KEY_LEN] = [""; KEY_LEN];
        for (i, t) in m.tags.iter().enumerate().take(usize::from(u16::MAX)) {
            let Some((key, _)) = t.split_once(':') else { continue };
            let Some(&key) = HIGH_CARD.iter().find(|&&h| h == key) else { continue };
            let n = usize::from(k.len);
            if count_key_kept(pause, key) && !keys[..n].contains(&key) && n < KEY_LEN {
                (keys[n], k.tags[n], k.len) = (key, i as u16, k.len + 1);
            }
        }
        k.tags[..usize::from(k.len)].sort_unstable_by(|&a, &b| m.tags[usize::from(a)].cmp(&m.tags[usize::from(b)]));
        k
    }

    fn strings<'a>(&self, m: &'a ContainerMeta) -> impl Iterator<Item = &'a str> + 'a {
        let tags = self.tags;
        (0..usize::from(self.len)).map(move |i| m.tags[usize::from(tags[i])].as_str())
    }

    /// The key's tags, borrowed from the container's metadata.
    fn tags<'a>(&self, m: &'a ContainerMeta, out: &mut Tags<'a>) {
        out.clear();
        for s in self.strings(m) {
            let Some((k, v)) = s.split_once(':') else { continue };
            if let Some(&key) = HIGH_CARD.iter().find(|&&h| h == k) {
                out.push(Tag { key, value: v.as_bytes() });
            }
        }
    }
}

/// The group keys of one pass, in a buffer the check keeps from pass to pass (no allocation once
/// it has room for every container).
#[derive(Debug, Default)]
pub struct GroupKeys(Vec<GroupKey>);

/// `docker.containers.running` and `.stopped` per tag group (zeros included), and the `.total`s
/// with no tags, over every container Docker lists. Running: state `running`; stopped: state
/// `exited` only (others count nowhere but still make a group). Each container's key is made
/// once; the keys are sorted and each run of equal keys is one group (O(n log n)). Groups go out
/// in their keys' order. Returns how many were emitted.
pub fn container_counts<Id>(sink: &mut dyn MetricSink, keys: &mut GroupKeys, list: &[(Id, ContainerMeta)]) -> usize {
    let keys = &mut keys.0;
    keys.clear();
    keys.extend(list.iter().enumerate().map(|(i, (_, m))| GroupKey::of(i as u32, m)));
    let meta = |k: &GroupKey| &list[k.container as usize].1;
    keys.sort_unstable_by(|a, b| a.strings(meta(a)).cmp(b.strings(meta(b))));
    let (mut n, mut all_running, mut all_stopped) = (0, 0u64, 0u64);
    let mut tags = Tags::new();
    let mut rest = &keys[..];
    while let Some(first) = rest.first() {
        let m = meta(first);
        let len = rest.iter().take_while(|k| k.strings(meta(k)).eq(first.strings(m))).count();
        let (group, tail) = rest.split_at(len);
        let running = group.iter().filter(|k| meta(k).state_text == "running").count() as u64;
        let stopped = group.iter().filter(|k| meta(k).state_text == "exited").count() as u64;
        first.tags(m, &mut tags);
        sink.metric("docker.containers.running", Kind::Gauge, running as f64, &tags);
        sink.metric("docker.containers.stopped", Kind::Gauge, stopped as f64, &tags);
        (all_running, all_stopped, n) = (all_running + running, all_stopped + stopped, n + 2);
        rest = tail;
    }
    sink.metric("docker.containers.running.total", Kind::Gauge, all_running as f64, &[]);
    sink.metric("docker.containers.stopped.total", Kind::Gauge, all_stopped as f64, &[]);
    n + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::metric::MetricRows;
    use crate::model::docker::IfaceNet;

    fn meta(image: &str, state: &str, extra: &[&str]) -> ContainerMeta {
        let mut tags = vec![
            "container_id:abc".to_string(),
            "container_name:web-1".to_string(),
            format!("docker_image:{image}"),
            "image_name:nginx".to_string(),
            "short_image:nginx".to_string(),
            "image_tag:1.25".to_string(),
            "task_arn:arn:aws:ecs:eu-west-1:1:task/prod/t1".to_string(),
            "task_family:web".to_string(),
            "cluster_name:prod".to_string(),
            "not_ours:x".to_string(),
        ];
        tags.extend(extra.iter().map(|s| s.to_string()));
        ContainerMeta { image: image.into(), state_text: state.into(), tags, ..Default::default() }
    }

    fn rows(f: impl FnOnce(&mut MetricRows)) -> MetricRows {
        let mut r = MetricRows::default();
        f(&mut r);
        r
    }

    #[test]
    fn tags_are_the_taggers_sorted() {
        let m = meta("nginx:1.25", "running", &["task_name:web", "ecs_cluster_name:prod"]);
        let mut t = Tags::new();
        container_tags(&m, &mut t);
        let s: Vec<String> = t.iter().map(|t| format!("{}:{}", t.key, String::from_utf8_lossy(t.value))).collect();
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(s, sorted);
        assert_eq!(s.len(), 11, "{s:?}");
        assert!(!s.iter().any(|t| t.starts_with("not_ours")));
        // Sorted as strings: `image_name:` before `image_tag:`, `task_family:` before `task_name:`.
        let mut a = [Tag { key: "task_name", value: b"x" }, Tag { key: "task_arn", value: b"z" }];
        sort(&mut a);
        assert_eq!(a[0].key, "task_arn");
    }

    fn sample(cpu_ns: u64, throttled: u64, io: (u64, u64), net: u64) -> DockerSample {
        let mut s = DockerSample::default();
        s.base.cpu_total_ns = cpu_ns;
        s.base.cpu_user_ns = cpu_ns / 2;
        s.base.cpu_system_ns = cpu_ns / 4;
        s.base.throttled_periods = throttled;
        s.base.throttled_ns = throttled * 10_000_000;
        s.base.mem_rss = 100 << 20;
        s.base.mem_cache = 5 << 20;
        s.base.threads = 3;
        s.mem_limit = Some(400 << 20);
        s.cpu_shares = Some(1024);
        s.open_fds = 7;
        (s.cpu_read, s.mem_read) = (true, true);
        s.devices[0] = DeviceIo { major: 8, minor: 0, read_bytes: io.0, write_bytes: io.1, read_ops: 1, write_ops: 2 };
        s.n_devices = 1;
        s.push_iface(IfaceNet::new(b"eth0", net, net * 2));
        s
    }

    #[test]
    fn rates_between_passes_and_none_on_first_sight_or_reset() {
        let mut names = DeviceNames::default();
        names.push(8, 0, b"sda");
        let m = meta("nginx:1.25", "running", &[]);
        let mut tags = Tags::new();
        container_tags(&m, &mut tags);
        let (a, b) = (sample(1_000_000_000, 10, (0, 0), 100), sample(13_000_000_000, 50, (4096, 8192), 500));
        let pass = |cur, prev| ContainerPass {
            tags: &tags,
            cur,
            prev,
            uptime_secs: Some(90.0),
            host_cpu_pct: 400.0,
            devices: &names,
            network: Some("bridge"),
        };
        // 12 s of CPU over 40 s: 30 % of a core; 40 throttled periods: 1 a second.
        let r = rows(|r| {
            container_series(r, &pass(&b, Some((&a, 40.0))));
        });
        assert_eq!(r.get("docker.cpu.usage"), Some(30.0));
        assert_eq!(r.get("docker.cpu.user"), Some(15.0));
        assert_eq!(r.get("docker.cpu.throttled"), Some(1.0));
        assert_eq!(r.get("docker.cpu.throttled.time"), Some(1.0));
        assert_eq!(r.get("docker.cpu.limit"), Some(400.0), "no limit: the host's CPUs");
        assert_eq!(r.get("docker.mem.in_use"), Some(0.25));
        assert_eq!(r.get("docker.io.write_bytes"), Some(8192.0 / 40.0));
        assert_eq!(r.get("docker.net.bytes_rcvd"), Some(10.0));
        assert_eq!(r.get("docker.uptime"), Some(90.0));
        let io = r.0.iter().find(|x| x.0 == "docker.io.read_bytes").unwrap();
        assert!(io.3.contains(&"device:sda".to_string()) && io.3.contains(&"device_name:sda".to_string()));
        let net = r.0.iter().find(|x| x.0 == "docker.net.bytes_sent").unwrap();
        assert!(net.3.contains(&"docker_network:bridge".to_string()), "{:?}", net.3);
        assert!(r.0.iter().all(|x| x.1 == Kind::Gauge));
        // First sight: gauges only, no rate and no CPU limit (the original's is a rate).
        let first = rows(|r| {
            container_series(r, &pass(&b, None));
        });
        for name in ["docker.cpu.usage", "docker.cpu.limit", "docker.io.read_bytes", "docker.net.bytes_rcvd"] {
            assert_eq!(first.get(name), None, "{name}");
        }
        assert_eq!(first.get("docker.mem.rss"), Some((100 << 20) as f64));
        assert_eq!(first.get("docker.container.open_fds"), Some(7.0));
        // Counters that went back (restarted in place): those points are skipped, not negative.
        let reset = rows(|r| {
            container_series(r, &pass(&a, Some((&b, 40.0))));
        });
        assert!(reset.0.iter().all(|x| x.2 >= 0.0), "{:?}", reset.0);
        assert_eq!(reset.get("docker.cpu.usage"), None);
        assert_eq!(reset.get("docker.io.write_bytes"), None);
        // No CPU accounting or memory.stat read (a v2 tree without those controllers): no such
        // series, not zeros.
        let (mut a2, mut b2) = (a, b);
        (a2.cpu_read, a2.mem_read, b2.cpu_read, b2.mem_read) = (false, false, false, false);
        let unread = rows(|r| {
            container_series(r, &pass(&b2, Some((&a2, 40.0))));
        });
        for name in ["docker.cpu.usage", "docker.cpu.user", "docker.mem.rss", "docker.mem.cache"] {
            assert_eq!(unread.get(name), None, "{name}");
        }
        assert_eq!(unread.get("docker.cpu.throttled"), Some(1.0));
        // No device with a name: one untagged total.
        let nameless = DeviceNames::default();
        let p = ContainerPass { devices: &nameless, ..pass(&b, Some((&a, 40.0))) };
        let r = rows(|r| {
            container_series(r, &p);
        });
        let io = r.0.iter().find(|x| x.0 == "docker.io.write_bytes").unwrap();
        assert_eq!(io.2, 8192.0 / 40.0);
        assert!(!io.3.iter().any(|t| t.starts_with("device")));
    }

    #[test]
    fn device_names_beyond_the_room_are_counted() {
        let mut d = DeviceNames::default();
        for i in 0..70 {
            d.push(8, i, format!("sd{i}").as_bytes());
        }
        d.push(9, 0, &[b'x'; 33]);
        assert_eq!(d.dropped(), 7);
        assert_eq!(d.get(8, 63), Some(&b"sd63"[..]));
        assert_eq!(d.get(8, 64), None);
        d.clear();
        assert_eq!((d.dropped(), d.get(8, 0)), (0, None));
    }

    #[test]
    fn counts_per_low_card_group_with_totals() {
        let list = [
            ((), meta("nginx:1.25", "running", &[])),
            ((), meta("redis:7", "running", &[])),
            ((), meta("nginx:1.25", "exited", &[])),
            ((), meta("amazon/amazon-ecs-pause:0.1.0", "running", &["image_name:amazon/amazon-ecs-pause"])),
            ((), meta("nginx:1.25", "created", &[])),
        ];
        let mut keys = GroupKeys::default();
        let r = rows(|r| {
            container_counts(r, &mut keys, &list);
        });
        let group = |image: &str, name: &str| {
            r.0.iter()
                .find(|x| x.0 == name && x.3.iter().any(|t| t == &format!("docker_image:{image}")))
                .map(|x| (x.2, x.3.clone()))
        };
        assert_eq!(group("nginx:1.25", "docker.containers.running").unwrap().0, 1.0);
        assert_eq!(group("nginx:1.25", "docker.containers.stopped").unwrap().0, 1.0, "exited only");
        assert_eq!(group("redis:7", "docker.containers.stopped").unwrap().0, 0.0, "zeros are sent");
        let (_, tags) = group("nginx:1.25", "docker.containers.running").unwrap();
        assert!(!tags.iter().any(|t| t.starts_with("container_") || t.starts_with("task_arn")), "{tags:?}");
        assert!(tags.contains(&"task_family:web".to_string()));
        let (_, pause) = group("amazon/amazon-ecs-pause:0.1.0", "docker.containers.running").unwrap();
        assert!(pause.iter().all(|t| t.starts_with("docker_image:")
            || t.starts_with("image_name:")
            || t.starts_with("image_tag:")
            || t.starts_with("short_image:")));
        assert_eq!(r.get("docker.containers.running.total"), Some(3.0));
        assert_eq!(r.get("docker.containers.stopped.total"), Some(1.0));
        let total = r.0.iter().find(|x| x.0 == "docker.containers.running.total").unwrap();
        assert!(total.3.is_empty());
        assert_eq!(r.0.iter().filter(|x| x.0 == "docker.containers.running").count(), 3, "three groups");
        assert!(is_pause(&list[3].1) && !is_pause(&list[0].1));
        // The group's tags as the series' are: sorted, the first of a repeated key.
        let mut expect = Tags::new();
        push_meta_tags(&list[0].1, low_card, &mut expect);
        sort(&mut expect);
        let expect: Vec<String> =
            expect.iter().map(|t| format!("{}:{}", t.key, String::from_utf8_lossy(t.value))).collect();
        assert_eq!(tags, expect);
        // The same counts again from the kept buffer, and the same for a list in another order.
        let mut reversed = list.clone();
        reversed.reverse();
        let again = rows(|r| {
            container_counts(r, &mut keys, &reversed);
        });
        let sorted = |rows: &MetricRows| {
            let mut v: Vec<String> = rows.0.iter().map(|x| format!("{} {} {:?}", x.0, x.2, x.3)).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&again), sorted(&r));
    }
}
