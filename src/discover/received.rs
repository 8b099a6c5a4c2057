//! What a mirrored scanner sends, held to the forms this process's own
//! sweeps capture before it enters the merged view: addresses and MACs
//! parsed (and written canonically), names and banners cleaned and
//! bounded, words from their closed sets, and every list bounded. A host
//! whose address, MAC or key is not one is dropped; what is shown later is
//! escaped by its sink as ever.

use std::{collections::HashSet, net::IpAddr};

use crate::{
    escape::clean,
    net::Mac,
    proto::{AddressSeen, DiscoveredHost, HostHistory, HostName, PresenceTransition, SweepSummary},
};

/// Histories one scanner's view may hold.
pub const MAX_HOSTS: usize = 100_000;
/// Addresses a follower takes as reserved from one scanner.
pub const MAX_RESERVED: usize = 4096;
const MAX_ADDRESSES: usize = 64;
const MAX_TRANSITIONS: usize = 1024;
const MAX_HOURS: usize = 24 * 8;
const MAX_MACS: usize = 64;
const MAX_NAMES: usize = 8;
const MAX_SERVICES: usize = 16;
const MAX_SEGMENTS: usize = 16;
const MAX_PORTS: usize = 64;
const MAX_KEY: usize = 300;

/// `ip` written canonically; empty stays empty; `None` when it is no address.
fn address(ip: &str) -> Option<String> {
    if ip.is_empty() {
        return Some(String::new());
    }
    ip.parse::<IpAddr>().ok().map(|a| a.to_string())
}

fn mac(m: &str) -> Option<String> {
    if m.is_empty() {
        return Some(String::new());
    }
    m.parse::<Mac>().ok().map(|m| m.to_string())
}

fn macs(list: &[String]) -> Vec<String> {
    list.iter()
        .filter_map(|m| m.parse::<Mac>().ok())
        .take(MAX_MACS)
        .map(|m| m.to_string())
        .collect()
}

/// A history key: `mac:…`, `ip:…`, `machine:…`, `name:…`, as mdb makes them.
fn key(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.len() <= MAX_KEY
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":._@-[]".contains(&b));
    ok.then(|| k.to_string())
}

fn label(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some(String::new());
    }
    crate::db::load::check_dns_label(s)
        .ok()
        .map(|_| s.to_string())
}

/// A host as a scanner sent it, or `None` when its identity is no form.
pub fn host(h: DiscoveredHost) -> Option<DiscoveredHost> {
    use crate::db::words::NAME_SOURCES;
    let names = h
        .names
        .iter()
        .filter(|n| NAME_SOURCES.iter().any(|(w, _)| *w == n.source))
        .take(MAX_NAMES)
        .map(|n| HostName {
            name: clean(&n.name, 253),
            source: n.source.clone(),
        })
        .filter(|n| !n.name.is_empty())
        .collect();
    Some(DiscoveredHost {
        ip: address(&h.ip)?,
        mac: mac(&h.mac)?,
        key: key(&h.key)?,
        machine: label(&h.machine)?,
        vendor: clean(&h.vendor, 128),
        dns_name: clean(&h.dns_name, 253),
        ssh_banner: clean(&h.ssh_banner, crate::hostkey::MAX_BANNER),
        ssh_host_key: h
            .ssh_host_key
            .parse::<crate::hostkey::HostKey>()
            .map(|k| k.to_string())
            .unwrap_or_default(),
        detail: clean(&h.detail, 512),
        seen_by: h
            .seen_by
            .split(',')
            .filter(|w| matches!(*w, "icmp" | "arp" | "tcp"))
            .collect::<Vec<_>>()
            .join(","),
        names,
        services: h
            .services
            .iter()
            .filter(|s| crate::net::is_service_type(s))
            .take(MAX_SERVICES)
            .cloned()
            .collect(),
        other_macs: macs(&h.other_macs),
        macs_seen: macs(&h.macs_seen),
        segments: h
            .segments
            .iter()
            .filter_map(|s| label(s).filter(|s| !s.is_empty()))
            .take(MAX_SEGMENTS)
            .collect(),
        open_ports: h
            .open_ports
            .iter()
            .copied()
            .filter(|p| (1..=65535).contains(p))
            .take(MAX_PORTS)
            .collect(),
        state: known(h.state, crate::proto::HostState::try_from),
        guessed_use: known(h.guessed_use, crate::proto::UseKind::try_from),
        presence: known(h.presence, crate::proto::Presence::try_from),
        ..h
    })
}

/// An enum's value as sent when it is one of its values, else unspecified.
fn known<E>(v: i32, of: impl Fn(i32) -> Result<E, prost::UnknownEnumValue>) -> i32 {
    if of(v).is_ok() {
        v
    } else {
        0
    }
}

/// A history as a scanner sent it, or `None` when its host is no form.
pub fn history(h: HostHistory) -> Option<HostHistory> {
    let host = self::host(h.host?)?;
    let addresses = h
        .addresses
        .into_iter()
        .filter_map(|a| {
            Some(AddressSeen {
                mac: mac(&a.mac)?,
                ip: address(&a.ip)?,
                ..a
            })
        })
        .take(MAX_ADDRESSES)
        .collect();
    let transitions = h
        .transitions
        .into_iter()
        .rev()
        .take(MAX_TRANSITIONS)
        .rev()
        .filter_map(transition)
        .collect();
    let mut hours = h.hours;
    hours.truncate(MAX_HOURS);
    Some(HostHistory {
        host: Some(host),
        addresses,
        transitions,
        hours,
    })
}

/// A presence transition as a scanner sent it.
pub fn transition(t: PresenceTransition) -> Option<PresenceTransition> {
    Some(PresenceTransition {
        key: key(&t.key)?,
        ip: address(&t.ip)?,
        machine: label(&t.machine)?,
        presence: known(t.presence, crate::proto::Presence::try_from),
        ..t
    })
}

/// A sweep's summary as a scanner sent it.
pub fn sweep(s: SweepSummary) -> SweepSummary {
    SweepSummary {
        subnets: s
            .subnets
            .iter()
            .filter(|n| n.parse::<ipnetwork::IpNetwork>().is_ok())
            .take(64)
            .cloned()
            .collect(),
        ports: s
            .ports
            .iter()
            .copied()
            .filter(|p| (1..=65535).contains(p))
            .take(MAX_PORTS)
            .collect(),
        ..s
    }
}

/// The addresses a scanner says its enrolments hold, bounded.
pub fn reserved(ips: &[String]) -> HashSet<IpAddr> {
    ips.iter()
        .filter_map(|ip| ip.parse().ok())
        .take(MAX_RESERVED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_fields_are_dropped_cleaned_or_bounded() {
        let h = DiscoveredHost {
            ip: "198.18.0.5".into(),
            mac: "DC:A6:32:00:00:05".into(),
            key: "mac:dc:a6:32:00:00:05".into(),
            vendor: "x\n<!-- -->\r@team".into(),
            seen_by: "arp,evil".into(),
            names: vec![
                HostName {
                    name: "a\rb".into(),
                    source: "mdns".into(),
                },
                HostName {
                    name: "x".into(),
                    source: "forged".into(),
                },
            ],
            other_macs: vec!["nope".into(); 100],
            open_ports: vec![22, 70_000],
            state: 99,
            ..Default::default()
        };
        let got = host(h.clone()).unwrap();
        assert_eq!(got.mac, "dc:a6:32:00:00:05");
        assert!(!got.vendor.contains('\n') && !got.vendor.contains('\r'));
        assert_eq!(got.seen_by, "arp");
        assert_eq!(got.names.len(), 1);
        assert_eq!(got.names[0].name, "a b");
        assert!(got.other_macs.is_empty());
        assert_eq!(got.open_ports, [22]);
        assert_eq!(got.state, 0);
        for bad in [
            DiscoveredHost {
                ip: "198.18.0.5\n| x |".into(),
                ..h.clone()
            },
            DiscoveredHost {
                key: "mac:x y".into(),
                ..h.clone()
            },
            DiscoveredHost {
                machine: "Not A Label".into(),
                ..h.clone()
            },
        ] {
            assert!(host(bad).is_none());
        }
        assert_eq!(reserved(&vec!["198.18.0.9".to_string(); 10_000]).len(), 1);
    }
}
