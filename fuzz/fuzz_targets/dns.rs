#![no_main]
//! Fuzz target: the DNS response reader, resolv.conf and hosts parsers must not panic on any
//! input; addresses stay within the caller's slice; what encode_name accepts makes a valid query
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use sts_agent::parse::dns;

fuzz_target!(|data: &[u8]| {
    let mut addrs = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 4];
    let id = u16::from_be_bytes([data.first().copied().unwrap_or(0), data.get(1).copied().unwrap_or(0)]);
    // The question of a real answer (www.github.com), and the name in the message itself.
    for qtype in [dns::TYPE_A, dns::TYPE_AAAA] {
        let qname = b"\x03www\x06github\x03com\x00";
        if let Ok(r) = dns::read_response(data, id, qname, qtype, &mut addrs) {
            assert!(r.count <= addrs.len());
        }
    }
    let _ = dns::resolv_conf(data);
    let n = dns::hosts_lookup(data, b"receiver.example", &mut addrs);
    assert!(n <= addrs.len());
    let mut wire = [0u8; dns::MAX_NAME];
    if let Some(len) = dns::encode_name(data, &mut wire) {
        assert!(len <= dns::MAX_NAME);
        let mut q = [0u8; dns::MAX_QUERY];
        let qn = dns::write_query(&mut q, id, &wire[..len], dns::TYPE_A).expect("an encoded name makes a query");
        // A query is not a response.
        assert_eq!(dns::read_response(&q[..qn], id, &wire[..len], dns::TYPE_A, &mut addrs), Err(dns::DnsError::NotAResponse));
    }
});
