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
    db::{
        store::now_unix,
        words::{state_name, HOST_STATES},
        Snapshot, Store,
    },
    discover::classify::{self, Classified},
    discover::scan,
    metrics::Metrics,
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
    ports.sort_unstable();
    opts.ports = ports;
    opts.ssh_ports = ssh_ports;
    opts
}

/// One sweep, classified and folded into `history`.
pub async fn sweep_once(
    cfg: &Config,
    snap: &Snapshot,
    history: &mut History,
    metrics: &Metrics,
) -> Result<(SweepResult, Vec<DiscoveredHost>), scan::Error> {
    let opts = plan(cfg, snap);
    let report = scan::sweep(&opts, Arc::new(|_| {})).await?;
    for w in &report.warnings {
        warn!("{w}");
    }
    for (kind, n) in [
        ("arp", report.sent.arp),
        ("icmp", report.sent.icmp),
        ("tcp", report.sent.tcp),
    ] {
        metrics.probes_sent.with_label_values(&[kind]).inc_by(n);
    }
    metrics
        .probes_failed
        .with_label_values(&["icmp"])
        .inc_by(report.sent.icmp_failed);
    metrics
        .sweep_duration
        .observe(report.duration.as_secs_f64());
    let (classified, unseen) = classify::classify(
        &report.hosts,
        snap,
        &opts.targets,
        &snap.settings.scan.rules,
    );
    let now = now_unix();
    let (hosts, changed) = history.update(
        classified,
        &unseen,
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
    metrics: Arc<Metrics>,
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
                let mut counts: HashMap<&str, i64> =
                    HOST_STATES.iter().map(|(s, _)| (*s, 0)).collect();
                for h in &result.hosts {
                    *counts.entry(state_name(h.state)).or_default() += 1;
                }
                for (state, n) in counts {
                    metrics.discovered.with_label_values(&[state]).set(n);
                }
                metrics.sweeps.with_label_values(&["ok"]).inc();
                metrics.sweep_last_success.set(result.at_unix as f64);
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
                metrics.sweeps.with_label_values(&["error"]).inc();
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
    }
}
