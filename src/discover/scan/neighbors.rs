//! The kernel's neighbour tables: IPv4 from `/proc/net/arp` (MACs of hosts
//! the kernel already talked to, e.g. found by ICMP when raw ARP is not
//! allowed), IPv6 over rtnetlink (there is no file).

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use crate::net::Mac;

/// Complete entries only (flag 0x2); incomplete ones are absent hosts.
pub fn parse(text: &str) -> HashMap<Ipv4Addr, Mac> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let ip: Ipv4Addr = cols.first()?.parse().ok()?;
            let flags = u32::from_str_radix(cols.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac: Mac = cols.get(3)?.parse().ok()?;
            (flags & 0x2 != 0 && mac.0 != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

pub fn read() -> HashMap<Ipv4Addr, Mac> {
    std::fs::read_to_string("/proc/net/arp")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

const RTM_GETNEIGH: u16 = 30;
const RTM_NEWNEIGH: u16 = 28;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_STALE: u16 = 0x04;
/// nlmsghdr (16), ndmsg (12), NDA_DST (8), NDA_LLADDR (10, padded to 12).
const NEW_NEIGH_LEN: usize = 48;
/// Reachable, stale, delay, probe, permanent: the states with a MAC that
/// answered (incomplete and failed are absent hosts).
const USABLE_STATES: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;
/// Entries read at most: the kernel's own default limit (gc_thresh3) is
/// 1024, a tuned router's a few thousand.
pub const MAX_ENTRIES6: usize = 16_384;
/// The kernel answers a dump at once; a stuck socket is not waited on.
const DUMP_TIMEOUT: Duration = Duration::from_secs(1);

/// A route netlink socket.
fn netlink() -> io::Result<socket2::Socket> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The IPv6 neighbours the kernel holds on interface `index`, with MACs.
pub fn read6(index: u32) -> io::Result<Vec<(Ipv6Addr, Mac)>> {
    let sock = netlink()?;
    sock.set_read_timeout(Some(DUMP_TIMEOUT))?;
    let mut req = [0u8; 28];
    req[0..4].copy_from_slice(&28u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_INET6 as u8;
    // SAFETY: req is valid for reads of its length.
    let rc = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = super::packet::recv(&sock, &mut buf, 0)?;
        match parse6(&buf[..n], index, &mut out) {
            Dump::More if out.len() < MAX_ENTRIES6 => continue,
            _ => break,
        }
    }
    out.truncate(MAX_ENTRIES6);
    Ok(out)
}

/// Tells the kernel the MACs a sweep's ARP found, before the follow-ups
/// (ports, mDNS, the ICMP witness) talk to those hosts: the kernel ignores
/// replies to requests it did not send, so it would broadcast its own
/// request for every host found (on a /24 of 100 hosts, 100 broadcasts
/// more than the sweep's 253, and a round trip before each first probe).
/// An entry is only ever added, never changed: one the kernel holds
/// already (a permanent one, one being resolved) is left as it is. It is
/// added as stale, so the kernel confirms it by a unicast probe of its own
/// once it has been used for a few seconds, as it does any entry it
/// learned by ARP.
pub struct Seeder {
    sock: Option<socket2::Socket>,
    index: u32,
    stopped: AtomicBool,
    added: AtomicUsize,
}

/// Entries one sweep adds at most: half the kernel's default table limit
/// (gc_thresh3, 1024), so forged replies for a whole range cannot fill the
/// table the host itself needs; past it the kernel resolves hosts itself.
pub const MAX_SEEDS: usize = 512;

impl Seeder {
    /// A seeder for interface `index`; without the socket (no
    /// CAP_NET_ADMIN is only found at the first add), it does nothing.
    pub fn new(index: u32) -> Seeder {
        let sock = netlink()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        Seeder {
            sock,
            index,
            stopped: AtomicBool::new(false),
            added: AtomicUsize::new(0),
        }
    }

    /// Adds `ip` at `mac`, unless the kernel has an entry for it; errors
    /// (refused, the table full, an entry there) leave the kernel to
    /// resolve the host itself. The first refusal ends the seeding.
    pub fn add(&self, ip: Ipv4Addr, mac: Mac) {
        let Some(sock) = self
            .sock
            .as_ref()
            .filter(|_| !self.stopped.load(Ordering::Relaxed))
        else {
            return;
        };
        if self.added.fetch_add(1, Ordering::Relaxed) >= MAX_SEEDS {
            return;
        }
        let msg = new_neigh(self.index, ip, mac);
        // SAFETY: msg is valid for reads of its length.
        let rc = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "neighbour seeding stops");
            self.stopped.store(true, Ordering::Relaxed);
            return;
        }
        // Answers are only errors (no ack was asked for): one the kernel
        // refused ends the seeding, one for an entry there already does not.
        let mut buf = [0u8; 256];
        while let Ok(n) = super::packet::recv(sock, &mut buf, libc::MSG_DONTWAIT) {
            if let Some(errno) = nl_error(&buf[..n]).filter(|e| *e != libc::EEXIST) {
                tracing::debug!(error = %io::Error::from_raw_os_error(errno), "neighbour seeding stops");
                self.stopped.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// RTM_NEWNEIGH for `ip` at `mac` on `index`: created only if absent
/// (NLM_F_EXCL), stale.
fn new_neigh(index: u32, ip: Ipv4Addr, mac: Mac) -> [u8; NEW_NEIGH_LEN] {
    let mut m = [0u8; NEW_NEIGH_LEN];
    m[0..4].copy_from_slice(&(NEW_NEIGH_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[16] = libc::AF_INET as u8;
    m[20..24].copy_from_slice(&(index as i32).to_ne_bytes());
    m[24..26].copy_from_slice(&NUD_STALE.to_ne_bytes());
    m[28..30].copy_from_slice(&8u16.to_ne_bytes());
    m[30..32].copy_from_slice(&NDA_DST.to_ne_bytes());
    m[32..36].copy_from_slice(&ip.octets());
    m[36..38].copy_from_slice(&10u16.to_ne_bytes());
    m[38..40].copy_from_slice(&NDA_LLADDR.to_ne_bytes());
    m[40..46].copy_from_slice(&mac.0);
    m
}

/// The errno of a netlink error message (0 is an ack, not an error).
fn nl_error(msg: &[u8]) -> Option<i32> {
    if msg.len() < 20 || u16::from_ne_bytes([msg[4], msg[5]]) != NLMSG_ERROR {
        return None;
    }
    let code = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
    (code < 0).then_some(-code)
}

#[derive(Debug, PartialEq, Eq)]
enum Dump {
    More,
    Done,
}

/// The usable entries of interface `index` in one datagram of a dump.
fn parse6(mut data: &[u8], index: u32, out: &mut Vec<(Ipv6Addr, Mac)>) -> Dump {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < 16 || len > data.len() {
            return Dump::Done;
        }
        match kind {
            NLMSG_DONE | NLMSG_ERROR => return Dump::Done,
            RTM_NEWNEIGH => {
                if let Some(e) = entry(&data[16..len], index) {
                    out.push(e);
                }
            }
            _ => {}
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    Dump::More
}

/// One `ndmsg` and its attributes, if it is a usable entry of `index`.
fn entry(msg: &[u8], index: u32) -> Option<(Ipv6Addr, Mac)> {
    let head = msg.get(..12)?;
    let ifindex = i32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    let state = u16::from_ne_bytes([head[8], head[9]]);
    if head[0] != libc::AF_INET6 as u8 || ifindex != index as i32 || state & USABLE_STATES == 0 {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    let mut attrs = &msg[12..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let value = &attrs[4..len];
        match (kind, value.len()) {
            (NDA_DST, 16) => ip = <[u8; 16]>::try_from(value).ok().map(Ipv6Addr::from),
            (NDA_LLADDR, 6) => mac = <[u8; 6]>::try_from(value).ok().map(Mac),
            _ => {}
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    let mac = mac.filter(|m| m.0 != [0; 6] && m.0[0] & 1 == 0)?;
    Some((ip?, mac))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_complete_entries_count() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    198.18.0.11      0x1         0x2         02:00:00:00:00:11     *        br0\n\
                    198.18.0.99      0x1         0x0         00:00:00:00:00:00     *        br0\n";
        let t = super::parse(text);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[&"198.18.0.11".parse().unwrap()].to_string(),
            "02:00:00:00:00:11"
        );
    }

    /// One RTM_NEWNEIGH message as the kernel writes it.
    fn neigh(ifindex: i32, state: u16, ip: [u8; 16], mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut m = vec![0u8; 16];
        m[4..6].copy_from_slice(&super::RTM_NEWNEIGH.to_ne_bytes());
        m.extend([libc::AF_INET6 as u8, 0, 0, 0]);
        m.extend(ifindex.to_ne_bytes());
        m.extend(state.to_ne_bytes());
        m.extend([0, 0]);
        m.extend(20u16.to_ne_bytes());
        m.extend(super::NDA_DST.to_ne_bytes());
        m.extend(ip);
        if let Some(mac) = mac {
            m.extend(10u16.to_ne_bytes());
            m.extend(super::NDA_LLADDR.to_ne_bytes());
            m.extend(mac);
            m.extend([0, 0]);
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn a_dump_gives_usable_entries_of_one_interface() {
        let ip = "2001:db8:1::11"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let mac = [2, 0, 0, 0, 0, 0x11];
        let mut dump = neigh(7, 0x04, ip, Some(mac));
        dump.extend(neigh(8, 0x04, ip, Some(mac))); // another interface
        dump.extend(neigh(7, 0x20, ip, Some(mac))); // failed
        dump.extend(neigh(7, 0x02, ip, None)); // no MAC
        dump.extend(neigh(7, 0x02, ip, Some([0x33, 0x33, 0, 0, 0, 1]))); // multicast
        let mut out = Vec::new();
        assert_eq!(super::parse6(&dump, 7, &mut out), super::Dump::More);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].1.to_string(), "02:00:00:00:00:11");
        let mut done = vec![0u8; 16];
        done[0] = 16;
        done[4..6].copy_from_slice(&super::NLMSG_DONE.to_ne_bytes());
        assert_eq!(super::parse6(&done, 7, &mut out), super::Dump::Done);
        // A length past the datagram ends it rather than reading beyond.
        let mut bad = neigh(7, 0x04, ip, Some(mac));
        bad[0] = 200;
        assert_eq!(super::parse6(&bad, 7, &mut out), super::Dump::Done);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_seed_is_a_stale_entry_created_only_if_absent() {
        let mac = crate::net::Mac([2, 0, 0, 0, 0, 0x11]);
        let m = super::new_neigh(7, "198.18.0.11".parse().unwrap(), mac);
        let u16_at = |i: usize| u16::from_ne_bytes([m[i], m[i + 1]]);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(u16_at(4), super::RTM_NEWNEIGH);
        let flags = u16_at(6);
        assert_eq!(flags & libc::NLM_F_EXCL as u16, libc::NLM_F_EXCL as u16);
        assert_eq!(flags & libc::NLM_F_REPLACE as u16, 0, "never replaces");
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(i32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 7);
        assert_eq!(u16_at(24), super::NUD_STALE);
        assert_eq!((u16_at(28), u16_at(30)), (8, super::NDA_DST));
        assert_eq!(m[32..36], [198, 18, 0, 11]);
        assert_eq!((u16_at(36), u16_at(38)), (10, super::NDA_LLADDR));
        assert_eq!(m[40..46], mac.0);
    }

    #[test]
    fn netlink_errors_are_told_from_acks() {
        let msg = |kind: u16, code: i32| {
            let mut m = vec![0u8; 36];
            m[4..6].copy_from_slice(&kind.to_ne_bytes());
            m[16..20].copy_from_slice(&code.to_ne_bytes());
            m
        };
        assert_eq!(
            super::nl_error(&msg(super::NLMSG_ERROR, -libc::EPERM)),
            Some(libc::EPERM)
        );
        assert_eq!(super::nl_error(&msg(super::NLMSG_ERROR, 0)), None, "an ack");
        assert_eq!(super::nl_error(&msg(super::NLMSG_DONE, -1)), None);
        assert_eq!(super::nl_error(&[2, 0]), None, "short");
    }
}
