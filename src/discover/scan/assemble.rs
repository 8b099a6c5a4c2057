//! A sweep's answers into one observation per address: ARP and ICMP
//! replies, the follow-ups that finished by the deadline (the rest keep
//! what an earlier probe found), and the scanner's own addresses.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    time::Instant,
};

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
    super::join6::join(report, &mut live, six, &mut follow);
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
