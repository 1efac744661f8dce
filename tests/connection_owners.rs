//! Owners of new sockets: a socket is attributed to its process from the second dump that sees
//! it, so a short-lived socket (an HTTP request without keep-alive) never makes the agent read
//! fd links, and a lasting one is reported one cycle later. Real sockets, real /proc.

mod common;

use std::net::{TcpListener, TcpStream};
use sts_agent::app::{ConnectionsCheck, ProcessCheck};

struct Host {
    procs: ProcessCheck,
    conns: ConnectionsCheck,
    meta: sts_agent::sources::docker::Metadata,
    msg: Vec<u8>,
    pmsg: Vec<u8>,
    i: u64,
}

impl Host {
    fn new() -> Host {
        let cfg = common::report_everything();
        Host {
            procs: ProcessCheck::new(&cfg, false).unwrap(),
            conns: ConnectionsCheck::new(10_000, 0, 30).unwrap(),
            meta: Default::default(),
            msg: Vec::new(),
            pmsg: Vec::new(),
            i: 0,
        }
    }

    /// One process cycle and one connections cycle; returns (sockets of this process reported,
    /// fd links read, whether the cycle had nothing to look for: no socket first seen in the
    /// previous dump is still there and no process is new).
    fn cycle(&mut self) -> (usize, u32, bool) {
        self.i += 1;
        let (mono, ms) = (self.i as f64, 1_700_000_000_000 + self.i as i64 * 1000);
        self.procs.run(mono, ms, "i-0abc", false, &self.meta, &mut self.pmsg, &mut |_| {});
        self.conns.run(mono, ms, "i-0abc", false, &self.procs, &mut self.msg, &mut |_| {});
        let me = std::process::id();
        let mine = self.conns.selection.reported.iter().filter(|r| r.pid == me).count();
        let second_dump = self.conns.table.conns.iter().any(|c| c.first_seen_mono == mono - 1.0);
        let quiet = !second_dump && self.procs.table.discovered == 0;
        (mine, self.conns.source_stats().links_read, quiet)
    }
}

fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

#[test]
fn a_new_socket_is_attributed_from_its_second_dump_and_a_short_lived_one_costs_no_scan() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _steady: Vec<_> = (0..20).map(|_| pair(&listener)).collect();
    let mut host = Host::new();
    for _ in 0..4 {
        host.cycle();
    }
    let (mine, _, _) = host.cycle();
    assert_eq!(mine, 40, "both ends of the 20 steady connections");

    // A lasting connection: not looked for in the dump that first sees it…
    let lasting = pair(&listener);
    let (mut checked, mut tries) = (0, 0);
    let (mine, links, quiet) = host.cycle();
    assert_eq!(mine, 40, "a socket first seen this cycle is not attributed yet");
    if quiet {
        assert_eq!(links, 0, "no fd link is read for sockets first seen in this dump");
        checked += 1;
    }
    // …and found in the next one, by reading fd links.
    let (mine, links, _) = host.cycle();
    assert_eq!(mine, 42, "the lasting connection's two ends, one cycle later");
    assert!(links > 0, "its owner was found from fd links");

    // Short-lived connections, each gone before the next dump: no fd link is read for them.
    while tries < 8 && checked < 3 {
        tries += 1;
        let brief = pair(&listener);
        let (mine, links, quiet) = host.cycle();
        assert_eq!(mine, 42, "a brief socket is not attributed in its only dump");
        checked += usize::from(quiet);
        if quiet {
            assert_eq!(links, 0, "no fd link read in the dump that first sees a socket");
        }
        drop(brief);
        let (mine, links, _) = host.cycle();
        assert_eq!(mine, 42);
        // The brief sockets were first seen in the previous dump but are gone: nothing to find,
        // unless other sockets or processes appeared on the host meanwhile.
        let others = host.conns.table.conns.iter().any(|c| c.first_seen_mono == host.i as f64 - 1.0);
        if !others && host.procs.table.discovered == 0 {
            assert_eq!(links, 0, "a socket that lived for one dump costs no scan");
            checked += 1;
        }
    }
    assert!(checked >= 3, "churn elsewhere on the host left only {checked} checkable cycles");
    drop(lasting);
}
