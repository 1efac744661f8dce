//! The host description the process agent sends with every `CollectorProc` (`SystemInfo`):
//! read once at start and kept encoded.

use crate::encode::proto::{bytes, int32, int64, message};
use crate::parse::{cursor::u64_dec, keyval, meminfo};
use std::path::Path;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

/// Encodes `SystemInfo {uuid, os, cpus, totalMemory}` from `host_proc` (and the host's root
/// through `<host_proc>/1/root` when the agent runs in a container).
pub fn encode_system_info(host_proc: &Path) -> Vec<u8> {
    let host_root = host_proc.join("1/root");
    let first =
        |paths: &[std::path::PathBuf]| paths.iter().map(|p| read(p)).find(|b| !b.is_empty()).unwrap_or_default();
    let machine_id = first(&[host_root.join("etc/machine-id"), "/etc/machine-id".into()]);
    let os_release = first(&[host_root.join("etc/os-release"), "/etc/os-release".into(), "/usr/lib/os-release".into()]);
    let cpuinfo = read(&host_proc.join("cpuinfo"));
    let total_kib = meminfo::parse(&read(&host_proc.join("meminfo"))).map(|m| m.total).unwrap_or(0);
    let uname = rustix::system::uname();

    let os_field = |key: &[u8]| keyval::env_pairs(&os_release).find(|(k, _)| *k == key).map(|(_, v)| v).unwrap_or(&[]);
    let mut out = Vec::with_capacity(1024);
    bytes(&mut out, 1, machine_id.trim_ascii());
    message(&mut out, 2, |o| {
        bytes(o, 1, uname.sysname().to_bytes().to_ascii_lowercase().as_slice());
        bytes(o, 2, os_field(b"ID"));
        bytes(o, 3, os_field(b"ID_LIKE"));
        bytes(o, 4, os_field(b"VERSION_ID"));
        bytes(o, 5, uname.release().to_bytes());
    });
    // One CPUInfo per logical processor, as gopsutil reports them.
    let mut cpu: Option<Vec<u8>> = None;
    let flush = |out: &mut Vec<u8>, cpu: &mut Option<Vec<u8>>| {
        if let Some(c) = cpu.take() {
            message(out, 3, |o| o.extend_from_slice(&c));
        }
    };
    for (k, v) in keyval::colon_pairs(&cpuinfo) {
        let num = || u64_dec(v).unwrap_or(0) as i64;
        match k {
            b"processor" => {
                flush(&mut out, &mut cpu);
                let mut c = Vec::new();
                int32(&mut c, 1, num() as i32);
                cpu = Some(c);
            }
            _ => {
                let Some(c) = cpu.as_mut() else { continue };
                match k {
                    b"vendor_id" => bytes(c, 2, v),
                    b"cpu family" => bytes(c, 3, v),
                    b"model" => bytes(c, 4, v),
                    b"physical id" => bytes(c, 5, v),
                    b"core id" => bytes(c, 6, v),
                    b"cpu cores" => int32(c, 7, num() as i32),
                    b"cpu MHz" => int64(c, 8, crate::parse::cursor::f64_dec(v).unwrap_or(0.0) as i64),
                    b"cache size" => int32(c, 9, v.split(|b| *b == b' ').next().and_then(u64_dec).unwrap_or(0) as i32),
                    _ => {}
                }
            }
        }
    }
    flush(&mut out, &mut cpu);
    int64(&mut out, 5, total_kib.saturating_mul(1024) as i64);
    out
}
