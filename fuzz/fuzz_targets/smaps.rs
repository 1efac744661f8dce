#![no_main]
//! Fuzz target: the smaps scan, fed whole lines and through the agent's chunked reader (buffer
//! and read sizes from the input's first two bytes). Neither may panic; what they let go is a
//! non-empty range; and where no line is too long for the buffer, both let go of the same.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::smaps::Scan;

fuzz_target!(|data: &[u8]| {
    let [size, chunk, text @ ..] = data else { return };
    let size = 16 + usize::from(*size) * 16;
    let chunk = 1 + usize::from(*chunk);
    let mut whole = Vec::new();
    let mut scan = Scan::default();
    for line in text.split(|b| *b == b'\n') {
        whole.extend(scan.line(line).map(|r| r.start..r.end));
    }
    whole.extend(scan.end().map(|r| r.start..r.end));
    let first = text.split(|b| *b == b' ' || *b == b'\n').next().unwrap_or_default();
    let (mut at, mut chunked) = (0, Vec::new());
    let mut buf = vec![0u8; size];
    let agreed = sts_agent::sys::resident::scan_chunks(
        |b| {
            let n = chunk.min(b.len()).min(text.len() - at);
            b[..n].copy_from_slice(&text[at..at + n]);
            at += n;
            Ok(n)
        },
        &mut buf,
        first,
        |r| chunked.push(r.start..r.end),
    )
    .unwrap();
    for r in whole.iter().chain(&chunked) {
        assert!(r.start < r.end);
    }
    // A line needs its newline in the buffer too; the last line may lack one.
    let fits = text.split(|b| *b == b'\n').all(|l| l.len() < size);
    if fits && agreed {
        assert_eq!(whole, chunked);
    }
});
