//! The runner's work on one revision: changed machines (readiness, then
//! one run per action), removed machines, changed clusters; and what
//! `--dry-run` prints instead.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use std::collections::BTreeMap;

use super::{
    plan::{cluster_signatures, machine_signature, Work},
    ready,
    runner::{Runner, Why},
    ClusterFormat,
};
use crate::{
    command::{self, Vars},
    db::{policy::Treatment, store::now_unix, Snapshot},
    export::inventory,
    hostkey::HostKey,
    proto::{Machine, ProvisionResult, ProvisionStatus},
};

/// Machines whose SSH and readiness checks run at once (an `ssh` process
/// each): a pass over a lab's machines that do not answer takes about one
/// `ssh_timeout`, not one each.
pub const CHECKS_IN_FLIGHT: usize = 32;

impl Runner {
    /// Changed machines, each as the DB's policy says: nothing for `none`
    /// or no address; its checks alone for `readiness` (every pass, so its
    /// status follows it); SSH and its checks, then one run per action for
    /// the rest. The checks run at once, [`CHECKS_IN_FLIGHT`] at a time.
    pub(super) async fn machines(
        &mut self,
        work: &Work,
        snap: &Snapshot,
        shutdown: &CancellationToken,
    ) {
        let policy = self.policy();
        // Machines still on an old lease are reached where they are.
        let here: Vec<Machine> = snap.machines.iter().map(|m| self.reached_at(m)).collect();
        let snap = &Snapshot::new(snap.revision.clone(), here, snap.mdb_yaml.clone());
        let mut to_check: Vec<(&Machine, Treatment)> = Vec::new();
        for name in &work.machines {
            let Some(m) = snap.by_name(name) else {
                continue;
            };
            if !self.due(&(false, name.clone())) || shutdown.is_cancelled() {
                continue;
            }
            let t = policy.of(m).clone();
            match (&t, m.ips.is_empty()) {
                (_, true) => self.settle(
                    m,
                    &t,
                    ProvisionResult::NoAddress,
                    "it has no address to reach",
                ),
                (Treatment::None, _) => self.settle(
                    m,
                    &t,
                    ProvisionResult::Skipped,
                    "the DB's policy leaves it alone (none)",
                ),
                _ => to_check.push((m, t)),
            }
        }
        // Watched machines already settled are looked at again.
        let watched = snap.machines.iter().filter(|m| {
            *policy.of(m) == Treatment::Readiness
                && !m.ips.is_empty()
                && !work.machines.contains(&m.name)
                && self.due(&(false, m.name.clone()))
        });
        to_check.extend(watched.map(|m| (m, Treatment::Readiness)));
        self.write_known_hosts(&snap.machines);
        let checked = self.check_all(&to_check, shutdown).await;
        let mut by_action: BTreeMap<String, Vec<&Machine>> = BTreeMap::new();
        let mut not_ready = 0;
        for ((m, t), checked) in to_check.iter().zip(checked) {
            if let Some(key) = checked.first_key {
                self.pin_first_key(m, key);
            }
            match (t, checked.ready) {
                (Treatment::Readiness | Treatment::None, Ok(_)) => {
                    self.settle(m, t, ProvisionResult::Ready, "")
                }
                (Treatment::Action(a), Ok(_)) => by_action.entry(a.clone()).or_default().push(m),
                (_, Err(why)) => {
                    not_ready += 1;
                    self.metrics.ran("machine", "not_ready", 0.0);
                    let result = match &why {
                        ready::NotReady::HostKeyChanged(_) => ProvisionResult::HostKeyChanged,
                        ready::NotReady::Check(_) => ProvisionResult::NotReady,
                    };
                    let why = Why {
                        reason: why.reason(),
                        treatment: t.word(),
                        ..Why::default()
                    };
                    self.failed((false, m.name.clone()), result, why);
                }
            }
        }
        self.write_known_hosts(&snap.machines);
        self.metrics.not_ready(not_ready);
        for (action, ms) in by_action {
            self.run_action(&action, &ms, snap).await;
        }
    }

    /// SSH and readiness checks of many machines at once, in their order;
    /// a machine's first login gives the key to pin.
    async fn check_all(
        &self,
        machines: &[(&Machine, Treatment)],
        shutdown: &CancellationToken,
    ) -> Vec<ready::Checked> {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CHECKS_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let policy = self.policy();
        for (i, (m, t)) in machines.iter().enumerate() {
            let (mut m, t, slots) = ((*m).clone(), t.clone(), slots.clone());
            // Its use's `wake` in mdb.yaml counts as its own.
            m.wake = policy.wakes(&m);
            let (login, checks) = (self.cfg.ssh.clone(), self.readiness.checks.clone());
            let reach = ready::Reach {
                trusted: self.pins.trusted(&m),
                away: self.elsewhere.contains_key(&m.name),
            };
            let waker = self.waker.clone();
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let first = ready::check(&m, &t, &login, &checks, &reach).await;
                let checked =
                    super::waking::wake_if_asleep(&m, &reach, &login, &waker, first).await;
                (i, checked)
            });
        }
        let mut out: Vec<ready::Checked> = machines
            .iter()
            .map(|_| ready::Checked {
                ready: Err(ready::NotReady::Check("shutting down".into())),
                first_key: None,
            })
            .collect();
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    Some(Ok((i, r))) => out[i] = r,
                    Some(Err(e)) => tracing::warn!(error = %e, "a readiness check ended abnormally"),
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
        out
    }

    /// One run of an action for the ready machines it is for (`--limit`
    /// all of them).
    async fn run_action(&mut self, action: &str, ms: &[&Machine], snap: &Snapshot) {
        let names: Vec<String> = ms.iter().map(|m| m.name.clone()).collect();
        let Some(argv) = self.cfg.actions.get(action).cloned() else {
            let reason = format!("the DB's policy asks for the action {action:?}, which the runner's [provision.actions] does not name");
            self.fail_all(names, action, &reason);
            return;
        };
        let connect = |m: &Machine| self.connection_vars(m);
        let text = match inventory::static_yaml_with(snap, &connect) {
            Ok(t) => t,
            Err(e) => {
                self.fail_all(names, action, &e.to_string());
                return;
            }
        };
        let vars = Vars {
            revision: self.revision.clone(),
            hosts: names.join(","),
            cluster: String::new(),
            inventory: self.write_file("inventory.yaml", &text),
        };
        info!(action, hosts = %vars.hosts, revision = %vars.revision, "provisioning machines");
        let o = self.command(&argv, &vars).await;
        let result = if o.ok { "ok" } else { "failed" };
        self.metrics.ran("machine", result, o.took.as_secs_f64());
        for m in ms {
            let why = Why {
                reason: &o.reason,
                tail: &o.tail,
                treatment: action,
            };
            if o.ok {
                let note = self.where_reached(&m.name);
                self.settle(
                    m,
                    &Treatment::Action(action.to_string()),
                    ProvisionResult::Ok,
                    &note,
                );
                self.set_tail(&m.name, &o.tail);
            } else {
                self.failed((false, m.name.clone()), ProvisionResult::Failed, why);
            }
        }
    }

    /// Every machine of an action that cannot run failed, for `reason`.
    fn fail_all(&mut self, names: Vec<String>, action: &str, reason: &str) {
        for name in names {
            let why = Why {
                reason,
                treatment: action,
                ..Why::default()
            };
            self.failed((false, name), ProvisionResult::Failed, why);
        }
    }

    /// Runs one command of the runner, its process group in the ledger of
    /// the state directory while it runs.
    async fn command(&self, argv: &[String], vars: &Vars) -> command::Outcome {
        let ledger = self.cfg.state_dir.join(command::LEDGER);
        let mut set = vec![("ANSIBLE_HOST_KEY_CHECKING".to_string(), "True".to_string())];
        if let Some(key) = &self.cfg.ssh.key {
            set.push(("ANSIBLE_PRIVATE_KEY_FILE".into(), key.display().to_string()));
        }
        let env = command::Environment {
            inherit: self.cfg.env.clone(),
            set,
        };
        command::run_in(argv, vars, self.cfg.timeout, Some(&ledger), &env).await
    }

    /// What Ansible is told of how to reach `m` (see `pins::ansible_vars`).
    fn connection_vars(&self, m: &Machine) -> serde_json::Map<String, serde_json::Value> {
        let login = &self.cfg.ssh;
        super::pins::ansible_vars(
            &m.name,
            &login.known_hosts,
            login.key.as_deref(),
            &self.cfg.state_dir,
        )
    }

    /// The known-hosts file every `ssh` of the runner and Ansible reads.
    fn write_known_hosts(&self, machines: &[Machine]) {
        let path = &self.cfg.ssh.known_hosts;
        if let Err(e) = super::pins::write_atomic(path, &self.pins.known_hosts(machines)) {
            warn!(path = %path.display(), error = %e, "cannot write the known hosts");
        }
    }

    /// Pins the key of a machine's first successful login.
    fn pin_first_key(&mut self, m: &Machine, key: HostKey) {
        let fingerprint = key.fingerprint();
        match self.pins.pin(&m.name, key) {
            Ok(()) => {
                info!(machine = %m.name, key = %fingerprint, "host key pinned on its first successful login")
            }
            Err(e) => {
                warn!(machine = %m.name, error = %e, "cannot save a pinned host key; the next login pins it again")
            }
        }
    }

    /// `m` as the runner reaches it: at the address the sweeps see it at
    /// when that is not its own (its first address replaced).
    fn reached_at(&self, m: &Machine) -> Machine {
        let mut at = m.clone();
        if let (Some(away), Some(first)) = (self.elsewhere.get(&m.name), at.ips.first_mut()) {
            first.clone_from(&away.seen);
        }
        at
    }

    /// Where a machine was reached, when not at its own address: what its
    /// status says until its DHCP lease renews.
    fn where_reached(&self, name: &str) -> String {
        self.elsewhere.get(name).map_or(String::new(), |a| {
            format!(
                "provisioned at its current lease {}; reserved {} takes effect at renewal",
                a.seen, a.own
            )
        })
    }

    /// A machine done at this revision: applied, so it is no work until it
    /// changes, with its status.
    fn settle(&mut self, m: &Machine, t: &Treatment, result: ProvisionResult, reason: &str) {
        let why = Why {
            reason,
            treatment: t.word(),
            ..Why::default()
        };
        self.settled((false, m.name.clone()), result, why);
        // What was applied is the machine as the database has it, wherever
        // it was reached.
        let mut own = m.clone();
        if let (Some(away), Some(first)) = (self.elsewhere.get(&m.name), own.ips.first_mut()) {
            first.clone_from(&away.own);
        }
        let sig = machine_signature(&own);
        if self.state.applied.machines.get(&m.name) != Some(&sig) {
            self.state.applied.machines.insert(m.name.clone(), sig);
            self.save();
        }
    }

    fn set_tail(&self, name: &str, tail: &str) {
        if let Ok(mut s) = self.statuses.lock() {
            if let Some(st) = s.get_mut(&(false, name.to_string())) {
                st.output_tail = tail.to_string();
            }
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
                    inventory: self.removed_inventory(name),
                    ..Vars::default()
                };
                let argv = self.cfg.removal_command.clone();
                let o = self.command(&argv, &vars).await;
                self.metrics.ran(
                    "removal",
                    if o.ok { "ok" } else { "failed" },
                    o.took.as_secs_f64(),
                );
                if !o.ok {
                    let why = Why {
                        reason: &o.reason,
                        tail: &o.tail,
                        ..Why::default()
                    };
                    self.failed((false, name.clone()), ProvisionResult::Failed, why);
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

    /// An inventory of a removed machine's last entry, with its pinned
    /// connection settings, for its removal command; empty when the runner
    /// never saw it (it was removed while the runner was away).
    fn removed_inventory(&self, name: &str) -> String {
        let Some(m) = self.last_seen.get(name) else {
            return String::new();
        };
        let snap = Snapshot::new(self.revision.clone(), vec![m.clone()], Default::default());
        let connect = |m: &Machine| self.connection_vars(m);
        match inventory::static_yaml_with(&snap, &connect) {
            Ok(text) => self.write_file(&format!("removed-{name}.yaml"), &text),
            Err(_) => String::new(),
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
                let here: Vec<Machine> = snap.machines.iter().map(|m| self.reached_at(m)).collect();
                let here = Snapshot::new(snap.revision.clone(), here, snap.mdb_yaml.clone());
                let connect = |m: &Machine| self.connection_vars(m);
                let text = match self.cfg.cluster_format {
                    ClusterFormat::K3s => inventory::k3s_with(&here, name, &connect),
                    ClusterFormat::Kubespray => inventory::kubespray_with(&here, name, &connect),
                };
                let text = match text {
                    Ok(t) => t.unwrap_or_default(),
                    Err(e) => {
                        let reason = e.to_string();
                        let why = Why {
                            reason: &reason,
                            ..Why::default()
                        };
                        self.failed(key, ProvisionResult::Failed, why);
                        continue;
                    }
                };
                let vars = Vars {
                    revision: self.revision.clone(),
                    hosts: String::new(),
                    cluster: name.clone(),
                    inventory: self.write_file(&format!("cluster-{name}.yaml"), &text),
                };
                info!(cluster = %name, revision = %vars.revision, "rebuilding cluster");
                let argv = self.cfg.cluster_command.clone();
                let o = self.command(&argv, &vars).await;
                self.metrics.ran(
                    "cluster",
                    if o.ok { "ok" } else { "failed" },
                    o.took.as_secs_f64(),
                );
                self.metrics.cluster(name, o.ok, now_unix());
                let why = Why {
                    reason: &o.reason,
                    tail: &o.tail,
                    ..Why::default()
                };
                if !o.ok {
                    self.failed(key, ProvisionResult::Failed, why);
                    continue;
                }
                self.settled(key, ProvisionResult::Ok, Why { reason: "", ..why });
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

    /// What a pass would do, by machine as the DB's policy says.
    pub(super) fn print_dry_run(&self, work: &Work, machines: &[Machine]) {
        println!("revision {}:", self.revision);
        let policy = self.policy();
        let mut by_action: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for m in machines.iter().filter(|m| work.machines.contains(&m.name)) {
            let t = policy.of(m);
            match (t, m.ips.is_empty()) {
                (_, true) => println!("  {}: no address, nothing to do", m.name),
                (Treatment::None, _) => println!("  {}: left alone (policy: none)", m.name),
                (Treatment::Readiness, _) => {
                    println!("  {}: readiness checks only, never SSH'd", m.name)
                }
                (Treatment::Action(a), _) => by_action.entry(a).or_default().push(&m.name),
            }
        }
        for (action, names) in by_action {
            let vars = Vars {
                revision: self.revision.clone(),
                hosts: names.join(","),
                inventory: self
                    .cfg
                    .state_dir
                    .join("inventory.yaml")
                    .display()
                    .to_string(),
                ..Vars::default()
            };
            let argv = self.cfg.actions.get(action).map_or(&[][..], Vec::as_slice);
            println!(
                "  would check and provision {} (action {action}): {}",
                vars.hosts,
                shown(argv, &vars)
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
