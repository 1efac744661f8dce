//! The host description the process agent sends with every `CollectorProc` (`SystemInfo`):
//! read once at start and kept encoded.

use crate::encode::proto::{bytes, int32, int64, message};
use crate::parse::{cursor::u64_dec, keyval, meminfo};
use std::path::Path;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

/// Encodes `SystemInfo {uuid, os, cpus, totalMemory}` from `host_proc` and `host_sys` (and the
/// host's root through `<host_proc>/1/root` when the agent runs in a container).
pub fn encode_system_info(host_proc: &Path, host_sys: &Path) -> Vec<u8> {
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
    let cpu_file = |n: i32, file: &str| read(&host_sys.join(format!("devices/system/cpu/cpu{n}/{file}")));
    encode_cpus(&mut out, &cpuinfo, |n| CpuSysfs {
        max_freq: u64_dec(cpu_file(n, "cpufreq/cpuinfo_max_freq").trim_ascii()),
        core_id: cpu_file(n, "topology/core_id").trim_ascii().to_vec(),
    });
    int64(&mut out, 5, total_kib.saturating_mul(1024) as i64);
    out
}

/// What gopsutil's `finishCPUInfo` reads from sysfs for one processor: its maximum clock (kHz,
/// or Hz on some kernels) and its core id.
struct CpuSysfs {
    max_freq: Option<u64>,
    core_id: Vec<u8>,
}

/// One `CPUInfo` per logical processor, as gopsutil v3 (the process agent's library) reports them,
/// from either layout of `/proc/cpuinfo`: x86's (`vendor_id`, `cpu family`, `model`, `cpu MHz`,
/// ...) or arm64's (`CPU implementer`, `CPU part`; no clock, no cache size, no core id). As
/// gopsutil: each logical processor counts one core; the clock is `cpufreq/cpuinfo_max_freq`
/// where the kernel has it (over `cpu MHz`), and the core id `topology/core_id` where cpuinfo has
/// none. `sysfs(n)` reads those for processor `n`.
fn encode_cpus(out: &mut Vec<u8>, cpuinfo: &[u8], sysfs: impl Fn(i32) -> CpuSysfs) {
    #[derive(Default)]
    struct Cpu<'a> {
        number: i32,
        vendor: Vendor<'a>,
        family: &'a [u8],
        model: &'a [u8],
        physical_id: &'a [u8],
        core_id: &'a [u8],
        mhz: Option<f64>,
        cache_kib: i32,
    }
    /// gopsutil keeps whichever of `vendor_id` and `CPU implementer` came last.
    #[derive(Default)]
    enum Vendor<'a> {
        #[default]
        None,
        Named(&'a [u8]),
        Implementer(u64),
    }
    let flush = |out: &mut Vec<u8>, cpu: Option<Cpu>| {
        let Some(c) = cpu else { return };
        let fs = sysfs(c.number);
        message(out, 3, |o| {
            int32(o, 1, c.number);
            let vendor = match c.vendor {
                Vendor::None => &[][..],
                Vendor::Named(v) => v,
                Vendor::Implementer(code) => arm_implementer(code),
            };
            bytes(o, 2, vendor);
            bytes(o, 3, c.family);
            bytes(o, 4, c.model);
            bytes(o, 5, c.physical_id);
            bytes(o, 6, if c.core_id.is_empty() { &fs.core_id } else { c.core_id });
            int32(o, 7, 1);
            let mhz = match fs.max_freq.map(|f| f as f64 / 1000.0) {
                // A kernel that gives Hz instead of kHz (gopsutil's rule).
                Some(m) if m > 9999.0 => m / 1000.0,
                Some(m) => m,
                None => c.mhz.unwrap_or(0.0),
            };
            int64(o, 8, mhz as i64);
            int32(o, 9, c.cache_kib);
        });
    };
    let mut cpu: Option<Cpu> = None;
    for (k, v) in keyval::colon_pairs(cpuinfo) {
        if k == b"processor" {
            flush(out, cpu.take());
            cpu = Some(Cpu { number: u64_dec(v).unwrap_or(0) as i32, ..Cpu::default() });
            continue;
        }
        let Some(c) = cpu.as_mut() else { continue };
        match k {
            b"vendor_id" => c.vendor = Vendor::Named(v),
            // arm64: "0x41"; gopsutil names the implementers it knows, else leaves the vendor as it was.
            b"CPU implementer" => {
                if let Some(code) = hex_or_dec(v).filter(|c| !arm_implementer(*c).is_empty()) {
                    c.vendor = Vendor::Implementer(code);
                }
            }
            b"cpu family" => c.family = v,
            b"model" | b"CPU part" => c.model = v,
            b"physical id" => c.physical_id = v,
            b"core id" => c.core_id = v,
            b"cpu MHz" => c.mhz = crate::parse::cursor::f64_dec(v),
            b"cache size" => c.cache_kib = v.split(|b| *b == b' ').next().and_then(u64_dec).unwrap_or(0) as i32,
            _ => {}
        }
    }
    flush(out, cpu);
}

fn hex_or_dec(v: &[u8]) -> Option<u64> {
    match v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")) {
        Some(h) if !h.is_empty() && h.len() <= 16 => {
            h.iter().try_fold(0u64, |acc, &b| Some(acc << 4 | u64::from((b as char).to_digit(16)?)))
        }
        Some(_) => None,
        None => u64_dec(v),
    }
}

/// The implementer codes of the Arm architecture's MIDR register that gopsutil names.
fn arm_implementer(code: u64) -> &'static [u8] {
    match code {
        0x41 => b"ARM",
        0x42 => b"Broadcom",
        0x43 => b"Cavium",
        0x44 => b"DEC",
        0x46 => b"Fujitsu",
        0x48 => b"HiSilicon",
        0x49 => b"Infineon",
        0x4d => b"Motorola/Freescale",
        0x4e => b"NVIDIA",
        0x50 => b"APM",
        0x51 => b"Qualcomm",
        0x56 => b"Marvell",
        0x61 => b"Apple",
        0x69 => b"Intel",
        0xc0 => b"Ampere",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::protobuf::{PbReader, Value};

    /// (number, vendor, family, model, core id, cores, mhz, cache) of each CPUInfo.
    type Decoded = (u64, String, String, String, String, u64, u64, u64);

    fn decode(out: &[u8]) -> Vec<Decoded> {
        let mut r = PbReader::new(out);
        let mut cpus = Vec::new();
        while let Some((f, v)) = r.next_field().unwrap() {
            let (3, Value::Len(b)) = (f, v) else { continue };
            let mut c = PbReader::nested(b);
            let mut cpu = Decoded::default();
            while let Some((f, v)) = c.next_field().unwrap() {
                let text = |v: Value| match v {
                    Value::Len(b) => String::from_utf8(b.data.to_vec()).unwrap(),
                    _ => panic!("field {f} is not a string"),
                };
                match f {
                    1 => cpu.0 = v.varint(),
                    2 => cpu.1 = text(v),
                    3 => cpu.2 = text(v),
                    4 => cpu.3 = text(v),
                    6 => cpu.4 = text(v),
                    7 => cpu.5 = v.varint(),
                    8 => cpu.6 = v.varint(),
                    9 => cpu.7 = v.varint(),
                    _ => {}
                }
            }
            cpus.push(cpu);
        }
        cpus
    }

    fn no_sysfs(_: i32) -> CpuSysfs {
        CpuSysfs { max_freq: None, core_id: Vec::new() }
    }

    /// arch/arm64/kernel/cpuinfo.c's layout, as a c7g.large shows it.
    const GRAVITON3: &[u8] = b"processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\nprocessor\t: 1\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\n";

    #[test]
    fn arm64_cpuinfo_of_a_graviton3_names_the_implementer_and_part() {
        let mut out = Vec::new();
        encode_cpus(&mut out, GRAVITON3, no_sysfs);
        let want = |n| (n, "ARM".into(), String::new(), "0xd40".into(), String::new(), 1, 0, 0);
        assert_eq!(decode(&out), vec![want(0), want(1)]);
    }

    #[test]
    fn sysfs_gives_the_clock_and_core_id_cpuinfo_lacks() {
        // An Ampere Altra on a metal instance: cpufreq in kHz on cpu1, in Hz on cpu0 (gopsutil
        // divides again above 9999 MHz); the core ids only in sysfs topology.
        let ampere = String::from_utf8_lossy(GRAVITON3).replace("0x41", "0xc0");
        let mut out = Vec::new();
        encode_cpus(&mut out, ampere.as_bytes(), |n| CpuSysfs {
            max_freq: Some(if n == 0 { 3_000_000_000 } else { 3_000_000 }),
            core_id: format!("{}", 10 + n).into_bytes(),
        });
        let cpus = decode(&out);
        assert_eq!((cpus[0].1.as_str(), cpus[0].4.as_str(), cpus[0].6), ("Ampere", "10", 3000));
        assert_eq!((cpus[1].1.as_str(), cpus[1].4.as_str(), cpus[1].6), ("Ampere", "11", 3000));
    }

    #[test]
    fn x86_cpuinfo_fixture_keeps_its_fields() {
        let cpuinfo =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc/debian12-6.18/cpuinfo")).unwrap();
        let mut out = Vec::new();
        // cpuinfo's own core id wins over sysfs; cpufreq's clock over cpu MHz.
        encode_cpus(&mut out, &cpuinfo, |_| CpuSysfs { max_freq: Some(3_500_000), core_id: b"99".to_vec() });
        let cpus = decode(&out);
        assert!(!cpus.is_empty());
        for (i, c) in cpus.iter().enumerate() {
            assert_eq!(c.0, i as u64);
            assert_eq!(c.1, "AuthenticAMD");
            assert!(!c.2.is_empty() && !c.3.is_empty() && c.4 != "99", "{c:?}");
            assert_eq!((c.5, c.6), (1, 3500), "{c:?}");
            assert!(c.7 > 0, "{c:?}");
        }
        let mut out = Vec::new();
        encode_cpus(&mut out, &cpuinfo, no_sysfs);
        assert_eq!(decode(&out)[0].6, 2596, "cpu MHz without cpufreq");
    }

    #[test]
    fn the_vendor_is_whichever_key_came_last() {
        let mut out = Vec::new();
        encode_cpus(&mut out, b"processor: 0\nvendor_id: X\nCPU implementer: 0x51\nprocessor: 1\nCPU implementer: 0x51\nvendor_id: X\nprocessor: 2\nvendor_id: X\nCPU implementer: 0x99\n", no_sysfs);
        let vendors: Vec<String> = decode(&out).into_iter().map(|c| c.1).collect();
        assert_eq!(vendors, ["Qualcomm", "X", "X"]);
    }

    #[test]
    fn implementer_codes_parse_as_the_kernel_prints_them() {
        assert_eq!(hex_or_dec(b"0x41"), Some(0x41));
        assert_eq!(hex_or_dec(b"65"), Some(65));
        assert_eq!(hex_or_dec(b"0x"), None);
        assert_eq!(hex_or_dec(b"0xzz"), None);
        assert_eq!(hex_or_dec(b"0x11112222333344445"), None);
    }
}
