//! `mdb dhcp --follow`: reservations that take effect. Runs where the DHCP
//! server runs, follows a server's database (`watcher`: every revision
//! validated first) and keeps the DHCP server's reservations equal to the
//! database's machines with a MAC and a fixed IPv4 address: a dnsmasq or
//! Pi-hole hosts directory, Kea through its control socket, or a command.
//! A reservation whose address a live lease gives another MAC is refused
//! and reported, and a failing target keeps its last good reservations.
//!
//! `reservations` decides (pure), `crate::leases` reads live leases, `targets`
//! writes.

pub mod reservations;
pub mod settings;
pub mod targets;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use reservations::{Refused, Reservation};

/// Settings of `mdb dhcp --follow` (`[dhcp]` in the TOML file).
#[derive(Clone, Debug)]
pub struct Config {
    /// The mdb server whose database is followed, and what the follower
    /// shows it of who it is.
    pub server: crate::dial::Remote,
    /// The metrics tokens of its HTTP port.
    pub tokens: std::sync::Arc<crate::auth::Tokens>,
    /// A dnsmasq or Pi-hole `--dhcp-hostsdir`.
    pub hostsdir: Option<PathBuf>,
    pub kea: Option<Kea>,
    /// A command run after each change; `{file}` is a file of every
    /// reservation in dnsmasq's `MAC,IP,NAME` lines.
    pub hook: Vec<String>,
    /// What the hook inherits beyond [`crate::command::env::ALWAYS`] (`[dhcp] env`).
    pub env: Vec<String>,
    /// Lease files of the DHCP server: a reservation another MAC's live
    /// lease holds is refused.
    pub leases: Vec<PathBuf>,
    /// Where the hook's file lives.
    pub state_dir: PathBuf,
    pub debounce: Duration,
    /// How often leases are looked at again, with no change in the database.
    pub recheck: Duration,
    pub metrics_listen: std::net::SocketAddr,
    pub shutdown_grace: Duration,
}

/// Kea: the file its configuration includes as `reservations`, and its
/// control socket.
#[derive(Clone, Debug)]
pub struct Kea {
    pub reservations: PathBuf,
    pub socket: PathBuf,
}

/// What one target did last.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TargetStatus {
    pub ok: bool,
    pub at_unix: i64,
    /// Reservations it holds now (the last that applied).
    pub reservations: usize,
    /// Why the last apply failed; empty when it did not.
    pub error: String,
}

/// What the follower serves on `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub revision: String,
    pub targets: BTreeMap<&'static str, TargetStatus>,
    pub refused: Vec<RefusedView>,
    /// Why the revision received is refused (it does not validate).
    pub revision_refused: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RefusedView {
    pub name: String,
    pub mac: String,
    pub ip: String,
    pub why: String,
}

impl From<&Refused> for RefusedView {
    fn from(r: &Refused) -> Self {
        RefusedView {
            name: r.reservation.name.clone(),
            mac: r.reservation.mac.to_string(),
            ip: r.reservation.ip.to_string(),
            why: r.why.clone(),
        }
    }
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// The reserver: applies each revision's reservations to every target.
pub struct Reserver {
    cfg: Config,
    status: SharedStatus,
    metrics: metrics::DhcpMetrics,
    /// What each target holds, as last applied successfully.
    applied: BTreeMap<&'static str, Vec<Reservation>>,
}

pub mod metrics;

impl Reserver {
    pub fn new(cfg: Config, metrics: metrics::DhcpMetrics) -> Reserver {
        Reserver {
            cfg,
            status: SharedStatus::default(),
            metrics,
            applied: BTreeMap::new(),
        }
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// The reservations the database asks for, without those a live lease
    /// of another MAC or a twin forbids.
    fn decide(&self, machines: &[crate::proto::Machine]) -> (Vec<Reservation>, Vec<Refused>) {
        let (wanted, mut refused) = reservations::wanted(machines);
        let mut live = Vec::new();
        for path in &self.cfg.leases {
            match crate::leases::read(path, crate::db::store::now_unix()) {
                Ok(r) => {
                    if r.truncated || r.skipped > 0 {
                        warn!(path = %path.display(), skipped = r.skipped, truncated = r.truncated, "a lease file was only partly read");
                    }
                    live.extend(r.leases);
                }
                Err(e) => {
                    warn!(error = %e, "cannot read a lease file; reservations are not checked against it")
                }
            }
        }
        let (kept, by_lease) =
            reservations::against_leases(wanted, &crate::leases::by_address(&live));
        refused.extend(by_lease);
        (kept, refused)
    }

    /// Applies `all` to one target; what it holds afterwards is recorded.
    async fn apply(&mut self, target: &'static str, all: &[Reservation]) {
        let unchanged = self.applied.get(target).is_some_and(|a| a == all);
        let previously_ok = self
            .status
            .lock()
            .map(|s| s.targets.get(target).is_some_and(|t| t.ok))
            .unwrap_or(false);
        if unchanged && previously_ok {
            return;
        }
        let outcome = match target {
            "hostsdir" => match &self.cfg.hostsdir {
                Some(dir) => targets::hostsdir(dir, all).map(|_| ()),
                None => return,
            },
            "kea" => match &self.cfg.kea {
                Some(k) => targets::kea(&k.reservations, &k.socket, all, !previously_ok)
                    .await
                    .map(|_| ()),
                None => return,
            },
            _ => {
                if self.cfg.hook.is_empty() {
                    return;
                }
                let file = targets::hook_file(&self.cfg.state_dir);
                targets::hook(&self.cfg.hook, &self.cfg.env, &file, all).await
            }
        };
        let now = crate::db::store::now_unix();
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = st.targets.entry(target).or_default();
        match outcome {
            Ok(()) => {
                self.applied.insert(target, all.to_vec());
                *entry = TargetStatus {
                    ok: true,
                    at_unix: now,
                    reservations: all.len(),
                    error: String::new(),
                };
                self.metrics.applied(target, all.len(), now);
                info!(target, reservations = all.len(), "reservations applied");
            }
            Err(e) => {
                if entry.error != e.to_string() {
                    warn!(target, error = %e, "cannot apply reservations; the last good ones stay");
                }
                entry.ok = false;
                entry.at_unix = now;
                entry.error = e.to_string();
                self.metrics.failed(target, &e);
            }
        }
    }
}

/// The targets in the order they are applied.
pub const TARGETS: &[&str] = &["hostsdir", "kea", "hook"];

impl crate::watcher::Acts for Reserver {
    async fn act(
        &mut self,
        db: &crate::watcher::Database,
        _server: &mut crate::proto::machine_db_client::MachineDbClient<crate::dial::Conn>,
        _shutdown: &CancellationToken,
    ) -> Option<Duration> {
        let machines: Vec<crate::proto::Machine> = db.machines.values().cloned().collect();
        let (kept, refused) = self.decide(&machines);
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let views: Vec<RefusedView> = refused.iter().map(RefusedView::from).collect();
            for r in views.iter().filter(|v| !st.refused.contains(v)) {
                warn!(machine = %r.name, ip = %r.ip, "reservation refused: {}", r.why);
            }
            st.refused = views;
            st.revision = db.revision.clone();
        }
        self.metrics.refused(refused.len());
        for target in TARGETS {
            self.apply(target, &kept).await;
        }
        Some(self.cfg.recheck)
    }

    fn refuse(&mut self, why: Option<&str>) {
        self.metrics.revision_refused(why.is_some());
        if let Ok(mut st) = self.status.lock() {
            st.revision_refused = why.unwrap_or_default().to_string();
        }
    }
}
