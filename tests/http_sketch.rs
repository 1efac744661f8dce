//! The variant-A HTTP metrics (spec http-inspection §2.2–§2.5) as a receiver reads them: decoded
//! with prost structs written from the proto schema (tests/common/pa_proto.rs), and the sketches
//! read back by a second DDSketch implementation (Python's `ddsketch` package).

mod common;
use common::pa_proto::{Connection, ConnectionMetric, DdSketch};
use prost::Message;
use std::io::Write;
use std::process::{Command, Stdio};
use sts_agent::encode::http_metrics::{write_proto, Scratch};
use sts_agent::encode::proto;
use sts_agent::model::ddsketch::{self, index, Bin};

const RT: &str = "http_response_time_seconds";
const RPS: &str = "http_requests_per_second";

/// Bins as the flow table keeps them: one per (code, index), sorted, from raw response times.
fn bins(responses: &[(u16, f64)]) -> Vec<Bin> {
    let mut out: Vec<Bin> = Vec::new();
    for &(code, s) in responses {
        let index = index(s).expect("a valid response time");
        match out.iter_mut().find(|b| b.code == code && b.index == index) {
            Some(b) => b.count += 1,
            None => out.push(Bin { code, index, count: 1 }),
        }
    }
    out.sort_by_key(|b| (b.code, b.index));
    out
}

/// A `Connection` holding `applicationProtocol` (53) and the metrics (54), decoded independently.
fn connection(bins: &[Bin], elapsed_s: f64) -> Connection {
    let mut out = Vec::new();
    proto::bytes(&mut out, 53, b"http");
    write_proto(&mut out, bins, elapsed_s, &mut Scratch::default());
    Connection::decode(&out[..]).expect("Connection")
}

fn find<'a>(c: &'a Connection, name: &str, code: &str) -> &'a ConnectionMetric {
    let mut it = c.metrics.iter().filter(|m| m.name == name && m.code() == code);
    let m = it.next().unwrap_or_else(|| panic!("no {name} {{code:{code}}}"));
    assert!(it.next().is_none(), "{name} {{code:{code}}} twice");
    m
}

fn sketch<'a>(c: &'a Connection, code: &str) -> &'a DdSketch {
    find(c, RT, code).sketch().unwrap_or_else(|| panic!("{code}: not a histogram"))
}

fn rate(c: &Connection, code: &str) -> f64 {
    find(c, RPS, code).number().unwrap_or_else(|| panic!("{code}: not a number"))
}

/// Every sketch carries sketches-go's mapping and an empty negative store.
fn assert_wire_shape(s: &DdSketch) {
    let m = s.mapping.as_ref().expect("mapping");
    assert_eq!(m.gamma.to_le_bytes(), [0xfd, 0x4a, 0x81, 0x5a, 0xbf, 0x52, 0xf0, 0x3f]);
    assert_eq!((m.index_offset, m.interpolation), (0.0, 0));
    let neg = s.negative_values.as_ref().expect("negativeValues present");
    assert!(neg.contiguous_bin_counts.is_empty() && neg.bin_counts.is_empty());
    let pos = s.positive_values.as_ref().expect("positiveValues present");
    assert!(pos.bin_counts.is_empty(), "contiguous encoding only");
    if let (Some(first), Some(last)) = (pos.contiguous_bin_counts.first(), pos.contiguous_bin_counts.last()) {
        assert!(*first != 0.0 && *last != 0.0, "the store spans exactly min..=max");
    }
}

/// §2.5: 3×200 (0.020, 0.020, 0.025 s), one 404 (0.005 s), one 503 (1.5 s), in 30 s: 18 metrics.
#[test]
fn worked_example_decodes_to_the_18_metrics_of_the_spec() {
    let b = bins(&[(200, 0.020), (200, 0.020), (200, 0.025), (404, 0.005), (503, 1.5)]);
    assert_eq!(
        b.iter().map(|b| (b.code, b.index, b.count)).collect::<Vec<_>>(),
        [(200, -196, 2), (200, -185, 1), (404, -265, 1), (503, 20, 1)]
    );
    let c = connection(&b, 30.0);
    assert_eq!(c.application_protocol, "http");
    assert_eq!(c.metrics.len(), 18);
    for m in &c.metrics {
        assert_eq!(m.tags.len(), 1, "exactly one tag, code");
    }

    let s200 = sketch(&c, "200");
    assert_eq!(s200.positive_values.as_ref().unwrap().contiguous_bin_index_offset, -196);
    assert_eq!(
        s200.positive_values.as_ref().unwrap().contiguous_bin_counts,
        [2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(s200.zero_count, 0.0);
    assert_eq!(sketch(&c, "404").positive_bins(), [(-265, 1.0)]);
    assert_eq!(sketch(&c, "503").positive_bins(), [(20, 1.0)]);
    let any = sketch(&c, "any");
    assert_eq!(any.positive_values.as_ref().unwrap().contiguous_bin_index_offset, -265);
    assert_eq!(any.positive_values.as_ref().unwrap().contiguous_bin_counts.len(), 286);
    assert_eq!(any.positive_bins(), [(-265, 1.0), (-196, 2.0), (-185, 1.0), (20, 1.0)]);
    assert_eq!(sketch(&c, "success"), s200);
    assert_eq!(sketch(&c, "2xx"), s200);
    assert_eq!(sketch(&c, "4xx"), sketch(&c, "404"));
    assert_eq!(sketch(&c, "5xx"), sketch(&c, "503"));
    for code in ["1xx", "3xx"] {
        assert!(!c.metrics.iter().any(|m| m.name == RT && m.code() == code), "no {code} histogram");
    }
    for code in ["200", "404", "503", "any", "success", "2xx", "4xx", "5xx"] {
        assert_wire_shape(sketch(&c, code));
    }

    // Representative values of the bins, read through the proto's gamma.
    for (i, v) in [(-265, 0.0050406), (-196, 0.0200369), (-185, 0.0249677), (20, 1.5067630)] {
        assert!((any.value(i) - v).abs() < 5e-8, "{i}: {}", any.value(i));
    }

    for (code, want) in [
        ("any", 0.16666666666666666),
        ("success", 0.1),
        ("1xx", 0.0),
        ("2xx", 0.1),
        ("3xx", 0.0),
        ("4xx", 0.03333333333333333),
        ("5xx", 0.03333333333333333),
        ("200", 0.1),
        ("404", 0.03333333333333333),
        ("503", 0.03333333333333333),
    ] {
        assert_eq!(rate(&c, code), want, "rate {code}");
    }

    // The order: exact-code sketches, group sketches in table order, the 7 group rates, code rates.
    let order: Vec<(&str, &str)> = c.metrics.iter().map(|m| (&m.name[..], m.code())).collect();
    assert_eq!(
        order,
        [
            (RT, "200"),
            (RT, "404"),
            (RT, "503"),
            (RT, "any"),
            (RT, "success"),
            (RT, "2xx"),
            (RT, "4xx"),
            (RT, "5xx"),
            (RPS, "any"),
            (RPS, "success"),
            (RPS, "1xx"),
            (RPS, "2xx"),
            (RPS, "3xx"),
            (RPS, "4xx"),
            (RPS, "5xx"),
            (RPS, "200"),
            (RPS, "404"),
            (RPS, "503"),
        ]
    );
}

/// PA 4.0.7 `checks/net_test.go` `TestFormatMetrics`: codes 100 (an empty sketch), 200 {1},
/// 201 {2, 2}, 400 {3, 3, 3}, 501 {4, 4, 4, 4}, over 2 s; sorted as that test sorts (name
/// descending, then code ascending), with its expected tags, min/max/total and rates.
#[test]
fn process_agent_format_metrics_test() {
    let mut b = bins(&[(200, 1.0), (201, 2.0), (201, 2.0), (400, 3.0), (400, 3.0), (400, 3.0)]);
    b.extend(bins(&[(501, 4.0), (501, 4.0), (501, 4.0), (501, 4.0)]));
    // A code seen with an empty sketch: a bin of count 0.
    b.insert(0, Bin { code: 100, index: 0, count: 0 });
    let mut metrics = connection(&b, 2.0).metrics;
    metrics.sort_by(|x, y| y.name.cmp(&x.name).then_with(|| x.code().cmp(y.code())));
    let tags: Vec<&str> = metrics.iter().map(|m| m.code()).collect();
    assert_eq!(
        tags,
        [
            "200", "201", "2xx", "400", "4xx", "501", "5xx", "any", "success", "100", "1xx", "200", "201", "2xx",
            "3xx", "400", "4xx", "501", "5xx", "any", "success"
        ]
    );
    // (code, min, max, total) as assertHTTPResponseTimeConnectionMetric reads them: sketches-go's
    // GetMinValue/GetMaxValue are the values of the lowest and highest bins, rounded.
    for (m, (code, min, max, total)) in metrics[..9].iter().zip([
        ("200", 1, 1, 1),
        ("201", 2, 2, 2),
        ("2xx", 1, 2, 3),
        ("400", 3, 3, 3),
        ("4xx", 3, 3, 3),
        ("501", 4, 4, 4),
        ("5xx", 4, 4, 4),
        ("any", 1, 4, 10),
        ("success", 1, 2, 3),
    ]) {
        assert_eq!((&m.name[..], m.code()), (RT, code));
        let s = m.sketch().expect("histogram");
        let bins = s.positive_bins();
        assert_eq!(s.count() as i64, total, "{code}");
        assert_eq!(s.value(bins[0].0).round() as i64, min, "{code}");
        assert_eq!(s.value(bins[bins.len() - 1].0).round() as i64, max, "{code}");
    }
    for (m, (code, want)) in metrics[9..].iter().zip([
        ("100", 0.0),
        ("1xx", 0.0),
        ("200", 0.5),
        ("201", 1.0),
        ("2xx", 1.5),
        ("3xx", 0.0),
        ("400", 1.5),
        ("4xx", 1.5),
        ("501", 2.0),
        ("5xx", 2.0),
        ("any", 5.0),
        ("success", 1.5),
    ]) {
        assert_eq!((&m.name[..], m.code(), m.number()), (RPS, code, Some(want)));
    }
}

/// Codes 600–999 count in `any` only; a response time of 0 is the sketch's zeroCount.
#[test]
fn unusual_codes_and_zero_times() {
    let c = connection(&bins(&[(799, 0.0), (799, 0.0), (204, 0.0), (204, 0.5)]), 4.0);
    let s = sketch(&c, "799");
    assert_eq!(s.zero_count, 2.0);
    assert_eq!(s.positive_values.as_ref().map(|p| p.contiguous_bin_counts.len()), Some(0), "12 00");
    assert_eq!(sketch(&c, "any").zero_count, 3.0);
    assert_eq!(sketch(&c, "any").positive_bins(), [(index(0.5).unwrap().into(), 1.0)]);
    assert_eq!(sketch(&c, "2xx").zero_count, 1.0);
    assert_eq!(rate(&c, "any"), 1.0);
    assert_eq!(rate(&c, "success"), 0.5);
    assert_eq!(rate(&c, "799"), 0.5);
    let groups: Vec<&str> = c.metrics.iter().filter(|m| m.name == RT).map(|m| m.code()).collect();
    assert_eq!(groups, ["204", "799", "any", "success", "2xx"]);
}

/// A connection with more than 1024 bins of spread: the sketch keeps the top 1024 indices, the
/// lower ones fold into the lowest kept bin, and the count is unchanged.
#[test]
fn wide_spread_collapses_the_lowest_bins() {
    let times: Vec<(u16, f64)> = (0..3000).map(|k| (200, 1e-9 * 1.01f64.powi(k))).collect();
    let b = bins(&times);
    let top = b.last().unwrap().index;
    let c = connection(&b, 30.0);
    let s = sketch(&c, "200");
    let pos = s.positive_values.as_ref().unwrap();
    assert_eq!(pos.contiguous_bin_counts.len(), 1024);
    assert_eq!(pos.contiguous_bin_index_offset, i32::from(top) - 1023);
    assert_eq!(s.count(), 3000.0);
    let below =
        b.iter().filter(|x| i32::from(x.index) <= pos.contiguous_bin_index_offset).map(|x| x.count).sum::<u32>();
    assert_eq!(pos.contiguous_bin_counts[0], f64::from(below));
    assert_eq!(sketch(&c, "any"), s);
}

/// Python's `ddsketch` package (DataDog's implementation for Python, sharing no code with ours)
/// parses our DDSketch bytes: same count, zero count and relative accuracy, and at every quantile
/// the same bin as ours (up to its one-index shift, below); our quantiles are within 1 % of the
/// exact ones.
#[test]
fn python_ddsketch_reads_our_sketches() {
    // Deterministic response times from 50 µs to 20 s, log-spread, plus zeros; and a collapsed set.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut sets: Vec<Vec<f64>> = Vec::new();
    let mut v: Vec<f64> = (0..2000).map(|_| 5e-5 * (20.0f64 / 5e-5).powf(next())).collect();
    v.extend([0.0; 7]);
    sets.push(v);
    sets.push(vec![0.020, 0.020, 0.025]);
    sets.push(vec![0.0]);
    sets.push((0..1500).map(|k| 1e-9 * 1.03f64.powi(k)).collect());

    let mut input = String::new();
    let mut expected = Vec::new();
    for set in &sets {
        let b = bins(&set.iter().map(|&s| (200, s)).collect::<Vec<_>>());
        let mut body = Vec::new();
        ddsketch::write_sketch(&mut body, b.iter().map(|b| (b.index, b.count)));
        input.extend(body.iter().map(|x| format!("{x:02x}")));
        input.push('\n');
        expected.push(b);
    }
    let script = r#"
import sys
from ddsketch.pb.ddsketch_pb2 import DDSketch
from ddsketch.pb.proto import DDSketchProto
for line in sys.stdin:
    pb = DDSketch()
    pb.ParseFromString(bytes.fromhex(line.strip()))
    s = DDSketchProto.from_proto(pb)
    qs = [s.get_quantile_value(q) for q in (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)]
    # (3.0.1 has no public accessors for these two)
    print(s.count, s._zero_count, s._mapping.relative_accuracy, *qs)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with `pip install ddsketch protobuf`, see .ci/run)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python ddsketch failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), sets.len());

    let quantiles = [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];
    for (k, ((line, set), b)) in lines.iter().zip(&sets).zip(&expected).enumerate() {
        let f: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[0], set.len() as f64, "set {k}: count");
        assert_eq!(f[1], set.iter().filter(|&&x| x == 0.0).count() as f64, "set {k}: zero count");
        assert!((f[2] - 0.01).abs() < 1e-12, "set {k}: relative accuracy {}", f[2]);
        let mut sorted = set.clone();
        sorted.sort_by(f64::total_cmp);
        let collapsed = k == 3;
        for (q, &got) in quantiles.iter().zip(&f[3..]) {
            let ours = ddsketch::quantile(b.iter().map(|b| (b.index, b.count)), *q).unwrap();
            // Python's ddsketch numbers bins from the ceiling of log_γ (its key k covers
            // (γ^(k−1), γ^k] and stands for γ^k·(1−α)), Go's from the floor (index i covers
            // [γ^i, γ^(i+1)), value γ^i·(1+α)): it reads a Go sketch one bin low, γ = 2 % under.
            // Corrected for that, it must pick the same bin by the same rank as we do.
            let python = if got == 0.0 { 0.0 } else { got * ddsketch::gamma() };
            assert!((python - ours).abs() <= 1e-9 * ours, "set {k} q{q}: python {got} (×γ = {python}), ours {ours}");
            // The DDSketch guarantee, against the exact value at rank q·(n−1), where bins were not
            // collapsed (the set spanning ~2200 bins loses its lowest ~1200).
            let exact = sorted[(q * (sorted.len() - 1) as f64) as usize];
            if !collapsed || exact >= ddsketch::representative(i32::from(b.last().unwrap().index) - 1000) {
                assert!((ours - exact).abs() <= 0.01 * exact * (1.0 + 1e-9), "set {k} q{q}: {ours} vs exact {exact}");
            }
        }
    }
}
