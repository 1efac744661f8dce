//! The classic BPF programs of the HTTP capture: the kernel keeps a packet only when it is a TCP
//! segment whose payload starts with an HTTP/1.x method or `HTTP` (a response), or looks like a
//! MySQL greeting, and copies only its first [`SNAP`] bytes. Everything else, bulk data first,
//! never leaves the kernel. Which direction each socket keeps is [`Direction`]'s: a namespace's
//! socket on every interface keeps what arrives, one bound to an interface that leaves the host
//! keeps what is sent there.
//!
//! The program runs on `SOCK_DGRAM` frames, so offset 0 is the IP header. IPv4 is filtered
//! completely; IPv6 with extension headers cannot be walked in classic BPF, so such packets are
//! kept and finished in user space (`parse::packet`). A load past the packet's end makes the
//! kernel drop the packet, which is what a segment too short to hold the pattern deserves.

use super::packet_ring::SockFilter;

/// Bytes kept of an accepted packet, from its IP header: 20–60 of IP, 20–60 of TCP, and the
/// rest of the payload's start (a status line, a request line, a few pipelined heads).
pub const SNAP: u32 = 320;

const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MSH: u16 = 0xa0;
const K: u16 = 0x00;
const X: u16 = 0x08;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const RSH: u16 = 0x70;
const JEQ: u16 = 0x10;
const JSET: u16 = 0x40;
const TAX: u16 = 0x00;

/// Ancillary loads (`SKF_AD_OFF` + field).
const AD_OFF: u32 = 0xFFFF_F000;
const AD_PROTOCOL: u32 = AD_OFF;
const AD_PKTTYPE: u32 = AD_OFF + 4;
const AD_HATYPE: u32 = AD_OFF + 28;

const PACKET_OTHERHOST: u32 = 3;
const PACKET_OUTGOING: u32 = 4;
const ARPHRD_LOOPBACK: u32 = 772;

/// The first four payload bytes (big-endian) that make a segment worth keeping.
const HEADS: [&[u8; 4]; 10] =
    [b"HTTP", b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"PATC", b"OPTI", b"TRAC", b"CONN"];

/// Jump targets of the program below.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L {
    Next,
    Proto,
    V4,
    V6,
    V6Tcp,
    Payload,
    Keep,
    Drop,
}

enum I {
    Stmt(u16, u32),
    Jump(u16, u32, L, L),
    /// `BPF_JMP | BPF_JA`: unconditional, its offset in k.
    Goto(L),
    Label(L),
}

/// The packets a capture socket keeps, by direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// On every interface of a namespace: what arrives. A packet between two namespaces of the
    /// host arrives in one of them, so arriving copies see every exchange once per hop; with
    /// `PACKET_IGNORE_OUTGOING` the kernel does not even clone what leaves. Where that option is
    /// missing (kernels before 4.20) leaving copies come too and are kept (the socket is then the
    /// only one of its namespace), except on loopback, where each packet also arrives. Frames a
    /// bridge port only forwards (`PACKET_OTHERHOST`) are dropped: they arrive where they go.
    Arriving,
    /// On one interface that leaves the host: what is sent there (whoever answers is not on
    /// this host, so the response is seen nowhere else).
    Leaving,
}

fn program_source(direction: Direction) -> Vec<I> {
    use I::{Goto, Jump, Label, Stmt};
    let mut p = match direction {
        Direction::Arriving => vec![
            Stmt(LD | W | ABS, AD_PKTTYPE),
            Jump(JMP | JEQ | K, PACKET_OTHERHOST, L::Drop, L::Next),
            Jump(JMP | JEQ | K, PACKET_OUTGOING, L::Next, L::Proto),
            Stmt(LD | W | ABS, AD_HATYPE),
            Jump(JMP | JEQ | K, ARPHRD_LOOPBACK, L::Drop, L::Proto),
        ],
        Direction::Leaving => {
            vec![Stmt(LD | W | ABS, AD_PKTTYPE), Jump(JMP | JEQ | K, PACKET_OUTGOING, L::Proto, L::Drop)]
        }
    };
    p.extend([
        Label(L::Proto),
        Stmt(LD | W | ABS, AD_PROTOCOL),
        Jump(JMP | JEQ | K, 0x0800, L::V4, L::Next),
        Jump(JMP | JEQ | K, 0x86dd, L::V6, L::Drop),
    ]);
    p.extend([
        // IPv4: TCP, not a later fragment; X = IP header length + TCP header length.
        Label(L::V4),
        Stmt(LD | B | ABS, 9),
        Jump(JMP | JEQ | K, 6, L::Next, L::Drop),
        Stmt(LD | H | ABS, 6),
        Jump(JMP | JSET | K, 0x1fff, L::Drop, L::Next),
        Stmt(LDX | B | MSH, 0),
        Stmt(LD | B | IND, 12),
        Stmt(ALU | AND | K, 0xf0),
        Stmt(ALU | RSH | K, 2),
        Stmt(ALU | ADD | X, 0),
        Stmt(MISC | TAX, 0),
        Goto(L::Payload),
        // IPv6: TCP right after the fixed header, or an extension header (kept, decided later).
        Label(L::V6),
        Stmt(LD | B | ABS, 6),
        Jump(JMP | JEQ | K, 6, L::V6Tcp, L::Next),
    ]);
    for ext in [0u32, 43, 44, 51, 60] {
        p.push(Jump(JMP | JEQ | K, ext, L::Keep, L::Next));
    }
    p.extend([
        Goto(L::Drop),
        Label(L::V6Tcp),
        Stmt(LD | B | ABS, 40 + 12),
        Stmt(ALU | AND | K, 0xf0),
        Stmt(ALU | RSH | K, 2),
        Stmt(ALU | ADD | K, 40),
        Stmt(MISC | TAX, 0),
        // The payload's first four bytes.
        Label(L::Payload),
        Stmt(LD | W | IND, 0),
    ]);
    for head in HEADS {
        p.push(Jump(JMP | JEQ | K, u32::from_be_bytes(*head), L::Keep, L::Next));
    }
    p.extend([
        // MySQL greeting: a packet shorter than 64 KiB (third length byte 0), sequence 0, and
        // protocol version 10 next.
        Stmt(ALU | AND | K, 0xffff),
        Jump(JMP | JEQ | K, 0, L::Next, L::Drop),
        Stmt(LD | B | IND, 4),
        Jump(JMP | JEQ | K, 10, L::Keep, L::Drop),
        Label(L::Drop),
        Stmt(RET | K, 0),
        Label(L::Keep),
        Stmt(RET | K, SNAP),
    ]);
    p
}

/// The assembled program for `direction`: labels resolved into the forward jump offsets
/// classic BPF uses.
pub fn program(direction: Direction) -> Vec<SockFilter> {
    let src = program_source(direction);
    // Instruction index of each label (labels take no slot).
    let mut at = Vec::new();
    let mut n = 0u32;
    for i in &src {
        match i {
            I::Label(l) => at.push((*l, n)),
            _ => n += 1,
        }
    }
    let target = |l: L, pc: u32| -> u8 {
        if l == L::Next {
            return 0;
        }
        let t = at.iter().find(|(k, _)| *k == l).map(|(_, t)| *t).expect("every label is defined");
        u8::try_from(t - pc - 1).expect("jumps are forward and short")
    };
    let mut out = Vec::with_capacity(n as usize);
    for i in &src {
        let pc = out.len() as u32;
        match *i {
            I::Stmt(code, k) => out.push(SockFilter { code, jt: 0, jf: 0, k }),
            I::Goto(t) => out.push(SockFilter { code: JMP, jt: 0, jf: 0, k: u32::from(target(t, pc)) }),
            I::Jump(code, k, t, f) => out.push(SockFilter { code, jt: target(t, pc), jf: target(f, pc), k }),
            I::Label(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel knows besides the bytes: `skb->protocol`, `pkt_type`, `dev->type`.
    struct Meta {
        protocol: u32,
        pkttype: u32,
        hatype: u32,
    }

    /// A classic BPF interpreter for the instructions the program uses, with the kernel's rule
    /// that a load past the end rejects the packet.
    fn run(prog: &[SockFilter], pkt: &[u8], m: &Meta) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |off: u32, size: usize| -> Option<u32> {
            match off {
                AD_PROTOCOL => Some(m.protocol),
                AD_PKTTYPE => Some(m.pkttype),
                AD_HATYPE => Some(m.hatype),
                _ => {
                    let s = pkt.get(off as usize..off as usize + size)?;
                    Some(s.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
                }
            }
        };
        loop {
            let i = prog[pc];
            pc += 1;
            let size = match i.code & 0x18 {
                W => 4,
                H => 2,
                _ => 1,
            };
            match i.code & 0x07 {
                LD => {
                    let off = if i.code & 0xe0 == IND { x.wrapping_add(i.k) } else { i.k };
                    match load(off, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                LDX => match pkt.get(i.k as usize) {
                    Some(b) => x = u32::from(b & 0x0f) * 4,
                    None => return 0,
                },
                ALU => {
                    let v = if i.code & X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        ADD => a.wrapping_add(v),
                        AND => a & v,
                        RSH => a >> v,
                        other => panic!("alu {other:#x}"),
                    }
                }
                JMP => {
                    if i.code & 0xf0 == 0 {
                        pc += i.k as usize;
                        continue;
                    }
                    let taken = match i.code & 0xf0 {
                        JEQ => a == i.k,
                        JSET => a & i.k != 0,
                        other => panic!("jmp {other:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET => return i.k,
                MISC => x = a,
                other => panic!("class {other}"),
            }
        }
    }

    fn ipv4_tcp(payload: &[u8], frag: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, (frag >> 8) as u8, frag as u8, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let tcp_len = 32u16;
        let total = 20 + tcp_len + payload.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let mut tcp = vec![0u8; tcp_len as usize];
        tcp[12] = ((tcp_len / 4) as u8) << 4;
        p.extend(tcp);
        p.extend_from_slice(payload);
        p
    }

    fn ipv6_tcp(payload: &[u8], ext: Option<u8>) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, ext.unwrap_or(6), 64];
        p.extend([0u8; 32]);
        if ext.is_some() {
            p.extend([6, 0, 0, 0, 0, 0, 0, 0]);
        }
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        p.extend(tcp);
        p.extend_from_slice(payload);
        p
    }

    const V4: Meta = Meta { protocol: 0x0800, pkttype: 0, hatype: 1 };
    const V6: Meta = Meta { protocol: 0x86dd, pkttype: 0, hatype: 1 };

    #[test]
    fn heads_are_kept_and_cut_to_the_snap_length() {
        for prog in [program(Direction::Arriving), program(Direction::Leaving)] {
            let out = Meta { pkttype: PACKET_OUTGOING, ..V4 };
            let out6 = Meta { pkttype: PACKET_OUTGOING, ..V6 };
            let (v4, v6) = if prog == program(Direction::Leaving) { (&out, &out6) } else { (&V4, &V6) };
            for head in
                [&b"GET / HTTP/1.1\r\n"[..], b"HTTP/1.1 200 OK\r\n", b"POST /x HTTP/1.1\r\n", b"DELETE /a HTTP/1.1"]
            {
                assert_eq!(run(&prog, &ipv4_tcp(head, 0), v4), SNAP, "{:?}", String::from_utf8_lossy(head));
                assert_eq!(run(&prog, &ipv6_tcp(head, None), v6), SNAP);
            }
            // MySQL 8 greeting start: length 0x4a, sequence 0, protocol 10.
            assert_eq!(run(&prog, &ipv4_tcp(&[0x4a, 0, 0, 0, 10, b'8'], 0), v4), SNAP);
        }
    }

    #[test]
    fn everything_else_is_dropped() {
        let prog = program(Direction::Arriving);
        // Bulk data, TLS, a pure ACK, a segment shorter than the pattern.
        for payload in [&[0x5a; 1400][..], &[0x16, 3, 1, 0, 0xc8, 1], b"", b"GE", b"get / HTTP/1.1", b"HTTPS"] {
            let want = if payload.starts_with(b"HTTP") { SNAP } else { 0 };
            assert_eq!(run(&prog, &ipv4_tcp(payload, 0), &V4), want, "{payload:?}");
        }
        // A later fragment, UDP, ARP, a COM_QUERY (sequence 0 but command 3).
        assert_eq!(run(&prog, &ipv4_tcp(b"GET / HTTP/1.1", 0x0010), &V4), 0);
        let mut udp = ipv4_tcp(b"GET / HTTP/1.1", 0);
        udp[9] = 17;
        assert_eq!(run(&prog, &udp, &V4), 0);
        assert_eq!(run(&prog, &[0u8; 28], &Meta { protocol: 0x0806, pkttype: 0, hatype: 1 }), 0);
        assert_eq!(run(&prog, &ipv4_tcp(&[0x21, 0, 0, 0, 3, b's'], 0), &V4), 0);
    }

    #[test]
    fn each_socket_keeps_its_direction() {
        let get = ipv4_tcp(b"GET / HTTP/1.1", 0);
        let (host, otherhost, outgoing) = (0, PACKET_OTHERHOST, PACKET_OUTGOING);
        let m = |pkttype, hatype| Meta { protocol: 0x0800, pkttype, hatype };
        let arriving = program(Direction::Arriving);
        // What arrives, on loopback too; what leaves (a kernel without IGNORE_OUTGOING), except
        // on loopback where the arriving copy is the one kept; bridged frames never.
        assert_eq!(run(&arriving, &get, &m(host, 1)), SNAP);
        assert_eq!(run(&arriving, &get, &m(host, ARPHRD_LOOPBACK)), SNAP);
        assert_eq!(run(&arriving, &get, &m(outgoing, 1)), SNAP);
        assert_eq!(run(&arriving, &get, &m(outgoing, ARPHRD_LOOPBACK)), 0);
        assert_eq!(run(&arriving, &get, &m(otherhost, 1)), 0);
        // Bound to an interface that leaves the host: what is sent there, nothing else.
        let leaving = program(Direction::Leaving);
        assert_eq!(run(&leaving, &get, &m(outgoing, 1)), SNAP);
        for pkttype in [host, 1, 2, otherhost] {
            assert_eq!(run(&leaving, &get, &m(pkttype, 1)), 0, "pkt_type {pkttype}");
        }
        assert_eq!(run(&leaving, &ipv4_tcp(&[0x5a; 1400], 0), &m(outgoing, 1)), 0, "bulk data leaving");
    }

    #[test]
    fn ipv6_extension_headers_are_left_to_user_space() {
        let prog = program(Direction::Arriving);
        assert_eq!(run(&prog, &ipv6_tcp(&[0x5a; 100], Some(0)), &V6), SNAP, "hop-by-hop: kept");
        assert_eq!(run(&prog, &ipv6_tcp(&[0x5a; 100], Some(60)), &V6), SNAP, "destination options: kept");
        assert_eq!(run(&prog, &ipv6_tcp(&[0x5a; 100], None), &V6), 0, "plain TCP bulk: dropped");
        let mut udp = ipv6_tcp(b"GET / HTTP/1.1", None);
        udp[6] = 17;
        assert_eq!(run(&prog, &udp, &V6), 0);
    }

    #[test]
    fn the_program_is_within_the_kernel_limits() {
        for prog in [program(Direction::Arriving), program(Direction::Leaving)] {
            assert!(prog.len() < 4096);
            assert_eq!(prog.last().map(|i| (i.code, i.k)), Some((RET | K, SNAP)));
        }
    }
}
