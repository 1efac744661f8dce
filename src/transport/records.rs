//! The TLS record layer of an established connection. rustls does the handshake and keeps the key
//! schedule (its `KernelConnection`, the API it has for kTLS-style record layers: key updates,
//! session tickets); the records themselves are sealed into and opened in the client's own
//! buffers with ring's AEADs (the ones rustls's ring provider uses). rustls 0.23's record layer,
//! buffered or unbuffered, allocates a `Vec` for every record it encrypts and every record it
//! decrypts; this one allocates nothing, so a request and its response cost no allocation.
//!
//! TLS 1.3 (RFC 8446 §5.2–5.4) and TLS 1.2's AEAD suites (RFC 5288 for AES-GCM, RFC 7905 for
//! ChaCha20-Poly1305), the only suites rustls offers.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

const HEADER: usize = 5;
const TAG: usize = 16;
const GCM_EXPLICIT_NONCE: usize = 8;
/// The largest plaintext of one record (RFC 8446 §5.1, RFC 5246 §6.2.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// The largest record accepted: TLS 1.2 allows 2^14 + 2048 bytes of ciphertext, TLS 1.3
/// 2^14 + 256 (checked per version below).
pub const MAX_RECORD: usize = HEADER + MAX_PLAINTEXT + 2048;
/// The most a sealed record adds to its plaintext (TLS 1.2 GCM: explicit nonce and tag).
pub const MAX_OVERHEAD: usize = HEADER + GCM_EXPLICIT_NONCE + TAG;
/// Records sealed or opened under one key before the connection asks to be replaced by a new
/// one (a new handshake): below every suite's confidentiality limit (AES-GCM's in TLS 1.3 is
/// 2^24.5 records; rustls would update the keys there, and a 1.2 connection must end).
const WORN_AFTER: u64 = 1 << 23;
/// A post-handshake handshake message split over records is joined up to this size (a TLS 1.3
/// NewSessionTicket holds a ticket of at most 64 KiB).
const MAX_HANDSHAKE_MESSAGE: usize = 1 << 17;

/// Records in a row that carry no application data (empty records, warnings, tickets, key
/// updates) before the connection is given up, as rustls limits them: a server sending only
/// those would keep the loop busy without ever filling a response.
const MAX_UNEVENTFUL: u32 = 32;

/// Alert descriptions (RFC 8446 §6).
pub const UNEXPECTED_MESSAGE: u8 = 10;
pub const BAD_RECORD_MAC: u8 = 20;
pub const RECORD_OVERFLOW: u8 = 22;
pub const ILLEGAL_PARAMETER: u8 = 47;
pub const DECODE_ERROR: u8 = 50;
pub const INTERNAL_ERROR: u8 = 80;

/// Why a record could not be taken, and the fatal alert that tells the server (none when the
/// server's own fatal alert ended the connection, RFC 8446 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub alert: Option<u8>,
    pub why: String,
}

fn err<T>(alert: u8, why: impl Into<String>) -> Result<T, RecordError> {
    Err(RecordError { alert: Some(alert), why: why.into() })
}

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HELLO_REQUEST: u8 = 0;
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;

/// One direction's key: the AEAD key, its IV (RFC 8446 §5.3, or TLS 1.2's salt and nonce
/// offset, as rustls extracts them) and the record sequence number.
struct Key {
    aead: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Key {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Key, String> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&aead::CHACHA20_POLY1305, key, iv),
            _ => return Err("the negotiated cipher suite has no record layer here".into()),
        };
        let aead = LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).map_err(|_| "bad key length")?);
        let iv: [u8; 12] = iv.as_ref().try_into().map_err(|_| "bad IV length")?;
        Ok(Key { aead, iv, seq })
    }

    /// The per-record nonce: the IV with the sequence number XORed into its last 8 bytes.
    fn nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// TLS 1.2's additional data: sequence number, type, version, plaintext length.
    fn aad12(&self, typ: u8, len: usize) -> [u8; 13] {
        let mut a = [0u8; 13];
        a[..8].copy_from_slice(&self.seq.to_be_bytes());
        a[8] = typ;
        a[9..11].copy_from_slice(&[3, 3]);
        a[11..].copy_from_slice(&(len as u16).to_be_bytes());
        a
    }

    fn is_gcm(&self) -> bool {
        self.aead.algorithm() != &aead::CHACHA20_POLY1305
    }
}

/// What [`Records::open`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Bytes of whole records consumed (the caller drops them from the front of its buffer).
    pub consumed: usize,
    /// The peer sent close_notify: nothing more will come.
    pub peer_closed: bool,
}

pub struct Records {
    kernel: KernelConnection<ClientConnectionData>,
    tls13: bool,
    tx: Key,
    rx: Key,
    /// The peer asked for a key update (TLS 1.3): ours is sent, under the old key, before the
    /// next record.
    owe_key_update: bool,
    /// A handshake message whose start came in an earlier record.
    partial_handshake: Vec<u8>,
    peer_closed: bool,
    /// Records in a row without application data.
    uneventful: u32,
}

impl Records {
    pub fn new(secrets: ExtractedSecrets, kernel: KernelConnection<ClientConnectionData>) -> Result<Records, String> {
        let tls13 = match kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => true,
            ProtocolVersion::TLSv1_2 => false,
            v => return Err(format!("no record layer here for {v:?}")),
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        Ok(Records {
            kernel,
            tls13,
            tx: Key::new(tx_seq, tx)?,
            rx: Key::new(rx_seq, rx)?,
            owe_key_update: false,
            partial_handshake: Vec::new(),
            peer_closed: false,
            uneventful: 0,
        })
    }

    /// The connection has carried enough records under its keys that it should be replaced.
    pub fn worn(&self) -> bool {
        self.tx.seq >= WORN_AFTER || self.rx.seq >= WORN_AFTER
    }

    /// Seals `plain` (at most [`MAX_PLAINTEXT`] bytes) as one application-data record appended
    /// to `out` (preceded by a key update the peer asked for). Appending within `out`'s
    /// capacity allocates nothing.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        debug_assert!(plain.len() <= MAX_PLAINTEXT);
        if self.owe_key_update {
            // KeyUpdate, update_not_requested (RFC 8446 §4.6.3), then our new key.
            self.seal_record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
            let (seq, secrets) = self.kernel.update_tx_secret().map_err(|e| format!("key update: {e}"))?;
            self.tx = Key::new(seq, secrets)?;
            self.owe_key_update = false;
        }
        self.seal_record(APPLICATION_DATA, plain, out)
    }

    /// Appends a close_notify alert.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.seal_record(ALERT, &[1, 0], out)
    }

    /// Appends a fatal alert (the connection is then closed).
    pub fn fatal_alert(&mut self, description: u8, out: &mut Vec<u8>) {
        let _ = self.seal_record(ALERT, &[2, description], out);
    }

    fn seal_record(&mut self, typ: u8, plain: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let key = &mut self.tx;
        let nonce = key.nonce();
        if self.tls13 {
            // The outer type is always application data; the real one ends the inner plaintext.
            let len = plain.len() + 1 + TAG;
            out.extend_from_slice(&[APPLICATION_DATA, 3, 3]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(plain);
            out.push(typ);
            let (head, body) = out[start..].split_at_mut(HEADER);
            let aad = <[u8; HEADER]>::try_from(&*head).map_err(|_| "record header")?;
            let tag = key
                .aead
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
                .map_err(|_| "encryption failed")?;
            out.extend_from_slice(tag.as_ref());
        } else {
            let explicit = if key.is_gcm() { GCM_EXPLICIT_NONCE } else { 0 };
            let len = explicit + plain.len() + TAG;
            out.extend_from_slice(&[typ, 3, 3]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            // GCM: the nonce's last 8 bytes travel in the record (RFC 5288 §3).
            out.extend_from_slice(&nonce[12 - explicit..]);
            out.extend_from_slice(plain);
            let aad = key.aad12(typ, plain.len());
            let body = &mut out[start + HEADER + explicit..];
            let tag = key
                .aead
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
                .map_err(|_| "encryption failed")?;
            out.extend_from_slice(tag.as_ref());
        }
        key.seq += 1;
        Ok(())
    }

    /// Opens the whole records at the front of `buf` (decrypting them in place), appending
    /// their application data to `plain`; a partial record at the end is left for later.
    /// Alerts end the connection (close_notify cleanly), session tickets are handed to rustls,
    /// key updates change the receiving key (and owe the peer ours when it asks).
    pub fn open(&mut self, buf: &mut [u8], plain: &mut Vec<u8>) -> Result<Opened, RecordError> {
        let mut at = 0;
        while !self.peer_closed {
            let Some(head) = buf.get(at..at + HEADER) else { break };
            let typ = head[0];
            let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
            if head[1] != 3 {
                return err(DECODE_ERROR, format!("not a TLS record (version {}.{})", head[1], head[2]));
            }
            let limit = if self.tls13 { MAX_PLAINTEXT + 256 } else { MAX_PLAINTEXT + 2048 };
            if len > limit {
                return err(RECORD_OVERFLOW, format!("a record of {len} bytes (at most {limit})"));
            }
            let Some(record) = buf.get_mut(at..at + HEADER + len) else { break };
            at += HEADER + len;
            let (typ, body) = if self.tls13 { self.open13(typ, record)? } else { self.open12(typ, record)? };
            self.rx.seq += 1;
            if typ == APPLICATION_DATA && !body.is_empty() {
                self.uneventful = 0;
            } else {
                self.uneventful += 1;
                if self.uneventful > MAX_UNEVENTFUL {
                    return err(UNEXPECTED_MESSAGE, format!("{MAX_UNEVENTFUL} records in a row without data"));
                }
            }
            self.received(typ, body, plain)?;
        }
        Ok(Opened { consumed: at, peer_closed: self.peer_closed })
    }

    /// A TLS 1.3 record: the inner plaintext's type and content.
    fn open13<'r>(&self, outer: u8, record: &'r mut [u8]) -> Result<(u8, &'r [u8]), RecordError> {
        if outer != APPLICATION_DATA {
            return err(UNEXPECTED_MESSAGE, format!("an unprotected record of type {outer} after the handshake"));
        }
        if record.len() < HEADER + TAG + 1 {
            return err(DECODE_ERROR, "a record too short for its cipher");
        }
        let (head, body) = record.split_at_mut(HEADER);
        let aad = <[u8; HEADER]>::try_from(&*head)
            .map_err(|_| RecordError { alert: Some(DECODE_ERROR), why: "a record header".into() })?;
        let nonce = Nonce::assume_unique_for_key(self.rx.nonce());
        let inner = self.rx.aead.open_in_place(nonce, Aad::from(aad), body).map_err(|_| RecordError {
            alert: Some(BAD_RECORD_MAC),
            why: "a record failed to decrypt (bad_record_mac)".into(),
        })?;
        let inner: &'r [u8] = inner;
        // Content, its type, zero padding: 2^14 + 1 bytes at most (RFC 8446 §5.4).
        if inner.len() > MAX_PLAINTEXT + 1 {
            return err(RECORD_OVERFLOW, "a record's inner plaintext is over 2^14 + 1 bytes");
        }
        let Some(end) = inner.iter().rposition(|&b| b != 0) else {
            return err(UNEXPECTED_MESSAGE, "a record with no content type");
        };
        Ok((inner[end], &inner[..end]))
    }

    /// A TLS 1.2 record: its type and plaintext.
    fn open12<'r>(&self, typ: u8, record: &'r mut [u8]) -> Result<(u8, &'r [u8]), RecordError> {
        let explicit = if self.rx.is_gcm() { GCM_EXPLICIT_NONCE } else { 0 };
        let body = &mut record[HEADER..];
        let Some(len) = body.len().checked_sub(explicit + TAG) else {
            return err(DECODE_ERROR, "a record too short for its cipher");
        };
        if len > MAX_PLAINTEXT {
            return err(RECORD_OVERFLOW, "a record's plaintext is over 2^14 bytes");
        }
        let nonce = if explicit > 0 {
            let mut n = [0u8; 12];
            n[..4].copy_from_slice(&self.rx.iv[..4]);
            n[4..].copy_from_slice(&body[..GCM_EXPLICIT_NONCE]);
            n
        } else {
            self.rx.nonce()
        };
        let aad = self.rx.aad12(typ, len);
        let opened = self
            .rx
            .aead
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body[explicit..])
            .map_err(|_| RecordError {
                alert: Some(BAD_RECORD_MAC),
                why: "a record failed to decrypt (bad_record_mac)".into(),
            })?;
        Ok((typ, opened))
    }

    fn received(&mut self, typ: u8, body: &[u8], plain: &mut Vec<u8>) -> Result<(), RecordError> {
        if typ != HANDSHAKE && !self.partial_handshake.is_empty() {
            return err(UNEXPECTED_MESSAGE, "a record between the parts of a handshake message");
        }
        match typ {
            APPLICATION_DATA => {
                plain.extend_from_slice(body);
                Ok(())
            }
            ALERT => match body {
                [_, 0] => {
                    self.peer_closed = true;
                    Ok(())
                }
                // user_canceled (TLS 1.3), or any warning in TLS 1.2: close_notify follows or not.
                [_, 90] => Ok(()),
                [1, _] if !self.tls13 => Ok(()),
                [_, d] => Err(RecordError {
                    alert: None,
                    why: format!("the server sent TLS alert {:?}", rustls::AlertDescription::from(*d)),
                }),
                _ => err(DECODE_ERROR, "a malformed alert"),
            },
            HANDSHAKE if body.is_empty() => err(UNEXPECTED_MESSAGE, "an empty handshake record"),
            HANDSHAKE => self.handshake_messages(body),
            CHANGE_CIPHER_SPEC => err(UNEXPECTED_MESSAGE, "change_cipher_spec after the handshake"),
            t => err(UNEXPECTED_MESSAGE, format!("a record of unknown type {t}")),
        }
    }

    /// The handshake messages of one record, joined to a message begun in an earlier one.
    fn handshake_messages(&mut self, body: &[u8]) -> Result<(), RecordError> {
        if !self.partial_handshake.is_empty() || !whole_messages(body) {
            if self.partial_handshake.len() + body.len() > MAX_HANDSHAKE_MESSAGE + 4 {
                return err(UNEXPECTED_MESSAGE, "a post-handshake message over 128 KiB");
            }
            let mut joined = std::mem::take(&mut self.partial_handshake);
            joined.extend_from_slice(body);
            let done = self.handshake_whole(&joined, true);
            return match done {
                Ok(used) => {
                    joined.drain(..used);
                    self.partial_handshake = joined;
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        self.handshake_whole(body, false).map(|_| ())
    }

    /// Handles the whole messages at the front of `msgs` (all of them unless `partial_ok`);
    /// returns the bytes used.
    fn handshake_whole(&mut self, msgs: &[u8], partial_ok: bool) -> Result<usize, RecordError> {
        let mut at = 0;
        while let Some(&[typ, a, b, c]) = msgs.get(at..at + 4) {
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            if len > MAX_HANDSHAKE_MESSAGE {
                return err(UNEXPECTED_MESSAGE, format!("a post-handshake message of {len} bytes"));
            }
            let Some(payload) = msgs.get(at + 4..at + 4 + len) else { break };
            at += 4 + len;
            match (typ, self.tls13) {
                (NEW_SESSION_TICKET, true) => {
                    // Stored by rustls for resuming the next connection; a ticket it cannot use
                    // costs nothing but the resumption.
                    if let Err(e) = self.kernel.handle_new_session_ticket(payload) {
                        debug!("a session ticket was not stored: {e}");
                    }
                }
                (KEY_UPDATE, true) => {
                    if at != msgs.len() {
                        return err(UNEXPECTED_MESSAGE, "a key update not at the end of its record");
                    }
                    let requested = match payload {
                        [0] => false,
                        [1] => true,
                        [_] => return err(ILLEGAL_PARAMETER, "a key update with an unknown request"),
                        _ => return err(DECODE_ERROR, "a malformed key update"),
                    };
                    let internal =
                        |e: String| RecordError { alert: Some(INTERNAL_ERROR), why: format!("key update: {e}") };
                    let (seq, secrets) = self.kernel.update_rx_secret().map_err(|e| internal(e.to_string()))?;
                    self.rx = Key::new(seq, secrets).map_err(internal)?;
                    self.owe_key_update |= requested;
                }
                // A TLS 1.2 server asking to renegotiate: a client may ignore it (RFC 5246 §7.4.1.1).
                (HELLO_REQUEST, false) if len == 0 => {}
                (t, _) => {
                    return err(
                        UNEXPECTED_MESSAGE,
                        format!("an unexpected handshake message (type {t}) after the handshake"),
                    )
                }
            }
        }
        if at != msgs.len() && !partial_ok {
            return err(DECODE_ERROR, "a truncated handshake message");
        }
        Ok(at)
    }
}

/// Whether `body` is a run of whole handshake messages.
fn whole_messages(body: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&[_, a, b, c]) = body.get(at..at + 4) {
        at += 4 + u32::from_be_bytes([0, a, b, c]) as usize;
    }
    at == body.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn chacha(seq: u64) -> Key {
        let secrets = ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::new([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        };
        Key::new(seq, secrets).unwrap()
    }

    /// RFC 8446 §5.3: the sequence number, big-endian and left-padded to the IV's length, XORed
    /// into the IV; TLS 1.2 GCM (RFC 5288 §3) builds its nonce the same way from rustls's IV.
    #[test]
    fn the_nonce_is_the_iv_xor_the_sequence_number() {
        assert_eq!(chacha(0).nonce(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(chacha(1).nonce(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]);
        assert_eq!(chacha(0x0102_0304_0506_0708).nonce(), [0, 1, 2, 3, 5, 7, 5, 3, 13, 15, 13, 3]);
        assert!(!chacha(0).is_gcm());
    }

    /// RFC 5246 §6.2.3.3: seq_num, type, version, length.
    #[test]
    fn tls12_additional_data() {
        let k = chacha(0x0a0b);
        assert_eq!(k.aad12(APPLICATION_DATA, 0x1234), [0, 0, 0, 0, 0, 0, 0x0a, 0x0b, 23, 3, 3, 0x12, 0x34]);
    }

    #[test]
    fn whole_messages_are_told_from_a_split_one() {
        assert!(whole_messages(&[]));
        assert!(whole_messages(&[NEW_SESSION_TICKET, 0, 0, 1, 9]));
        assert!(whole_messages(&[NEW_SESSION_TICKET, 0, 0, 1, 9, KEY_UPDATE, 0, 0, 1, 0]));
        assert!(!whole_messages(&[NEW_SESSION_TICKET, 0, 0, 2, 9]), "the body goes on in the next record");
        assert!(!whole_messages(&[NEW_SESSION_TICKET, 0]), "the header goes on in the next record");
        assert!(!whole_messages(&[NEW_SESSION_TICKET, 0xff, 0xff, 0xff]), "a length past the record");
    }
}
