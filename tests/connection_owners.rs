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
    zstd: sts_agent::app::Zstd,
    i: u64,
    prev_discovered: u32,
}

/// The tests read fd links of every process on the host: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Host {
    fn new() -> Host {
        let cfg = common::report_everything();
        Host {
            procs: ProcessCheck::new(&cfg, false).unwrap(),
            conns: ConnectionsCheck::new(10_000, 0, 30).unwrap(),
            meta: Default::default(),
            msg: Vec::new(),
            pmsg: Vec::new(),
            zstd: sts_agent::app::zstd_context().unwrap(),
            i: 0,
            prev_discovered: 0,
        }
    }

    /// One process cycle and one connections cycle; returns (sockets of this process reported,
    /// fd links read, whether the cycle had nothing to look for: no socket first seen in the
    /// previous dump is still there and no process is new, nor first reported now).
    /// Processes first seen this cycle or the previous one (those are first reported now, and
    /// their fd links read).
    fn new_processes(&self) -> u32 {
        self.procs.table.discovered + self.prev_discovered
    }

    fn cycle(&mut self) -> (usize, u32, bool) {
        self.i += 1;
        self.prev_discovered = self.procs.table.discovered;
        let (mono, ms) = (self.i as f64, 1_700_000_000_000 + self.i as i64 * 1000);
        self.procs.run(mono, ms, "i-0abc", false, &self.meta, &mut self.pmsg, &mut self.zstd, &mut |_| {});
        self.conns.run(mono, ms, "i-0abc", false, &self.procs, &mut self.msg, &mut self.zstd, &mut |_| {});
        let me = std::process::id();
        let mine = self.conns.selection.reported.iter().filter(|r| r.pid == me).count();
        let second_dump = self.conns.table.conns.iter().any(|c| c.first_seen_mono == mono - 1.0);
        let quiet = !second_dump && self.new_processes() == 0;
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
        if !others && host.new_processes() == 0 {
            assert_eq!(links, 0, "a socket that lived for one dump costs no scan");
            checked += 1;
        }
    }
    assert!(checked >= 3, "churn elsewhere on the host left only {checked} checkable cycles");
    drop(lasting);
}

/// The fd-scan budget is a hard cap: a process holding more descriptors than the budget is read
/// over several cycles (resumed where the budget cut it short), never all in one, and its
/// sockets past the budget (both ends of a loopback connection) are still attributed.
#[test]
fn the_fd_scan_budget_is_a_hard_cap_and_a_long_scan_resumes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use sts_agent::sources::connections::FD_SCAN_BUDGET;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let many = FD_SCAN_BUDGET as usize + 1000;
    let code = format!(
        "import os, resource, socket, sys, time\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, ({0}, {0}))\n\
         fds = [os.open('/dev/null', os.O_RDONLY) for _ in range({many})]\n\
         l = socket.create_server(('127.0.0.1', 0))\n\
         s = socket.create_connection(l.getsockname())\n\
         a, _ = l.accept()\n\
         print(s.fileno(), flush=True)\n\
         time.sleep(120)\n",
        many + 100
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let _kill = common::Kids(vec![child]);
    let fd: u32 = line.trim().parse().unwrap_or_else(|_| panic!("python3 said {line:?}"));
    assert!(fd > FD_SCAN_BUDGET, "the socket is past the budget (fd {fd})");

    let mut host = Host::new();
    let mut attributed_at = None;
    for cycle in 0..8 {
        let (_, links, _) = host.cycle();
        eprintln!("cycle {cycle}: {links} links");
        assert!(links <= FD_SCAN_BUDGET, "cycle {cycle}: {links} fd links read, over the {FD_SCAN_BUDGET} budget");
        if host.conns.selection.reported.iter().filter(|r| r.pid == pid).count() == 2 {
            attributed_at = Some(cycle);
            break;
        }
    }
    assert!(attributed_at.is_some(), "the socket past the budget was never attributed to its process");
}
