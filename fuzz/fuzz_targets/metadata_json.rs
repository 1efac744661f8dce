#![no_main]
//! Fuzz target: the Docker and ECS metadata readers (and the RFC 3339 timestamp parser) must
//! not panic on any input.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::{docker, ecs};

fuzz_target!(|data: &[u8]| {
    let _ = docker::container_list(data);
    let _ = docker::inspect(data);
    let _ = ecs::cluster(data);
    let _ = ecs::tasks(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = docker::rfc3339_secs(s);
        let _ = docker::split_image(s);
    }
});
