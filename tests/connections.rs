//! The connections check against real traffic: a server in its own network namespace (a veth
//! pair, `ip netns`), a client on the host, and a pair on loopback, each streaming at known
//! rates both ways. The agent sends to a real TLS receiver; the messages are decoded
//! independently (prost structs from the spec, ruzstd) and compared with `ss -tnpi`.

mod common;
#[path = "support/netns.rs"]
mod netns;
use common::pa_proto::{self, Connection};
use common::*;
use netns::Netns;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sts_agent::app::{zstd_context, ConnectionsCheck, ProcessCheck};

const KEY: &str = "conn-test-key-0123456789";
const HOST: &str = "conn-host";
const STREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/stream.py");
/// Rate checks must not see each other's traffic or CPU load.
static SERIAL: Mutex<()> = Mutex::new(());

/// Starts `stream.py`, optionally inside a namespace, and waits for its "ready" line if asked.
fn stream(netns: Option<&str>, args: &[&str], wait_ready: bool) -> Child {
    let mut cmd = netns::python_in(netns, STREAM);
    let mut child = cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    if wait_ready {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "stream.py {args:?} did not start");
    }
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// `(local, peer)` of the established sockets `ss -tnpi` attributes to `pid`.
fn ss_sockets(netns: Option<&str>, pid: u32) -> BTreeSet<(String, String)> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ss"]);
            c
        }
        None => Command::new("ss"),
    };
    let out = cmd.args(["-tnpi", "state", "established"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let tag = format!("pid={pid},");
    text.lines()
        .filter(|l| l.contains(&tag))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // With a state filter the columns are: Recv-Q Send-Q Local Peer Process.
            (f[2].to_string(), f[3].to_string())
        })
        .collect()
}

fn endpoint(a: &Option<pa_proto::Addr>) -> String {
    let a = a.as_ref().expect("address");
    if a.ip.contains(':') {
        format!("[{}]:{}", a.ip, a.port)
    } else {
        format!("{}:{}", a.ip, a.port)
    }
}

fn agent_sockets(conns: &[Connection], pid: u32) -> BTreeSet<(String, String)> {
    conns.iter().filter(|c| c.pid == pid as i32).map(|c| (endpoint(&c.laddr), endpoint(&c.raddr))).collect()
}

/// Within 25 % of `want`.
fn near(got: f32, want: f64) -> bool {
    (f64::from(got) - want).abs() <= want * 0.25
}

/// Runs `--once` against a TLS receiver; returns the connections messages (decoded) and their
/// `collectionInterval`s.
fn run_once(extra: &[(&str, &str)]) -> (Vec<Connection>, Vec<i32>, Vec<Request>) {
    let rx = Receiver::start(true, vec![202]);
    let url = rx.url("/stsAgent");
    let mut env = vec![
        ("STS_STS_URL", url.as_str()),
        ("STS_API_KEY", KEY),
        ("STS_HOSTNAME", HOST),
        ("STS_SKIP_SSL_VALIDATION", "true"),
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
    ];
    env.extend_from_slice(extra);
    let out = run_agent(&["--once"], &env, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reqs = rx.requests();
    let (mut conns, mut intervals) = (Vec::new(), Vec::new());
    for r in reqs.iter().filter(|r| r.target == "/stsAgent/api/v1/connections") {
        let (version, encoding, kind, sub, org, ts) = pa_proto::header(&r.body);
        assert_eq!((version, encoding, kind, sub, org), (3, 2, 22, 0, 0));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((now - 120_000..=now).contains(&ts), "timestamp {ts}");
        assert_eq!(r.header("sts-api-key"), Some(KEY));
        assert_eq!(r.header("sts-hostname"), Some(HOST));
        let m = pa_proto::collector_connections(&r.body);
        assert_eq!(m.host_name, HOST);
        assert!(m.connections.len() <= 100);
        intervals.push(m.collection_interval);
        conns.extend(m.connections);
    }
    (conns, intervals, reqs)
}

#[test]
fn connections_across_a_network_namespace_and_on_loopback() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new("sts-test", "sts", 200);
    let (port, lo_port) = (free_port(), free_port());
    let (port_s, lo_port_s) = (port.to_string(), lo_port.to_string());
    // Server → client 200 kB/s, client → server 50 kB/s; on loopback 120 kB/s and 30 kB/s.
    let server = stream(Some(&ns.name), &["server", &ns.ns_ip, &port_s, "200000"], true);
    let mut kids = Kids(vec![server]);
    kids.0.push(stream(None, &["client", &ns.ns_ip, &port_s, "50000"], false));
    kids.0.push(stream(None, &["pair", "127.0.0.1", &lo_port_s, "120000", "30000"], true));
    let (server_pid, client_pid, pair_pid) = (kids.0[0].id(), kids.0[1].id(), kids.0[2].id());
    // Past TCP's start-up, so each second carries the paced rate.
    std::thread::sleep(Duration::from_millis(1500));

    let (conns, intervals, reqs) = run_once(&[]);
    let ss_client = ss_sockets(None, client_pid);
    let ss_server = ss_sockets(Some(&ns.name), server_pid);
    let ss_pair = ss_sockets(None, pair_pid);

    assert!(!intervals.is_empty(), "no /api/v1/connections message");
    assert!(intervals.iter().all(|i| (800..=5000).contains(i)), "collectionInterval (ms): {intervals:?}");

    // The same sockets as ss shows, per process and namespace.
    assert_eq!(agent_sockets(&conns, client_pid), ss_client, "client sockets vs ss");
    assert_eq!(agent_sockets(&conns, server_pid), ss_server, "server sockets (in the netns) vs ss");
    assert_eq!(agent_sockets(&conns, pair_pid), ss_pair, "loopback pair vs ss");
    assert_eq!((ss_client.len(), ss_server.len(), ss_pair.len()), (1, 1, 2));

    let one = |pid: u32| -> &Connection {
        let v: Vec<&Connection> = conns.iter().filter(|c| c.pid == pid as i32).collect();
        assert_eq!(v.len(), 1, "connections of {pid}: {v:?}");
        v[0]
    };
    // The client on the host: outgoing, global addresses, no namespace.
    let c = one(client_pid);
    assert_eq!(c.laddr.as_ref().unwrap().ip, ns.host_ip);
    assert_eq!(
        (c.raddr.as_ref().unwrap().ip.as_str(), c.raddr.as_ref().unwrap().port),
        (ns.ns_ip.as_str(), port as i32)
    );
    assert_eq!((c.direction, c.family, c.r#type), (1, 0, 0));
    assert_eq!(c.namespace, "");
    assert_eq!(c.connection_identifier, format!("out::{}::{}:{port}", ns.host_ip, ns.ns_ip));
    assert_eq!(c.pid_create_time, create_time_ms(client_pid));
    assert!(near(c.bytes_sent_per_second, 50_000.0), "client sent {}/s", c.bytes_sent_per_second);
    assert!(near(c.bytes_received_per_second, 200_000.0), "client received {}/s", c.bytes_received_per_second);

    // The server inside the namespace: incoming on its listening port.
    let s = one(server_pid);
    assert_eq!(
        (s.laddr.as_ref().unwrap().ip.as_str(), s.laddr.as_ref().unwrap().port),
        (ns.ns_ip.as_str(), port as i32)
    );
    assert_eq!(s.raddr.as_ref().unwrap().ip, ns.host_ip);
    assert_eq!(s.raddr.as_ref().unwrap().port, c.laddr.as_ref().unwrap().port, "the two ends of one connection");
    assert_eq!(s.direction, 2);
    assert_eq!(s.namespace, "");
    assert_eq!(s.connection_identifier, format!("in::{}:{port}::{}", ns.ns_ip, ns.host_ip));
    assert_eq!(s.pid_create_time, create_time_ms(server_pid));
    assert!(near(s.bytes_sent_per_second, 200_000.0), "server sent {}/s", s.bytes_sent_per_second);
    assert!(near(s.bytes_received_per_second, 50_000.0), "server received {}/s", s.bytes_received_per_second);

    // Deltas as metrics, consistent with the rates over the interval.
    let secs = f64::from(intervals[0]) / 1000.0;
    for (conn, sent, recv) in [(c, 50_000.0, 200_000.0), (s, 200_000.0, 50_000.0)] {
        let d_sent = conn.metric("bytes_sent_delta").expect("bytes_sent_delta");
        let d_recv = conn.metric("bytes_received_delta").expect("bytes_received_delta");
        assert!((d_sent / secs - sent).abs() <= sent * 0.25, "bytes_sent_delta {d_sent} over {secs}s");
        assert!((d_recv / secs - recv).abs() <= recv * 0.25, "bytes_received_delta {d_recv} over {secs}s");
        let rtt = conn.metric("rtt_seconds").expect("rtt_seconds");
        assert!(rtt > 0.0 && rtt < 1.0, "rtt {rtt}");
        assert!(conn.metric("retransmits_delta").is_some());
        assert!(conn.metrics.iter().all(|m| m.tags.is_empty()));
    }

    // The loopback pair: both ends in one process, scoped by host name and network namespace.
    let host_ns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let scope = format!("{HOST}:{host_ns}");
    let pair: Vec<&Connection> = conns.iter().filter(|c| c.pid == pair_pid as i32).collect();
    let inc = pair.iter().find(|c| c.direction == 2).expect("the accepted end is incoming");
    let out = pair.iter().find(|c| c.direction == 1).expect("the connecting end is outgoing");
    assert_eq!(inc.laddr.as_ref().unwrap().port, lo_port as i32);
    assert_eq!(out.raddr.as_ref().unwrap().port, lo_port as i32);
    assert_eq!(inc.namespace, scope);
    assert_eq!(out.namespace, scope);
    assert_eq!(inc.connection_identifier, format!("in:{scope}:127.0.0.1:{lo_port}:{scope}:127.0.0.1"));
    assert_eq!(out.connection_identifier, format!("out:{scope}:127.0.0.1:{scope}:127.0.0.1:{lo_port}"));
    assert!(near(inc.bytes_sent_per_second, 120_000.0), "loopback server sent {}/s", inc.bytes_sent_per_second);
    assert!(
        near(inc.bytes_received_per_second, 30_000.0),
        "loopback server received {}/s",
        inc.bytes_received_per_second
    );
    assert!(near(out.bytes_sent_per_second, 30_000.0), "loopback client sent {}/s", out.bytes_sent_per_second);
    assert!(
        near(out.bytes_received_per_second, 120_000.0),
        "loopback client received {}/s",
        out.bytes_received_per_second
    );

    // The namespace was visited (the server's socket proves it) and counted in the self-metrics.
    assert_ne!(ns.inode(), host_ns);
    let intake: Vec<serde_json::Value> =
        reqs.iter().filter(|r| r.target.starts_with("/stsAgent/intake?")).map(|r| r.json()).collect();
    let conn_intake = intake
        .iter()
        .find(|v| v["health"][0]["stream"]["sub_stream_id"] == "connections")
        .expect("a connections side-channel payload");
    let metric = |name: &str, tag: &str| -> f64 {
        conn_intake["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                m[0] == name && (tag.is_empty() || m[3]["tags"].as_array().is_some_and(|t| t.iter().any(|x| x == tag)))
            })
            .map(|m| m[2].as_f64().unwrap())
            .sum()
    };
    assert!(metric("stackstate.process_agent.connections.namespaces", "") >= 2.0);
    assert!(metric("stackstate.process_agent.connections.reported", "direction:incoming") >= 2.0);
    assert!(metric("stackstate.process_agent.connections.reported", "direction:outgoing") >= 2.0);
    assert!(metric("stackstate.process_agent.connections.total", "") >= 4.0);
    assert_eq!(conn_intake["health"][0]["check_states"][0]["health"], "CLEAR");
}

#[test]
fn nothing_is_sent_when_network_tracing_is_off_and_short_lived_relations_wait() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lo_port = free_port().to_string();
    let _kids = Kids(vec![stream(None, &["pair", "127.0.0.1", &lo_port, "10000", "10000"], true)]);
    let (conns, intervals, _) = run_once(&[("STS_NETWORK_TRACING_ENABLED", "false")]);
    assert!(conns.is_empty() && intervals.is_empty(), "tracing off: nothing on /api/v1/connections");
    // With the default 60 s relation qualifier, a relation first seen a second ago is held back,
    // though the check runs and reports its messages.
    let (conns, intervals, _) = run_once(&[("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "60")]);
    assert!(!intervals.is_empty(), "the check ran");
    assert!(conns.is_empty(), "short-lived relations reported: {conns:?}");
}

/// The process and connections checks run in this process (no short-lived qualifiers), and a
/// function that runs one cycle of both, a second apart on their clocks.
fn checks_in_process() -> (ProcessCheck, ConnectionsCheck, impl FnMut(&mut ProcessCheck, &mut ConnectionsCheck)) {
    let env: std::collections::HashMap<String, String> = [
        ("STS_PROCESS_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
        ("STS_NETWORK_RELATION_FILTER_SHORT_LIVED_QUALIFIER_SECS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cfg = sts_agent::config::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let procs = ProcessCheck::new(&cfg, false).unwrap();
    let conns = ConnectionsCheck::new(10_000, 0, 30).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let mut i = 0u64;
    let cycle = move |procs: &mut ProcessCheck, conns: &mut ConnectionsCheck| {
        i += 1;
        let ms = 1_700_000_000_000 + i as i64 * 1000;
        procs.run(i as f64, ms, "h", false, &meta, &mut Vec::new(), &mut zstd_context().unwrap(), &mut |_| {});
        conns.run(i as f64, ms, "h", false, procs, &mut Vec::new(), &mut zstd_context().unwrap(), &mut |_| {});
    };
    (procs, conns, cycle)
}

/// Namespaces are found through their processes, get a socket each, and lose it when their last
/// process exits; a new namespace's sockets wait one cycle (their counters predate the interval).
#[test]
fn namespaces_come_and_go_with_their_processes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut procs, mut conns, mut cycle) = checks_in_process();
    cycle(&mut procs, &mut conns);
    let before = conns.source_stats().namespaces;

    let ns = Netns::new("sts-test", "sts", 200);
    let port = free_port().to_string();
    // A loopback pair inside the namespace: both ends there, so both are scoped by its inode.
    let kids = Kids(vec![stream(Some(&ns.name), &["pair", "127.0.0.1", &port, "20000", "20000"], true)]);
    let pid = kids.0[0].id();
    let scoped = |conns: &ConnectionsCheck| {
        conns
            .selection
            .reported
            .iter()
            .filter(|r| r.pid == pid)
            .map(|r| conns.table.conns[r.conn as usize])
            .collect::<Vec<_>>()
    };
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.source_stats().namespaces, before + 1, "the new namespace was found and dumped");
    assert!(scoped(&conns).is_empty(), "a first-seen namespace only primes");
    assert_eq!(conns.table.conns.iter().filter(|c| c.ns == ns.inode()).count(), 2, "both ends tracked");
    // Let each end send a few 50 ms slices within the interval.
    std::thread::sleep(Duration::from_millis(300));
    cycle(&mut procs, &mut conns);
    let mine = scoped(&conns);
    assert_eq!(mine.len(), 2, "both ends reported on the next cycle");
    assert!(mine.iter().all(|c| c.ns == ns.inode() && c.deltas.is_some_and(|d| d.bytes_sent > 0)));

    drop(kids);
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.source_stats().namespaces, before, "the socket of an empty namespace is closed");
    assert!(conns.table.conns.iter().all(|c| c.ns != ns.inode()));
}

/// A namespace's family whose `net/sockstat` counts no TCP socket is not dumped (a dump walks the
/// kernel's whole shared connection hash: ~1.5 ms each on a large host); a socket appearing there
/// gets its family dumped at once, a family the last dump found sockets of is dumped again, and a
/// connection that just closed (TIME_WAIT) keeps the namespace dumped until it is gone.
#[test]
fn a_namespace_without_tcp_sockets_is_not_dumped_until_it_has_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut procs, mut conns, mut cycle) = checks_in_process();
    // The host has a TCP socket whatever else runs here.
    let _host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ns = Netns::new("sts-test", "sts", 200);
    let inode = ns.inode();
    let in_ns = |args: &[&str]| {
        let o = Command::new("ip").args(["netns", "exec", &ns.name]).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let tcp_line =
        || in_ns(&["cat", "/proc/net/sockstat"]).lines().find(|l| l.starts_with("TCP:")).unwrap().to_string();
    let tracked = |conns: &ConnectionsCheck| conns.table.conns.iter().filter(|c| c.ns == inode).count();

    // A process with no socket at all: the namespace is found, both families skipped.
    let mut kids = Kids(vec![Command::new("ip").args(["netns", "exec", &ns.name, "sleep", "600"]).spawn().unwrap()]);
    std::thread::sleep(Duration::from_millis(200));
    cycle(&mut procs, &mut conns);
    cycle(&mut procs, &mut conns);
    assert!(tcp_line().contains("inuse 0 orphan 0 tw 0"), "{}", tcp_line());
    assert_eq!(conns.families_dumped(inode), Some([false, false]), "an empty namespace is not dumped");
    assert!(conns.source_stats().dumps_skipped >= 2);
    assert_eq!(conns.families_dumped(conns.home_ns()).map(|f| f[0]), Some(true), "the host has TCP sockets");

    // An IPv6 listener: only that family is dumped.
    let port6 = free_port().to_string();
    kids.0.push(stream(Some(&ns.name), &["server", "::1", &port6, "1000"], true));
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.families_dumped(inode), Some([false, true]), "IPv6 socket appeared: its family dumped");

    // And a loopback pair (IPv4): both families dumped, the pair tracked.
    let port = free_port().to_string();
    kids.0.push(stream(Some(&ns.name), &["pair", "127.0.0.1", &port, "20000", "20000"], true));
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.families_dumped(inode), Some([true, true]), "IPv4 socket appeared: dumped at once");
    assert_eq!(tracked(&conns), 2, "both ends of the pair tracked");

    // Both gone (and whatever TIME_WAIT they left cleared): sockstat says nothing is there, but
    // the families the last dump found sockets of are dumped once more (a momentary zero of
    // sockstat's unlocked per-CPU sum must not make the table lose the baselines); then skipped.
    for mut k in kids.0.drain(1..) {
        let _ = k.kill();
        let _ = k.wait();
    }
    in_ns(&["ss", "-K", "-t", "state", "time-wait"]);
    assert!(tcp_line().contains("inuse 0 orphan 0 tw 0"), "{}", tcp_line());
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.families_dumped(inode), Some([true, true]), "sockets found last time: dumped once more");
    assert_eq!(tracked(&conns), 0, "the closed pair is gone from the table");
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.families_dumped(inode), Some([false, false]), "found empty: skipped");

    // A connection closed cleanly into TIME_WAIT: dumped (conservatively: sockstat's tw also
    // counts orphaned FIN_WAIT2 mini-sockets, which a dump lists) until it is gone.
    let closer = "import socket,time\nl=socket.socket(); l.bind(('127.0.0.1',0)); l.listen()\n\
                  c=socket.create_connection(l.getsockname()); s,_=l.accept()\n\
                  c.close(); time.sleep(0.1); s.close(); l.close()";
    in_ns(&["python3", "-c", closer]);
    let line = tcp_line();
    assert!(line.contains("inuse 0 ") && !line.contains(" tw 0 "), "TIME_WAIT expected: {line}");
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.families_dumped(inode), Some([true, true]), "TIME_WAIT is counted: dumped");
    in_ns(&["ss", "-K", "-t", "state", "time-wait"]);
    assert!(tcp_line().contains("inuse 0 orphan 0 tw 0"), "{}", tcp_line());
    cycle(&mut procs, &mut conns);
    assert_eq!(conns.families_dumped(inode), Some([false, false]), "empty again: skipped");
}

/// Both families in one walk of the kernel's TCP hash (`TCPDIAG_GETSOCK`): in a namespace of
/// its own, IPv4 and IPv6 loopback connections with known traffic are all found, with their byte
/// counters, by the one dump; and when the kernel refuses that request (here: the request's type
/// made one the kernel does not know, as a kernel without the original request would answer),
/// the per-family dumps find the same sockets and the one-walk request is not sent again.
#[test]
fn both_families_in_one_dump_and_per_family_when_refused() {
    use sts_agent::model::connection::ConnTable;
    use sts_agent::model::process::ProcessTable;
    use sts_agent::sources::connections::ConnectionSource;
    in_a_namespace_of_its_own(|| {
        let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback in the test namespace");
        let mut pairs = [loopback_pair(&l4), loopback_pair(&l4), loopback_pair(&l6)];
        let ports: BTreeSet<u16> = pairs.iter().map(|p| p.0.local_addr().unwrap().port()).collect();
        let procs = ProcessTable::default();
        for refuse in [false, true] {
            let mut source = ConnectionSource::open(true).unwrap();
            if refuse {
                source.refuse_both_families_for_test();
            }
            let mut table = ConnTable::new(1000);
            for cycle in 0..3u32 {
                for (k, p) in pairs.iter_mut().enumerate() {
                    exchange(p, 10_000 * (k + 1));
                }
                source.collect(&procs, &mut table, f64::from(cycle));
                assert_eq!(source.stats.dump_errors, 0, "refuse {refuse}, cycle {cycle}");
                assert_eq!(source.stats.dumps_skipped, 0, "both families have sockets");
                assert_eq!(source.both_families_in_one_walk(), Some(!refuse), "cycle {cycle}");
                // Each client end, by its ephemeral port, with the bytes it sent this cycle.
                let mut found = BTreeSet::new();
                for c in table.conns.iter().filter(|c| ports.contains(&c.lport)) {
                    found.insert((c.family, c.lport));
                    let k = pairs.iter().position(|p| p.0.local_addr().unwrap().port() == c.lport).unwrap();
                    if cycle > 0 {
                        assert_eq!(
                            c.deltas.map(|d| d.bytes_sent),
                            Some(10_000 * (k as u64 + 1)),
                            "refuse {refuse}: {c:?}"
                        );
                    }
                }
                let families: Vec<u8> = found.iter().map(|f| f.0).collect();
                assert_eq!(families, vec![2, 2, 10], "refuse {refuse}, cycle {cycle}: {found:?}");
                assert_eq!(table.listening.len(), 2, "both listeners");
            }
        }
    });
}

/// Runs `f` on a thread of its own inside a fresh network namespace (setns changes only the
/// calling thread; the thread and its sockets are gone when it returns), with the other tests
/// that measure traffic held off.
fn in_a_namespace_of_its_own(f: impl FnOnce() + Send + 'static) {
    use std::os::fd::AsFd;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new("sts-test", "sts", 200);
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .unwrap();
        f();
    })
    .join()
    .unwrap();
}

/// `(client, server)` ends of a fresh loopback connection to `l`.
fn loopback_pair(l: &std::net::TcpListener) -> (std::net::TcpStream, std::net::TcpStream) {
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// `n` bytes each way over a pair, in slices the socket buffers hold.
fn exchange(pair: &mut (std::net::TcpStream, std::net::TcpStream), n: usize) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len());
        pair.0.write_all(&buf[..k]).unwrap();
        pair.1.read_exact(&mut buf[..k]).unwrap();
        pair.1.write_all(&buf[..k]).unwrap();
        pair.0.read_exact(&mut buf[..k]).unwrap();
        left -= k;
    }
}

/// Over `STS_NETWORK_TRACER_MAX_CONNECTIONS`: real loopback connections in a namespace of their
/// own (so no other socket of the host competes for the table), more of them than the table
/// holds, with churn. The sockets tracked last cycle stay tracked, and no socket reports its
/// lifetime counters (1 MiB each way, before the first cycle) as one interval's delta.
#[test]
fn over_the_connection_limit_the_table_is_stable_and_deltas_are_per_interval() {
    use sts_agent::model::connection::ConnTable;
    use sts_agent::model::process::ProcessTable;
    use sts_agent::sources::connections::ConnectionSource;
    in_a_namespace_of_its_own(|| {
        const PAIRS: usize = 40;
        const MAX: usize = 40;
        const PER_CYCLE: usize = 1000;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let lport = listener.local_addr().unwrap().port();
        let mut pairs: Vec<_> = (0..PAIRS).map(|_| loopback_pair(&listener)).collect();
        for p in &mut pairs {
            exchange(p, 1 << 20);
        }
        let eph = |c: &sts_agent::model::connection::Conn| if c.lport == lport { c.rport } else { c.lport };
        // The namespace's own procfs view is not needed: the agent's "home" namespace (this
        // thread's) is always dumped, and no process table entry adds another.
        let mut source = ConnectionSource::open(true).unwrap();
        let procs = ProcessTable::default();
        let mut table = ConnTable::new(MAX);
        let mut prev_tracked: BTreeSet<(u16, u64)> = BTreeSet::new();
        let mut closed: BTreeSet<u16> = BTreeSet::new();
        let mut late = 0;
        for cycle in 0..10u32 {
            for p in &mut pairs {
                exchange(p, PER_CYCLE);
            }
            source.collect(&procs, &mut table, f64::from(cycle) * 30.0);
            assert_eq!(source.stats.namespaces, 1);
            assert!(table.conns.len() <= MAX && table.over_limit > 0, "cycle {cycle}: {}", table.conns.len());
            let tracked: BTreeSet<(u16, u64)> = table.conns.iter().map(|c| (eph(c), c.cookie)).collect();
            for c in &table.conns {
                if let Some(d) = c.deltas {
                    assert!(
                        d.bytes_sent <= 10 * PER_CYCLE as u64 && d.bytes_received <= 10 * PER_CYCLE as u64,
                        "cycle {cycle}: a lifetime counter reported as a delta: {c:?}"
                    );
                }
                if cycle > 0 && c.bytes_sent >= 1 << 20 && !prev_tracked.contains(&(eph(c), c.cookie)) {
                    late += 1;
                }
            }
            for &(port, cookie) in &prev_tracked {
                if !closed.contains(&port) {
                    assert!(
                        tracked.contains(&(port, cookie)),
                        "cycle {cycle}: port {port} was tracked, is alive, and was dropped"
                    );
                }
            }
            // Churn: two tracked connections close (so sockets left out so far get their places),
            // and every other cycle two new ones open.
            let victims: Vec<u16> = tracked.iter().map(|t| t.0).filter(|p| !closed.contains(p)).take(2).collect();
            pairs.retain(|p| !victims.contains(&p.0.local_addr().unwrap().port()));
            closed.extend(victims);
            if cycle % 2 == 0 {
                pairs.extend((0..2).map(|_| loopback_pair(&listener)));
            }
            prev_tracked = tracked;
        }
        assert!(late > 0, "no socket left out earlier was let in later: the case went untested");
    });
}

/// A namespace whose diag socket could not be opened is tried again, with backoff. The failure
/// is real: the process the agent goes through to enter the namespace (its lowest pid there)
/// exits between the process check and the connections check, so its `ns/net` is gone, while
/// another process lives on in the namespace.
#[test]
fn a_namespace_whose_socket_could_not_be_opened_is_retried() {
    use sts_agent::app::{zstd_context, ConnectionsCheck, ProcessCheck};
    use sts_agent::sources::connections::NS_RETRY_FIRST_SECS;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = report_everything();
    let mut procs = ProcessCheck::new(&cfg, false).unwrap();
    let mut conns = ConnectionsCheck::new(10_000, 0, 30).unwrap();
    let meta = sts_agent::sources::docker::Metadata::default();
    let run_procs = |procs: &mut ProcessCheck, t: f64| {
        procs.run(
            t,
            1_700_000_000_000 + (t * 1000.0) as i64,
            "h",
            false,
            &meta,
            &mut Vec::new(),
            &mut zstd_context().unwrap(),
            &mut |_| {},
        );
    };
    let run_conns = |conns: &mut ConnectionsCheck, procs: &ProcessCheck, t: f64| {
        conns.run(
            t,
            1_700_000_000_000 + (t * 1000.0) as i64,
            "h",
            false,
            procs,
            &mut Vec::new(),
            &mut zstd_context().unwrap(),
            &mut |_| {},
        );
    };
    run_procs(&mut procs, 1.0);
    run_conns(&mut conns, &procs, 1.0);

    let ns = Netns::new("sts-test", "sts", 200);
    let inode = ns.inode();
    // In a `Kids` too, so a failing assertion before it is killed leaves no `sleep 600` behind.
    let mut first = Kids(vec![Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()]);
    let port = free_port().to_string();
    let kids = Kids(vec![stream(Some(&ns.name), &["pair", "127.0.0.1", &port, "20000", "20000"], true)]);
    assert!(first.0[0].id() < kids.0[0].id(), "pids wrapped around between two spawns; run again");
    run_procs(&mut procs, 2.0);
    let seen = procs.table.procs.iter().filter(|p| p.net_ns == inode).count();
    assert!(seen >= 2, "both processes of the namespace are in the table ({seen})");
    first.0[0].kill().unwrap();
    first.0[0].wait().unwrap();
    run_conns(&mut conns, &procs, 2.0);
    let in_ns = |conns: &ConnectionsCheck| conns.table.conns.iter().filter(|c| c.ns == inode).count();
    assert_eq!(in_ns(&conns), 0, "the first attempt went through the exited process and failed");
    assert!(conns.source_stats().unreachable >= 1);
    assert!(conns.source_stats().open_failures >= 1, "the failure is counted");

    // Within the backoff: not tried again.
    run_procs(&mut procs, 3.0);
    run_conns(&mut conns, &procs, 3.0);
    assert_eq!(in_ns(&conns), 0, "no retry before the backoff has passed");
    assert_eq!(conns.source_stats().open_failures, 0, "no attempt within the backoff");

    // After it: opened through the process that is still there, dumped, and reported a cycle later.
    let t = 3.0 + NS_RETRY_FIRST_SECS;
    run_procs(&mut procs, t);
    run_conns(&mut conns, &procs, t);
    assert_eq!(in_ns(&conns), 2, "both ends of the pair in the namespace, after the retry");
    std::thread::sleep(Duration::from_millis(200));
    run_procs(&mut procs, t + 1.0);
    run_conns(&mut conns, &procs, t + 1.0);
    let pid = kids.0[0].id();
    assert_eq!(conns.selection.reported.iter().filter(|r| r.pid == pid).count(), 2, "and reported");
}
