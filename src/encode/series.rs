//! `POST /api/v1/series` body: `{"series":[{"metric","points":[[ts,v]],"tags","host","device","type",
//! "interval"}]}` (spec/protocol.md §3.2), written straight into a reused buffer. A `device` tag
//! is sent as the serie's `device` field, not among its tags, as the Datadog serializer does
//! (`populateDeviceField`): the first one; a second would stay a tag.

use super::json;
use crate::checks::metric::{Kind, MetricSink, Tag};

pub struct SeriesEncoder<'a> {
    out: &'a mut Vec<u8>,
    host: &'a str,
    unix_secs: u64,
    interval_secs: u64,
    count: usize,
    source_type: Option<&'static str>,
}

impl<'a> SeriesEncoder<'a> {
    /// Starts a payload in `out` (cleared first).
    pub fn begin(out: &'a mut Vec<u8>, host: &'a str, unix_secs: u64, interval_secs: u64) -> Self {
        out.clear();
        out.extend_from_slice(b"{\"series\":[");
        SeriesEncoder { out, host, unix_secs, interval_secs, count: 0, source_type: None }
    }

    /// Continues a finished payload in `out` (its closing `]}` taken off) to append more
    /// series: the agent's own telemetry rides in the host check's flush.
    pub fn reopen(out: &'a mut Vec<u8>, host: &'a str, unix_secs: u64, interval_secs: u64) -> Self {
        const OPEN: &[u8] = b"{\"series\":[";
        if out.ends_with(b"]}") && out.starts_with(OPEN) {
            out.truncate(out.len() - 2);
        } else {
            out.clear();
            out.extend_from_slice(OPEN);
        }
        let count = usize::from(out.len() > OPEN.len());
        SeriesEncoder { out, host, unix_secs, interval_secs, count, source_type: None }
    }

    /// Series of checks carry `"source_type_name"` (the aggregator's `"System"` for them).
    pub fn with_source_type(mut self, name: &'static str) -> Self {
        self.source_type = Some(name);
        self
    }

    /// The payload's length so far (without the closing `]}` that `finish` adds).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether it holds no serie yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Series written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of the payload's host name (a serie without its own host carries it).
    pub fn host_len(&self) -> usize {
        self.host.len()
    }

    /// Closes the payload; returns how many series it holds.
    pub fn finish(self) -> usize {
        self.out.extend_from_slice(b"]}");
        self.count
    }
}

impl SeriesEncoder<'_> {
    /// A serie with its own points (`[ts, value]`, ascending), tags (whole `key:value` strings,
    /// sorted; a `device:` one becomes the `device` field) and host (`None`: the payload's):
    /// DogStatsD's series, aggregated per 10 s bucket (spec/dogstatsd.md §4.1).
    pub fn serie<'t>(
        &mut self,
        name: (&[u8], &str),
        kind: Kind,
        points: &[(u64, f64)],
        tags: impl Iterator<Item = &'t [u8]>,
        host: Option<&[u8]>,
    ) {
        // A point that is not finite is the caller's to drop (and count); `json::f64` would
        // write it as 0. The DogStatsD aggregator's fuzz target runs with this assertion on.
        debug_assert!(points.iter().all(|p| p.1.is_finite()), "a point that is not finite: {points:?}");
        let o = &mut *self.out;
        if self.count > 0 {
            o.push(b',');
        }
        self.count += 1;
        o.extend_from_slice(b"{\"metric\":\"");
        json::escape_into(o, name.0);
        json::escape_into(o, name.1.as_bytes());
        o.extend_from_slice(b"\",\"points\":[");
        for (i, (ts, v)) in points.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.push(b'[');
            json::u64(o, *ts);
            o.push(b',');
            json::f64(o, *v);
            o.push(b']');
        }
        o.extend_from_slice(b"],\"tags\":[");
        let mut device = None;
        let mut first = true;
        for t in tags {
            if device.is_none() {
                if let Some(d) = t.strip_prefix(b"device:") {
                    device = Some(d);
                    continue;
                }
            }
            if !std::mem::take(&mut first) {
                o.push(b',');
            }
            json::bytes_as_str(o, t);
        }
        o.extend_from_slice(b"],\"host\":");
        match host {
            Some(h) => json::bytes_as_str(o, h),
            None => json::str(o, self.host),
        }
        if let Some(d) = device.filter(|d| !d.is_empty()) {
            o.extend_from_slice(b",\"device\":");
            json::bytes_as_str(o, d);
        }
        o.extend_from_slice(b",\"type\":\"");
        o.extend_from_slice(kind.as_str().as_bytes());
        o.extend_from_slice(b"\",\"interval\":");
        json::u64(o, self.interval_secs);
        o.push(b'}');
    }
}

impl MetricSink for SeriesEncoder<'_> {
    fn metric(&mut self, name: &str, kind: Kind, value: f64, tags: &[Tag<'_>]) {
        if !value.is_finite() {
            return;
        }
        let o = &mut *self.out;
        if self.count > 0 {
            o.push(b',');
        }
        self.count += 1;
        o.extend_from_slice(b"{\"metric\":");
        json::str(o, name);
        o.extend_from_slice(b",\"points\":[[");
        json::u64(o, self.unix_secs);
        o.push(b',');
        json::f64(o, value);
        o.extend_from_slice(b"]],\"tags\":[");
        let device = tags.iter().position(|t| t.key == "device");
        let mut first = true;
        for (i, t) in tags.iter().enumerate() {
            if Some(i) == device {
                continue;
            }
            if !std::mem::take(&mut first) {
                o.push(b',');
            }
            o.push(b'"');
            json::escape_into(o, t.key.as_bytes());
            o.push(b':');
            json::escape_into(o, t.value);
            o.push(b'"');
        }
        o.extend_from_slice(b"],\"host\":");
        json::str(o, self.host);
        if let Some(t) = device.and_then(|i| tags.get(i)).filter(|t| !t.value.is_empty()) {
            o.extend_from_slice(b",\"device\":\"");
            json::escape_into(o, t.value);
            o.push(b'"');
        }
        o.extend_from_slice(b",\"type\":\"");
        o.extend_from_slice(kind.as_str().as_bytes());
        o.extend_from_slice(b"\",\"interval\":");
        json::u64(o, self.interval_secs);
        if let Some(st) = self.source_type {
            o.extend_from_slice(b",\"source_type_name\":");
            json::str(o, st);
        }
        o.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_the_documented_shape() {
        let mut buf = Vec::new();
        let mut e = SeriesEncoder::begin(&mut buf, "i-0abc", 1_700_000_000, 15);
        e.metric("system.load.1", Kind::Gauge, 0.5, &[]);
        e.metric("system.net.bytes_rcvd", Kind::Rate, 12.25, &[Tag { key: "device", value: b"eth\"0" }]);
        e.metric("skipped.nan", Kind::Gauge, f64::NAN, &[]);
        e.metric(
            "system.disk.free",
            Kind::Gauge,
            1.0,
            &[
                Tag { key: "device", value: b"/dev/nvme1n1" },
                Tag { key: "device_name", value: b"nvme1n1" },
                Tag { key: "filesystem", value: b"xfs" },
            ],
        );
        e.metric("x", Kind::Gauge, 1.0, &[Tag { key: "a", value: b"b" }, Tag { key: "device", value: b"" }]);
        assert_eq!(e.finish(), 4);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let s = &v["series"];
        assert_eq!(s.as_array().unwrap().len(), 4);
        assert_eq!(s[0]["metric"], "system.load.1");
        assert_eq!(s[0]["points"][0][0], 1_700_000_000u64);
        assert_eq!(s[0]["points"][0][1], 0.5);
        assert_eq!(s[0]["host"], "i-0abc");
        assert_eq!(s[0]["type"], "gauge");
        assert_eq!(s[0]["interval"], 15);
        assert_eq!(s[0]["tags"], serde_json::json!([]));
        assert_eq!(s[1]["type"], "rate");
        assert!(s[0].get("device").is_none());
        // `device:` is the serie's `device` field, not a tag.
        assert_eq!(s[1]["device"], "eth\"0");
        assert_eq!(s[1]["tags"], serde_json::json!([]));
        assert_eq!(s[2]["device"], "/dev/nvme1n1");
        assert_eq!(s[2]["tags"], serde_json::json!(["device_name:nvme1n1", "filesystem:xfs"]));
        // An empty one is omitted, as the spec says of `device`.
        assert!(s[3].get("device").is_none());
        assert_eq!(s[3]["tags"], serde_json::json!(["a:b"]));
        assert!(s[0].get("source_type_name").is_none());
        let mut e = SeriesEncoder::begin(&mut buf, "h", 1, 0).with_source_type("System");
        e.metric("docker.mem.rss", Kind::Gauge, 1.0, &[]);
        e.finish();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            (v["series"][0]["source_type_name"].as_str(), v["series"][0]["interval"].as_u64()),
            (Some("System"), Some(0))
        );
    }
}
