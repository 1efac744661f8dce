//! `CollectorConnections` (type 22, spec/protocol.md §4.3) as protobuf, and the same message as
//! a JSON view for the dry run. Per connection: owner, addresses, byte rates over the real
//! interval, direction, namespace and relation identifier, and the metrics `bytes_sent_delta`
//! and `bytes_received_delta` (always present) plus, beyond the original agent, `rtt_seconds`,
//! `rtt_var_seconds` and `retransmits_delta` from `tcp_info`. A server socket whose HTTP or
//! MySQL traffic the capture saw also carries `applicationProtocol` (field 53) and, for HTTP,
//! the variant-A request rates and response-time sketches (spec/http-inspection.md §2).

use super::http_metrics;
use super::json;
use super::proto::{bytes, double_present, float, int32, int64, large_message, message, repeated_bytes};
use crate::checks::connections::{
    namespace_scoped, write_identifier, write_identifier_printed, write_ip, write_namespace, IpText, Reported,
};
use crate::model::connection::{Conn, ConnTable};
use crate::model::http_flows::HttpFlows;

/// What is written for each reported connection, computed once for both encodings.
struct View {
    sent_ps: f32,
    received_ps: f32,
    metrics: [(&'static str, f64); 5],
}

fn view(c: &Conn, interval_s: f64) -> View {
    let d = c.deltas.unwrap_or_default();
    let per_s = |v: u64| if interval_s > 0.0 { (v as f64 / interval_s) as f32 } else { 0.0 };
    View {
        sent_ps: per_s(d.bytes_sent),
        received_ps: per_s(d.bytes_received),
        metrics: [
            ("bytes_sent_delta", d.bytes_sent as f64),
            ("bytes_received_delta", d.bytes_received as f64),
            ("rtt_seconds", f64::from(c.rtt_us) / 1e6),
            ("rtt_var_seconds", f64::from(c.rttvar_us) / 1e6),
            ("retransmits_delta", f64::from(d.retransmits)),
        ],
    }
}

/// Scratch strings reused across connections.
#[derive(Default)]
pub struct Scratch {
    ns: Vec<u8>,
    /// The network namespace `ns` holds the scoped text of (see [`namespace_scoped`]).
    ns_of: Option<u64>,
    ident: Vec<u8>,
    http: http_metrics::Scratch,
}

/// One `CollectorConnections` body for `part` (at most 100 connections).
#[allow(clippy::too_many_arguments)]
pub fn collector_connections(
    out: &mut Vec<u8>,
    host: &str,
    t: &ConnTable,
    part: &[Reported],
    group_id: i32,
    group_size: i32,
    interval_ms: i32,
    http: Option<&HttpFlows>,
    s: &mut Scratch,
) {
    bytes(out, 2, host.as_bytes());
    let interval_s = f64::from(interval_ms) / 1000.0;
    s.ns_of = None;
    for r in part {
        let Some(c) = t.conns.get(r.conn as usize) else { continue };
        let v = view(c, interval_s);
        // The table is in namespace order: a scoped namespace's text is written once a run.
        if !namespace_scoped(c) {
            s.ns.clear();
            s.ns_of = None;
        } else if s.ns_of != Some(c.ns) {
            write_namespace(&mut s.ns, host, c);
            s.ns_of = Some(c.ns);
        }
        let (local, remote) = (IpText::of(c.local_ip()), IpText::of(c.remote_ip()));
        write_identifier_printed(&mut s.ident, &s.ns, &local, &remote, c, r.direction);
        large_message(out, 3, |o| {
            int32(o, 1, r.pid as i32);
            for (field, ip, port) in [(5, &local, c.lport), (6, &remote, c.rport)] {
                message(o, field, |a| {
                    bytes(a, 2, ip.as_bytes());
                    int32(a, 3, i32::from(port));
                });
            }
            float(o, 8, v.sent_ps);
            float(o, 9, v.received_ps);
            int32(o, 10, i32::from(!c.is_v4()));
            // type: tcp = 0 (the default, so nothing is written)
            int64(o, 12, r.pid_create_ms);
            bytes(o, 50, &s.ns);
            int32(o, 51, r.direction as i32);
            bytes(o, 52, &s.ident);
            let app = http.and_then(|h| h.for_conn(r.conn));
            if let Some((protocol, _)) = app {
                bytes(o, 53, protocol.name().as_bytes());
            }
            for (name, value) in v.metrics {
                metric(o, name, value);
            }
            if let Some((_, bins)) = app {
                http_metrics::write_proto(o, bins, interval_s, &mut s.http);
            }
        });
    }
    int32(out, 5, group_id);
    int32(out, 6, group_size);
    int32(out, 8, interval_ms);
}

/// One entry of `metrics` (field 54: `name`, then `value` as a `double`), as
/// [`metric_nested`] writes it, but with its few fixed bytes copied at once: five of these per
/// connection, through nested length prefixes and byte pushes, were the larger part of encoding
/// a connection (perf, benches/connections_cycle.rs). A name too long for one-byte lengths
/// takes the general way.
fn metric(o: &mut Vec<u8>, name: &str, value: f64) {
    let n = name.len();
    // The entry's body: the name's key, length and bytes, then the value's message (key,
    // length 9, the double's key and eight bytes).
    let body = n + 2 + 11;
    if body >= 0x80 {
        metric_nested(o, name, value);
        return;
    }
    // Field 54, length-delimited: the varint of 54 << 3 | 2 = 434.
    o.extend_from_slice(&[0xb2, 0x03, body as u8, 0x0a, n as u8]);
    o.extend_from_slice(name.as_bytes());
    o.extend_from_slice(&[0x1a, 0x09, 0x11]);
    o.extend_from_slice(&value.to_le_bytes());
}

/// The same entry through the general protobuf writers.
fn metric_nested(o: &mut Vec<u8>, name: &str, value: f64) {
    message(o, 54, |m| {
        repeated_bytes(m, 1, name.as_bytes());
        message(m, 3, |val| double_present(val, 2, value));
    });
}

/// The JSON view of the same message (dry run), field names as in the schema.
#[allow(clippy::too_many_arguments)]
pub fn collector_connections_json(
    out: &mut Vec<u8>,
    host: &str,
    t: &ConnTable,
    part: &[Reported],
    group_id: i32,
    group_size: i32,
    interval_ms: i32,
    http: Option<&HttpFlows>,
    s: &mut Scratch,
) {
    out.clear();
    out.extend_from_slice(b"{\"messageType\":\"CollectorConnections\",\"hostName\":");
    json::str(out, host);
    out.extend_from_slice(b",\"groupId\":");
    json::u64(out, group_id as u32 as u64);
    out.extend_from_slice(b",\"groupSize\":");
    json::u64(out, group_size.max(0) as u64);
    out.extend_from_slice(b",\"collectionInterval\":");
    json::u64(out, interval_ms.max(0) as u64);
    out.extend_from_slice(b",\"connections\":[");
    let interval_s = f64::from(interval_ms) / 1000.0;
    for (n, r) in part.iter().enumerate() {
        let Some(c) = t.conns.get(r.conn as usize) else { continue };
        let v = view(c, interval_s);
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"pid\":");
        json::u64(out, u64::from(r.pid));
        out.extend_from_slice(b",\"pidCreateTime\":");
        json::u64(out, r.pid_create_ms.max(0) as u64);
        for (name, ip, port) in [("laddr", c.local_ip(), c.lport), ("raddr", c.remote_ip(), c.rport)] {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":{\"ip\":\"");
            write_ip(out, ip);
            out.extend_from_slice(b"\",\"port\":");
            json::u64(out, u64::from(port));
            out.push(b'}');
        }
        out.extend_from_slice(b",\"bytesSentPerSecond\":");
        json::f64(out, f64::from(v.sent_ps));
        out.extend_from_slice(b",\"bytesReceivedPerSecond\":");
        json::f64(out, f64::from(v.received_ps));
        out.extend_from_slice(if c.is_v4() { b",\"family\":\"v4\"" } else { b",\"family\":\"v6\"" });
        out.extend_from_slice(b",\"type\":\"tcp\",\"namespace\":");
        write_namespace(&mut s.ns, host, c);
        json::bytes_as_str(out, &s.ns);
        out.extend_from_slice(b",\"direction\":\"");
        out.extend_from_slice(r.direction.name().as_bytes());
        out.extend_from_slice(b"\",\"connectionIdentifier\":");
        write_identifier(&mut s.ident, &s.ns, c, r.direction);
        json::bytes_as_str(out, &s.ident);
        out.extend_from_slice(b",\"netns\":");
        json::u64(out, c.ns);
        out.extend_from_slice(b",\"metrics\":{");
        for (k, (name, value)) in v.metrics.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            json::str(out, name);
            out.push(b':');
            json::f64(out, *value);
        }
        out.push(b'}');
        if let Some((protocol, bins)) = http.and_then(|h| h.for_conn(r.conn)) {
            out.extend_from_slice(b",\"applicationProtocol\":");
            json::str(out, protocol.name());
            if !bins.is_empty() {
                out.extend_from_slice(b",\"httpMetrics\":");
                http_metrics::write_json(out, bins, interval_s, &mut s.http);
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace text is written once for a run of scoped connections of one namespace
    /// and must be the same as written afresh for each: scoped and unscoped connections of
    /// two namespaces, IPv4 and IPv6, interleaved.
    #[test]
    fn each_connection_carries_its_own_namespace() {
        use crate::checks::connections::{test_conn, Direction};
        let mut t = ConnTable::new(16);
        let specs = [
            (1, 2, "127.0.0.1", "127.0.0.1"),
            (1, 2, "127.0.0.1", "127.0.0.2"),
            (1, 2, "10.0.0.1", "10.0.0.2"),
            (1, 2, "127.0.0.1", "127.0.0.1"),
            (1, 10, "::1", "::1"),
            (2, 2, "127.0.0.1", "127.0.0.1"),
            (2, 2, "10.0.0.1", "127.0.0.1"),
            (3, 2, "169.254.1.1", "127.0.0.1"),
        ];
        for (k, (ns, family, l, r)) in specs.into_iter().enumerate() {
            let mut c = test_conn(family, l, 40_000 + k as u16, r, 80);
            c.ns = ns;
            c.cookie = k as u64;
            t.conns.push(c);
        }
        let reported: Vec<Reported> = (0..t.conns.len() as u32)
            .map(|conn| Reported { conn, pid: 9, pid_create_ms: 5, direction: Direction::Outgoing })
            .collect();
        let encode = |part: &[Reported]| {
            let mut out = Vec::new();
            collector_connections(&mut out, "host-a", &t, part, 1, 1, 1000, None, &mut Scratch::default());
            out
        };
        let empty = encode(&[]);
        let head = 2 + "host-a".len();
        let tail = empty.len() - head;
        let mut expected = empty[..head].to_vec();
        for r in &reported {
            let one = encode(std::slice::from_ref(r));
            expected.extend_from_slice(&one[head..one.len() - tail]);
        }
        expected.extend_from_slice(&empty[head..]);
        assert_eq!(encode(&reported), expected);
        // And the texts themselves.
        let mut ns = Vec::new();
        write_namespace(&mut ns, "host-a", &t.conns[0]);
        assert_eq!(ns, b"host-a:1");
        write_namespace(&mut ns, "host-a", &t.conns[2]);
        assert!(ns.is_empty());
    }

    /// Each address is printed once per connection for its address field and its identifier:
    /// local and remote stay apart, IPv4-mapped IPv6 prints as IPv4.
    #[test]
    fn addresses_and_identifier_name_each_end() {
        use crate::checks::connections::{test_conn, Direction};
        let sub = |field: u8, ip: &str, port: u16| {
            let mut m = vec![0x12, ip.len() as u8];
            m.extend_from_slice(ip.as_bytes());
            m.push(0x18);
            let mut p = u32::from(port);
            while p >= 0x80 {
                m.push((p as u8) | 0x80);
                p >>= 7;
            }
            m.push(p as u8);
            let mut out = vec![field << 3 | 2, m.len() as u8];
            out.extend_from_slice(&m);
            out
        };
        for (family, l, r, lt, rt) in [
            (2, "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"),
            (10, "2001:db8::1", "2001:db8::2", "2001:db8::1", "2001:db8::2"),
            (10, "::ffff:10.1.2.3", "::ffff:10.3.2.1", "10.1.2.3", "10.3.2.1"),
        ] {
            let mut t = ConnTable::new(4);
            t.conns.push(test_conn(family, l, 40_001, r, 8080));
            let part = [Reported { conn: 0, pid: 9, pid_create_ms: 5, direction: Direction::Outgoing }];
            let mut out = Vec::new();
            collector_connections(&mut out, "h", &t, &part, 1, 1, 1000, None, &mut Scratch::default());
            let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
            assert!(has(&sub(5, lt, 40_001)), "{l}: laddr");
            assert!(has(&sub(6, rt, 8080)), "{r}: raddr");
            let ident = format!("out::{lt}::{rt}:8080");
            assert!(has(ident.as_bytes()), "{ident}");
        }
    }

    #[test]
    fn a_metric_entry_is_what_the_general_writers_make() {
        let long = "m".repeat(200);
        let names =
            ["bytes_sent_delta", "bytes_received_delta", "rtt_seconds", "", "x", &long[..114], &long[..115], &long];
        for name in names {
            for value in [0.0, -0.0, 1.5, 1e-300, f64::MAX, f64::NAN, 123_456_789.0] {
                let (mut fast, mut general) = (vec![7], vec![7]);
                metric(&mut fast, name, value);
                metric_nested(&mut general, name, value);
                assert_eq!(fast, general, "{name:?} {value}");
            }
        }
    }
}
