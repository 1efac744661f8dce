//! Thin wrappers over kernel interfaces that are not files: netlink sockets, namespaces, a
//! socket's peer credentials, and packet capture rings. Everything goes through rustix's safe API
//! except `peercred`, one commented `getsockopt` call (rustix's own wrapper is unsound for a pid
//! the kernel reports as 0), and `packet_ring` (socket options with C structures and the ring's
//! memory mapping, which rustix does not wrap). `http_filter` is the capture's BPF program.

pub mod http_filter;
pub mod netlink;
pub mod netns;
pub mod packet_ring;
pub mod peercred;
