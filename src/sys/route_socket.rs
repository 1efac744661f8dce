//! A `NETLINK_ROUTE` socket subscribed to link notifications (`RTMGRP_LINK`): which interfaces a
//! network namespace has (a dump), and whether that changed since the last look (any queued
//! notification, or an overflow that lost some). The socket stays bound to the namespace it was
//! created in, so one socket per namespace serves for as long as the namespace lives.
//!
//! The socket is blocking with a receive timeout: a dump is answered by the kernel at once, and
//! the timeout only keeps a bug from hanging the loop (as in [`super::netlink`]). Notifications
//! are read with `MSG_DONTWAIT`, so a readiness-driven caller never blocks.
//!
//! The `unsafe` here is `bind` (with the notification group) and `getsockname` (to learn the
//! port id the kernel chose, which tells the dump's replies from notifications), with
//! `sockaddr_nl`; rustix 0.38 has no netlink address.

use crate::parse::rtnl_link::{
    dump_request, messages, messages_with_header, Link, LinkMsg, AF_UNSPEC, NLM_F_DUMP_INTR,
};
use crate::sys::netlink::DumpError;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{recv, send, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::io;
use std::time::Duration;

/// `RTMGRP_LINK`: the multicast group bit of `RTNLGRP_LINK` (1), link created, changed, deleted.
const RTMGRP_LINK: u32 = 1;
/// The receive room asked for notifications (kernel memory, used only while they wait).
const NOTIFICATION_ROOM: usize = 1 << 20;

pub struct RouteSocket {
    fd: OwnedFd,
    /// The socket's netlink port id: the `nlmsg_pid` of the replies to its own requests.
    port: u32,
    seq: u32,
    /// A notification was consumed by a dump (or the socket overflowed during one): the next
    /// `take_changed` reports a change even if nothing else is queued.
    changed: bool,
    /// How often the kernel dropped notifications for want of room (`ENOBUFS`).
    overruns: u64,
}

impl RouteSocket {
    /// A socket in the calling thread's current network namespace, subscribed to its link
    /// notifications from now on.
    pub fn open() -> io::Result<RouteSocket> {
        // For NETLINK_ROUTE rustix takes no protocol (it is 0).
        let fd = rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None)?;
        // Room for the notifications of a burst of container starts between two checks (each
        // start or stop sends a few dozen in the host's namespace; the default room holds about
        // 75): past it they are lost and the namespace's links must be dumped again. Beyond the
        // system's limit only as root; the default room otherwise.
        let room = rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, NOTIFICATION_ROOM);
        if room.is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, NOTIFICATION_ROOM);
        }
        let port = bind_groups(&fd, RTMGRP_LINK)?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(2)),
        )?;
        Ok(RouteSocket { fd, port, seq: 0, changed: false, overruns: 0 })
    }

    /// The socket (readable: notifications are queued).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Drains queued notifications without blocking (`MSG_DONTWAIT`); true when any link
    /// notification arrived since the last call, or the caller must dump again (see
    /// [`RouteSocket::take_link_changes`]). `buf`: the caller's reused buffer (at least
    /// [`crate::sys::netlink::RECV_BUFFER`]).
    pub fn take_changed(&mut self, buf: &mut [u8]) -> bool {
        let mut any = false;
        let must_dump = self.take_link_changes(buf, |_, _| any = true);
        must_dump || any
    }

    /// Drains queued notifications without blocking (`MSG_DONTWAIT`), handing each link
    /// notification to `on_change` in order (`true`: the link was deleted, or left the
    /// namespace). Returns true when they cannot bring the caller's picture up to date: the
    /// socket overflowed (`ENOBUFS`: changes were lost), one was cut short or did not parse, or a
    /// dump since the last call consumed some. The caller must dump again then.
    ///
    /// An edge-triggered caller should call this again after each [`RouteSocket::dump_links`]:
    /// a notification the dump consumed leaves nothing readable behind, only this flag.
    pub fn take_link_changes(&mut self, buf: &mut [u8], mut on_change: impl FnMut(bool, &Link<'_>)) -> bool {
        let mut must_dump = std::mem::take(&mut self.changed);
        loop {
            match recv(&self.fd, buf, RecvFlags::DONTWAIT | RecvFlags::TRUNC) {
                Ok(n) if n > buf.len() => must_dump = true,
                Ok(n) => {
                    // A notification (or a leftover of a failed dump: the same links again).
                    for m in messages(buf.get(..n).unwrap_or(&[])) {
                        match m {
                            // A bridge's word on one of its ports (AF_BRIDGE) is not the link's.
                            Ok(LinkMsg::Link { deleted, link, .. }) if link.family == AF_UNSPEC => {
                                on_change(deleted, &link)
                            }
                            Ok(_) => {}
                            Err(_) => must_dump = true,
                        }
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::NOBUFS) => {
                    self.overruns += 1;
                    must_dump = true;
                }
                Err(Errno::AGAIN) => return must_dump,
                // Unexpected; a caller that dumps again learns what the socket can still tell.
                Err(_) => return true,
            }
        }
    }

    /// Dumps every link of the namespace, calling `on_link` for each (borrowed from `buf`, the
    /// caller's reused buffer, at least [`crate::sys::netlink::RECV_BUFFER`]), until
    /// `NLMSG_DONE`. Notifications that arrive in between are not given to `on_link`; they make
    /// the next [`RouteSocket::take_changed`] true, since the dump may already be stale. So does
    /// a dump the kernel marks interrupted (the link list changed while it was produced).
    pub fn dump_links(&mut self, buf: &mut [u8], mut on_link: impl FnMut(&Link<'_>)) -> Result<(), DumpError> {
        // Whatever is queued predates the dump: it only says the caller's picture changed. Read
        // it first, so that a queue left full by a burst of notifications has room for the
        // dump's replies at once (the kernel holds a dump back while the queue is full).
        let queued = self.take_changed(buf);
        self.changed |= queued;
        // Sequence 0 is what notifications carry; never use it for a request.
        self.seq = self.seq.wrapping_add(1).max(1);
        send(&self.fd, &dump_request(self.seq), SendFlags::empty())?;
        loop {
            // TRUNC makes recv return the datagram's real length, so truncation is detected.
            let n = match recv(&self.fd, buf, RecvFlags::TRUNC) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                // Notifications were lost, not the dump (the kernel paces a dump to the room
                // in the receive queue instead of dropping its replies).
                Err(Errno::NOBUFS) => {
                    self.overruns += 1;
                    self.changed = true;
                    continue;
                }
                Err(e) => {
                    self.drain(buf);
                    return Err(e.into());
                }
            };
            if n > buf.len() {
                self.drain(buf);
                return Err(DumpError::Truncated { len: n, buffer: buf.len() });
            }
            match self.dump_datagram(buf.get(..n).unwrap_or(&[]), &mut on_link) {
                Ok(false) => {}
                Ok(true) => return Ok(()),
                Err(e) => {
                    self.drain(buf);
                    return Err(e);
                }
            }
        }
    }

    /// One datagram received during a dump: true when it ends the dump.
    fn dump_datagram(&mut self, datagram: &[u8], on_link: &mut impl FnMut(&Link<'_>)) -> Result<bool, DumpError> {
        let mut done = false;
        for m in messages_with_header(datagram) {
            let (header, m) = m.map_err(DumpError::Malformed)?;
            let ours = header.port == self.port && header.seq == self.seq;
            match m {
                LinkMsg::Link { deleted: false, link, .. } if ours && link.family == AF_UNSPEC => {
                    self.changed |= header.flags & NLM_F_DUMP_INTR != 0;
                    on_link(&link);
                }
                // A bridge's word on a port (AF_BRIDGE) changes no link.
                LinkMsg::Link { link, .. } if link.family != AF_UNSPEC => {}
                LinkMsg::Link { .. } => self.changed = true,
                LinkMsg::Done { .. } if ours => done = true,
                LinkMsg::Error { errno, .. } if ours && errno != 0 => return Err(DumpError::Kernel(errno)),
                // Acknowledgements, other types, and what is left of an earlier dump.
                LinkMsg::Done { .. } | LinkMsg::Error { .. } | LinkMsg::Other => {}
            }
        }
        Ok(done)
    }

    /// Reads what is queued after a failed dump so the next one starts clean; whatever it was,
    /// the caller's picture may be stale, so the next `take_changed` says so.
    fn drain(&mut self, buf: &mut [u8]) {
        loop {
            match recv(&self.fd, buf, RecvFlags::DONTWAIT) {
                Ok(_) | Err(Errno::INTR) | Err(Errno::NOBUFS) => self.changed = true,
                Err(_) => return,
            }
        }
    }
}

/// Binds `fd` to an automatically chosen port with the multicast `groups`, and returns the port.
#[allow(unsafe_code)]
fn bind_groups(fd: &OwnedFd, groups: u32) -> io::Result<u32> {
    // SAFETY: all-zero is a valid sockaddr_nl (plain integers).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    let size = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr_nl and `size` its size; the kernel only reads it.
    if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut len = size;
    // SAFETY: the kernel writes at most `len` bytes into `addr`, a live sockaddr_nl.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_nl).cast(), &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(addr.nl_pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::RECV_BUFFER;
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    use std::collections::BTreeMap;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    static NAMESPACES: AtomicU32 = AtomicU32::new(0);

    /// A fresh network namespace with a unique name, deleted (with its links) on drop.
    struct TestNs {
        name: String,
    }

    impl TestNs {
        fn new() -> TestNs {
            let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
            let ns = TestNs { name: format!("rtnl-{}-{n}", std::process::id()) };
            run_ip(&["netns", "add", &ns.name]);
            ns
        }

        /// `ip -n <ns> <args>`.
        fn ip(&self, args: &[&str]) {
            run_ip(&[&["-n", self.name.as_str()][..], args].concat());
        }

        /// A socket opened by a thread that entered the namespace (only that thread moves).
        fn open(&self) -> RouteSocket {
            let path = format!("/run/netns/{}", self.name);
            std::thread::spawn(move || {
                let ns = std::fs::File::open(&path).expect("open the namespace");
                move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).expect("setns");
                RouteSocket::open().expect("open the route socket")
            })
            .join()
            .unwrap()
        }

        /// (name → (kind, up)) as `ip -d -j link show` reports it: an independent reading.
        fn ip_links(&self) -> BTreeMap<String, (Option<String>, bool)> {
            ip_json(&["-n", &self.name, "-d", "-j", "link", "show"])
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        }
    }

    fn run_ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    fn ip_json(args: &[&str]) -> BTreeMap<String, (Option<String>, bool)> {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut map = BTreeMap::new();
        for l in links.as_array().unwrap() {
            let kind = l["linkinfo"]["info_kind"].as_str().map(str::to_owned);
            let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
            map.insert(l["ifname"].as_str().unwrap().to_owned(), (kind, up));
        }
        map
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        index: u32,
        name: String,
        kind: Option<String>,
        up: bool,
        loopback: bool,
    }

    fn dump(s: &mut RouteSocket, buf: &mut [u8]) -> Vec<Seen> {
        let mut seen = Vec::new();
        s.dump_links(buf, |l| {
            seen.push(Seen {
                index: l.index,
                name: String::from_utf8(l.name.to_vec()).unwrap(),
                kind: l.kind.map(|k| String::from_utf8(k.to_vec()).unwrap()),
                up: l.is_up(),
                loopback: l.is_loopback(),
            })
        })
        .expect("dump");
        seen
    }

    fn by_name(seen: &[Seen]) -> BTreeMap<String, (Option<String>, bool)> {
        seen.iter().map(|l| (l.name.clone(), (l.kind.clone(), l.up))).collect()
    }

    /// Drains until a call reports no change (deferred notifications, such as operational
    /// state changes, follow a change by up to a second), then checks that nothing arrives in
    /// a further 300 ms of nothing changing.
    fn settle(s: &mut RouteSocket, buf: &mut [u8]) {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(250));
            if !s.take_changed(buf) {
                std::thread::sleep(Duration::from_millis(300));
                assert!(!s.take_changed(buf), "a notification with nothing changing");
                return;
            }
        }
        panic!("link notifications did not stop within 5 s");
    }

    #[test]
    fn a_dump_shows_every_link_with_its_kind_and_flags() {
        let ns = TestNs::new();
        ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "dev", "va"]);
        ns.ip(&["link", "set", "vb", "master", "br0"]);
        for up in ["lo", "va", "br0"] {
            ns.ip(&["link", "set", up, "up"]);
        }
        let mut s = ns.open();
        let mut buf = vec![0u8; RECV_BUFFER];
        let seen = dump(&mut s, &mut buf);
        let get =
            |name: &str| seen.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("{name} in {seen:?}")).clone();
        let lo = get("lo");
        assert!(lo.loopback && lo.up && lo.kind.is_none(), "{lo:?}");
        assert_eq!(lo.index, 1);
        let kinds = |name: &str| {
            let l = get(name);
            assert!(!l.loopback);
            (l.kind, l.up)
        };
        let k = |s: &str| Some(s.to_owned());
        assert_eq!(kinds("va"), (k("veth"), true));
        assert_eq!(kinds("vb"), (k("veth"), false));
        assert_eq!(kinds("br0"), (k("bridge"), true));
        assert_eq!(kinds("vx0"), (k("vxlan"), false));
        assert_eq!(seen.len(), 5, "{seen:?}");
        // The same as ip reads, and the same again on a second dump (a new sequence number).
        assert_eq!(by_name(&seen), ns.ip_links());
        assert_eq!(dump(&mut s, &mut buf), seen);
    }

    #[test]
    fn a_bridges_word_on_its_port_is_not_the_ports_own() {
        // A bridge tells of its ports in AF_BRIDGE messages on the same group: flags, no kind.
        // Taken as the port's own, a veth would look like a NIC.
        let ns = TestNs::new();
        ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "vb", "master", "br0"]);
        for up in ["va", "vb", "br0"] {
            ns.ip(&["link", "set", up, "up"]);
        }
        let mut s = ns.open();
        let mut buf = vec![0u8; RECV_BUFFER];
        let changes = |s: &mut RouteSocket, buf: &mut [u8]| {
            std::thread::sleep(Duration::from_millis(300));
            let mut got = Vec::new();
            let gap = s.take_link_changes(buf, |deleted, l| {
                got.push((deleted, l.family, String::from_utf8_lossy(l.name).into_owned(), l.kind.map(<[u8]>::to_vec)))
            });
            assert!(!gap, "no overflow here: {got:?}");
            got
        };
        let _ = changes(&mut s, &mut buf);
        // The port's cost is the bridge's business: an AF_BRIDGE message only.
        let out = Command::new("bridge").args(["-n", &ns.name, "link", "set", "dev", "vb", "cost", "7"]).output();
        assert!(out.as_ref().is_ok_and(|o| o.status.success()), "bridge link set: {out:?}");
        let got = changes(&mut s, &mut buf);
        assert!(got.iter().all(|c| c.1 == 0 && (c.2 != "vb" || c.3.as_deref() == Some(&b"veth"[..]))), "{got:?}");
        // The port's own change still comes, as the link it is.
        ns.ip(&["link", "set", "vb", "down"]);
        let got = changes(&mut s, &mut buf);
        assert!(got.iter().any(|c| c.2 == "vb" && c.3.as_deref() == Some(&b"veth"[..])), "{got:?}");
        assert!(got.iter().all(|c| c.1 == 0), "{got:?}");
    }

    #[test]
    fn adding_changing_and_removing_links_is_noticed_and_quiet_is_not() {
        let ns = TestNs::new();
        let mut s = ns.open();
        let mut buf = vec![0u8; RECV_BUFFER];
        assert!(!s.take_changed(&mut buf), "nothing changed since the socket was opened");
        ns.ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
        assert!(s.take_changed(&mut buf), "a link added");
        settle(&mut s, &mut buf);
        ns.ip(&["link", "set", "vc", "up"]);
        assert!(s.take_changed(&mut buf), "a link set up");
        settle(&mut s, &mut buf);
        ns.ip(&["link", "add", "br1", "type", "bridge"]);
        settle(&mut s, &mut buf);
        ns.ip(&["link", "set", "vd", "master", "br1"]);
        assert!(s.take_changed(&mut buf), "a link enslaved to a bridge");
        settle(&mut s, &mut buf);
        ns.ip(&["link", "del", "vc"]);
        assert!(s.take_changed(&mut buf), "a link pair deleted");
        settle(&mut s, &mut buf);
        // Changes in another namespace (this one's links are untouched) are not this socket's.
        let other = TestNs::new();
        other.ip(&["link", "add", "ve", "type", "veth", "peer", "name", "vf"]);
        other.ip(&["link", "set", "ve", "up"]);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!s.take_changed(&mut buf), "another namespace's change");
        assert_eq!(by_name(&dump(&mut s, &mut buf)), ns.ip_links());
        assert!(!s.take_changed(&mut buf));
    }

    #[test]
    fn notifications_queued_before_a_dump_are_not_links_but_make_it_stale() {
        let ns = TestNs::new();
        let mut s = ns.open();
        let mut buf = vec![0u8; RECV_BUFFER];
        // Queued before the dump's replies and not drained: a new link (which the dump also
        // lists), and one added and deleted again (which it does not).
        ns.ip(&["link", "add", "vg", "type", "veth", "peer", "name", "vh"]);
        ns.ip(&["link", "add", "vi", "type", "veth", "peer", "name", "vj"]);
        ns.ip(&["link", "del", "vi"]);
        let seen = dump(&mut s, &mut buf);
        let mut names: Vec<&str> = seen.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["lo", "vg", "vh"], "each link once, nothing from the notifications");
        assert!(s.changed, "the dump consumed notifications, so it may be stale");
        assert!(s.take_changed(&mut buf));
        settle(&mut s, &mut buf);
        assert!(!s.changed);
    }

    /// A `nlmsghdr` + `ifinfomsg` + `IFLA_IFNAME` message (or a bare header and `payload`).
    fn nlmsg(ty: u16, flags: u16, seq: u32, port: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&port.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    fn link_payload(index: u32, name: &[u8; 3]) -> Vec<u8> {
        let mut p = vec![0u8; 4];
        p.extend_from_slice(&index.to_ne_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&3u16.to_ne_bytes());
        p.extend_from_slice(name);
        p.push(0);
        p
    }

    /// Datagrams interleaving with a dump, built by hand since the kernel's timing cannot be
    /// forced: only the dump's own entries (its port and sequence number) reach `on_link`.
    #[test]
    fn only_the_dumps_own_replies_are_links() {
        let ns = TestNs::new();
        let mut s = ns.open();
        s.seq = 7;
        let (port, multi) = (s.port, 0x2);
        let mut names = Vec::new();
        let mut feed = |s: &mut RouteSocket, d: &[u8]| {
            s.dump_datagram(d, &mut |l: &Link<'_>| names.push(String::from_utf8(l.name.to_vec()).unwrap()))
        };
        let ours =
            [nlmsg(16, multi, 7, port, &link_payload(1, b"aaa")), nlmsg(16, multi, 7, port, &link_payload(2, b"bbb"))];
        assert!(!feed(&mut s, &ours.concat()).unwrap());
        assert!(!s.changed);
        // Notifications: from the kernel (port 0), from another process's request (its port and
        // sequence), one that happens to carry this dump's sequence number, and a deletion.
        for n in [
            nlmsg(16, 0, 0, 0, &link_payload(3, b"ccc")),
            nlmsg(16, 0, 55, 4242, &link_payload(4, b"ddd")),
            nlmsg(16, 0, 7, port.wrapping_add(1), &link_payload(5, b"eee")),
            nlmsg(17, 0, 0, 0, &link_payload(2, b"bbb")),
        ] {
            s.changed = false;
            assert!(!feed(&mut s, &n).unwrap());
            assert!(s.changed, "a notification marks the dump stale");
        }
        // What is left of an earlier dump ends nothing; an interrupted dump's entry is given but
        // marks it stale; this dump's NLMSG_DONE ends it.
        s.changed = false;
        assert!(!feed(&mut s, &nlmsg(3, multi, 6, port, &0u32.to_ne_bytes())).unwrap());
        assert!(!feed(&mut s, &nlmsg(2, 0, 6, port, &(-16i32).to_ne_bytes())).unwrap());
        assert!(!s.changed);
        assert!(!feed(&mut s, &nlmsg(16, multi | NLM_F_DUMP_INTR, 7, port, &link_payload(6, b"fff"))).unwrap());
        assert!(s.changed);
        assert!(feed(&mut s, &nlmsg(3, multi, 7, port, &0u32.to_ne_bytes())).unwrap());
        assert!(matches!(feed(&mut s, &nlmsg(2, 0, 7, port, &(-16i32).to_ne_bytes())), Err(DumpError::Kernel(-16))));
        assert!(matches!(feed(&mut s, &nlmsg(16, 0, 7, port, &[0; 8])), Err(DumpError::Malformed(_))));
        assert_eq!(names, ["aaa", "bbb", "fff"]);
    }

    #[test]
    fn an_overflow_counts_as_a_change_and_a_dump_still_works() {
        let ns = TestNs::new();
        ns.ip(&["link", "add", "vk", "type", "veth", "peer", "name", "vl"]);
        let mut s = ns.open();
        // The smallest receive buffer the kernel allows holds a few notifications at most.
        rustix::net::sockopt::set_socket_recv_buffer_size(&s.fd, 1).unwrap();
        let flood = |ns: &TestNs| {
            for i in 0..20 {
                ns.ip(&["link", "set", "vk", if i % 2 == 0 { "up" } else { "down" }]);
            }
        };
        flood(&ns);
        let mut buf = vec![0u8; RECV_BUFFER];
        assert!(s.take_changed(&mut buf));
        assert!(s.overruns >= 1, "ENOBUFS was seen");
        // A dump with the queue full of notifications: they are read first, and flagged.
        flood(&ns);
        let names: Vec<String> = dump(&mut s, &mut buf).into_iter().map(|l| l.name).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(s.take_changed(&mut buf));
        // The socket still works after an overflow.
        settle(&mut s, &mut buf);
        ns.ip(&["link", "set", "vk", "up"]);
        assert!(s.take_changed(&mut buf));
    }

    /// This host's root namespace: its physical devices (those with a `device` in sysfs, such
    /// as the virtio eth0 here) have no kind, and every kind matches what ip reads.
    #[test]
    fn physical_devices_of_the_root_namespace_have_no_kind() {
        let mut s = RouteSocket::open().unwrap();
        let mut buf = vec![0u8; RECV_BUFFER];
        let seen = dump(&mut s, &mut buf);
        let physical: Vec<&Seen> = seen
            .iter()
            .filter(|l| std::path::Path::new(&format!("/sys/class/net/{}/device", l.name)).exists())
            .collect();
        assert!(!physical.is_empty(), "no physical device in {seen:?}");
        assert!(physical.iter().all(|l| l.kind.is_none() && !l.loopback), "{physical:?}");
        let ip = ip_json(&["-d", "-j", "link", "show"]);
        // Other tests add and remove links here meanwhile: compare the links both saw.
        let both: Vec<&Seen> = seen.iter().filter(|l| ip.contains_key(&l.name)).collect();
        assert!(both.iter().any(|l| l.loopback));
        for l in both {
            assert_eq!(ip[&l.name].0, l.kind, "{}", l.name);
        }
    }
}
