#![no_main]
//! Fuzz target: the netlink sock_diag walker must stay inside the bytes received.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::inet_diag::{messages, Msg};

fuzz_target!(|data: &[u8]| {
    for m in messages(data).flatten() {
        if let Msg::Socket(s) = m {
            let _ = s.tcp_info();
        }
    }
});
