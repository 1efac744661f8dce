#![no_main]
//! Fuzz target: classify must not panic for any payload and any wire length (the first 4 bytes);
//! counts stay in 1..=MAX_HEADS, codes in 100..=999; bytes past the wire length change nothing
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::http_head::{classify, Heads, MAX_HEADS};

fuzz_target!(|data: &[u8]| {
    let (len, payload) = match data.split_first_chunk::<4>() {
        Some((len, rest)) => (u32::from_le_bytes(*len), rest),
        None => (0, data),
    };
    let heads = classify(payload, len);
    match heads {
        Heads::Requests(n) => assert!((1..=MAX_HEADS as u8).contains(&n)),
        Heads::Responses { n, codes, .. } => {
            assert!((1..=MAX_HEADS as u8).contains(&n));
            let (valid, rest) = codes.split_at(usize::from(n));
            assert!(valid.iter().all(|c| (100..=999).contains(c)));
            assert!(rest.iter().all(|&c| c == 0));
        }
        Heads::None | Heads::MysqlGreeting => {}
    }
    // What lies beyond the wire length is not part of the segment.
    if let Ok(wire) = usize::try_from(len) {
        if wire < payload.len() {
            assert_eq!(classify(&payload[..wire], len), heads);
        }
    }
    // The whole payload as the segment: as the agent sees a segment captured whole.
    let _ = classify(payload, payload.len() as u32);
});
