//! `POST /intake/` body with the docker check's event bundles (spec/docker-check.md §1.3):
//! `{"apiKey":"","events":{"docker":[…]},"internalHostname":…}`, one event object per image.

use super::json;

/// One bundle: the events of one image in one pass.
pub struct Bundle<'a> {
    pub image: &'a [u8],
    pub title: &'a [u8],
    pub text: &'a [u8],
    /// The newest event's time, unix seconds.
    pub timestamp: i64,
    pub host: &'a str,
    /// The bundle holds an `oom` or a `kill`.
    pub error: bool,
}

/// Starts the body in `out` (cleared first).
pub fn begin(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"apiKey\":\"\",\"events\":{\"docker\":[");
}

/// Appends one event object (`first`: no comma before it); `tags` sorted and de-duplicated.
pub fn bundle<'t>(out: &mut Vec<u8>, b: &Bundle<'_>, mut tags: impl Iterator<Item = &'t [u8]>, first: bool) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"msg_title\":");
    json::bytes_as_str(out, b.title);
    out.extend_from_slice(b",\"msg_text\":");
    json::bytes_as_str(out, b.text);
    out.extend_from_slice(b",\"timestamp\":");
    json::u64(out, b.timestamp.max(0) as u64);
    out.extend_from_slice(b",\"priority\":\"normal\",\"host\":");
    json::str(out, b.host);
    if let Some(t) = tags.next() {
        out.extend_from_slice(b",\"tags\":[");
        json::bytes_as_str(out, t);
        for t in tags {
            out.push(b',');
            json::bytes_as_str(out, t);
        }
        out.push(b']');
    }
    if b.error {
        out.extend_from_slice(b",\"alert_type\":\"error\"");
    }
    out.extend_from_slice(b",\"aggregation_key\":\"docker:");
    json::escape_into(out, b.image);
    out.extend_from_slice(b"\",\"source_type_name\":\"docker\",\"event_type\":\"docker\"}");
}

/// Ends the body.
pub fn end(out: &mut Vec<u8>, host: &str) {
    out.extend_from_slice(b"]},\"internalHostname\":");
    json::str(out, host);
    out.push(b'}');
}
