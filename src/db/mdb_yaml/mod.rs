//! The DB repository's own file, `mdb.yaml`: the subnets the lab uses (for
//! validation, IP suggestions and sweeps), the scan rules, the readiness
//! checks, the provisioning policy and the inventory's shape (`inventory`).
//! Lives in the DB repo because it changes with the data, not with the
//! deployment; the service's own settings are `crate::config`'s.

pub mod inventory;

use std::{net::IpAddr, time::Duration};

use ipnetwork::IpNetwork;

use super::{
    fields::Fields,
    problem::Problem,
    words::USE_KINDS,
    yaml::{self, Value},
};
use crate::{net::IpRange, proto::UseKind};

pub const FILE: &str = "mdb.yaml";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MdbYaml {
    pub subnets: Vec<Subnet>,
    pub scan: ScanSettings,
    /// Checks that say a machine of a use is ready to be provisioned,
    /// beyond SSH key authentication.
    pub readiness: Vec<ReadinessProbe>,
    /// How the Ansible inventory groups hosts and composes variables.
    pub inventory: Inventory,
    /// What the provisioning runner does with each machine.
    pub provision: super::policy::Policy,
}

pub use inventory::{Inventory, KeyedGroup};

/// One readiness check for the machines of one use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessProbe {
    pub for_use: UseKind,
    pub check: Check,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A TCP connection to this port succeeds.
    Tcp(u16),
    /// `GET http://IP:port/path` answers with this status.
    Http {
        port: u16,
        path: String,
        status: u16,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Subnet {
    pub name: String,
    pub cidr: IpNetwork,
    /// The segment's IPv6 prefix, searched by neighbour discovery.
    pub cidr6: Option<ipnetwork::Ipv6Network>,
    /// Where machines get fixed addresses; `mdb ip next` picks from here.
    pub static_range: Option<IpRange>,
    /// DHCP pools; a machine's fixed address must not be inside one.
    pub dynamic: Vec<IpRange>,
    /// Never suggested (gateways, the DHCP server, ...).
    pub exclude: Vec<IpAddr>,
    /// Whether the scanner sweeps this subnet when it sweeps DB subnets.
    pub scan: bool,
}

impl Subnet {
    /// Whether `ip` lies in the segment: its IPv4 `cidr` or its `cidr6`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) || self.cidr6.is_some_and(|c| IpNetwork::V6(c).contains(ip))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScanSettings {
    /// TCP ports probed on every live host.
    pub ports: Vec<u16>,
    /// Sweeps a host may miss before it counts as down (answering once is
    /// enough to be up again).
    pub down_after: u32,
    /// When a database machine that does not answer becomes `missing`.
    pub missing_after: MissingAfter,
    /// Which missing machines get an issue (none by default: a gaming PC
    /// is off most days).
    pub file_missing: FileMissing,
    /// First matching rule guesses the use of a new host.
    pub rules: Vec<Rule>,
    /// How long a host's ports, name and banner stay fresh: a host that
    /// keeps its MAC and address and stays up is probed again only this
    /// often (a new, changed or returning host at once).
    pub refresh: Duration,
    /// Which name source an entry's name comes from first.
    pub names: Vec<super::words::NameSource>,
}

pub const DEFAULT_PORTS: &[u16] = &[22, 80, 443, 631, 6443, 9100, 10250];
pub const DEFAULT_DOWN_AFTER: u32 = 3;
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
pub const DEFAULT_MISSING_AFTER: MissingAfter = MissingAfter::Down(Duration::from_secs(3600));

/// `missing_after`: a whole number counts missed sweeps; a duration is how
/// long the machine must have been down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MissingAfter {
    Sweeps(u32),
    Down(Duration),
}

impl std::str::FromStr for MissingAfter {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        if let Ok(n) = text.trim().parse::<u32>() {
            return Ok(MissingAfter::Sweeps(n.max(1)));
        }
        crate::units::parse_duration(text)
            .filter(|d| !d.is_zero())
            .map(MissingAfter::Down)
            .ok_or(())
    }
}

/// `file_missing`: the uses and machine names whose absence is filed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileMissing {
    pub uses: Vec<UseKind>,
    pub machines: Vec<String>,
}

impl FileMissing {
    pub fn covers(&self, m: &crate::proto::Machine) -> bool {
        self.machines.contains(&m.name) || self.uses.contains(&super::use_kind(m.r#use.as_ref()))
    }
}

pub use super::rules::{default_rules, Rule};

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            ports: DEFAULT_PORTS.to_vec(),
            down_after: DEFAULT_DOWN_AFTER,
            missing_after: DEFAULT_MISSING_AFTER,
            file_missing: FileMissing::default(),
            rules: default_rules(),
            refresh: DEFAULT_REFRESH,
            names: super::words::DEFAULT_NAME_ORDER.to_vec(),
        }
    }
}

impl MdbYaml {
    pub fn subnet(&self, key: &str) -> Option<&Subnet> {
        self.subnets
            .iter()
            .find(|s| s.name == key || s.cidr.to_string() == key)
    }
}

/// Parses `mdb.yaml`; problems are appended, and what parsed is kept.
pub fn parse(text: &str, problems: &mut Vec<Problem>) -> MdbYaml {
    let mut out = MdbYaml::default();
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return out,
        Err(e) => {
            problems.push(Problem::new(
                FILE,
                e.pos,
                "",
                format!("YAML syntax: {}", e.message),
            ));
            return out;
        }
    };
    let Some(top) = Fields::of(
        FILE,
        &root,
        "",
        &["subnets", "scan", "readiness", "inventory", "provision"],
        problems,
    ) else {
        return out;
    };
    if let Some(list) = top.get("subnets") {
        match &list.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = subnet(item, &format!("subnets[{i}]"), problems) {
                        out.subnets.push(s);
                    }
                }
            }
            _ => problems.push(top.problem(list, "subnets", "expected a list")),
        }
    }
    if let Some(node) = top.get("readiness") {
        out.readiness = readiness(node, problems);
    }
    if let Some(node) = top.get("inventory") {
        out.inventory = inventory::parse(node, problems);
    }
    if let Some(node) = top.get("provision") {
        out.provision = super::policy::parse(node, problems);
    }
    if let Some(node) = top.get("scan") {
        if let Some(sf) = Fields::of(
            FILE,
            node,
            "scan",
            &[
                "ports",
                "down_after",
                "missing_after",
                "file_missing",
                "rules",
                "refresh",
                "names",
            ],
            problems,
        ) {
            if let Some(d) = sf.duration("refresh", problems) {
                out.scan.refresh = d;
            }
            if sf.get("names").is_some() {
                out.scan.names = name_order(&sf, problems);
            }
            if sf.get("ports").is_some() {
                out.scan.ports = sf.ports("ports", problems);
            }
            if let Some(n) = sf.parse::<u32>("down_after", "a whole number", problems) {
                out.scan.down_after = n.max(1);
            }
            if let Some(m) = sf.parse(
                "missing_after",
                "a number of sweeps or a duration like 2h",
                problems,
            ) {
                out.scan.missing_after = m;
            }
            if let Some(node) = sf.get("file_missing") {
                out.scan.file_missing = file_missing(node, problems);
            }
            if let Some(list) = sf.get("rules") {
                match &list.value {
                    Value::Seq(items) => {
                        let named: Vec<(&str, IpNetwork)> = out
                            .subnets
                            .iter()
                            .map(|s| (s.name.as_str(), s.cidr))
                            .collect();
                        out.scan.rules = items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, n)| {
                                let path = format!("scan.rules[{i}]");
                                super::rules::parse(FILE, n, &path, &named, problems)
                            })
                            .collect();
                    }
                    _ => problems.push(sf.problem(list, "rules", "expected a list")),
                }
            }
        }
    }
    out
}

/// `names: [dhcp, mdns]`: the sources named come first, in that order;
/// the others follow in the default order.
fn name_order(f: &Fields, problems: &mut Vec<Problem>) -> Vec<super::words::NameSource> {
    let given = f.choices("names", super::words::NAME_SOURCES, problems);
    let mut order = Vec::new();
    for s in given.iter().chain(super::words::DEFAULT_NAME_ORDER) {
        if !order.contains(s) {
            order.push(*s);
        }
    }
    order
}

fn file_missing(node: &yaml::Node, problems: &mut Vec<Problem>) -> FileMissing {
    let mut out = FileMissing::default();
    let Some(f) = Fields::of(
        FILE,
        node,
        "scan.file_missing",
        &["uses", "machines"],
        problems,
    ) else {
        return out;
    };
    out.uses = f.choices("uses", USE_KINDS, problems);
    out.machines = f
        .strs("machines", problems)
        .into_iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    out
}

fn subnet(node: &yaml::Node, path: &str, problems: &mut Vec<Problem>) -> Option<Subnet> {
    let f = Fields::of(
        FILE,
        node,
        path,
        &[
            "name", "cidr", "cidr6", "static", "dynamic", "exclude", "scan",
        ],
        problems,
    )?;
    let before = problems.len();
    let cidr: IpNetwork = match f.get("cidr") {
        Some(_) => f.parse("cidr", "a CIDR like 198.18.0.0/24", problems)?,
        None => {
            problems.push(f.problem(node, "cidr", "required field is missing"));
            return None;
        }
    };
    let cidr6 = match f.get("cidr6") {
        Some(_) => Some(f.parse::<ipnetwork::Ipv6Network>(
            "cidr6",
            "an IPv6 prefix like 2001:db8:1::/64",
            problems,
        )?),
        None => None,
    };
    let name = f
        .str("name", problems)
        .map(str::to_string)
        .unwrap_or_else(|| cidr.to_string());
    let range = |key: &str, problems: &mut Vec<Problem>| -> Vec<IpRange> {
        f.strs(key, problems)
            .into_iter()
            .filter_map(|n| {
                let text = n.as_str().unwrap_or_default();
                match text.parse::<IpRange>() {
                    Ok(r) if cidr.contains(r.first) && cidr.contains(r.last) => Some(r),
                    Ok(_) => {
                        problems.push(f.problem(n, key, format!("{text} is not inside {cidr}")));
                        None
                    }
                    Err(e) => {
                        problems.push(f.problem(n, key, e.to_string()));
                        None
                    }
                }
            })
            .collect()
    };
    let statics = range("static", problems);
    if statics.len() > 1 {
        problems.push(f.problem(node, "static", "give one static range"));
    }
    let dynamic = range("dynamic", problems);
    let exclude = f
        .strs("exclude", problems)
        .into_iter()
        .filter_map(|n| {
            let text = n.as_str().unwrap_or_default();
            text.trim()
                .parse::<IpAddr>()
                .map_err(|_| {
                    problems.push(f.problem(
                        n,
                        "exclude",
                        format!("{text:?} is not an IPv4/IPv6 address"),
                    ));
                })
                .ok()
        })
        .collect();
    let scan = f.bool("scan", problems).unwrap_or(true);
    (problems.len() == before).then(|| Subnet {
        name,
        cidr,
        cidr6,
        static_range: statics.first().copied(),
        dynamic,
        exclude,
        scan,
    })
}

/// `readiness: { device: [{tcp: 9100}, {http: /, port: 80, status: 200}] }`
fn readiness(node: &yaml::Node, problems: &mut Vec<Problem>) -> Vec<ReadinessProbe> {
    let uses: Vec<&str> = USE_KINDS.iter().map(|(w, _)| *w).collect();
    let Some(f) = Fields::of(FILE, node, "readiness", &uses, problems) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (word, kind) in USE_KINDS {
        let Some(list) = f.get(word) else {
            continue;
        };
        let Value::Seq(items) = &list.value else {
            problems.push(f.problem(list, word, "expected a list of checks"));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("readiness.{word}[{i}]");
            if let Some(check) = check(item, &path, problems) {
                out.push(ReadinessProbe {
                    for_use: *kind,
                    check,
                });
            }
        }
    }
    out
}

fn check(node: &yaml::Node, path: &str, problems: &mut Vec<Problem>) -> Option<Check> {
    let f = Fields::of(
        FILE,
        node,
        path,
        &["tcp", "http", "port", "status"],
        problems,
    )?;
    let port = |key: &str, problems: &mut Vec<Problem>| f.ports(key, problems).first().copied();
    match (f.get("tcp"), f.str("http", problems)) {
        (Some(_), None) => {
            let list = f.ports("tcp", problems);
            list.first().copied().map(Check::Tcp)
        }
        (None, Some(path_text)) => {
            if let Err(why) = check_http_path(path_text) {
                let at = f.get("http").unwrap_or(node);
                problems.push(f.problem(at, "http", format!("{path_text:?} {why}")));
                return None;
            }
            let status = match f.get("status") {
                Some(_) => f.parse::<u16>("status", "an HTTP status like 200", problems)?,
                None => 200,
            };
            Some(Check::Http {
                port: port("port", problems).unwrap_or(80),
                path: path_text.to_string(),
                status,
            })
        }
        _ => {
            problems.push(f.problem(node, "", "a check is either `tcp: PORT` or `http: PATH`"));
            None
        }
    }
}

/// The longest readiness path.
const MAX_HTTP_PATH: usize = 256;

/// A path for `GET PATH HTTP/1.0`: starts with `/`, and holds only the
/// characters RFC 3986 allows in a path and query (so no space, CR or LF
/// can end the request line or add a header).
pub fn check_http_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("is not a path like / or /healthz");
    }
    if path.len() > MAX_HTTP_PATH {
        return Err("is longer than 256 characters");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
    if !path.bytes().all(allowed) {
        return Err("holds a character a URL path may not (space, control, quote, ...)");
    }
    Ok(())
}
