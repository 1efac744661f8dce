//! A packet socket with a memory-mapped receive ring: `AF_PACKET`, `SOCK_DGRAM` (frames start at
//! the network header whatever the link type), every protocol and interface of the network
//! namespace it is created in, a classic BPF filter so the kernel copies only the packets that
//! matter, and a `TPACKET_V3` ring so those reach the agent in blocks, timestamped by the
//! kernel, without a system call or a copy per packet.
//!
//! The kernel hands a block over when it is full or when its retire timer fires
//! ([`RETIRE_MS`]) and then signals the socket readable: one wake-up per block, not per packet.
//! Reading a block is reading shared memory the kernel does not touch until the block's status
//! word is given back, which is the contract of `Documentation/networking/packet_mmap.rst`.
//!
//! The `unsafe` here is the `setsockopt`/`getsockopt`/`bind` calls with their C structures, and
//! the mapping itself (created, read and unmapped only by this type).
#![allow(unsafe_code)]

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Bytes per ring block (a multiple of the page size), and blocks per ring: a ring starts at
/// 4 blocks of 16 KiB (64 KiB, about 340 packet heads). The whole ring is mapped, so it counts
/// in the agent's RSS: a quiet namespace keeps the small one. Two things make a ring larger:
/// - the kernel dropped for want of room (a burst larger than what arrives while the loop is busy
///   elsewhere): twice the blocks ([`PacketRing::grow`]), up to [`RING_MAX_BYTES`];
/// - its blocks filled faster than [`BUSY_BLOCKS_PER_S`] a second: larger blocks
///   ([`PacketRing::enlarge_blocks`]), up to [`BLOCK_SIZE_MAX`]. The kernel wakes the loop once per
///   block, and a wake-up costs the agent about as much as reading 200 heads (a context switch,
///   its caches cold again): at 5,000 requests/s on 16 KiB blocks the wake-ups were half the
///   capture's CPU.
///
/// Small blocks to start with: the block the kernel is filling is not the agent's to read until
/// it is full or retired, so the smaller it is, the more of the ring the agent can empty while
/// busy elsewhere.
pub const BLOCK_SIZE: u32 = 16 * 1024;
/// The first blocks' size: [`BLOCK_SIZE`], or one page where pages are larger (the kernel
/// refuses blocks that are not a multiple of the page size; arm64 kernels with 64 KiB pages exist).
pub fn first_block_size() -> u32 {
    let page = u32::try_from(rustix::param::page_size()).unwrap_or(BLOCK_SIZE_MAX);
    BLOCK_SIZE.max(page).min(BLOCK_SIZE_MAX)
}
pub const BLOCK_SIZE_MAX: u32 = 128 * 1024;
pub const BLOCKS_FIRST: u32 = 4;
/// The host's own namespace starts at twice that: it carries loopback and every host-network
/// service, and the loop may be busy with a check for a few tens of milliseconds (a 64 KiB ring
/// holds about 35 ms of heads at 5,000 requests/s).
pub const BLOCKS_FIRST_HOST: u32 = 8;
pub const RING_MAX_BYTES: u32 = 1024 * 1024;
/// A ring whose blocks fill faster than this gets larger ones (see [`BLOCK_SIZE`]).
pub const BUSY_BLOCKS_PER_S: u32 = 25;
/// A partly filled block is handed over after this long: the latest a packet reaches the agent.
pub const RETIRE_MS: u32 = 50;
/// Packets taken this long ago have been handed over by every ring (the retire timeout, with
/// as much again for the timer's lateness; the loop reads every ring before it looks at the clock): heads of different rings are put in
/// time order up to then.
pub const SETTLE_DELAY_NS: u64 = 2 * RETIRE_MS as u64 * 1_000_000;

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
/// Linux 4.20: the kernel does not clone what leaves for this socket (`dev_queue_xmit_nit`).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
const BLOCK_LEN: usize = 20;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the frame's `sockaddr_ll` starts.
const SLL_OFFSET: usize = 48;

/// One captured packet: kernel timestamp, `sll_pkttype`, and its bytes from the network header
/// (cut at the filter's snap length).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub ts_ns: u64,
    pub pkttype: u8,
    pub data: &'a [u8],
}

#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Where a capture socket listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface of the namespace, without what leaves them where the kernel allows
    /// (`PACKET_IGNORE_OUTGOING`): a tap on outgoing traffic costs a clone of every packet sent,
    /// bulk data included, before any filter runs.
    AllArriving,
    /// The one interface of this index, both directions (its filter picks).
    One(u32),
}

pub struct PacketRing {
    fd: OwnedFd,
    /// The kernel keeps what leaves away from this socket (see [`Interfaces::AllArriving`]).
    ignores_outgoing: bool,
    map: *mut u8,
    len: usize,
    blocks: u32,
    block_size: u32,
    /// Bytes of the blocks handed over since the last [`PacketRing::take_handed_bytes`].
    handed_bytes: u64,
    /// The block to look at next (the kernel fills them in order).
    next: usize,
    /// Counts read by [`PacketRing::grow`] that the next [`PacketRing::take_stats`] reports.
    carried: (u64, u64),
    /// Packets a grow discarded unread since the last `take_stats` (not the kernel's drops:
    /// they say nothing about the ring's size).
    discarded: u64,
    /// The latest drain that gave blocks back gave back all of them (the ring was full): the
    /// kernel has not reopened the block at `next` yet, and its packet count is stale.
    emptied_full: bool,
}

impl PacketRing {
    /// A capture socket in the calling thread's current network namespace, on `on`, filtered
    /// by `filter` (whose accept value is the snap length). Needs `CAP_NET_RAW`.
    /// It starts with `blocks` blocks (see [`BLOCKS_FIRST`]).
    pub fn open(filter: &[SockFilter], on: Interfaces, blocks: u32) -> io::Result<PacketRing> {
        let block_size = first_block_size();
        let blocks = blocks.clamp(1, RING_MAX_BYTES / block_size);
        // Protocol 0: no packet is queued before the filter and the ring are in place; `bind`
        // below turns capture on.
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = SockFprog {
            len: u16::try_from(filter.len()).map_err(|_| io::Error::other("BPF program too long"))?,
            filter: filter.as_ptr(),
        };
        // SAFETY: the kernel copies the program during the call; `prog` and `filter` outlive it.
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        setsockopt(&fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
        // ENOPROTOOPT before Linux 4.20: what leaves is then captured too (and filtered).
        let ignores_outgoing = on == Interfaces::AllArriving
            && setsockopt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &(1 as libc::c_int)).is_ok();
        let map = map_ring(&fd, blocks, block_size)?;
        let ring = PacketRing {
            fd,
            ignores_outgoing,
            map,
            len: ring_len(blocks, block_size),
            blocks,
            block_size,
            handed_bytes: 0,
            next: 0,
            carried: (0, 0),
            discarded: 0,
            emptied_full: false,
        };
        // SAFETY: a zeroed sockaddr_ll is valid; family, protocol (network order) and ifindex
        // (0: every interface) are what bind needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        if let Interfaces::One(index) = on {
            sll.sll_ifindex = i32::try_from(index).map_err(|_| io::Error::other("interface index out of range"))?;
        }
        // SAFETY: bind(2) with a correctly sized sockaddr_ll.
        let r = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ring)
    }

    /// False once the kernel reported an error on the socket: its interface went down or away
    /// (`ENETDOWN`; the first read clears it). A socket bound to an interface that went away is
    /// unbound and captures nothing; one whose interface only went down and up again would
    /// capture again, but is closed and reopened all the same (simpler, and rare).
    pub fn healthy(&self) -> bool {
        matches!(rustix::net::sockopt::get_socket_error(&self.fd), Ok(Ok(())))
    }

    /// Whether the kernel keeps outgoing packets away from this socket (Linux 4.20 and later).
    pub fn ignores_outgoing(&self) -> bool {
        self.ignores_outgoing
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The ring's size in bytes.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// Doubles the ring's blocks (up to [`RING_MAX_BYTES`]); `Ok(false)` when it is at its
    /// largest. See [`PacketRing::resize`] for what is lost.
    pub fn grow(&mut self) -> io::Result<bool> {
        if self.len >= RING_MAX_BYTES as usize || self.map.is_null() {
            return Ok(false);
        }
        let blocks = (self.blocks * 2).min(RING_MAX_BYTES / self.block_size);
        self.resize(blocks, self.block_size)
    }

    /// Blocks large enough for the kernel to hand over no more than [`BUSY_BLOCKS_PER_S`] a
    /// second at `bytes_per_s` (up to [`BLOCK_SIZE_MAX`]), as many of them as keep the ring at
    /// least its size now and at least [`BLOCKS_FIRST`]; `Ok(false)` when the blocks are large
    /// enough already. See [`PacketRing::resize`] for what is lost.
    pub fn enlarge_blocks(&mut self, bytes_per_s: f64) -> io::Result<bool> {
        let wanted = bytes_per_s / f64::from(BUSY_BLOCKS_PER_S);
        let mut size = self.block_size;
        while f64::from(size) < wanted && size < BLOCK_SIZE_MAX {
            size *= 2;
        }
        if size == self.block_size || self.map.is_null() {
            return Ok(false);
        }
        let blocks = (self.len as u32 / size).max(BLOCKS_FIRST).min(RING_MAX_BYTES / size).max(1);
        self.resize(blocks, size)
    }

    /// Swaps the ring for one of `blocks` blocks of `block_size` bytes; `Ok(true)` when it is
    /// larger in either. Packets of the block the kernel was filling, and those that arrive while
    /// the ring is swapped, are lost: they are counted as dropped in the next
    /// [`PacketRing::take_stats`] (accepted by the kernel but never handed over). If the new ring
    /// cannot be had, the old one is set up again; if even that fails the socket has no ring
    /// (the error says so) and the caller drops it.
    fn resize(&mut self, blocks: u32, block_size: u32) -> io::Result<bool> {
        // What the ring holds unread is lost with it: the released blocks from `next` on, and
        // the block the kernel is filling after them (it keeps that one's packet count current;
        // blocks given back before it carry stale counts until reopened, so they are not read).
        let mut unread = 0u64;
        for k in 0..self.blocks as usize {
            let block = (self.next + k) % self.blocks as usize;
            let released = self.status(block).load(Ordering::Acquire) & TP_STATUS_USER != 0;
            if released || !(k == 0 && self.emptied_full) {
                unread += u64::from(self.packets_in(block).load(Ordering::Acquire));
            }
            if !released {
                break;
            }
        }
        let (accepted, dropped) = self.kernel_stats();
        self.carried = (self.carried.0 + accepted, self.carried.1 + dropped);
        self.discarded += unread;
        self.emptied_full = false;
        self.unmap();
        // A ring is torn down by asking for one of zero blocks (it must not be mapped).
        // SAFETY: a zeroed tpacket_req3 is the documented "no ring" request.
        let none: TpacketReq3 = unsafe { std::mem::zeroed() };
        setsockopt(&self.fd, SOL_PACKET, PACKET_RX_RING, &none)?;
        let (map, blocks, block_size) = match map_ring(&self.fd, blocks, block_size) {
            Ok(map) => (map, blocks, block_size),
            Err(_) => {
                // The larger request may have been set before its mapping failed: tear it down
                // again (the kernel refuses a ring while one is set).
                setsockopt(&self.fd, SOL_PACKET, PACKET_RX_RING, &none)?;
                (map_ring(&self.fd, self.blocks, self.block_size)?, self.blocks, self.block_size)
            }
        };
        self.map = map;
        self.len = ring_len(blocks, block_size);
        self.next = 0;
        let larger = blocks > self.blocks || block_size > self.block_size;
        self.blocks = blocks;
        self.block_size = block_size;
        Ok(larger)
    }

    /// Bytes per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Bytes of the blocks handed over (their packets and headers) since the last call.
    pub fn take_handed_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.handed_bytes)
    }

    fn unmap(&mut self) {
        if !self.map.is_null() {
            // SAFETY: the mapping made by `map_ring`, unmapped once (the pointer is cleared).
            unsafe {
                libc::munmap(self.map.cast(), self.len);
            }
            self.map = std::ptr::null_mut();
        }
    }

    /// Hands every packet of every block the kernel has released to `on_frame`, in order, and
    /// gives the blocks back. Returns the number of packets.
    pub fn drain(&mut self, mut on_frame: impl FnMut(Frame<'_>)) -> usize {
        let blocks = self.blocks as usize;
        let mut n = 0;
        if self.map.is_null() {
            return 0;
        }
        let (mut released, mut handed) = (0, 0);
        for _ in 0..blocks {
            let block = self.next;
            let status = self.status(block);
            if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the block is ours until its status is set back to TP_STATUS_KERNEL below;
            // the kernel writes no byte of it meanwhile. Its bounds are inside the mapping.
            let size = self.block_size as usize;
            let bytes = unsafe { std::slice::from_raw_parts(self.map.add(block * size), size) };
            n += frames(bytes, &mut on_frame);
            handed += u64::from(u32_at(bytes, BLOCK_LEN).min(self.block_size));
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            self.next = (block + 1) % blocks;
            released += 1;
        }
        if released > 0 {
            self.emptied_full = released == blocks;
        }
        self.handed_bytes += handed;
        n
    }

    /// Since the last call: packets the filter accepted, packets the kernel dropped for want of
    /// room (what says the ring is too small), and packets a [`PacketRing::grow`] discarded
    /// unread.
    pub fn take_stats(&mut self) -> (u64, u64, u64) {
        let (accepted, dropped) = self.kernel_stats();
        let carried = std::mem::take(&mut self.carried);
        (accepted + carried.0, dropped + carried.1, std::mem::take(&mut self.discarded))
    }

    /// The kernel's counters since they were last read (reading resets them).
    fn kernel_stats(&self) -> (u64, u64) {
        let mut s = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: getsockopt(2) into a correctly sized tpacket_stats_v3.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut s as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return (0, 0);
        }
        (u64::from(s.packets), u64::from(s.drops))
    }

    /// A block's packet count: the kernel keeps it current while it fills the block, and
    /// resets it when it opens the block again (so a block given back counts 0 until then).
    fn packets_in(&self, block: usize) -> &AtomicU32 {
        // SAFETY: as for `status`: an aligned word of a block header inside the mapping.
        unsafe { AtomicU32::from_ptr(self.map.add(block * self.block_size as usize + BLOCK_NUM_PKTS).cast()) }
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: every block starts page-aligned inside the mapping, so its status word is
        // aligned and in bounds; the kernel and this process share it atomically.
        unsafe { AtomicU32::from_ptr(self.map.add(block * self.block_size as usize + BLOCK_STATUS).cast()) }
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        self.unmap();
    }
}

fn ring_len(blocks: u32, block_size: u32) -> usize {
    (block_size * blocks) as usize
}

/// Asks the kernel for a ring of `blocks` blocks of `block_size` bytes on `fd` and maps it.
fn map_ring(fd: &OwnedFd, blocks: u32, block_size: u32) -> io::Result<*mut u8> {
    let req = TpacketReq3 {
        block_size,
        block_nr: blocks,
        // Only used for the kernel's consistency check in V3 (frames are packed per block).
        frame_size: 2048,
        frame_nr: block_size / 2048 * blocks,
        retire_blk_tov: RETIRE_MS,
        sizeof_priv: 0,
        feature_req_word: 0,
    };
    setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req)?;
    // SAFETY: maps the ring the kernel just allocated for this socket; checked below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ring_len(blocks, block_size),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(map.cast())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// The packets of one released block (`struct tpacket_block_desc` then `tpacket3_hdr` frames),
/// every offset checked against the block.
fn frames(block: &[u8], on_frame: &mut impl FnMut(Frame<'_>)) -> usize {
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]));
    let count = u32_at(block, BLOCK_NUM_PKTS);
    let mut at = u32_at(block, BLOCK_FIRST_PKT) as usize;
    let mut n = 0;
    for _ in 0..count {
        let Some(h) = block.get(at..) else { break };
        let next = u32_at(h, 0) as usize;
        let (sec, nsec, snaplen, mac) = (u32_at(h, 4), u32_at(h, 8), u32_at(h, 12) as usize, u16_at(h, 24) as usize);
        let pkttype = h.get(SLL_OFFSET + 10).copied().unwrap_or(0);
        if let Some(data) = h.get(mac..mac.saturating_add(snaplen)) {
            on_frame(Frame { ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec), pkttype, data });
            n += 1;
        }
        if next == 0 {
            break;
        }
        at = at.saturating_add(next);
    }
    n
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, correctly sized option structure for (level, name).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel takes only blocks that are whole pages: on a 64 KiB-page host the first
    /// blocks are one page, elsewhere BLOCK_SIZE.
    #[test]
    fn first_blocks_are_whole_pages() {
        let page = rustix::param::page_size() as u32;
        let size = first_block_size();
        assert_eq!(size % page, 0, "{size} is not a multiple of the {page}-byte page");
        assert_eq!(size, BLOCK_SIZE.max(page));
    }

    /// A block as the kernel lays it out, with two frames, one of them cut short.
    #[test]
    fn frames_are_read_with_bounds_checked() {
        let mut block = vec![0u8; 1024];
        block[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4].copy_from_slice(&3u32.to_ne_bytes());
        block[BLOCK_FIRST_PKT..BLOCK_FIRST_PKT + 4].copy_from_slice(&64u32.to_ne_bytes());
        let frame = |b: &mut [u8], at: usize, next: u32, sec: u32, snap: u32, mac: u16, pkttype: u8| {
            b[at..at + 4].copy_from_slice(&next.to_ne_bytes());
            b[at + 4..at + 8].copy_from_slice(&sec.to_ne_bytes());
            b[at + 8..at + 12].copy_from_slice(&7u32.to_ne_bytes());
            b[at + 12..at + 16].copy_from_slice(&snap.to_ne_bytes());
            b[at + 24..at + 26].copy_from_slice(&mac.to_ne_bytes());
            b[at + SLL_OFFSET + 10] = pkttype;
            b[at + mac as usize..at + mac as usize + snap as usize].fill(0xab);
        };
        frame(&mut block, 64, 160, 2, 20, 80, 4);
        frame(&mut block, 224, 160, 3, 10, 80, 0);
        // The third claims bytes past the block's end: skipped, not read.
        frame(&mut block, 384, 0, 4, 10, 80, 0);
        block[384 + 12..384 + 16].copy_from_slice(&5000u32.to_ne_bytes());
        let mut seen = Vec::new();
        let n = frames(&block, &mut |f: Frame<'_>| seen.push((f.ts_ns, f.pkttype, f.data.len())));
        assert_eq!(n, 2);
        assert_eq!(seen, vec![(2_000_000_007, 4, 20), (3_000_000_007, 0, 10)]);
        assert!(frames(&[0u8; 8], &mut |_: Frame<'_>| panic!("no frame in a short block")) == 0);
    }
}
