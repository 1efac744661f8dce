//! DogStatsD events waiting for the next flush, kept as encoded JSON objects in one reused
//! buffer, and the `/intake/` body they go out in (spec/dogstatsd.md §4.2):
//! `{"apiKey":"","events":{"<source type or api>":[…]},"internalHostname":…}`.
//! Bounded: past `max_bytes` of pending events a new one is refused and counted.

use super::dogstatsd::TagScratch;
use crate::encode::json;
use crate::parse::dogstatsd::Event;
use std::ops::Range;

pub struct EventBuffer {
    /// The agent's host name: an event's host without `h:` or a `host:` tag.
    pub host: String,
    arena: Vec<u8>,
    /// (source type name, encoded object), ranges in `arena`.
    pending: Vec<(Range<usize>, Range<usize>)>,
    /// The next pending event to write, while a flush goes in several bodies.
    next: usize,
    scratch: Vec<u8>,
    max_bytes: usize,
    /// Events refused because the buffer was full.
    pub dropped: u64,
    pub flushed: u64,
}

impl EventBuffer {
    pub fn new(max_bytes: usize) -> EventBuffer {
        EventBuffer {
            host: String::new(),
            arena: Vec::new(),
            pending: Vec::new(),
            next: 0,
            scratch: Vec::new(),
            max_bytes,
            dropped: 0,
            flushed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Encodes one event received at `now` (unix seconds); `origin`: the sender's tags.
    pub fn push(&mut self, e: &Event<'_>, origin: &[u8], now: u64, tags: &mut TagScratch) {
        if self.arena.len() >= self.max_bytes {
            self.dropped += 1;
            return;
        }
        let tag_host = tags.collect(e.tags, origin);
        let start = self.arena.len();
        let source = e.source_type.filter(|s| !s.is_empty()).unwrap_or(b"api");
        self.arena.extend_from_slice(source);
        let src = start..self.arena.len();
        let o = &mut self.arena;
        let obj_start = o.len();
        o.extend_from_slice(b"{\"msg_title\":");
        unescape_newlines(&mut self.scratch, e.title);
        json::bytes_as_str(o, &self.scratch);
        o.extend_from_slice(b",\"msg_text\":");
        unescape_newlines(&mut self.scratch, e.text);
        json::bytes_as_str(o, &self.scratch);
        o.extend_from_slice(b",\"timestamp\":");
        // `d:` absent (or 0): the arrival time (`addEvent`).
        let ts = e.timestamp.filter(|&t| t != 0).unwrap_or(now as i64);
        let _ = serde_json::to_writer(&mut *o, &ts);
        o.extend_from_slice(b",\"priority\":\"");
        o.extend_from_slice(e.priority.as_str().as_bytes());
        o.extend_from_slice(b"\",\"host\":");
        match (e.host.filter(|h| !h.is_empty()), tag_host) {
            (Some(h), _) | (None, Some(h)) => json::bytes_as_str(o, h),
            (None, None) => json::str(o, &self.host),
        }
        let mut it = tags.iter().peekable();
        if it.peek().is_some() {
            o.extend_from_slice(b",\"tags\":[");
            for (i, t) in it.enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                json::bytes_as_str(o, t);
            }
            o.push(b']');
        }
        o.extend_from_slice(b",\"alert_type\":\"");
        o.extend_from_slice(e.alert_type.as_str().as_bytes());
        o.push(b'"');
        if let Some(k) = e.aggregation_key.filter(|k| !k.is_empty()) {
            o.extend_from_slice(b",\"aggregation_key\":");
            json::bytes_as_str(o, k);
        }
        if let Some(s) = e.source_type.filter(|s| !s.is_empty()) {
            o.extend_from_slice(b",\"source_type_name\":");
            json::bytes_as_str(o, s);
        }
        o.push(b'}');
        self.pending.push((src, obj_start..o.len()));
    }

    /// Writes the `/intake/` body of every pending event into `out` (cleared first) and empties
    /// the buffer; `false` (and nothing written) when none is pending.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> bool {
        let any = self.flush_some(out, usize::MAX);
        debug_assert!(self.pending.is_empty());
        any
    }

    /// Writes an `/intake/` body of the next pending events into `out` (cleared first), at
    /// most `max_bytes` long (one event at least, however long); `false` (and nothing written)
    /// when none is left. Call it until `false` with no event pushed in between (the events
    /// are grouped by source type at the first call); after the last one the buffer is empty.
    pub fn flush_some(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if self.next >= self.pending.len() {
            return false;
        }
        let a = &self.arena;
        if self.next == 0 {
            // Grouped by source type (stable: arrival order within a group).
            self.pending.sort_by(|x, y| a[x.0.clone()].cmp(&a[y.0.clone()]));
        }
        out.clear();
        out.extend_from_slice(b"{\"apiKey\":\"\",\"events\":{");
        // `]},"internalHostname":` (22), the host escaped (6 to 1 at most) in quotes, `}`.
        let tail = 22 + 6 * self.host.len() + 3;
        let mut prev: Option<&[u8]> = None;
        let mut written = 0;
        for (src, obj) in &self.pending[self.next..] {
            let s = &a[src.clone()];
            // A new group: `],` and `"source":[`, the name escaped; else a comma.
            let head = if prev == Some(s) { 1 } else { 2 + 6 * s.len() + 4 };
            if written > 0 && out.len() + head + obj.len() + tail > max_bytes {
                break;
            }
            if prev != Some(s) {
                if prev.is_some() {
                    out.extend_from_slice(b"],");
                }
                json::bytes_as_str(out, s);
                out.extend_from_slice(b":[");
            } else {
                out.push(b',');
            }
            prev = Some(s);
            out.extend_from_slice(&a[obj.clone()]);
            written += 1;
        }
        out.extend_from_slice(b"]},\"internalHostname\":");
        json::str(out, &self.host);
        out.push(b'}');
        self.next += written;
        self.flushed += written as u64;
        if self.next == self.pending.len() {
            self.next = 0;
            self.pending.clear();
            self.arena.clear();
            if self.arena.capacity() > 1 << 20 {
                self.arena.shrink_to(1 << 20);
            }
        }
        true
    }
}

/// `\n` (backslash, n) in a title or text means a newline (`cleanEventText`).
fn unescape_newlines(out: &mut Vec<u8>, s: &[u8]) {
    out.clear();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::dogstatsd::{message, Message};
    use std::collections::BTreeMap;

    fn push(b: &mut EventBuffer, line: &[u8], origin: &[u8]) {
        let Ok(Message::Event(e)) = message(line) else { panic!() };
        b.push(&e, origin, 1_700_000_009, &mut TagScratch::default());
    }

    #[test]
    fn intake_body_groups_by_source_type() {
        let mut b = EventBuffer::new(1 << 20);
        b.host = "i-0abc".into();
        push(&mut b, b"_e{6,14}:Deploy|v42 rolled out|d:1700000003|#team:a,env:prod,team:a", b"");
        push(&mut b, b"_e{2,8}:CI|a\\nb <&>|s:jenkins|t:error|k:build|p:low|#host:ci1", b"container_id:c1");
        push(&mut b, b"_e{1,1}:x|y|h:web", b"");
        let mut out = Vec::new();
        assert!(b.flush(&mut out));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["apiKey"], "");
        assert_eq!(v["internalHostname"], "i-0abc");
        let api = v["events"]["api"].as_array().unwrap();
        assert_eq!(api.len(), 2);
        assert_eq!(
            api[0],
            serde_json::json!({"msg_title":"Deploy","msg_text":"v42 rolled out","timestamp":1700000003u64,
                "priority":"normal","host":"i-0abc","tags":["env:prod","team:a"],"alert_type":"info"})
        );
        assert_eq!((api[1]["host"].as_str(), api[1]["timestamp"].as_u64()), (Some("web"), Some(1_700_000_009)));
        assert!(api[1].get("tags").is_none());
        let j = &v["events"]["jenkins"][0];
        assert_eq!(j["msg_text"], "a\nb <&>");
        assert_eq!(
            (j["host"].as_str(), j["priority"].as_str(), j["alert_type"].as_str()),
            (Some("ci1"), Some("low"), Some("error"))
        );
        assert_eq!((j["aggregation_key"].as_str(), j["source_type_name"].as_str()), (Some("build"), Some("jenkins")));
        assert_eq!(j["tags"], serde_json::json!(["container_id:c1"]));
        assert!(!b.flush(&mut out));
    }

    #[test]
    fn a_flush_goes_in_bodies_of_a_bound_with_the_same_events() {
        let mut whole = EventBuffer::new(4 << 20);
        let mut parts = EventBuffer::new(4 << 20);
        for b in [&mut whole, &mut parts] {
            b.host = "h\u{1}".into();
            for i in 0..3000 {
                let (title, text) = (format!("t{i}"), "x".repeat(1 + i % 300));
                let src = ["", "|s:jenkins", "|s:\u{2}\u{2}"][i % 3];
                let line = format!("_e{{{},{}}}:{title}|{text}{src}", title.len(), text.len());
                push(b, line.as_bytes(), b"");
            }
        }
        let mut out = Vec::new();
        assert!(whole.flush(&mut out));
        let want: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let max = 64 * 1024;
        let mut got: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        let mut bodies = 0;
        while parts.flush_some(&mut out, max) {
            assert!(out.len() <= max, "{} bytes", out.len());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["internalHostname"], "h\u{1}");
            for (src, list) in v["events"].as_object().unwrap() {
                got.entry(src.clone()).or_default().extend(list.as_array().unwrap().iter().cloned());
            }
            bodies += 1;
        }
        assert!(bodies > 5, "{bodies}");
        let want: BTreeMap<String, Vec<serde_json::Value>> = want["events"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().unwrap().clone()))
            .collect();
        assert_eq!(got, want, "the same events, in the same order per source type");
        assert_eq!((parts.flushed, parts.len()), (3000, 0));
        assert!(!parts.flush_some(&mut out, max));
        // One event longer than the bound still goes, alone.
        push(&mut parts, b"_e{1,1}:x|y", b"");
        assert!(parts.flush_some(&mut out, 10));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap()["events"]["api"][0]["msg_title"], "x");
        assert!(!parts.flush_some(&mut out, 10));
    }

    #[test]
    fn a_full_buffer_refuses_and_counts() {
        let mut b = EventBuffer::new(10);
        push(&mut b, b"_e{1,1}:x|y", b"");
        push(&mut b, b"_e{1,1}:x|y", b"");
        assert_eq!((b.len(), b.dropped), (1, 1));
    }
}
