//! The Watch stream of one client: the revision (whole, when asked), then
//! every change as the store broadcasts it, cut into messages of a size
//! tonic takes; a client that fell behind gets the whole revision again,
//! marked whole, so it drops what it holds and misses no removal.
//!
//! Bounded per client: a whole revision is cut from the shared snapshot as
//! it is sent (never copied whole), a task feeds at most [`QUEUE`] messages
//! ahead of what the client read, and a client that reads nothing for
//! [`SLOW_CLIENT`] is dropped, told why. The server holds at most
//! `MAX_WATCHES` streams (`Api`).

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{
    db::{self, Snapshot, Store},
    proto::{WatchEvent, WatchRequest},
};

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

/// Messages made ahead of what the client has read, at most: each is made
/// only once there is room for it.
pub const QUEUE: usize = 2;
/// A client that takes no message for this long is dropped.
pub const SLOW_CLIENT: Duration = Duration::from_secs(30);

/// What is still to be sent: a whole revision, cut as it goes, then events.
struct Pending {
    whole: Option<(Arc<Snapshot>, usize)>,
    events: VecDeque<WatchEvent>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.whole.is_none() && self.events.is_empty()
    }

    fn next(&mut self) -> Option<WatchEvent> {
        if let Some((snap, at)) = self.whole.take() {
            let end = (at + WATCH_CHUNK).min(snap.machines.len());
            let ev = WatchEvent {
                revision: snap.revision.clone(),
                changed: snap.machines[at..end].to_vec(),
                whole: at == 0,
                more: end < snap.machines.len(),
                ..Default::default()
            };
            if end < snap.machines.len() {
                self.whole = Some((snap, end));
            }
            return Some(ev);
        }
        self.events.pop_front()
    }

    /// The whole revision of `snap` next, in place of what was pending.
    fn restart(&mut self, snap: Arc<Snapshot>) {
        self.events.clear();
        self.whole = Some((snap, 0));
    }
}

/// The stream of one Watch from `first` on; `rx` was subscribed to the
/// store before `first` was read, so no revision falls between the two.
/// `slot` is this stream's place among the server's, held while it runs;
/// `dropped` is told when a slow client is dropped.
pub fn stream(
    opts: WatchRequest,
    mut rx: tokio::sync::broadcast::Receiver<Arc<WatchEvent>>,
    first: Arc<Snapshot>,
    store: Arc<Store>,
    shutdown: CancellationToken,
    slot: tokio::sync::OwnedSemaphorePermit,
    dropped: impl Fn() + Send + 'static,
) -> WatchStream {
    let mut pending = Pending {
        whole: None,
        events: VecDeque::new(),
    };
    if opts.initial_snapshot {
        pending.whole = Some((first, 0));
    } else {
        pending.events.push_back(WatchEvent {
            revision: first.revision.clone(),
            ..Default::default()
        });
    }
    let (tx, out) = tokio::sync::mpsc::channel::<WatchEvent>(QUEUE);
    let reason: Arc<std::sync::Mutex<Option<Status>>> = Arc::default();
    let why = reason.clone();
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            while !pending.is_empty() {
                match tokio::time::timeout(SLOW_CLIENT, tx.reserve()).await {
                    Ok(Ok(place)) => {
                        if let Some(ev) = pending.next() {
                            place.send(ev);
                        }
                    }
                    // The client is gone.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        dropped();
                        if let Ok(mut w) = why.lock() {
                            *w = Some(Status::resource_exhausted(format!(
                                "this Watch was not read for {SLOW_CLIENT:?}; dropped"
                            )));
                        }
                        return;
                    }
                }
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = rx.recv() => r,
            };
            match next {
                Ok(ev) => {
                    if let Some(ev) = for_client(&ev, &opts) {
                        pending.events.extend(chunks(ev));
                    }
                }
                // Fell behind: start over from the whole current revision.
                Err(RecvError::Lagged(_)) => match store.snapshot() {
                    Some(s) => pending.restart(s),
                    None => return,
                },
                Err(RecvError::Closed) => return,
            }
        }
    });
    let told = futures::stream::once(async move { reason.lock().ok().and_then(|mut r| r.take()) })
        .filter_map(|r| async move { r.map(Err) });
    Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(out)
            .map(Ok)
            .chain(told),
    )
}

/// What of a broadcast event this client asked for: discovery only with
/// `discovery`.
fn for_client(ev: &WatchEvent, opts: &WatchRequest) -> Option<WatchEvent> {
    let is_discovery =
        ev.changed.is_empty() && ev.removed.is_empty() && db::store::carries_discovery(ev);
    if is_discovery && !opts.discovery {
        return None;
    }
    let mut ev = ev.clone();
    if !opts.discovery {
        ev.discovered.clear();
        ev.transitions.clear();
        ev.sweep = None;
        ev.histories.clear();
        ev.removed_hosts.clear();
        ev.histories_complete = false;
    }
    Some(ev)
}

/// Machines per Watch message: a whole 100k-machine revision in one
/// message would pass tonic's 4 MiB limit.
pub const WATCH_CHUNK: usize = 1000;

/// Cuts an event into messages of at most `WATCH_CHUNK` machines, all with
/// the same revision; removals, discovery and `whole` ride on the first,
/// and every message but the last says `more`.
pub fn chunks(mut ev: WatchEvent) -> Vec<WatchEvent> {
    if ev.changed.len() <= WATCH_CHUNK {
        return vec![ev];
    }
    let changed = std::mem::take(&mut ev.changed);
    let parts = changed.len().div_ceil(WATCH_CHUNK);
    let mut out: Vec<WatchEvent> = changed
        .chunks(WATCH_CHUNK)
        .enumerate()
        .map(|(i, c)| WatchEvent {
            revision: ev.revision.clone(),
            changed: c.to_vec(),
            more: i + 1 < parts,
            ..Default::default()
        })
        .collect();
    if let Some(first) = out.first_mut() {
        first.whole = ev.whole;
        first.removed = std::mem::take(&mut ev.removed);
        first.discovered = std::mem::take(&mut ev.discovered);
        first.transitions = std::mem::take(&mut ev.transitions);
        first.sweep = ev.sweep.take();
        first.histories = std::mem::take(&mut ev.histories);
        first.removed_hosts = std::mem::take(&mut ev.removed_hosts);
        first.histories_complete = ev.histories_complete;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{machine_db_server::MachineDb, Machine};
    use tonic::Request;

    fn machines(names: &[&str]) -> Vec<Machine> {
        names
            .iter()
            .map(|n| Machine {
                name: n.to_string(),
                ..Default::default()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_gets_the_whole_revision_marked_whole() {
        use futures::StreamExt;
        let store = Store::new();
        store.publish(Snapshot::new(
            "r1".into(),
            machines(&["a", "b"]),
            Default::default(),
        ));
        let registry = crate::metrics::registry();
        let api = super::super::Api::new(
            store.clone(),
            crate::serve::metrics::GrpcMetrics::register(&registry),
            CancellationToken::new(),
        );
        let req = Request::new(WatchRequest {
            initial_snapshot: true,
            discovery: false,
        });
        let mut stream = api.watch(req).await.expect("watch").into_inner();
        let first = stream.next().await.expect("first").expect("ok");
        assert!(first.whole && first.changed.len() == 2);
        // More revisions than the stream buffers while it is not read: b is
        // removed in one of those it misses.
        for i in 2..200 {
            let names: &[&str] = if i < 100 { &["a", "b"] } else { &["a"] };
            store.publish(Snapshot::new(
                format!("r{i}"),
                machines(names),
                Default::default(),
            ));
        }
        let next = stream.next().await.expect("next").expect("ok");
        assert!(next.whole, "a whole revision after the lag: {next:?}");
        assert_eq!(next.revision, "r199");
        assert_eq!(
            next.changed
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["a"],
            "what the follower holds is replaced, so b's removal is not lost"
        );
    }

    #[test]
    fn big_events_are_cut_into_messages_of_one_revision() {
        let m = |i: usize| Machine {
            name: format!("m{i}"),
            ..Default::default()
        };
        let ev = WatchEvent {
            revision: "r".into(),
            changed: (0..2500).map(m).collect(),
            removed: vec!["gone".into()],
            ..Default::default()
        };
        let parts = chunks(ev);
        assert_eq!(
            parts.iter().map(|p| p.changed.len()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert!(parts.iter().all(|p| p.revision == "r"));
        assert_eq!(
            parts.iter().map(|p| p.more).collect::<Vec<_>>(),
            [true, true, false],
            "only the last piece completes the revision"
        );
        assert_eq!(parts[0].removed, ["gone"]);
        assert_eq!(parts[2].changed[499].name, "m2499");
    }
}
