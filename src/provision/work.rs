//! The runner's work on one revision: changed machines (readiness, then
//! one run per action), removed machines, changed clusters; and what
//! `--dry-run` prints instead.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    plan::{cluster_signatures, machine_signature, Work},
    ready,
    run::{self, Vars},
    runner::Runner,
    ClusterFormat,
};
use crate::{
    db::{store::now_unix, Snapshot},
    export::inventory,
    proto::{ProvisionResult, ProvisionStatus},
};

impl Runner {
    /// Changed machines: those that pass their readiness checks get one
    /// run together (`--limit` all of them).
    pub(super) async fn machines(
        &mut self,
        work: &Work,
        snap: &Snapshot,
        shutdown: &CancellationToken,
    ) {
        let mut ready_names = Vec::new();
        let mut not_ready = 0;
        for name in &work.machines {
            let key = (false, name.clone());
            let Some(m) = snap.by_name(name) else {
                continue;
            };
            if !self.due(&key) || shutdown.is_cancelled() {
                continue;
            }
            match ready::check(m, &self.cfg.ssh, &self.readiness.checks).await {
                Ok(()) => ready_names.push(name.clone()),
                Err(why) => {
                    not_ready += 1;
                    self.metrics.ran("machine", "not_ready", 0.0);
                    self.failed(key, ProvisionResult::NotReady, &why, "");
                }
            }
        }
        self.metrics.not_ready(not_ready);
        if ready_names.is_empty() || self.cfg.machine_command.is_empty() {
            self.apply_machines(&ready_names, snap);
            return;
        }
        let vars = Vars {
            revision: self.revision.clone(),
            hosts: ready_names.join(","),
            cluster: String::new(),
            inventory: self.write_file("inventory.yaml", &inventory::static_yaml(snap)),
        };
        info!(hosts = %vars.hosts, revision = %vars.revision, "provisioning machines");
        let o = run::run(&self.cfg.machine_command, &vars, self.cfg.timeout).await;
        self.metrics.ran(
            "machine",
            if o.ok { "ok" } else { "failed" },
            o.took.as_secs_f64(),
        );
        for name in &ready_names {
            if o.ok {
                self.succeeded((false, name.clone()), &o.tail);
            } else {
                self.failed(
                    (false, name.clone()),
                    ProvisionResult::Failed,
                    &o.reason,
                    &o.tail,
                );
            }
        }
        if o.ok {
            self.apply_machines(&ready_names, snap);
        }
    }

    fn apply_machines(&mut self, names: &[String], snap: &Snapshot) {
        for name in names {
            if let Some(m) = snap.by_name(name) {
                self.state
                    .applied
                    .machines
                    .insert(name.clone(), machine_signature(m));
            }
        }
        if !names.is_empty() {
            self.save();
        }
    }

    /// Removed machines: the removal command if one is configured; nothing
    /// destructive otherwise.
    pub(super) async fn removals(&mut self, work: &Work) {
        for name in &work.removed {
            if !self.cfg.removal_command.is_empty() {
                let vars = Vars {
                    revision: self.revision.clone(),
                    hosts: name.clone(),
                    ..Vars::default()
                };
                let o = run::run(&self.cfg.removal_command, &vars, self.cfg.timeout).await;
                self.metrics.ran(
                    "removal",
                    if o.ok { "ok" } else { "failed" },
                    o.took.as_secs_f64(),
                );
                if !o.ok {
                    self.failed(
                        (false, name.clone()),
                        ProvisionResult::Failed,
                        &o.reason,
                        &o.tail,
                    );
                    continue;
                }
            }
            self.state.applied.machines.remove(name);
            if let Ok(mut s) = self.statuses.lock() {
                s.remove(&(false, name.clone()));
            }
            self.save();
        }
    }

    /// Changed clusters, once every node of theirs is provisioned.
    pub(super) async fn clusters(
        &mut self,
        work: &Work,
        snap: &Snapshot,
        shutdown: &CancellationToken,
    ) {
        let sigs = cluster_signatures(&snap.machines);
        for name in &work.clusters {
            let key = (true, name.clone());
            if !self.due(&key) || shutdown.is_cancelled() {
                continue;
            }
            if let Some(waiting) = self.unprovisioned_node(name, snap) {
                self.set_status(ProvisionStatus {
                    target: name.clone(),
                    cluster: true,
                    applied_revision: self.applied_revision(&key),
                    result: ProvisionResult::Pending as i32,
                    at_unix: now_unix(),
                    reason: format!("waiting for node {waiting}"),
                    ..Default::default()
                });
                continue;
            }
            if !self.cfg.cluster_command.is_empty() {
                let text = match self.cfg.cluster_format {
                    ClusterFormat::K3s => inventory::k3s(snap, name),
                    ClusterFormat::Kubespray => inventory::kubespray(snap, name),
                }
                .unwrap_or_default();
                let vars = Vars {
                    revision: self.revision.clone(),
                    hosts: String::new(),
                    cluster: name.clone(),
                    inventory: self.write_file(&format!("cluster-{name}.yaml"), &text),
                };
                info!(cluster = %name, revision = %vars.revision, "rebuilding cluster");
                let o = run::run(&self.cfg.cluster_command, &vars, self.cfg.timeout).await;
                self.metrics.ran(
                    "cluster",
                    if o.ok { "ok" } else { "failed" },
                    o.took.as_secs_f64(),
                );
                self.metrics.cluster(name, o.ok, now_unix());
                if !o.ok {
                    self.failed(key, ProvisionResult::Failed, &o.reason, &o.tail);
                    continue;
                }
                self.succeeded(key, &o.tail);
            }
            if let Some(sig) = sigs.get(name) {
                self.state
                    .applied
                    .clusters
                    .insert(name.clone(), sig.clone());
                self.save();
            }
        }
        for name in &work.clusters_removed {
            self.state.applied.clusters.remove(name);
            self.save();
        }
    }

    /// A node of the cluster whose own provisioning has not succeeded.
    fn unprovisioned_node(&self, cluster: &str, snap: &Snapshot) -> Option<String> {
        let (cp, w) = snap.cluster(cluster)?;
        cp.into_iter()
            .chain(w)
            .find(|m| self.state.applied.machines.get(&m.name) != Some(&machine_signature(m)))
            .map(|m| m.name.clone())
    }

    /// Writes a file for a command into the state directory; its path.
    fn write_file(&self, name: &str, text: &str) -> String {
        let path = self.cfg.state_dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            warn!(path = %path.display(), error = %e, "cannot write an inventory");
        }
        path.display().to_string()
    }

    pub(super) fn print_dry_run(&self, work: &Work) {
        println!("revision {}:", self.revision);
        if !work.machines.is_empty() {
            let vars = Vars {
                revision: self.revision.clone(),
                hosts: work.machines.join(","),
                inventory: self
                    .cfg
                    .state_dir
                    .join("inventory.yaml")
                    .display()
                    .to_string(),
                ..Vars::default()
            };
            println!(
                "  would check and provision {}: {}",
                vars.hosts,
                shown(&self.cfg.machine_command, &vars)
            );
        }
        for c in &work.clusters {
            let vars = Vars {
                revision: self.revision.clone(),
                cluster: c.clone(),
                inventory: self
                    .cfg
                    .state_dir
                    .join(format!("cluster-{c}.yaml"))
                    .display()
                    .to_string(),
                ..Vars::default()
            };
            println!(
                "  would rebuild cluster {c}: {}",
                shown(&self.cfg.cluster_command, &vars)
            );
        }
        for m in &work.removed {
            match self.cfg.removal_command.is_empty() {
                true => println!("  {m} was removed: nothing to run (no removal_command)"),
                false => println!("  {m} was removed: would run a removal"),
            }
        }
    }
}

fn shown(argv: &[String], vars: &Vars) -> String {
    if argv.is_empty() {
        return "(no command configured)".into();
    }
    argv.iter()
        .map(|a| vars.fill(a))
        .collect::<Vec<_>>()
        .join(" ")
}
