//! IP reservations: the lowest free static address of a subnet. A pure
//! function over the database and the last sweep, so it is deterministic and
//! testable; it reserves nothing by itself (the DB commit does).

use std::{collections::HashSet, net::IpAddr};

use crate::db::{settings::Subnet, Snapshot};

/// The lowest address in the subnet's static range (or, without one, its
/// host range) that no machine has, that is not excluded, not in a DHCP
/// pool and not in `seen` (answered in the last sweep).
pub fn next_free(subnet: &Subnet, snap: &Snapshot, seen: &HashSet<IpAddr>) -> Option<IpAddr> {
    let (first, last) = match subnet.static_range {
        Some(r) => (r.first, r.last),
        None => host_bounds(subnet)?,
    };
    let taken = |ip: IpAddr| {
        snap.by_ip(ip).is_some()
            || seen.contains(&ip)
            || subnet.exclude.contains(&ip)
            || subnet.dynamic.iter().any(|r| r.contains(ip))
    };
    // At most machines + exclusions + seen addresses are taken, so the walk
    // ends after that many steps plus one.
    let budget = snap.machines.len() + subnet.exclude.len() + seen.len() + dynamic_size(subnet) + 1;
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a)..=u32::from(b))
            .take(budget)
            .map(|n| IpAddr::V4(n.into()))
            .find(|ip| !taken(*ip)),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a)..=u128::from(b))
            .take(budget)
            .map(|n| IpAddr::V6(n.into()))
            .find(|ip| !taken(*ip)),
        _ => None,
    }
}

fn dynamic_size(subnet: &Subnet) -> usize {
    subnet
        .dynamic
        .iter()
        .map(|r| match (r.first, r.last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(b) - u32::from(a)) as usize + 1,
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                (u128::from(b) - u128::from(a)).min(1 << 20) as usize + 1
            }
            _ => 0,
        })
        .sum()
}

/// First and last usable host: IPv4 skips the network and broadcast
/// addresses (except on /31 and /32), IPv6 skips the subnet-router anycast.
fn host_bounds(subnet: &Subnet) -> Option<(IpAddr, IpAddr)> {
    match subnet.cidr {
        ipnetwork::IpNetwork::V4(n) => {
            let (net, bc) = (u32::from(n.network()), u32::from(n.broadcast()));
            if n.prefix() >= 31 {
                Some((IpAddr::V4(net.into()), IpAddr::V4(bc.into())))
            } else {
                Some((IpAddr::V4((net + 1).into()), IpAddr::V4((bc - 1).into())))
            }
        }
        ipnetwork::IpNetwork::V6(n) => {
            let net = u128::from(n.network());
            let size = if n.prefix() == 0 {
                u128::MAX
            } else {
                (1u128 << (128 - n.prefix())) - 1
            };
            Some((
                IpAddr::V6((net + 1).min(net + size).into()),
                IpAddr::V6((net + size).into()),
            ))
        }
    }
}
