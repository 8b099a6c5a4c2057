//! The kernel's neighbour tables: IPv4 from `/proc/net/arp` (MACs of hosts
//! the kernel already talked to, e.g. found by ICMP when raw ARP is not
//! allowed), IPv6 over rtnetlink (there is no file).

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
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
pub(super) const RTM_NEWNEIGH: u16 = 28;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NDA_DST: u16 = 1;
pub(super) const NDA_LLADDR: u16 = 2;
/// Reachable, stale, delay, probe, permanent: the states with a MAC that
/// answered (incomplete and failed are absent hosts).
const USABLE_STATES: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;
/// Entries read at most: the kernel's own default limit (gc_thresh3) is
/// 1024, a tuned router's a few thousand.
pub const MAX_ENTRIES6: usize = 16_384;
/// The kernel answers a dump at once; a stuck socket is not waited on.
const DUMP_TIMEOUT: Duration = Duration::from_secs(1);

/// A route netlink socket.
pub(super) fn netlink() -> io::Result<socket2::Socket> {
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
}
