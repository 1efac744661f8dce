//! A steady-state connections cycle (dump every namespace, owners, select, encode protobuf,
//! zstd, the /intake side channel) performs no heap allocation when no socket appeared, with
//! protocol inspection on and every connection carrying keep-alive HTTP exchanges (the capture
//! ring read, heads matched, sketches encoded).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use std::net::{TcpListener, TcpStream};
use sts_agent::app::{ConnectionsCheck, Encoded, ProcessCheck};

mod common;
use common::pa_proto;

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_connections_cycle_allocates_nothing() {
    // 300 loopback connections (600 sockets) owned by this process, with traffic.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut ends = Vec::new();
    for _ in 0..300 {
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().unwrap();
        ends.push((c, s));
    }
    const REQUEST: &[u8] = b"GET /steady HTTP/1.1\r\nHost: x\r\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let send = |ends: &mut Vec<(TcpStream, TcpStream)>| {
        use std::io::{Read, Write};
        for (c, s) in ends.iter_mut() {
            c.write_all(REQUEST).unwrap();
            let mut b = [0u8; 64];
            s.read_exact(&mut b[..REQUEST.len()]).unwrap();
            s.write_all(RESPONSE).unwrap();
            c.read_exact(&mut b[..RESPONSE.len()]).unwrap();
        }
        // The capture ring hands a partly filled block over within its retire timeout.
        std::thread::sleep(std::time::Duration::from_millis(2 * sts_agent::sys::packet_ring::RETIRE_MS as u64));
    };
    let cfg = common::report_everything();
    let mut procs = ProcessCheck::new(&cfg, false).unwrap();
    let mut conns = ConnectionsCheck::new(10_000, 0, 30).unwrap();
    conns.enable_protocol_inspection(0..1024, 10_000);
    let meta = sts_agent::sources::docker::Metadata::default();
    let (mut msg, mut pmsg) = (Vec::new(), Vec::new());
    let mut zstd = sts_agent::app::zstd_context().unwrap();
    let mut reported_total = 0usize;
    let me = std::process::id() as i32;
    let mut cycle = |i: u64, procs: &mut ProcessCheck, conns: &mut ConnectionsCheck| -> (u64, usize) {
        let (mono, ms) = (i as f64, 1_700_000_000_000 + i as i64 * 1000);
        procs.run(mono, ms, "i-0abc", false, &meta, &mut pmsg, &mut zstd, &mut |_| {});
        let mut bytes = 0;
        let before = allocations();
        conns.run(mono, ms, "i-0abc", false, procs, &mut msg, &mut zstd, &mut |e| {
            bytes += match e {
                Encoded::Collector(b) | Encoded::Intake(b) | Encoded::Connections(b) => b.len(),
            }
        });
        (allocations() - before, bytes)
    };
    for i in 0..4 {
        send(&mut ends);
        cycle(i, &mut procs, &mut conns);
    }
    let mut quiet = 0;
    let mut prev_discovered = procs.table.discovered;
    // At least 20 cycles, more on a busy host until five of them were free of churn.
    let mut last = 0;
    for i in 4..84 {
        if i >= 24 && quiet >= 5 {
            break;
        }
        last = i;
        send(&mut ends);
        let (n, bytes) = cycle(i, &mut procs, &mut conns);
        assert!(bytes > 0, "cycle {i} sent nothing");
        let mine = conns.selection.reported.iter().filter(|r| r.pid as i32 == me).count();
        assert_eq!(mine, 600, "cycle {i}: both ends of all 300 connections are reported");
        reported_total += conns.selection.reported.len();
        // Churn elsewhere on the host (a new socket, a new process) may allocate once, and so may
        // a socket's second dump (its owner is looked for then: fd links, a new relation) and a
        // process's second observation (it is reported from then on: its fd links are read).
        let new_sockets = conns
            .table
            .conns
            .iter()
            .filter(|c| c.first_seen_mono == i as f64 || c.first_seen_mono == (i - 1) as f64)
            .count();
        // A process first seen in the previous cycle is reported (and its fd links read) in this one.
        let new_processes = procs.table.discovered + std::mem::replace(&mut prev_discovered, procs.table.discovered);
        if new_sockets == 0 && new_processes == 0 {
            assert_eq!(n, 0, "cycle {i}: {n} allocations in a steady connections cycle");
            // And owners are known: no fd/ link is read on a steady host.
            assert_eq!(conns.source_stats().links_read, 0, "cycle {i}: fd links read with every owner known");
            quiet += 1;
        }
    }
    assert!(quiet >= 5, "only {quiet} of {} cycles were free of churn; the claim went untested", last - 3);

    // One more cycle, captured (outside the measured ones) and decoded independently: the 600
    // connections are split into messages of at most 100 that share one groupId.
    send(&mut ends);
    let (end, end_ms) = ((last + 7) as f64, 1_700_000_000_000 + (last + 7) as i64 * 1000);
    procs.run(end, end_ms, "i-0abc", false, &meta, &mut pmsg, &mut zstd, &mut |_| {});
    let mut bodies = Vec::new();
    conns.run(end, end_ms, "i-0abc", false, &procs, &mut msg, &mut zstd, &mut |e| {
        if let Encoded::Connections(b) = e {
            bodies.push(b.to_vec());
        }
    });
    let msgs: Vec<_> = bodies.iter().map(|b| pa_proto::collector_connections(b)).collect();
    let total: usize = msgs.iter().map(|m| m.connections.len()).sum();
    assert_eq!(msgs.len(), total.div_ceil(100), "{total} connections in {} messages", msgs.len());
    assert!(msgs.iter().all(|m| m.connections.len() <= 100 && m.group_size == msgs.len() as i32));
    assert!(msgs.iter().all(|m| m.group_id == msgs[0].group_id && m.collection_interval == 7000));
    let mine = msgs.iter().flat_map(|m| &m.connections).filter(|c| c.pid == me).count();
    assert_eq!(mine, 600);
    // The 300 server sockets carry one 200 response for the interval; the 300 client ones nothing.
    let port = addr.port() as i32;
    for c in msgs.iter().flat_map(|m| &m.connections).filter(|c| c.pid == me) {
        let server = c.laddr.as_ref().is_some_and(|a| a.port == port);
        let rate = c.metrics.iter().find(|m| m.name == "http_requests_per_second" && m.code() == "200");
        if server {
            assert_eq!(c.application_protocol, "http");
            let r = rate.and_then(|m| m.number()).expect("a 200 rate on the server socket");
            assert!((r * 7.0 - 1.0).abs() < 1e-9, "one response in the 7 s interval: {r}");
        } else {
            assert!(rate.is_none() && c.application_protocol.is_empty(), "client sockets carry no HTTP");
        }
    }
    let (_, http) = conns.http_status().unwrap();
    assert!(http.responses >= 300 * 20, "responses counted: {http:?}");
    eprintln!("{} cycles ({quiet} without churn), {reported_total} connections reported", last - 3);
    drop(ends);
}
