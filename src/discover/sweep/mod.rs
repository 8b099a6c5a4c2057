//! The sweep loop of `mdb serve`: sweep, classify against the snapshot
//! being served, fold the sweep into the history (kept on disk when a
//! `state_dir` is set) and publish the result to the store, metrics and
//! whoever listens (the GitHub filer).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ipnetwork::IpNetwork;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod plan;

use plan::same_ports;
pub use plan::{fresh, plan, Ports};

use crate::{
    db::{
        store::{now_millis, now_unix, Discovery, DiscoverySource, News},
        Snapshot, Store,
    },
    discover::{
        classify,
        history::{
            self,
            store::{self, HistoryStore},
            Fold, History,
        },
        scan, SweepMetrics,
    },
    proto::{DiscoveredHost, HostHistory, Machine, Presence, SweepSummary},
};

#[derive(Clone, Debug)]
pub struct Config {
    /// The network segment this scanner sweeps (`scan.segment`).
    pub segment: String,
    /// Subnets named in the service configuration.
    pub subnets: Vec<IpNetwork>,
    /// Also sweep the subnets of `mdb.yaml` marked `scan: true`.
    pub db_subnets: bool,
    /// DHCP lease files that name hosts by their MAC.
    pub leases: Vec<std::path::PathBuf>,
    pub interval: Duration,
    /// Rate, timeout, tries, interface...; targets and ports are filled in
    /// per sweep from the configuration and the database.
    pub options: scan::Options,
    /// Which TCP ports a sweep probes on live hosts.
    pub ports: Ports,
    /// Where the history is kept across restarts; memory only without.
    pub state_dir: Option<std::path::PathBuf>,
    /// How long a host that is gone, and old transitions, are remembered.
    pub retention: Duration,
    /// Routers whose neighbour tables each sweep reads (`[[scan.snmp]]`).
    pub snmp: Vec<crate::snmp::Source>,
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

/// One look at the network: the sweep's plan, what answered, and each
/// host classified against the database (or merely described, without one).
pub struct Look<'a> {
    pub opts: scan::Options,
    pub report: scan::Report,
    pub hosts: Vec<classify::Classified>,
    /// Machines of swept subnets that did not answer.
    pub unseen: Vec<&'a Machine>,
    /// Each SNMP source's read.
    pub sources: Vec<super::sources::Read>,
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
    look_planned(cfg, snap, opts, progress).await
}

/// [`look`] with the sweep's options planned already.
async fn look_planned<'a>(
    cfg: &Config,
    snap: Option<&'a Snapshot>,
    mut opts: scan::Options,
    progress: scan::Progress,
) -> Result<Look<'a>, scan::Error> {
    let started = Instant::now();
    // A scanner may only read routers: then there is nothing to probe.
    let probe = async {
        if opts.targets.is_empty() && !cfg.snmp.is_empty() {
            return Ok(scan::Report::default());
        }
        scan::sweep(&opts, progress).await
    };
    let (report, reads) = tokio::join!(probe, super::sources::read_all(&cfg.snmp, opts.deadline));
    let mut report = report?;
    let sources = super::sources::merge(&mut report, &mut opts.targets, &cfg.snmp, reads, started);
    if !cfg.leases.is_empty() {
        let files = cfg.leases.clone();
        let mut hosts = std::mem::take(&mut report.hosts);
        report.hosts = tokio::task::spawn_blocking(move || {
            super::names::join_leases(&mut hosts, &files, now_unix());
            hosts
        })
        .await
        .unwrap_or_default();
    }
    let (hosts, unseen) = match snap {
        Some(s) => classify::classify(&report.hosts, s, &opts.targets, &s.mdb_yaml.scan.rules),
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
        sources,
    })
}

/// What one sweep left: the result for listeners, what the fold changed,
/// the sweep's summary and every host's record afterwards.
pub struct Swept {
    pub result: SweepResult,
    pub fold: Fold,
    pub summary: SweepSummary,
    pub records: Vec<HostHistory>,
    /// Hosts whose follow-ups were shed to keep within the interval.
    pub shed: usize,
}

/// One sweep, classified and folded into `history`.
/// `last` is the previous sweep's summary: what it probed decides whether
/// earlier probes still answer this sweep's question.
pub async fn sweep_once(
    cfg: &Config,
    snap: &Snapshot,
    history: &mut History,
    last: Option<&SweepSummary>,
    metrics: &SweepMetrics,
) -> Result<Swept, scan::Error> {
    let started = Instant::now();
    let mut opts = plan(cfg, snap);
    if same_ports(last, &opts.ports) {
        opts.carried = Arc::new(fresh(history, snap.mdb_yaml.scan.refresh, now_unix()));
    }
    let mut known6 = opts.known6.to_vec();
    known6.extend(history.hosts().flat_map(|h| {
        h.ipv6_addresses
            .iter()
            .filter(|a| a.kind != crate::ipv6::Kind::Temporary.word())
            .filter_map(|a| a.ip.parse::<std::net::Ipv6Addr>().ok())
    }));
    known6.sort_unstable();
    known6.dedup();
    opts.known6 = Arc::new(known6);
    opts.deadline = Some(started + sweep_budget(cfg.interval));
    let mut look = look_planned(cfg, Some(snap), opts, Arc::new(|_| {})).await?;
    for c in look.hosts.iter_mut().filter(|c| c.host.segments.is_empty()) {
        c.host.segments = vec![cfg.segment.clone()];
    }
    let mut seen: Vec<&mut DiscoveredHost> = look.hosts.iter_mut().map(|c| &mut c.host).collect();
    super::names::keep_mdns(history.hosts(), &mut seen);
    for w in &look.report.warnings {
        warn!("{w}");
    }
    metrics.probed(&look.report.sent, look.report.duration.as_secs_f64());
    metrics.follow_ups(look.report.carried, look.report.shed);
    metrics.ndp_capped(look.report.ndp_capped);
    let failed = super::sources::note(&look.sources, metrics);
    let shed = look.report.shed;
    let now = now_unix();
    let rules = history::Rules {
        down_after: snap.mdb_yaml.scan.down_after,
        missing_after: snap.mdb_yaml.scan.missing_after,
        retention: cfg.retention,
    };
    let in_db = |name: &str| snap.by_name(name).is_some();
    let fold = history.fold(
        history::Sweep {
            seen: look.hosts,
            unseen: &look.unseen,
            swept: &look.opts.targets,
            in_db: &in_db,
            now,
            stale_sources: &failed.tables,
            switches_failed: &failed.switches,
            sources: &cfg
                .snmp
                .iter()
                .map(crate::snmp::Source::tag)
                .collect::<Vec<_>>(),
        },
        &rules,
    );
    let records = history.records();
    let hosts: Vec<DiscoveredHost> = records.iter().filter_map(|r| r.host.clone()).collect();
    let summary = SweepSummary {
        at_unix: now,
        // The probes and the sources' reads run side by side: the sweep
        // took the longer of the two.
        duration_ms: look
            .sources
            .iter()
            .map(|r| r.took)
            .chain(std::iter::once(look.report.duration))
            .max()
            .unwrap_or_default()
            .as_millis()
            .min(u32::MAX as u128) as u32,
        answered: fold.answered,
        up: count(&hosts, Presence::Up),
        down: count(&hosts, Presence::Down),
        changed: fold.changed.len() as u32,
        subnets: look.opts.targets.iter().map(|n| n.to_string()).collect(),
        ports: look.opts.ports.iter().map(|p| u32::from(*p)).collect(),
        ..Default::default()
    };
    Ok(Swept {
        result: SweepResult {
            hosts,
            revision: snap.revision.clone(),
            swept: look.opts.targets,
            at_unix: now,
        },
        fold,
        summary,
        records,
        shed,
    })
}

/// The share of the interval a sweep may take: the rest is left for
/// classifying, writing and publishing.
fn sweep_budget(interval: Duration) -> Duration {
    interval.mul_f64(0.9).max(Duration::from_secs(1))
}

fn count(hosts: &[DiscoveredHost], p: Presence) -> u32 {
    hosts.iter().filter(|h| h.presence == p as i32).count() as u32
}

/// The history `run` starts from: what the store held, or nothing.
pub struct Start {
    pub history: History,
    pub sweeps: Vec<SweepSummary>,
    pub disk: Option<HistoryStore>,
}

impl Start {
    pub fn empty() -> Start {
        Start {
            history: History::default(),
            sweeps: Vec::new(),
            disk: None,
        }
    }

    pub fn from(opened: store::Opened) -> Start {
        Start {
            history: History::from_records(opened.records),
            sweeps: opened.sweeps,
            disk: Some(opened.store),
        }
    }

    fn discovery(&self, records: Vec<HostHistory>) -> Discovery {
        Discovery::of(records, self.sweeps.clone(), DiscoverySource::Scanner)
    }
}

/// Where a scanner's view goes: the store, or (the filer that follows the
/// other segments' scanners) the merge of every segment.
pub enum Publish {
    Store(Arc<Store>),
    Merged(Arc<super::mirrors::Mirrors>, String),
}

impl Publish {
    fn view(&self, view: Discovery, news: News) {
        match self {
            Publish::Store(s) => s.publish_discovery(view, news),
            Publish::Merged(m, own) => m.update(own, view, news),
        }
    }
}

/// Sweeps every `interval` until cancelled. Waits for the first database
/// revision, since classification needs it. What `start` holds is served
/// at once, before the first sweep. Listeners (the filer) get the hosts
/// served after each sweep: with `Publish::Merged`, every segment's.
pub async fn run(
    cfg: Config,
    mut start: Start,
    store: Arc<Store>,
    publish: Publish,
    metrics: SweepMetrics,
    results: watch::Sender<Option<Arc<SweepResult>>>,
    shutdown: CancellationToken,
) {
    publish.view(start.discovery(start.history.records()), News::default());
    metrics.sources(&cfg.snmp);
    let mut rx = store.subscribe();
    // This run's sweeps, numbered: followers apply each sweep's delta and
    // read everything again when a number is missing.
    let epoch = rand::random::<u64>() | 1;
    let mut seq = 0u64;
    let mut overrun = Overrun::default();
    let mut published = Published::default();
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
            r = sweep_once(&cfg, &snap, &mut start.history, start.sweeps.first(), &metrics) => r,
        };
        match outcome {
            Ok(Swept {
                mut result,
                fold,
                mut summary,
                records,
                shed,
            }) => {
                seq += 1;
                (summary.epoch, summary.seq) = (epoch, seq);
                overrun.note(shed, cfg.interval);
                metrics.swept(&result.hosts, result.at_unix);
                metrics.transitions(&fold.transitions);
                info!(
                    hosts = result.hosts.len(),
                    answered = fold.answered,
                    changed = fold.changed.len(),
                    took_ms = summary.duration_ms,
                    "sweep done"
                );
                persist(&start, &cfg, &fold, &summary, &metrics).await;
                start.sweeps.insert(0, summary.clone());
                start.sweeps.truncate(store::RECENT_SWEEPS);
                let (histories, complete) =
                    published.delta(&start.history, &fold.written, &fold.removed);
                publish.view(
                    start.discovery(records),
                    News {
                        changed: fold.changed,
                        transitions: fold.transitions,
                        sweep: Some(summary),
                        histories,
                        removed_hosts: if complete { fold.removed } else { Vec::new() },
                        complete,
                    },
                );
                if let (Publish::Merged(..), Some(snap)) = (&publish, store.snapshot()) {
                    // The other segments' hosts as this process's database
                    // sees them: the filer acts on its own judgement.
                    let rules = &snap.mdb_yaml.scan.rules;
                    result.hosts = classify::again(&store.discovery().hosts, &snap, rules);
                }
                let _ = results.send(Some(Arc::new(result)));
                crate::memory::give_back_freed();
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

use super::history::MAX_DELTA;

/// The stable digest of each history as followers last had it.
#[derive(Default)]
struct Published(std::collections::HashMap<String, u64>);

impl Published {
    /// The histories a sweep changed for followers, and whether they are
    /// all of its changes. A sweep touches every host it saw (its pulse:
    /// last seen, round trip), but only a record whose lasting content
    /// changed is sent; a follower takes an up host to be seen by the
    /// sweep, and its whole read every few minutes sets the pulses right.
    fn delta(
        &mut self,
        history: &History,
        written: &[String],
        removed: &[String],
    ) -> (Vec<HostHistory>, bool) {
        for k in removed {
            self.0.remove(k);
        }
        let mut out = Vec::new();
        for (k, r) in written.iter().filter_map(|k| Some((k, history.get(k)?))) {
            let digest = crate::discover::history::digest(r);
            if self.0.insert(k.clone(), digest) != Some(digest) {
                out.push(r.clone());
            }
        }
        if out.len() > MAX_DELTA {
            return (Vec::new(), false);
        }
        (out, true)
    }
}

/// Whether sweeps are shedding follow-ups, said once when it starts and
/// once when it ends, not every sweep.
#[derive(Default)]
struct Overrun(bool);

impl Overrun {
    fn note(&mut self, shed: usize, interval: Duration) {
        match (self.0, shed > 0) {
            (false, true) => warn!(
                shed,
                interval_ms = interval.as_millis() as u64,
                "sweep would overrun its interval: follow-ups (ports, banners, names) of {shed} hosts shed, their earlier probes stand; later sweeps probe them"
            ),
            (true, false) => info!("sweeps fit their interval again"),
            _ => {}
        }
        self.0 = shed > 0;
    }
}

/// Writes one sweep to disk, off the async threads. A failed write (a full
/// disk) is logged and counted; memory keeps serving, and the next sweep
/// writes its hosts again.
async fn persist(
    start: &Start,
    cfg: &Config,
    fold: &Fold,
    summary: &SweepSummary,
    metrics: &SweepMetrics,
) {
    let Some(disk) = start.disk.clone() else {
        return;
    };
    let batch = store::Batch {
        records: fold
            .written
            .iter()
            .filter_map(|k| start.history.get(k).cloned())
            .collect(),
        removed: fold.removed.clone(),
        sweep: summary.clone(),
        at_ms: now_millis(),
        keep_sweeps_since: summary.at_unix - cfg.retention.as_secs() as i64,
    };
    let written = tokio::task::spawn_blocking(move || {
        let took = disk.write(&batch)?;
        Ok::<_, store::Error>((took, disk.size()))
    })
    .await;
    match written {
        Ok(Ok((took, size))) => metrics.stored(took, size),
        Ok(Err(e)) => {
            warn!(error = %e, "history not written; kept in memory");
            metrics.store_failed();
        }
        Err(e) => {
            warn!(error = %e, "history writer panicked");
            metrics.store_failed();
        }
    }
}
