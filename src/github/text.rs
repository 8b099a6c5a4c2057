//! What mdb writes on GitHub: an issue's title and body, and the database
//! entry it proposes for a new device. Pure text; no requests.

use crate::{
    db::Snapshot,
    escape::{clean, markdown},
    github::{
        entry::{Entry, Held},
        fingerprint::{Fingerprint, Kind},
        trust::Trailer,
    },
    proto::{DiscoveredHost, HostState},
};

/// The longest title mdb gives an issue or pull request.
const MAX_TITLE: usize = 200;

/// The problem kind of a host that gets an issue.
pub fn kind(h: &DiscoveredHost) -> Kind {
    match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) => Kind::Unprovisionable,
        Ok(HostState::Conflict) => Kind::Conflict,
        Ok(HostState::Missing) => Kind::Missing,
        _ => Kind::NewDevice,
    }
}

/// Whether a host in this state gets an issue. A missing machine does only
/// when `scan.file_missing` of the database names it or its use.
pub fn files_issue(h: &DiscoveredHost, snap: Option<&Snapshot>) -> bool {
    match HostState::try_from(h.state) {
        Ok(HostState::New | HostState::Conflict | HostState::Unprovisionable) => true,
        Ok(HostState::Missing) => snap.is_some_and(|s| {
            s.by_name(&h.machine)
                .is_some_and(|m| s.mdb_yaml.scan.file_missing.covers(m))
        }),
        _ => false,
    }
}

/// The title of a host's issue: plain text (titles are not Markdown), with
/// no control characters and no `@` or `#` a reader could take for a
/// mention or a reference.
pub fn title(h: &DiscoveredHost) -> String {
    let what = match (h.vendor.as_str(), h.mac.as_str()) {
        ("", "") => String::new(),
        ("", mac) => format!(" ({mac})"),
        (v, "") => format!(" ({v})"),
        (v, mac) => format!(" ({v}, {mac})"),
    };
    let t = match HostState::try_from(h.state) {
        Ok(HostState::Unprovisionable) => format!("Cannot provision {} ({})", h.machine, h.ip),
        Ok(HostState::Conflict) => format!("Address conflict at {}{what}", h.ip),
        Ok(HostState::Missing) => format!("Missing: {} ({}) does not answer", h.machine, h.ip),
        _ => format!("New device {}{what}", h.ip),
    };
    plain_title(&t)
}

/// A title from text that may hold a device's words.
pub fn plain_title(text: &str) -> String {
    clean(text, MAX_TITLE)
        .replace('@', "@\u{2060}")
        .replace('#', "#\u{2060}")
}

/// Labels that say where a device plugs in (`port:sw-2/p3`, `vlan:10`):
/// a port name is the switch's text, so only plain characters pass, and
/// a label stays within GitHub's 50.
pub fn port_labels(h: &DiscoveredHost) -> Vec<String> {
    let Some(p) = &h.switch_port else {
        return Vec::new();
    };
    let plain: String = format!("{}/{}", p.switch, p.port)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._/-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(45)
        .collect();
    let mut out = vec![format!("port:{plain}")];
    if p.vlan > 0 {
        out.push(format!("vlan:{}", p.vlan));
    }
    out
}

/// Everything seen, as a Markdown table.
pub fn seen_table(h: &DiscoveredHost) -> String {
    let ports: Vec<String> = h.open_ports.iter().map(|p| p.to_string()).collect();
    let time = |t: i64| {
        if t == 0 {
            String::new()
        } else {
            crate::github::entry::time(t)
        }
    };
    let mut b = String::from("| field | value |\n| --- | --- |\n");
    for (k, v) in [
        ("IP", h.ip.clone()),
        ("IPv6", crate::export::view::ipv6_text(h)),
        ("MAC", h.mac.clone()),
        ("vendor", h.vendor.clone()),
        (
            "names",
            crate::export::names::described(h, crate::db::words::DEFAULT_NAME_ORDER),
        ),
        ("mDNS services", h.services.join(", ")),
        ("DHCP lease ends", time(h.lease_expires_unix)),
        ("open ports", ports.join(", ")),
        ("SSH banner", h.ssh_banner.clone()),
        (
            "SSH host key",
            h.ssh_host_key
                .parse::<crate::hostkey::HostKey>()
                .map(|k| format!("{} {}", k.kind(), k.fingerprint()))
                .unwrap_or_default(),
        ),
        ("answered", h.seen_by.clone()),
        ("seen on", crate::export::view::seen_on(h)),
        ("switch port", crate::export::view::port_text(h)),
        ("database machine", h.machine.clone()),
        (
            "guessed use",
            crate::db::kind_name(h.guessed_use).to_string(),
        ),
        ("first seen", time(h.first_seen_unix)),
        ("last seen", time(h.last_seen_unix)),
        (
            "MACs used",
            if h.macs_seen.len() > 1 {
                h.macs_seen.join(", ")
            } else {
                String::new()
            },
        ),
    ] {
        if !v.is_empty() {
            b.push_str(&format!("| {k} | {} |\n", markdown(&v)));
        }
    }
    b
}

/// Everything seen, and for a new device a ready-to-paste DB entry.
pub fn body(h: &DiscoveredHost, entry: Option<&Entry>) -> String {
    body_waiting(h, entry, None)
}

/// [`body`], saying in the trailer which reservation its device was last
/// said to be waiting for.
pub fn body_waiting(h: &DiscoveredHost, entry: Option<&Entry>, reserved: Option<&str>) -> String {
    let mut b = format!(
        "mdb's sweep found a host that needs attention: **{}**.\n\n",
        markdown(&h.detail)
    );
    b.push_str(&seen_table(h));
    if h.mac_is_local {
        b.push_str("\nThe MAC is locally administered (often a randomised, private address), so this issue follows the IP.\n");
    }
    if let Some(e) = entry.filter(|_| HostState::try_from(h.state) == Ok(HostState::New)) {
        b.push_str(&format!(
            "\nTo record it, add this as `{}` in the DB repository (it validates as is):\n\n```yaml\n{}```\n",
            e.path(),
            e.yaml()
        ));
    }
    b.push_str("\nmdb closes this issue by itself when the problem is resolved.\n\n");
    b.push_str(
        &Trailer {
            fingerprint: Fingerprint::of(h),
            ip: Some(h.ip.clone()),
            name: None,
            reserved: reserved.map(String::from),
        }
        .write(),
    );
    b
}

/// What the filer would file for these hosts, as `mdb scan --report`
/// shows it: a dry run with no token and no GitHub. (Closing needs the
/// repository's issues, which only the server reads.)
pub fn preview(hosts: &[DiscoveredHost], snap: Option<&Snapshot>) -> String {
    let problems: Vec<_> = hosts.iter().filter(|h| files_issue(h, snap)).collect();
    if problems.is_empty() {
        return "nothing to file\n".into();
    }
    let mut out = String::new();
    let mut held = Held {
        ips: hosts.iter().filter_map(|h| h.ip.parse().ok()).collect(),
        ..Held::default()
    };
    for h in problems {
        let fp = Fingerprint::of(h)
            .map(|f| f.to_string())
            .unwrap_or_default();
        out.push_str(&format!("would file: {}  [{fp}]\n", title(h)));
        let entry = snap.and_then(|s| Entry::for_host(h, s, &held).ok());
        if let Some(e) = entry.filter(|_| h.state == HostState::New as i32) {
            held.ips.insert(e.ip);
            held.names.insert(e.name.clone());
            for line in e.yaml().lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_labels_are_plain_and_short() {
        let h = DiscoveredHost {
            switch_port: Some(crate::proto::SwitchPort {
                switch: "sw-2".into(),
                port: "Gi1/0/14 <b>`".repeat(9),
                vlan: 10,
            }),
            ..Default::default()
        };
        let l = port_labels(&h);
        assert!(l[0].starts_with("port:sw-2/Gi1/0/14--b--"), "{l:?}");
        assert!(l[0].len() <= 50 && l[0].chars().all(|c| c.is_ascii_graphic()));
        assert_eq!(l[1], "vlan:10");
        assert!(port_labels(&DiscoveredHost::default()).is_empty());
    }

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
        assert!(!b.contains("```yaml"), "no entry, no snippet");
        assert_eq!(
            Trailer::read(&b)
                .fingerprint
                .map(|f| f.to_string())
                .as_deref(),
            Some("new-device:mac=dc:a6:32:00:00:23")
        );
        assert!(title(&h).starts_with("New device 198.18.0.23 (Raspberry Pi"));
    }
}
