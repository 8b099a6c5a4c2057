//! What the next sweep asks: its targets and ports from the config and
//! the database, and which earlier probes still stand.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use ipnetwork::IpNetwork;

use super::Config;
use crate::{
    db::Snapshot,
    discover::{classify, history::History, scan},
    proto::{Presence, SweepSummary},
};

/// Which TCP ports a sweep probes on live hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Ports {
    /// `scan.ports` of `mdb.yaml` and every machine's SSH port.
    #[default]
    Database,
    /// Those and more (`mdb scan --ports`).
    DatabaseAnd(Vec<u16>),
    /// None: liveness, MAC and vendor only.
    None,
}

/// The targets and ports of the next sweep, from config and database.
pub fn plan(cfg: &Config, snap: &Snapshot) -> scan::Options {
    let mut opts = cfg.options.clone();
    opts.targets = cfg.subnets.clone();
    if cfg.db_subnets {
        for s in snap.mdb_yaml.subnets.iter().filter(|s| s.scan) {
            for net in std::iter::once(s.cidr).chain(s.cidr6.map(IpNetwork::V6)) {
                if !opts.targets.contains(&net) {
                    opts.targets.push(net);
                }
            }
        }
    }
    // Database machines' IPv6 addresses are solicited: a silent one is
    // confirmed rather than guessed.
    opts.known6 = Arc::new(
        snap.machines
            .iter()
            .flat_map(|m| {
                m.ips
                    .iter()
                    .filter_map(|i| i.parse::<std::net::Ipv6Addr>().ok())
            })
            .collect(),
    );
    let mut ports = snap.mdb_yaml.scan.ports.clone();
    let mut ssh_ports = vec![22];
    for m in &snap.machines {
        let p = classify::ssh_port(m);
        if !ssh_ports.contains(&p) {
            ssh_ports.push(p);
        }
    }
    for p in &ssh_ports {
        if !ports.contains(p) {
            ports.push(*p);
        }
    }
    match &cfg.ports {
        Ports::Database => {}
        Ports::DatabaseAnd(more) => ports.extend(more),
        Ports::None => ports.clear(),
    }
    ports.sort_unstable();
    ports.dedup();
    opts.ports = ports;
    opts.ssh_ports = ssh_ports;
    opts
}

/// Whether the last sweep probed exactly `ports`. No last sweep (a new
/// store) counts as the same; a store from before summaries kept their
/// ports says none, so probing any is a change, once.
pub(super) fn same_ports(last: Option<&SweepSummary>, ports: &[u16]) -> bool {
    last.is_none_or(|l| {
        l.ports
            .iter()
            .copied()
            .eq(ports.iter().map(|p| u32::from(*p)))
    })
}

/// What earlier probes found of hosts that are up and were probed within
/// `refresh`: found at the same address with the same MAC, they are not
/// probed again. Database machines are probed every sweep: a closed SSH
/// port makes one `unprovisionable` at once.
pub fn fresh(history: &History, refresh: Duration, now: i64) -> HashMap<IpAddr, scan::Carried> {
    let since = now - refresh.as_secs() as i64;
    history
        .hosts()
        .filter(|h| h.presence == Presence::Up as i32 && h.probed_unix > since)
        .filter(|h| h.machine.is_empty())
        .filter_map(|h| {
            let ip = h.ip.parse().ok()?;
            let mac = if h.mac.is_empty() {
                None
            } else {
                Some(h.mac.parse().ok()?)
            };
            let carried = scan::Carried {
                mac,
                open_ports: classify::open_ports(h),
                ssh_banner: h.ssh_banner.clone(),
                ssh_host_key: h.ssh_host_key.clone(),
                dns_name: h.dns_name.clone(),
            };
            Some((ip, carried))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(ports: &[u32]) -> SweepSummary {
        SweepSummary {
            ports: ports.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn earlier_probes_count_only_for_the_same_ports() {
        assert!(
            same_ports(None, &[22, 80]),
            "a new store has nothing to carry"
        );
        assert!(same_ports(Some(&asked(&[22, 80])), &[22, 80]));
        assert!(!same_ports(Some(&asked(&[22, 80])), &[22, 80, 8080]));
        assert!(!same_ports(Some(&asked(&[22, 80])), &[22]));
        assert!(
            !same_ports(Some(&asked(&[])), &[22]),
            "a summary from before ports were kept: probe again, once"
        );
        assert!(same_ports(Some(&asked(&[])), &[]), "--no-ports");
    }
}
