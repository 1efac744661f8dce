//! The client's TLS stream (rustls's handshake, then our record layer, `transport/records.rs`)
//! against real TLS servers: rustls's own server in memory, for every cipher suite rustls offers
//! (TLS 1.3 and 1.2), with key updates, session tickets and resumption, tampering, close_notify,
//! and the allocations of each request and response counted; and OpenSSL's server (Python's
//! `ssl`) over loopback TCP, a second implementation of the same records.

mod common;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{thread_allocations as allocations, Counting};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite};
use std::io::{self, Read, Write};
use std::sync::Arc;
use sts_agent::transport::tls_stream::{TlsError, TlsStream};

#[global_allocator]
static A: Counting = Counting;

struct Pki {
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    leaf_pem: String,
    key_der: PrivatePkcs8KeyDer<'static>,
    key_pem: String,
}

/// An ECDSA P-256 CA and a leaf for "localhost" (the TLS 1.2 suites rustls has are ECDHE_ECDSA
/// and ECDHE_RSA; with this key the ECDSA ones).
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_der: ca.der().clone(),
        leaf_der: leaf.der().clone(),
        leaf_pem: leaf.pem(),
        key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        key_pem: key.serialize_pem(),
    }
}

const SUITES: [(&str, SupportedCipherSuite); 6] = [
    ("TLS13_AES_128_GCM_SHA256", cipher_suite::TLS13_AES_128_GCM_SHA256),
    ("TLS13_AES_256_GCM_SHA384", cipher_suite::TLS13_AES_256_GCM_SHA384),
    ("TLS13_CHACHA20_POLY1305_SHA256", cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
    ("ECDHE_ECDSA_AES_128_GCM", cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE_ECDSA_AES_256_GCM", cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE_ECDSA_CHACHA20_POLY1305", cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// The agent's client configuration (`transport::tls::client_config`: secret extraction on),
/// offering one suite, trusting the test CA.
fn client_config(pki: &Pki, suite: SupportedCipherSuite) -> Arc<ClientConfig> {
    let mut provider = default_provider();
    provider.cipher_suites = vec![suite];
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[suite.version()])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.enable_secret_extraction = true;
    Arc::new(cfg)
}

fn server_config(pki: &Pki) -> Arc<ServerConfig> {
    let cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf_der.clone()], pki.key_der.clone_key().into())
        .unwrap();
    Arc::new(cfg)
}

/// The wire between the client and an in-memory server. Reads with nothing there would block
/// (as a non-blocking socket's), or end the stream once `eof` is set.
struct Wire {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    eof: bool,
}

impl Wire {
    fn new() -> Wire {
        // Reserved so that the wire itself never allocates while allocations are counted.
        Wire { to_server: Vec::with_capacity(1 << 20), to_client: Vec::with_capacity(1 << 20), eof: false }
    }
}

impl Read for Wire {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        if self.to_client.is_empty() {
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = b.len().min(self.to_client.len());
        b[..n].copy_from_slice(&self.to_client[..n]);
        self.to_client.drain(..n);
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.to_server.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One side of a test connection: our client stream, rustls's server, the wire between.
struct Pair {
    client: TlsStream,
    server: ServerConnection,
    wire: Wire,
    rx: Vec<u8>,
    /// What the server has read so far.
    server_got: Vec<u8>,
    /// Allocations made inside the client's calls (on this thread).
    client_allocations: u64,
}

impl Pair {
    fn new(client: Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Pair {
        let name = ServerName::try_from("localhost").unwrap();
        let mut p = Pair {
            client: TlsStream::new(client, name).unwrap(),
            server: ServerConnection::new(server.clone()).unwrap(),
            wire: Wire::new(),
            rx: Vec::with_capacity(256 * 1024),
            server_got: Vec::new(),
            client_allocations: 0,
        };
        for _ in 0..10 {
            p.client_flush(&[]).unwrap();
            p.serve();
            p.client_fill().unwrap();
            if !p.client.is_handshaking() && !p.server.is_handshaking() {
                p.client_flush(&[]).unwrap();
                p.serve();
                return p;
            }
        }
        panic!("the handshake did not finish");
    }

    fn client_flush(&mut self, tx: &[u8]) -> Result<(), TlsError> {
        let before = allocations();
        let mut off = 0;
        let r = self.client.flush(&mut self.wire, tx, &mut off);
        self.client_allocations += allocations() - before;
        if r.is_ok() {
            assert_eq!(off, tx.len(), "a wire that never blocks takes the whole request");
        }
        r
    }

    fn client_fill(&mut self) -> Result<bool, TlsError> {
        let before = allocations();
        let r = self.client.fill(&mut self.wire, &mut self.rx);
        self.client_allocations += allocations() - before;
        r
    }

    /// The server reads what the client sent and writes what it has queued.
    fn serve(&mut self) {
        while !self.wire.to_server.is_empty() {
            let n = self.server.read_tls(&mut &self.wire.to_server[..]).unwrap();
            self.wire.to_server.drain(..n);
            self.server.process_new_packets().expect("the server accepts the client's records");
            // Its plaintext buffer holds 64 KiB: read as it goes.
            let _ = self.server.reader().read_to_end(&mut self.server_got);
        }
        while self.server.wants_write() {
            self.server.write_tls(&mut self.wire.to_client).unwrap();
        }
    }

    fn server_read(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.server_got)
    }

    /// A request of `req` bytes, a response of `resp`: both arrive intact.
    fn exchange(&mut self, k: usize, req: usize, resp: usize) {
        let request = pattern(k, req);
        self.client_flush(&request).unwrap();
        self.serve();
        assert!(self.server_read() == request, "request {k} ({req} bytes) at the server");
        let response = pattern(k + 1_000_000, resp);
        self.server.writer().write_all(&response).unwrap();
        self.serve();
        self.rx.clear();
        let closed = self.client_fill().unwrap();
        assert!(!closed);
        assert_eq!(self.rx.len(), resp, "response {k} length");
        assert!(self.rx == response, "response {k} ({resp} bytes) at the client");
    }
}

/// Byte i of message `seed`: (31 i + 7 seed) mod 251 (the Python server's too).
fn pattern(seed: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
}

/// Every suite: requests and responses of every size class around the record boundary, and
/// after the first exchanges (the server's session tickets arrive with the first response)
/// no allocation in the client's calls at all.
#[test]
fn every_suite_carries_requests_and_responses_and_allocates_nothing_once_up() {
    let pki = pki();
    let server = server_config(&pki);
    for (name, suite) in SUITES {
        let mut p = Pair::new(client_config(&pki, suite), &server);
        assert_eq!(p.server.negotiated_cipher_suite().map(|s| s.suite()), Some(suite.suite()), "{name}");
        for k in 0..3 {
            p.exchange(k, 300, 40);
        }
        p.client_allocations = 0;
        let sizes = [0, 1, 100, 16_383, 16_384, 16_385, 65_536, 70_001, 200_000];
        for (k, &req) in sizes.iter().enumerate() {
            for &resp in &[0, 1, 202, 16_384, 16_385, 50_000] {
                p.exchange(10 + k, req, resp);
            }
        }
        assert_eq!(p.client_allocations, 0, "{name}: allocations in the client's calls once the connection is up");
    }
}

/// TLS 1.3 key updates: the server updates its keys and asks for ours (rustls's
/// refresh_traffic_keys sends update_requested); every later request still reaches it, and the
/// client did update its keys: the server's receiving sequence number restarted at our last key
/// update (rustls's server would go on reading under the old key, so without this the test
/// could not tell).
#[test]
#[allow(deprecated)] // ServerConnection::dangerous_extract_secrets: the test only reads a counter.
fn key_updates_both_ways_keep_the_connection_working() {
    let pki = pki();
    let mut cfg = (*server_config(&pki)).clone();
    cfg.enable_secret_extraction = true;
    let server = Arc::new(cfg);
    for (name, suite) in &SUITES[..3] {
        let mut p = Pair::new(client_config(&pki, *suite), &server);
        for k in 0..6 {
            p.exchange(k, 1_000, 20_000);
            p.server.refresh_traffic_keys().unwrap();
            p.serve();
        }
        // The client read the fifth update with the last response and answers it first here;
        // the sixth arrives with this response.
        p.exchange(99, 5, 5);
        assert!(p.server.process_new_packets().is_ok(), "{name}");
        let (rx_seq, _) = p.server.dangerous_extract_secrets().unwrap().rx;
        assert_eq!(rx_seq, 1, "{name}: records the server read since our last key update");
    }
}

/// A server that sends only key updates (or other records without data) is cut off after 32
/// in a row, as rustls limits them, with an alert that says why.
#[test]
fn records_without_data_are_limited() {
    let pki = pki();
    let server = server_config(&pki);
    let mut p = Pair::new(client_config(&pki, SUITES[0].1), &server);
    p.exchange(0, 10, 10);
    for _ in 0..40 {
        p.server.refresh_traffic_keys().unwrap();
        p.serve();
    }
    match p.client_fill() {
        Err(TlsError::Tls(e)) => assert!(e.contains("32 records in a row without data"), "{e}"),
        other => panic!("{other:?}"),
    }
    p.client.close(&mut p.wire);
    let n = p.server.read_tls(&mut &p.wire.to_server[..]).unwrap();
    p.wire.to_server.drain(..n);
    let e = p.server.process_new_packets().unwrap_err();
    assert!(e.to_string().contains("UnexpectedMessage"), "{e}");
}

/// Session tickets received after the handshake (TLS 1.3) are handed to rustls: the next
/// connection with the same configuration resumes; in TLS 1.2 the handshake's own ticket does.
#[test]
fn the_next_connection_resumes() {
    let pki = pki();
    let server = server_config(&pki);
    for (name, suite) in [&SUITES[0], &SUITES[3]] {
        let client = client_config(&pki, *suite);
        let mut first = Pair::new(client.clone(), &server);
        first.exchange(0, 10, 10);
        assert_eq!(first.server.handshake_kind(), Some(HandshakeKind::Full), "{name}");
        let mut second = Pair::new(client, &server);
        second.exchange(1, 10, 10);
        assert_eq!(second.server.handshake_kind(), Some(HandshakeKind::Resumed), "{name}");
    }
}

/// The keys are handed over only when the input holds nothing more: here the server's flight
/// comes with the first 3 bytes of the record after it. The client sends its Finished, waits for
/// the rest of that record, and only then leaves the handshake; the ticket and what follows are
/// read. (The case this guards against, a session ticket sent in the same flight as the
/// server's Finished, as Go's server does, and split over records, rustls's server cannot make:
/// it sends tickets after the client's Finished. This checks the waiting itself.)
#[test]
fn the_handshake_waits_for_a_record_it_has_begun() {
    let pki = pki();
    let server = server_config(&pki);
    let mut client =
        TlsStream::new(client_config(&pki, SUITES[0].1), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut srv = ServerConnection::new(server).unwrap();
    let mut wire = Wire::new();
    let mut rx = Vec::new();
    let pump = |srv: &mut ServerConnection, wire: &mut Wire| {
        let n = srv.read_tls(&mut &wire.to_server[..]).unwrap();
        wire.to_server.drain(..n);
        srv.process_new_packets().unwrap();
        let mut out = Vec::new();
        while srv.wants_write() {
            srv.write_tls(&mut out).unwrap();
        }
        out
    };
    client.flush(&mut wire, &[], &mut 0).unwrap();
    let flight = pump(&mut srv, &mut wire);
    assert!(!flight.is_empty() && srv.is_handshaking());
    // The server's flight, and the start of a record (every TLS 1.3 record begins 17 03 03).
    wire.to_client.extend_from_slice(&flight);
    wire.to_client.extend_from_slice(&[0x17, 0x03, 0x03]);
    assert!(!client.fill(&mut wire, &mut rx).unwrap());
    client.flush(&mut wire, &[], &mut 0).unwrap();
    assert!(client.is_handshaking(), "the keys wait for the rest of the record");
    assert!(!wire.to_server.is_empty(), "the client's Finished went out all the same");
    // The server takes the Finished and sends its tickets; their first record's first 3 bytes
    // are the ones delivered already.
    let tickets = pump(&mut srv, &mut wire);
    assert!(!srv.is_handshaking());
    assert_eq!(&tickets[..3], &[0x17, 0x03, 0x03]);
    wire.to_client.extend_from_slice(&tickets[3..]);
    assert!(!client.fill(&mut wire, &mut rx).unwrap());
    assert!(!client.is_handshaking(), "established once the record is whole");
    // A request and a response on the established connection.
    let mut off = 0;
    client.flush(&mut wire, b"ping", &mut off).unwrap();
    assert_eq!(off, 4);
    let _ = pump(&mut srv, &mut wire);
    let mut got = Vec::new();
    let _ = srv.reader().read_to_end(&mut got);
    assert_eq!(got, b"ping");
    srv.writer().write_all(b"pong").unwrap();
    let out = pump(&mut srv, &mut wire);
    wire.to_client.extend_from_slice(&out);
    assert!(!client.fill(&mut wire, &mut rx).unwrap());
    assert_eq!(rx, b"pong");
}

/// A flipped bit in a record from the server fails the connection with the reason.
#[test]
fn a_tampered_record_fails_the_connection() {
    let pki = pki();
    let server = server_config(&pki);
    for (name, suite) in SUITES {
        let mut p = Pair::new(client_config(&pki, suite), &server);
        p.exchange(0, 10, 10);
        p.server.writer().write_all(b"HTTP/1.1 202 Accepted\r\n\r\n").unwrap();
        p.serve();
        let last = p.wire.to_client.len() - 1;
        p.wire.to_client[last - 20] ^= 0x40;
        match p.client_fill() {
            Err(TlsError::Tls(e)) => assert!(e.contains("bad_record_mac"), "{name}: {e}"),
            other => panic!("{name}: {other:?}"),
        }
        // The client closes on the failure, and the server hears why.
        p.client.close(&mut p.wire);
        let n = p.server.read_tls(&mut &p.wire.to_server[..]).unwrap();
        p.wire.to_server.drain(..n);
        let e = p.server.process_new_packets().unwrap_err();
        assert!(e.to_string().contains("BadRecordMac"), "{name}: {e}");
    }
}

/// close_notify from the server ends the stream cleanly, after the data before it; a stream
/// that ends without one ends too; ours is sent on close and the server sees it.
#[test]
fn close_notify_both_ways() {
    let pki = pki();
    let server = server_config(&pki);
    for (name, suite) in SUITES {
        let mut p = Pair::new(client_config(&pki, suite), &server);
        p.server.writer().write_all(b"last words").unwrap();
        p.server.send_close_notify();
        p.serve();
        p.rx.clear();
        assert!(p.client_fill().unwrap(), "{name}: the peer closed");
        assert_eq!(p.rx, b"last words", "{name}");

        let mut p = Pair::new(client_config(&pki, suite), &server);
        p.wire.eof = true;
        assert!(p.client_fill().unwrap(), "{name}: end of stream");
        p.client.close(&mut p.wire);
        p.serve();
        let state = p.server.process_new_packets().unwrap();
        assert!(state.peer_has_closed(), "{name}: the server saw our close_notify");
    }
}

/// A handshake with a server whose certificate the client does not trust fails with the
/// reason, and the server hears an alert.
#[test]
fn an_untrusted_server_fails_the_handshake() {
    let pki = pki();
    let other = self::pki();
    let server = server_config(&other);
    let mut client =
        TlsStream::new(client_config(&pki, SUITES[0].1), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut srv = ServerConnection::new(server).unwrap();
    let mut wire = Wire::new();
    let mut rx = Vec::new();
    let mut failure = None;
    for _ in 0..10 {
        if let Err(e) = client.flush(&mut wire, &[], &mut 0) {
            failure = Some(e);
            break;
        }
        let n = srv.read_tls(&mut &wire.to_server[..]).unwrap();
        wire.to_server.drain(..n);
        let _ = srv.process_new_packets();
        while srv.wants_write() {
            srv.write_tls(&mut wire.to_client).unwrap();
        }
        if let Err(e) = client.fill(&mut wire, &mut rx) {
            failure = Some(e);
            break;
        }
    }
    match failure {
        Some(TlsError::Tls(e)) => assert!(e.contains("UnknownIssuer") || e.contains("certificate"), "{e}"),
        other => panic!("{other:?}"),
    }
    // As the HTTP client does on any failure.
    client.close(&mut wire);
    let n = srv.read_tls(&mut &wire.to_server[..]).unwrap();
    assert!(n > 0, "the client's alert reached the server");
    let e = srv.process_new_packets().unwrap_err();
    assert!(e.to_string().contains("alert"), "{e}");
}

/// OpenSSL's server (Python's `ssl`), over loopback TCP: TLS 1.3 with each suite (the client
/// offers one) and TLS 1.2 with each ECDSA suite (the server allows one). Each request is 8 bytes
/// (the response size, the size of a body that follows) and a body of the pattern, which the
/// server checks (so our full-size and multi-record writes are read by OpenSSL); it answers with
/// that many bytes of the pattern. A second connection with the same configuration resumes the
/// session: in TLS 1.3 through the tickets OpenSSL sent after the handshake, which our record
/// layer handed to rustls.
#[test]
fn openssl_server_every_suite() {
    let pki = pki();
    let tmp = common::TempDir::new("tls-records");
    let dir = &tmp.0;
    std::fs::write(dir.join("cert.pem"), &pki.leaf_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &pki.key_pem).unwrap();
    let script = r#"
import socket, ssl, sys
cert, key, maxv, cipher = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if maxv == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(2)
print(l.getsockname()[1], flush=True)
def pattern(seed, n):
    return bytes((i * 31 + seed * 7) % 251 for i in range(n))
def exactly(s, n):
    got = b""
    while len(got) < n:
        more = s.recv(min(n - len(got), 65536))
        if not more:
            return None
        got += more
    return got
for _ in range(2):
    c, _ = l.accept()
    s = ctx.wrap_socket(c, server_side=True)
    print(s.version(), s.cipher()[0], "reused" if s.session_reused else "full", flush=True)
    k = 0
    while True:
        head = exactly(s, 8)
        if head is None:
            break
        n, body = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
        if exactly(s, body) != pattern(k + 1000, body):
            print("bad request body", k, flush=True)
            sys.exit(1)
        s.sendall(pattern(k, n))
        k += 1
    s.close()
"#;
    let cases: [(&str, SupportedCipherSuite, &str, &str); 6] = [
        ("TLS 1.3 AES-128-GCM", SUITES[0].1, "1.3", "-"),
        ("TLS 1.3 AES-256-GCM", SUITES[1].1, "1.3", "-"),
        ("TLS 1.3 ChaCha20", SUITES[2].1, "1.3", "-"),
        ("TLS 1.2 AES-128-GCM", SUITES[3].1, "1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("TLS 1.2 AES-256-GCM", SUITES[4].1, "1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("TLS 1.2 ChaCha20", SUITES[5].1, "1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (name, suite, maxv, cipher) in cases {
        /// The server process, killed if the test fails before it ends.
        struct Server(std::process::Child);
        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Server(
            std::process::Command::new("python3")
                .args(["-c", script])
                .arg(dir.join("cert.pem"))
                .arg(dir.join("key.pem"))
                .args([maxv, cipher])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs"),
        );
        let mut out = io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        io::BufRead::read_line(&mut out, &mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("{name}: the server's port, got {line:?}"));
        let config = client_config(&pki, suite);
        let version = if maxv == "1.3" { "TLSv1.3" } else { "TLSv1.2" };
        for (conn, sizes) in [
            (0, &[(0usize, 0usize), (1, 40_000), (202, 16_384), (16_384, 16_385), (100_000, 1), (7, 100_000)][..]),
            (1, &[(300, 5_000)][..]),
        ] {
            let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            sock.set_nonblocking(true).unwrap();
            let mut client = TlsStream::new(config.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
            let mut rx = Vec::new();
            let step =
                |client: &mut TlsStream, sock: &mut std::net::TcpStream, tx: &[u8], want: usize, rx: &mut Vec<u8>| {
                    let mut off = 0;
                    rx.clear();
                    loop {
                        client.flush(sock, tx, &mut off).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                        let closed = client.fill(sock, rx).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                        assert!(!closed, "{name}: OpenSSL closed the connection");
                        if off == tx.len() && !client.is_handshaking() && rx.len() >= want {
                            return;
                        }
                        assert!(std::time::Instant::now() < deadline, "{name}: timed out");
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                };
            step(&mut client, &mut sock, &[], 0, &mut rx);
            for (k, &(n, body)) in sizes.iter().enumerate() {
                let mut request = (n as u32).to_be_bytes().to_vec();
                request.extend_from_slice(&(body as u32).to_be_bytes());
                request.extend_from_slice(&pattern(k + 1000, body));
                step(&mut client, &mut sock, &request, n, &mut rx);
                if k == 0 {
                    line.clear();
                    io::BufRead::read_line(&mut out, &mut line).unwrap();
                }
                assert_eq!(rx.len(), n, "{name}: response {k}");
                assert!(rx == pattern(k, n), "{name}: response {k}: the pattern the server wrote");
            }
            let expected = if conn == 0 { "full" } else { "reused" };
            assert!(line.starts_with(version), "{name}: OpenSSL negotiated {line}");
            assert!(line.trim().ends_with(expected), "{name}: connection {conn}: {line}");
            client.close(&mut sock);
        }
        let status = child.0.wait().unwrap();
        assert!(status.success(), "{name}: the OpenSSL server failed: {status}");
    }
}
