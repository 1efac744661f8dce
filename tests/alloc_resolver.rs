//! A connect to a name whose answer is cached performs zero heap allocations: the resolver's
//! `addresses` (including its periodic look at resolv.conf and hosts) reuses the cached answer.
//! The test binary counts every allocation. Needs root (a nameserver on UDP port 53 of 127.53.x.y,
//! since resolv.conf has no port syntax).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use mio::{Events, Poll, Token};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use sts_agent::transport::resolve::{Resolver, RECHECK_EVERY};

#[global_allocator]
static A: Counting = Counting;

/// Answers every A query with 10.1.2.3 (TTL 300) and every other with no record.
fn nameserver() -> SocketAddr {
    let s = (0..200)
        .find_map(|i| UdpSocket::bind((Ipv4Addr::new(127, 53, 200, 2 + i), 53)).ok())
        .expect("a UDP socket on 127.53.200.x:53 (needs root)");
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let qend = 12 + buf[12..n].iter().position(|&b| b == 0).unwrap() + 5;
            let a = buf[qend - 3] == 1;
            let mut r = buf[..qend].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[7] = u8::from(a);
            if a {
                r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 1, 2, 3]);
            }
            let _ = s.send_to(&r, from);
        }
    });
    addr
}

#[test]
fn a_cached_answer_is_reused_without_allocating() {
    let ns = nameserver();
    let dir = std::env::temp_dir().join(format!("sts-alloc-resolver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rc, hosts) = (dir.join("resolv.conf"), dir.join("hosts"));
    std::fs::write(&rc, format!("nameserver {}\noptions timeout:1\n", ns.ip())).unwrap();
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mut poll = Poll::new().unwrap();
    let mut r = Resolver::with_files("receiver.alloc-test", 443, Token(1), rc, hosts);
    let t0 = Instant::now();
    assert_eq!(r.addresses(poll.registry(), t0), Ok(None));
    let mut events = Events::with_capacity(4);
    let done = loop {
        assert!(t0.elapsed() < Duration::from_secs(5), "no answer");
        poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        if let Some(d) = r.on_event(poll.registry(), Instant::now()) {
            break d;
        }
        if let Some(d) = r.on_timeout(poll.registry(), Instant::now()) {
            break d;
        }
    };
    assert_eq!(done, Ok(()));
    let want: SocketAddr = "10.1.2.3:443".parse().unwrap();
    let now = Instant::now();
    assert_eq!(r.addresses(poll.registry(), now).unwrap().unwrap(), [want]);
    // A minute of connects every 50 ms (the files looked at every RECHECK_EVERY), within the TTL.
    let before = allocations();
    for i in 0..1200u32 {
        let at = now + Duration::from_millis(50) * i;
        let got = r.addresses(poll.registry(), at).unwrap().unwrap();
        assert!(got.len() == 1 && got[0] == want);
        r.on_timeout(poll.registry(), at);
        assert!(r.deadline().is_none());
    }
    let allocs = allocations() - before;
    assert!(Duration::from_millis(50) * 1200 > RECHECK_EVERY * 2);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(allocs, 0, "{allocs} allocations for 1200 cached look-ups");
}
