//! `scan.rules` of `mdb.yaml`: how a new host's use is guessed from what
//! the sweep saw (open ports, MAC vendor, SSH banner); the first rule
//! whose every condition holds wins.

use super::{
    fields::Fields,
    problem::Problem,
    settings::{ports, FILE},
    words::USE_KINDS,
    yaml,
};
use crate::proto::UseKind;

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
}

/// Kubernetes ports mean a cluster node; printer-only ports mean a device;
/// a Raspberry Pi is most likely headed for a cluster; a desktop SSH banner
/// is a development box.
pub fn default_rules() -> Vec<Rule> {
    let rule = |guess| Rule {
        guess,
        any_port: vec![],
        only_ports: vec![],
        vendor: None,
        banner: None,
    };
    vec![
        Rule {
            any_port: vec![6443, 10250],
            ..rule(UseKind::Cluster)
        },
        Rule {
            only_ports: vec![80, 443, 631, 9100],
            ..rule(UseKind::Device)
        },
        Rule {
            vendor: Some("raspberry pi".into()),
            ..rule(UseKind::Cluster)
        },
        Rule {
            banner: Some("ubuntu".into()),
            ..rule(UseKind::Development)
        },
        Rule {
            banner: Some("debian".into()),
            ..rule(UseKind::Development)
        },
    ]
}

pub fn parse(node: &yaml::Node, path: &str, problems: &mut Vec<Problem>) -> Option<Rule> {
    let f = Fields::of(
        FILE,
        node,
        path,
        &["guess", "any_port", "only_ports", "vendor", "banner"],
        problems,
    )?;
    if f.get("guess").is_none() {
        problems.push(f.problem(node, "guess", "required field is missing"));
        return None;
    }
    let guess = f.choice("guess", USE_KINDS, problems)?;
    let r = Rule {
        guess,
        any_port: ports(&f, "any_port", problems),
        only_ports: ports(&f, "only_ports", problems),
        vendor: f.str("vendor", problems).map(str::to_lowercase),
        banner: f.str("banner", problems).map(str::to_lowercase),
    };
    if r.any_port.is_empty() && r.only_ports.is_empty() && r.vendor.is_none() && r.banner.is_none()
    {
        problems.push(f.problem(
            node,
            "",
            "a rule needs at least one of any_port, only_ports, vendor, banner",
        ));
        return None;
    }
    Some(r)
}
