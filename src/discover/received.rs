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

/// Histories one scanner's view may hold: as many as a scanner keeps.
pub const MAX_HOSTS: usize = super::history::MAX_HOSTS;
/// Addresses a follower takes as reserved from one scanner.
pub const MAX_RESERVED: usize = 4096;
const MAX_ADDRESSES: usize = super::history::MAX_ADDRESSES;
const MAX_TRANSITIONS: usize = super::history::MAX_TRANSITIONS;
const MAX_HOURS: usize = 24 * 8;
const MAX_MACS: usize = 64;
const MAX_NAMES: usize = 8;
const MAX_SERVICES: usize = 16;
const MAX_SEGMENTS: usize = 16;
const MAX_PORTS: usize = 64;
const MAX_KEY: usize = 300;
/// `t`, or this clock's now when `t` is later: no sighting outranks every
/// other in the merge (the newest decides) by being dated in the future.
/// A scanner whose clock runs ahead loses nothing but those seconds.
fn not_ahead(t: i64) -> i64 {
    t.min(crate::db::store::now_unix())
}

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
        seen_by: ["icmp", "arp", "tcp", "ndp", "snmp"]
            .into_iter()
            .filter(|w| h.seen_by.split(',').any(|s| s == *w))
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
        first_seen_unix: not_ahead(h.first_seen_unix),
        last_seen_unix: not_ahead(h.last_seen_unix),
        ipv6_addresses: ipv6_addresses(&h.mac, &h.ipv6_addresses),
        source: source(&h.source),
        switch_port: h.switch_port.as_ref().and_then(switch_port),
        ..h
    })
}

/// A switch named by a DNS label, a port name cleaned and bounded, a VLAN
/// that exists; else none.
fn switch_port(p: &crate::proto::SwitchPort) -> Option<crate::proto::SwitchPort> {
    let switch = label(&p.switch).filter(|s| !s.is_empty())?;
    let port = clean(&p.port, 64);
    (!port.is_empty() && p.vlan <= 4094).then_some(crate::proto::SwitchPort {
        switch,
        port,
        vlan: p.vlan,
    })
}

/// `snmp:NAME` with NAME a DNS label, else nothing.
fn source(s: &str) -> String {
    s.strip_prefix("snmp:")
        .and_then(label)
        .filter(|n| !n.is_empty())
        .map(|n| crate::snmp::tag(&n))
        .unwrap_or_default()
}

/// A host's IPv6 addresses as sent: device unicast addresses only,
/// bounded, times not ahead, and kinds judged here from the addresses,
/// its MAC and their times (a scanner's word "stable" would be proposed).
fn ipv6_addresses(mac: &str, list: &[crate::proto::Ipv6Address]) -> Vec<crate::proto::Ipv6Address> {
    let held: Vec<crate::ipv6::Held> = list
        .iter()
        .filter_map(|a| {
            let ip: std::net::Ipv6Addr = a.ip.parse().ok()?;
            crate::ipv6::is_device_unicast(ip).then(|| crate::ipv6::Held {
                ip,
                first_seen: not_ahead(a.first_seen_unix),
                last_seen: not_ahead(a.last_seen_unix),
            })
        })
        .take(super::history::MAX_SHOWN_V6)
        .collect();
    super::classify::ipv6_addresses(mac.parse().ok(), &held, &[])
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
                first_seen_unix: not_ahead(a.first_seen_unix),
                last_seen_unix: not_ahead(a.last_seen_unix),
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
        at_unix: not_ahead(t.at_unix),
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
        at_unix: not_ahead(s.at_unix),
        ..s
    }
}

/// A scanner has one address of its own on each subnet it sweeps: a host
/// it calls a scanner is believed to be one only when its address lies in
/// a subnet its recent `sweeps` name and no other such host came first
/// there. Any other
/// such claim is no state at all, and the host is classified as what it
/// is (a scanner's own address is never filed, so the claim would hide a
/// device).
pub fn scanner_claims(histories: &mut [HostHistory], sweeps: &[SweepSummary]) {
    let subnets = swept(sweeps);
    let mut claimed = HashSet::new();
    let scanner = crate::proto::HostState::Scanner as i32;
    for host in histories.iter_mut().filter_map(|h| h.host.as_mut()) {
        if host.state != scanner {
            continue;
        }
        let subnet = host
            .ip
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| subnets.iter().position(|n| n.contains(ip)));
        if !subnet.is_some_and(|i| claimed.insert(i)) {
            host.state = crate::proto::HostState::Unspecified as i32;
        }
    }
}

/// The addresses a scanner says its enrolments hold, bounded, and only
/// those in a subnet its recent `sweeps` name (a scanner reserves nothing
/// beyond its own segment).
pub fn reserved(ips: &[String], sweeps: &[SweepSummary]) -> HashSet<IpAddr> {
    let subnets = swept(sweeps);
    ips.iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| subnets.iter().any(|n| n.contains(*ip)))
        .take(MAX_RESERVED)
        .collect()
}

/// The subnets recent sweeps name, each once.
fn swept(sweeps: &[SweepSummary]) -> Vec<ipnetwork::IpNetwork> {
    let mut subnets: Vec<ipnetwork::IpNetwork> = sweeps
        .iter()
        .flat_map(|s| s.subnets.iter().filter_map(|n| n.parse().ok()))
        .collect();
    subnets.sort();
    subnets.dedup();
    subnets
}

/// A sweep time, or a view's time, no later than now.
pub fn time(t: i64) -> i64 {
    not_ahead(t)
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
            source: "snmp:gw\n<b>".into(),
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
        assert_eq!(got.source, "", "a source that is no snmp:LABEL");
        let named = host(DiscoveredHost {
            source: "snmp:gw".into(),
            ..h.clone()
        })
        .unwrap();
        assert_eq!(named.source, "snmp:gw");
        let port = |switch: &str, port: &str, vlan| {
            host(DiscoveredHost {
                switch_port: Some(crate::proto::SwitchPort {
                    switch: switch.into(),
                    port: port.into(),
                    vlan,
                }),
                ..h.clone()
            })
            .unwrap()
            .switch_port
        };
        let cleaned = port("sw-2", "p3\u{1b}[2J", 10).unwrap().port;
        assert!(
            cleaned.starts_with("p3") && !cleaned.contains('\u{1b}'),
            "{cleaned:?}"
        );
        assert!(port("Sw 2", "p3", 10).is_none());
        assert!(port("sw-2", "p3", 5000).is_none());
        assert!(port("sw-2", "", 1).is_none());
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
        let sweeps = [SweepSummary {
            subnets: vec!["198.18.0.0/24".into()],
            ..Default::default()
        }];
        let claimed: Vec<String> = (0..10_000)
            .map(|i| ["198.18.0.9", "203.0.113.1"][i % 2].to_string())
            .collect();
        assert_eq!(reserved(&claimed, &sweeps).len(), 1);
    }

    #[test]
    fn a_sighting_dated_in_the_future_is_dated_now() {
        let now = crate::db::store::now_unix();
        let far = now + 10 * 365 * 86_400;
        let h = history(HostHistory {
            host: Some(DiscoveredHost {
                ip: "198.18.0.5".into(),
                key: "ip:198.18.0.5".into(),
                first_seen_unix: 1_000,
                last_seen_unix: far,
                ..Default::default()
            }),
            transitions: vec![PresenceTransition {
                key: "ip:198.18.0.5".into(),
                at_unix: far,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        let host = h.host.unwrap();
        assert_eq!(host.first_seen_unix, 1_000);
        assert!(host.last_seen_unix <= now + 5);
        assert!(h.transitions[0].at_unix <= now + 5);
    }

    #[test]
    fn a_scanner_is_believed_at_one_address_per_subnet_it_sweeps() {
        let scanner = crate::proto::HostState::Scanner as i32;
        let claim = |ip: &str| HostHistory {
            host: Some(DiscoveredHost {
                ip: ip.into(),
                state: scanner,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut hs = vec![
            claim("198.18.0.1"),
            claim("198.18.0.22"),
            claim("198.18.1.1"),
            claim("203.0.113.9"),
        ];
        let sweeps = [SweepSummary {
            subnets: vec!["198.18.0.0/24".into(), "198.18.1.0/24".into()],
            ..Default::default()
        }];
        scanner_claims(&mut hs, &sweeps);
        let states: Vec<i32> = hs.iter().map(|h| h.host.as_ref().unwrap().state).collect();
        assert_eq!(states, [scanner, 0, scanner, 0]);
        let mut none = vec![claim("198.18.0.1")];
        scanner_claims(&mut none, &[]);
        assert_eq!(none[0].host.as_ref().unwrap().state, 0);
    }
}
