//! A validated database at one git revision, with indexes. Built once and
//! never mutated: readers share it through an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::mdb_yaml::MdbYaml;
use crate::{
    net::Mac,
    proto::{machine::Use, Machine, Role},
};

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Commit id the snapshot was read from.
    pub revision: String,
    /// Sorted by name, so listings are stable and pageable by name.
    pub machines: Vec<Machine>,
    /// The revision's `mdb.yaml`.
    pub mdb_yaml: MdbYaml,
    by_ip: HashMap<IpAddr, usize>,
    by_mac: HashMap<Mac, usize>,
    /// Cluster name → (control-plane, worker) machine indexes.
    clusters: BTreeMap<String, (Vec<usize>, Vec<usize>)>,
    /// UseKind number → machine indexes, ascending (so in name order).
    by_use: HashMap<i32, Vec<usize>>,
}

impl Snapshot {
    /// Callers guarantee uniqueness (`validate` checks it).
    pub fn new(revision: String, mut machines: Vec<Machine>, mdb_yaml: MdbYaml) -> Snapshot {
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        let mut s = Snapshot {
            revision,
            mdb_yaml,
            by_ip: HashMap::with_capacity(machines.len()),
            by_mac: HashMap::with_capacity(machines.len()),
            clusters: BTreeMap::new(),
            by_use: HashMap::new(),
            machines: Vec::new(),
        };
        for (i, m) in machines.iter().enumerate() {
            for ip in &m.ips {
                if let Ok(ip) = ip.parse() {
                    s.by_ip.insert(ip, i);
                }
            }
            if let Ok(mac) = m.mac.parse() {
                s.by_mac.insert(mac, i);
            }
            s.by_use
                .entry(super::use_kind(m.r#use.as_ref()) as i32)
                .or_default()
                .push(i);
            if let Some(Use::Cluster(c)) = &m.r#use {
                let nodes = s.clusters.entry(c.cluster.clone()).or_default();
                if c.role == Role::ControlPlane as i32 {
                    nodes.0.push(i);
                } else {
                    nodes.1.push(i);
                }
            }
        }
        s.machines = machines;
        s
    }

    /// Machines are sorted by name, so a binary search needs no index.
    pub fn by_name(&self, name: &str) -> Option<&Machine> {
        self.machines
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.machines[i])
    }

    pub fn by_ip(&self, ip: IpAddr) -> Option<&Machine> {
        self.by_ip.get(&ip).map(|&i| &self.machines[i])
    }

    pub fn by_mac(&self, mac: Mac) -> Option<&Machine> {
        self.by_mac.get(&mac).map(|&i| &self.machines[i])
    }

    /// By name, IP or MAC, whichever `key` parses as.
    /// A machine by its name or its MAC (not by address: a magic packet
    /// is for a machine, not for whoever holds an IP now).
    pub fn by_name_or_mac(&self, key: &str) -> Option<&Machine> {
        let by_mac = || key.parse::<Mac>().ok().and_then(|m| self.by_mac(m));
        self.by_name(key).or_else(by_mac)
    }

    pub fn lookup(&self, key: &str) -> Option<&Machine> {
        let key = key.trim();
        if let Ok(ip) = key.parse::<IpAddr>() {
            return self.by_ip(ip);
        }
        if let Ok(mac) = key.parse::<Mac>() {
            if let Some(m) = self.by_mac(mac) {
                return Some(m);
            }
        }
        self.by_name(key)
    }

    pub fn cluster_names(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }

    /// Control-plane and worker nodes of a cluster, each in name order.
    pub fn cluster(&self, name: &str) -> Option<(Vec<&Machine>, Vec<&Machine>)> {
        self.clusters.get(name).map(|(cp, w)| {
            (
                cp.iter().map(|&i| &self.machines[i]).collect(),
                w.iter().map(|&i| &self.machines[i]).collect(),
            )
        })
    }

    /// The cluster builder's view of a cluster: its nodes by role.
    pub fn cluster_view(&self, name: &str) -> Option<crate::proto::Cluster> {
        let (cp, w) = self.cluster(name)?;
        Some(crate::proto::Cluster {
            name: name.to_string(),
            control_plane: cp.into_iter().cloned().collect(),
            workers: w.into_iter().cloned().collect(),
        })
    }

    /// Machines per use word, every use present (zero when none).
    pub fn count_by_use(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> =
            super::USE_NAMES.iter().map(|u| (*u, 0)).collect();
        for m in &self.machines {
            *out.entry(super::use_name(m.r#use.as_ref())).or_default() += 1;
        }
        out
    }

    /// Indexes (ascending, so in name order) of the machines a filter on
    /// cluster and/or use can match: an index lookup instead of a scan.
    pub fn candidates(&self, cluster: &str, use_kind: i32) -> std::borrow::Cow<'_, [usize]> {
        use std::borrow::Cow;
        if !cluster.is_empty() {
            let Some((cp, w)) = self.clusters.get(cluster) else {
                return Cow::Owned(Vec::new());
            };
            let mut all: Vec<usize> = cp.iter().chain(w).copied().collect();
            all.sort_unstable();
            return Cow::Owned(all);
        }
        if use_kind != 0 {
            return match self.by_use.get(&use_kind) {
                Some(v) => Cow::Borrowed(v.as_slice()),
                None => Cow::Owned(Vec::new()),
            };
        }
        Cow::Owned((0..self.machines.len()).collect())
    }
}
