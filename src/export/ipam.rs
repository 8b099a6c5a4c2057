//! IP reservations: the lowest free static address of a subnet. A pure
//! function over the database and the last sweep, so it is deterministic and
//! testable; it reserves nothing by itself (the DB commit does).

use std::{collections::HashSet, net::IpAddr};

use crate::db::{mdb_yaml::Subnet, Snapshot};

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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::{net::IpRange, proto::Machine};

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, n))
    }

    proptest! {
        #[test]
        fn suggestion_is_free_in_range_lowest_and_deterministic(
            first in 1u8..200, len in 0u8..50,
            used in proptest::collection::vec(1u8..255, 0..60),
            excluded in proptest::collection::vec(1u8..255, 0..10),
            seen in proptest::collection::vec(1u8..255, 0..20),
            pool in proptest::option::of((1u8..250, 0u8..5)),
        ) {
            let last = first.saturating_add(len).min(254);
            let dynamic: Vec<IpRange> = pool
                .map(|(a, l)| IpRange { first: v4(a), last: v4(a.saturating_add(l).min(254)) })
                .into_iter()
                .collect();
            let subnet = Subnet {
                name: "lab".into(),
                cidr: "198.18.0.0/24".parse().unwrap(),
                cidr6: None,
                static_range: Some(IpRange { first: v4(first), last: v4(last) }),
                dynamic,
                exclude: excluded.iter().map(|n| v4(*n)).collect(),
                scan: true,
            };
            let mut names = std::collections::BTreeSet::new();
            let machines: Vec<Machine> = used
                .iter()
                .filter(|n| names.insert(**n))
                .map(|n| Machine { name: format!("m{n}"), ips: vec![v4(*n).to_string()], ..Default::default() })
                .collect();
            let snap = Snapshot::new("r".into(), machines, Default::default());
            let seen: HashSet<IpAddr> = seen.iter().map(|n| v4(*n)).collect();
            let taken = |ip: IpAddr| snap.by_ip(ip).is_some() || seen.contains(&ip) || subnet.exclude.contains(&ip) || subnet.dynamic.iter().any(|r| r.contains(ip));

            let got = next_free(&subnet, &snap, &seen);
            prop_assert_eq!(got, next_free(&subnet, &snap, &seen));
            match got {
                Some(ip) => {
                    prop_assert!(subnet.static_range.unwrap().contains(ip));
                    prop_assert!(!taken(ip));
                    let IpAddr::V4(got4) = ip else { unreachable!() };
                    for n in first..got4.octets()[3] {
                        prop_assert!(taken(v4(n)), "{} is free but lower", v4(n));
                    }
                }
                None => {
                    for n in first..=last {
                        prop_assert!(taken(v4(n)));
                    }
                }
            }
        }
    }

    #[test]
    fn without_a_static_range_the_host_range_is_used() {
        let subnet = Subnet {
            name: "x".into(),
            cidr: "198.18.0.0/30".parse().unwrap(),
            cidr6: None,
            static_range: None,
            dynamic: vec![],
            exclude: vec![],
            scan: true,
        };
        let snap = Snapshot::default();
        assert_eq!(next_free(&subnet, &snap, &HashSet::new()), Some(v4(1)));
        let seen: HashSet<IpAddr> = [v4(1), v4(2)].into();
        assert_eq!(
            next_free(&subnet, &snap, &seen),
            None,
            "network and broadcast are never suggested"
        );
    }
}
