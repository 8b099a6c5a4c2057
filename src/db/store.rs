//! The [`Store`]: what the server currently serves. The sync task swaps in
//! new snapshots and the sweep task new discovery results; readers load an
//! `Arc` without locks. Every swap is also broadcast to `Watch` streams.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::broadcast;

use super::Snapshot;
use crate::proto::{DiscoveredHost, HostHistory, PresenceTransition, SweepSummary, WatchEvent};

/// How the last sync went, for `GetStats` and metrics.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    pub last_success_unix: i64,
    pub loaded_unix: i64,
    /// Empty when the last sync succeeded.
    pub last_error: String,
}

/// The scanner's latest view, replaced whole after each sweep (or, on a
/// replica, after each sweep of the scanner it follows).
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// The current record of every host, in address order.
    pub hosts: Vec<DiscoveredHost>,
    /// The same hosts with their history.
    pub histories: Vec<HostHistory>,
    /// The latest sweeps, newest first.
    pub sweeps: Vec<SweepSummary>,
    pub last_sweep_unix: i64,
    pub source: DiscoverySource,
    /// A replica that lost its scanner: the last state it had.
    pub stale: bool,
}

impl Discovery {
    pub fn of(
        histories: Vec<HostHistory>,
        sweeps: Vec<SweepSummary>,
        source: DiscoverySource,
    ) -> Self {
        Discovery {
            hosts: histories.iter().filter_map(|h| h.host.clone()).collect(),
            last_sweep_unix: sweeps.first().map_or(0, |s| s.at_unix),
            histories,
            sweeps,
            source,
            stale: false,
        }
    }
}

/// Where discovery answers come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DiscoverySource {
    /// Neither sweeping nor following a scanner.
    #[default]
    None,
    Scanner,
    /// Following the scanner at this address.
    Replica(String),
}

impl std::fmt::Display for DiscoverySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoverySource::None => f.write_str("none"),
            DiscoverySource::Scanner => f.write_str("scanner"),
            DiscoverySource::Replica(a) => write!(f, "replica of {a}"),
        }
    }
}

/// What a sweep brought, for Watch streams.
#[derive(Clone, Debug, Default)]
pub struct News {
    /// Hosts whose state, address or presence changed.
    pub changed: Vec<DiscoveredHost>,
    pub transitions: Vec<PresenceTransition>,
    pub sweep: Option<SweepSummary>,
    /// The histories the sweep changed and the keys it dropped (for
    /// followers), when `complete`.
    pub histories: Vec<crate::proto::HostHistory>,
    pub removed_hosts: Vec<String>,
    pub complete: bool,
}

impl News {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.transitions.is_empty() && self.sweep.is_none()
    }
}

/// Whether a Watch event carries discovery news (a sweep, hosts that
/// changed, transitions), as opposed to a database revision.
pub fn carries_discovery(ev: &WatchEvent) -> bool {
    ev.sweep.is_some() || !ev.discovered.is_empty() || !ev.transitions.is_empty()
}

pub struct Store {
    current: ArcSwapOption<Snapshot>,
    /// Addresses open enrolment pull requests hold (known where this
    /// process runs the enroller, or said by the scanners it follows): not
    /// to be suggested to anyone else. Each holder's, and all of them.
    reserved_by: Mutex<std::collections::BTreeMap<String, HashSet<IpAddr>>>,
    reserved: ArcSwap<HashSet<IpAddr>>,
    discovery: ArcSwap<Discovery>,
    status: Mutex<SyncStatus>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    /// This process files GitHub issues (said in GetStats).
    files_github: std::sync::atomic::AtomicBool,
}

/// Slow watchers that fall this far behind are told to re-read.
const WATCH_BUFFER: usize = 64;

impl Default for Store {
    fn default() -> Self {
        Store {
            current: ArcSwapOption::empty(),
            reserved_by: Mutex::default(),
            reserved: ArcSwap::from_pointee(HashSet::new()),
            discovery: ArcSwap::from_pointee(Discovery::default()),
            status: Mutex::new(SyncStatus::default()),
            events: broadcast::channel(WATCH_BUFFER).0,
            files_github: Default::default(),
        }
    }
}

pub fn now_unix() -> i64 {
    (now_millis() / 1000) as i64
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long ago a unix time was, in the largest whole unit: "3 min ago".
pub fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    let s = (now_unix() - unix).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

impl Store {
    pub fn new() -> Arc<Store> {
        Arc::new(Store::default())
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    pub fn discovery(&self) -> Arc<Discovery> {
        self.discovery.load_full()
    }

    pub fn status(&self) -> SyncStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// Swaps in a new snapshot and tells watchers what changed.
    pub fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        let next = Arc::new(next);
        let prev = self.current.swap(Some(next.clone()));
        let event = diff(prev.as_deref(), &next);
        if let Ok(mut s) = self.status.lock() {
            s.loaded_unix = now_unix();
            s.last_success_unix = s.loaded_unix;
            s.last_error.clear();
        }
        let _ = self.events.send(Arc::new(event));
        next
    }

    pub fn reserved(&self) -> Arc<HashSet<IpAddr>> {
        self.reserved.load_full()
    }

    /// What `holder` (this process's enroller, or a followed scanner)
    /// reserves now; the others' stay.
    pub fn set_reserved(&self, holder: &str, ips: HashSet<IpAddr>) {
        let mut by = self.reserved_by.lock().unwrap_or_else(|p| p.into_inner());
        by.insert(holder.to_string(), ips);
        let all = by.values().flatten().copied().collect();
        self.reserved.store(Arc::new(all));
    }

    /// A sync that found nothing new still counts as a success.
    pub fn sync_ok(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.last_success_unix = now_unix();
            s.last_error.clear();
        }
    }

    pub fn sync_failed(&self, error: String) {
        if let Ok(mut s) = self.status.lock() {
            s.last_error = error;
        }
    }

    /// Marks this process as the one that files GitHub issues.
    pub fn set_files_github(&self) {
        self.files_github
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn files_github(&self) -> bool {
        self.files_github.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the discovery view and tells watchers the news.
    pub fn publish_discovery(&self, next: Discovery, news: News) {
        self.discovery.store(Arc::new(next));
        if news.is_empty() {
            return;
        }
        let revision = self
            .snapshot()
            .map(|s| s.revision.clone())
            .unwrap_or_default();
        let _ = self.events.send(Arc::new(WatchEvent {
            revision,
            discovered: news.changed,
            transitions: news.transitions,
            sweep: news.sweep,
            histories: news.histories,
            removed_hosts: news.removed_hosts,
            histories_complete: news.complete,
            ..Default::default()
        }));
    }

    /// Marks the discovery view stale (a replica lost its scanner), or
    /// fresh again; the hosts stay.
    pub fn discovery_stale(&self, stale: bool) {
        let now = self.discovery();
        if now.stale != stale {
            let mut next = (*now).clone();
            next.stale = stale;
            self.discovery.store(Arc::new(next));
        }
    }
}

fn diff(prev: Option<&Snapshot>, next: &Snapshot) -> WatchEvent {
    let Some(prev) = prev else {
        return WatchEvent {
            revision: next.revision.clone(),
            changed: next.machines.clone(),
            ..Default::default()
        };
    };
    let old: HashMap<&str, &crate::proto::Machine> =
        prev.machines.iter().map(|m| (m.name.as_str(), m)).collect();
    let changed = next
        .machines
        .iter()
        .filter(|m| old.get(m.name.as_str()) != Some(m))
        .cloned()
        .collect();
    let removed = prev
        .machines
        .iter()
        .filter(|m| next.by_name(&m.name).is_none())
        .map(|m| m.name.clone())
        .collect();
    WatchEvent {
        revision: next.revision.clone(),
        changed,
        removed,
        ..Default::default()
    }
}
