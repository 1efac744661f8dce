//! The floors the benchmarks compare against: the kernel reads any collector of these facts must
//! make, and nothing else. Shared by `budget.rs`, `process_cycle.rs` and `connections_cycle.rs`
//! (each includes this file with `#[path]`, and uses the floors it needs).
#![allow(dead_code)]

use rustix::fd::AsFd;
use rustix::fs::{openat, Mode, OFlags, RawDir, CWD};
use std::io::Write;
use std::mem::MaybeUninit;
use sts_agent::parse::inet_diag::{dump_request, dump_request_both_families, messages, Msg, STATES_OWNED};
use sts_agent::sys::netlink::{DiagSocket, RECV_BUFFER};

/// List `/proc`, then open, read once (one buffer, reused) and close `stat`, `statm` and `io`
/// of every pid.
pub struct ProcFloor {
    proc_fd: rustix::fd::OwnedFd,
    dents: Vec<MaybeUninit<u8>>,
    buf: Vec<u8>,
    pids: Vec<u32>,
}

impl ProcFloor {
    pub fn new() -> ProcFloor {
        ProcFloor {
            proc_fd: openat(CWD, "/proc", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap(),
            dents: vec![MaybeUninit::uninit(); 64 * 1024],
            buf: vec![0; 64 * 1024],
            pids: Vec::with_capacity(8192),
        }
    }

    /// Bytes read.
    pub fn cycle(&mut self) -> usize {
        self.pids.clear();
        rustix::fs::seek(&self.proc_fd, rustix::fs::SeekFrom::Start(0)).unwrap();
        let mut dir = RawDir::new(&self.proc_fd, &mut self.dents);
        while let Some(Ok(e)) = dir.next() {
            if let Ok(pid) = std::str::from_utf8(e.file_name().to_bytes()).unwrap_or("").parse::<u32>() {
                self.pids.push(pid);
            }
        }
        let mut total = 0;
        let mut path = [0u8; 32];
        for &pid in &self.pids {
            for f in ["stat", "statm", "io"] {
                let s = pid_path(&mut path, pid, f);
                if let Ok(fd) = openat(&self.proc_fd, s, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
                    total += rustix::io::read(fd.as_fd(), &mut self.buf).unwrap_or(0);
                }
            }
        }
        total
    }
}

fn pid_path<'a>(buf: &'a mut [u8; 32], pid: u32, f: &str) -> &'a std::ffi::CStr {
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(c, "{pid}/{f}\0");
    let n = c.position() as usize;
    std::ffi::CStr::from_bytes_with_nul(&buf[..n]).unwrap()
}

/// The inet_diag dumps of TCP sockets (the agent's states, with `tcp_info`) in this thread's
/// namespace, received into one buffer and not parsed: one request per family (IPv4, then IPv6),
/// as `ss` and the documented `SOCK_DIAG_BY_FAMILY` request make them, each a walk of the
/// kernel's whole socket hash table; or ([`DumpFloor::one_walk`]) both families in one request,
/// the way the agent asks.
pub struct DumpFloor {
    sock: DiagSocket,
    requests: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

impl DumpFloor {
    pub fn new() -> DumpFloor {
        DumpFloor::with(vec![
            dump_request(2, STATES_OWNED, true).to_vec(),
            dump_request(10, STATES_OWNED, true).to_vec(),
        ])
    }

    /// Both families in one request (`TCPDIAG_GETSOCK`): one walk of the hash table.
    pub fn one_walk() -> DumpFloor {
        DumpFloor::with(vec![dump_request_both_families(STATES_OWNED, true).to_vec()])
    }

    fn with(requests: Vec<Vec<u8>>) -> DumpFloor {
        DumpFloor { sock: DiagSocket::open().unwrap(), requests, buf: vec![0; RECV_BUFFER] }
    }

    /// Bytes received.
    pub fn cycle(&mut self) -> usize {
        let mut bytes = 0;
        for r in &mut self.requests {
            self.sock
                .dump(r, &mut self.buf, |d| {
                    bytes += d.len();
                    // Only the end of the dump is looked for: the floor parses nothing else.
                    Ok(!messages(d).any(|m| matches!(m, Ok(Msg::Done))))
                })
                .unwrap();
        }
        bytes
    }
}
