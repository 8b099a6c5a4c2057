//! A discovered host's names, each with its source: the client hostname
//! of its DHCP lease (lease files the scanner is pointed at), what it
//! announces over mDNS (`scan::mdns`) and reverse DNS. Every one is the
//! device's or the network's own words, cleaned where it was captured.
//! How names are shown and chosen is `export::names`.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Mutex,
};

use tracing::warn;

use super::scan::Observation;
use crate::{
    db::words::NameSource,
    leases,
    net::Mac,
    proto::{DiscoveredHost, HostName},
};

/// The names an observation carries, in the order of [`NameSource`]'s words.
pub fn of(o: &Observation) -> Vec<HostName> {
    [
        (NameSource::Dhcp, &o.dhcp_name),
        (NameSource::Mdns, &o.mdns_name),
        (NameSource::Rdns, &o.dns_name),
    ]
    .into_iter()
    .filter(|(_, n)| !n.is_empty())
    .map(|(source, name)| HostName {
        name: name.clone(),
        source: source.word().into(),
    })
    .collect()
}

/// An mDNS answer lost in one sweep does not unname a host: a host at the
/// same address with the same MAC keeps the mDNS name and services it last
/// announced, until it announces others.
pub fn keep_mdns<'h>(
    before: impl Iterator<Item = &'h DiscoveredHost>,
    hosts: &mut [&mut DiscoveredHost],
) {
    let mdns = NameSource::Mdns.word();
    let wanting: HashSet<&str> = hosts
        .iter()
        .filter(|h| !h.mac.is_empty() && !h.names.iter().any(|n| n.source == mdns))
        .map(|h| h.ip.as_str())
        .collect();
    if wanting.is_empty() {
        return;
    }
    let before: HashMap<String, &DiscoveredHost> = before
        .filter(|h| wanting.contains(h.ip.as_str()))
        .map(|h| (h.ip.clone(), h))
        .collect();
    for h in hosts.iter_mut() {
        let Some(old) = before.get(&h.ip).filter(|o| o.mac == h.mac) else {
            continue;
        };
        if h.names.iter().any(|n| n.source == mdns) {
            continue;
        }
        if let Some(n) = old.names.iter().find(|n| n.source == mdns) {
            h.names.push(n.clone());
            let rank = |n: &HostName| {
                crate::db::words::NAME_SOURCES
                    .iter()
                    .position(|(w, _)| *w == n.source)
            };
            h.names.sort_by_key(|n| rank(n));
        }
        if h.services.is_empty() {
            h.services = old.services.clone();
        }
    }
}

/// Fills in each observation's DHCP hostname and lease end from the lease
/// files, matched by MAC. A file that cannot be read, was cut at its size
/// limit or has lines that do not parse is warned about once per kind of
/// trouble, and the leases it did give are used.
pub fn join_leases(hosts: &mut [Observation], files: &[PathBuf], now: i64) {
    if files.is_empty() {
        return;
    }
    let mut by_mac: HashMap<Mac, leases::Lease> = HashMap::new();
    for path in files {
        match leases::read(path, now) {
            Ok(read) => {
                if read.truncated {
                    warn_once(path, "truncated", || {
                        format!(
                            "lease file {}: larger than {} bytes; only its start is read",
                            path.display(),
                            leases::MAX_LEASE_FILE
                        )
                    });
                }
                if read.skipped > 0 {
                    warn_once(path, "skipped", || {
                        format!(
                            "lease file {}: {} lines or blocks did not parse and were skipped",
                            path.display(),
                            read.skipped
                        )
                    });
                }
                for lease in read.leases {
                    let newer = by_mac
                        .get(&lease.mac)
                        .is_none_or(|l| lease.expires_unix > l.expires_unix);
                    if newer {
                        by_mac.insert(lease.mac, lease);
                    }
                }
            }
            Err(e) => warn_once(path, "unreadable", || e.to_string()),
        }
    }
    for o in hosts {
        if let Some(lease) = o.mac.and_then(|m| by_mac.get(&m)) {
            o.dhcp_name = lease.hostname.clone();
            o.lease_expires_unix = lease.expires_unix;
        }
    }
}

/// Says `what` once per file and kind of trouble, not every sweep.
fn warn_once(path: &std::path::Path, kind: &str, what: impl FnOnce() -> String) {
    static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let key = format!("{kind} {}", path.display());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.get_or_insert_with(HashSet::new).insert(key) {
        warn!("{}", what());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_name_hosts_by_mac_and_bad_files_are_no_crash() {
        let dir = std::env::temp_dir().join(format!("mdb-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("dnsmasq.leases");
        std::fs::write(
            &good,
            "0 dc:a6:32:00:00:05 198.18.0.5 kitchen-pi *\nnot a lease line\n",
        )
        .unwrap();
        let mut hosts = vec![Observation {
            mac: Some("dc:a6:32:00:00:05".parse().unwrap()),
            ..Default::default()
        }];
        let missing = dir.join("absent.leases");
        join_leases(&mut hosts, &[missing, good], 100);
        assert_eq!(hosts[0].dhcp_name, "kitchen-pi");
        assert_eq!(of(&hosts[0])[0].source, "dhcp");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
