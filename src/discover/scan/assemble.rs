//! A sweep's answers into one observation per address: ARP and ICMP
//! replies, the follow-ups that finished by the deadline (the rest keep
//! what an earlier probe found), and the scanner's own addresses.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    time::Instant,
};

use std::net::Ipv6Addr;

use crate::{ipv6, net::Mac};

use super::{
    arp, icmp, ndp, neighbors, plan::Plan, probes, probes::Probes, vendor, Error, Observation,
    Report,
};

/// The follow-ups that finish by the deadline; the rest are stopped.
async fn follow_ups(follow: &mut Probes, deadline: Option<Instant>) -> Vec<probes::Found> {
    let mut out = Vec::new();
    let collect = async {
        while let Some(r) = follow.tasks.join_next().await {
            if let Ok(Some(f)) = r {
                out.push(f);
            }
        }
    };
    match deadline {
        Some(d) => {
            let _ = tokio::time::timeout_at(d.into(), collect).await;
        }
        None => collect.await,
    }
    follow.tasks.abort_all();
    out
}

/// The IPv6 neighbours of each searched link into the hosts: a MAC's
/// addresses join the hosts with that MAC; on an IPv6 target a MAC no
/// host has and that answered something (not only spoke unasked) is a
/// host of its own, at its primary address (its ports
/// probed there unless that is link-local), or, when another MAC holds
/// every address it claims, a further MAC of that address.
fn join_v6(
    report: &mut Report,
    live: &mut BTreeMap<IpAddr, Observation>,
    six: Vec<(bool, ndp::Outcome)>,
    follow: &mut Probes,
) {
    for (hosts, found) in six {
        report.sent.ndp += found.sent;
        report.ndp_capped += found.capped;
        let mut by_mac: BTreeMap<Mac, Vec<ndp::Neighbour>> = BTreeMap::new();
        for n in found.neighbours {
            by_mac.entry(n.mac).or_default().push(n);
        }
        for (mac, ns) in by_mac {
            let addrs: Vec<Ipv6Addr> = ns.iter().map(|n| n.ip).collect();
            let mut joined = false;
            for o in live.values_mut().filter(|o| o.mac == Some(mac)) {
                add_v6(o, &addrs);
                joined = true;
            }
            // A MAC that only ever spoke unasked (advertisements, DAD) is
            // no host of its own: anyone can forge those by the thousand.
            let answered = ns.iter().any(|n| n.heard != ndp::Heard::Overheard);
            if joined || !hosts || !answered {
                continue;
            }
            let held: Vec<ipv6::Held> = addrs
                .iter()
                .map(|&ip| ipv6::Held {
                    ip,
                    first_seen: 0,
                    last_seen: 0,
                })
                .collect();
            let kinds = ipv6::kinds(Some(mac), &held, &[]);
            let mut order: Vec<(ipv6::Kind, Ipv6Addr)> =
                kinds.into_iter().zip(addrs.iter().copied()).collect();
            order.sort();
            let free = order
                .iter()
                .map(|(_, ip)| IpAddr::V6(*ip))
                .find(|ip| !live.contains_key(ip));
            let Some(primary) = free else {
                if let Some(o) = live.get_mut(&IpAddr::V6(order[0].1)) {
                    o.also_macs.push(mac);
                }
                continue;
            };
            let mut o = Observation {
                mac: Some(mac),
                rtt: ns.iter().filter_map(|n| n.rtt).min(),
                ..Default::default()
            };
            add_v6(&mut o, &addrs);
            if !matches!(primary, IpAddr::V6(a) if ipv6::is_link_local(a)) {
                follow.start(primary, Some(mac), None);
            }
            live.insert(primary, o);
        }
    }
}

fn add_v6(o: &mut Observation, addrs: &[Ipv6Addr]) {
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

/// Every answer in one observation per address; ICMP as a second witness
/// for ARP-found hosts, while the last port probes finish.
pub(super) async fn assemble(
    report: &mut Report,
    (arp, six): (Vec<arp::Outcome>, Vec<(bool, ndp::Outcome)>),
    pinged: icmp::Outcome,
    mut follow: Probes,
    plan: &Plan,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let mut live: BTreeMap<IpAddr, Observation> = BTreeMap::new();
    for outcome in arp {
        report.sent.arp += outcome.sent;
        for r in outcome.replies {
            let o = live.entry(IpAddr::V4(r.ip)).or_default();
            match o.mac {
                None => {
                    o.mac = Some(r.mac);
                    o.rtt = Some(r.rtt);
                    o.seen_by.push("arp");
                }
                Some(_) => o.also_macs.push(r.mac),
            }
        }
    }
    let neighbours = neighbors::read();
    for (&ip, &rtt) in &pinged.rtts {
        let o = live.entry(ip).or_default();
        o.seen_by.push("icmp");
        o.rtt = Some(rtt);
        o.mac = match ip {
            IpAddr::V4(v4) => neighbours.get(&v4).copied(),
            IpAddr::V6(_) => None,
        };
        follow.start(ip, o.mac, None);
    }
    join_v6(report, &mut live, six, &mut follow);
    report.sent.tcp += follow.finish_syn().await;
    let now = crate::db::store::now_unix();
    let mut done = HashSet::new();
    for f in follow_ups(&mut follow, deadline).await {
        report.sent.tcp += f.connects;
        done.insert(f.ip);
        if let Some(o) = live.get_mut(&f.ip) {
            if f.echoed && !o.seen_by.contains(&"icmp") {
                o.seen_by.push("icmp");
                report.sent.icmp += 1;
            }
            o.probed_unix = if f.probed { now } else { 0 };
            o.open_ports = f.open;
            o.ssh_banner = f.ssh.banner;
            o.ssh_host_key = f.ssh.host_key;
            o.dns_name = f.dns_name;
        }
    }
    report.carried = follow.carried_count;
    for (ip, o) in live.iter_mut().filter(|(ip, _)| !done.contains(ip)) {
        // Shed: what an earlier probe found still stands.
        report.shed += 1;
        if let Some(c) = follow.carried_for(*ip, o.mac) {
            o.open_ports = c.open_ports.clone();
            o.ssh_banner = c.ssh_banner.clone();
            o.ssh_host_key = c.ssh_host_key.clone();
            o.dns_name = c.dns_name.clone();
        }
    }
    for &(ip, mac) in &plan.own {
        let o = live.entry(ip).or_default();
        o.mac = Some(mac);
        o.scanner = true;
        o.seen_by = vec!["self"];
    }
    report.hosts = live
        .into_iter()
        .map(|(ip, mut o)| {
            o.ip = Some(ip);
            o.vendor = o.mac.map(vendor).unwrap_or_default();
            o
        })
        .collect();
    Ok(())
}
