//! `NETLINK_SOCK_DIAG` replies (linux/netlink.h, linux/inet_diag.h, linux/tcp.h): a walk over
//! the `nlmsghdr`s of exactly the bytes received, with bounds and alignment checks, the
//! `inet_diag_msg` of each socket, and the `INET_DIAG_INFO` attribute's `tcp_info`. Nothing is
//! read past a length the kernel gave; shorter `tcp_info` (older kernels) leaves later fields `None`.

use super::cursor::ParseError;

const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// `SOCK_DIAG_BY_FAMILY`: the type of every socket record of a per-family request.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK`: the original inet_diag request (`struct inet_diag_req`), and the type of the
/// records it returns. The kernel answers it with one walk over its TCP hash tables for both
/// families (`inet_diag_dump_compat` asks for `AF_UNSPEC`), where a per-family request walks them
/// once per family: the walk itself, every bucket of the established hash whether empty or not
/// (262,144 buckets on a 24 GiB machine), costs about as much as 1,000 sockets.
pub const TCPDIAG_GETSOCK: u16 = 18;
const INET_DIAG_MSG_LEN: usize = 72;
const INET_DIAG_INFO: u16 = 2;

const FILE: &str = "inet_diag";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    Socket(InetDiagMsg<'a>),
    /// The dump is complete.
    Done,
    /// `NLMSG_ERROR` with its (negative) errno; 0 is an acknowledgement.
    Error(i32),
    /// Another type (skipped by callers).
    Other(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetDiagMsg<'a> {
    pub family: u8,
    /// TCP state (`TCP_ESTABLISHED` = 1 … `TCP_LISTEN` = 10).
    pub state: u8,
    pub retrans: u8,
    pub sport: u16,
    pub dport: u16,
    /// IPv4 addresses use the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    pub cookie: u64,
    pub rqueue: u32,
    pub wqueue: u32,
    pub uid: u32,
    pub inode: u32,
    /// The `rtattr`s after the fixed part.
    attrs: &'a [u8],
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub rtt_us: u32,
    pub rttvar_us: u32,
    pub total_retrans: u32,
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
    pub segs_out: Option<u32>,
    pub segs_in: Option<u32>,
    /// Linux 4.19+.
    pub bytes_sent: Option<u64>,
    pub bytes_retrans: Option<u64>,
}

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_ne(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of one received datagram, in order.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf, pos: 0, failed: false }
}

pub struct Messages<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Msg<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        let (Some(len), Some(ty)) = (u32_ne(rest, 0), u16_ne(rest, 4)) else {
            self.failed = true;
            return Some(Err(ParseError::new(FILE, "truncated netlink header")));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            self.failed = true;
            return Some(Err(ParseError::new(FILE, "netlink message length out of bounds")));
        }
        let payload = rest.get(NLMSG_HDRLEN..len).unwrap_or(&[]);
        self.pos = self.pos.saturating_add(align4(len));
        Some(Ok(match ty {
            NLMSG_DONE => Msg::Done,
            NLMSG_ERROR => match u32_ne(payload, 0) {
                Some(e) => Msg::Error(e as i32),
                None => {
                    self.failed = true;
                    return Some(Err(ParseError::new(FILE, "truncated error message")));
                }
            },
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match socket(payload) {
                Some(m) => Msg::Socket(m),
                None => return Some(Err(ParseError::new(FILE, "truncated inet_diag_msg"))),
            },
            other => Msg::Other(other),
        }))
    }
}

fn socket(p: &[u8]) -> Option<InetDiagMsg<'_>> {
    if p.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(p.get(8..24)?);
    dst.copy_from_slice(p.get(24..40)?);
    let cookie = u64::from(u32_ne(p, 44)?) | (u64::from(u32_ne(p, 48)?) << 32);
    Some(InetDiagMsg {
        family: *p.first()?,
        state: *p.get(1)?,
        retrans: *p.get(3)?,
        sport: u16_be(p, 4)?,
        dport: u16_be(p, 6)?,
        src,
        dst,
        ifindex: u32_ne(p, 40)?,
        cookie,
        rqueue: u32_ne(p, 56)?,
        wqueue: u32_ne(p, 60)?,
        uid: u32_ne(p, 64)?,
        inode: u32_ne(p, 68)?,
        attrs: p.get(INET_DIAG_MSG_LEN..).unwrap_or(&[]),
    })
}

impl<'a> InetDiagMsg<'a> {
    /// The `INET_DIAG_INFO` attribute (`struct tcp_info`), when the dump asked for it.
    pub fn tcp_info(&self) -> Option<TcpInfo> {
        let mut pos = 0;
        while let (Some(len), Some(ty)) = (u16_ne(self.attrs, pos), u16_ne(self.attrs, pos + 2)) {
            let len = len as usize;
            if len < 4 || pos + len > self.attrs.len() {
                return None;
            }
            if ty == INET_DIAG_INFO {
                return tcp_info(self.attrs.get(pos + 4..pos + len)?);
            }
            pos += align4(len);
        }
        None
    }
}

/// Offsets in `struct tcp_info` (include/uapi/linux/tcp.h); later fields exist on newer kernels.
fn tcp_info(b: &[u8]) -> Option<TcpInfo> {
    Some(TcpInfo {
        rtt_us: u32_ne(b, 68)?,
        rttvar_us: u32_ne(b, 72)?,
        total_retrans: u32_ne(b, 100)?,
        bytes_acked: u64_ne(b, 120),
        bytes_received: u64_ne(b, 128),
        segs_out: u32_ne(b, 136),
        segs_in: u32_ne(b, 140),
        bytes_sent: u64_ne(b, 200),
        bytes_retrans: u64_ne(b, 208),
    })
}

/// `NLM_F_REQUEST | NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x100 | 0x200;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
/// `nlmsghdr` (16) + `inet_diag_req_v2` (8 + a 48-byte `inet_diag_sockid`).
pub const REQUEST_LEN: usize = 72;

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;
/// Request sockets (half-open, no inode, no owner).
pub const TCP_NEW_SYN_RECV: u8 = 12;

/// Every TCP state a connection can be reported in, plus `LISTEN` (for direction), and not
/// `TIME_WAIT`, `CLOSE` or `NEW_SYN_RECV`: those have no owner and no `tcp_info` worth reading.
pub const STATES_OWNED: u32 = 0xfff & !(1 << TCP_TIME_WAIT) & !(1 << TCP_CLOSE) & !(1 << TCP_NEW_SYN_RECV) & !1;

/// A dump request for all TCP sockets of `family` (`AF_INET` 2 / `AF_INET6` 10) in `states`
/// (a bit per state), with `tcp_info` when `with_info`. The sequence number is set per send.
pub fn dump_request(family: u8, states: u32, with_info: bool) -> [u8; REQUEST_LEN] {
    let mut r = [0u8; REQUEST_LEN];
    r[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
    r[16] = family;
    r[17] = IPPROTO_TCP;
    r[18] = if with_info { 1 << (INET_DIAG_INFO - 1) } else { 0 };
    r[20..24].copy_from_slice(&states.to_ne_bytes());
    r
}

/// `nlmsghdr` (16) + `inet_diag_req` (4 + a 48-byte `inet_diag_sockid` + states + dbs).
pub const BOTH_FAMILIES_REQUEST_LEN: usize = 76;

/// A dump request for all TCP sockets of both families in `states`, in one walk of the kernel's
/// hash tables ([`TCPDIAG_GETSOCK`]); its records are the same `inet_diag_msg`s, typed
/// `TCPDIAG_GETSOCK`. The family byte is not a filter here (the kernel sets `AF_UNSPEC`).
pub fn dump_request_both_families(states: u32, with_info: bool) -> [u8; BOTH_FAMILIES_REQUEST_LEN] {
    let mut r = [0u8; BOTH_FAMILIES_REQUEST_LEN];
    r[0..4].copy_from_slice(&(BOTH_FAMILIES_REQUEST_LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    r[6..8].copy_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
    r[16] = AF_INET;
    r[19] = if with_info { 1 << (INET_DIAG_INFO - 1) } else { 0 };
    // idiag_states after the 4 bytes of family/lengths/ext and the 48-byte socket id.
    r[68..72].copy_from_slice(&states.to_ne_bytes());
    r
}

/// Sets the `nlmsg_seq` of a request.
pub fn set_seq(request: &mut [u8], seq: u32) {
    if let Some(s) = request.get_mut(8..12) {
        s.copy_from_slice(&seq.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fix {
        ($p:literal) => {
            include_bytes!(concat!("../../tests/fixtures/netlink/debian12-6.18/", $p))
        };
    }

    /// The fixture was captured with a listener on 127.0.0.1:51017, two accepted connections,
    /// and 100 000 bytes sent over one of them.
    #[test]
    fn a_real_tcp4_dump() {
        let msgs: Vec<Msg> = messages(fix!("tcp4-0.bin")).collect::<Result<_, _>>().unwrap();
        let socks: Vec<InetDiagMsg> =
            msgs.iter().filter_map(|m| if let Msg::Socket(s) = m { Some(*s) } else { None }).collect();
        assert!(socks.iter().all(|s| s.family == 2));
        let listen = socks.iter().find(|s| s.state == 10 && s.sport == 51017).expect("the listener");
        assert_eq!(&listen.src[..4], &[127, 0, 0, 1]);
        let established: Vec<_> =
            socks.iter().filter(|s| s.state == 1 && (s.sport == 51017 || s.dport == 51017)).collect();
        assert_eq!(established.len(), 4, "two connections, both ends");
        let infos: Vec<TcpInfo> = established.iter().map(|s| s.tcp_info().expect("INET_DIAG_INFO requested")).collect();
        assert!(infos.iter().any(|i| i.bytes_received.unwrap() >= 100_000), "{infos:?}");
        assert!(infos.iter().any(|i| i.bytes_acked.unwrap() >= 100_000), "{infos:?}");
        assert!(infos.iter().all(|i| i.rtt_us > 0 && i.bytes_sent.is_some()));
        assert!(established.iter().all(|s| s.inode != 0 && s.uid == 0));
        assert_eq!(messages(fix!("tcp4-1.bin")).collect::<Result<Vec<_>, _>>().unwrap(), vec![Msg::Done]);
        assert_eq!(messages(fix!("tcp6-0.bin")).collect::<Result<Vec<_>, _>>().unwrap(), vec![Msg::Done]);
    }

    #[test]
    fn the_dump_request_layout() {
        let r = dump_request(10, STATES_OWNED, true);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
        assert_eq!((r[16], r[17], r[18]), (10, 6, 2));
        let states = u32::from_ne_bytes(r[20..24].try_into().unwrap());
        assert_eq!(states & (1 << TCP_ESTABLISHED | 1 << TCP_LISTEN), 1 << TCP_ESTABLISHED | 1 << TCP_LISTEN);
        assert_eq!(states & (1 << TCP_TIME_WAIT | 1 << TCP_NEW_SYN_RECV | 1 << TCP_CLOSE | 1), 0);
        assert!(r[24..].iter().all(|b| *b == 0), "a zero socket id matches every socket");
        let mut r = r;
        set_seq(&mut r, 7);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
    }

    #[test]
    fn the_both_families_request_layout() {
        let r = dump_request_both_families(STATES_OWNED, true);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 76);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 18);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
        // family, src_len, dst_len, ext (INET_DIAG_INFO's bit), then a zero socket id.
        assert_eq!(&r[16..20], &[2, 0, 0, 2]);
        assert!(r[20..68].iter().all(|b| *b == 0));
        assert_eq!(u32::from_ne_bytes(r[68..72].try_into().unwrap()), STATES_OWNED);
        assert_eq!(&r[72..76], &[0; 4], "idiag_dbs");
        assert_eq!(dump_request_both_families(STATES_OWNED, false)[19], 0);
        // Its records parse as sockets, as SOCK_DIAG_BY_FAMILY's do.
        let mut rec = fix!("tcp4-0.bin").to_vec();
        let first_len = u32::from_ne_bytes(rec[0..4].try_into().unwrap()) as usize;
        rec.truncate(first_len);
        rec[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
        assert!(matches!(messages(&rec).next(), Some(Ok(Msg::Socket(s))) if s.family == 2));
    }

    #[test]
    fn truncation_and_bad_lengths_are_errors_not_panics() {
        let whole = fix!("tcp4-0.bin");
        for cut in 0..whole.len() {
            // Every prefix parses into some messages and then, at most, one error.
            let items: Vec<_> = messages(&whole[..cut]).collect();
            assert!(items.iter().filter(|r| r.is_err()).count() <= 1);
        }
        // A length below the header size, or past the buffer.
        let mut bad = vec![0u8; 20];
        bad[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(messages(&bad).next().unwrap().is_err());
        bad[..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(messages(&bad).next().unwrap().is_err());
        // An error message carries a negative errno.
        let mut err = vec![0u8; 20];
        err[..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert_eq!(messages(&err).next().unwrap().unwrap(), Msg::Error(-13));
        // A short tcp_info (an old kernel) gives the fields it has.
        let mut short = vec![0u8; 104];
        short[68..72].copy_from_slice(&500u32.to_ne_bytes());
        let info = tcp_info(&short).unwrap();
        assert_eq!((info.rtt_us, info.bytes_acked, info.bytes_sent), (500, None, None));
    }
}
