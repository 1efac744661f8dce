#![no_main]
//! Fuzz target: tcp_segment must not panic on any captured packet; the payload it returns lies in
//! the packet and never exceeds the wire length; classify then runs on it as the agent does
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::{http_head, packet};

fuzz_target!(|data: &[u8]| {
    let Some(s) = packet::tcp_segment(data) else { return };
    assert!(s.family == packet::AF_INET || s.family == packet::AF_INET6);
    if s.family == packet::AF_INET {
        assert!(s.src[4..].iter().chain(&s.dst[4..]).all(|&b| b == 0));
    }
    assert!(s.payload.len() as u64 <= u64::from(s.payload_len));
    let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
    let p = s.payload.as_ptr() as usize;
    assert!(p >= start && p + s.payload.len() <= end);
    check(http_head::classify(s.payload, s.payload_len));
});

fn check(h: http_head::Heads) {
    match h {
        http_head::Heads::Requests(n) => assert!((1..=http_head::MAX_HEADS as u8).contains(&n)),
        http_head::Heads::Responses { n, codes, .. } => {
            assert!((1..=http_head::MAX_HEADS as u8).contains(&n));
            let (valid, rest) = codes.split_at(usize::from(n));
            assert!(valid.iter().all(|c| (100..=999).contains(c)));
            assert!(rest.iter().all(|&c| c == 0));
        }
        http_head::Heads::None | http_head::Heads::MysqlGreeting => {}
    }
}
