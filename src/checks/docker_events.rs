//! Docker container events to `/intake/`, as the original's docker check bundles them
//! (spec/docker-check.md §1.2–§1.6): the events of one pass grouped per image, one `/intake/`
//! event per image with the counts per action in its title, one line per event in its text,
//! `alert_type:"error"` when the bundle holds an `oom` or a `kill`, and the union of the
//! containers' tags (with their ECS task tags).
//!
//! Events are kept between passes in one reused byte arena (no allocation per event), at most
//! [`MAX_PENDING`] of them; more are dropped and counted. A container's tags come from the
//! metadata cache while Docker lists it; they are kept for [`TAGS_KEPT`] after it left the list,
//! so the `die` and `destroy` bundles of a stopped container still carry them (the original's
//! tagger prunes dead entities every 5 min). A container the cache never described (it lived
//! for less than a metadata refresh) is tagged from its events' own attributes: name, image and
//! the `com.amazonaws.ecs.*` labels, which Docker puts on every event.

use crate::encode::docker_events::{self as encode, Bundle};
use crate::parse::docker::split_image;
use crate::parse::docker_events::{Event, JStr};
use crate::sources::docker::Metadata;
use std::time::{Duration, Instant};

/// Events kept for one pass at most (the rest of the pass's are dropped and counted).
pub const MAX_PENDING: usize = 4096;
/// Bytes of names, images and labels kept for one pass at most.
const MAX_ARENA: usize = 1 << 20;
/// How long a container's tags outlive its last listing by Docker.
pub const TAGS_KEPT: Duration = Duration::from_secs(5 * 60);
/// The original's default `filtered_event_types`.
pub const FILTERED_ACTIONS: [&[u8]; 4] = [b"top", b"exec_create", b"exec_start", b"exec_die"];
/// ECS's pause containers (awsvpc tasks) are left out, as the original's container filter does:
/// by image, and by the container name the ECS agent labels them with (the image may be known
/// only as `sha256:…`, or be a local build of another name).
const PAUSE_IMAGE: &[u8] = b"amazon/amazon-ecs-pause";
const PAUSE_ECS_NAME: &[u8] = b"~internal~ecs~pause";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span(u32, u32);

impl Span {
    fn of(self, arena: &[u8]) -> &[u8] {
        arena.get(self.0 as usize..(self.0 + self.1) as usize).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: Span,
    image: Span,
    name: Span,
    action: Span,
    secs: i64,
    /// task arn, family, version, ECS container name, cluster.
    ecs: [Option<Span>; 5],
}

struct KeptTags {
    id: [u8; 64],
    tags: Vec<String>,
    last_listed: Instant,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BundlerStats {
    /// `/intake/` events (bundles) written.
    pub bundles: u64,
    /// Events kept in bundles.
    pub bundled: u64,
    /// Over [`MAX_PENDING`] (or the arena's bound) in a pass.
    pub dropped: u64,
    /// `top`, `exec_*`.
    pub filtered: u64,
    /// Pause containers, and events without a name or image.
    pub excluded: u64,
    /// Kept for the next pass (in [`EventBundler::status`]).
    pub pending: u64,
}

/// What [`EventBundler::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Kept,
    Filtered,
    Excluded,
    Dropped,
}

#[derive(Default)]
pub struct EventBundler {
    arena: Vec<u8>,
    pending: Vec<Pending>,
    kept: Vec<KeptTags>,
    dropped_in_pass: u64,
    pub stats: BundlerStats,
    // Scratch, reused every pass.
    order: Vec<u32>,
    actions: Vec<(Span, u32)>,
    ids: Vec<usize>,
    tag_buf: Vec<u8>,
    tag_spans: Vec<Span>,
    title: Vec<u8>,
    text: Vec<u8>,
}

impl EventBundler {
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The counters, with the events pending now.
    pub fn status(&self) -> BundlerStats {
        BundlerStats { pending: self.pending.len() as u64, ..self.stats }
    }

    /// Keeps a container event for the next pass (or says why not). `meta` is the cache at the
    /// time of the event: the container's tags are noted while it is still listed.
    pub fn push(&mut self, e: &Event<'_>, meta: &Metadata, now: Instant) -> Pushed {
        if e.kind.raw() != b"container" || FILTERED_ACTIONS.contains(&e.action.raw()) {
            self.stats.filtered += 1;
            return Pushed::Filtered;
        }
        let (Some(name), Some(image)) = (e.name, e.image) else {
            warn!(
                "docker events: a {:?} event without a name or image; skipped",
                String::from_utf8_lossy(e.action.raw())
            );
            self.stats.excluded += 1;
            return Pushed::Excluded;
        };
        let id = e.id.raw();
        let listed = meta.get(id);
        if let Some(m) = listed {
            self.note_tags(id, &m.tags, now);
        }
        let pause_label = e.ecs.container_name.is_some_and(|n| n.raw() == PAUSE_ECS_NAME);
        if pause_label || memchr::memmem::find(image.raw(), PAUSE_IMAGE).is_some() {
            self.stats.excluded += 1;
            return Pushed::Excluded;
        }
        if self.pending.len() >= MAX_PENDING || self.arena.len() > MAX_ARENA {
            self.stats.dropped += 1;
            self.dropped_in_pass += 1;
            if self.dropped_in_pass == 1 {
                warn!("docker events: more than {MAX_PENDING} events (or 1 MiB) in one pass; dropping the rest of the pass's");
            }
            return Pushed::Dropped;
        }
        let arena = &mut self.arena;
        let id = put(arena, e.id);
        // An image given as `sha256:…`: the name the container was listed with, if known.
        let image = match listed.filter(|m| image.raw().starts_with(b"sha256:") && !m.image.is_empty()) {
            Some(m) => {
                let start = arena.len();
                arena.extend_from_slice(m.image.as_bytes());
                Span(start as u32, m.image.len() as u32)
            }
            None => put(arena, image),
        };
        let mut name = put(arena, name);
        if name.1 > 0 && arena[name.0 as usize] == b'/' {
            name = Span(name.0 + 1, name.1 - 1);
        }
        let action = put(arena, e.action);
        let l = &e.ecs;
        let ecs = [l.task_arn, l.family, l.version, l.container_name, l.cluster].map(|v| v.map(|v| put(arena, v)));
        // Seconds: from `timeNano` when given (as the original does), else `time`.
        let secs = if e.time_nano > 0 { e.time_nano / 1_000_000_000 } else { e.time };
        self.pending.push(Pending { id, image, name, action, secs, ecs });
        Pushed::Kept
    }

    /// Remembers a listed container's tags (cheap when they did not change).
    fn note_tags(&mut self, id: &[u8], tags: &[String], now: Instant) {
        let Ok(id) = <[u8; 64]>::try_from(id) else { return };
        match self.kept.iter_mut().find(|k| k.id == id) {
            Some(k) => {
                if k.tags != tags {
                    k.tags = tags.to_vec();
                }
                k.last_listed = now;
            }
            None => self.kept.push(KeptTags { id, tags: tags.to_vec(), last_listed: now }),
        }
    }

    /// The pass: writes the `/intake/` body for the pending events into `out` and forgets them.
    /// Returns the number of bundles (0: nothing to send, `out` untouched).
    pub fn flush(&mut self, host: &str, meta: &Metadata, now: Instant, out: &mut Vec<u8>) -> usize {
        if self.dropped_in_pass > 0 {
            warn!("docker events: {} events dropped in this pass (over {MAX_PENDING})", self.dropped_in_pass);
            self.dropped_in_pass = 0;
        }
        self.kept.retain(|k| now.saturating_duration_since(k.last_listed) < TAGS_KEPT);
        if self.pending.is_empty() {
            return 0;
        }
        // Group by image, in arrival order within each: the index breaks ties. Not `sort_by`:
        // the stable sort allocates a scratch buffer for more than a few hundred elements.
        let Self { arena, pending, order, .. } = self;
        order.clear();
        order.extend(0..pending.len() as u32);
        order.sort_unstable_by(|&a, &b| {
            pending[a as usize].image.of(arena).cmp(pending[b as usize].image.of(arena)).then(a.cmp(&b))
        });
        encode::begin(out);
        let mut bundles = 0;
        let mut i = 0;
        while i < self.order.len() {
            let image = self.pending[self.order[i] as usize].image.of(&self.arena);
            let mut j = i + 1;
            while j < self.order.len() && self.pending[self.order[j] as usize].image.of(&self.arena) == image {
                j += 1;
            }
            self.write_bundle(i..j, host, meta, out, bundles == 0);
            bundles += 1;
            i = j;
        }
        encode::end(out, host);
        self.stats.bundles += bundles as u64;
        self.stats.bundled += self.pending.len() as u64;
        self.pending.clear();
        self.arena.clear();
        bundles
    }

    fn write_bundle(
        &mut self,
        group: std::ops::Range<usize>,
        host: &str,
        meta: &Metadata,
        out: &mut Vec<u8>,
        first: bool,
    ) {
        let Self { arena, pending, order, actions, ids, tag_buf, tag_spans, title, text, kept, .. } = self;
        let events = || order[group.clone()].iter().map(|&k| &pending[k as usize]);
        let image = pending[order[group.start] as usize].image.of(arena);
        // Counts per action, sorted by action (the original's order is Go map order: random).
        actions.clear();
        for p in events() {
            let a = p.action.of(arena);
            match actions.iter_mut().find(|(s, _)| s.of(arena) == a) {
                Some((_, n)) => *n += 1,
                None => actions.push((p.action, 1)),
            }
        }
        // Distinct actions: the unstable sort gives the same order, without allocating.
        actions.sort_unstable_by(|a, b| a.0.of(arena).cmp(b.0.of(arena)));
        title.clear();
        title.extend_from_slice(image);
        for (a, n) in actions.iter() {
            use std::io::Write;
            let _ = write!(title, " {n} ");
            title.extend_from_slice(a.of(arena));
        }
        title.extend_from_slice(b" on ");
        title.extend_from_slice(host.as_bytes());
        text.clear();
        text.extend_from_slice(b"%%% \n");
        text.extend_from_slice(title);
        text.extend_from_slice(b"\n```\n");
        for p in events() {
            text.extend(p.action.of(arena).iter().map(u8::to_ascii_uppercase));
            text.push(b'\t');
            text.extend_from_slice(p.name.of(arena));
            text.push(b'\n');
        }
        text.extend_from_slice(b"```\n %%%");
        let timestamp = events().map(|p| p.secs).max().unwrap_or(0);
        let error = events().any(|p| matches!(p.action.of(arena), b"oom" | b"kill"));
        // Tags: each distinct container's, once.
        ids.clear();
        for (k, p) in events().enumerate() {
            let id = p.id.of(arena);
            if !ids.iter().any(|&o| pending[order[group.start + o] as usize].id.of(arena) == id) {
                ids.push(k);
            }
        }
        tag_buf.clear();
        tag_spans.clear();
        let mut tag = |parts: &[&[u8]]| {
            let start = tag_buf.len();
            for p in parts {
                tag_buf.extend_from_slice(p);
            }
            tag_spans.push(Span(start as u32, (tag_buf.len() - start) as u32));
        };
        for &k in ids.iter() {
            let p = &pending[order[group.start + k] as usize];
            let id = p.id.of(arena);
            let listed = meta.get(id).map(|m| &m.tags[..]);
            let kept_tags = || kept.iter().find(|t| t.id[..] == *id).map(|t| &t.tags[..]);
            match listed.or_else(kept_tags) {
                Some(tags) => {
                    for t in tags {
                        tag(&[t.as_bytes()]);
                        if let Some(c) = t.strip_prefix("cluster_name:") {
                            tag(&[b"ecs_cluster_name:", c.as_bytes()]);
                        }
                    }
                }
                None => {
                    tag(&[b"container_id:", id]);
                    let name = p.name.of(arena);
                    if !name.is_empty() {
                        tag(&[b"container_name:", name]);
                    }
                    let img = p.image.of(arena);
                    if let Ok(img) = std::str::from_utf8(img) {
                        let (n, short, t) = split_image(img);
                        tag(&[b"docker_image:", img.as_bytes()]);
                        tag(&[b"image_name:", n.as_bytes()]);
                        tag(&[b"short_image:", short.as_bytes()]);
                        tag(&[b"image_tag:", t.as_bytes()]);
                    }
                    let label = |i: usize| p.ecs[i].map(|s| s.of(arena)).filter(|v| !v.is_empty());
                    if let Some(v) = label(0) {
                        tag(&[b"task_arn:", v]);
                    }
                    if let Some(v) = label(1) {
                        tag(&[b"task_family:", v]);
                        tag(&[b"task_name:", v]);
                    }
                    if let Some(v) = label(2) {
                        tag(&[b"task_version:", v]);
                    }
                    if let Some(v) = label(3) {
                        tag(&[b"ecs_container_name:", v]);
                    }
                    if let Some(v) = label(4) {
                        tag(&[b"cluster_name:", v]);
                        tag(&[b"ecs_cluster_name:", v]);
                    }
                }
            }
        }
        let tb: &[u8] = tag_buf;
        // Equal tags are deduplicated next, so their order does not matter (and the stable sort
        // would allocate for a large bundle).
        tag_spans.sort_unstable_by(|a, b| a.of(tb).cmp(b.of(tb)));
        tag_spans.dedup_by(|a, b| a.of(tb) == b.of(tb));
        let bundle = Bundle { image, title, text, timestamp, host, error };
        encode::bundle(out, &bundle, tag_spans.iter().map(|s| s.of(tb)), first);
    }
}

/// Appends a decoded string to the arena; where it is.
fn put(arena: &mut Vec<u8>, s: JStr<'_>) -> Span {
    let start = arena.len();
    s.unescape_into(arena);
    Span(start as u32, (arena.len() - start) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::docker::ContainerMeta;
    use crate::parse::docker_events::event;
    use serde_json::Value;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn ev(id: &str, action: &str, image: &str, name: &str, secs: i64, labels: &str) -> String {
        format!(
            r#"{{"Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{{labels}"image":"{image}","name":"{name}"}}}},"time":{secs},"timeNano":{secs}000000123}}"#
        )
    }

    fn listed(id: &str, name: &str, image: &str, extra: &[&str]) -> Metadata {
        let mut tags =
            vec![format!("container_id:{id}"), format!("container_name:{name}"), format!("docker_image:{image}")];
        tags.extend(extra.iter().map(|s| s.to_string()));
        let meta = ContainerMeta { name: name.into(), image: image.into(), tags, ..Default::default() };
        let mut m = Metadata::default();
        m.by_id.push((id.as_bytes().try_into().unwrap(), meta));
        m
    }

    fn push(b: &mut EventBundler, line: &str, meta: &Metadata, now: Instant) -> Pushed {
        b.push(&event(line.as_bytes()).unwrap(), meta, now)
    }

    fn bundles(body: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["apiKey"], "");
        assert_eq!(v["internalHostname"], "h1");
        v["events"]["docker"].as_array().unwrap().clone()
    }

    #[test]
    fn bundles_per_image_with_the_originals_title_text_and_alert() {
        let t0 = Instant::now();
        let meta = listed(A, "web", "nginx:1.21", &["cluster_name:prod", "task_arn:arn:x"]);
        let mut b = EventBundler::default();
        assert_eq!(push(&mut b, &ev(A, "start", "nginx:1.21", "web", 100, ""), &meta, t0), Pushed::Kept);
        assert_eq!(
            push(&mut b, &ev(A, "exec_start: sh -c true", "nginx:1.21", "web", 101, ""), &meta, t0),
            Pushed::Filtered
        );
        assert_eq!(push(&mut b, &ev(B, "oom", "busybox", "/hog", 102, ""), &meta, t0), Pushed::Kept);
        assert_eq!(push(&mut b, &ev(A, "die", "nginx:1.21", "web", 103, ""), &meta, t0), Pushed::Kept);
        assert_eq!(push(&mut b, &ev(B, "die", "busybox", "/hog", 104, ""), &meta, t0), Pushed::Kept);
        assert_eq!(
            push(&mut b, &ev(B, "start", "amazon/amazon-ecs-pause:0.1.0", "p", 104, ""), &meta, t0),
            Pushed::Excluded
        );
        let mut out = Vec::new();
        assert_eq!(b.flush("h1", &meta, t0, &mut out), 2);
        let got = bundles(&out);
        let (bb, ng) = (&got[0], &got[1]);
        assert_eq!(bb["msg_title"], "busybox 1 die 1 oom on h1");
        assert_eq!(bb["msg_text"], "%%% \nbusybox 1 die 1 oom on h1\n```\nOOM\thog\nDIE\thog\n```\n %%%");
        assert_eq!(bb["alert_type"], "error");
        assert_eq!(bb["timestamp"], 104);
        assert_eq!(bb["aggregation_key"], "docker:busybox");
        // Never listed: tagged from the event itself.
        assert_eq!(
            bb["tags"],
            serde_json::json!([
                format!("container_id:{B}"),
                "container_name:hog",
                "docker_image:busybox",
                "image_name:busybox",
                "image_tag:latest",
                "short_image:busybox"
            ])
        );
        assert_eq!(ng["msg_title"], "nginx:1.21 1 die 1 start on h1");
        assert_eq!(ng["msg_text"], "%%% \nnginx:1.21 1 die 1 start on h1\n```\nSTART\tweb\nDIE\tweb\n```\n %%%");
        assert!(ng.get("alert_type").is_none(), "no oom or kill: no alert_type");
        assert_eq!(
            (&ng["priority"], &ng["host"], &ng["source_type_name"], &ng["event_type"]),
            (&"normal".into(), &"h1".into(), &"docker".into(), &"docker".into())
        );
        assert_eq!(
            ng["tags"],
            serde_json::json!([
                "cluster_name:prod",
                format!("container_id:{A}"),
                "container_name:web",
                "docker_image:nginx:1.21",
                "ecs_cluster_name:prod",
                "task_arn:arn:x"
            ])
        );
        out.clear();
        assert_eq!(b.flush("h1", &meta, t0, &mut out), 0, "each event once");
        assert!(out.is_empty());
        assert_eq!((b.stats.bundles, b.stats.bundled, b.stats.filtered, b.stats.excluded), (2, 4, 1, 1));
    }

    #[test]
    fn a_dead_containers_tags_are_kept_five_minutes() {
        let t0 = Instant::now();
        let meta = listed(A, "web", "nginx", &["task_family:web"]);
        let gone = Metadata::default();
        let mut b = EventBundler::default();
        push(&mut b, &ev(A, "kill", "nginx", "web", 1, ""), &meta, t0);
        let mut out = Vec::new();
        b.flush("h1", &meta, t0, &mut out);
        // Docker no longer lists it (it died); 4 minutes later it is destroyed.
        let t1 = t0 + Duration::from_secs(240);
        push(&mut b, &ev(A, "destroy", "nginx", "web", 241, ""), &gone, t1);
        b.flush("h1", &gone, t1, &mut out);
        let got = bundles(&out);
        assert!(got[0]["tags"].as_array().unwrap().contains(&"task_family:web".into()), "{}", got[0]);
        // Pruned after 5 minutes: then the event's own attributes (and labels) tag it.
        let t2 = t0 + Duration::from_secs(301);
        let labels = r#""com.amazonaws.ecs.task-definition-family":"web","com.amazonaws.ecs.cluster":"c","#;
        push(&mut b, &ev(A, "destroy", "nginx", "web", 302, labels), &gone, t2);
        b.flush("h1", &gone, t2, &mut out);
        let tags = bundles(&out)[0]["tags"].clone();
        assert!(tags.as_array().unwrap().contains(&"task_name:web".into()), "{tags}");
        assert!(tags.as_array().unwrap().contains(&"ecs_cluster_name:c".into()), "{tags}");
    }

    #[test]
    fn an_ecs_pause_container_is_excluded_by_its_label_whatever_its_image() {
        let t0 = Instant::now();
        let meta = Metadata::default();
        let mut b = EventBundler::default();
        let pause = r#""com.amazonaws.ecs.container-name":"~internal~ecs~pause","#;
        assert_eq!(push(&mut b, &ev(A, "start", "sha256:0123", "p", 1, pause), &meta, t0), Pushed::Excluded);
        let app = r#""com.amazonaws.ecs.container-name":"web","#;
        assert_eq!(push(&mut b, &ev(B, "start", "sha256:0123", "w", 1, app), &meta, t0), Pushed::Kept);
        assert_eq!((b.pending(), b.stats.excluded), (1, 1));
    }

    #[test]
    fn a_burst_over_the_cap_is_dropped_and_counted() {
        let t0 = Instant::now();
        let meta = Metadata::default();
        let mut b = EventBundler::default();
        let line = ev(A, "start", "x", "n", 1, "");
        for _ in 0..MAX_PENDING + 10 {
            push(&mut b, &line, &meta, t0);
        }
        assert_eq!((b.pending(), b.stats.dropped), (MAX_PENDING, 10));
        let mut out = Vec::new();
        b.flush("h1", &meta, t0, &mut out);
        let got = bundles(&out);
        assert_eq!(got[0]["msg_title"], format!("x {MAX_PENDING} start on h1"));
    }
}
