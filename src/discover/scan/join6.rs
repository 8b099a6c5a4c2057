//! The IPv6 neighbours of each searched link into a sweep's hosts.
//!
//! A MAC's addresses join the hosts ARP found with that MAC. On an IPv6
//! target a MAC no host has is a host of its own, if it answered what the
//! sweep sent (an echo, a solicitation): a MAC that only spoke unasked
//! (advertisements, DAD, router advertisements, entries the kernel learnt
//! from them) could be any of a forger's thousands. Its primary address is
//! its own: one no other MAC claims, or the EUI-64 of its MAC; so a forger
//! claiming a real host's addresses never takes its place, whatever the
//! order, and ends up a further MAC of what it claimed.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv6Addr},
};

use super::{ndp, probes::Probes, Observation, Report};
use crate::{ipv6, net::Mac};

pub(super) fn join(
    report: &mut Report,
    live: &mut BTreeMap<IpAddr, Observation>,
    six: Vec<(bool, ndp::Outcome)>,
    follow: &mut Probes,
) {
    for (hosts, found) in six {
        report.sent.ndp += found.sent;
        report.ndp_capped += found.capped;
        let mut by_mac: BTreeMap<Mac, Vec<ndp::Neighbour>> = BTreeMap::new();
        let mut claims: HashMap<Ipv6Addr, u32> = HashMap::new();
        for n in found.neighbours {
            *claims.entry(n.ip).or_default() += 1;
            by_mac.entry(n.mac).or_default().push(n);
        }
        let mut own_hosts = Vec::new();
        for (mac, ns) in by_mac {
            let addrs: Vec<Ipv6Addr> = ns.iter().map(|n| n.ip).collect();
            let mut joined = false;
            for o in live.values_mut().filter(|o| o.mac == Some(mac)) {
                add(o, &addrs);
                joined = true;
            }
            if hosts && !joined && ns.iter().any(|n| n.heard.answered()) {
                own_hosts.push((mac, ns));
            }
        }
        // Hosts with an address of their own first: a contested address
        // goes to whoever holds nothing else.
        let candidates: Vec<_> = own_hosts
            .into_iter()
            .map(|(mac, ns)| (primary_order(mac, &ns, &claims), mac, ns))
            .collect();
        let (first, rest): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|(order, _, _)| order.first().is_some_and(|(contested, _, _)| !contested));
        for (order, mac, ns) in first.into_iter().chain(rest) {
            place(live, follow, mac, &ns, &order);
        }
    }
}

/// A host's addresses in the order they serve as its primary: its own
/// (unclaimed by others, or its EUI-64) first, then by kind.
fn primary_order(
    mac: Mac,
    ns: &[ndp::Neighbour],
    claims: &HashMap<Ipv6Addr, u32>,
) -> Vec<(bool, ipv6::Kind, Ipv6Addr)> {
    let held: Vec<ipv6::Held> = ns.iter().map(|n| ipv6::Held::once(n.ip)).collect();
    let kinds = ipv6::kinds(Some(mac), &held, &[]);
    let mut order: Vec<(bool, ipv6::Kind, Ipv6Addr)> = ns
        .iter()
        .zip(kinds)
        .map(|(n, k)| {
            let own =
                claims.get(&n.ip).copied().unwrap_or(0) <= 1 || ipv6::eui64(mac, n.ip) == n.ip;
            (!own, k, n.ip)
        })
        .collect();
    order.sort();
    order
}

/// One host at its first free primary address (its ports probed there
/// unless it is link-local); when every one is taken, a further MAC of the
/// first.
fn place(
    live: &mut BTreeMap<IpAddr, Observation>,
    follow: &mut Probes,
    mac: Mac,
    ns: &[ndp::Neighbour],
    order: &[(bool, ipv6::Kind, Ipv6Addr)],
) {
    let free = order
        .iter()
        .map(|(_, _, ip)| IpAddr::V6(*ip))
        .find(|ip| !live.contains_key(ip));
    let Some(primary) = free else {
        if let Some(o) = order
            .first()
            .and_then(|(_, _, ip)| live.get_mut(&IpAddr::V6(*ip)))
        {
            o.also_macs.push(mac);
        }
        return;
    };
    let mut o = Observation {
        mac: Some(mac),
        rtt: ns.iter().filter_map(|n| n.rtt).min(),
        ..Default::default()
    };
    let addrs: Vec<Ipv6Addr> = ns.iter().map(|n| n.ip).collect();
    add(&mut o, &addrs);
    if !matches!(primary, IpAddr::V6(a) if ipv6::is_link_local(a)) {
        follow.start(primary, Some(mac), None);
    }
    live.insert(primary, o);
}

fn add(o: &mut Observation, addrs: &[Ipv6Addr]) {
    for a in addrs {
        if !o.v6.contains(a) && o.v6.len() < ndp::MAX_PER_MAC {
            o.v6.push(*a);
        }
    }
    o.v6.sort();
    if !o.seen_by.contains(&"ndp") {
        o.seen_by.push("ndp");
    }
}
