//! Thin wrappers over kernel interfaces that are not files: netlink sockets, namespaces and a
//! socket's peer credentials. Everything goes through rustix's safe API except `peercred`, one
//! commented `getsockopt` call (rustix's own wrapper is unsound for a pid the kernel reports as 0).

pub mod netlink;
pub mod netns;
pub mod peercred;
