//! A JSON view of one `CollectorProc` message, field names as in the protobuf schema, for the
//! dry run (which prints what would be sent instead of the binary body).

use super::json;
use crate::checks::process::{cpu_pct, io_rates};
use crate::model::container::ContainerTable;
use crate::model::process::ProcessTable;
use crate::sources::docker::Metadata;

#[allow(clippy::too_many_arguments)]
pub fn collector_proc<'u>(
    out: &mut Vec<u8>,
    host: &str,
    t: &ProcessTable,
    indices: &[u32],
    user_name: impl Fn(u32) -> Option<&'u [u8]>,
    containers: Option<(&ContainerTable, &Metadata)>,
    rates_inside: bool,
    group_id: i32,
    group_size: i32,
) {
    out.clear();
    out.extend_from_slice(b"{\"messageType\":\"CollectorProc\",\"hostName\":");
    json::str(out, host);
    out.extend_from_slice(b",\"groupId\":");
    json::u64(out, group_id as u32 as u64);
    out.extend_from_slice(b",\"groupSize\":");
    json::u64(out, group_size.max(0) as u64);
    out.extend_from_slice(b",\"processes\":[");
    for (n, &i) in indices.iter().enumerate() {
        let Some(p) = t.procs.get(i as usize) else { continue };
        let s = &p.cur;
        let page = t.page_size;
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"pid\":");
        json::u64(out, u64::from(p.pid));
        out.extend_from_slice(b",\"command\":{\"args\":[");
        for (k, a) in p.args().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            json::bytes_as_str(out, a);
        }
        out.extend_from_slice(b"],\"cwd\":");
        json::bytes_as_str(out, p.cwd());
        out.extend_from_slice(b",\"exe\":");
        json::bytes_as_str(out, p.exe());
        out.extend_from_slice(b",\"ppid\":");
        json::u64(out, s.ppid.max(0) as u64);
        out.extend_from_slice(b"},\"user\":{\"name\":");
        json::bytes_as_str(out, user_name(p.uid).unwrap_or(&[]));
        out.extend_from_slice(b",\"uid\":");
        json::u64(out, u64::from(p.uid));
        out.extend_from_slice(b",\"gid\":");
        json::u64(out, u64::from(p.gid));
        let (total, user, system) = cpu_pct(p, t).unwrap_or_default();
        out.extend_from_slice(b"},\"memory\":{\"rss\":");
        json::u64(out, s.statm.resident * page);
        out.extend_from_slice(b",\"vms\":");
        json::u64(out, s.statm.size * page);
        out.extend_from_slice(b",\"swap\":");
        json::u64(out, p.detail.swap_kib.unwrap_or(0) * 1024);
        out.extend_from_slice(b"},\"cpu\":{\"totalPct\":");
        json::f64(out, f64::from(total));
        out.extend_from_slice(b",\"userPct\":");
        json::f64(out, f64::from(user));
        out.extend_from_slice(b",\"systemPct\":");
        json::f64(out, f64::from(system));
        out.extend_from_slice(b",\"numThreads\":");
        json::u64(out, s.threads.max(0) as u64);
        out.extend_from_slice(b"},\"createTime\":");
        json::u64(out, p.create_time_ms.max(0) as u64);
        if let Some(fds) = p.detail.open_fds {
            out.extend_from_slice(b",\"openFdCount\":");
            json::u64(out, u64::from(fds));
        }
        out.extend_from_slice(b",\"state\":");
        json::bytes_as_str(out, &[s.state]);
        let io = io_rates(p, t);
        out.extend_from_slice(b",\"ioStat\":{\"readRate\":");
        json::f64(out, f64::from(io[0]));
        out.extend_from_slice(b",\"writeRate\":");
        json::f64(out, f64::from(io[1]));
        out.extend_from_slice(b",\"readBytesRate\":");
        json::f64(out, f64::from(io[2]));
        out.extend_from_slice(b",\"writeBytesRate\":");
        json::f64(out, f64::from(io[3]));
        out.extend_from_slice(b"},\"containerId\":");
        json::bytes_as_str(out, p.container_id.as_ref().map_or(&[][..], |c| &c[..]));
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"containers\":[");
    let (list, meta) = match containers {
        Some((t, m)) => (&t.containers[..], Some(m)),
        None => (&[][..], None),
    };
    for (n, c) in list.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let m = meta.and_then(|m| m.get(&c.id));
        out.extend_from_slice(b"{\"type\":");
        json::str(out, if m.is_some() { "docker" } else { c.runtime });
        if let Some(m) = m {
            out.extend_from_slice(b",\"name\":");
            json::str(out, &m.name);
            out.extend_from_slice(b",\"tags\":[");
            for (i, t) in m.tags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::str(out, t);
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"id\":");
        json::bytes_as_str(out, &c.id);
        out.extend_from_slice(b",\"cpuLimit\":");
        json::f64(out, c.cur.cpu_limit_pct.unwrap_or(0.0));
        out.extend_from_slice(b",\"memoryLimit\":");
        json::u64(out, c.cur.mem_limit.unwrap_or(0));
        out.extend_from_slice(b",\"state\":\"running\",\"created\":");
        json::u64(out, (c.created_ms / 1000).max(0) as u64);
        // As `process_msg`: the eleven metrics inside `Container` without `upgrade-to-multi-metrics`.
        if let Some(t) = containers.map(|(t, _)| t).filter(|_| rates_inside) {
            let r = crate::model::container::rates(c, t);
            let values =
                [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], c.cur.mem_rss as f64, c.cur.mem_cache as f64];
            for (i, (name, v)) in crate::model::container::METRIC_NAMES.iter().zip(values).enumerate() {
                if crate::model::container::metric_applies(c, i) {
                    out.push(b',');
                    json::str(out, name);
                    out.push(b':');
                    json::f64(out, v);
                }
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}
