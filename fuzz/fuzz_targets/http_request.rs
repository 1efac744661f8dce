#![no_main]
//! Fuzz target: the intake's request framing. The head parser and the chunked decoder never
//! panic, never read past the bytes given and never grow a body past its limit; the whole
//! connection machine (head → body → respond, pipelining, errors), fed the same bytes in pieces
//! of arbitrary sizes, answers or rejects without panicking and never answers after closing.
use libfuzzer_sys::fuzz_target;
use sts_agent::transport::http_server::{parse_head, ConnMachine, Dechunker, Step};

fuzz_target!(|data: &[u8]| {
    const MAX: usize = 4096;
    if let Ok(Some(h)) = parse_head(data, MAX) {
        assert!(h.head_len <= data.len());
    }
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut d = Dechunker::default();
    let mut out = Vec::new();
    for part in [&data[..split], &data[split..]] {
        match d.feed(part, &mut out, MAX) {
            Ok((used, _)) => assert!(used <= part.len()),
            Err(_) => break,
        }
        assert!(out.len() <= MAX);
    }

    // The connection machine, fed in pieces whose sizes come from the data itself.
    let mut m = ConnMachine::default();
    let mut pos = 0;
    let mut step_size = 1 + data.get(1).map_or(0, |b| *b as usize % 64);
    while pos < data.len() && !m.closing() {
        let end = (pos + step_size).min(data.len());
        m.input.extend_from_slice(&data[pos..end]);
        pos = end;
        step_size = 1 + (step_size * 7 + 3) % 97;
        loop {
            match m.step(MAX, 2 * MAX) {
                Step::NeedMore => break,
                Step::Request(_, body) => {
                    assert!(body.len() <= MAX);
                    m.respond(200, "text/plain", b"OK\n");
                }
                Step::Rejected(status) => {
                    assert!((400..500).contains(&status));
                    break;
                }
            }
        }
        assert!(m.body.len() <= MAX);
    }
});
