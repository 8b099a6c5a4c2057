//! The searches that run beside a sweep's ARP: each link's IPv6
//! neighbours (started with it) and the mDNS names of the hosts it finds
//! (asked as they are found).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{mdns, ndp, packet, plan::Plan, Options, Report};

/// The longest an IPv6 link search takes without a sweep deadline.
pub const SEARCH6_BUDGET: Duration = Duration::from_secs(3);

pub(super) type Search6Task =
    tokio::task::JoinHandle<(String, bool, std::io::Result<ndp::Outcome>)>;

/// Starts the IPv6 neighbour search of every planned link, alongside ARP.
pub(super) fn search_links6(
    plan: &Plan,
    opts: &Options,
    gap: Duration,
    arp_ended: &Arc<std::sync::OnceLock<Instant>>,
) -> Vec<Search6Task> {
    let now = Instant::now();
    let deadline = opts
        .deadline
        .map_or(now + SEARCH6_BUDGET, |d| d.min(now + SEARCH6_BUDGET));
    plan.links6
        .iter()
        .map(|s| {
            let (link, hosts) = (s.link.clone(), s.hosts);
            let params = ndp::Params {
                known: opts.known6.to_vec(),
                arp_ended: arp_ended.clone(),
                deadline,
                wait: opts.timeout,
                gap,
            };
            tokio::task::spawn_blocking(move || {
                let found = ndp::open(&link).and_then(|sock| {
                    let found = ndp::search(&sock, &link, &params);
                    packet::close_later(sock);
                    found
                });
                (link.name, hosts, found)
            })
        })
        .collect()
}

/// What each link's search found; a link that could not be searched is a
/// warning (IPv4 still stands).
pub(super) async fn links6_found(
    tasks: Vec<Search6Task>,
    warnings: &mut Vec<String>,
) -> Vec<(bool, ndp::Outcome)> {
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok((_, hosts, Ok(found))) => out.push((hosts, found)),
            Ok((name, _, Err(e))) => warnings.push(format!(
                "IPv6 neighbour search on {name}: {e} (it needs CAP_NET_RAW); IPv6 addresses are not listed"
            )),
            Err(e) => warnings.push(format!("IPv6 neighbour search: {e}")),
        }
    }
    out
}

/// Where found hosts go to be asked for their mDNS names.
pub(super) type MdnsHosts = tokio::sync::mpsc::UnboundedSender<std::net::Ipv4Addr>;
/// The mDNS answers, once every asked host answered or its window passed.
pub(super) type MdnsTask = tokio::task::JoinHandle<HashMap<IpAddr, mdns::Answer>>;

/// Starts asking the hosts ARP finds for their mDNS names, alongside the
/// other follow-ups, within the sweep's deadline: the hosts go in over
/// the sender as they are found.
pub(super) fn ask_mdns(
    gap: Duration,
    opts: &Options,
    arp_ended: &Arc<std::sync::OnceLock<Instant>>,
) -> (Option<MdnsHosts>, Option<MdnsTask>) {
    if !opts.mdns {
        return (None, None);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        Some(tx),
        Some(tokio::spawn(mdns::ask(
            rx,
            gap,
            opts.deadline,
            arp_ended.clone(),
        ))),
    )
}

/// The mDNS answers into the hosts they came from.
pub(super) async fn names_from_mdns(report: &mut Report, mdns: Option<MdnsTask>) {
    let Some(Ok(answers)) = (match mdns {
        Some(task) => Some(task.await),
        None => None,
    }) else {
        return;
    };
    for o in &mut report.hosts {
        if let Some(a) = o.ip.and_then(|ip| answers.get(&ip)) {
            o.mdns_name = a.name.clone();
            o.services = a.services.clone();
        }
    }
}
