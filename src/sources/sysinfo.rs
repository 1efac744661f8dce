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
    encode_cpus(&mut out, &cpuinfo, |n| {
        u64_dec(read(&host_sys.join(format!("devices/system/cpu/cpu{n}/cpufreq/cpuinfo_max_freq"))).trim_ascii())
    });
    int64(&mut out, 5, total_kib.saturating_mul(1024) as i64);
    out
}

/// One `CPUInfo` per logical processor, as gopsutil (the process agent's library) reports them,
/// from either layout of `/proc/cpuinfo`: x86's (`vendor_id`, `cpu family`, `model`, `cpu MHz`,
/// ...) or arm64's (`CPU implementer`, `CPU part`, `CPU revision`; no clock, no cache size: the
/// clock is `cpufreq/cpuinfo_max_freq` where the kernel has it, as gopsutil reads it).
/// `max_freq_khz(n)` is that file's value for processor `n`.
fn encode_cpus(out: &mut Vec<u8>, cpuinfo: &[u8], max_freq_khz: impl Fn(i32) -> Option<u64>) {
    #[derive(Default)]
    struct Cpu<'a> {
        number: i32,
        vendor: Option<&'a [u8]>,
        implementer: Option<u64>,
        family: &'a [u8],
        model: &'a [u8],
        physical_id: &'a [u8],
        core_id: &'a [u8],
        cores: Option<i32>,
        mhz: Option<f64>,
        cache_kib: i32,
    }
    let flush = |out: &mut Vec<u8>, cpu: Option<Cpu>| {
        let Some(c) = cpu else { return };
        message(out, 3, |o| {
            int32(o, 1, c.number);
            let vendor = c.vendor.or_else(|| c.implementer.map(arm_implementer));
            bytes(o, 2, vendor.unwrap_or(&[]));
            bytes(o, 3, c.family);
            bytes(o, 4, c.model);
            bytes(o, 5, c.physical_id);
            bytes(o, 6, c.core_id);
            // gopsutil counts each logical processor as one core where cpuinfo does not say.
            int32(o, 7, c.cores.unwrap_or(1));
            let mhz = max_freq_khz(c.number).map(|khz| khz as f64 / 1000.0).or(c.mhz).unwrap_or(0.0);
            int64(o, 8, mhz as i64);
            int32(o, 9, c.cache_kib);
        });
    };
    let mut cpu: Option<Cpu> = None;
    for (k, v) in keyval::colon_pairs(cpuinfo) {
        let num = || u64_dec(v).unwrap_or(0) as i64;
        if k == b"processor" {
            flush(out, cpu.take());
            cpu = Some(Cpu { number: num() as i32, ..Cpu::default() });
            continue;
        }
        let Some(c) = cpu.as_mut() else { continue };
        match k {
            b"vendor_id" => c.vendor = Some(v),
            // arm64: "0x41"; gopsutil names the implementers it knows, else leaves the vendor empty.
            b"CPU implementer" => c.implementer = hex_or_dec(v),
            b"cpu family" => c.family = v,
            b"model" | b"CPU part" => c.model = v,
            b"physical id" => c.physical_id = v,
            b"core id" => c.core_id = v,
            b"cpu cores" => c.cores = Some(num() as i32),
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
        0x69 => b"Intel",
        0xc0 => b"Ampere",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::protobuf::{PbReader, Value};

    /// (number, vendor, family, model, cores, mhz, cache) of each CPUInfo.
    fn decode(out: &[u8]) -> Vec<(u64, String, String, String, u64, u64, u64)> {
        let mut r = PbReader::new(out);
        let mut cpus = Vec::new();
        while let Some((f, v)) = r.next_field().unwrap() {
            let (3, Value::Len(b)) = (f, v) else { continue };
            let mut c = PbReader::nested(b);
            let mut cpu = (0, String::new(), String::new(), String::new(), 0, 0, 0);
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
                    7 => cpu.4 = v.varint(),
                    8 => cpu.5 = v.varint(),
                    9 => cpu.6 = v.varint(),
                    _ => {}
                }
            }
            cpus.push(cpu);
        }
        cpus
    }

    #[test]
    fn arm64_cpuinfo_of_a_graviton3_names_the_implementer_and_part() {
        // arch/arm64/kernel/cpuinfo.c's layout, as a c7g.large shows it.
        let cpuinfo = b"processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\nprocessor\t: 1\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\n";
        let mut out = Vec::new();
        encode_cpus(&mut out, cpuinfo, |_| None);
        let want = |n| (n, "ARM".to_string(), String::new(), "0xd40".to_string(), 1, 0, 0);
        assert_eq!(decode(&out), vec![want(0), want(1)]);
        // With cpufreq (Ampere Altra on a metal instance), the clock is its maximum.
        let mut out = Vec::new();
        let ampere = String::from_utf8_lossy(cpuinfo).replace("0x41", "0xc0");
        encode_cpus(&mut out, ampere.as_bytes(), |n| (n == 1).then_some(3_000_000));
        let cpus = decode(&out);
        assert_eq!((cpus[0].1.as_str(), cpus[0].5), ("Ampere", 0));
        assert_eq!((cpus[1].1.as_str(), cpus[1].5), ("Ampere", 3000));
    }

    #[test]
    fn x86_cpuinfo_fixture_keeps_its_fields() {
        let cpuinfo =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc/debian12-6.18/cpuinfo")).unwrap();
        let mut out = Vec::new();
        encode_cpus(&mut out, &cpuinfo, |_| None);
        let cpus = decode(&out);
        assert!(!cpus.is_empty());
        for (i, c) in cpus.iter().enumerate() {
            assert_eq!(c.0, i as u64);
            assert!(!c.1.is_empty() && !c.2.is_empty() && !c.3.is_empty(), "{c:?}");
            assert!(c.4 >= 1 && c.5 > 0 && c.6 > 0, "{c:?}");
        }
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
