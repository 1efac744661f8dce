//! Process-agent messages (spec/protocol.md §4.1–§4.2): the 16-byte big-endian header, then the
//! protobuf body (`CollectorProc`, type 12), which the caller compresses with zstd.

use super::proto::{bytes, int32, int64, large_message, message, repeated_bytes, uint64};
use crate::checks::process::{cpu_pct, io_rates};
use crate::model::container::{metric_applies, rates, Container, ContainerTable};
use crate::model::process::{Proc, ProcessTable};
use crate::sources::docker::Metadata;

pub const TYPE_COLLECTOR_PROC: u8 = 12;
/// Increments since the last run, when the receiver advertises `incremental-topology`.
pub const TYPE_COLLECTOR_COMMANDS: u8 = 13;
pub const TYPE_COLLECTOR_CONNECTIONS: u8 = 22;
/// Encoding byte: zstd-compressed protobuf (StackState keeps 2 for zstd 1.x frames).
const ENCODING_ZSTD_PROTOBUF: u8 = 2;

/// Version 3, encoding, type, subscription 0, org 0 (i32 BE), timestamp ms (i64 BE).
pub fn header(out: &mut Vec<u8>, msg_type: u8, timestamp_ms: i64) {
    out.extend_from_slice(&[3, ENCODING_ZSTD_PROTOBUF, msg_type, 0]);
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
}

/// The `ProcessState` enum from the state letter of `/proc/<pid>/stat`.
pub fn state_enum(c: u8) -> i32 {
    match c {
        b'D' => 1,
        b'R' => 2,
        b'S' | b'I' => 3,
        b'T' | b't' => 4,
        b'W' => 5,
        b'X' | b'x' => 6,
        b'Z' => 7,
        _ => 0,
    }
}

/// One `CollectorProc` body for the processes at `indices` of `t`.
#[allow(clippy::too_many_arguments)]
pub fn collector_proc<'u>(
    out: &mut Vec<u8>,
    host: &str,
    t: &ProcessTable,
    indices: &[u32],
    user_name: impl Fn(u32) -> Option<&'u [u8]>,
    system_info: &[u8],
    containers: Option<(&ContainerTable, &Metadata)>,
    rates_inside: bool,
    group_id: i32,
    group_size: i32,
) {
    bytes(out, 2, host.as_bytes());
    for &i in indices {
        if let Some(p) = t.procs.get(i as usize) {
            large_message(out, 3, |o| process(o, p, t, user_name(p.uid)));
        }
    }
    // `system_info` is an encoded SystemInfo, made once at start.
    large_message(out, 5, |o| o.extend_from_slice(system_info));
    int32(out, 6, group_id);
    int32(out, 7, group_size);
    if let Some((t, meta)) = containers {
        for c in &t.containers {
            large_message(out, 10, |o| container(o, c, t, meta, rates_inside));
        }
    }
}

/// One `CollectorCommand` (spec/protocol.md §4.2): "update" for a new element (or changed
/// tags), "metrics" when its tags are unchanged, "delete" for one gone since the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Indices into `ProcessTable::procs`.
    UpdateProcess(u32),
    UpdateProcessMetrics(u32),
    /// `(pid, createTime ms)` of a process reported last run and not this one.
    DeleteProcess(u32, i64),
    /// Indices into `ContainerTable::containers`.
    UpdateContainer(u32),
    UpdateContainerMetrics(u32),
    DeleteContainer([u8; 64]),
}

/// One `CollectorCommands` body (type 13): `hostName`=2, `commands`=3, `info`=5, `groupId`=6,
/// `groupSize`=7; a command's element is encoded as in `CollectorProc`.
#[allow(clippy::too_many_arguments)]
pub fn collector_commands<'u>(
    out: &mut Vec<u8>,
    host: &str,
    t: &ProcessTable,
    commands: &[Command],
    user_name: impl Fn(u32) -> Option<&'u [u8]>,
    system_info: &[u8],
    containers: (&ContainerTable, &Metadata),
    rates_inside: bool,
    group_id: i32,
    group_size: i32,
) {
    bytes(out, 2, host.as_bytes());
    let (ct, meta) = containers;
    for c in commands {
        large_message(out, 3, |o| match *c {
            Command::UpdateProcess(i) | Command::UpdateProcessMetrics(i) => {
                let field = if matches!(c, Command::UpdateProcess(_)) { 1 } else { 2 };
                if let Some(p) = t.procs.get(i as usize) {
                    large_message(o, field, |o| process(o, p, t, user_name(p.uid)));
                }
            }
            Command::DeleteProcess(pid, create_ms) => message(o, 3, |o| {
                int32(o, 2, pid as i32);
                int64(o, 9, create_ms);
            }),
            Command::UpdateContainer(i) | Command::UpdateContainerMetrics(i) => {
                let field = if matches!(c, Command::UpdateContainer(_)) { 10 } else { 11 };
                if let Some(k) = ct.containers.get(i as usize) {
                    large_message(o, field, |o| container(o, k, ct, meta, rates_inside));
                }
            }
            Command::DeleteContainer(id) => message(o, 12, |o| bytes(o, 2, &id)),
        });
    }
    large_message(out, 5, |o| o.extend_from_slice(system_info));
    int32(out, 6, group_id);
    int32(out, 7, group_size);
}

/// A `Container` as the process agent sends it: with `rates_inside` (the receiver did not
/// advertise `upgrade-to-multi-metrics`) its rate fields 11–22 carry the eleven container
/// metrics, as the process agent 4.0.x filled them; otherwise they stay 0 (the metrics go to
/// `/intake` as raw metrics, spec/protocol.md §4.2). `created`/`started` in epoch seconds as
/// Docker gives them.
fn container(o: &mut Vec<u8>, c: &Container, t: &ContainerTable, meta: &Metadata, rates_inside: bool) {
    let m = meta.get(&c.id);
    bytes(o, 1, if m.is_some() { b"docker" } else { c.runtime.as_bytes() });
    bytes(o, 2, &c.id);
    if let Some(l) = c.cur.cpu_limit_pct {
        super::proto::float(o, 5, l as f32);
    }
    uint64(o, 6, c.cur.mem_limit.unwrap_or(0));
    // Docker's state when known; a container with processes in it is running otherwise.
    int32(o, 8, m.map_or(3, |m| m.state));
    int32(o, 9, m.map_or(0, |m| m.health));
    let created = m.map_or(c.created_ms / 1000, |m| m.created);
    int64(o, 10, created);
    if rates_inside {
        rate_fields(o, c, t);
    }
    // Docker's start time when inspected; else the cgroup's creation, made at the start.
    int64(o, 24, m.and_then(|m| m.started).unwrap_or(c.created_ms / 1000));
    match m {
        Some(m) => {
            for t in &m.tags {
                repeated_bytes(o, 26, t.as_bytes());
            }
        }
        None => {
            let mut tag = [0u8; 13 + 64];
            tag[..13].copy_from_slice(b"container_id:");
            tag[13..].copy_from_slice(&c.id);
            repeated_bytes(o, 26, &tag);
        }
    }
}

/// `rbps`=11, `wbps`=12, `netRcvdPs`=14 … `totalPct`=20 (float), `memRss`=21, `memCache`=22
/// (uint64); 13 is `key`. A rate without two samples (or whose counter went back) stays unset.
fn rate_fields(o: &mut Vec<u8>, c: &Container, t: &ContainerTable) {
    const RATE_FIELDS: [u32; 9] = [11, 12, 14, 15, 16, 17, 18, 19, 20];
    let r = rates(c, t);
    for (i, (field, v)) in RATE_FIELDS.iter().zip(r).enumerate() {
        if metric_applies(c, i) {
            super::proto::float(o, *field, v as f32);
        }
    }
    uint64(o, 21, c.cur.mem_rss);
    uint64(o, 22, c.cur.mem_cache);
}

fn process(o: &mut Vec<u8>, p: &Proc, t: &ProcessTable, user: Option<&[u8]>) {
    let page = t.page_size;
    let s = &p.cur;
    int32(o, 2, p.pid as i32);
    message(o, 4, |c| {
        for a in p.args() {
            repeated_bytes(c, 1, a);
        }
        bytes(c, 3, p.cwd());
        int32(c, 6, s.ppid);
        bytes(c, 8, p.exe());
    });
    message(o, 5, |u| {
        bytes(u, 1, user.unwrap_or(&[]));
        int32(u, 2, p.uid as i32);
        int32(u, 3, p.gid as i32);
    });
    message(o, 7, |m| {
        uint64(m, 1, s.statm.resident.saturating_mul(page));
        uint64(m, 2, s.statm.size.saturating_mul(page));
        uint64(m, 3, p.detail.swap_kib.unwrap_or(0).saturating_mul(1024));
        uint64(m, 4, s.statm.shared.saturating_mul(page));
        uint64(m, 5, s.statm.text.saturating_mul(page));
        uint64(m, 6, s.statm.lib.saturating_mul(page));
        uint64(m, 7, s.statm.data.saturating_mul(page));
        uint64(m, 8, s.statm.dirty.saturating_mul(page));
    });
    message(o, 8, |c| {
        if let Some(cpu) = s.processor {
            let mut name = [0u8; 16];
            bytes(c, 1, cpu_name(cpu, &mut name));
        }
        let (total, user, system) = cpu_pct(p, t).unwrap_or((0.0, 0.0, 0.0));
        super::proto::float(c, 2, total);
        super::proto::float(c, 3, user);
        super::proto::float(c, 4, system);
        int32(c, 5, s.threads.clamp(0, i64::from(i32::MAX)) as i32);
        int32(c, 7, s.nice as i32);
        let tck = t.clk_tck.max(1);
        int64(c, 8, (s.utime / tck) as i64);
        int64(c, 9, (s.stime / tck) as i64);
    });
    int64(o, 9, p.create_time_ms);
    if let Some(n) = p.detail.open_fds {
        int32(o, 11, n as i32);
    }
    int32(o, 12, state_enum(s.state));
    let io = io_rates(p, t);
    message(o, 13, |m| {
        for (f, v) in (1..).zip(io) {
            super::proto::float(m, f, v);
        }
    });
    if let Some(id) = &p.container_id {
        bytes(o, 14, id);
    }
    uint64(o, 16, p.detail.voluntary_ctxt_switches.unwrap_or(0));
    uint64(o, 17, p.detail.nonvoluntary_ctxt_switches.unwrap_or(0));
}

/// `cpu<N>` on the stack.
fn cpu_name(n: u32, buf: &mut [u8; 16]) -> &[u8] {
    buf[..3].copy_from_slice(b"cpu");
    let len = crate::fmt::decimal(u64::from(n), &mut buf[3..]);
    &buf[..3 + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_big_endian() {
        let mut h = Vec::new();
        header(&mut h, TYPE_COLLECTOR_PROC, 0x0102_0304_0506_0708);
        assert_eq!(h, [3, 2, 12, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn cpu_names_and_states() {
        let mut b = [0u8; 16];
        assert_eq!(cpu_name(0, &mut b), b"cpu0");
        assert_eq!(cpu_name(4_000_000_000, &mut b), b"cpu4000000000");
        assert_eq!([state_enum(b'R'), state_enum(b'Z'), state_enum(b'?')], [2, 7, 0]);
    }
}
