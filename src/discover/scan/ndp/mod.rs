//! IPv6 neighbours of one attached link, found without sweeping a /64:
//! an ICMPv6 echo to all nodes (`ff02::1`) from each of the scanner's
//! addresses there (a link-local source draws link-local answers, a global
//! one the host's preferred global address), neighbour solicitations for
//! addresses already known and for each found MAC's EUI-64 address, and
//! whatever neighbour discovery the link carries while the sweep runs
//! (duplicate address detection, advertisements, router advertisements).
//! Frames go to link-scope multicast or to a solicited-node group only,
//! so nothing leaves the link.
//!
//! All of it arrives over one packet socket; every frame is a claim by
//! whoever sent it, so each MAC keeps at most [`MAX_PER_MAC`] addresses
//! and the link [`MAX_HEARD`] MACs from unsolicited messages: a forged
//! flood is cut and counted, and memory stays bounded.

use std::{
    collections::HashSet,
    io,
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use socket2::Socket;

mod frames;
mod table;

pub use frames::{echo_frame, parse, solicit_frame};
use table::Table;

use super::{arp, iface::Link6 as Link, packet};
use crate::{ipv6, net::Mac};

pub const ETH_P_IPV6: u16 = 0x86dd;
/// Addresses kept per MAC: a link-local, a stable and a day's temporaries.
pub const MAX_PER_MAC: usize = 16;
/// MACs taken from messages nobody asked for (advertisements, DAD).
pub const MAX_HEARD: usize = 1024;
/// MACs taken from answers to what this sweep asked.
pub const MAX_ASKED: usize = 8192;
/// Solicitations sent per sweep at most.
pub const MAX_SOLICIT: usize = 16_384;
/// Frames read per wake-up at most.
const MAX_DRAIN: usize = 256;
const ECHO_ID: u16 = 0x6d64;
/// How often a search that has heard nothing looks whether ARP has ended.
const ARP_LOOK: Duration = Duration::from_millis(2);

/// How a neighbour was heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Heard {
    /// It answered the echo to all nodes.
    Echo,
    /// It answered a solicitation this sweep sent.
    Asked,
    /// An advertisement, a solicitation or DAD nobody here asked for.
    Overheard,
    /// A router advertisement.
    Router,
    /// The kernel's neighbour table.
    Kernel,
}

pub struct Params {
    /// Addresses asked for by solicitation (history, the database).
    pub known: Vec<Ipv6Addr>,
    /// Set when the ARP sweep of the same sweep has ended: a link where
    /// nothing answered the echo by then has no IPv6 speaker awake, and
    /// is not waited for any longer (an IPv4-only LAN pays no fixed wait).
    /// Never set: the first answer is waited for up to `arp::AUTO_CAP`.
    pub arp_ended: std::sync::Arc<std::sync::OnceLock<Instant>>,
    /// Nothing is read past this.
    pub deadline: Instant,
    /// Fixed wait for answers (`--timeout`); `None` adapts it as ARP does.
    pub wait: Option<Duration>,
    /// Gap between two solicitations.
    pub gap: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv6Addr,
    pub mac: Mac,
    pub heard: Heard,
    pub rtt: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub neighbours: Vec<Neighbour>,
    pub sent: u64,
    /// Claims dropped by the caps.
    pub capped: u64,
}

/// What one frame says: an address, its MAC, and how it was heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub ip: Ipv6Addr,
    pub mac: Mac,
    pub heard: Heard,
    /// The echo was sent from this source of ours (to time it).
    pub to: Ipv6Addr,
}

pub fn open(link: &Link) -> io::Result<Socket> {
    let sock = packet::open(link.index, ETH_P_IPV6)?;
    // Duplicate address detection goes to solicited-node groups this host
    // never joins: all multicast is read, only while the sweep runs.
    // SAFETY: packet_mreq is plain data; zeroed is a valid initial value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = link.index as i32;
    mreq.mr_type = libc::PACKET_MR_ALLMULTI as u16;
    // SAFETY: a valid socket, option and struct of the given size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq as *const libc::packet_mreq as *const libc::c_void,
            std::mem::size_of::<libc::packet_mreq>() as u32,
        );
    }
    Ok(sock)
}

/// Whether `ip` belongs to the link: link-local or in one of its prefixes,
/// and not one of the scanner's own.
fn on_link(link: &Link, ip: Ipv6Addr) -> bool {
    !link.sources.contains(&ip)
        && (ipv6::is_link_local(ip) || link.prefixes.iter().any(|p| p.contains(ip)))
}

/// What one search has heard so far, and when it last heard news.
struct Heard6<'a> {
    link: &'a Link,
    fixed_wait: Option<Duration>,
    started: Instant,
    table: Table,
    rtts: Vec<Duration>,
    wait: Duration,
    last_news: Instant,
    /// Whether anyone answered the echo (timed or not).
    echo_answered: bool,
    /// The addresses solicited, once the echo's answers are in.
    asked: Option<HashSet<Ipv6Addr>>,
    asked_found: HashSet<Ipv6Addr>,
}

impl Heard6<'_> {
    /// Reads what is queued on the socket (a bounded batch).
    fn read(&mut self, sock: &Socket, buf: &mut [u8]) -> io::Result<()> {
        let at = Instant::now();
        packet::drain(sock, buf, MAX_DRAIN, |f| self.take(f, at))
    }

    fn take(&mut self, frame: &[u8], at: Instant) {
        let Some(c) = parse(frame, self.link.mac) else {
            return;
        };
        if !on_link(self.link, c.ip) {
            return;
        }
        // An echo answer goes to one of our addresses.
        if c.heard == Heard::Echo && !self.link.sources.contains(&c.to) {
            return;
        }
        let heard = match (c.heard, &self.asked) {
            (Heard::Overheard, Some(a)) if a.contains(&c.ip) => {
                self.asked_found.insert(c.ip);
                Heard::Asked
            }
            (h, _) => h,
        };
        let rtt = (heard == Heard::Echo).then(|| at.duration_since(self.started));
        if !self.table.take(Neighbour {
            ip: c.ip,
            mac: c.mac,
            heard,
            rtt,
        }) {
            return;
        }
        self.last_news = at;
        self.echo_answered |= heard == Heard::Echo;
        // The wait follows the round trips, re-read now and then (a flood
        // of answers must not sort every time).
        if let (Some(r), None) = (rtt, self.fixed_wait) {
            self.rtts.push(r);
            if self.rtts.len() <= 64 || self.rtts.len() % 64 == 0 {
                self.wait = adaptive(&self.rtts);
            }
        }
    }

    /// Nothing asked yet and no echo answered: no IPv6 speaker heard.
    fn unheard(&self) -> bool {
        self.asked.is_none() && !self.echo_answered
    }

    /// Quiet: nothing new for a wait; or, before anything was asked, no
    /// echo answered by the time ARP ended (no IPv6 speaker is awake).
    fn quiet(&self, now: Instant, arp_ended: Option<&Instant>) -> bool {
        let unanswered = self.unheard() && arp_ended.is_some_and(|t| now >= *t);
        unanswered || now.duration_since(self.last_news) >= self.wait
    }
}

/// Searches `link` until the answers are in, never past the deadline.
/// Blocking.
pub fn search(sock: &Socket, link: &Link, p: &Params) -> io::Result<Outcome> {
    let mut sent = 0u64;
    let echoes: Vec<Vec<u8>> = link
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| echo_frame(link, *s, i as u16))
        .collect();
    let refs: Vec<&[u8]> = echoes.iter().map(|f| f.as_slice()).collect();
    let started = Instant::now();
    packet::send(
        sock,
        link.index,
        ETH_P_IPV6,
        [0x33, 0x33, 0, 0, 0, 1],
        &refs,
    )?;
    sent += echoes.len() as u64;
    let mut heard = Heard6 {
        link,
        fixed_wait: p.wait,
        started,
        table: Table::default(),
        rtts: Vec::new(),
        wait: p.wait.unwrap_or(arp::AUTO_CAP),
        last_news: Instant::now(),
        echo_answered: false,
        asked: None,
        asked_found: HashSet::new(),
    };
    let mut queue: Vec<Ipv6Addr> = Vec::new();
    let mut next_send = Instant::now();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= p.deadline {
            break;
        }
        let quiet = heard.quiet(now, p.arp_ended.get()) && queue.is_empty();
        if quiet {
            // What queued while this thread was not running is news too.
            let before = heard.last_news;
            heard.read(sock, &mut buf)?;
            if heard.last_news != before {
                continue;
            }
        }
        match &heard.asked {
            None if quiet => {
                let list = solicitations(link, &heard.table, &p.known);
                heard.asked = Some(list.iter().copied().collect());
                queue = list;
                queue.reverse();
                heard.last_news = now;
                continue;
            }
            Some(a) if quiet || heard.asked_found.len() >= a.len() => break,
            _ => {}
        }
        if let (Some(target), true) = (queue.last().copied(), now >= next_send) {
            queue.pop();
            sent += solicit(sock, link, target)?;
            heard.last_news = Instant::now();
            next_send = now + p.gap;
        }
        let until = if !queue.is_empty() {
            next_send
        } else if heard.unheard() && p.arp_ended.get().is_none() {
            // Looked at again soon: the ARP sweep may end meanwhile.
            p.deadline.min(now + heard.wait.min(ARP_LOOK))
        } else {
            p.deadline.min(now + heard.wait)
        };
        if packet::wait_readable(sock, until.saturating_duration_since(Instant::now()))? {
            heard.read(sock, &mut buf)?;
        }
    }
    tracing::debug!(
        link = %link.name,
        echo_answers = heard.rtts.len(),
        asked = heard.asked.as_ref().map_or(0, HashSet::len),
        asked_found = heard.asked_found.len(),
        wait_ms = heard.wait.as_millis() as u64,
        last_news_ms = heard.last_news.saturating_duration_since(started).as_millis() as u64,
        ms = started.elapsed().as_millis() as u64,
        "IPv6 search"
    );
    let mut table = heard.table;
    // What the kernel learnt (it answers solicitations, resolves replies).
    for (ip, mac) in super::neighbors::read6(link.index).unwrap_or_default() {
        if on_link(link, ip) {
            table.take(Neighbour {
                ip,
                mac,
                heard: Heard::Kernel,
                rtt: None,
            });
        }
    }
    let mut neighbours: Vec<Neighbour> = table.by_mac.into_values().flatten().collect();
    neighbours.sort_by_key(|n| (n.mac, n.ip));
    Ok(Outcome {
        neighbours,
        sent,
        capped: table.capped,
    })
}

/// Sends one solicitation for `target` from the link's link-local address
/// (none: nothing is sent); the frames sent.
fn solicit(sock: &Socket, link: &Link, target: Ipv6Addr) -> io::Result<u64> {
    let Some(src) = link
        .sources
        .iter()
        .copied()
        .find(|s| ipv6::is_link_local(*s))
    else {
        return Ok(0);
    };
    let f = solicit_frame(link, src, target);
    let t = target.octets();
    packet::send(
        sock,
        link.index,
        ETH_P_IPV6,
        [0x33, 0x33, 0xff, t[13], t[14], t[15]],
        &[&f],
    )?;
    Ok(1)
}

/// The wait after the last news: ARP's rule over the echo round trips
/// (before any answer, its cap).
fn adaptive(rtts: &[Duration]) -> Duration {
    if rtts.is_empty() {
        return arp::AUTO_CAP;
    }
    let mut sorted = rtts.to_vec();
    sorted.sort();
    arp::finish_wait(&sorted, arp::Wait::Auto)
}

/// The addresses to solicit: those known, and each found MAC's EUI-64
/// address in each prefix of the link, unless already found; bounded.
fn solicitations(link: &Link, table: &Table, known: &[Ipv6Addr]) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = Vec::new();
    let mut seen = HashSet::new();
    let guesses = table.by_mac.keys().flat_map(|m| {
        link.prefixes
            .iter()
            .filter(|p| p.prefix() == 64)
            .map(|p| ipv6::eui64(*m, p.network()))
    });
    for ip in known.iter().copied().chain(guesses) {
        if out.len() >= MAX_SOLICIT {
            break;
        }
        if on_link(link, ip) && !table.has(ip) && seen.insert(ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner's link of the unit tests: a link-local and a global
    /// source, one /64.
    pub(super) fn link() -> Link {
        Link {
            name: "br0".into(),
            index: 1,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            sources: vec!["fe80::1".parse().unwrap(), "2001:db8:1::1".parse().unwrap()],
            prefixes: vec!["2001:db8:1::/64".parse().unwrap()],
        }
    }

    #[test]
    fn only_link_addresses_are_taken_or_solicited() {
        let l = link();
        assert!(on_link(&l, "fe80::9".parse().unwrap()));
        assert!(on_link(&l, "2001:db8:1::9".parse().unwrap()));
        assert!(!on_link(&l, "2001:db8:2::9".parse().unwrap()));
        assert!(!on_link(&l, "2001:db8:1::1".parse().unwrap()), "our own");
        let mut t = Table::default();
        t.take(Neighbour {
            ip: "fe80::5054:ff:fe12:3456".parse().unwrap(),
            mac: "52:54:00:12:34:56".parse().unwrap(),
            heard: Heard::Echo,
            rtt: None,
        });
        let asked = solicitations(
            &l,
            &t,
            &[
                "2001:db8:2::5".parse().unwrap(),
                "2001:db8:1::5".parse().unwrap(),
            ],
        );
        assert_eq!(
            asked,
            [
                "2001:db8:1::5".parse::<Ipv6Addr>().unwrap(),
                "2001:db8:1:0:5054:ff:fe12:3456".parse().unwrap()
            ]
        );
    }
}
