#![no_main]
//! Fuzz target: SQL obfuscation and Redis quantization must not panic on any text, and what they
//! return is bounded by the input (a token and its separating space per input byte at most: twice
//! the input; Redis: upper-casing may lengthen a character by half, plus ` ...`). One obfuscator
//! serves every query of a run, as in the agent (its backslash mode is sticky).
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use sts_agent::checks::obfuscate::{redis, SqlObfuscator};

thread_local! {
    static OB: RefCell<SqlObfuscator> = RefCell::new(SqlObfuscator::default());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    OB.with(|ob| {
        let mut ob = ob.borrow_mut();
        if mode & 1 == 1 {
            ob.literal_escapes = !ob.literal_escapes;
        }
        match ob.obfuscate(&text) {
            Ok(out) => {
                assert!(!out.is_empty(), "{text:?}: empty result is an error");
                assert!(out.len() <= 2 * text.len(), "{text:?} -> {} bytes", out.len());
                assert!(std::str::from_utf8(out).is_ok(), "{text:?}: not UTF-8");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
    let mut out = Vec::new();
    redis::quantize(&text, &mut out);
    assert!(out.len() <= text.len() * 3 / 2 + 4, "{text:?} -> {} bytes", out.len());
    assert!(std::str::from_utf8(&out).is_ok());
});
