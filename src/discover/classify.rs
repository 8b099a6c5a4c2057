//! Observations × the database → host states. A pure function over values:
//! no clock, no network, no history (`discovery` keeps that).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::{
    db::{self, mdb_yaml::Rule, Snapshot},
    discover::scan::Observation,
    ipv6,
    net::Mac,
    proto::{machine::Use, DiscoveredHost, HostState, Ipv6Address, Machine, Provisioner, UseKind},
};

/// One classified host; `key` is its identity across sweeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Classified {
    pub key: String,
    pub host: DiscoveredHost,
    /// The IPv6 addresses its database machine lists (stable by word).
    pub listed6: Vec<std::net::Ipv6Addr>,
}

/// A host's IPv6 addresses with their kinds, stable first; `held` gives
/// each one's first and last seen (all 0 for one sweep's view).
pub fn ipv6_addresses(
    mac: Option<Mac>,
    held: &[ipv6::Held],
    listed: &[std::net::Ipv6Addr],
) -> Vec<Ipv6Address> {
    let kinds = ipv6::kinds(mac, held, listed);
    let mut out: Vec<(ipv6::Kind, &ipv6::Held)> = kinds.into_iter().zip(held).collect();
    out.sort_by_key(|(k, h)| (*k, std::cmp::Reverse(h.last_seen), h.ip));
    out.into_iter()
        .map(|(k, h)| Ipv6Address {
            ip: h.ip.to_string(),
            kind: k.word().into(),
            first_seen_unix: h.first_seen,
            last_seen_unix: h.last_seen,
        })
        .collect()
}

/// The IPv6 addresses a database machine lists.
fn listed6(m: &Machine) -> Vec<std::net::Ipv6Addr> {
    m.ips.iter().filter_map(|i| i.parse().ok()).collect()
}

/// The identity of a host across sweeps: its MAC when that is stable, else
/// its IP (a randomised MAC changes, so it is no identity).
pub fn identity(ip: Option<IpAddr>, mac: Option<Mac>) -> String {
    match (mac, ip) {
        (Some(m), _) if !m.is_local() => format!("mac:{m}"),
        (_, Some(ip)) => format!("ip:{ip}"),
        (Some(m), None) => format!("mac:{m}"),
        (None, None) => String::new(),
    }
}

/// Whether mdb expects to provision (ssh into) this machine.
pub fn expects_provisioning(m: &Machine) -> bool {
    matches!(m.r#use, Some(Use::Cluster(_)) | Some(Use::Development(_)))
        || m.features
            .as_ref()
            .is_some_and(|f| f.provisioner != Provisioner::None as i32)
}

pub fn ssh_port(m: &Machine) -> u16 {
    m.ssh
        .as_ref()
        .map(|s| s.port as u16)
        .filter(|p| *p != 0)
        .unwrap_or(22)
}

/// What the rules see of an observation.
pub fn seen(o: &Observation) -> crate::db::rules::Seen<'_> {
    crate::db::rules::Seen {
        ip: o.ip,
        mac: o.mac,
        vendor: &o.vendor,
        banner: &o.ssh_banner,
        open_ports: &o.open_ports,
        services: &o.services,
    }
}

/// The use of the first rule whose every given condition holds.
pub fn guess_use(o: &Observation, rules: &[Rule]) -> UseKind {
    crate::db::rules::first_match(rules, &seen(o)).map_or(UseKind::Unspecified, |r| r.guess)
}

/// What a sweep saw of a host, before any comparison with the database.
pub fn observed(o: &Observation) -> DiscoveredHost {
    DiscoveredHost {
        ip: o.ip.map(|i| i.to_string()).unwrap_or_default(),
        mac: o.mac.map(|m| m.to_string()).unwrap_or_default(),
        vendor: o.vendor.clone(),
        dns_name: o.dns_name.clone(),
        rtt_micros: o
            .rtt
            .map_or(0, |d| d.as_micros().min(u32::MAX as u128) as u32),
        open_ports: o.open_ports.iter().map(|p| u32::from(*p)).collect(),
        ssh_banner: o.ssh_banner.clone(),
        ssh_host_key: o.ssh_host_key.clone(),
        mac_is_local: o.mac.is_some_and(|m| m.is_local()),
        seen_by: o.seen_by.join(","),
        other_macs: o.also_macs.iter().map(|m| m.to_string()).collect(),
        probed_unix: o.probed_unix,
        names: super::names::of(o),
        services: o.services.clone(),
        lease_expires_unix: o.lease_expires_unix,
        ipv6_addresses: ipv6_addresses(o.mac, &seen_once(&o.v6), &[]),
        source: o.source.clone(),
        switch_port: o.switch_port.clone(),
        segments: if o.segment.is_empty() {
            Vec::new()
        } else {
            vec![o.segment.clone()]
        },
        ..Default::default()
    }
}

fn seen_once(v6: &[std::net::Ipv6Addr]) -> Vec<ipv6::Held> {
    v6.iter().map(|&ip| ipv6::Held::once(ip)).collect()
}

/// States an observation shows by itself, whatever the database says:
/// the scanner's own address, and one address answered by several MACs.
fn evident(o: &Observation) -> Option<(HostState, String)> {
    if o.scanner {
        return Some((HostState::Scanner, "this scanner's own address".into()));
    }
    let (Some(ip), Some(first)) = (o.ip, o.mac) else {
        return None;
    };
    if o.also_macs.is_empty() {
        return None;
    }
    // A spoofing host can bring thousands: the text names a few.
    const SHOWN: usize = 8;
    let count = 1 + o.also_macs.len();
    let mut macs: Vec<String> = std::iter::once(first)
        .chain(o.also_macs.iter().copied())
        .take(SHOWN)
        .map(|m| m.to_string())
        .collect();
    if count > SHOWN {
        macs.push(format!("…and {} more", count - SHOWN));
    }
    Some((
        HostState::Conflict,
        format!("{ip} answered ARP from {count} MACs: {}", macs.join(", ")),
    ))
}

/// An observation as a host with no database to compare it with.
pub fn described(o: &Observation) -> Classified {
    let mut host = observed(o);
    if let Some((state, detail)) = evident(o) {
        host.state = state as i32;
        host.detail = detail;
    }
    Classified {
        key: identity(o.ip, o.mac),
        host,
        listed6: Vec::new(),
    }
}

/// Classifies every observation; then every machine of the database that
/// has an address inside `swept` but was not observed is returned as
/// `unseen` (the caller decides when unseen becomes missing).
pub fn classify<'a>(
    obs: &[Observation],
    snap: &'a Snapshot,
    swept: &[IpNetwork],
    rules: &[Rule],
) -> (Vec<Classified>, Vec<&'a Machine>) {
    let mut seen_machines = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(obs.len());
    // One MAC answering for several addresses (a router, a hypervisor's
    // bridge, macvlan containers) is one box with aliases, not a move.
    let mut ips_of_mac: std::collections::HashMap<Mac, Vec<String>> =
        std::collections::HashMap::new();
    for o in obs {
        if let (Some(m), Some(ip)) = (o.mac, o.ip) {
            ips_of_mac.entry(m).or_default().push(ip.to_string());
        }
    }
    for o in obs {
        let mut h = observed(o);
        let by_mac = o.mac.and_then(|m| snap.by_mac(m));
        let by_ip =
            o.ip.and_then(|ip| snap.by_ip(ip))
                .or_else(|| o.v6.iter().find_map(|a| snap.by_ip(IpAddr::V6(*a))));
        let ip_text = h.ip.clone();
        // Every address it answered at: a machine is where the database
        // puts it when any of them is listed.
        let mine: Vec<String> = std::iter::once(ip_text.clone())
            .chain(o.v6.iter().map(|a| a.to_string()))
            .collect();
        let at_listed = |m: &Machine| {
            m.ips.is_empty()
                || mine.iter().any(|i| m.ips.contains(i))
                // Listed by IPv6 only, seen where IPv6 was not searched.
                || (o.v6.is_empty() && m.ips.iter().all(|i| i.contains(':')))
        };
        let siblings: &[String] = o
            .mac
            .and_then(|m| ips_of_mac.get(&m))
            .map_or(&[], |v| v.as_slice());
        let (state, machine, detail) = match (by_mac, by_ip) {
            (Some(m), _) if at_listed(m) => (HostState::Known, Some(m), String::new()),
            (Some(m), _) if siblings.iter().any(|ip| m.ips.contains(ip)) => (
                HostState::Known,
                Some(m),
                format!(
                    "another address of {} (its MAC also answers at {})",
                    m.name,
                    m.ips.join(",")
                ),
            ),
            (Some(m), _) => (
                HostState::Moved,
                Some(m),
                format!(
                    "MAC {} belongs to {} at {}, seen at {}",
                    h.mac,
                    m.name,
                    m.ips.join(","),
                    ip_text
                ),
            ),
            (None, Some(m)) if m.mac.is_empty() || o.mac.is_none() => {
                (HostState::Known, Some(m), String::new())
            }
            (None, Some(m)) => (
                HostState::Conflict,
                Some(m),
                format!(
                    "{} is {}'s address (MAC {}), answered by MAC {}",
                    ip_text, m.name, m.mac, h.mac
                ),
            ),
            (None, None) => {
                h.guessed_use = guess_use(o, rules) as i32;
                let why = if h.mac_is_local {
                    "not in the database (locally administered, likely randomised MAC)".to_string()
                } else {
                    "not in the database".to_string()
                };
                (HostState::New, None, why)
            }
        };
        let (state, detail) = match (state, machine) {
            // A router's table says a host is there, not what its ports
            // do: only the scanner's own probes judge SSH.
            (HostState::Known, Some(m))
                if expects_provisioning(m) && at_listed(m) && o.source.is_empty() =>
            {
                let port = ssh_port(m);
                if !o.open_ports.contains(&port) {
                    (
                        HostState::Unprovisionable,
                        format!("SSH port {port} of {} is closed or filtered", m.name),
                    )
                } else if o.ssh_banner.is_empty() {
                    (
                        HostState::Unprovisionable,
                        format!("port {port} of {} is open but does not speak SSH", m.name),
                    )
                } else {
                    (HostState::Known, detail)
                }
            }
            other => (other.0, detail),
        };
        // The scanner in the database is known, and labelled as itself.
        let (state, detail) = match evident(o) {
            Some((HostState::Scanner, why)) if machine.is_some() => (HostState::Known, why),
            Some((evident, why)) if detail.is_empty() => (evident, why),
            Some((evident, why)) => (evident, format!("{why}; {detail}")),
            None => (state, detail),
        };
        if let Some(m) = machine {
            seen_machines.insert(m.name.as_str());
            h.machine = m.name.clone();
        }
        h.state = state as i32;
        h.detail = detail;
        let listed = machine.map(listed6).unwrap_or_default();
        h.ipv6_addresses = ipv6_addresses(o.mac, &seen_once(&o.v6), &listed);
        // A MAC with several addresses needs the address in its identity.
        let key = if siblings.len() > 1 {
            format!("{}@{}", identity(o.ip, o.mac), ip_text)
        } else {
            identity(o.ip, o.mac)
        };
        out.push(Classified {
            key,
            host: h,
            listed6: listed,
        });
    }
    let unseen = snap
        .machines
        .iter()
        .filter(|m| !seen_machines.contains(m.name.as_str()))
        .filter(|m| {
            m.ips
                .iter()
                .filter_map(|i| i.parse::<IpAddr>().ok())
                .any(|ip| swept.iter().any(|n| n.contains(ip)))
        })
        .collect();
    (out, unseen)
}

/// Hosts of a merged view (each mirrored scanner classified its own against
/// its database) classified again against `snap`: what this process acts
/// on is its own judgement. A missing machine stays missing only when it
/// is one of `snap`'s; a host a scanner called its own address stays so.
pub fn again(hosts: &[DiscoveredHost], snap: &Snapshot, rules: &[Rule]) -> Vec<DiscoveredHost> {
    let obs: Vec<Observation> = hosts.iter().map(observation_of).collect();
    let (classified, _) = classify(&obs, snap, &[], rules);
    hosts
        .iter()
        .zip(classified)
        .filter_map(|(h, c)| {
            let mut out = h.clone();
            out.machine = c.host.machine;
            if h.state == HostState::Missing as i32 {
                return (!out.machine.is_empty()).then_some(out);
            }
            out.state = c.host.state;
            out.detail = c.host.detail;
            out.guessed_use = c.host.guessed_use;
            Some(out)
        })
        .collect()
}

/// A host record's open ports, as ports.
pub fn open_ports(h: &DiscoveredHost) -> Vec<u16> {
    h.open_ports
        .iter()
        .filter_map(|p| u16::try_from(*p).ok())
        .collect()
}

/// What a host record says was observed of it.
fn observation_of(h: &DiscoveredHost) -> Observation {
    Observation {
        ip: h.ip.parse().ok(),
        mac: h.mac.parse().ok(),
        vendor: h.vendor.clone(),
        open_ports: open_ports(h),
        ssh_banner: h.ssh_banner.clone(),
        ssh_host_key: h.ssh_host_key.clone(),
        services: h.services.clone(),
        also_macs: h.other_macs.iter().filter_map(|m| m.parse().ok()).collect(),
        scanner: h.state == HostState::Scanner as i32,
        v6: h
            .ipv6_addresses
            .iter()
            .filter_map(|a| a.ip.parse().ok())
            .collect(),
        ..Default::default()
    }
}

/// The record of a database machine that has not answered: its address
/// inside `swept`, its MAC and its use, as the database gives them.
pub fn unanswered(m: &Machine, swept: &[IpNetwork]) -> DiscoveredHost {
    let ip = m
        .ips
        .iter()
        .find(|i| {
            i.parse::<IpAddr>()
                .is_ok_and(|ip| swept.iter().any(|n| n.contains(ip)))
        })
        .cloned()
        .unwrap_or_default();
    DiscoveredHost {
        ip,
        mac: m.mac.clone(),
        machine: m.name.clone(),
        guessed_use: db::use_kind(m.r#use.as_ref()) as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{mdb_yaml::default_rules, validate, SourceFile};

    fn snap() -> Snapshot {
        let yaml = [
            "machines:",
            "  - name: cp",
            "    ip: 198.18.0.11",
            "    mac: dc:a6:32:00:00:11",
            "    use: { cluster: { name: a, role: control-plane } }",
            "  - name: printer",
            "    ip: 198.18.0.50",
            "    mac: 00:26:ab:00:00:50",
            "    use: { device: receipt printer }",
            "  - name: gone",
            "    ip: 198.18.0.60",
            "    use: games",
            "  - name: elsewhere",
            "    ip: 198.19.0.60",
            "    use: games",
        ]
        .join("\n");
        validate(
            &[SourceFile {
                path: "machines/a.yaml".into(),
                text: yaml,
            }],
            "r",
        )
        .unwrap()
    }

    fn obs(ip: &str, mac: &str, ports: &[u16], banner: &str) -> Observation {
        let mac: Option<Mac> = if mac.is_empty() {
            None
        } else {
            Some(mac.parse().unwrap())
        };
        Observation {
            ip: Some(ip.parse().unwrap()),
            mac,
            vendor: mac.map(crate::discover::scan::vendor).unwrap_or_default(),
            open_ports: ports.to_vec(),
            ssh_banner: banner.into(),
            ..Default::default()
        }
    }

    fn state(c: &Classified) -> HostState {
        HostState::try_from(c.host.state).unwrap()
    }

    #[test]
    fn states_follow_mac_and_ip() {
        let s = snap();
        let net: Vec<IpNetwork> = vec!["198.18.0.0/24".parse().unwrap()];
        let (c, unseen) = classify(
            &[
                obs(
                    "198.18.0.11",
                    "dc:a6:32:00:00:11",
                    &[22],
                    "SSH-2.0-OpenSSH_9.2",
                ),
                obs("198.18.0.77", "00:26:ab:00:00:50", &[9100], ""),
                obs("198.18.0.60", "00:11:22:33:44:55", &[], ""),
                obs("198.18.0.99", "02:11:22:33:44:55", &[6443], ""),
            ],
            &s,
            &net,
            &default_rules(),
        );
        assert_eq!(state(&c[0]), HostState::Known);
        assert_eq!(state(&c[1]), HostState::Moved);
        assert_eq!(c[1].host.machine, "printer");
        // "gone" has no MAC in the DB, so any MAC at its IP is it.
        assert_eq!(state(&c[2]), HostState::Known);
        assert_eq!(state(&c[3]), HostState::New);
        assert_eq!(c[3].host.guessed_use, UseKind::Cluster as i32);
        assert_eq!(c[3].key, "ip:198.18.0.99", "a random MAC is no identity");
        let names: Vec<&str> = unseen.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            Vec::<&str>::new(),
            "elsewhere is outside the swept subnet"
        );
    }

    #[test]
    fn a_routers_word_never_makes_a_machine_unprovisionable() {
        let s = snap();
        let net: Vec<IpNetwork> = vec!["198.18.0.0/24".parse().unwrap()];
        let probed = obs("198.18.0.11", "dc:a6:32:00:00:11", &[], "");
        let from_table = Observation {
            source: "snmp:gw".into(),
            seen_by: vec!["snmp"],
            ..probed.clone()
        };
        let (c, _) = classify(&[probed], &s, &net, &default_rules());
        assert_eq!(state(&c[0]), HostState::Unprovisionable);
        let (c, _) = classify(&[from_table], &s, &net, &default_rules());
        assert_eq!(state(&c[0]), HostState::Known, "{}", c[0].host.detail);
    }

    #[test]
    fn one_mac_at_several_addresses_is_aliases_not_a_move() {
        let s = snap();
        let (c, _) = classify(
            &[
                obs("198.18.0.50", "00:26:ab:00:00:50", &[], ""),
                obs("198.18.0.51", "00:26:ab:00:00:50", &[], ""),
            ],
            &s,
            &[],
            &default_rules(),
        );
        assert_eq!(state(&c[0]), HostState::Known);
        assert_eq!(state(&c[1]), HostState::Known, "{}", c[1].host.detail);
        assert!(c[1].host.detail.starts_with("another address of printer"));
        assert_ne!(c[0].key, c[1].key, "each address keeps its own history");
    }

    #[test]
    fn known_ip_with_other_mac_is_a_conflict() {
        let s = snap();
        let (c, _) = classify(
            &[obs("198.18.0.50", "00:26:ab:99:99:99", &[], "")],
            &s,
            &[],
            &default_rules(),
        );
        assert_eq!(state(&c[0]), HostState::Conflict);
    }

    #[test]
    fn node_without_ssh_is_unprovisionable() {
        let s = snap();
        let (c, _) = classify(
            &[obs("198.18.0.11", "dc:a6:32:00:00:11", &[], "")],
            &s,
            &[],
            &default_rules(),
        );
        assert_eq!(state(&c[0]), HostState::Unprovisionable);
        let (c, _) = classify(
            &[obs("198.18.0.11", "dc:a6:32:00:00:11", &[22], "")],
            &s,
            &[],
            &default_rules(),
        );
        assert_eq!(state(&c[0]), HostState::Unprovisionable);
        assert!(c[0].host.detail.contains("does not speak SSH"));
    }

    #[test]
    fn unseen_machines_in_swept_subnets_are_returned() {
        let s = snap();
        let net: Vec<IpNetwork> = vec!["198.18.0.0/24".parse().unwrap()];
        let (_, unseen) = classify(&[], &s, &net, &default_rules());
        let names: Vec<&str> = unseen.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cp", "gone", "printer"]);
    }

    #[test]
    fn rules_guess_printers_and_pis() {
        let r = default_rules();
        assert_eq!(
            guess_use(&obs("198.18.0.5", "", &[631, 9100], ""), &r),
            UseKind::Device
        );
        assert_eq!(
            guess_use(&obs("198.18.0.5", "dc:a6:32:00:00:01", &[22], ""), &r),
            UseKind::Cluster
        );
        assert_eq!(
            guess_use(
                &obs("198.18.0.5", "", &[22], "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3"),
                &r
            ),
            UseKind::Development
        );
        assert_eq!(
            guess_use(&obs("198.18.0.5", "", &[], ""), &r),
            UseKind::Unspecified
        );
    }
}
