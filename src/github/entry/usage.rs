//! What a new entry proposes the device is for (`use:`, from the rules of
//! `scan.rules`, a join rule making it a cluster node) and how it is
//! reached (`ssh:`: a node like its peers, and the host key it offered).

use crate::{
    db::{self, Snapshot},
    proto::{
        machine::Use, ClusterUse, DevelopmentKind, DevelopmentUse, DeviceUse, DiscoverUse,
        DiscoveredHost, GamesUse, Ssh,
    },
};

/// The `use:` value, and a note: a rule of `scan.rules` that joins a
/// cluster makes the device a node of it; a cluster guess without one
/// names no cluster, so it is proposed as `discover`, with a note.
pub(super) fn use_of(h: &DiscoveredHost, snap: &Snapshot) -> (Use, Option<String>) {
    let ports: Vec<u16> = h
        .open_ports
        .iter()
        .filter_map(|p| u16::try_from(*p).ok())
        .collect();
    let seen = db::rules::Seen {
        ip: h.ip.parse().ok(),
        mac: h.mac.parse().ok(),
        vendor: &h.vendor,
        banner: &h.ssh_banner,
        open_ports: &ports,
        services: &h.services,
    };
    if let Some(j) =
        db::rules::first_match(&snap.mdb_yaml.scan.rules, &seen).and_then(|r| r.join.as_ref())
    {
        let use_ = Use::Cluster(ClusterUse {
            cluster: j.cluster.clone(),
            role: j.role as i32,
        });
        let note = format!(
            "joins cluster {} as a {} (scan.rules)",
            j.cluster,
            db::words::role_name(j.role as i32)
        );
        return (use_, Some(note));
    }
    match db::kind_name(h.guessed_use) {
        "cluster" => (
            Use::Discover(DiscoverUse {}),
            Some("looks like a cluster node; to add it to one, set use: {cluster: {name: NAME, role: worker}}, or add a join rule to scan.rules".into()),
        ),
        "development" => (
            Use::Development(DevelopmentUse {
                kind: DevelopmentKind::Server as i32,
            }),
            None,
        ),
        "games" => (Use::Games(GamesUse {}), None),
        "device" => {
            (
                Use::Device(DeviceUse {
                    description: device_description(h),
                }),
                None,
            )
        }
        _ => (Use::Discover(DiscoverUse {}), None),
    }
}

/// What a device is: a printer when it announces a printer's service,
/// with its vendor where known.
fn device_description(h: &DiscoveredHost) -> String {
    let printer = h
        .services
        .iter()
        .any(|s| db::rules::PRINTER_SERVICES.contains(&s.as_str()));
    match (printer, h.vendor.is_empty()) {
        (true, true) => "printer".into(),
        (true, false) => format!("printer ({})", h.vendor),
        (false, true) => "unknown device".into(),
        (false, false) => h.vendor.clone(),
    }
}

/// The SSH user and port most of a cluster's nodes use, if they name one:
/// a new node is reached like its peers.
pub(super) fn cluster_ssh(snap: &Snapshot, cluster: &str) -> Option<Ssh> {
    let (cp, workers) = snap.cluster(cluster)?;
    let mut count: std::collections::BTreeMap<(String, u32), usize> = Default::default();
    for s in cp
        .iter()
        .chain(workers.iter())
        .filter_map(|m| m.ssh.as_ref())
    {
        *count.entry((s.user.clone(), s.port)).or_default() += 1;
    }
    let ((user, port), _) = count.into_iter().max_by_key(|(_, n)| *n)?;
    Some(Ssh {
        user,
        port,
        ..Default::default()
    })
}

/// The host key the device offered, proposed for a DB writer to pin (a
/// key that does not parse is no proposal).
pub(super) fn with_host_key(ssh: Option<Ssh>, offered: &str) -> Option<Ssh> {
    let Ok(key) = offered.parse::<crate::hostkey::HostKey>() else {
        return ssh;
    };
    let mut ssh = ssh.unwrap_or_default();
    ssh.host_keys = vec![key.to_string()];
    Some(ssh)
}
