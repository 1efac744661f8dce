#![no_main]
//! Fuzz target: the netlink sock_diag walker must stay inside the bytes received, and whatever it
//! yields must go through the connection table, direction and identity code without a panic.
use libfuzzer_sys::fuzz_target;
use sts_agent::checks::connections::{direction, relation_key, write_identifier, write_namespace};
use sts_agent::model::connection::ConnTable;
use sts_agent::parse::inet_diag::{messages, Msg};

fuzz_target!(|data: &[u8]| {
    let mut t = ConnTable::new(64);
    for cycle in 0..2 {
        t.begin(f64::from(cycle));
        for m in messages(data).flatten() {
            if let Msg::Socket(s) = m {
                let _ = s.tcp_info();
                t.push(u64::from(s.ifindex), &s, cycle == 0);
            }
        }
        t.finish();
    }
    let (mut ns, mut id) = (Vec::new(), Vec::new());
    for c in &t.conns {
        let d = direction(&t, c);
        write_namespace(&mut ns, "fuzz-host", c);
        write_identifier(&mut id, &ns, c, d);
        assert!(id.starts_with(b"in:") || id.starts_with(b"out:"));
        // The relation key of whatever the walker yields (no panic, no overflow).
        let _ = relation_key(c, d, 7);
    }
});
