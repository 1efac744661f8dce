#![no_main]
//! Fuzz target: every cgroup controller-file parser must not panic on any input.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::cgroup_stats as cs;

fuzz_target!(|data: &[u8]| {
    let _ = cs::key_values(data).count();
    let _ = cs::get(data, b"nr_throttled");
    let _ = cs::single(data);
    let _ = cs::signed_single(data);
    let _ = cs::max_or_value(data);
    let _ = cs::cpu_max(data);
    let _ = cs::blkio_service_bytes(data);
    let _ = cs::io_stat_bytes(data);
    let _ = cs::device(data);
    let mut devs = [cs::DeviceIo::default(); 4];
    let mut n = 0;
    cs::blkio_per_device(data, false, &mut devs, &mut n);
    cs::blkio_per_device(data, true, &mut devs, &mut n);
    cs::io_stat_per_device(data, &mut devs, &mut n);
    assert!(n <= devs.len());
});
