//! What changed since the last run finished: a pure function of what was
//! applied (from the state file) and the machines now. A machine needs a
//! run when what provisioning depends on (addresses, MAC, use, labels, SSH)
//! differs from what was applied; a cluster when its members or their roles
//! do. Failed runs never update what was applied, so they come back here.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    db::words::{role_name, use_name},
    proto::{machine::Use, Machine},
};

/// What the last successful runs applied, by machine and by cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub machines: BTreeMap<String, String>,
    pub clusters: BTreeMap<String, String>,
}

/// The work one revision asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Machines added or changed, in name order.
    pub machines: Vec<String>,
    /// Machines gone from the database.
    pub removed: Vec<String>,
    /// Clusters whose membership or roles changed (or that are new).
    pub clusters: Vec<String>,
    /// Clusters gone from the database.
    pub clusters_removed: Vec<String>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
            && self.removed.is_empty()
            && self.clusters.is_empty()
            && self.clusters_removed.is_empty()
    }
}

/// What provisioning a machine depends on, as one comparable line.
pub fn machine_signature(m: &Machine) -> String {
    let labels: Vec<String> = m
        .labels
        .iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let ssh = m
        .ssh
        .as_ref()
        .map(|s| format!("{}@{}", s.user, s.port))
        .unwrap_or_default();
    let detail = match &m.r#use {
        Some(Use::Cluster(c)) => format!("{}/{}", c.cluster, role_name(c.role)),
        Some(Use::Device(d)) => d.description.clone(),
        Some(Use::Development(d)) => d.kind.to_string(),
        _ => String::new(),
    };
    format!(
        "ips={} mac={} use={}:{detail} labels={} ssh={ssh}",
        m.ips.join(","),
        m.mac,
        use_name(m.r#use.as_ref()),
        labels.join(",")
    )
}

/// Every cluster's members and roles, as one comparable line each.
pub fn cluster_signatures(machines: &[Machine]) -> BTreeMap<String, String> {
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in machines {
        if let Some(Use::Cluster(c)) = &m.r#use {
            members
                .entry(c.cluster.clone())
                .or_default()
                .insert(format!(
                    "{}:{}:{}",
                    m.name,
                    role_name(c.role),
                    m.ips.first().cloned().unwrap_or_default()
                ));
        }
    }
    members
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(",")))
        .collect()
}

/// The work that brings `applied` up to `machines`.
pub fn plan(applied: &Applied, machines: &[Machine]) -> Work {
    let now: BTreeMap<&str, String> = machines
        .iter()
        .map(|m| (m.name.as_str(), machine_signature(m)))
        .collect();
    let clusters = cluster_signatures(machines);
    Work {
        machines: now
            .iter()
            .filter(|(name, sig)| applied.machines.get(**name) != Some(*sig))
            .map(|(name, _)| name.to_string())
            .collect(),
        removed: applied
            .machines
            .keys()
            .filter(|name| !now.contains_key(name.as_str()))
            .cloned()
            .collect(),
        clusters: clusters
            .iter()
            .filter(|(name, sig)| applied.clusters.get(*name) != Some(*sig))
            .map(|(name, _)| name.clone())
            .collect(),
        clusters_removed: applied
            .clusters
            .keys()
            .filter(|name| !clusters.contains_key(*name))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClusterUse, GamesUse, Role};

    fn node(name: &str, ip: &str, cluster: &str, role: Role) -> Machine {
        Machine {
            name: name.into(),
            ips: vec![ip.into()],
            r#use: Some(Use::Cluster(ClusterUse {
                cluster: cluster.into(),
                role: role as i32,
            })),
            ..Default::default()
        }
    }

    fn applied(machines: &[Machine]) -> Applied {
        Applied {
            machines: machines
                .iter()
                .map(|m| (m.name.clone(), machine_signature(m)))
                .collect(),
            clusters: cluster_signatures(machines),
        }
    }

    #[test]
    fn nothing_changed_is_no_work() {
        let ms = vec![node("cp", "198.18.0.1", "alpha", Role::ControlPlane)];
        assert!(plan(&applied(&ms), &ms).is_empty());
    }

    #[test]
    fn a_new_worker_is_one_machine_and_its_cluster() {
        let before = vec![node("cp", "198.18.0.1", "alpha", Role::ControlPlane)];
        let mut after = before.clone();
        after.push(node("w1", "198.18.0.2", "alpha", Role::Worker));
        let w = plan(&applied(&before), &after);
        assert_eq!(w.machines, ["w1"]);
        assert_eq!(w.clusters, ["alpha"]);
        assert!(w.removed.is_empty());
    }

    #[test]
    fn a_changed_address_or_role_is_work_but_notes_are_not() {
        let before = vec![
            node("cp", "198.18.0.1", "alpha", Role::ControlPlane),
            node("w1", "198.18.0.2", "alpha", Role::Worker),
        ];
        let mut after = before.clone();
        after[1].notes = "a comment".into();
        assert!(plan(&applied(&before), &after).is_empty());
        after[1].ips = vec!["198.18.0.3".into()];
        let w = plan(&applied(&before), &after);
        assert_eq!(
            (w.machines.as_slice(), w.clusters.as_slice()),
            (&["w1".to_string()][..], &["alpha".to_string()][..])
        );
        let mut promoted = before.clone();
        promoted[1] = node("w1", "198.18.0.2", "alpha", Role::ControlPlane);
        assert_eq!(plan(&applied(&before), &promoted).clusters, ["alpha"]);
    }

    #[test]
    fn removed_machines_and_clusters_are_listed() {
        let before = vec![node("cp", "198.18.0.1", "beta", Role::ControlPlane)];
        let after = vec![Machine {
            name: "game".into(),
            r#use: Some(Use::Games(GamesUse {})),
            ..Default::default()
        }];
        let w = plan(&applied(&before), &after);
        assert_eq!(w.removed, ["cp"]);
        assert_eq!(w.clusters_removed, ["beta"]);
        assert_eq!(w.machines, ["game"]);
    }
}
