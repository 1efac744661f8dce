//! Makes every file of fuzz/fuzz_targets a module of the replay binary, and a table of them.
use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../fuzz_targets");
    let dir = dir.canonicalize().expect("fuzz/fuzz_targets");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz/fuzz_targets")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".rs").map(str::to_owned))
        .collect();
    names.sort();
    let mut out = String::new();
    for n in &names {
        let path = dir.join(format!("{n}.rs"));
        // `#![no_main]` at the top of each target is meant for its own crate root.
        writeln!(out, "#[allow(unused_attributes)]\n#[path = {:?}]\nmod {n};", path.display().to_string()).unwrap();
    }
    out.push_str("/// A fuzz target's body.\npub type Entry = fn(&[u8]);\npub const TARGETS: &[(&str, Entry)] = &[\n");
    for n in &names {
        writeln!(out, "    ({n:?}, {n}::fuzz_replay_entry),").unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("targets.rs");
    std::fs::write(dest, out).unwrap();
}
