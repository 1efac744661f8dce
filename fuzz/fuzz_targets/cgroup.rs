#![no_main]
//! Fuzz target: cgroup must not panic on any input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for l in sts_agent::parse::cgroup::iter(data).flatten() {
        if let Some((_, rest)) = sts_agent::parse::cgroup::relative(l.path) {
            assert!(!rest.split(|b| *b == b'/').any(|c| c == b".." || c == b"."));
        }
        let _ = sts_agent::parse::cgroup::ecs_task_parent(l.path);
        if let Some(id) = sts_agent::parse::cgroup::container_id(l.path) {
            assert_eq!(id.len(), 64);
        }
    }
    let own = [b'a'; 64];
    for own in [None, Some((&own, &b"0"[..]))] {
        if let Some(id) = sts_agent::parse::cgroup::process_container(data, own) {
            assert_eq!(id.len(), 64);
        }
    }
});
