//! `scan.rules` of `mdb.yaml`: how a new host's use is guessed from what
//! the sweep saw (open ports, MAC vendor and prefix, SSH banner, subnet),
//! and where a new device joins a cluster. The first rule whose every
//! condition holds wins; classification and the proposed entry both ask
//! [`first_match`].
//!
//! ```yaml
//! scan:
//!   rules:
//!     - { vendor: raspberry pi, subnet: lab, join: { cluster: alpha, role: worker } }
//! ```

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{
    fields::Fields,
    problem::Problem,
    words::{ROLES, USE_KINDS},
    yaml::{self, Pos},
};
use crate::{
    net::Mac,
    proto::{Role, UseKind},
};

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub guess: UseKind,
    /// Matches when any of these ports is open.
    pub any_port: Vec<u16>,
    /// Matches when some open ports exist and all are among these.
    pub only_ports: Vec<u16>,
    /// Case-insensitive substring of the MAC vendor.
    pub vendor: Option<String>,
    /// Case-insensitive substring of the SSH banner.
    pub banner: Option<String>,
    /// The host's address is in this subnet of `subnets:` (named there).
    pub subnet: Option<IpNetwork>,
    /// The MAC starts with one of these (hex digits, lower case, no
    /// separators), e.g. a vendor's OUI.
    pub mac_prefix: Vec<String>,
    /// The host announces one of these DNS-SD service types over mDNS
    /// (`_ipp._tcp`).
    pub service: Vec<String>,
    /// A matching new device is proposed as a node of this cluster.
    pub join: Option<Join>,
}

/// Where a matching device joins: a cluster and a role, never the control
/// plane (a control-plane node is a decision a person makes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    pub cluster: String,
    pub role: Role,
    /// Where the rule says so, for a problem about the cluster.
    pub at: Pos,
}

/// What a rule looks at: what one sweep saw of a host.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    pub ip: Option<IpAddr>,
    pub mac: Option<Mac>,
    pub vendor: &'a str,
    pub banner: &'a str,
    pub open_ports: &'a [u16],
    /// DNS-SD service types announced over mDNS.
    pub services: &'a [String],
}

impl Rule {
    fn with_guess(guess: UseKind) -> Rule {
        Rule {
            guess,
            any_port: vec![],
            only_ports: vec![],
            vendor: None,
            banner: None,
            subnet: None,
            mac_prefix: vec![],
            service: vec![],
            join: None,
        }
    }

    /// Whether every condition the rule gives holds for `seen`.
    pub fn matches(&self, seen: &Seen) -> bool {
        let contains = |text: &str, part: &Option<String>| {
            part.as_ref()
                .is_none_or(|p| text.to_lowercase().contains(p.as_str()))
        };
        let ports = seen.open_ports;
        let mac_hex = seen.mac.map(|m| m.to_string().replace(':', ""));
        (self.any_port.is_empty() || self.any_port.iter().any(|p| ports.contains(p)))
            && (self.only_ports.is_empty()
                || (!ports.is_empty() && ports.iter().all(|p| self.only_ports.contains(p))))
            && contains(seen.vendor, &self.vendor)
            && contains(seen.banner, &self.banner)
            && self
                .subnet
                .is_none_or(|net| seen.ip.is_some_and(|ip| net.contains(ip)))
            && (self.mac_prefix.is_empty()
                || mac_hex.is_some_and(|m| self.mac_prefix.iter().any(|p| m.starts_with(p))))
            && (self.service.is_empty() || self.service.iter().any(|s| seen.services.contains(s)))
    }
}

/// The first rule that matches what was seen.
pub fn first_match<'r>(rules: &'r [Rule], seen: &Seen) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(seen))
}

/// What a device announces says most: a printer's service is a device, an
/// SSH service a server. Then Kubernetes ports mean a cluster node;
/// printer-only ports mean a device; a Raspberry Pi is most likely headed
/// for a cluster; a desktop SSH banner is a development box.
pub fn default_rules() -> Vec<Rule> {
    vec![
        Rule {
            service: PRINTER_SERVICES.iter().map(|s| s.to_string()).collect(),
            ..Rule::with_guess(UseKind::Device)
        },
        Rule {
            service: vec!["_ssh._tcp".into(), "_sftp-ssh._tcp".into()],
            ..Rule::with_guess(UseKind::Development)
        },
        Rule {
            any_port: vec![6443, 10250],
            ..Rule::with_guess(UseKind::Cluster)
        },
        Rule {
            only_ports: vec![80, 443, 631, 9100],
            ..Rule::with_guess(UseKind::Device)
        },
        Rule {
            vendor: Some("raspberry pi".into()),
            ..Rule::with_guess(UseKind::Cluster)
        },
        Rule {
            banner: Some("ubuntu".into()),
            ..Rule::with_guess(UseKind::Development)
        },
        Rule {
            banner: Some("debian".into()),
            ..Rule::with_guess(UseKind::Development)
        },
    ]
}

const FIELDS: &[&str] = &[
    "guess",
    "any_port",
    "only_ports",
    "vendor",
    "banner",
    "subnet",
    "mac_prefix",
    "service",
    "join",
];

/// DNS-SD service types only printers announce.
pub const PRINTER_SERVICES: &[&str] = &[
    "_ipp._tcp",
    "_ipps._tcp",
    "_printer._tcp",
    "_pdl-datastream._tcp",
];

/// The subnets a rule's `subnet:` may name: name and network.
pub type NamedNetworks<'a> = [(&'a str, IpNetwork)];

/// One rule of `file`; `subnets` are those of the same file, for `subnet:`.
pub fn parse(
    file: &str,
    node: &yaml::Node,
    path: &str,
    subnets: &NamedNetworks,
    problems: &mut Vec<Problem>,
) -> Option<Rule> {
    let f = Fields::of(file, node, path, FIELDS, problems)?;
    let before = problems.len();
    let join = f.get("join").and_then(|n| join(&f, n, problems));
    let guess = match (f.get("guess"), f.get("join")) {
        (Some(_), _) => f.choice("guess", USE_KINDS, problems)?,
        (None, Some(_)) => UseKind::Cluster,
        (None, None) => {
            problems.push(f.problem(node, "guess", "required field is missing (or give join)"));
            return None;
        }
    };
    if join.is_some() && guess != UseKind::Cluster {
        problems.push(f.problem(node, "guess", "a rule that joins a cluster guesses cluster"));
    }
    let r = Rule {
        guess,
        any_port: f.ports("any_port", problems),
        only_ports: f.ports("only_ports", problems),
        vendor: f.str("vendor", problems).map(str::to_lowercase),
        banner: f.str("banner", problems).map(str::to_lowercase),
        subnet: subnet(&f, subnets, problems),
        mac_prefix: mac_prefixes(&f, problems),
        service: services(&f, problems),
        join,
    };
    let conditions = FIELDS
        .iter()
        .filter(|k| !matches!(**k, "guess" | "join"))
        .any(|k| f.get(k).is_some());
    if !conditions {
        problems.push(f.problem(
            node,
            "",
            "a rule needs at least one of any_port, only_ports, vendor, banner, subnet, mac_prefix, service",
        ));
    }
    (problems.len() == before).then_some(r)
}

/// `service: _ipp._tcp` or a list of them, lower case.
fn services(f: &Fields, problems: &mut Vec<Problem>) -> Vec<String> {
    checked(
        f,
        "service",
        problems,
        str::to_ascii_lowercase,
        crate::net::is_service_type,
        "a DNS-SD service type like _ipp._tcp",
    )
}

/// Every word of `key` (one or a list), normalised by `norm`; each that
/// `ok` refuses is a problem at its line, saying it is not `like`.
fn checked(
    f: &Fields,
    key: &str,
    problems: &mut Vec<Problem>,
    norm: impl Fn(&str) -> String,
    ok: impl Fn(&str) -> bool,
    like: &str,
) -> Vec<String> {
    f.strs(key, problems)
        .into_iter()
        .filter_map(|n| {
            let text = n.as_str().unwrap_or_default();
            let value = norm(text);
            if !ok(&value) {
                problems.push(f.problem(n, key, format!("{text:?} is not {like}")));
                return None;
            }
            Some(value)
        })
        .collect()
}

fn join(f: &Fields, node: &yaml::Node, problems: &mut Vec<Problem>) -> Option<Join> {
    let path = f.field("join");
    let jf = Fields::of(f.file, node, &path, &["cluster", "role"], problems)?;
    let cluster = jf.required_str("cluster", problems)?;
    if let Err(why) = super::load::check_dns_label(cluster) {
        problems.push(jf.problem(node, "cluster", format!("{cluster:?} {why}")));
        return None;
    }
    let role = match jf.get("role") {
        Some(_) => jf.choice("role", ROLES, problems)?,
        None => Role::Worker,
    };
    if role != Role::Worker {
        let at = jf.get("role").unwrap_or(node);
        problems.push(jf.problem(
            at,
            "role",
            "a control-plane node is never assigned automatically; add it by hand",
        ));
        return None;
    }
    Some(Join {
        cluster: cluster.to_string(),
        role,
        at: node.pos,
    })
}

fn subnet(f: &Fields, subnets: &NamedNetworks, problems: &mut Vec<Problem>) -> Option<IpNetwork> {
    let name = f.str("subnet", problems)?;
    let found = subnets
        .iter()
        .find(|(n, cidr)| *n == name || cidr.to_string() == name)
        .map(|(_, cidr)| *cidr);
    if found.is_none() {
        let at = f.get("subnet")?;
        problems.push(f.problem(
            at,
            "subnet",
            format!("{name:?} is not a subnet of subnets:"),
        ));
    }
    found
}

fn mac_prefixes(f: &Fields, problems: &mut Vec<Problem>) -> Vec<String> {
    let hex = |text: &str| {
        text.chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let ok = |hex: &str| {
        (2..=12).contains(&hex.len())
            && hex.len() % 2 == 0
            && hex.chars().all(|c| c.is_ascii_hexdigit())
    };
    checked(
        f,
        "mac_prefix",
        problems,
        hex,
        ok,
        "a MAC prefix like dc:a6:32",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> (Vec<Rule>, Vec<String>) {
        let subnets = vec![("lab", "198.18.0.0/24".parse().unwrap())];
        let root = yaml::parse(text).unwrap().unwrap();
        let yaml::Value::Seq(items) = &root.value else {
            panic!()
        };
        let mut problems = Vec::new();
        let out = items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                parse(
                    "mdb.yaml",
                    n,
                    &format!("scan.rules[{i}]"),
                    &subnets,
                    &mut problems,
                )
            })
            .collect();
        (out, problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_pi_on_the_lab_subnet_joins_alpha_as_a_worker() {
        let (r, problems) =
            rules("- { mac_prefix: [\"DC-A6-32\"], subnet: lab, join: { cluster: alpha } }\n");
        assert!(problems.is_empty(), "{problems:?}");
        let seen = |ip: &str, mac: &str| Seen {
            ip: ip.parse().ok(),
            mac: mac.parse().ok(),
            ..Seen::default()
        };
        let hit = first_match(&r, &seen("198.18.0.9", "dc:a6:32:00:00:09")).expect("a match");
        assert_eq!(hit.guess, UseKind::Cluster);
        assert_eq!(
            hit.join.as_ref().map(|j| (j.cluster.as_str(), j.role)),
            Some(("alpha", Role::Worker))
        );
        assert!(
            first_match(&r, &seen("198.18.1.9", "dc:a6:32:00:00:09")).is_none(),
            "another subnet"
        );
        assert!(
            first_match(&r, &seen("198.18.0.9", "00:16:3e:00:00:09")).is_none(),
            "another vendor"
        );
    }

    #[test]
    fn the_control_plane_is_never_joined_and_bad_matchers_name_their_line() {
        let (_, problems) = rules(
            "- { vendor: pi, join: { cluster: alpha, role: control-plane } }\n- { subnet: nowhere, guess: device }\n- { mac_prefix: xyz, guess: device }\n",
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("scan.rules[0].join.role: a control-plane node is never assigned"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("\"nowhere\" is not a subnet"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("\"xyz\" is not a MAC prefix"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_service_rule_matches_what_a_host_announces_and_bad_types_name_their_line() {
        let (r, problems) = rules(
            "- { service: [_IPP._tcp], guess: device }
- { service: ipp, guess: device }
",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("mdb.yaml:2:")
                && problems[0].contains("\"ipp\" is not a DNS-SD service type"),
            "{problems:?}"
        );
        let announced = vec!["_ipp._tcp".to_string()];
        let seen = Seen {
            services: &announced,
            ..Default::default()
        };
        assert!(r[0].matches(&seen));
        assert!(!r[0].matches(&Seen::default()));
        assert_eq!(
            first_match(&default_rules(), &seen).map(|r| r.guess),
            Some(UseKind::Device)
        );
    }
}
