//! News out: what happens in the lab, told where people already look. The
//! scanner turns its own sweep events into [`Event`]s (a new device, an
//! address conflict, a database machine missing or back up) and hands each
//! to every sink that wants it: a generic webhook (JSON, signed with
//! HMAC-SHA256) or an ntfy topic. One message per event, not per sweep: a
//! ledger of what each sink was told lives next to the history and
//! survives restarts. Each sink has its own bounded queue, rate and
//! retries, so a sink that hangs or is down never slows a sweep.

pub mod deliver;
pub mod ledger;
pub mod metrics;
pub mod mqtt;
pub mod settings;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use crate::{
    db::{words::word_in, Store},
    proto::{DiscoveredHost, HostState, Presence, WatchEvent},
};
pub use settings::{Config, Sink, SinkKind};

/// What mdb tells about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    NewDevice,
    Conflict,
    MachineMissing,
    MachineBack,
    PullOpened,
    PullMerged,
    ProvisionFailed,
    ProvisionRecovered,
}

/// Event kinds as config, JSON and ntfy tags spell them.
pub const EVENT_KINDS: &[(&str, EventKind)] = &[
    ("new_device", EventKind::NewDevice),
    ("conflict", EventKind::Conflict),
    ("machine_missing", EventKind::MachineMissing),
    ("machine_back", EventKind::MachineBack),
    ("pull_opened", EventKind::PullOpened),
    ("pull_merged", EventKind::PullMerged),
    ("provision_failed", EventKind::ProvisionFailed),
    ("provision_recovered", EventKind::ProvisionRecovered),
];

/// How the filer and the runner tell what they do (sweep events come from
/// the store): a handle the daemon's wiring gives them. The default one
/// tells no one (no `[[notify]]`).
#[derive(Clone, Debug, Default)]
pub struct Announcer(Option<tokio::sync::broadcast::Sender<Event>>);

/// What an [`Announcer`] tells, for [`run`] to hand to the sinks.
pub struct Announcements(tokio::sync::broadcast::Receiver<Event>);

/// Events announced and not yet taken by the sinks' task, at most.
const ANNOUNCED: usize = 256;

/// A connected pair: what the announcer tells, the announcements carry.
pub fn announcer() -> (Announcer, Announcements) {
    let (tx, rx) = tokio::sync::broadcast::channel(ANNOUNCED);
    (Announcer(Some(tx)), Announcements(rx))
}

impl Announcer {
    /// Tells the sinks about `event` (if any listen).
    pub fn announce(&self, event: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(event);
        }
    }
}

impl Event {
    /// An event about a target that is no host: a pull request, a run.
    pub fn about(kind: EventKind, key: String, title: String, machine: &str) -> Event {
        Event {
            kind,
            key: format!("{}:{key}", kind.word()),
            title,
            at_unix: crate::db::store::now_unix(),
            ip: String::new(),
            mac: String::new(),
            machine: machine.to_string(),
        }
    }
}

impl EventKind {
    pub fn word(self) -> &'static str {
        word_in(EVENT_KINDS, self)
    }
}

/// One thing that happened, once.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Its identity across sweeps and restarts: a sink is told of one key
    /// once.
    pub key: String,
    /// One line for people (device text in it is cleaned where captured).
    pub title: String,
    pub at_unix: i64,
    pub ip: String,
    pub mac: String,
    pub machine: String,
}

/// The events one sweep's news carries.
pub fn events_of(ev: &WatchEvent) -> Vec<Event> {
    let mut out = Vec::new();
    for h in &ev.discovered {
        let kind = match HostState::try_from(h.state) {
            Ok(HostState::New) => EventKind::NewDevice,
            Ok(HostState::Conflict) => EventKind::Conflict,
            Ok(HostState::Missing) => EventKind::MachineMissing,
            _ => continue,
        };
        // A new device is news once; a conflict or an absence once per
        // time it starts.
        let key = match kind {
            EventKind::NewDevice => format!("{}:{}", kind.word(), h.key),
            _ => format!("{}:{}:{}", kind.word(), h.key, h.state_since_unix),
        };
        out.push(event(kind, key, h, title_of(kind, h)));
    }
    for t in ev.transitions.iter().filter(|t| !t.machine.is_empty()) {
        // Up at its first sighting is no return.
        let returned = ev
            .discovered
            .iter()
            .find(|h| h.key == t.key)
            .is_some_and(|h| h.first_seen_unix != 0 && h.first_seen_unix < t.at_unix);
        if t.presence == Presence::Up as i32 && returned {
            let kind = EventKind::MachineBack;
            out.push(Event {
                kind,
                key: format!("{}:{}:{}", kind.word(), t.key, t.at_unix),
                title: format!("{} is back up at {}", t.machine, t.ip),
                at_unix: t.at_unix,
                ip: t.ip.clone(),
                mac: String::new(),
                machine: t.machine.clone(),
            });
        }
    }
    out
}

fn event(kind: EventKind, key: String, h: &DiscoveredHost, title: String) -> Event {
    Event {
        kind,
        key,
        title,
        at_unix: h.state_since_unix.max(h.last_seen_unix),
        ip: h.ip.clone(),
        mac: h.mac.clone(),
        machine: h.machine.clone(),
    }
}

fn title_of(kind: EventKind, h: &DiscoveredHost) -> String {
    let name = crate::export::names::described(h, crate::db::words::DEFAULT_NAME_ORDER);
    let what = if name.is_empty() {
        h.vendor.clone()
    } else {
        name
    };
    match kind {
        EventKind::NewDevice => format!("New device {} {} {what}", h.ip, h.mac),
        EventKind::Conflict => format!("Address conflict at {}: {}", h.ip, h.detail),
        EventKind::MachineMissing => format!("{} is missing (last at {})", h.machine, h.ip),
        EventKind::MachineBack => format!("{} is back up at {}", h.machine, h.ip),
        _ => format!("{} {}", kind.word(), h.ip),
    }
}

/// Follows the store's sweep events and what is announced, and hands each
/// event to every sink that wants it, until cancelled. Each sink's task
/// joins `tasks`, so the daemon's drain waits for it.
pub async fn run(
    cfg: Config,
    store: Option<Arc<Store>>,
    Announcements(mut announced): Announcements,
    metrics: deliver::NotifyMetrics,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let ledger = Arc::new(ledger::Ledger::open(cfg.ledger.clone()));
    let mut queues = Vec::new();
    for sink in cfg.sinks {
        if let SinkKind::Mqtt(broker) = &sink.kind {
            if let Some(store) = &store {
                tasks.spawn(mqtt::run(
                    sink.name.clone(),
                    broker.clone(),
                    sink.tls.clone(),
                    store.clone(),
                    metrics.clone(),
                    shutdown.child_token(),
                ));
            }
            continue;
        }
        let (tx, rx) = mpsc::channel(deliver::QUEUE);
        let name = sink.name.clone();
        let kinds = sink.events.clone();
        tasks.spawn(deliver::run(
            sink,
            rx,
            ledger.clone(),
            metrics.clone(),
            shutdown.child_token(),
        ));
        queues.push((name, kinds, tx));
    }
    use tokio::sync::broadcast::error::RecvError;
    let mut sweeps = store.as_ref().map(|s| s.subscribe());
    let mut announcing = true;
    loop {
        let next_sweep = async {
            match sweeps.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let found: Vec<Event> = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = next_sweep => match r {
                Ok(ev) => events_of(&ev),
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "notifications fell behind the sweeps; some events were not told");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            r = announced.recv(), if announcing => match r {
                Ok(e) => vec![e],
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "notifications fell behind; some events were not told");
                    continue;
                }
                // Nothing announces (no filer): the sweeps still do.
                Err(RecvError::Closed) => {
                    announcing = false;
                    continue;
                }
            },
        };
        for e in found {
            for (name, kinds, tx) in &queues {
                if !kinds.contains(&e.kind) || ledger.told(name, &e.key) {
                    continue;
                }
                if tx.try_send(e.clone()).is_err() {
                    metrics.dropped(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PresenceTransition;

    #[test]
    fn a_sweep_gives_one_event_per_new_device_conflict_absence_and_return() {
        let host = |state: HostState, key: &str| DiscoveredHost {
            state: state as i32,
            key: key.into(),
            ip: "198.18.0.5".into(),
            state_since_unix: 100,
            ..Default::default()
        };
        let ev = WatchEvent {
            discovered: vec![
                host(HostState::New, "mac:aa"),
                host(HostState::Conflict, "ip:198.18.0.5"),
                host(HostState::Missing, "machine:nas"),
                DiscoveredHost {
                    first_seen_unix: 50,
                    ..host(HostState::Known, "machine:pi")
                },
            ],
            transitions: vec![
                PresenceTransition {
                    key: "machine:nas".into(),
                    presence: Presence::Up as i32,
                    at_unix: 100,
                    ip: "198.18.0.5".into(),
                    machine: "nas".into(),
                },
                PresenceTransition {
                    key: "machine:pi".into(),
                    presence: Presence::Up as i32,
                    at_unix: 200,
                    ip: "198.18.0.6".into(),
                    machine: "pi".into(),
                },
                PresenceTransition {
                    key: "mac:bb".into(),
                    presence: Presence::Up as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let keys: Vec<String> = events_of(&ev).into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "new_device:mac:aa",
                "conflict:ip:198.18.0.5:100",
                "machine_missing:machine:nas:100",
                "machine_back:machine:pi:200"
            ]
        );
    }
}
