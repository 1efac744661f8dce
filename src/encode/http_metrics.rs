//! The HTTP metrics of one connection as the StackState process agent 4.0.x sends them (variant A,
//! `formatMetrics`; spec http-inspection §2.2): a response-time sketch per status code and per
//! status group, and a request rate per group (all seven, even at 0) and per code.
//!
//! Every metric carries exactly one tag, `code`. The order is the process agent's, with Go's map
//! order replaced by ascending codes: exact-code sketches, group sketches in table order, the
//! seven group rates, the exact-code rates.

use super::{json, proto};
use crate::model::ddsketch::{self, Bin, ZERO};

const RESPONSE_TIME: &[u8] = b"http_response_time_seconds";
const REQUESTS_PER_SECOND: &[u8] = b"http_requests_per_second";

/// The status groups in the process agent's order, with their inclusive code ranges. `any` takes
/// every code, 600–999 included (PA's `inRange` for it is `true`).
const GROUPS: [(&[u8], u16, u16); 7] = [
    (b"any", 0, u16::MAX),
    (b"success", 100, 399),
    (b"1xx", 100, 199),
    (b"2xx", 200, 299),
    (b"3xx", 300, 399),
    (b"4xx", 400, 499),
    (b"5xx", 500, 599),
];

/// Buffers reused from one connection to the next, so that a steady state allocates nothing.
#[derive(Default)]
pub struct Scratch {
    /// The `(index, count)` bins of the sketch being written, sorted by index.
    merged: Vec<(i16, u32)>,
    /// Each distinct code with its response count, in code order.
    codes: Vec<(u16, u64)>,
}

/// Where the metrics go: the protobuf or the JSON writer.
trait Sink {
    fn histogram(&mut self, tag: &[u8], bins: &[(i16, u32)]);
    fn rate(&mut self, tag: &[u8], value: f64);
}

/// Walks the metrics of `bins` (sorted by (code, index)) in the process agent's order.
fn visit(bins: &[Bin], elapsed_s: f64, s: &mut Scratch, sink: &mut impl Sink) {
    // PA writes metrics only when the tracer had at least one response-time histogram.
    if bins.is_empty() {
        return;
    }
    debug_assert!(bins.windows(2).all(|w| (w[0].code, w[0].index) <= (w[1].code, w[1].index)));
    // PA: the count of responses over the interval's seconds; 0 when the interval is not positive.
    let rate = |n: u64| if elapsed_s > 0.0 { n as f64 / elapsed_s } else { 0.0 };
    let mut digits = [0u8; 5];

    s.codes.clear();
    let mut rest = bins;
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|b| b.code == first.code).count();
        let (run, tail) = rest.split_at(n);
        rest = tail;
        s.merged.clear();
        s.merged.extend(run.iter().map(|b| (b.index, b.count)));
        let count = ddsketch::count(s.merged.iter().copied());
        // A code whose sketch is empty (only zero counts) still gets its rate of 0, as in PA.
        if count > 0 {
            sink.histogram(code_tag(first.code, &mut digits), &s.merged);
        }
        s.codes.push((first.code, count));
    }

    let mut group_counts = [0u64; GROUPS.len()];
    for ((tag, lo, hi), group_count) in GROUPS.iter().zip(&mut group_counts) {
        s.merged.clear();
        s.merged.extend(bins.iter().filter(|b| (*lo..=*hi).contains(&b.code)).map(|b| (b.index, b.count)));
        s.merged.sort_unstable_by_key(|&(index, _)| index);
        *group_count = ddsketch::count(s.merged.iter().copied());
        if *group_count > 0 {
            sink.histogram(tag, &s.merged);
        }
    }
    for ((tag, _, _), &n) in GROUPS.iter().zip(&group_counts) {
        sink.rate(tag, rate(n));
    }
    for &(code, n) in &s.codes {
        sink.rate(code_tag(code, &mut digits), rate(n));
    }
}

/// A status code's decimal digits, written into `buf` without allocating.
fn code_tag(code: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut at = buf.len();
    let mut v = code;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[at..]
}

struct Proto<'a>(&'a mut Vec<u8>);

impl Proto<'_> {
    /// One `Connection.metrics` entry (field 54): `ConnectionMetric{name=1, tags=2 {"code": tag},
    /// value=3 ConnectionMetricValue}`.
    fn metric(&mut self, name: &[u8], tag: &[u8], large: bool, value: impl FnOnce(&mut Vec<u8>)) {
        let body = |o: &mut Vec<u8>| {
            proto::bytes(o, 1, name);
            // A map<string,string> entry: key=1, value=2.
            proto::message(o, 2, |o| {
                proto::bytes(o, 1, b"code");
                proto::bytes(o, 2, tag);
            });
            if large {
                proto::large_message(o, 3, value);
            } else {
                proto::message(o, 3, value);
            }
        };
        // A sketch can reach 8 KiB (1024 bins); a rate is always 50 bytes or so.
        if large {
            proto::large_message(self.0, 54, body);
        } else {
            proto::message(self.0, 54, body);
        }
    }
}

impl Sink for Proto<'_> {
    fn histogram(&mut self, tag: &[u8], bins: &[(i16, u32)]) {
        self.metric(RESPONSE_TIME, tag, true, |o| {
            proto::large_message(o, 1, |o| ddsketch::write_sketch(o, bins.iter().copied()));
        });
    }

    fn rate(&mut self, tag: &[u8], value: f64) {
        // `number` is a oneof member: written even when 0.
        self.metric(REQUESTS_PER_SECOND, tag, false, |o| proto::double_present(o, 2, value));
    }
}

/// Appends the `Connection.metrics` entries (field 54, each a `ConnectionMetric` message:
/// name=1, tags=2 map<string,string>, value=3 ConnectionMetricValue{histogram=1 DDSketch | number=2 double})
/// for a connection whose response-time bins are `bins` (sorted by (code, index); empty means: write nothing),
/// over a check interval of `elapsed_s` seconds (rate = count / elapsed_s; 0 when elapsed_s <= 0).
///
/// A code whose bins all have a zero count stands for an empty sketch: it gets no histogram but
/// its rate (0), as PA does for a code that was seen with an empty sketch.
pub fn write_proto(out: &mut Vec<u8>, bins: &[Bin], elapsed_s: f64, s: &mut Scratch) {
    visit(bins, elapsed_s, s, &mut Proto(out));
}

struct Json<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Json<'_> {
    fn open(&mut self, name: &[u8], tag: &[u8]) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(b"{\"name\":");
        json::bytes_as_str(self.out, name);
        self.out.extend_from_slice(b",\"code\":");
        json::bytes_as_str(self.out, tag);
    }
}

impl Sink for Json<'_> {
    fn histogram(&mut self, tag: &[u8], bins: &[(i16, u32)]) {
        self.open(RESPONSE_TIME, tag);
        let all = || bins.iter().copied();
        self.out.extend_from_slice(b",\"count\":");
        json::u64(self.out, ddsketch::count(all()));
        for (key, q) in [(&b",\"p50\":"[..], 0.5), (b",\"p95\":", 0.95), (b",\"p99\":", 0.99)] {
            self.out.extend_from_slice(key);
            json::f64(self.out, ddsketch::quantile(all(), q).unwrap_or(0.0));
        }
        self.out.extend_from_slice(b",\"zeroCount\":");
        json::u64(self.out, ddsketch::count(all().filter(|&(i, _)| i == ZERO)));
        self.out.push(b'}');
    }

    fn rate(&mut self, tag: &[u8], value: f64) {
        self.open(REQUESTS_PER_SECOND, tag);
        self.out.extend_from_slice(b",\"value\":");
        json::f64(self.out, value);
        self.out.push(b'}');
    }
}

/// The same metrics as a JSON array (for the agent's dry run, which prints payloads as JSON):
/// `{"name":"http_response_time_seconds","code":"200","count":3,"p50":…,"p95":…,"p99":…,"zeroCount":0}`
/// per sketch (quantiles as sketches-go computes them: a bin's representative value), then
/// `{"name":"http_requests_per_second","code":"any","value":0.1666…}` per rate. `[]` when `bins`
/// is empty.
pub fn write_json(out: &mut Vec<u8>, bins: &[Bin], elapsed_s: f64, s: &mut Scratch) {
    out.push(b'[');
    visit(bins, elapsed_s, s, &mut Json { out, first: true });
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ddsketch::index;

    fn bin(code: u16, seconds: f64, count: u32) -> Bin {
        Bin { code, index: index(seconds).unwrap(), count }
    }

    #[test]
    fn code_tags() {
        let mut b = [0u8; 5];
        assert_eq!(code_tag(404, &mut b), b"404");
        assert_eq!(code_tag(0, &mut b), b"0");
        assert_eq!(code_tag(7, &mut b), b"7");
        assert_eq!(code_tag(u16::MAX, &mut b), b"65535");
    }

    /// §2.5: the bytes of `http_response_time_seconds {code:"404"}` (73) and of
    /// `http_requests_per_second {code:"404"}` (50) for one 404 after 0.005 s in 30 s.
    #[test]
    fn spec_bytes_of_two_metrics() {
        let mut out = Vec::new();
        write_proto(&mut out, &[bin(404, 0.005, 1)], 30.0, &mut Scratch::default());
        // Field 54 (b2 03) and a one-byte length before each ConnectionMetric.
        let mut entries = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            assert_eq!(&rest[..2], [0xb2, 0x03]);
            let len = usize::from(rest[2]);
            assert!(len < 128);
            entries.push(&rest[3..3 + len]);
            rest = &rest[3 + len..];
        }
        // 404 sketch, 4xx sketch, any sketch, 7 group rates, 404 rate.
        assert_eq!(entries.len(), 3 + 7 + 1);

        let mut want = vec![0x0a, 0x1a];
        want.extend_from_slice(b"http_response_time_seconds");
        want.extend_from_slice(&[0x12, 0x0b, 0x0a, 0x04]);
        want.extend_from_slice(b"code");
        want.extend_from_slice(&[0x12, 0x03]);
        want.extend_from_slice(b"404");
        want.extend_from_slice(&[0x1a, 0x1e, 0x0a, 0x1c]);
        want.extend_from_slice(&[0x0a, 0x09, 0x09, 0xfd, 0x4a, 0x81, 0x5a, 0xbf, 0x52, 0xf0, 0x3f]);
        want.extend_from_slice(&[0x12, 0x0d, 0x12, 0x08, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x18, 0x91, 0x04]);
        want.extend_from_slice(&[0x1a, 0x00]);
        assert_eq!(want.len(), 73);
        assert_eq!(entries[0], &want[..]);

        let mut want = vec![0x0a, 0x18];
        want.extend_from_slice(b"http_requests_per_second");
        want.extend_from_slice(&[0x12, 0x0b, 0x0a, 0x04]);
        want.extend_from_slice(b"code");
        want.extend_from_slice(&[0x12, 0x03]);
        want.extend_from_slice(b"404");
        want.extend_from_slice(&[0x1a, 0x09, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xa1, 0x3f]);
        assert_eq!(want.len(), 50);
        assert_eq!(entries[10], &want[..]);
        // A group rate of 0 still carries its 8 zero bytes (tag 11).
        assert!(entries[4].ends_with(&[0x1a, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]), "success rate 0");
    }

    #[test]
    fn nothing_for_no_bins() {
        let mut out = vec![1];
        write_proto(&mut out, &[], 30.0, &mut Scratch::default());
        assert_eq!(out, [1]);
        write_json(&mut out, &[], 30.0, &mut Scratch::default());
        assert_eq!(out, b"\x01[]");
    }

    #[test]
    fn json_view() {
        let bins = [bin(200, 0.020, 2), bin(200, 0.025, 1), bin(404, 0.005, 1), bin(503, 1.5, 1), bin(700, 0.0, 1)];
        let mut out = Vec::new();
        write_json(&mut out, &bins, 30.0, &mut Scratch::default());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let a = v.as_array().unwrap();
        // 200, 404, 503, 700 sketches; any, success, 2xx, 4xx, 5xx; 7 + 4 rates.
        assert_eq!(a.len(), 4 + 5 + 11);
        assert_eq!(a[0]["name"], "http_response_time_seconds");
        assert_eq!(a[0]["code"], "200");
        assert_eq!(a[0]["count"], 3);
        assert_eq!(a[0]["p50"], ddsketch::representative(-196));
        assert_eq!(a[0]["p95"], ddsketch::representative(-196));
        assert_eq!(a[0]["p99"], ddsketch::representative(-196));
        assert_eq!(a[0]["zeroCount"], 0);
        assert_eq!(a[3]["code"], "700");
        assert_eq!(a[3]["zeroCount"], 1);
        assert_eq!(a[3]["p99"], 0.0);
        assert_eq!(a[4]["code"], "any");
        assert_eq!(a[4]["count"], 6);
        assert_eq!(a[4]["zeroCount"], 1);
        let tags: Vec<&str> = a[4..9].iter().map(|m| m["code"].as_str().unwrap()).collect();
        assert_eq!(tags, ["any", "success", "2xx", "4xx", "5xx"], "700 only in any");
        assert_eq!(a[9]["name"], "http_requests_per_second");
        assert_eq!(a[9]["code"], "any");
        assert_eq!(a[9]["value"], 0.2);
        assert_eq!(a[19]["code"], "700");
        assert_eq!(a[19]["value"], 1.0 / 30.0);
    }

    #[test]
    fn rate_is_zero_without_a_positive_interval() {
        for elapsed in [0.0, -3.0, f64::NAN] {
            let mut out = Vec::new();
            write_json(&mut out, &[bin(200, 0.1, 4)], elapsed, &mut Scratch::default());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let rates: Vec<f64> = v.as_array().unwrap()[4..].iter().map(|m| m["value"].as_f64().unwrap()).collect();
            assert_eq!(rates, [0.0; 8], "{elapsed}");
        }
    }
}
