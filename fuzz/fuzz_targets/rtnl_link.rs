#![no_main]
//! Fuzz target: the NETLINK_ROUTE link walker must stay inside the bytes received, end at its
//! first error, and yield names and kinds that are slices of the input without their NUL.
use libfuzzer_sys::fuzz_target;
use sts_agent::parse::rtnl_link::{messages, messages_with_header, LinkMsg};

fuzz_target!(|data: &[u8]| {
    let items: Vec<_> = messages(data).collect();
    if let Some(p) = items.iter().position(Result::is_err) {
        assert_eq!(p, items.len() - 1, "the walk stops after its first error");
    }
    assert_eq!(messages_with_header(data).count(), items.len());
    for m in items.into_iter().flatten() {
        if let LinkMsg::Link { link, .. } = m {
            let _ = (link.is_up(), link.is_loopback());
            assert!(!link.name.contains(&0));
            assert!(link.kind.is_none_or(|k| !k.contains(&0)));
        }
    }
});
