//! A machine (and a discovered host) in words and as JSON, as the CLI, the
//! web page and exports show it: one place, so they never disagree.

use serde_json::{json, Value};

use crate::{
    db::{
        self,
        words::{development_kind_name, presence_name, provisioner_name, role_name, state_name},
    },
    proto::{machine::Use, DiscoveredHost, HostHistory, Machine, ProvisionResult, ProvisionStatus},
};

/// The use in a few words: "cluster alpha (worker)", "device: receipt printer".
pub fn use_detail(m: &Machine) -> String {
    match &m.r#use {
        Some(Use::Cluster(c)) => format!("cluster {} ({})", c.cluster, role_name(c.role)),
        Some(Use::Development(d)) => format!("development ({})", development_kind_name(d.kind)),
        Some(Use::Device(d)) if !d.description.is_empty() => format!("device: {}", d.description),
        other => db::use_name(other.as_ref()).to_string(),
    }
}

/// A machine as JSON, field names as in the YAML format.
pub fn machine_json(m: &Machine) -> Value {
    let mut use_ = json!({ "kind": db::use_name(m.r#use.as_ref()) });
    match &m.r#use {
        Some(Use::Cluster(c)) => {
            use_["cluster"] = json!(c.cluster);
            use_["role"] = json!(role_name(c.role));
        }
        Some(Use::Development(d)) => use_["development"] = json!(development_kind_name(d.kind)),
        Some(Use::Device(d)) => use_["description"] = json!(d.description),
        _ => {}
    }
    json!({
        "name": m.name,
        "ips": m.ips,
        "mac": m.mac,
        "hostname": m.hostname,
        "use": use_,
        "provisioner": provisioner_name(m),
        "ssh": m.ssh.as_ref().map(|s| json!({"user": s.user, "port": if s.port == 0 { 22 } else { s.port }})),
        "labels": m.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "notes": m.notes,
        "source": m.source,
    })
}

/// What the sweeps say of a database machine: its own record (the one the
/// history keeps under its name), if the sweeps have one.
pub fn sweeps_of<'a>(hosts: &'a [DiscoveredHost], machine: &str) -> Option<&'a DiscoveredHost> {
    hosts
        .iter()
        .find(|h| h.key.strip_prefix("machine:") == Some(machine))
}

/// Presence in a few words: "up for 2 h", "down for 3 days", "up", or "-" when the
/// sweeps have not seen it.
pub fn presence_text(h: Option<&DiscoveredHost>) -> String {
    let Some(h) = h else {
        return "-".into();
    };
    let word = presence_name(h.presence);
    if h.presence_since_unix == 0 {
        return word.to_string();
    }
    let since = crate::db::store::ago(h.presence_since_unix);
    format!("{word} for {}", since.trim_end_matches(" ago"))
}

/// A machine's provisioning in a few words: "ok @abc123def456", "ready",
/// "skipped", or what is wrong ("not ready: ssh …", cut at 60 characters).
pub fn provisioning_text(s: Option<&ProvisionStatus>) -> String {
    let Some(s) = s else {
        return "-".into();
    };
    let word = crate::db::words::provision_result_name(s.result);
    match ProvisionResult::try_from(s.result) {
        Ok(ProvisionResult::Ok) => {
            let rev: String = s.applied_revision.chars().take(12).collect();
            format!("{word} @{rev}")
        }
        _ if s.reason.is_empty() => word.to_string(),
        _ => {
            let reason: String = s.reason.chars().take(60).collect();
            let cut = if s.reason.chars().count() > 60 {
                "…"
            } else {
                ""
            };
            format!("{word}: {reason}{cut}")
        }
    }
}

/// A discovered host as JSON, as `mdb discovered --json` and the page give it.
pub fn host_json(h: &DiscoveredHost) -> Value {
    json!({
        "ip": h.ip,
        "mac": h.mac,
        "vendor": h.vendor,
        "dns_name": h.dns_name,
        "names": h.names.iter().map(|n| json!({"name": n.name, "source": n.source})).collect::<Vec<_>>(),
        "services": h.services,
        "lease_expires_unix": h.lease_expires_unix,
        "rtt_micros": h.rtt_micros,
        "open_ports": h.open_ports,
        "ssh_banner": h.ssh_banner,
        "state": state_name(h.state),
        "machine": h.machine,
        "guessed_use": db::kind_name(h.guessed_use),
        "first_seen_unix": h.first_seen_unix,
        "last_seen_unix": h.last_seen_unix,
        "state_since_unix": h.state_since_unix,
        "detail": h.detail,
        "mac_is_local": h.mac_is_local,
        "seen_by": h.seen_by,
        "source": h.source,
        "switch_port": h.switch_port.as_ref().map(|p| json!({"switch": p.switch, "port": p.port, "vlan": p.vlan})),
        "other_macs": h.other_macs,
        "presence": presence_name(h.presence),
        "presence_since_unix": h.presence_since_unix,
        "missed_sweeps": h.missed_sweeps,
        "uptime_24h": h.uptime_24h,
        "uptime_7d": h.uptime_7d,
        "macs_seen": h.macs_seen,
        "key": h.key,
        "probed_unix": h.probed_unix,
        "segments": h.segments,
        "segment_stale": h.segment_stale,
        "ipv6_addresses": h.ipv6_addresses.iter().map(|a| json!({
            "ip": a.ip, "kind": a.kind,
            "first_seen_unix": a.first_seen_unix, "last_seen_unix": a.last_seen_unix,
        })).collect::<Vec<_>>(),
    })
}

/// Where a host was seen when not by the scanner's own probes: "guest via
/// snmp:gw" (its segment, through a router's table); empty otherwise.
pub fn seen_on(h: &DiscoveredHost) -> String {
    if h.source.is_empty() {
        return String::new();
    }
    let stale = if h.segment_stale { " (stale)" } else { "" };
    format!("{} via {}{stale}", h.segments.join("+"), h.source)
}

/// "sw-2 port p3, VLAN 10": where a device plugs in.
pub fn port_words(p: &crate::proto::SwitchPort) -> String {
    let vlan = if p.vlan == 0 {
        String::new()
    } else {
        format!(", VLAN {}", p.vlan)
    };
    format!("{} port {}{vlan}", p.switch, p.port)
}

/// A host's switch port in words; empty when no switch placed it.
pub fn port_text(h: &DiscoveredHost) -> String {
    h.switch_port.as_ref().map(port_words).unwrap_or_default()
}

/// A host's IPv6 addresses in one line, each with its kind.
pub fn ipv6_text(h: &DiscoveredHost) -> String {
    h.ipv6_addresses
        .iter()
        .map(|a| format!("{} ({})", a.ip, a.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A host's history as JSON: the host, the addresses it used and its ups
/// and downs (oldest first).
pub fn history_json(r: &HostHistory) -> Value {
    json!({
        "host": host_json(&r.host.clone().unwrap_or_default()),
        "addresses": r.addresses.iter().map(|a| json!({
            "mac": a.mac, "ip": a.ip,
            "first_seen_unix": a.first_seen_unix, "last_seen_unix": a.last_seen_unix,
        })).collect::<Vec<_>>(),
        "transitions": r.transitions.iter().map(|t| json!({
            "presence": presence_name(t.presence), "at_unix": t.at_unix, "ip": t.ip,
        })).collect::<Vec<_>>(),
    })
}
