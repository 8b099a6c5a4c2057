//! The runner: it follows the database (`watcher`: Watch, reconnecting with
//! backoff, every revision validated); after a quiet `debounce` the work
//! since the last finished run is done, target by target, and the state
//! file is saved after each.
//! Failed targets are tried again with backoff, never skipped. Statuses are
//! served over gRPC (`mdb.v1.Provisioning`) and counted in metrics.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    metrics::ProvisionMetrics,
    plan::plan,
    state::{State, StateFile},
    status::{ok_status, Refusal, Statuses},
    Config,
};
use crate::db::policy::{Policy, Treatment};

/// Why a target is as it is: the reason in one line, the end of the
/// output, and what the DB's policy says for it.
#[derive(Clone, Copy, Default)]
pub struct Why<'a> {
    pub reason: &'a str,
    pub tail: &'a str,
    pub treatment: &'a str,
}
use crate::{
    db::{store::now_unix, Snapshot},
    proto::{GetReadinessResponse, Machine, ProvisionResult, ProvisionStatus},
};

pub struct Runner {
    pub(super) cfg: Config,
    pub(super) file: StateFile,
    pub(super) state: State,
    pub(super) revision: String,
    /// Machines the sweeps see at another address than their own (still on
    /// an old DHCP lease), by name: where they are reached meanwhile.
    pub(super) elsewhere: std::collections::BTreeMap<String, Away>,
    /// The readiness checks and policy of `mdb.yaml`, as the server sent them.
    pub(super) readiness: GetReadinessResponse,
    pub(super) statuses: Statuses,
    pub(super) metrics: ProvisionMetrics,
    /// Failing targets: failures in a row, and when to try again.
    pub(super) backoff: HashMap<(bool, String), (u32, Instant)>,
    pub(super) reporter: Option<super::report::Reporter>,
    /// Targets whose failure was announced, for their recovery.
    pub(super) failing: std::collections::HashSet<(bool, String)>,
    /// Why the revision received is refused (it does not validate); empty
    /// while the runner acts on it. Shared with the gRPC service.
    pub(super) refused: Refusal,
    /// The host keys each machine may offer (the DB's, or pinned on first use).
    pub(super) pins: super::pins::Pins,
    /// The machines of the last revision acted on, by name: a removed one's
    /// last entry is what its removal command is given.
    pub(super) last_seen: BTreeMap<String, Machine>,
    /// Wakes of `wake: true` machines: the hourly bound, the server to ask.
    pub(super) waker: super::waking::Waker,
    /// Where a failure and a recovery are told.
    announcer: crate::notify::Announcer,
}

impl Runner {
    pub fn new(cfg: Config, metrics: ProvisionMetrics) -> Result<Runner, super::state::Error> {
        // A runner killed mid-run (kill -9, a crash) may have left its
        // command's group running: it ends before anything is redone.
        if let Some(pgid) =
            crate::command::reap_leftover(&cfg.state_dir.join(crate::command::LEDGER))
        {
            warn!(
                group = pgid,
                "ended the command group a killed runner left running"
            );
        }
        if !cfg.dry_run {
            if let Err(e) = super::pins::write_ssh_wrapper(&cfg.state_dir, &cfg.ssh.known_hosts) {
                warn!(error = %e, "cannot write the ssh wrapper Ansible runs; its runs will fail");
            }
        }
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
            file,
            state,
            revision: String::new(),
            elsewhere: Default::default(),
            readiness: GetReadinessResponse::default(),
            statuses,
            metrics,
            backoff: HashMap::new(),
            reporter: None,
            failing: Default::default(),
            refused: Refusal::default(),
            pins: super::pins::Pins::load(&cfg.state_dir),
            last_seen: BTreeMap::new(),
            waker: super::waking::Waker::new(cfg.server.clone()),
            announcer: Default::default(),
            cfg,
        })
    }

    /// Tells failures and recoveries through `announcer`.
    pub fn announce_to(&mut self, announcer: crate::notify::Announcer) {
        self.announcer = announcer;
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
        for s in &statuses {
            self.announce(s);
        }
        if let Some(r) = self.reporter.as_mut() {
            if let Err(e) = r.report(&statuses).await {
                warn!(error = %e, "cannot report provisioning problems to GitHub");
            }
        }
    }

    /// Announces a target that starts failing (once per episode: the key
    /// is the revision it last succeeded at) and one that recovers.
    fn announce(&mut self, s: &ProvisionStatus) {
        use crate::notify::{Event, EventKind};
        let key = (s.cluster, s.target.clone());
        let what = if s.cluster {
            format!("cluster {}", s.target)
        } else {
            s.target.clone()
        };
        let result = ProvisionResult::try_from(s.result);
        let failing = matches!(
            result,
            Ok(ProvisionResult::Failed
                | ProvisionResult::NotReady
                | ProvisionResult::HostKeyChanged)
        ) && s.treatment != crate::db::policy::Treatment::Readiness.word();
        let episode = format!("{what}:{}", s.applied_revision);
        if failing && self.failing.insert(key.clone()) {
            let reason = crate::escape::clean(&s.reason, 300);
            let title = format!("Provisioning {what} failed: {reason}");
            self.announcer.announce(Event::about(
                EventKind::ProvisionFailed,
                episode,
                title,
                &s.target,
            ));
        } else if !failing && self.failing.remove(&key) && result == Ok(ProvisionResult::Ok) {
            let title = format!(
                "{what} is provisioned again (revision {})",
                s.applied_revision
            );
            self.announcer.announce(Event::about(
                EventKind::ProvisionRecovered,
                episode,
                title,
                &s.target,
            ));
        }
    }

    pub fn statuses(&self) -> Statuses {
        self.statuses.clone()
    }

    pub fn refusal(&self) -> Refusal {
        self.refused.clone()
    }

    /// Follows the server until `shutdown`: acts on every revision that
    /// validates, once its changes have been quiet for `debounce`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (server, debounce) = (self.cfg.server.clone(), self.cfg.debounce);
        crate::watcher::watch(
            &server,
            "the provisioning runner",
            debounce,
            &mut self,
            shutdown,
        )
        .await;
    }

    /// Does the work due now. Returns when to look again, if some work is
    /// still failing or waiting.
    pub async fn pass(
        &mut self,
        machines: Vec<Machine>,
        shutdown: &CancellationToken,
    ) -> Option<Duration> {
        let work = plan(&self.state.applied, &machines);
        self.metrics.passed(now_unix());
        if self.cfg.dry_run {
            self.print_dry_run(&work, &machines);
            return None;
        }
        let snap = Snapshot::new(self.revision.clone(), machines, Default::default());
        let started = Instant::now();
        self.machines(&work, &snap, shutdown).await;
        self.removals(&work).await;
        self.clusters(&work, &snap, shutdown).await;
        self.last_seen = snap
            .machines
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect();
        self.metrics.pass_took(started.elapsed().as_secs_f64());
        let done = plan(&self.state.applied, &snap.machines).is_empty();
        if done {
            self.finish_revision();
        }
        self.next_look(done, &snap)
    }

    /// When to look again: when the next failing target is due, and every
    /// `recheck` while a machine is judged by its readiness checks alone
    /// (its status follows it).
    fn next_look(&self, done: bool, snap: &Snapshot) -> Option<Duration> {
        let now = Instant::now();
        let retry = (!done).then(|| {
            self.backoff
                .values()
                .map(|(_, at)| at.saturating_duration_since(now))
                .min()
                .unwrap_or(self.cfg.retry_base)
        });
        let policy = self.policy();
        let watched = snap
            .machines
            .iter()
            .any(|m| *policy.of(m) == Treatment::Readiness && !m.ips.is_empty());
        let recheck = watched.then_some(self.cfg.recheck);
        let next = match (retry, recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|d| d.max(Duration::from_millis(100)))
    }

    fn finish_revision(&mut self) {
        if self.state.revision != self.revision && !self.revision.is_empty() {
            self.state.revision = self.revision.clone();
            self.save();
        }
    }

    pub(super) fn save(&self) {
        if let Err(e) = self.file.save(&self.state) {
            warn!(error = %e, "cannot save the provisioning state");
        }
    }

    pub(super) fn due(&self, key: &(bool, String)) -> bool {
        self.backoff
            .get(key)
            .is_none_or(|(_, at)| Instant::now() >= *at)
    }

    /// The DB's provisioning policy, as the server sent it.
    pub(super) fn policy(&self) -> Policy {
        crate::db::policy::from_words(
            &self.readiness.policy_by_use,
            &self.readiness.policy_by_machine,
            &self.readiness.wake_uses,
        )
    }

    pub(super) fn failed(&mut self, key: (bool, String), result: ProvisionResult, why: Why) {
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
            reason: why.reason.to_string(),
            output_tail: why.tail.to_string(),
            attempts,
            treatment: why.treatment.to_string(),
        });
        let reason = why.reason;
        warn!(target = %key.1, cluster = key.0, attempts, retry_in = ?wait, reason, "provisioning not done");
    }

    /// A target done at this revision with `result` (ok, ready, skipped, no
    /// address): no retries.
    pub(super) fn settled(&mut self, key: (bool, String), result: ProvisionResult, why: Why) {
        self.backoff.remove(&key);
        let mut s = ok_status(&key.1, key.0, &self.revision);
        s.result = result as i32;
        s.reason = why.reason.to_string();
        s.output_tail = why.tail.to_string();
        s.treatment = why.treatment.to_string();
        self.set_status(s);
    }

    pub(super) fn applied_revision(&self, key: &(bool, String)) -> String {
        self.statuses
            .lock()
            .ok()
            .and_then(|s| s.get(key).map(|st| st.applied_revision.clone()))
            .unwrap_or_default()
    }

    pub(super) fn set_status(&self, status: ProvisionStatus) {
        if let Ok(mut s) = self.statuses.lock() {
            s.insert((status.cluster, status.target.clone()), status);
        }
    }
}

/// A machine seen away from its own address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Away {
    /// Where the sweeps see it now.
    pub seen: String,
    /// Its own address in the database (its reservation).
    pub own: String,
}

/// Database machines the server's sweeps see, up, at an address the
/// database does not give them (moved: a DHCP device on its old lease until
/// it renews). None when the server does not sweep or does not answer.
async fn elsewhere(
    server: &mut crate::proto::machine_db_client::MachineDbClient<crate::dial::Conn>,
    db: &crate::watcher::Database,
) -> std::collections::BTreeMap<String, Away> {
    let ask = crate::proto::ListDiscoveredRequest {
        state: crate::proto::HostState::Moved as i32,
    };
    let Ok(Ok(answer)) =
        tokio::time::timeout(Duration::from_secs(5), server.list_discovered(ask)).await
    else {
        return Default::default();
    };
    answer
        .into_inner()
        .hosts
        .into_iter()
        .filter(|h| h.presence == crate::proto::Presence::Up as i32)
        .filter_map(|h| {
            let own = db.machines.get(&h.machine)?.ips.first()?.clone();
            // The server's word for where it is: an address, or nothing.
            let seen: std::net::IpAddr = h.ip.parse().ok()?;
            (own != h.ip).then_some((
                h.machine,
                Away {
                    seen: seen.to_string(),
                    own,
                },
            ))
        })
        .collect()
}

impl crate::watcher::Acts for Runner {
    async fn act(
        &mut self,
        db: &crate::watcher::Database,
        server: &mut crate::proto::machine_db_client::MachineDbClient<crate::dial::Conn>,
        shutdown: &CancellationToken,
    ) -> Option<Duration> {
        self.revision = db.revision.clone();
        self.readiness = db.readiness.clone();
        self.elsewhere = elsewhere(server, db).await;
        let next = self
            .pass(db.machines.values().cloned().collect(), shutdown)
            .await;
        self.report().await;
        next
    }

    fn refuse(&mut self, why: Option<&str>) {
        let why = why.unwrap_or_default();
        if self.cfg.dry_run && !why.is_empty() {
            println!("{why}");
        }
        self.metrics.refused(!why.is_empty());
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
    }

    fn once(&self) -> bool {
        self.cfg.dry_run
    }
}
