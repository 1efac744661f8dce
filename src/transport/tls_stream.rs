//! A TLS client stream over a non-blocking socket: rustls's unbuffered connection for the
//! handshake, in the stream's own buffers, then [`Records`] for the traffic. The buffers are the
//! stream's, sized by the first records and reused, so once the connection is up a request and
//! its response allocate nothing.

use super::records::{Records, MAX_OVERHEAD, MAX_PLAINTEXT, MAX_RECORD};
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::ClientConfig;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Sealed records queued for one write: one full record (a larger batch saves a `write` per
/// 16 KiB of body, and costs its size resident in every TLS client's buffer).
const SEAL_AHEAD: usize = MAX_PLAINTEXT;
/// `output`'s capacity: a full record, an owed key update, an alert, with room to spare (and what
/// a handshake record needs, `encode_into`).
const OUTPUT_CAPACITY: usize = MAX_RECORD + 8 * MAX_OVERHEAD;
/// The handshake's largest message (a certificate chain) must fit in the input buffer whole: it
/// doubles from one record's room (18,437 bytes) up to 16 times that (295 KB), and goes back to
/// one record's room when the handshake is done.
const MAX_HANDSHAKE_INPUT: usize = 16 * MAX_RECORD;

#[derive(Debug)]
pub enum TlsError {
    Io(io::Error),
    Tls(String),
}

enum State {
    Handshaking(Box<UnbufferedClientConnection>),
    Established(Box<Records>),
    /// After an error: nothing more is read or written.
    Failed,
}

pub struct TlsStream {
    state: State,
    /// Received bytes not yet processed: `input[..input_len]`.
    input: Vec<u8>,
    input_len: usize,
    /// TLS bytes to write: `output[output_off..]`.
    output: Vec<u8>,
    output_off: usize,
    peer_closed: bool,
}

impl TlsStream {
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<TlsStream, rustls::Error> {
        Ok(TlsStream {
            state: State::Handshaking(Box::new(UnbufferedClientConnection::new(config, name)?)),
            input: vec![0; MAX_RECORD],
            input_len: 0,
            output: Vec::with_capacity(OUTPUT_CAPACITY),
            output_off: 0,
            peer_closed: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking(_))
    }

    /// The keys have carried enough records: replace the connection after this response.
    pub fn worn(&self) -> bool {
        matches!(&self.state, State::Established(r) if r.worn())
    }

    /// Drives the handshake, seals what it can of `tx[*off..]` once established, and writes to
    /// `sock` until it would block or nothing is left.
    pub fn flush(&mut self, sock: &mut impl Write, tx: &[u8], off: &mut usize) -> Result<(), TlsError> {
        loop {
            self.handshake()?;
            if let State::Established(records) = &mut self.state {
                if self.output_off == self.output.len() {
                    self.output.clear();
                    self.output_off = 0;
                    while self.output.len() < SEAL_AHEAD {
                        let Some(rest) = tx.get(*off..).filter(|r| !r.is_empty()) else { break };
                        let n = rest.len().min(MAX_PLAINTEXT);
                        records.seal(&rest[..n], &mut self.output).map_err(TlsError::Tls)?;
                        *off += n;
                    }
                }
            }
            if self.output_off == self.output.len() {
                return Ok(());
            }
            match sock.write(&self.output[self.output_off..]) {
                Ok(0) => {
                    return Err(TlsError::Io(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes")))
                }
                Ok(n) => self.output_off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TlsError::Io(e)),
            }
        }
    }

    /// Reads what `sock` has, appending application data to `rx`; returns whether the peer has
    /// closed (close_notify or end of stream).
    pub fn fill(&mut self, sock: &mut impl Read, rx: &mut Vec<u8>) -> Result<bool, TlsError> {
        loop {
            if self.input_len == self.input.len() {
                if !self.is_handshaking() || self.input.len() >= MAX_HANDSHAKE_INPUT {
                    return Err(TlsError::Tls("a TLS record or handshake message larger than the input buffer".into()));
                }
                // A handshake message (the server's certificates) spans more records than fit.
                self.input.resize(self.input.len() * 2, 0);
            }
            let eof = match sock.read(&mut self.input[self.input_len..]) {
                Ok(0) => true,
                Ok(n) => {
                    self.input_len += n;
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(self.peer_closed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TlsError::Io(e)),
            };
            self.handshake()?;
            if let State::Established(records) = &mut self.state {
                let opened = match records.open(&mut self.input[..self.input_len], rx) {
                    Ok(o) => o,
                    Err(e) => {
                        // Tell the server why; `close` writes it.
                        if let Some(alert) = e.alert {
                            records.fatal_alert(alert, &mut self.output);
                        }
                        self.state = State::Failed;
                        return Err(TlsError::Tls(e.why));
                    }
                };
                self.discard(opened.consumed);
                self.peer_closed |= opened.peer_closed;
            }
            if eof || self.peer_closed {
                if self.is_handshaking() {
                    return Err(TlsError::Tls("server closed the connection during the TLS handshake".into()));
                }
                return Ok(true);
            }
        }
    }

    /// Queues a close_notify (or, after a failed handshake, keeps the alert saying why) and
    /// writes what the socket takes now.
    pub fn close(&mut self, sock: &mut impl Write) {
        if let State::Established(records) = &mut self.state {
            let _ = records.close_notify(&mut self.output);
        }
        if let Some(rest) = self.output.get(self.output_off..).filter(|r| !r.is_empty()) {
            let _ = sock.write(rest);
        }
        self.output.clear();
        self.output_off = 0;
        self.state = State::Failed;
    }

    fn discard(&mut self, n: usize) {
        discard(&mut self.input, &mut self.input_len, n);
    }

    /// Runs rustls's handshake over the buffered input until it needs more from the server or
    /// is done; when done, hands the keys to [`Records`].
    fn handshake(&mut self) -> Result<(), TlsError> {
        enum Next {
            Continue,
            NeedInput,
            Done,
            Fail(String),
        }
        loop {
            let State::Handshaking(conn) = &mut self.state else { return Ok(()) };
            let UnbufferedStatus { discard: used, state } = conn.process_tls_records(&mut self.input[..self.input_len]);
            let next = match state {
                Err(e) => Next::Fail(e.to_string()),
                Ok(ConnectionState::EncodeTlsData(mut s)) => {
                    // Handshake records go to `output`, which `flush` writes before anything else.
                    match encode_into(&mut self.output, |b| s.encode(b)) {
                        Ok(()) => Next::Continue,
                        Err(e) => Next::Fail(e),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(s)) => {
                    s.done();
                    Next::Continue
                }
                Ok(ConnectionState::BlockedHandshake) => Next::NeedInput,
                // With bytes left over (the rest of a record, or of a post-handshake message that
                // rustls has begun joining in place, as a session ticket sent with the server's
                // Finished and split over records), the keys wait until rustls has them all.
                Ok(ConnectionState::WriteTraffic(_)) if self.input_len > used => Next::NeedInput,
                Ok(ConnectionState::WriteTraffic(_)) => Next::Done,
                Ok(ConnectionState::ReadTraffic(_)) => Next::Fail("the server sent data before the request".into()),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    Next::Fail("server closed the connection during the TLS handshake".into())
                }
                Ok(other) => Next::Fail(format!("unexpected TLS state {other:?}")),
            };
            discard(&mut self.input, &mut self.input_len, used);
            match next {
                Next::Continue => {}
                Next::NeedInput => return Ok(()),
                Next::Done => return self.established(),
                Next::Fail(e) => {
                    self.send_alert();
                    self.state = State::Failed;
                    return Err(TlsError::Tls(e));
                }
            }
        }
    }

    /// After a handshake error rustls queues an alert telling the server why: put it in `output`
    /// (the caller's last flush may send it).
    fn send_alert(&mut self) {
        let State::Handshaking(conn) = &mut self.state else { return };
        let UnbufferedStatus { state, .. } = conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut s)) = state {
            let _ = encode_into(&mut self.output, |b| s.encode(b));
        }
    }

    fn established(&mut self) -> Result<(), TlsError> {
        let State::Handshaking(conn) = std::mem::replace(&mut self.state, State::Failed) else { return Ok(()) };
        let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(|e| TlsError::Tls(e.to_string()))?;
        self.state = State::Established(Box::new(Records::new(secrets, kernel).map_err(TlsError::Tls)?));
        // A long certificate chain may have grown the input buffer: back to one record's room.
        self.input.truncate(MAX_RECORD.max(self.input_len));
        self.input.shrink_to_fit();
        Ok(())
    }
}

fn discard(input: &mut [u8], len: &mut usize, n: usize) {
    input.copy_within(n..*len, 0);
    *len -= n;
}

/// Appends what `encode` writes to `out`, growing it to the size rustls asks for.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), String> {
    let start = out.len();
    let mut room = MAX_RECORD;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(need)) if need.required_size > room => room = need.required_size,
            Err(e) => {
                out.truncate(start);
                return Err(format!("{e:?}"));
            }
        }
    }
}
