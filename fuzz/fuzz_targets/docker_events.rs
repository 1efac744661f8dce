#![no_main]
//! Fuzz target: the Docker event stream (chunked framing, line framing, event objects) must not
//! panic on any input, never hold more than its bound, and give the same lines (and the same
//! error, if any) however the bytes are split across reads.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::docker_events::{event, Dechunker, Line, LineFramer};

const MAX: usize = 512;

fn run(parts: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut d = Dechunker::default();
    let mut f = LineFramer::new(MAX);
    let mut lines = Vec::new();
    let mut ok = true;
    for p in parts {
        if ok {
            ok = d
                .feed(p, |data| {
                    f.push(data, |l| match l {
                        Line::Whole(w) => {
                            assert!(w.len() <= MAX);
                            if let Ok(e) = event(w) {
                                let mut out = Vec::new();
                                for s in [e.kind, e.action, e.id].into_iter().chain(e.name).chain(e.image) {
                                    s.unescape_into(&mut out);
                                }
                            }
                            lines.push(w.to_vec());
                        }
                        Line::TooLong(n) => {
                            assert!(n > MAX);
                            lines.push(b"<too long>".to_vec());
                        }
                    });
                    assert!(f.buffered() <= MAX);
                })
                .is_ok();
        }
    }
    (lines, ok)
}

fuzz_target!(|data: &[u8]| {
    let _ = event(data);
    let whole = run(&[data]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let split = run(&[&data[..cut], &data[cut..]]);
    // Errors agree too, and so do the lines handed over before one: the decoder moves byte by
    // byte (a data run is only cut, never held back), so it fails at the same byte however the
    // input is split, having handed over the same bytes before it.
    assert_eq!(whole, split);
});
