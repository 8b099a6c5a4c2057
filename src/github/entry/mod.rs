//! The database entry mdb proposes for a new device, and the check that the
//! revision it makes is valid. Pure: the same entry goes into an enrolment
//! pull request, into an issue's ready-to-paste snippet and into `mdb enrol`.

use std::{collections::HashSet, net::IpAddr};

use crate::{
    db::{self, emit, mdb_yaml::Subnet, Report, Snapshot, SourceFile},
    export::ipam,
    net::Mac,
    proto::{machine::Use, DiscoveredHost, Machine, Ssh},
};

mod naming;
mod usage;

use naming::{base_name, unique_name};
use usage::{cluster_ssh, use_of, with_host_key};

/// The folder enrolled machines are written to, one file each, so that two
/// enrolments never touch the same file (and never conflict with each other).
pub const ENROL_DIR: &str = "machines/enrol";

/// A machine entry for a host the database does not know yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ip: IpAddr,
    /// Its stable global IPv6 address beside an IPv4 `ip` (never a
    /// temporary one: those rotate).
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// Left out for a locally administered (often random) MAC.
    pub mac: Option<Mac>,
    pub r#use: Use,
    /// How the provisioner reaches it: for a cluster node, what the
    /// cluster's nodes use.
    pub ssh: Option<Ssh>,
    /// The subnet of `mdb.yaml` the address lies in.
    pub subnet: Option<String>,
    pub notes: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0} is not an IP address")]
    BadAddress(String),
    #[error("{0} is outside every subnet declared in mdb.yaml")]
    NoSubnet(IpAddr),
    #[error("subnet {0} has no free static address left")]
    NoFreeAddress(String),
    #[error("{mac} is already in the database as {machine}")]
    MacTaken { mac: Mac, machine: String },
    #[error("{ip} is already in the database as {machine}")]
    IpTaken { ip: IpAddr, machine: String },
    #[error("{0} is no stable address (a link-local or temporary IPv6 address is never proposed)")]
    NotStable(IpAddr),
    #[error("no unique name could be made from {0:?}")]
    NoName(String),
}

/// What other enrolments (open pull requests) and live hosts already hold.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub ips: HashSet<IpAddr>,
    pub names: HashSet<String>,
}

impl Held {
    /// What is held by others than the host at `ip` (its own live address
    /// does not keep it from its own static address).
    pub fn except(&self, ip: &str) -> Held {
        let mut others = self.clone();
        if let Ok(ip) = ip.parse() {
            others.ips.remove(&ip);
        }
        others
    }
}

impl Entry {
    /// The entry for `h`: a unique name, a reserved address, its MAC, the
    /// guessed use in a form that validates, and what was seen as notes.
    pub fn for_host(h: &DiscoveredHost, snap: &Snapshot, held: &Held) -> Result<Entry, Error> {
        let seen_at: IpAddr = h.ip.parse().map_err(|_| Error::BadAddress(h.ip.clone()))?;
        let stable6 = stable_ipv6(h);
        if seen_at.is_ipv6() && stable6 != Some(seen_at) {
            return Err(Error::NotStable(seen_at));
        }
        let mac = h.mac.parse::<Mac>().ok().filter(|m| !m.is_local());
        if let Some(m) = mac.and_then(|m| snap.by_mac(m)) {
            return Err(Error::MacTaken {
                mac: mac.unwrap_or(Mac([0; 6])),
                machine: m.name.clone(),
            });
        }
        let subnet = subnet_of(snap, seen_at)?;
        let ip = match subnet {
            // Static ranges are IPv4: an IPv6 device keeps its stable address.
            Some(s) if seen_at.is_ipv4() => reserve(s, seen_at, snap, held)?,
            Some(_) if snap.by_ip(seen_at).is_some() || held.ips.contains(&seen_at) => {
                return Err(Error::IpTaken {
                    ip: seen_at,
                    machine: snap
                        .by_ip(seen_at)
                        .map(|m| m.name.clone())
                        .unwrap_or_default(),
                })
            }
            Some(_) => seen_at,
            None => match snap.by_ip(seen_at) {
                Some(m) => {
                    return Err(Error::IpTaken {
                        ip: seen_at,
                        machine: m.name.clone(),
                    })
                }
                None => seen_at,
            },
        };
        let (r#use, guess_note) = use_of(h, snap);
        Ok(Entry {
            name: unique_name(
                &base_name(h, mac, seen_at, &snap.mdb_yaml.scan.names),
                snap,
                held,
            )?,
            ip,
            ipv6: stable6
                .filter(|a| *a != ip)
                // Only where mdb.yaml's subnets put it, so the entry validates.
                .filter(|a| snap.mdb_yaml.subnets.is_empty() || subnet_of(snap, *a).is_ok())
                .filter(|a| snap.by_ip(*a).is_none() && !held.ips.contains(a))
                .and_then(|a| match a {
                    IpAddr::V6(v6) => Some(v6),
                    IpAddr::V4(_) => None,
                }),
            mac,
            ssh: with_host_key(
                match &r#use {
                    Use::Cluster(c) => cluster_ssh(snap, &c.cluster),
                    _ => None,
                },
                &h.ssh_host_key,
            ),
            r#use,
            subnet: subnet.map(|s| s.name.clone()),
            notes: notes(h, seen_at, ip, guess_note),
        })
    }

    /// Where the entry is written in the DB repository.
    pub fn path(&self) -> String {
        format!("{ENROL_DIR}/{}.yaml", self.name)
    }

    /// The machine this entry adds.
    pub fn machine(&self) -> Machine {
        let mut labels =
            std::collections::HashMap::from([("enrolled-by".to_string(), "mdb".to_string())]);
        if let Some(s) = &self.subnet {
            labels.insert("subnet".into(), s.clone());
        }
        Machine {
            name: self.name.clone(),
            ips: std::iter::once(self.ip.to_string())
                .chain(self.ipv6.map(|a| a.to_string()))
                .collect(),
            mac: self.mac.map(|m| m.to_string()).unwrap_or_default(),
            r#use: Some(self.r#use.clone()),
            ssh: self.ssh.clone(),
            labels,
            notes: self.notes.clone(),
            ..Default::default()
        }
    }

    /// The entry as a `machines/` file, written by the one emitter.
    pub fn yaml(&self) -> String {
        emit::machines_file(&[self.machine()])
    }

    /// Validates the revision this entry makes on top of `base` (the DB's
    /// files now) with the same code as `mdb validate`.
    pub fn check(&self, base: &[SourceFile]) -> Result<(), Report> {
        db::validate::with_file(base, &self.path(), &self.yaml()).map(|_| ())
    }
}

/// The host's first stable global IPv6 address, if it has one.
fn stable_ipv6(h: &DiscoveredHost) -> Option<IpAddr> {
    h.ipv6_addresses
        .iter()
        .filter(|a| a.kind == crate::ipv6::Kind::Stable.word())
        .filter_map(|a| a.ip.parse::<std::net::Ipv6Addr>().ok())
        .find(|a| !crate::ipv6::is_link_local(*a))
        .map(IpAddr::V6)
}

fn subnet_of(snap: &Snapshot, ip: IpAddr) -> Result<Option<&Subnet>, Error> {
    if snap.mdb_yaml.subnets.is_empty() {
        return Ok(None);
    }
    snap.mdb_yaml
        .subnets
        .iter()
        .find(|s| s.contains(ip))
        .map(Some)
        .ok_or(Error::NoSubnet(ip))
}

/// The host's own address when it is a free static one; else the lowest
/// static address that no machine, live host or other enrolment holds.
fn reserve(
    subnet: &Subnet,
    seen_at: IpAddr,
    snap: &Snapshot,
    held: &Held,
) -> Result<IpAddr, Error> {
    let static_ok = subnet.static_range.is_some_and(|r| r.contains(seen_at))
        && !subnet.dynamic.iter().any(|r| r.contains(seen_at))
        && !subnet.exclude.contains(&seen_at);
    if static_ok && snap.by_ip(seen_at).is_none() && !held.ips.contains(&seen_at) {
        return Ok(seen_at);
    }
    let mut taken = held.ips.clone();
    taken.insert(seen_at);
    ipam::next_free(subnet, snap, &taken).ok_or_else(|| Error::NoFreeAddress(subnet.name.clone()))
}

fn notes(h: &DiscoveredHost, seen_at: IpAddr, ip: IpAddr, guess: Option<String>) -> String {
    let mut parts = vec![format!(
        "enrolled by mdb: first seen {}",
        time(h.first_seen_unix)
    )];
    if ip != seen_at {
        parts.push(format!("seen at {seen_at}, {ip} reserved"));
    }
    if !h.vendor.is_empty() {
        parts.push(format!("vendor {}", h.vendor));
    }
    if !h.open_ports.is_empty() {
        let ports: Vec<String> = h.open_ports.iter().map(u32::to_string).collect();
        parts.push(format!("open ports {}", ports.join(", ")));
    }
    parts.extend(guess);
    parts.join("; ")
}

/// A unix time as `2026-11-26T17:33:20Z`.
pub fn time(unix: i64) -> String {
    if unix <= 0 {
        return "unknown".into();
    }
    let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClusterUse, DiscoverUse};
    use crate::proto::{HostState, UseKind};

    const MDB_YAML: &str = "subnets:\n  - name: lab\n    cidr: 198.18.10.0/24\n    cidr6: 2001:db8:1::/64\n    static: 198.18.10.10-198.18.10.199\n    dynamic: 198.18.10.200-198.18.10.250\n";
    const CP: &str = "machines:\n  - name: cp\n    ip: 198.18.10.10\n    mac: dc:a6:32:00:00:01\n    use: { cluster: { name: alpha, role: control-plane } }\n";

    fn files() -> Vec<SourceFile> {
        vec![
            SourceFile {
                path: "mdb.yaml".into(),
                text: MDB_YAML.into(),
            },
            SourceFile {
                path: "machines/cp.yaml".into(),
                text: CP.into(),
            },
        ]
    }

    fn snap() -> Snapshot {
        db::validate(&files(), "base").unwrap()
    }

    fn pi(ip: &str, mac: &str) -> DiscoveredHost {
        DiscoveredHost {
            ip: ip.into(),
            mac: mac.into(),
            vendor: "Raspberry Pi Trading Ltd".into(),
            state: HostState::New as i32,
            guessed_use: UseKind::Cluster as i32,
            open_ports: vec![22, 10250],
            first_seen_unix: 1_795_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_pi_in_the_dhcp_pool_gets_a_named_valid_entry_with_a_static_address() {
        let e = Entry::for_host(
            &pi("198.18.10.230", "dc:a6:32:00:00:60"),
            &snap(),
            &Held::default(),
        )
        .unwrap();
        assert_eq!(e.name, "pi-dca632-0060");
        assert_eq!(
            e.ip.to_string(),
            "198.18.10.11",
            "lowest free static address"
        );
        assert_eq!(e.r#use, Use::Discover(DiscoverUse {}));
        assert!(e.notes.contains("cluster"), "{}", e.notes);
        assert!(e.notes.contains("seen at 198.18.10.230"), "{}", e.notes);
        e.check(&files())
            .unwrap_or_else(|r| panic!("{r}\n{}", e.yaml()));
    }

    #[test]
    fn a_free_static_address_is_kept_and_held_ones_are_skipped() {
        let s = snap();
        let e = Entry::for_host(
            &pi("198.18.10.50", "dc:a6:32:00:00:61"),
            &s,
            &Held::default(),
        )
        .unwrap();
        assert_eq!(e.ip.to_string(), "198.18.10.50");
        let held = Held {
            ips: [
                "198.18.10.11".parse().unwrap(),
                "198.18.10.12".parse().unwrap(),
            ]
            .into(),
            names: ["pi-dca632-0062".to_string()].into(),
        };
        let e = Entry::for_host(&pi("198.18.10.231", "dc:a6:32:00:00:62"), &s, &held).unwrap();
        assert_eq!(e.ip.to_string(), "198.18.10.13");
        assert_eq!(e.name, "pi-dca632-0062-2");
    }

    #[test]
    fn reverse_dns_names_the_machine_and_devices_keep_their_vendor() {
        let mut h = pi("198.18.10.232", "00:11:22:33:44:55");
        h.dns_name = "Printer.lab.example".into();
        h.vendor = "Epson: \"TM\" series".into();
        h.guessed_use = UseKind::Device as i32;
        let e = Entry::for_host(&h, &snap(), &Held::default()).unwrap();
        assert_eq!(e.name, "printer");
        e.check(&files())
            .unwrap_or_else(|r| panic!("{r}\n{}", e.yaml()));
        let s = db::validate(
            &[
                files(),
                vec![SourceFile {
                    path: e.path(),
                    text: e.yaml(),
                }],
            ]
            .concat(),
            "t",
        )
        .unwrap();
        let m = s.by_name("printer").unwrap();
        assert!(format!("{:?}", m.r#use).contains("Epson: \\\"TM\\\" series"));
    }

    #[test]
    fn known_macs_and_foreign_addresses_are_refused() {
        let s = snap();
        let e = Entry::for_host(
            &pi("198.18.10.230", "dc:a6:32:00:00:01"),
            &s,
            &Held::default(),
        );
        assert!(matches!(e, Err(Error::MacTaken { .. })), "{e:?}");
        let e = Entry::for_host(
            &pi("198.18.99.5", "dc:a6:32:00:00:70"),
            &s,
            &Held::default(),
        );
        assert_eq!(e, Err(Error::NoSubnet("198.18.99.5".parse().unwrap())));
    }

    #[test]
    fn random_macs_are_left_out_and_the_name_follows_the_address() {
        let e = Entry::for_host(
            &pi("198.18.10.233", "da:a6:32:00:00:60"),
            &snap(),
            &Held::default(),
        )
        .unwrap();
        assert_eq!(e.mac, None);
        assert_eq!(e.name, "host-198-18-10-233");
        e.check(&files()).unwrap();
        // Seen across a router (ICMP only): no MAC at all, enrolled by address.
        let e = Entry::for_host(&pi("198.18.10.234", ""), &snap(), &Held::default()).unwrap();
        assert_eq!((e.mac, e.name.as_str()), (None, "host-198-18-10-234"));
        e.check(&files()).unwrap();
    }

    #[test]
    fn a_join_rule_proposes_a_worker_reached_like_its_peers() {
        let rules = format!(
            "{MDB_YAML}scan:\n  rules:\n    - {{ vendor: raspberry pi, subnet: lab, join: {{ cluster: alpha }} }}\n"
        );
        let cp = "machines:\n  - name: cp\n    ip: 198.18.10.10\n    mac: dc:a6:32:00:00:01\n    use: { cluster: { name: alpha, role: control-plane } }\n    ssh: { user: pi, port: 2222 }\n";
        let files = vec![
            SourceFile {
                path: "mdb.yaml".into(),
                text: rules,
            },
            SourceFile {
                path: "machines/cp.yaml".into(),
                text: cp.into(),
            },
        ];
        let snap = db::validate(&files, "base").unwrap_or_else(|r| panic!("{r}"));
        let e = Entry::for_host(
            &pi("198.18.10.230", "dc:a6:32:00:00:60"),
            &snap,
            &Held::default(),
        )
        .unwrap();
        assert_eq!(
            e.r#use,
            Use::Cluster(ClusterUse {
                cluster: "alpha".into(),
                role: crate::proto::Role::Worker as i32
            })
        );
        assert_eq!(
            e.ssh,
            Some(Ssh {
                user: "pi".into(),
                port: 2222,
                ..Default::default()
            })
        );
        assert!(
            e.notes.contains("joins cluster alpha as a worker"),
            "{}",
            e.notes
        );
        e.check(&files)
            .unwrap_or_else(|r| panic!("{r}\n{}", e.yaml()));
        let bad = files[0].text.replace("cluster: alpha", "cluster: gamma");
        let report = db::validate(
            &[
                SourceFile {
                    path: "mdb.yaml".into(),
                    text: bad,
                },
                files[1].clone(),
            ],
            "x",
        )
        .unwrap_err();
        assert!(
            report.to_string().contains("no cluster \"gamma\""),
            "{report}"
        );
    }

    #[test]
    fn an_entry_carries_the_stable_ipv6_address_never_a_temporary_one() {
        let v6 = |ip: &str, kind: crate::ipv6::Kind| crate::proto::Ipv6Address {
            ip: ip.into(),
            kind: kind.word().into(),
            ..Default::default()
        };
        let mut h = pi("198.18.10.20", "dc:a6:32:00:00:20");
        h.ipv6_addresses = vec![
            v6("fe80::dea6:32ff:fe00:20", crate::ipv6::Kind::LinkLocal),
            v6("2001:db8:1::9a", crate::ipv6::Kind::Temporary),
            v6("2001:db8:1:0:dea6:32ff:fe00:20", crate::ipv6::Kind::Stable),
        ];
        let e = Entry::for_host(&h, &snap(), &Held::default()).unwrap();
        e.check(&files()).expect("the entry validates");
        assert_eq!(
            e.machine().ips,
            ["198.18.10.20", "2001:db8:1:0:dea6:32ff:fe00:20"],
            "IPv4 first (the inventory's ansible_host), then the stable address"
        );
        // An IPv6-only host seen at a temporary address is proposed nowhere.
        h.ip = "2001:db8:1::9a".into();
        assert_eq!(
            Entry::for_host(&h, &snap(), &Held::default()),
            Err(Error::NotStable("2001:db8:1::9a".parse().unwrap()))
        );
        h.ipv6_addresses.pop();
        h.ip = "fe80::dea6:32ff:fe00:20".into();
        assert!(matches!(
            Entry::for_host(&h, &snap(), &Held::default()),
            Err(Error::NotStable(_))
        ));
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(time(0), "unknown");
        assert_eq!(time(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
