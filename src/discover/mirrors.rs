//! The merged view of an API replica that follows several scanners, one
//! per network segment. Each follower hands in its scanner's latest view;
//! the store serves the merge:
//! - a host (one history key: its MAC, or its name for a random MAC) seen
//!   by two scanners is one host, whose `segments` name both; the newest
//!   sighting decides its address and state, and the addresses and
//!   transitions of both are kept, so a host that moved from one segment
//!   to another is a move with one history;
//! - an address that two segments see answered by different MACs is a
//!   conflict on both;
//! - a scanner that cannot be reached makes only the hosts that no other
//!   scanner sees stale (`segment_stale`), and the view is stale when any
//!   scanner is.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::{
    db::{
        store::{Discovery, DiscoverySource, News},
        Store,
    },
    proto::{HostHistory, HostState, Presence},
};

/// Every followed scanner's latest view, and where the merge is served.
pub struct Mirrors {
    store: Arc<Store>,
    /// Where each scanner's last view is kept, for a start while it is away.
    cache: Option<std::path::PathBuf>,
    views: Mutex<BTreeMap<String, Discovery>>,
    /// How often each scanner is read whole again.
    refresh: std::time::Duration,
}

impl Mirrors {
    /// Followers of `scanners` start stale, with the view `cache` kept of
    /// each (empty without); each is read whole every `refresh`.
    pub fn new(
        store: Arc<Store>,
        scanners: &[String],
        cache: Option<std::path::PathBuf>,
        refresh: std::time::Duration,
    ) -> Arc<Mirrors> {
        let views = scanners
            .iter()
            .map(|s| {
                let mut view = cache
                    .as_deref()
                    .and_then(|dir| super::mirror_cache::load(dir, s))
                    .unwrap_or_default();
                view.source = DiscoverySource::Replica(s.clone());
                view.stale = true;
                (s.clone(), view)
            })
            .collect();
        let mirrors = Arc::new(Mirrors {
            store,
            cache,
            views: Mutex::new(views),
            refresh,
        });
        if !scanners.is_empty() {
            let merged = mirrors.judged(merge(&mirrors.lock()));
            mirrors.store.publish_discovery(merged, News::default());
        }
        mirrors
    }

    /// `scanner`'s new view; the merge is served with its news.
    pub fn update(&self, scanner: &str, view: Discovery, news: News) {
        if let Some(dir) = &self.cache {
            super::mirror_cache::save(dir, scanner, &view);
        }
        let (merged, news) = {
            let mut views = self.lock();
            views.insert(scanner.to_string(), view);
            let merged = self.judged(merge(&views));
            let news = judged_news(forwarded(news, views.len()), &merged);
            (merged, news)
        };
        self.store.publish_discovery(merged, news);
    }

    /// The hosts `scanner`'s view holds.
    pub fn hosts_of(&self, scanner: &str) -> usize {
        self.lock().get(scanner).map_or(0, |v| v.histories.len())
    }

    /// One sweep's change to `scanner`'s view, applied in place.
    pub fn apply(&self, scanner: &str, delta: Delta, news: News) {
        let (merged, news, kept) = {
            let mut views = self.lock();
            let Some(view) = views.get_mut(scanner) else {
                return;
            };
            apply(view, delta);
            let kept = self.cache.as_ref().map(|_| view.clone());
            let merged = self.judged(merge(&views));
            let news = judged_news(forwarded(news, views.len()), &merged);
            (merged, news, kept)
        };
        if let (Some(dir), Some(view)) = (&self.cache, kept) {
            super::mirror_cache::save(dir, scanner, &view);
        }
        self.store.publish_discovery(merged, news);
    }

    /// The addresses `scanner` says enrolments reserve; the store serves
    /// every scanner's.
    pub fn set_reserved(&self, scanner: &str, reserved: std::collections::HashSet<IpAddr>) {
        self.store.set_reserved(scanner, reserved);
    }

    /// How often each scanner is read whole again.
    pub fn refresh(&self) -> std::time::Duration {
        self.refresh
    }

    /// Whether this process is the filer (it must follow no other).
    pub fn files_github(&self) -> bool {
        self.store.files_github()
    }

    /// Marks `scanner` unreachable (or back); its hosts stay. The hosts
    /// whose staleness changed are news, so that whoever follows this
    /// process reads it again.
    pub fn stale(&self, scanner: &str, stale: bool) {
        let merged = {
            let mut views = self.lock();
            match views.get_mut(scanner) {
                Some(v) if v.stale != stale => v.stale = stale,
                _ => return,
            }
            self.judged(merge(&views))
        };
        let before = self.store.discovery();
        let was: HashMap<&str, bool> = before
            .hosts
            .iter()
            .map(|h| (h.key.as_str(), h.segment_stale))
            .collect();
        let changed = merged
            .hosts
            .iter()
            .filter(|h| was.get(h.key.as_str()) != Some(&h.segment_stale))
            .cloned()
            .collect();
        self.store.publish_discovery(
            merged,
            News {
                changed,
                ..Default::default()
            },
        );
    }

    /// The merge as this process's own database classifies it: the states
    /// a scanner sends are its word, not this process's judgement, and a
    /// host they alone make (a missing machine this database lacks) goes.
    /// Before the first revision the merge is served as it came.
    fn judged(&self, mut merged: Discovery) -> Discovery {
        let Some(snap) = self.store.snapshot() else {
            return merged;
        };
        let hosts: Vec<_> = merged
            .histories
            .iter()
            .filter_map(|h| h.host.clone())
            .collect();
        let judged: HashMap<String, crate::proto::DiscoveredHost> =
            super::classify::again(&hosts, &snap, &snap.mdb_yaml.scan.rules)
                .into_iter()
                .map(|h| (h.key.clone(), h))
                .collect();
        merged.histories.retain_mut(|h| {
            let Some(j) = h.host.as_ref().and_then(|x| judged.get(&x.key)) else {
                return false;
            };
            h.host = Some(j.clone());
            true
        });
        merged.hosts = merged
            .histories
            .iter()
            .filter_map(|h| h.host.clone())
            .collect();
        merged
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Discovery>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one sweep changed of a scanner's view.
pub struct Delta {
    pub histories: Vec<HostHistory>,
    pub removed: Vec<String>,
    pub sweep: crate::proto::SweepSummary,
}

/// A merge of several views differs from each: whoever follows this
/// process reads it whole. One view is served as it is, so its changes are
/// passed on.
fn forwarded(mut news: News, views: usize) -> News {
    if views > 1 {
        news.histories.clear();
        news.removed_hosts.clear();
        news.complete = false;
    }
    news
}

/// A scanner's news as this process's judgement of the merge has it: a
/// changed host is the merge's record of it (none, when the merge dropped
/// it), and a transition names the machine the merge says, only for a host
/// the merge holds, at most `MAX_DELTA` of them; so what notify announces
/// is this process's word, not the scanner's.
fn judged_news(mut news: News, merged: &Discovery) -> News {
    let by_key: HashMap<&str, &crate::proto::DiscoveredHost> =
        merged.hosts.iter().map(|h| (h.key.as_str(), h)).collect();
    news.changed = news
        .changed
        .iter()
        .filter_map(|h| by_key.get(h.key.as_str()).map(|j| (*j).clone()))
        .collect();
    news.transitions.truncate(super::history::MAX_DELTA);
    news.transitions
        .retain_mut(|t| match by_key.get(t.key.as_str()) {
            Some(h) => {
                t.machine = h.machine.clone();
                true
            }
            None => false,
        });
    news
}

/// `delta` applied to `view`. Sweeps do not send every host's pulse: a host
/// that was up and is not in the change was seen by this sweep, as far as
/// a follower can tell (a full read, every few minutes, sets it right).
fn apply(view: &mut Discovery, delta: Delta) {
    let key = |h: &HostHistory| h.host.as_ref().map(|x| x.key.clone()).unwrap_or_default();
    let mut by: BTreeMap<String, HostHistory> = std::mem::take(&mut view.histories)
        .into_iter()
        .map(|h| (key(&h), h))
        .collect();
    for k in &delta.removed {
        by.remove(k);
    }
    let changed: std::collections::HashSet<String> = delta.histories.iter().map(key).collect();
    for h in delta.histories {
        by.insert(key(&h), h);
    }
    let at = delta.sweep.at_unix;
    for (_, h) in by.iter_mut().filter(|(k, _)| !changed.contains(*k)) {
        if let Some(host) = h
            .host
            .as_mut()
            .filter(|x| x.presence == Presence::Up as i32)
        {
            host.last_seen_unix = at;
        }
    }
    let mut histories: Vec<HostHistory> = by.into_values().collect();
    let mut sweeps = std::mem::take(&mut view.sweeps);
    sweeps.insert(0, delta.sweep);
    sweeps.truncate(super::history::store::RECENT_SWEEPS);
    super::received::scanner_claims(&mut histories, &sweeps);
    in_address_order(&mut histories);
    let source = view.source.clone();
    *view = Discovery::of(histories, sweeps, source);
}

fn in_address_order(histories: &mut [HostHistory]) {
    histories.sort_by_key(|h| {
        h.host
            .as_ref()
            .and_then(|x| x.ip.parse::<IpAddr>().ok())
            .map_or((1, None), |ip| (0, Some(ip)))
    });
}

/// One view of every scanner's hosts (see the module's words).
pub fn merge(views: &BTreeMap<String, Discovery>) -> Discovery {
    if views.len() == 1 {
        if let Some(only) = views.values().next() {
            let mut one = only.clone();
            let hosts = one.histories.iter_mut().filter_map(|h| h.host.as_mut());
            // A host its scanner marked stale (a router it reads did not
            // answer) stays stale while the scanner answers.
            for h in one.hosts.iter_mut().chain(hosts) {
                h.segment_stale |= only.stale;
            }
            return one;
        }
    }
    let mut by_key: BTreeMap<String, (HostHistory, bool)> = BTreeMap::new();
    for view in views.values() {
        for h in &view.histories {
            let Some(host) = &h.host else { continue };
            // Stale when its view is, or when the scanner that merged it
            // upstream (a filer following others) said so.
            let stale_here = view.stale || host.segment_stale;
            match by_key.get_mut(&host.key) {
                None => {
                    by_key.insert(host.key.clone(), (h.clone(), stale_here));
                }
                Some((seen, stale)) => {
                    join(seen, h);
                    *stale &= stale_here;
                }
            }
        }
    }
    let mut histories: Vec<HostHistory> = by_key
        .into_values()
        .map(|(mut h, stale)| {
            if let Some(host) = h.host.as_mut() {
                host.segment_stale = stale;
            }
            h
        })
        .collect();
    conflicts_across_segments(&mut histories);
    in_address_order(&mut histories);
    let mut sweeps: Vec<_> = views.values().flat_map(|v| v.sweeps.clone()).collect();
    sweeps.sort_by_key(|s| std::cmp::Reverse(s.at_unix));
    sweeps.truncate(super::history::store::RECENT_SWEEPS);
    let mut merged = Discovery::of(
        histories,
        sweeps,
        DiscoverySource::Replica(views.keys().cloned().collect::<Vec<_>>().join(", ")),
    );
    merged.last_sweep_unix = views.values().map(|v| v.last_sweep_unix).max().unwrap_or(0);
    merged.stale = views.values().any(|v| v.stale);
    merged
}

/// `other`'s sighting of the same host joined into `into`: the newer one
/// is the host, both histories are kept.
fn join(into: &mut HostHistory, other: &HostHistory) {
    let (Some(a), Some(b)) = (into.host.as_ref(), other.host.as_ref()) else {
        return;
    };
    let mut segments = a.segments.clone();
    for s in &b.segments {
        if !segments.contains(s) {
            segments.push(s.clone());
        }
    }
    let first_seen = min_known(a.first_seen_unix, b.first_seen_unix);
    if b.last_seen_unix > a.last_seen_unix {
        into.host = Some(b.clone());
    }
    if let Some(h) = into.host.as_mut() {
        h.segments = segments;
        h.first_seen_unix = first_seen;
    }
    for addr in &other.addresses {
        match into
            .addresses
            .iter_mut()
            .find(|x| x.ip == addr.ip && x.mac == addr.mac)
        {
            Some(x) => {
                x.first_seen_unix = min_known(x.first_seen_unix, addr.first_seen_unix);
                x.last_seen_unix = x.last_seen_unix.max(addr.last_seen_unix);
            }
            None => into.addresses.push(addr.clone()),
        }
    }
    into.transitions.extend(other.transitions.iter().cloned());
    into.transitions.sort_by_key(|t| t.at_unix);
    into.transitions.dedup();
}

fn min_known(a: i64, b: i64) -> i64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (x, y) => x.min(y),
    }
}

/// Up hosts of different segments answering for one address with
/// different MACs: each is a conflict.
fn conflicts_across_segments(histories: &mut [HostHistory]) {
    let mut by_ip: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, h) in histories.iter().enumerate() {
        let Some(host) = &h.host else { continue };
        let candidate = host.presence == Presence::Up as i32
            && host.state != HostState::Scanner as i32
            && !host.mac.is_empty()
            && !host.ip.is_empty();
        if candidate {
            by_ip.entry(host.ip.clone()).or_default().push(i);
        }
    }
    for (ip, idx) in by_ip.into_iter().filter(|(_, v)| v.len() > 1) {
        let claims: Vec<String> = idx
            .iter()
            .filter_map(|&i| histories[i].host.as_ref())
            .map(|h| format!("{} on {}", h.mac, h.segments.join("+")))
            .collect();
        let detail = format!("{ip} answered on several segments: {}", claims.join(", "));
        for &i in &idx {
            if let Some(h) = histories[i].host.as_mut() {
                h.state = HostState::Conflict as i32;
                h.detail = detail.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AddressSeen, DiscoveredHost, PresenceTransition};

    fn record(key: &str, ip: &str, mac: &str, segment: &str, last: i64) -> HostHistory {
        HostHistory {
            host: Some(DiscoveredHost {
                key: key.into(),
                ip: ip.into(),
                mac: mac.into(),
                segments: vec![segment.into()],
                presence: Presence::Up as i32,
                state: HostState::Known as i32,
                first_seen_unix: last - 100,
                last_seen_unix: last,
                ..Default::default()
            }),
            addresses: vec![AddressSeen {
                mac: mac.into(),
                ip: ip.into(),
                first_seen_unix: last - 100,
                last_seen_unix: last,
            }],
            transitions: vec![PresenceTransition {
                key: key.into(),
                presence: Presence::Up as i32,
                at_unix: last - 100,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn view(stale: bool, histories: Vec<HostHistory>) -> Discovery {
        let mut d = Discovery::of(histories, vec![], DiscoverySource::Scanner);
        d.stale = stale;
        d
    }

    /// A fresh lab view and a fresh iot view, one record each.
    fn two(lab: HostHistory, iot: HostHistory) -> BTreeMap<String, Discovery> {
        BTreeMap::from([
            ("lab".to_string(), view(false, vec![lab])),
            ("iot".to_string(), view(false, vec![iot])),
        ])
    }

    #[test]
    fn a_host_on_two_segments_is_one_host_and_a_move_keeps_one_history() {
        let views = two(
            record("mac:aa", "198.18.0.5", "aa", "lab", 1000),
            record("mac:aa", "198.18.1.5", "aa", "iot", 2000),
        );
        let m = merge(&views);
        assert_eq!(m.hosts.len(), 1);
        let h = &m.hosts[0];
        assert_eq!(h.ip, "198.18.1.5", "the newest sighting");
        assert_eq!(h.segments, ["iot", "lab"]);
        assert_eq!(h.first_seen_unix, 900);
        assert_eq!(m.histories[0].addresses.len(), 2);
        assert_eq!(m.histories[0].transitions.len(), 2);
    }

    #[test]
    fn one_address_claimed_by_two_macs_on_two_segments_is_a_conflict() {
        let views = two(
            record("mac:aa", "198.18.0.5", "aa", "lab", 1000),
            record("mac:bb", "198.18.0.5", "bb", "iot", 1000),
        );
        let m = merge(&views);
        assert_eq!(m.hosts.len(), 2);
        assert!(
            m.hosts
                .iter()
                .all(|h| h.state == HostState::Conflict as i32),
            "{:?}",
            m.hosts
        );
        assert!(
            m.hosts[0].detail.contains("aa on lab"),
            "{}",
            m.hosts[0].detail
        );
    }

    #[test]
    fn a_dead_scanner_makes_only_its_own_hosts_stale() {
        let mut views = BTreeMap::new();
        views.insert(
            "lab".to_string(),
            view(
                true,
                vec![
                    record("mac:aa", "198.18.0.5", "aa", "lab", 1000),
                    record("mac:cc", "198.18.0.7", "cc", "lab", 1000),
                ],
            ),
        );
        views.insert(
            "iot".to_string(),
            view(
                false,
                vec![
                    record("mac:bb", "198.18.1.6", "bb", "iot", 1000),
                    record("mac:cc", "198.18.1.7", "cc", "iot", 1100),
                ],
            ),
        );
        let m = merge(&views);
        let stale: Vec<(&str, bool)> = m
            .hosts
            .iter()
            .map(|h| (h.key.as_str(), h.segment_stale))
            .collect();
        assert_eq!(
            stale,
            [("mac:aa", true), ("mac:bb", false), ("mac:cc", false)]
        );
        assert!(m.stale);
    }
}
