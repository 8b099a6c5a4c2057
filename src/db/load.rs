//! YAML → proto: the one place that maps a `machines/*.yaml` file onto
//! `Machine` messages. Checks only what one entry can tell on its own;
//! cross-file checks (duplicates, clusters) live in `db::validate`.

use std::net::IpAddr;

use super::{
    fields::{choose, Fields},
    problem::Problem,
    words::{DEVELOPMENT_KINDS, PROVISIONERS, ROLES, USE_NAMES},
    yaml::{self, Node, Pos, Value},
};
use crate::{
    net::Mac,
    proto::{
        machine::Use, ClusterUse, DevelopmentUse, DeviceUse, DiscoverUse, Features, GamesUse,
        Machine, Provisioner, Ssh,
    },
};

/// A machine and where each of its identities was written down.
pub struct Entry {
    pub machine: Machine,
    pub file: String,
    pub pos: Pos,
    pub ip_pos: Vec<(IpAddr, Pos)>,
    pub mac: Option<(Mac, Pos)>,
}

const MACHINE_FIELDS: &[&str] = &[
    "name", "ip", "ips", "mac", "hostname", "use", "features", "labels", "notes", "ssh", "wake",
];

/// Parses a `machines/*.yaml` file: `machines:` followed by a list.
pub fn machines_file(file: &str, text: &str, problems: &mut Vec<Problem>) -> Vec<Entry> {
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Vec::new(),
        Err(e) => {
            problems.push(Problem::new(
                file,
                e.pos,
                "",
                format!("YAML syntax: {}", e.message),
            ));
            return Vec::new();
        }
    };
    if matches!(root.value, Value::Seq(_)) {
        problems.push(Problem::new(
            file,
            root.pos,
            "",
            "a bare list of machines; nest it under `machines:` (machines:\n  - name: ...)",
        ));
        return Vec::new();
    }
    let Some(top) = Fields::of(file, &root, "", &["machines"], problems) else {
        return Vec::new();
    };
    let Some(list) = top.get("machines") else {
        return Vec::new();
    };
    let Value::Seq(items) = &list.value else {
        problems.push(top.problem(
            list,
            "machines",
            format!("expected a list, found {}", list.kind()),
        ));
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| machine(file, item, problems))
        .collect()
}

fn machine(file: &str, node: &Node, problems: &mut Vec<Problem>) -> Option<Entry> {
    let f = Fields::of(file, node, "", MACHINE_FIELDS, problems)?;
    let before = problems.len();
    let name = f.required_str("name", problems).unwrap_or_default();
    if let (Some(n), false) = (f.get("name"), name.is_empty()) {
        if let Err(why) = check_dns_label(name) {
            problems.push(f.problem(n, "name", format!("{name:?} {why}")));
        }
    }

    let mut ip_pos = Vec::new();
    if f.get("ip").is_some() && f.get("ips").is_some() {
        problems.push(f.problem(
            f.key("ips").unwrap_or(node),
            "ips",
            "give either ip or ips, not both",
        ));
    }
    for key in ["ip", "ips"] {
        for n in f.strs(key, problems) {
            let text = n.as_str().unwrap_or_default();
            match text.trim().parse::<IpAddr>() {
                Ok(ip) => ip_pos.push((ip, n.pos)),
                Err(_) => problems.push(f.problem(
                    n,
                    key,
                    format!("{text:?} is not an IPv4/IPv6 address"),
                )),
            }
        }
    }
    let mac = f.get("mac").and_then(|n| {
        let text = f.str("mac", problems)?;
        match text.parse::<Mac>() {
            Ok(m) => Some((m, n.pos)),
            Err(e) => {
                problems.push(f.problem(n, "mac", e.to_string()));
                None
            }
        }
    });
    if ip_pos.is_empty()
        && mac.is_none()
        && f.get("ip").is_none()
        && f.get("ips").is_none()
        && f.get("mac").is_none()
    {
        problems.push(f.problem(
            node,
            "ip",
            "a machine needs an ip or a mac so it can be found",
        ));
    }

    let use_ = match f.get("use") {
        Some(n) => parse_use(&f, n, problems),
        None => {
            problems.push(f.problem(
                f.key("use").unwrap_or(node),
                "use",
                "required field is missing (cluster, discover, development, games or device)",
            ));
            None
        }
    };

    let features = f.get("features").and_then(|n| {
        let ff = Fields::of(file, n, "features", &["provisioner"], problems)?;
        Some(Features {
            provisioner: ff
                .choice("provisioner", PROVISIONERS, problems)
                .unwrap_or(Provisioner::None) as i32,
        })
    });

    let ssh = f.get("ssh").and_then(|n| {
        let sf = Fields::of(file, n, "ssh", &["user", "port", "host_keys"], problems)?;
        let port = sf.parse::<u16>("port", "a port number (1-65535)", problems);
        if let (Some(0), Some(pn)) = (port, sf.get("port")) {
            problems.push(sf.problem(pn, "port", "0 is not a port number (1-65535)"));
        }
        let user = sf.str("user", problems).unwrap_or_default();
        if let (Err(why), Some(un)) = (check_user(user), sf.get("user")) {
            problems.push(sf.problem(un, "user", format!("{user:?} {why}")));
        }
        Some(Ssh {
            user: user.to_string(),
            port: port.unwrap_or(0).into(),
            host_keys: host_keys(&sf, problems),
        })
    });

    let mut labels = std::collections::HashMap::new();
    if let Some(n) = f.get("labels") {
        if let Value::Map(entries) = &n.value {
            for (k, v) in entries {
                let key = k.as_str().unwrap_or_default();
                if !valid_label_key(key) {
                    problems.push(f.problem(
                        k,
                        "labels",
                        format!("{key:?} is not a label key (letters, digits, '.', '_', '-', '/')"),
                    ));
                }
                match &v.value {
                    Value::Scalar(s, _) => {
                        if let Err(why) = check_text(s, MAX_LABEL_VALUE) {
                            problems.push(f.problem(v, "labels", format!("label {key:?}: {why}")));
                        }
                        labels.insert(key.to_string(), s.clone());
                    }
                    Value::Null => {
                        labels.insert(key.to_string(), String::new());
                    }
                    _ => problems.push(f.problem(
                        v,
                        "labels",
                        format!("label {key:?} must be a string, found {}", v.kind()),
                    )),
                }
            }
        } else {
            problems.push(f.problem(
                n,
                "labels",
                format!("expected a mapping, found {}", n.kind()),
            ));
        }
    }

    let hostname = f.str("hostname", problems).unwrap_or_default();
    if let (Err(why), Some(hn)) = (check_dns_name(hostname), f.get("hostname")) {
        problems.push(f.problem(hn, "hostname", format!("{hostname:?} {why}")));
    }
    let wake = f.bool("wake", problems).unwrap_or(false);
    if let (true, None, Some(n)) = (wake, &mac, f.get("wake")) {
        problems.push(f.problem(
            n,
            "wake",
            "wake: true needs the machine's mac (the magic packet names it)",
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(Entry {
        machine: Machine {
            wake,
            name: name.to_string(),
            ips: ip_pos.iter().map(|(ip, _)| ip.to_string()).collect(),
            mac: mac.map(|(m, _)| m.to_string()).unwrap_or_default(),
            hostname: hostname.to_string(),
            r#use: use_,
            features,
            labels,
            notes: f.str("notes", problems).unwrap_or_default().to_string(),
            ssh,
            source: format!("{file}:{}", node.pos.line),
        },
        file: file.to_string(),
        pos: node.pos,
        ip_pos,
        mac,
    })
}

fn parse_use(f: &Fields, node: &Node, problems: &mut Vec<Problem>) -> Option<Use> {
    // `use: games` and `use: discover` need no details.
    if let Some(word) = node.as_str() {
        return match choose(word, &[("games", 0), ("discover", 1)]) {
            Some(0) => Some(Use::Games(GamesUse {})),
            Some(_) => Some(Use::Discover(DiscoverUse {})),
            None => {
                let hint = match word {
                    "cluster" => {
                        " needs details, e.g. `use: {cluster: {name: alpha, role: worker}}`"
                    }
                    "development" => {
                        " needs details, e.g. `use: {development: server}` (or visual)"
                    }
                    "device" => " needs details, e.g. `use: {device: receipt printer}`",
                    _ => " is not one of: cluster, discover, development, games, device",
                };
                problems.push(f.problem(node, "use", format!("{word:?}{hint}")));
                None
            }
        };
    }
    let uf = Fields::of(f.file, node, "use", USE_NAMES, problems)?;
    let Value::Map(entries) = &node.value else {
        return None;
    };
    if entries.len() != 1 {
        problems.push(f.problem(node, "use", "give exactly one use"));
        return None;
    }
    let (key, body) = &entries[0];
    match key.as_str().unwrap_or_default() {
        "cluster" => {
            let cf = Fields::of(f.file, body, "use.cluster", &["name", "role"], problems)?;
            let name = cf.required_str("name", problems)?;
            if let Err(why) = check_dns_label(name) {
                problems.push(cf.problem(cf.get("name")?, "name", format!("{name:?} {why}")));
            }
            if cf.get("role").is_none() {
                problems.push(cf.problem(
                    cf.key("role").unwrap_or(body),
                    "role",
                    "required field is missing (control-plane or worker)",
                ));
                return None;
            }
            let role = cf.choice("role", ROLES, problems)?;
            Some(Use::Cluster(ClusterUse {
                cluster: name.to_string(),
                role: role as i32,
            }))
        }
        "development" => {
            let kind = if body.as_str().is_some() {
                let word = body.as_str().unwrap_or_default();
                choose(word, DEVELOPMENT_KINDS).or_else(|| {
                    problems.push(uf.problem(
                        body,
                        "development",
                        format!("{word:?} is not one of: server, visual"),
                    ));
                    None
                })?
            } else {
                let df = Fields::of(f.file, body, "use.development", &["kind"], problems)?;
                if df.get("kind").is_none() {
                    problems.push(df.problem(
                        body,
                        "kind",
                        "required field is missing (server or visual)",
                    ));
                    return None;
                }
                df.choice("kind", DEVELOPMENT_KINDS, problems)?
            };
            Some(Use::Development(DevelopmentUse { kind: kind as i32 }))
        }
        "device" => {
            let description = match body.as_str() {
                Some(s) => s.to_string(),
                None if body.is_null() => String::new(),
                None => {
                    let df = Fields::of(f.file, body, "use.device", &["description"], problems)?;
                    df.str("description", problems)
                        .unwrap_or_default()
                        .to_string()
                }
            };
            if let Err(why) = check_text(&description, MAX_LABEL_VALUE) {
                problems.push(uf.problem(body, "device", why));
                return None;
            }
            Some(Use::Device(DeviceUse { description }))
        }
        "games" | "discover" => {
            if !body.is_null() && !matches!(&body.value, Value::Map(m) if m.is_empty()) {
                problems.push(uf.problem(
                    body,
                    key.as_str().unwrap_or_default(),
                    "takes no details",
                ));
                return None;
            }
            Some(if key.as_str() == Some("games") {
                Use::Games(GamesUse {})
            } else {
                Use::Discover(DiscoverUse {})
            })
        }
        _ => None, // reported by Fields::of
    }
}

/// Host keys a machine may have at most.
pub const MAX_HOST_KEYS: usize = 8;

/// `ssh.host_keys`: each `TYPE BASE64` (a comment after it is dropped).
fn host_keys(sf: &Fields, problems: &mut Vec<Problem>) -> Vec<String> {
    let nodes = sf.strs("host_keys", problems);
    if nodes.len() > MAX_HOST_KEYS {
        problems.push(sf.problem(
            nodes[MAX_HOST_KEYS],
            "host_keys",
            format!("more than {MAX_HOST_KEYS} host keys"),
        ));
    }
    let mut keys = Vec::new();
    for n in nodes.iter().take(MAX_HOST_KEYS) {
        let text = n.as_str().unwrap_or_default();
        match text.parse::<crate::hostkey::HostKey>() {
            Ok(k) => keys.push(k.to_string()),
            Err(why) => {
                let shown: String = text.chars().take(40).collect();
                problems.push(sf.problem(n, "host_keys", format!("{shown:?} {why}")));
            }
        }
    }
    keys
}

/// Names are used as host names and Ansible inventory names.
pub fn check_dns_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only contain a-z, 0-9 and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not start or end with '-'");
    }
    Ok(())
}

/// The longest label value or device description (they become Ansible
/// host variables and table cells).
pub const MAX_LABEL_VALUE: usize = 256;

/// A user name as `ssh -l` takes it: letters, digits, `.`, `_`, `-`, not
/// starting with `-` (ssh would read it as an option), at most 32.
pub fn check_user(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Ok(());
    }
    if user.len() > 32 {
        return Err("is longer than 32 characters");
    }
    if user.starts_with('-') || user.starts_with('.') {
        return Err(
            "must start with a letter, digit or '_' (ssh would read a leading '-' as an option)",
        );
    }
    if !user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may only contain letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// A host name: dot-separated labels of letters, digits and '-', at most 253.
pub fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > 253 {
        return Err("is longer than 253 characters");
    }
    let ok = name.trim_end_matches('.').split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err("is not a DNS name (labels of letters, digits and '-', separated by dots)")
    }
}

/// A value that becomes an Ansible host variable: bounded, no control
/// characters, no braces (Ansible templates `{{ }}` in variables, and the
/// runner's command templates use `{name}`).
pub fn check_text(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("holds the control character {c:?}"));
    }
    if value.contains(['{', '}']) {
        return Err(format!(
            "{value:?} holds a brace; braces are refused (Ansible would template them)"
        ));
    }
    Ok(())
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 63
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}
