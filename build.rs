//! Links the agent's code that runs (start-up, every check, sending) ahead of the code that does
//! not, so that it fills as few 64 KiB fault-around windows as it can: packaging/hot-text.ld
//! (issue 21's memory; benches/README.md "What holds the RSS").
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/hot-text.ld");
    println!("cargo:rerun-if-env-changed=STS_HOT_TEXT");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let elf = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if release && elf && std::env::var("STS_HOT_TEXT").as_deref() != Ok("0") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/packaging/hot-text.ld");
    }
}
