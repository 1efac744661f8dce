#![no_main]
//! Fuzz target: the client's TLS stream (our record layer, after a real handshake with rustls's
//! server in memory) must not panic on any bytes from the network. The first byte picks the
//! suite (its low 6 bits mod 6: the server offers one) and the mode (bit 6: raw; bit 7: a key
//! update), the second how many bytes each socket read returns; the rest (at most 32 KiB) is
//! either raw wire bytes after the handshake (record framing, length limits, authentication
//! failures: random bytes never authenticate, so what follows decryption is reached only by the
//! other mode), or application data the server seals into real records, with a key update in the
//! middle and a close_notify at the end, which must arrive intact.
use libfuzzer_sys::fuzz_target;
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ServerConfig, ServerConnection, SupportedCipherSuite};
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use sts_agent::transport::tls_stream::TlsStream;

/// A self-signed P-256 certificate for "localhost" and its key, made for this target.
static CERT: &[u8] = include_bytes!("../fixtures/tls/cert.der");
static KEY: &[u8] = include_bytes!("../fixtures/tls/key.der");

const SUITES: [SupportedCipherSuite; 6] = [
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

struct Configs {
    client: Arc<rustls::ClientConfig>,
    servers: Vec<Arc<ServerConfig>>,
}

fn configs() -> &'static Configs {
    static C: OnceLock<Configs> = OnceLock::new();
    C.get_or_init(|| Configs {
        // The agent's own configuration, with verification off (the certificate is self-signed).
        client: sts_agent::transport::tls::client_config(true).unwrap(),
        servers: SUITES
            .iter()
            .map(|&suite| {
                let mut provider = default_provider();
                provider.cipher_suites = vec![suite];
                let cfg = ServerConfig::builder_with_provider(Arc::new(provider))
                    .with_protocol_versions(&[suite.version()])
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(
                        vec![CertificateDer::from(CERT.to_vec())],
                        PrivatePkcs8KeyDer::from(KEY.to_vec()).into(),
                    )
                    .unwrap();
                Arc::new(cfg)
            })
            .collect(),
    })
}

/// In-memory wire: reads return at most `read_max` bytes, or would block when empty.
struct Wire {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    read_max: usize,
}

impl Read for Wire {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        if self.to_client.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = b.len().min(self.to_client.len()).min(self.read_max);
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

fn serve(server: &mut ServerConnection, wire: &mut Wire) -> bool {
    while !wire.to_server.is_empty() {
        let Ok(n) = server.read_tls(&mut &wire.to_server[..]) else { return false };
        wire.to_server.drain(..n);
        if server.process_new_packets().is_err() {
            return false;
        }
    }
    while server.wants_write() {
        if server.write_tls(&mut wire.to_client).is_err() {
            return false;
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let [pick, reads, rest @ ..] = data else { return };
    let c = configs();
    let suite = usize::from((pick & 0x3f) % 6);
    // rustls's server buffers 64 KiB of plaintext to send: more would fail the harness, not us.
    let rest = &rest[..rest.len().min(32 * 1024)];
    let raw = pick & 0x40 != 0;
    let mut wire = Wire { to_server: Vec::new(), to_client: Vec::new(), read_max: 1 + usize::from(*reads) * 97 };
    let mut client = TlsStream::new(c.client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut server = ServerConnection::new(c.servers[suite].clone()).unwrap();
    let mut rx = Vec::new();
    for _ in 0..40 {
        client.flush(&mut wire, &[], &mut 0).expect("the handshake with rustls's server");
        assert!(serve(&mut server, &mut wire));
        client.fill(&mut wire, &mut rx).expect("the handshake with rustls's server");
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    assert!(!client.is_handshaking(), "the handshake ends");
    client.flush(&mut wire, &[], &mut 0).unwrap();
    assert!(serve(&mut server, &mut wire));
    if raw {
        wire.to_client.extend_from_slice(rest);
        for _ in 0..rest.len() + 1 {
            match client.fill(&mut wire, &mut rx) {
                Ok(_) if !wire.to_client.is_empty() => {}
                _ => break,
            }
        }
        assert!(rx.len() <= rest.len());
        return;
    }
    let (a, b) = rest.split_at(rest.len() / 2);
    server.writer().write_all(a).unwrap();
    if suite < 3 && pick & 0x80 != 0 {
        server.refresh_traffic_keys().unwrap();
    }
    server.writer().write_all(b).unwrap();
    server.send_close_notify();
    assert!(serve(&mut server, &mut wire));
    let mut closed = false;
    for _ in 0..rest.len() / 8 + 64 {
        closed = client.fill(&mut wire, &mut rx).expect("records from rustls's server open");
        if closed {
            break;
        }
    }
    assert!(closed, "close_notify arrives");
    assert!(rx == rest, "application data intact");
    // The key update the server asked for, then a request it can read.
    client.flush(&mut wire, b"GET / HTTP/1.1\r\n\r\n", &mut 0).unwrap();
    assert!(serve(&mut server, &mut wire));
    let mut got = Vec::new();
    let _ = server.reader().read_to_end(&mut got);
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
});
