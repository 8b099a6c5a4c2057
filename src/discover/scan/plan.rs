//! A sweep's plan: which targets ARP reaches on attached interfaces, which
//! links are searched for IPv6 neighbours, which targets are pinged
//! (routed, small IPv6 ranges, loopback), the scanner's own addresses, and
//! targets no route leads to.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv6Network};

use super::{iface, Error, Options, Targets, V4Ranges, MAX_ADDRESSES};
use crate::net::Mac;

/// The work of a sweep, split by how each address is reached.
pub(super) struct Plan {
    /// Directly attached IPv4 ranges, per interface, for ARP.
    pub on_link: Vec<(iface::Interface, V4Ranges)>,
    /// Links searched for IPv6 neighbours.
    pub links6: Vec<Search6>,
    /// Routed, IPv6 and loopback addresses, for ICMP.
    pub ping: Vec<IpAddr>,
    /// The scanner's own target addresses, with their MACs.
    pub own: Vec<(IpAddr, Mac)>,
    pub unroutable: Vec<String>,
}

/// One link's IPv6 search and what its answers are for.
pub(super) struct Search6 {
    /// Its prefixes narrowed to the targets' (when `hosts`).
    pub link: iface::Link6,
    /// An IPv6 target: every device found is a host. Otherwise (an IPv4
    /// segment) the addresses only join the hosts ARP found by MAC.
    pub hosts: bool,
}

/// The links to search: each attached link of a large IPv6 target (one
/// that is attached nowhere is refused), and the links of the IPv4
/// segments ARP sweeps unless IPv6 is off.
fn links6(
    opts: &Options,
    targets: &Targets,
    links: &[iface::Link6],
    on_link: &[(iface::Interface, V4Ranges)],
) -> Result<Vec<Search6>, Error> {
    let named = |l: &&iface::Link6| opts.interface.as_ref().is_none_or(|n| n == &l.name);
    let mut out: Vec<Search6> = Vec::new();
    for net in &targets.prefixes6 {
        let attached: Vec<&iface::Link6> = links
            .iter()
            .filter(named)
            .filter(|l| {
                l.prefixes
                    .iter()
                    .any(|p| p.contains(net.network()) || net.contains(p.network()))
            })
            .collect();
        if attached.is_empty() {
            return Err(Error::NotAttached6(net.to_string()));
        }
        for l in attached {
            // The narrower of the target and the link's own prefix: a
            // wide target never widens what counts as on this link.
            let narrow: Vec<Ipv6Network> = l
                .prefixes
                .iter()
                .filter_map(|p| {
                    if net.contains(p.network()) && net.prefix() <= p.prefix() {
                        Some(*p)
                    } else if p.contains(net.network()) {
                        Some(*net)
                    } else {
                        None
                    }
                })
                .collect();
            match out.iter_mut().find(|s| s.link.index == l.index) {
                Some(s) => s.link.prefixes.extend(narrow),
                None => out.push(Search6 {
                    link: iface::Link6 {
                        prefixes: narrow,
                        ..l.clone()
                    },
                    hosts: true,
                }),
            }
        }
    }
    if opts.ipv6 {
        for (i, _) in on_link {
            let Some(l) = links.iter().find(|l| l.index == i.index) else {
                continue;
            };
            if !out.iter().any(|s| s.link.index == l.index) {
                out.push(Search6 {
                    link: l.clone(),
                    hosts: false,
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn plan(opts: &Options, targets: &Targets) -> Result<Plan, Error> {
    let iface::Local {
        v4: ifaces,
        v6: links,
    } = iface::local().unwrap_or_default();
    if let Some(name) = &opts.interface {
        if !ifaces.iter().any(|i| &i.name == name) {
            return Err(Error::NoInterface(name.clone()));
        }
    }
    let mut on_link = Vec::new();
    let mut covered = Vec::new();
    let mut own = Vec::new();
    for i in &ifaces {
        if targets.v4.index_of(i.ip).is_some() {
            own.push((IpAddr::V4(i.ip), i.mac));
            covered.push((u32::from(i.ip), u32::from(i.ip)));
        }
        let skipped = opts.interface.as_ref().is_some_and(|n| n != &i.name);
        if !opts.arp || skipped || i.ip.is_loopback() {
            continue;
        }
        let part = targets.v4.within(i.network, i.ip);
        if !part.is_empty() {
            covered.push((
                u32::from(i.network.network()),
                u32::from(i.network.broadcast()),
            ));
            on_link.push((i.clone(), part));
        }
    }
    let rest = targets.v4.without(&V4Ranges::new(covered));
    let (reachable, unroutable) = routable(&opts.targets, &rest);
    let count = reachable.len() + targets.v6.len();
    if count as u128 > MAX_ADDRESSES {
        let net = opts
            .targets
            .first()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(Error::PingTooLarge { net, count });
    }
    let mut ping: Vec<IpAddr> = reachable.iter().map(IpAddr::V4).collect();
    ping.extend(targets.v6.iter().map(|a| IpAddr::V6(*a)));
    let links6 = links6(opts, targets, &links, &on_link)?;
    Ok(Plan {
        on_link,
        links6,
        ping,
        own,
        unroutable,
    })
}

/// Splits the routed addresses into those with a route and the target
/// networks without one (asked of the kernel by a UDP connect, which
/// sends nothing).
fn routable(nets: &[IpNetwork], rest: &V4Ranges) -> (V4Ranges, Vec<String>) {
    let mut keep = Vec::new();
    let mut unroutable = Vec::new();
    for net in nets {
        let IpNetwork::V4(n) = net else { continue };
        let part = rest.within(*n, Ipv4Addr::UNSPECIFIED);
        let Some(first) = part.get(0) else { continue };
        match route_to(IpAddr::V4(first)) {
            Ok(()) => keep.push((u32::from(n.network()), u32::from(n.broadcast()))),
            Err(e) => unroutable.push(format!("{net}: {}", e.kind())),
        }
    }
    let keep = V4Ranges::new(keep);
    let routed = rest.without(&rest.without(&keep));
    (routed, unroutable)
}

fn route_to(ip: IpAddr) -> std::io::Result<()> {
    let bind: std::net::SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(bind)?.connect((ip, 9))
}
