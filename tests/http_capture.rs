//! The HTTP capture against the real kernel: a packet ring with the agent's BPF filter, in this
//! namespace, while a loopback client and server exchange HTTP heads and a bulk stream. Only the
//! heads reach the ring, each once (loopback shows every packet leaving and arriving: the ring
//! takes the arriving copy, and the kernel does not even clone the leaving one), cut to the snap
//! length, timestamped in order; the bulk bytes never leave the kernel.
//!
//! Needs CAP_NET_RAW (root): without it the test fails, saying so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use sts_agent::sys::http_filter::{program, Direction, SNAP};
use sts_agent::sys::packet_ring::{Interfaces, PacketRing, BLOCKS_FIRST};

/// A capture ring on every interface of this namespace, with the agent's filter.
fn open_ring() -> PacketRing {
    PacketRing::open(&program(Direction::Arriving), Interfaces::AllArriving, BLOCKS_FIRST)
        .unwrap_or_else(|e| panic!("cannot open a packet socket ({e}): this test needs CAP_NET_RAW (run as root)"))
}

/// A loopback connection with Nagle off on the client: `(port, client, server)`.
fn loopback_pair() -> (u16, TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_nodelay(true).unwrap();
    let (server, _) = listener.accept().unwrap();
    (port, client, server)
}

/// Both tests capture everything of this namespace: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `(source port, destination port, first payload bytes, captured length, timestamp)` of IPv4
/// TCP frames, read independently of the agent's own parser.
fn tcp4(data: &[u8]) -> Option<(u16, u16, Vec<u8>)> {
    let ihl = usize::from(data.first()? & 0x0f) * 4;
    let tcp = data.get(ihl..)?;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    Some((sport, dport, tcp.get(doff..)?.to_vec()))
}

#[test]
fn only_heads_reach_the_ring_once_each_and_bulk_never_does() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ring = open_ring();
    let (port, mut client, mut server) = loopback_pair();
    server.set_nodelay(true).unwrap();
    let _ = ring.take_stats();
    let mut buf = vec![0u8; 1 << 20];

    // Three keep-alive exchanges, then 20 MB of bulk data each way.
    for path in ["/a", "/b", "/c"] {
        client.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let n = server.read(&mut buf).unwrap();
        assert!(n > 0);
        server.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
    }
    let bulk = vec![b'Z'; 1 << 20];
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        let mut b = vec![0u8; 1 << 20];
        while got < 20 << 20 {
            got += server.read(&mut b).unwrap();
        }
        server
    });
    for _ in 0..20 {
        client.write_all(&bulk).unwrap();
    }
    let _server = reader.join().unwrap();

    // The kernel hands partly filled blocks over within the retire timeout.
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while frames.len() < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        ring.drain(|f| {
            if let Some((sport, dport, payload)) = tcp4(f.data) {
                if sport == port || dport == port {
                    frames.push((sport == port, payload, f.data.len(), f.ts_ns, f.pkttype));
                }
            }
        });
    }
    let (packets, drops, _) = ring.take_stats();
    eprintln!("{packets} packets accepted and {drops} dropped in this namespace meanwhile");
    let heads: Vec<String> =
        frames.iter().map(|f| String::from_utf8_lossy(&f.1[..f.1.len().min(12)]).into_owned()).collect();
    assert_eq!(
        heads,
        ["GET /a HTTP/", "HTTP/1.1 200", "GET /b HTTP/", "HTTP/1.1 200", "GET /c HTTP/", "HTTP/1.1 200"],
        "each head once, in order, and nothing else of this connection"
    );
    assert!(frames.iter().all(|f| f.0 == f.1.starts_with(b"HTTP")), "responses come from the server port");
    assert!(frames.iter().all(|f| f.2 <= SNAP as usize), "cut to the snap length");
    assert!(ring.ignores_outgoing(), "Linux 4.20 and later keep outgoing packets from the socket");
    assert!(frames.iter().all(|f| f.4 == 0), "loopback: the arriving copy (PACKET_HOST)");
    assert!(frames.windows(2).all(|w| w[0].3 <= w[1].3), "kernel timestamps in order");
    // The 20 MB of bulk on this connection would have shown above as frames of its port. (The
    // ring's own counters cover the whole namespace, other programs' traffic included.)
}

#[test]
fn a_ring_that_overflowed_grows_and_keeps_capturing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use sts_agent::sys::packet_ring::BLOCK_SIZE;
    let mut ring = open_ring();
    assert_eq!(ring.bytes(), (BLOCK_SIZE * BLOCKS_FIRST) as usize);
    let (port, mut client, mut server) = loopback_pair();
    let head = b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; head.len()];
    // A burst of 2,000 heads, one segment each, and nobody reading the ring: more than it holds.
    let burst = |client: &mut TcpStream, server: &mut TcpStream, buf: &mut [u8], n: usize| {
        for _ in 0..n {
            client.write_all(head).unwrap();
            server.read_exact(buf).unwrap();
        }
    };
    burst(&mut client, &mut server, &mut buf, 2000);
    std::thread::sleep(Duration::from_millis(150));
    let (_, drops, _) = ring.take_stats();
    assert!(drops > 0, "2,000 heads fit a {} KiB ring?", ring.bytes() / 1024);
    assert!(ring.grow().unwrap());
    assert_eq!(ring.bytes(), (BLOCK_SIZE * BLOCKS_FIRST * 2) as usize);
    // The full ring's unread heads (about 340 in 64 KiB) went with it: counted as lost.
    let (_, dropped, lost) = ring.take_stats();
    assert!(lost >= 200, "{lost} heads lost with the old ring");
    assert_eq!(dropped, 0, "what the swap discarded is not the kernel's drops (it would grow the ring again)");
    // The larger ring captures: a burst it can hold arrives whole.
    burst(&mut client, &mut server, &mut buf, 300);
    std::thread::sleep(Duration::from_millis(150));
    let mut mine = 0;
    ring.drain(|f| {
        if tcp4(f.data).is_some_and(|(_, dport, p)| dport == port && p.starts_with(b"GET /burst")) {
            mine += 1;
        }
    });
    assert_eq!(mine, 300);
}

#[test]
fn an_emptied_ring_grows_once_and_loses_nothing_it_handed_over() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ring = open_ring();
    let (port, mut client, mut server) = loopback_pair();
    let head = b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; head.len()];
    let mut send = |n: usize| {
        for _ in 0..n {
            client.write_all(head).unwrap();
            server.read_exact(&mut buf).unwrap();
        }
        std::thread::sleep(Duration::from_millis(150));
    };
    // The agent's order: an overflow, the ring read (every block handed back), then the grow.
    send(2000);
    let read = ring.drain(|_| {});
    let (_, dropped, _) = ring.take_stats();
    assert!(read > 0 && dropped > 0, "read {read}, dropped {dropped}");
    assert!(ring.grow().unwrap());
    let (_, dropped, discarded) = ring.take_stats();
    assert_eq!((dropped, discarded), (0, 0), "the blocks handed over are not counted as lost");
    // A trickle afterwards: nothing dropped, so nothing would make the agent grow it again.
    send(20);
    let mut mine = 0;
    ring.drain(|f| mine += usize::from(tcp4(f.data).is_some_and(|(_, d, p)| d == port && p.starts_with(b"GET /once"))));
    assert_eq!(mine, 20);
    assert_eq!(ring.take_stats().1, 0);
}

/// A ring whose blocks fill fast is given larger ones (the kernel wakes the loop once per
/// block): the bytes it handed over say how fast, the new blocks hold 25 a second of that, and
/// the ring still captures every head, now in fewer, fuller blocks.
#[test]
fn a_busy_ring_gets_larger_blocks_and_keeps_capturing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use sts_agent::sys::packet_ring::{BLOCK_SIZE, BLOCK_SIZE_MAX, BUSY_BLOCKS_PER_S};
    let mut ring = open_ring();
    let (port, mut client, mut server) = loopback_pair();
    let head = b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; head.len()];
    let mut send = |n: usize| {
        for _ in 0..n {
            client.write_all(head).unwrap();
            server.read_exact(&mut buf).unwrap();
        }
        std::thread::sleep(Duration::from_millis(150));
    };
    let _ = ring.take_handed_bytes();
    send(200);
    let mut mine = 0;
    let read = ring
        .drain(|f| mine += usize::from(tcp4(f.data).is_some_and(|(_, d, p)| d == port && p.starts_with(b"GET /busy"))));
    assert_eq!(mine, 200, "{read} frames read");
    let handed = ring.take_handed_bytes();
    // Each frame is its tpacket3 header, link address and the head's IP packet, in a block
    // that starts with its own header: more than the heads' bytes, less than a block per frame.
    assert!(handed > 200 * (40 + head.len() as u64) && handed < 200 * 1024, "{handed} bytes handed over");
    assert!(ring.take_handed_bytes() == 0, "taken once");
    assert!(
        !ring.enlarge_blocks(f64::from(BLOCK_SIZE * BUSY_BLOCKS_PER_S)).unwrap(),
        "not busier than 25 blocks a second"
    );
    let bytes = ring.bytes();
    assert!(ring.enlarge_blocks(f64::from(BLOCK_SIZE * BUSY_BLOCKS_PER_S * 3)).unwrap());
    assert_eq!(ring.block_size(), 4 * BLOCK_SIZE, "the power of two that holds 25 a second");
    assert!(ring.bytes() >= bytes, "{} < {bytes}: no smaller than it was", ring.bytes());
    assert!(ring.enlarge_blocks(1e12).unwrap());
    assert_eq!(ring.block_size(), BLOCK_SIZE_MAX);
    assert!(!ring.enlarge_blocks(1e12).unwrap(), "at its largest");
    let (_, dropped, _) = ring.take_stats();
    assert_eq!(dropped, 0, "a swap is not the kernel's drop");
    send(1000);
    let mut mine = 0;
    ring.drain(|f| mine += usize::from(tcp4(f.data).is_some_and(|(_, d, p)| d == port && p.starts_with(b"GET /busy"))));
    assert_eq!(mine, 1000, "every head of the burst, in the larger blocks");
    assert!(ring.take_handed_bytes() > 1000 * (40 + head.len() as u64));
}

/// A ring bound to one interface with the leaving filter (what the agent opens on each
/// interface that leaves the host): bound to loopback, it gets each head once, as it leaves
/// (`PACKET_OUTGOING`), and nothing that only arrives, nor the bulk.
#[test]
fn a_ring_on_one_interface_keeps_what_leaves_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ring = PacketRing::open(&program(Direction::Leaving), Interfaces::One(1), BLOCKS_FIRST)
        .unwrap_or_else(|e| panic!("cannot open a packet socket ({e}): this test needs CAP_NET_RAW (run as root)"));
    assert!(!ring.ignores_outgoing());
    let (port, mut client, mut server) = loopback_pair();
    server.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    for path in ["/x", "/y"] {
        client.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        assert!(server.read(&mut buf).unwrap() > 0);
        server.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert!(client.read(&mut buf).unwrap() > 0);
    }
    client.write_all(&vec![b'Z'; 1 << 20]).unwrap();
    let mut got = 0;
    while got < 1 << 20 {
        got += server.read(&mut buf).unwrap();
    }
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while frames.len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        ring.drain(|f| {
            if let Some((sport, dport, payload)) = tcp4(f.data) {
                if sport == port || dport == port {
                    frames.push((String::from_utf8_lossy(&payload[..payload.len().min(10)]).into_owned(), f.pkttype));
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    ring.drain(|f| {
        if tcp4(f.data).is_some_and(|(s, d, _)| s == port || d == port) {
            frames.push(("(late)".into(), f.pkttype));
        }
    });
    let want: Vec<(String, u8)> =
        ["GET /x HTT", "HTTP/1.1 2", "GET /y HTT", "HTTP/1.1 2"].iter().map(|h| (h.to_string(), 4)).collect();
    assert_eq!(frames, want, "each head once, leaving (pkt_type 4), and nothing else of this connection");
}
