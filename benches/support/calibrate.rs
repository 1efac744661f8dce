//! The machine's speed at user-space code, for the per-span gates of the trace loads. The trace
//! path is the agent's own code on a core (decoding, obfuscation, encoding, gzip): on a machine
//! whose cores run user-space code slower (another model, a lower clock) each figure grows with
//! no change in the agent. The ratio gates (to the floor, to psutil) need none of this: their
//! baseline runs in the same run.
//!
//! The workload is the harness's own code, sharing none with the agent (so that making the agent
//! faster does not make the machine look slower): a tokenizer over a fixed text (byte classes,
//! numbers parsed, words hashed into an open-addressing table), a copy and a sort, as the agent's
//! parsers, tables and encoders do. Timed by the thread's CPU clock, the best of a few rounds:
//! other work on the machine only ever adds to a round, so the best is the machine's own speed.

use std::hint::black_box;

/// One round of the workload: about 12 ms of CPU on the machine the gates were set on.
fn round(text: &[u8], table: &mut [u64], scratch: &mut Vec<u32>) -> u64 {
    let mut sum = 0u64;
    for pass in 0..48u64 {
        scratch.clear();
        let (mut hash, mut number, mut in_word, mut in_number) = (0xcbf2_9ce4_8422_2325u64, 0u64, false, false);
        for &c in text {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                    hash = (hash ^ u64::from(c)).wrapping_mul(0x100_0000_01b3);
                    in_word = true;
                }
                b'0'..=b'9' => {
                    number = number.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                    in_number = true;
                }
                _ => {
                    if in_word {
                        let mask = table.len() - 1;
                        let mut slot = (hash ^ pass) as usize & mask;
                        while table[slot] != 0 && table[slot] != hash {
                            slot = (slot + 1) & mask;
                        }
                        table[slot] = hash;
                        scratch.push(slot as u32);
                    }
                    if in_number {
                        sum = sum.wrapping_add(number);
                        scratch.push(number as u32);
                    }
                    (hash, number, in_word, in_number) = (0xcbf2_9ce4_8422_2325, 0, false, false);
                }
            }
        }
        scratch.sort_unstable();
        sum = sum.wrapping_add(u64::from(scratch[scratch.len() / 2]));
        table.fill(0);
    }
    sum
}

/// A fixed text of words, numbers and punctuation (xorshift, the same on every machine).
fn text() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = Vec::with_capacity(64 * 1024 + 32);
    while t.len() < 64 * 1024 {
        let r = next();
        let len = 2 + (r % 10) as usize;
        let alphabet: &[u8] = if r & 0x100 == 0 { b"abcdefghijklmnopqrstuvwxyz_" } else { b"0123456789" };
        for i in 0..len {
            t.push(alphabet[((r >> (12 + i * 4)) % alphabet.len() as u64) as usize]);
        }
        t.push(b" ,;=()'\n"[((r >> 60) & 7) as usize]);
    }
    t
}

/// The best of `rounds` rounds, in ms of this thread's CPU time.
pub fn measure(rounds: usize) -> f64 {
    let text = text();
    let mut table = vec![0u64; 1 << 14];
    let mut scratch = Vec::with_capacity(text.len() / 2);
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let start = thread_cpu_ns();
        black_box(round(black_box(&text), &mut table, &mut scratch));
        best = best.min((thread_cpu_ns() - start) as f64 / 1e6);
    }
    best
}

fn thread_cpu_ns() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64
}
