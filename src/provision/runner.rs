//! The runner's loop: Watch (reconnecting with backoff) keeps a mirror of
//! the database; after a quiet `debounce` the work since the last finished
//! run is done, target by target, and the state file is saved after each.
//! Failed targets are tried again with backoff, never skipped. Statuses are
//! served over gRPC (`mdb.v1.Provisioning`) and counted in metrics.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    metrics::ProvisionMetrics,
    plan::{cluster_signatures, machine_signature, plan, Work},
    ready,
    run::{self, Vars},
    state::{State, StateFile},
    ClusterFormat, Config,
};
use crate::{
    db::{store::now_unix, Snapshot},
    export::inventory,
    proto::{
        machine_db_client::MachineDbClient, provisioning_server::Provisioning, GetReadinessRequest,
        GetReadinessResponse, ListProvisionStatusRequest, ListProvisionStatusResponse, Machine,
        ProvisionResult, ProvisionStatus, WatchRequest,
    },
};

/// Statuses by (is a cluster, name), shared with the gRPC service.
pub type Statuses = Arc<Mutex<BTreeMap<(bool, String), ProvisionStatus>>>;

/// Waits between reconnects to the server: from this, doubling...
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// ...up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

pub struct Runner {
    cfg: Config,
    file: StateFile,
    state: State,
    mirror: BTreeMap<String, Machine>,
    revision: String,
    /// The readiness checks and policy of `mdb.yaml`, as the server sent them.
    readiness: GetReadinessResponse,
    statuses: Statuses,
    metrics: ProvisionMetrics,
    /// Failing targets: failures in a row, and when to try again.
    backoff: HashMap<(bool, String), (u32, Instant)>,
    reporter: Option<super::report::Reporter>,
    /// Why the revision received is refused (it does not validate); empty
    /// while the runner acts on it. Shared with the gRPC service.
    refused: Refusal,
}

/// Why the runner refuses the revision it was sent, if it does.
pub type Refusal = Arc<Mutex<String>>;

impl Runner {
    pub fn new(cfg: Config, metrics: ProvisionMetrics) -> Result<Runner, super::state::Error> {
        let file = StateFile::new(cfg.state_dir.join("state.json"));
        let state = file.load()?;
        let statuses: Statuses = Arc::default();
        {
            let mut s = statuses.lock().unwrap_or_else(|p| p.into_inner());
            for name in state.applied.machines.keys() {
                s.insert(
                    (false, name.clone()),
                    ok_status(name, false, &state.revision),
                );
            }
            for name in state.applied.clusters.keys() {
                s.insert((true, name.clone()), ok_status(name, true, &state.revision));
            }
        }
        Ok(Runner {
            cfg,
            file,
            state,
            mirror: BTreeMap::new(),
            revision: String::new(),
            readiness: GetReadinessResponse::default(),
            statuses,
            metrics,
            backoff: HashMap::new(),
            reporter: None,
            refused: Refusal::default(),
        })
    }

    /// Files failures as GitHub issues, closed when a run succeeds.
    pub fn report_to(&mut self, r: super::report::Reporter) {
        self.reporter = Some(r);
    }

    /// Tells GitHub what the last pass found; a failure here is logged and
    /// tried again after the next pass.
    async fn report(&mut self) {
        let statuses: Vec<ProvisionStatus> = self
            .statuses
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        if let Some(r) = self.reporter.as_mut() {
            if let Err(e) = r.report(&statuses).await {
                warn!(error = %e, "cannot report provisioning problems to GitHub");
            }
        }
    }

    pub fn statuses(&self) -> Statuses {
        self.statuses.clone()
    }

    pub fn refusal(&self) -> Refusal {
        self.refused.clone()
    }

    /// Checks the revision as received with the code of `mdb validate`: a
    /// server (or whoever answers in its place) cannot make the runner act
    /// on what a DB writer could never merge. Says why once per revision.
    fn accept(&mut self, machines: &[Machine]) -> bool {
        let files = crate::db::emit::received(&crate::db::emit::Received {
            machines,
            readiness: &self.readiness,
        });
        let why = match crate::db::validate(&files, &self.revision) {
            Ok(_) => String::new(),
            Err(report) => format!(
                "revision {} from {} does not validate, so nothing is run: {report}",
                self.revision, self.cfg.server
            ),
        };
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if !why.is_empty() && *refused != why {
            tracing::error!(revision = %self.revision, server = %self.cfg.server, "{why}");
        }
        self.metrics.refused(!why.is_empty());
        let ok = why.is_empty();
        *refused = why;
        ok
    }

    /// Follows the server until `shutdown`, reconnecting as needed.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut wait = RECONNECT_FIRST;
        loop {
            match self.follow(&shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(server = %self.cfg.server, error = %e, "lost the server; reconnecting in {wait:?}")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RECONNECT_MAX);
        }
    }

    /// One connection: the full database first, then every change; work
    /// starts once changes have been quiet for `debounce`.
    async fn follow(&mut self, shutdown: &CancellationToken) -> Result<(), String> {
        crate::dial::warn_if_plaintext(&self.cfg.server, "the provisioning runner");
        let channel = crate::dial::channel(&self.cfg.server, None)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut c = MachineDbClient::new(channel);
        let mut stream = c
            .watch(WatchRequest {
                initial_snapshot: true,
                discovery: false,
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        info!(server = %self.cfg.server, "following the database");
        self.mirror.clear();
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                msg = stream.message() => match msg {
                    Ok(Some(ev)) => {
                        self.apply(ev);
                        due = Some(tokio::time::Instant::now() + self.cfg.debounce);
                    }
                    Ok(None) => return Err("the server ended the stream".into()),
                    Err(s) => return Err(s.message().to_string()),
                },
                _ = sleep => {
                    self.readiness = c
                        .get_readiness(GetReadinessRequest {})
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| s.message().to_string())?;
                    due = self.pass(shutdown).await.map(|d| tokio::time::Instant::now() + d);
                    self.report().await;
                    if self.cfg.dry_run {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn apply(&mut self, ev: crate::proto::WatchEvent) {
        if ev.revision != self.revision {
            self.revision = ev.revision;
        }
        for m in ev.changed {
            self.mirror.insert(m.name.clone(), m);
        }
        for name in ev.removed {
            self.mirror.remove(&name);
        }
    }

    /// Does the work due now. Returns when to look again, if some work is
    /// still failing or waiting.
    pub async fn pass(&mut self, shutdown: &CancellationToken) -> Option<Duration> {
        let machines: Vec<Machine> = self.mirror.values().cloned().collect();
        if !self.accept(&machines) {
            if self.cfg.dry_run {
                println!(
                    "{}",
                    self.refused.lock().map(|r| r.clone()).unwrap_or_default()
                );
            }
            return None;
        }
        let work = plan(&self.state.applied, &machines);
        self.metrics.passed(now_unix());
        if work.is_empty() {
            self.finish_revision();
            return None;
        }
        if self.cfg.dry_run {
            self.print_dry_run(&work);
            return None;
        }
        let snap = Snapshot::new(self.revision.clone(), machines, Default::default());
        self.machines(&work, &snap, shutdown).await;
        self.removals(&work).await;
        self.clusters(&work, &snap, shutdown).await;
        if plan(&self.state.applied, &snap.machines).is_empty() {
            self.finish_revision();
            return None;
        }
        let now = Instant::now();
        let next = self
            .backoff
            .values()
            .map(|(_, at)| at.saturating_duration_since(now))
            .min()
            .unwrap_or(self.cfg.retry_base);
        Some(next.max(Duration::from_millis(100)))
    }

    fn finish_revision(&mut self) {
        if self.state.revision != self.revision && !self.revision.is_empty() {
            self.state.revision = self.revision.clone();
            self.save();
        }
    }

    fn save(&self) {
        if let Err(e) = self.file.save(&self.state) {
            warn!(error = %e, "cannot save the provisioning state");
        }
    }

    fn due(&self, key: &(bool, String)) -> bool {
        self.backoff
            .get(key)
            .is_none_or(|(_, at)| Instant::now() >= *at)
    }

    fn failed(&mut self, key: (bool, String), result: ProvisionResult, reason: &str, tail: &str) {
        let entry = self
            .backoff
            .entry(key.clone())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        let wait = (self.cfg.retry_base * 2u32.saturating_pow(entry.0 - 1)).min(self.cfg.retry_max);
        entry.1 = Instant::now() + wait;
        let attempts = entry.0;
        let applied = self.applied_revision(&key);
        self.set_status(ProvisionStatus {
            target: key.1.clone(),
            cluster: key.0,
            applied_revision: applied,
            result: result as i32,
            at_unix: now_unix(),
            reason: reason.to_string(),
            output_tail: tail.to_string(),
            attempts,
        });
        warn!(target = %key.1, cluster = key.0, attempts, retry_in = ?wait, reason, "provisioning not done");
    }

    fn succeeded(&mut self, key: (bool, String), tail: &str) {
        self.backoff.remove(&key);
        let mut s = ok_status(&key.1, key.0, &self.revision);
        s.output_tail = tail.to_string();
        self.set_status(s);
    }

    fn applied_revision(&self, key: &(bool, String)) -> String {
        self.statuses
            .lock()
            .ok()
            .and_then(|s| s.get(key).map(|st| st.applied_revision.clone()))
            .unwrap_or_default()
    }

    fn set_status(&self, status: ProvisionStatus) {
        if let Ok(mut s) = self.statuses.lock() {
            s.insert((status.cluster, status.target.clone()), status);
        }
    }

    /// Changed machines: those that pass their readiness checks get one
    /// run together (`--limit` all of them).
    async fn machines(&mut self, work: &Work, snap: &Snapshot, shutdown: &CancellationToken) {
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
    async fn removals(&mut self, work: &Work) {
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
    async fn clusters(&mut self, work: &Work, snap: &Snapshot, shutdown: &CancellationToken) {
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

    fn print_dry_run(&self, work: &Work) {
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

fn ok_status(name: &str, cluster: bool, revision: &str) -> ProvisionStatus {
    ProvisionStatus {
        target: name.to_string(),
        cluster,
        applied_revision: revision.to_string(),
        result: ProvisionResult::Ok as i32,
        at_unix: now_unix(),
        ..Default::default()
    }
}

/// The runner's read-only gRPC service.
pub struct StatusService {
    pub statuses: Statuses,
    pub refused: Refusal,
}

#[tonic::async_trait]
impl Provisioning for StatusService {
    async fn list_status(
        &self,
        _req: tonic::Request<ListProvisionStatusRequest>,
    ) -> Result<tonic::Response<ListProvisionStatusResponse>, tonic::Status> {
        let statuses = self
            .statuses
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        Ok(tonic::Response::new(ListProvisionStatusResponse {
            revision: String::new(),
            statuses,
            refused,
        }))
    }
}
