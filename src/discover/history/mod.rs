//! What the sweeps remember of every host: first and last seen, every MAC
//! and IP it used, presence (up at once, down only after `down_after`
//! missed sweeps, so a host that drops one sweep in three never flaps),
//! hourly uptime and the transitions. A pure fold over sweeps: no clock, no
//! I/O; `store` makes it durable.

mod identity;
mod legacy;
pub mod log;
mod pulse;
/// A record's lasting content, digested: what followers and the store compare.
pub use pulse::digest;
mod record;
pub mod simulate;
pub mod store;

pub use identity::history_key;
use identity::{aliases, machine_key, shared_names};
pub use record::MAX_SHOWN_V6;
use record::{count_hour, held_v6, macs_seen, note_address, set_uptime, trim};

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use ipnetwork::IpNetwork;

use crate::{
    db::mdb_yaml::MissingAfter,
    discover::classify::{self, Classified},
    proto::{DiscoveredHost, HostHistory, HostState, Machine, Presence, PresenceTransition},
};

/// Transitions kept per host, newest last; older ones also go with retention.
pub const MAX_TRANSITIONS: usize = 256;
/// MAC/IP pairs kept per host (a MAC rotating daily would grow without end).
pub const MAX_ADDRESSES: usize = 64;
/// Hosts kept at most; past it the longest unseen (not in the database) go.
pub const MAX_HOSTS: usize = 65_536;
/// Histories one sweep event carries at most; a sweep that changed more
/// (the first, a new campus) sends none, and followers read everything.
pub const MAX_DELTA: usize = 1000;
/// Uptime is counted per hour over the longest window shown (7 days).
pub const UPTIME_WINDOW: i64 = 7 * 24 * 3600;
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// The settings a fold follows: `mdb.yaml`'s presence rules and the
/// service's retention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rules {
    pub down_after: u32,
    pub missing_after: MissingAfter,
    pub retention: Duration,
}

/// One sweep, classified, as the fold takes it.
pub struct Sweep<'a> {
    pub seen: Vec<Classified>,
    /// Database machines with an address in `swept` that did not answer.
    pub unseen: &'a [&'a Machine],
    pub swept: &'a [IpNetwork],
    /// Whether a machine name is in the database now.
    pub in_db: &'a dyn Fn(&str) -> bool,
    pub now: i64,
    /// Sources (`snmp:NAME`) that failed this sweep: their hosts are kept
    /// as last seen and marked stale, not missed.
    pub stale_sources: &'a [String],
    /// Every source configured now: a host of one no longer read is missed.
    pub sources: &'a [String],
    /// Switches (names) whose forwarding table failed: the ports they
    /// placed stand. Any other switch port a seen host had is cleared.
    pub switches_failed: &'a [String],
}

/// What one fold changed.
#[derive(Debug, Default)]
pub struct Fold {
    /// Hosts whose state, address or presence changed.
    pub changed: Vec<DiscoveredHost>,
    pub transitions: Vec<PresenceTransition>,
    /// Keys whose records were written (to persist).
    pub written: Vec<String>,
    /// Keys whose records are gone (retention, renames).
    pub removed: Vec<String>,
    pub answered: u32,
}

#[derive(Debug, Default, Clone)]
pub struct History {
    hosts: BTreeMap<String, HostHistory>,
}

impl History {
    pub fn from_records(records: impl IntoIterator<Item = HostHistory>) -> History {
        let hosts = records
            .into_iter()
            .filter_map(|r| Some((r.host.as_ref()?.key.clone(), r)))
            .collect();
        History { hosts }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&HostHistory> {
        self.hosts.get(key)
    }

    /// The current view of every host, in no order.
    pub fn hosts(&self) -> impl Iterator<Item = &DiscoveredHost> {
        self.hosts.values().filter_map(|r| r.host.as_ref())
    }

    /// Every record worth showing, in address order: hosts seen at least
    /// once and machines found missing.
    pub fn records(&self) -> Vec<HostHistory> {
        let mut out: Vec<HostHistory> = self
            .hosts
            .values()
            .filter(|r| r.host.as_ref().is_some_and(listed))
            .cloned()
            .collect();
        out.sort_by(|a, b| by_address(host(a), host(b)));
        out
    }

    /// Folds one sweep in.
    pub fn fold(&mut self, mut sweep: Sweep<'_>, rules: &Rules) -> Fold {
        let mut out = Fold::default();
        let mut seen_keys = HashSet::new();
        let shared = shared_names(&sweep.seen);
        for c in std::mem::take(&mut sweep.seen) {
            self.answered(
                c,
                &shared,
                &mut seen_keys,
                (sweep.now, sweep.switches_failed),
                &mut out,
            );
        }
        self.create_unseen_machines(&sweep, &seen_keys);
        let unseen: HashSet<&str> = sweep.unseen.iter().map(|m| m.name.as_str()).collect();
        for (key, rec) in self.hosts.iter_mut() {
            if seen_keys.contains(key) {
                continue;
            }
            let Some(h) = rec.host.as_mut() else { continue };
            let stale = !h.source.is_empty() && sweep.stale_sources.contains(&h.source);
            let flipped = h.segment_stale != stale;
            h.segment_stale = stale;
            if stale {
                if flipped {
                    out.written.push(key.clone());
                }
                continue;
            }
            // A machine is missed where the database puts it, or (a DHCP
            // machine with no fixed address) where it was last seen.
            let swept_at_last_address =
                h.ip.parse::<IpAddr>()
                    .is_ok_and(|ip| sweep.swept.iter().any(|n| n.contains(ip)));
            let retired = !h.source.is_empty() && !sweep.sources.contains(&h.source);
            let covered = swept_at_last_address
                || retired
                || machine_key(key).is_some_and(|name| unseen.contains(name));
            if covered {
                missed(key, rec, rules, sweep.now, &mut out);
            } else if flipped {
                out.written.push(key.clone());
            }
        }
        self.expire(&sweep, rules, &mut out);
        for rec in self.hosts.values_mut() {
            set_uptime(rec, sweep.now);
        }
        out
    }

    /// One host that answered: found under its identity, or taken over from
    /// the identity it had before (a device enrolled since, a random MAC
    /// that now announces a name).
    fn answered(
        &mut self,
        c: Classified,
        shared: &HashSet<String>,
        seen_keys: &mut HashSet<String>,
        (now, switches_failed): (i64, &[String]),
        out: &mut Fold,
    ) {
        let mut key = history_key(&c, shared);
        if seen_keys.contains(&key) {
            key = c.key.clone();
        }
        seen_keys.insert(key.clone());
        if !self.hosts.contains_key(&key) {
            let earlier = aliases(&c, shared)
                .into_iter()
                .filter(|a| *a != key && !seen_keys.contains(a))
                .find(|a| self.hosts.contains_key(a));
            if let Some(old) = earlier.and_then(|a| self.hosts.remove_entry(&a)) {
                out.removed.push(old.0);
                self.hosts.insert(key.clone(), old.1);
            }
        }
        let rec = self.hosts.entry(key.clone()).or_default();
        let prev = rec.host.take().unwrap_or_default();
        let mut h = c.host;
        h.key = key.clone();
        h.first_seen_unix = if prev.first_seen_unix == 0 {
            now
        } else {
            prev.first_seen_unix
        };
        h.last_seen_unix = now;
        h.missed_sweeps = 0;
        h.presence = Presence::Up as i32;
        let moved = prev.state != h.state || prev.ip != h.ip || prev.presence != h.presence;
        h.state_since_unix = if moved || prev.state_since_unix == 0 {
            now
        } else {
            prev.state_since_unix
        };
        h.presence_since_unix = prev.presence_since_unix;
        if h.switch_port.is_none()
            && prev.mac == h.mac
            && prev
                .switch_port
                .as_ref()
                .is_some_and(|p| switches_failed.contains(&p.switch))
        {
            // Its switch did not answer this sweep: its last port stands.
            h.switch_port = prev.switch_port.clone();
        }
        if h.probed_unix == 0 {
            // Carried over or shed: the last probe stands.
            h.probed_unix = prev.probed_unix;
        }
        if prev.presence != Presence::Up as i32 {
            out.transitions
                .push(transition(rec, &mut h, Presence::Up, now));
        }
        note_address(rec, &h.mac, &h.ip, now);
        for a in &h.ipv6_addresses {
            note_address(rec, &h.mac, &a.ip, now);
        }
        h.ipv6_addresses = held_v6(rec, &h.mac, &c.listed6);
        count_hour(rec, now, true);
        h.macs_seen = macs_seen(rec);
        if moved {
            out.changed.push(h.clone());
        }
        rec.host = Some(h);
        out.written.push(key);
        out.answered += 1;
    }

    /// Database machines that never answered get a record, so that their
    /// missed sweeps count from the first.
    fn create_unseen_machines(&mut self, sweep: &Sweep<'_>, seen_keys: &HashSet<String>) {
        for m in sweep.unseen {
            let key = format!("machine:{}", m.name);
            if seen_keys.contains(&key) || self.hosts.contains_key(&key) {
                continue;
            }
            let host = DiscoveredHost {
                key: key.clone(),
                ..classify::unanswered(m, sweep.swept)
            };
            self.hosts.insert(
                key,
                HostHistory {
                    host: Some(host),
                    ..Default::default()
                },
            );
        }
    }

    /// Drops what retention, the database and the bounds no longer allow.
    fn expire(&mut self, sweep: &Sweep<'_>, rules: &Rules, out: &mut Fold) {
        let cutoff = sweep.now - rules.retention.as_secs() as i64;
        let gone: Vec<String> = self
            .hosts
            .iter()
            .filter(|(key, rec)| match machine_key(key) {
                Some(name) => !(sweep.in_db)(name),
                None => host(rec).last_seen_unix.max(host(rec).first_seen_unix) < cutoff,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.hosts.remove(&k);
            out.removed.push(k);
        }
        if self.hosts.len() > MAX_HOSTS {
            let mut by_age: Vec<(i64, String)> = self
                .hosts
                .iter()
                .filter(|(k, _)| machine_key(k).is_none())
                .map(|(k, r)| (host(r).last_seen_unix, k.clone()))
                .collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(self.hosts.len() - MAX_HOSTS) {
                self.hosts.remove(&k);
                out.removed.push(k);
            }
        }
        for rec in self.hosts.values_mut() {
            trim(rec, cutoff, sweep.now);
        }
    }
}

/// A host that did not answer a sweep that covered it.
fn missed(key: &str, rec: &mut HostHistory, rules: &Rules, now: i64, out: &mut Fold) {
    count_hour(rec, now, false);
    let Some(mut h) = rec.host.take() else { return };
    h.missed_sweeps += 1;
    let mut changed = false;
    if h.presence != Presence::Down as i32 && h.missed_sweeps >= rules.down_after.max(1) {
        h.presence = Presence::Down as i32;
        h.state_since_unix = now;
        out.transitions
            .push(transition(rec, &mut h, Presence::Down, now));
        changed = true;
    }
    if machine_key(key).is_some() {
        changed |= judge_missing(&mut h, rec, rules, now);
    }
    if changed {
        out.changed.push(h.clone());
    }
    rec.host = Some(h);
    out.written.push(key.to_string());
}

/// Whether a database machine that does not answer is `missing` now; the
/// detail says for how long.
fn judge_missing(h: &mut DiscoveredHost, rec: &HostHistory, rules: &Rules, now: i64) -> bool {
    let down_since = rec
        .transitions
        .last()
        .filter(|t| t.presence == Presence::Down as i32)
        .map(|t| t.at_unix);
    let due = match rules.missing_after {
        MissingAfter::Sweeps(n) => h.missed_sweeps >= n,
        MissingAfter::Down(d) => down_since.is_some_and(|t| now - t >= d.as_secs() as i64),
    };
    if !due {
        return false;
    }
    h.detail = format!("not seen for {} sweeps", h.missed_sweeps);
    if let Some(p) = &h.switch_port {
        h.detail += &format!("; last seen on {}", crate::export::view::port_words(p));
    }
    if h.state == HostState::Missing as i32 {
        return false;
    }
    h.state = HostState::Missing as i32;
    h.state_since_unix = now;
    true
}

fn transition(
    rec: &mut HostHistory,
    h: &mut DiscoveredHost,
    to: Presence,
    now: i64,
) -> PresenceTransition {
    h.presence_since_unix = now;
    let t = PresenceTransition {
        key: h.key.clone(),
        presence: to as i32,
        at_unix: now,
        ip: h.ip.clone(),
        machine: h.machine.clone(),
    };
    rec.transitions.push(t.clone());
    t
}

fn host(r: &HostHistory) -> &DiscoveredHost {
    static EMPTY: std::sync::LazyLock<DiscoveredHost> =
        std::sync::LazyLock::new(DiscoveredHost::default);
    r.host.as_ref().unwrap_or(&EMPTY)
}

/// Seen at least once, or a machine found missing.
fn listed(h: &DiscoveredHost) -> bool {
    h.last_seen_unix > 0 || h.state == HostState::Missing as i32
}

/// Address order (IPv4 before IPv6), then machine name.
pub fn by_address(a: &DiscoveredHost, b: &DiscoveredHost) -> std::cmp::Ordering {
    sort_key(&a.ip)
        .cmp(&sort_key(&b.ip))
        .then(a.machine.cmp(&b.machine))
        .then(a.key.cmp(&b.key))
}

fn sort_key(ip: &str) -> (u8, u128) {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => (4, u32::from(a) as u128),
        Ok(IpAddr::V6(a)) => (6, u128::from(a)),
        Err(_) => (9, 0),
    }
}

#[cfg(test)]
mod tests;
