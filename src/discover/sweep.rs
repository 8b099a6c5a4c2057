//! The sweep loop of `mdb serve`: sweep, classify against the snapshot
//! being served, remember each host across sweeps (first/last seen, state
//! changes, missed sweeps) and publish the result to the store, metrics
//! and whoever listens (the GitHub filer).

use std::{collections::HashMap, sync::Arc, time::Duration};

use ipnetwork::IpNetwork;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    db::{store::now_unix, Snapshot, Store},
    discover::classify::{self, Classified},
    discover::scan,
    discover::SweepMetrics,
    proto::{DiscoveredHost, Machine},
};

#[derive(Clone, Debug)]
pub struct Config {
    /// Subnets named in the service configuration.
    pub subnets: Vec<IpNetwork>,
    /// Also sweep the subnets of `mdb.yaml` marked `scan: true`.
    pub db_subnets: bool,
    pub interval: Duration,
    /// Rate, timeout, tries, interface...; targets and ports are filled in
    /// per sweep from the configuration and the database.
    pub options: scan::Options,
    /// Which TCP ports a sweep probes on live hosts.
    pub ports: Ports,
}

/// Which TCP ports a sweep probes on live hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Ports {
    /// `scan.ports` of `mdb.yaml` and every machine's SSH port.
    #[default]
    Database,
    /// Those and more (`mdb scan --ports`).
    DatabaseAnd(Vec<u16>),
    /// None: liveness, MAC and vendor only.
    None,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// What one sweep produced, for listeners such as the GitHub filer.
#[derive(Clone, Debug, Default)]
pub struct SweepResult {
    pub hosts: Vec<DiscoveredHost>,
    pub revision: String,
    pub swept: Vec<IpNetwork>,
    pub at_unix: i64,
}

#[derive(Default)]
pub struct History {
    /// By identity: the last record of every host ever seen.
    hosts: HashMap<String, DiscoveredHost>,
    /// Machine name → consecutive sweeps it was not seen in.
    missed: HashMap<String, u32>,
}

impl History {
    /// Folds one sweep in; returns all current hosts and those whose state
    /// changed (or that are new to the history).
    pub fn update(
        &mut self,
        classified: Vec<Classified>,
        unseen: &[&Machine],
        swept: &[IpNetwork],
        missing_after: u32,
        now: i64,
    ) -> (Vec<DiscoveredHost>, Vec<DiscoveredHost>) {
        let mut current = Vec::new();
        let mut changed = Vec::new();
        let seen_names: Vec<String> = classified
            .iter()
            .map(|c| c.host.machine.clone())
            .filter(|n| !n.is_empty())
            .collect();
        for n in seen_names {
            self.missed.remove(&n);
        }
        let mut records = classified;
        for m in unseen {
            let missed = self.missed.entry(m.name.clone()).or_insert(0);
            *missed += 1;
            if *missed >= missing_after.max(1) {
                records.push(classify::missing(m, swept, *missed));
            }
        }
        for Classified { key, mut host } in records {
            let prev = self.hosts.get(&key);
            host.first_seen_unix = prev.map_or(now, |p| p.first_seen_unix);
            host.last_seen_unix = if host.state == crate::proto::HostState::Missing as i32 {
                prev.map_or(0, |p| p.last_seen_unix)
            } else {
                now
            };
            let same = prev.is_some_and(|p| p.state == host.state && p.ip == host.ip);
            host.state_since_unix = match prev {
                Some(p) if same => p.state_since_unix,
                _ => now,
            };
            if !same {
                changed.push(host.clone());
            }
            self.hosts.insert(key, host.clone());
            current.push(host);
        }
        current.sort_by(|a, b| {
            sort_key(&a.ip)
                .cmp(&sort_key(&b.ip))
                .then(a.machine.cmp(&b.machine))
        });
        (current, changed)
    }
}

fn sort_key(ip: &str) -> (u8, u128) {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => (4, u32::from(a) as u128),
        Ok(std::net::IpAddr::V6(a)) => (6, u128::from(a)),
        Err(_) => (9, 0),
    }
}

/// The targets and ports of the next sweep, from config and database.
pub fn plan(cfg: &Config, snap: &Snapshot) -> scan::Options {
    let mut opts = cfg.options.clone();
    opts.targets = cfg.subnets.clone();
    if cfg.db_subnets {
        for s in snap.settings.subnets.iter().filter(|s| s.scan) {
            if !opts.targets.contains(&s.cidr) {
                opts.targets.push(s.cidr);
            }
        }
    }
    let mut ports = snap.settings.scan.ports.clone();
    let mut ssh_ports = vec![22];
    for m in &snap.machines {
        let p = classify::ssh_port(m);
        if !ssh_ports.contains(&p) {
            ssh_ports.push(p);
        }
    }
    for p in &ssh_ports {
        if !ports.contains(p) {
            ports.push(*p);
        }
    }
    match &cfg.ports {
        Ports::Database => {}
        Ports::DatabaseAnd(more) => ports.extend(more),
        Ports::None => ports.clear(),
    }
    ports.sort_unstable();
    ports.dedup();
    opts.ports = ports;
    opts.ssh_ports = ssh_ports;
    opts
}

/// One look at the network: the sweep's plan, what answered, and each
/// host classified against the database (or merely described, without one).
pub struct Look<'a> {
    pub opts: scan::Options,
    pub report: scan::Report,
    pub hosts: Vec<classify::Classified>,
    /// Machines of swept subnets that did not answer.
    pub unseen: Vec<&'a Machine>,
}

/// Plans, sweeps and classifies: the one step that `mdb serve`'s loop and
/// `mdb scan` share.
pub async fn look<'a>(
    cfg: &Config,
    snap: Option<&'a Snapshot>,
    progress: scan::Progress,
) -> Result<Look<'a>, scan::Error> {
    let opts = match snap {
        Some(s) => plan(cfg, s),
        None => {
            let mut o = cfg.options.clone();
            o.targets = cfg.subnets.clone();
            match &cfg.ports {
                Ports::None => o.ports.clear(),
                Ports::DatabaseAnd(more) if !more.is_empty() => o.ports = more.clone(),
                _ => {}
            }
            o
        }
    };
    let report = scan::sweep(&opts, progress).await?;
    let (hosts, unseen) = match snap {
        Some(s) => classify::classify(&report.hosts, s, &opts.targets, &s.settings.scan.rules),
        None => (
            report.hosts.iter().map(classify::described).collect(),
            Vec::new(),
        ),
    };
    Ok(Look {
        opts,
        report,
        hosts,
        unseen,
    })
}

/// One sweep, classified and folded into `history`.
pub async fn sweep_once(
    cfg: &Config,
    snap: &Snapshot,
    history: &mut History,
    metrics: &SweepMetrics,
) -> Result<(SweepResult, Vec<DiscoveredHost>), scan::Error> {
    let look = look(cfg, Some(snap), Arc::new(|_| {})).await?;
    for w in &look.report.warnings {
        warn!("{w}");
    }
    metrics.probed(&look.report.sent, look.report.duration.as_secs_f64());
    let now = now_unix();
    let opts = look.opts;
    let (hosts, changed) = history.update(
        look.hosts,
        &look.unseen,
        &opts.targets,
        snap.settings.scan.missing_after,
        now,
    );
    Ok((
        SweepResult {
            hosts,
            revision: snap.revision.clone(),
            swept: opts.targets,
            at_unix: now,
        },
        changed,
    ))
}

/// Sweeps every `interval` until cancelled. Waits for the first database
/// revision, since classification needs it.
pub async fn run(
    cfg: Config,
    store: Arc<Store>,
    metrics: SweepMetrics,
    results: watch::Sender<Option<Arc<SweepResult>>>,
    shutdown: CancellationToken,
) {
    let mut history = History::default();
    let mut rx = store.subscribe();
    loop {
        let snap = loop {
            if let Some(s) = store.snapshot() {
                break s;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = rx.recv() => {}
            }
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sweep_once(&cfg, &snap, &mut history, &metrics) => r,
        };
        match outcome {
            Ok((result, changed)) => {
                metrics.swept(&result.hosts, result.at_unix);
                info!(
                    hosts = result.hosts.len(),
                    changed = changed.len(),
                    "sweep done"
                );
                store.publish_discovery(
                    crate::db::store::Discovery {
                        hosts: result.hosts.clone(),
                        last_sweep_unix: result.at_unix,
                    },
                    changed,
                );
                let _ = results.send(Some(Arc::new(result)));
            }
            Err(e) => {
                warn!(error = %e, "sweep failed");
                metrics.failed(&e);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
    }
}
