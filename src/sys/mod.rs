//! Thin wrappers over kernel interfaces that are not files: netlink sockets and namespaces.
//! Everything here goes through rustix's safe API; no `unsafe`.

pub mod netlink;
pub mod netns;
