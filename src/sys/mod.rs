//! Thin wrappers over kernel interfaces that are not files: netlink sockets, namespaces, a
//! socket's peer credentials, and packet capture rings. Everything goes through rustix's safe API
//! except `peercred`, one commented `getsockopt` call (rustix's own wrapper is unsound for a pid
//! the kernel reports as 0), `packet_ring` (socket options with C structures and the ring's
//! memory mapping, which rustix does not wrap), and `route_socket`'s `bind`/`getsockname` with a
//! `sockaddr_nl` (rustix 0.38 has no netlink address), and `dgram` (`recvmmsg` with its control
//! messages: truncation, `SCM_CREDENTIALS`, `SO_RXQ_OVFL`). `http_filter` is the capture's BPF
//! program. `malloc`: glibc's `mallopt` and `malloc_trim`, one call each. `cpu_clock`: another
//! process's CPU clock (`clock_gettime` with the id `clock_getcpuclockid` would give).
//! `resident`: `madvise(MADV_DONTNEED)` on mappings that hold only a file's content.

pub mod cpu_clock;
pub mod dgram;
pub mod http_filter;
pub mod malloc;
pub mod netlink;
pub mod netns;
pub mod packet_ring;
pub mod peercred;
pub mod resident;
pub mod route_socket;
