//! What mdb writes on GitHub: an issue's title and body, and the database
//! entry it proposes for a new device. Pure text; no requests.

use crate::{
    github::fingerprint::{Fingerprint, Kind},
    proto::{DiscoveredHost, HostState},
};

/// The problem kind of a host that gets an issue.
pub fn kind(h: &DiscoveredHost) -> Kind {
    match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) => Kind::Unprovisionable,
        Ok(HostState::Conflict) => Kind::Conflict,
        _ => Kind::NewDevice,
    }
}

/// Whether a host in this state gets an issue.
pub fn files_issue(h: &DiscoveredHost) -> bool {
    matches!(
        HostState::try_from(h.state),
        Ok(HostState::New | HostState::Conflict | HostState::Unprovisionable)
    )
}

pub fn title(h: &DiscoveredHost) -> String {
    let what = match (h.vendor.as_str(), h.mac.as_str()) {
        ("", "") => String::new(),
        ("", mac) => format!(" ({mac})"),
        (v, "") => format!(" ({v})"),
        (v, mac) => format!(" ({v}, {mac})"),
    };
    match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) => format!("Cannot provision {} ({})", h.machine, h.ip),
        Ok(HostState::Conflict) => format!("Address conflict at {}{what}", h.ip),
        _ => format!("New device {}{what}", h.ip),
    }
}

/// Everything seen, and for a new device a ready-to-paste DB entry.
pub fn body(h: &DiscoveredHost, suggested_ip: Option<&str>) -> String {
    let ports: Vec<String> = h.open_ports.iter().map(|p| p.to_string()).collect();
    let time = |t: i64| {
        if t == 0 {
            "-".to_string()
        } else {
            format!("<t:{t}> (unix {t})")
        }
    };
    let mut b = String::new();
    b.push_str(&format!(
        "mdb's sweep found a host that needs attention: **{}**.\n\n",
        h.detail
    ));
    b.push_str("| field | value |\n| --- | --- |\n");
    for (k, v) in [
        ("IP", h.ip.clone()),
        ("MAC", h.mac.clone()),
        ("vendor", h.vendor.clone()),
        ("reverse DNS", h.dns_name.clone()),
        ("open ports", ports.join(", ")),
        ("SSH banner", h.ssh_banner.clone()),
        ("answered", h.seen_by.clone()),
        ("database machine", h.machine.clone()),
        (
            "guessed use",
            crate::db::kind_name(h.guessed_use).to_string(),
        ),
        ("first seen", time(h.first_seen_unix)),
        ("last seen", time(h.last_seen_unix)),
    ] {
        if !v.is_empty() {
            b.push_str(&format!(
                "| {k} | `{}` |\n",
                v.replace('|', "\\|").replace('`', "'")
            ));
        }
    }
    if h.mac_is_local {
        b.push_str("\nThe MAC is locally administered (often a randomised, private address), so this issue follows the IP.\n");
    }
    if HostState::try_from(h.state) == Ok(HostState::New) {
        b.push_str("\nTo record it, add this to a file under `machines/` in the DB repository:\n\n```yaml\n");
        b.push_str(&yaml_entry(h, suggested_ip));
        b.push_str("```\n");
    }
    b.push_str("\nmdb closes this issue by itself when the problem is resolved.\n\n");
    if let Some(fp) = Fingerprint::of(h) {
        b.push_str(&fp.marker());
    }
    b.push_str(&format!("\n<!-- mdb-ip: {} -->\n", h.ip));
    b
}

/// What the filer would file for these hosts, as `mdb scan --report`
/// shows it: a dry run with no token and no GitHub. (Closing needs the
/// repository's issues, which only the server reads.)
pub fn preview(hosts: &[DiscoveredHost]) -> String {
    let problems: Vec<_> = hosts.iter().filter(|h| files_issue(h)).collect();
    if problems.is_empty() {
        return "nothing to file\n".into();
    }
    let mut out = String::new();
    for h in problems {
        let fp = Fingerprint::of(h)
            .map(|f| f.to_string())
            .unwrap_or_default();
        out.push_str(&format!("would file: {}  [{fp}]\n", title(h)));
        if h.state == HostState::New as i32 {
            for line in yaml_entry(h, None).lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

/// The address an issue body last reported.
pub fn ip_in(body: &str) -> Option<&str> {
    let start = body.find("<!-- mdb-ip: ")? + "<!-- mdb-ip: ".len();
    let rest = &body[start..];
    Some(rest[..rest.find(" -->")?].trim())
}

/// A DB entry for a new host, with the guessed use.
pub fn yaml_entry(h: &DiscoveredHost, suggested_ip: Option<&str>) -> String {
    let name = h
        .dns_name
        .split('.')
        .next()
        .map(|n| n.to_ascii_lowercase())
        .filter(|n| crate::db::load::check_dns_label(n).is_ok())
        .unwrap_or_else(|| format!("host-{}", h.ip.replace(['.', ':'], "-")));
    let use_ = match crate::db::kind_name(h.guessed_use) {
        "cluster" => "\n      cluster: { name: CHANGE-ME, role: worker }".to_string(),
        "development" => " { development: server }".to_string(),
        "games" => " games".to_string(),
        "device" => format!(
            " {{ device: {} }}",
            if h.vendor.is_empty() {
                "unknown device".to_string()
            } else {
                h.vendor
                    .replace(['{', '}', ':', ','], " ")
                    .trim()
                    .to_string()
            }
        ),
        _ => " discover".to_string(),
    };
    let mut y = String::from("machines:\n");
    y.push_str(&format!("  - name: {name}\n"));
    y.push_str(&format!("    ip: {}\n", suggested_ip.unwrap_or(&h.ip)));
    if !h.mac.is_empty() && !h.mac_is_local {
        y.push_str(&format!("    mac: {}\n", h.mac));
    }
    y.push_str(&format!("    use:{use_}\n"));
    if let Some(ip) = suggested_ip.filter(|ip| *ip != h.ip) {
        y.push_str(&format!(
            "    notes: seen at {}; {ip} is the next free static address\n",
            h.ip
        ));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_host() -> DiscoveredHost {
        DiscoveredHost {
            ip: "198.18.0.23".into(),
            mac: "dc:a6:32:00:00:23".into(),
            vendor: "Raspberry Pi Trading Ltd".into(),
            state: HostState::New as i32,
            guessed_use: crate::proto::UseKind::Cluster as i32,
            detail: "not in the database".into(),
            ..Default::default()
        }
    }

    #[test]
    fn body_carries_a_fingerprint_that_reads_back() {
        let h = new_host();
        let b = body(&h, None);
        assert_eq!(
            Fingerprint::in_body(&b).map(|f| f.to_string()).as_deref(),
            Some("new-device:mac=dc:a6:32:00:00:23")
        );
        assert!(title(&h).starts_with("New device 198.18.0.23 (Raspberry Pi"));
    }

    #[test]
    fn yaml_entry_is_a_valid_database_file_once_named() {
        let h = new_host();
        let y = yaml_entry(&h, Some("198.18.0.40")).replace("CHANGE-ME", "alpha");
        let cp = "machines:\n  - name: cp\n    ip: 198.18.0.2\n    use: { cluster: { name: alpha, role: control-plane } }\n";
        let files = [
            crate::db::SourceFile {
                path: "machines/new.yaml".into(),
                text: y.clone(),
            },
            crate::db::SourceFile {
                path: "machines/cp.yaml".into(),
                text: cp.into(),
            },
        ];
        let snap = crate::db::validate(&files, "t").unwrap_or_else(|r| panic!("{r}\n{y}"));
        assert!(snap.by_ip("198.18.0.40".parse().unwrap()).is_some());
    }
}
