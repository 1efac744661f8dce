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
use crate::checks::connections::{write_identifier, write_ip, write_namespace, Reported};
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
    ident: Vec<u8>,
    ip: Vec<u8>,
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
    for r in part {
        let Some(c) = t.conns.get(r.conn as usize) else { continue };
        let v = view(c, interval_s);
        write_namespace(&mut s.ns, host, c);
        write_identifier(&mut s.ident, &s.ns, c, r.direction);
        large_message(out, 3, |o| {
            int32(o, 1, r.pid as i32);
            for (field, ip, port) in [(5, c.local_ip(), c.lport), (6, c.remote_ip(), c.rport)] {
                s.ip.clear();
                write_ip(&mut s.ip, ip);
                message(o, field, |a| {
                    bytes(a, 2, &s.ip);
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
                message(o, 54, |m| {
                    repeated_bytes(m, 1, name.as_bytes());
                    message(m, 3, |val| double_present(val, 2, value));
                });
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
