//! The connection table: every TCP socket seen in the last dump of every network namespace,
//! sorted by `(namespace, socket cookie)`, with the previous dump's counters for deltas and the
//! listening ports of each namespace. The previous dump keeps only what deltas need ([`Prev`], 48
//! bytes a socket against a [`Conn`]'s 136), copied over at the start of a cycle into a vector
//! that keeps its capacity: nothing is allocated in a steady cycle.

use crate::parse::inet_diag::{InetDiagMsg, TCP_LISTEN};

/// Counters moved since the previous dump.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deltas {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conn {
    /// Network namespace inode.
    pub ns: u64,
    /// The kernel's socket cookie: unique per socket for its lifetime.
    pub cookie: u64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u8,
    pub state: u8,
    pub local: [u8; 16],
    pub lport: u16,
    pub remote: [u8; 16],
    pub rport: u16,
    pub inode: u32,
    pub uid: u32,
    /// From `tcp_info`: `tcpi_bytes_acked` (what the peer acknowledged, so no retransmits).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub total_retrans: u32,
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// `None` on the cycle that first sees a socket that may predate the previous dump (the
    /// agent's first cycle, a newly visited namespace): its counters are not all from this interval.
    pub deltas: Option<Deltas>,
    pub first_seen_mono: f64,
}

impl Conn {
    pub fn is_v4(&self) -> bool {
        self.family == 2
    }

    pub fn local_ip(&self) -> std::net::IpAddr {
        ip(self.family, &self.local)
    }

    pub fn remote_ip(&self) -> std::net::IpAddr {
        ip(self.family, &self.remote)
    }
}

fn ip(family: u8, a: &[u8; 16]) -> std::net::IpAddr {
    if family == 2 {
        std::net::IpAddr::from([a[0], a[1], a[2], a[3]])
    } else {
        std::net::IpAddr::from(*a)
    }
}

/// What the next cycle needs of a socket: its identity, counters and first sighting.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Prev {
    ns: u64,
    cookie: u64,
    bytes_sent: u64,
    bytes_received: u64,
    first_seen_mono: f64,
    total_retrans: u32,
}

impl Prev {
    fn of(c: &Conn) -> Prev {
        Prev {
            ns: c.ns,
            cookie: c.cookie,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            first_seen_mono: c.first_seen_mono,
            total_retrans: c.total_retrans,
        }
    }
}

#[derive(Debug)]
pub struct ConnTable {
    /// This cycle's sockets (not listening), sorted by `(ns, cookie)` after [`ConnTable::finish`].
    pub conns: Vec<Conn>,
    /// The previous cycle's sockets, in the same order.
    prev: Vec<Prev>,
    /// `(namespace, port)` of every listening socket, sorted and deduplicated.
    pub listening: Vec<(u64, u16)>,
    pub mono_secs: f64,
    pub prev_mono_secs: Option<f64>,
    /// Sockets not tracked this cycle because the table was full.
    pub over_limit: u32,
    /// Namespaces with a socket left untracked this cycle (sorted), and last cycle's: a socket
    /// first tracked now in one of those may have lived untracked before, so its counters are
    /// not this interval's.
    overflowed: Vec<u64>,
    prev_overflowed: Vec<u64>,
    /// Slots of `conns` holding sockets not tracked last cycle, which give way to sockets that
    /// were (built when the table first fills up in a cycle).
    newcomers: Vec<u32>,
    newcomers_listed: bool,
    max: usize,
    cycles: u64,
}

impl ConnTable {
    /// A table that tracks at most `max` connections (the memory bound).
    pub fn new(max: usize) -> ConnTable {
        ConnTable {
            conns: Vec::with_capacity(max.min(1024)),
            prev: Vec::with_capacity(max.min(1024)),
            listening: Vec::with_capacity(64),
            mono_secs: 0.0,
            prev_mono_secs: None,
            over_limit: 0,
            overflowed: Vec::new(),
            prev_overflowed: Vec::new(),
            newcomers: Vec::new(),
            newcomers_listed: false,
            max,
            cycles: 0,
        }
    }

    /// Starts a cycle: the current sockets become the previous ones.
    pub fn begin(&mut self, mono_secs: f64) {
        self.prev.clear();
        self.prev.extend(self.conns.iter().map(Prev::of));
        self.conns.clear();
        self.listening.clear();
        self.over_limit = 0;
        std::mem::swap(&mut self.overflowed, &mut self.prev_overflowed);
        self.overflowed.clear();
        self.newcomers.clear();
        self.newcomers_listed = false;
        self.prev_mono_secs = (self.cycles > 0).then_some(self.mono_secs);
        self.mono_secs = mono_secs;
        self.cycles += 1;
    }

    /// Adds one socket of namespace `ns`. `fresh_ns`: the namespace was not dumped last cycle.
    pub fn push(&mut self, ns: u64, m: &InetDiagMsg<'_>, fresh_ns: bool) {
        if m.state == TCP_LISTEN {
            self.listening.push((ns, m.sport));
            return;
        }
        let info = m.tcp_info().unwrap_or_default();
        let conn = Conn {
            ns,
            cookie: m.cookie,
            family: m.family,
            state: m.state,
            local: m.src,
            lport: m.sport,
            remote: m.dst,
            rport: m.dport,
            inode: m.inode,
            uid: m.uid,
            bytes_sent: info.bytes_acked.unwrap_or(0),
            bytes_received: info.bytes_received.unwrap_or(0),
            total_retrans: info.total_retrans,
            rtt_us: info.rtt_us,
            rttvar_us: info.rttvar_us,
            // Provisional: `finish` decides from the previous dump.
            deltas: if fresh_ns { None } else { Some(Deltas::default()) },
            first_seen_mono: self.mono_secs,
        };
        if self.conns.len() < self.max {
            self.conns.push(conn);
            return;
        }
        // Full. Sockets tracked last cycle keep their place, whatever the dump order, so the
        // tracked set is stable from cycle to cycle: one of them takes the slot of a socket that
        // was not tracked last cycle (there is one: last cycle tracked at most `max`).
        self.over_limit += 1;
        let slot = if self.was_tracked(ns, m.cookie) { self.newcomer_slot() } else { None };
        let dropped = match slot.and_then(|i| self.conns.get_mut(i as usize)) {
            Some(c) => std::mem::replace(c, conn).ns,
            None => ns,
        };
        if let Err(at) = self.overflowed.binary_search(&dropped) {
            self.overflowed.insert(at, dropped);
        }
    }

    fn was_tracked(&self, ns: u64, cookie: u64) -> bool {
        self.prev.binary_search_by_key(&(ns, cookie), |p| (p.ns, p.cookie)).is_ok()
    }

    /// A slot of `conns` whose socket was not tracked last cycle, to be given up.
    fn newcomer_slot(&mut self) -> Option<u32> {
        if !self.newcomers_listed {
            self.newcomers_listed = true;
            let prev = &self.prev;
            let fresh = |c: &Conn| prev.binary_search_by_key(&(c.ns, c.cookie), |p| (p.ns, p.cookie)).is_err();
            self.newcomers.clear();
            self.newcomers.extend(self.conns.iter().enumerate().filter(|(_, c)| fresh(c)).map(|(i, _)| i as u32));
        }
        self.newcomers.pop()
    }

    /// Ends a cycle: sorts, and computes each socket's deltas against the previous dump.
    pub fn finish(&mut self) {
        self.conns.sort_unstable_by_key(|c| (c.ns, c.cookie));
        // A cookie reported twice (a socket changing state mid-dump) keeps its first record.
        self.conns.dedup_by_key(|c| (c.ns, c.cookie));
        self.listening.sort_unstable();
        self.listening.dedup();
        let first_cycle = self.prev_mono_secs.is_none();
        let mut prev = self.prev.iter().peekable();
        for c in &mut self.conns {
            while prev.next_if(|p| (p.ns, p.cookie) < (c.ns, c.cookie)).is_some() {}
            match prev.next_if(|p| (p.ns, p.cookie) == (c.ns, c.cookie)) {
                Some(p) => {
                    c.first_seen_mono = p.first_seen_mono;
                    c.deltas = Some(Deltas {
                        bytes_sent: c.bytes_sent.saturating_sub(p.bytes_sent),
                        bytes_received: c.bytes_received.saturating_sub(p.bytes_received),
                        retransmits: c.total_retrans.saturating_sub(p.total_retrans),
                    });
                }
                // New since the previous dump: everything it carried happened in this interval,
                // unless its namespace had sockets left untracked last cycle (it may be one).
                None if !first_cycle && c.deltas.is_some() && self.prev_overflowed.binary_search(&c.ns).is_err() => {
                    c.deltas = Some(Deltas {
                        bytes_sent: c.bytes_sent,
                        bytes_received: c.bytes_received,
                        retransmits: c.total_retrans,
                    });
                }
                None => c.deltas = None,
            }
        }
    }

    /// Seconds since the previous cycle.
    pub fn interval_secs(&self) -> Option<f64> {
        self.prev_mono_secs.map(|p| self.mono_secs - p).filter(|d| *d > 0.0)
    }

    pub fn is_listening(&self, ns: u64, port: u16) -> bool {
        self.listening.binary_search(&(ns, port)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::inet_diag::{messages, Msg};

    fn fixture() -> Vec<InetDiagMsg<'static>> {
        let bytes: &'static [u8] = include_bytes!("../../tests/fixtures/netlink/debian12-6.18/tcp4-0.bin");
        messages(bytes)
            .filter_map(|m| match m {
                Ok(Msg::Socket(s)) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn deltas_across_cycles_and_listeners() {
        let socks = fixture();
        let mut t = ConnTable::new(10_000);
        t.begin(10.0);
        for s in &socks {
            t.push(1, s, false);
        }
        t.finish();
        assert!(t.is_listening(1, 51017) && !t.is_listening(2, 51017));
        assert!(t.conns.iter().all(|c| c.state != TCP_LISTEN));
        assert!(t.conns.iter().all(|c| c.deltas.is_none()), "the first cycle only primes");
        assert!(t.conns.windows(2).all(|w| (w[0].ns, w[0].cookie) < (w[1].ns, w[1].cookie)));
        let n = t.conns.len();

        // The same sockets again, plus a new one and one in a namespace not dumped before.
        t.begin(40.0);
        for s in &socks {
            t.push(1, s, false);
        }
        let mut extra = socks.iter().find(|s| s.state == 1).copied().unwrap();
        extra.cookie = u64::MAX;
        t.push(1, &extra, false);
        t.push(2, &extra, true);
        t.finish();
        assert_eq!(t.interval_secs(), Some(30.0));
        assert_eq!(t.conns.len(), n + 2);
        for c in &t.conns {
            match (c.ns, c.cookie) {
                (1, u64::MAX) => {
                    let d = c.deltas.unwrap();
                    assert_eq!((d.bytes_sent, d.bytes_received), (c.bytes_sent, c.bytes_received), "new: all of it");
                    assert_eq!(c.first_seen_mono, 40.0);
                }
                (2, _) => assert_eq!(c.deltas, None, "a fresh namespace primes"),
                _ => {
                    assert_eq!(c.deltas, Some(Deltas::default()), "unchanged counters: zero deltas");
                    assert_eq!(c.first_seen_mono, 10.0);
                }
            }
        }
    }

    /// The previous dump's copy is a third of a connection (issue 21's memory: 5,000 sockets).
    #[test]
    fn the_previous_dump_keeps_only_what_deltas_need() {
        assert_eq!(std::mem::size_of::<Prev>(), 48);
        assert_eq!(std::mem::size_of::<Conn>(), 136);
    }

    #[test]
    fn the_table_is_bounded() {
        let socks = fixture();
        let mut t = ConnTable::new(1);
        t.begin(1.0);
        for s in &socks {
            t.push(1, s, false);
        }
        t.finish();
        let established = socks.iter().filter(|s| s.state != TCP_LISTEN).count() as u32;
        assert_eq!(t.conns.len(), 1);
        assert_eq!(t.over_limit, established - 1);
    }

    /// Over the limit, the sockets tracked last cycle stay tracked whatever the dump order, and a
    /// socket first tracked after a cycle that left sockets out primes instead of reporting its
    /// lifetime counters as one interval's.
    #[test]
    fn over_the_limit_the_tracked_set_is_stable_and_newcomers_prime() {
        let socks: Vec<_> = fixture().into_iter().filter(|s| s.state != TCP_LISTEN).collect();
        assert!(socks.len() >= 4, "the fixture has {} connections", socks.len());
        let max = socks.len() / 2;
        let mut t = ConnTable::new(max);
        t.begin(1.0);
        socks.iter().for_each(|s| t.push(1, s, false));
        t.finish();
        let first: Vec<u64> = t.conns.iter().map(|c| c.cookie).collect();
        assert_eq!((first.len(), t.over_limit as usize), (max, socks.len() - max));
        // The reverse order: the untracked half comes first, and is not let in.
        for (k, mono) in [(0, 2.0), (1, 3.0)] {
            t.begin(mono);
            socks.iter().rev().for_each(|s| t.push(1, s, false));
            if k == 1 {
                let mut extra = socks[0];
                extra.cookie = u64::MAX;
                t.push(2, &extra, false);
            }
            t.finish();
            let now: Vec<u64> = t.conns.iter().filter(|c| c.ns == 1).map(|c| c.cookie).collect();
            assert_eq!(now, first, "cycle {k}: the same sockets are tracked");
            assert!(t.conns.iter().filter(|c| c.ns == 1).all(|c| c.deltas == Some(Deltas::default())));
        }
        // Room again (one tracked socket closed): an untracked socket of namespace 1 gets in, and
        // primes.
        t.begin(4.0);
        socks.iter().filter(|s| s.cookie != first[0]).for_each(|s| t.push(1, s, false));
        t.finish();
        let newcomer = t.conns.iter().find(|c| c.ns == 1 && !first.contains(&c.cookie)).expect("let in");
        assert_eq!(newcomer.deltas, None, "it may have lived untracked: its counters are not this interval's");
    }
}
