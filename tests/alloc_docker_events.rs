//! Docker's event stream costs no heap allocation per event once warm: the chunked framing, the
//! line framing (events split across reads are gathered in one reused buffer), the event fields
//! (borrowed), and the docker pass's bundling and `/intake/` body (a reused arena, reused scratch
//! and output buffers). The test binary counts every allocation.
//!
//! The pass is large on purpose: more than 1,024 events (the stable sort's stack scratch holds
//! 1,024 indices; past it `sort_by` allocates) and a bundle of more than 512 tags (the same for
//! the tags' spans).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use std::time::Instant;
use sts_agent::checks::docker_events::EventBundler;
use sts_agent::parse::docker::ContainerMeta;
use sts_agent::parse::docker_events::{event, Dechunker, Line, LineFramer};
use sts_agent::sources::docker::Metadata;

#[global_allocator]
static A: Counting = Counting;

const EVENTS: usize = 1200;
/// Tags of the one listed container (`ctr-0`, in the first bundle).
const TAGS: usize = 700;

/// 1,200 events of 6 containers of 3 images, as Docker writes them: one chunk per event.
fn body() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..EVENTS as u64 {
        let id = format!("{:064x}", i % 6 + 1);
        let action = ["create", "start", "kill", "die", "stop", "health_status: healthy"][(i % 6) as usize];
        let line = format!(
            r#"{{"status":"{action}","id":"{id}","from":"img{0}:1","Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"com.amazonaws.ecs.cluster":"prod","com.amazonaws.ecs.task-arn":"arn:aws:ecs:eu-west-1:1:task/prod/t{0}","image":"img{0}:1","name":"ctr-{1}"}}}},"scope":"local","time":{2},"timeNano":{2}000000{3:03}}}"#,
            i % 3,
            i % 6,
            1_700_000_000 + i,
            i % 1000
        );
        b.extend_from_slice(format!("{:x}\r\n{line}\n\r\n", line.len() + 1).as_bytes());
    }
    b
}

/// Feeds `body` in reads of 4,000 bytes (events cut across reads) to the bundler; one pass.
fn pass(
    body: &[u8],
    lines: &mut LineFramer,
    bundler: &mut EventBundler,
    meta: &Metadata,
    out: &mut Vec<u8>,
) -> (usize, usize) {
    let now = Instant::now();
    let mut d = Dechunker::default();
    let mut n = 0;
    for read in body.chunks(4000) {
        d.feed(read, |data| {
            lines.push(data, |l| {
                let Line::Whole(w) = l else { panic!("no event is too long") };
                let e = event(w).expect("a valid event");
                bundler.push(&e, meta, now);
                n += 1;
            })
        })
        .unwrap();
    }
    (n, bundler.flush("h1", meta, now, out))
}

#[test]
fn events_are_read_bundled_and_encoded_without_allocating() {
    let body = body();
    let mut meta = Metadata::default();
    let listed = ContainerMeta {
        name: "ctr-0".into(),
        image: "img0:1".into(),
        tags: (0..TAGS).map(|i| format!("tag{i}:v")).chain(["container_name:ctr-0".into()]).collect(),
        ..Default::default()
    };
    meta.by_id.push(([b'0'; 63].iter().chain(b"1").copied().collect::<Vec<u8>>().try_into().unwrap(), listed));
    let mut lines = LineFramer::new(64 * 1024);
    let mut bundler = EventBundler::default();
    let mut out = Vec::new();
    // Warm-up: buffers and the tag cache reach their sizes (which allocates: the count works).
    let start = allocations();
    assert_eq!(pass(&body, &mut lines, &mut bundler, &meta, &mut out), (EVENTS, 3));
    let before = allocations();
    assert!(before > start, "the warm-up allocated its buffers");
    let got = pass(&body, &mut lines, &mut bundler, &meta, &mut out);
    let allocs = allocations() - before;
    assert_eq!(got, (EVENTS, 3));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["events"]["docker"][0]["msg_title"], "img0:1 200 create 200 die on h1");
    assert!(v["events"]["docker"][0]["tags"].as_array().unwrap().len() > TAGS, "the listed container's tags");
    assert_eq!(v["events"]["docker"][2]["alert_type"], "error");
    // Arrival order within a bundle: ctr-0 created, ctr-3 died, ctr-0 created, …
    let text = v["events"]["docker"][0]["msg_text"].as_str().unwrap();
    assert!(text.contains("```\nCREATE\tctr-0\nDIE\tctr-3\nCREATE\tctr-0\n"), "{text}");
    assert_eq!(allocs, 0, "allocations for {EVENTS} events and their pass");
}
