//! Which local interface a subnet is directly attached to, with the MAC and
//! IPv4 address ARP requests are sent from, and the IPv6 links the scanner
//! searches for neighbours.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{Ipv4Network, Ipv6Network};
use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

use crate::net::Mac;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// Our address on the subnet, the ARP sender address.
    pub ip: Ipv4Addr,
    pub network: Ipv4Network,
}

/// The scanner's interface in unit tests: eth0 at 198.18.0.1/24.
#[cfg(test)]
pub fn test_scanner() -> Interface {
    Interface {
        name: "eth0".into(),
        index: 2,
        mac: Mac([2, 0, 0, 0, 0, 1]),
        ip: Ipv4Addr::new(198, 18, 0, 1),
        network: Ipv4Network::new(Ipv4Addr::new(198, 18, 0, 0), 24).expect("a /24"),
    }
}

type Addresses = [nix::ifaddrs::InterfaceAddress];

/// This host's interfaces, from one look at its addresses (a host with a
/// hundred bridge ports answers each look with a few hundred entries).
#[derive(Clone, Debug, Default)]
pub struct Local {
    pub v4: Vec<Interface>,
    pub v6: Vec<Link6>,
}

pub fn local() -> std::io::Result<Local> {
    let addrs: Vec<_> = getifaddrs().map_err(std::io::Error::from)?.collect();
    Ok(Local {
        v4: list(&addrs),
        v6: links6(&addrs),
    })
}

/// Every up, non-loopback interface with an IPv4 address and a MAC.
fn list(addrs: &Addresses) -> Vec<Interface> {
    let mut out = Vec::new();
    for a in addrs {
        if a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
            || !a.flags.contains(InterfaceFlags::IFF_UP)
        {
            continue;
        }
        let (Some(addr), Some(mask)) = (
            a.address.as_ref().and_then(|s| s.as_sockaddr_in()),
            a.netmask.as_ref().and_then(|s| s.as_sockaddr_in()),
        ) else {
            continue;
        };
        let ip = addr.ip();
        let prefix = u32::from(mask.ip()).count_ones() as u8;
        let Ok(network) = Ipv4Network::new(ip, prefix) else {
            continue;
        };
        let Some((mac, index)) = mac_and_index(addrs, &a.interface_name) else {
            continue;
        };
        out.push(Interface {
            name: a.interface_name.clone(),
            index,
            mac,
            ip,
            network,
        });
    }
    out
}

/// The MAC (non-zero) and index of interface `name`, from its link-layer
/// entry (asking the kernel for an index by name costs a socket each, and
/// a host with a hundred bridge ports has as many links).
fn mac_and_index(addrs: &Addresses, name: &str) -> Option<(Mac, u32)> {
    let link = addrs
        .iter()
        .filter(|l| l.interface_name == name)
        .find_map(|l| l.address.as_ref().and_then(|s| s.as_link_addr()))?;
    let mac = link.addr().filter(|m| m.iter().any(|b| *b != 0))?;
    let index = u32::try_from(link.ifindex()).ok().filter(|i| *i != 0)?;
    Some((Mac(mac), index))
}

/// The interface whose subnet contains `ip`, preferring `name` when given.
pub fn for_address<'a>(
    ifaces: &'a [Interface],
    ip: Ipv4Addr,
    name: Option<&str>,
) -> Option<&'a Interface> {
    ifaces
        .iter()
        .filter(|i| name.is_none_or(|n| i.name == n))
        .find(|i| i.network.contains(ip))
}

/// One link searched for IPv6 neighbours, as the scanner holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link6 {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// The scanner's own addresses there: link-local and global.
    pub sources: Vec<Ipv6Addr>,
    /// Global prefixes whose addresses are taken (besides link-local).
    pub prefixes: Vec<Ipv6Network>,
}

/// Every up, non-loopback interface with a MAC and an IPv6 link-local
/// address, with its global prefixes.
fn links6(addrs: &Addresses) -> Vec<Link6> {
    let mut out: Vec<Link6> = Vec::new();
    for a in addrs {
        if a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
            || !a.flags.contains(InterfaceFlags::IFF_UP)
        {
            continue;
        }
        let (Some(addr), Some(mask)) = (
            a.address.as_ref().and_then(|s| s.as_sockaddr_in6()),
            a.netmask.as_ref().and_then(|s| s.as_sockaddr_in6()),
        ) else {
            continue;
        };
        let ip = addr.ip();
        let prefix = u128::from(mask.ip()).count_ones() as u8;
        if !out.iter().any(|l| l.name == a.interface_name) {
            let Some((mac, index)) = mac_and_index(addrs, &a.interface_name) else {
                continue;
            };
            out.push(Link6 {
                name: a.interface_name.clone(),
                index,
                mac,
                sources: Vec::new(),
                prefixes: Vec::new(),
            });
        }
        let Some(link) = out.iter_mut().find(|l| l.name == a.interface_name) else {
            continue;
        };
        link.sources.push(ip);
        if !crate::ipv6::is_link_local(ip) {
            if let Ok(net) = Ipv6Network::new(ip, prefix) {
                link.prefixes.push(net);
            }
        }
    }
    // A link without a link-local address cannot solicit.
    out.retain(|l| l.sources.iter().any(|s| crate::ipv6::is_link_local(*s)));
    out
}
