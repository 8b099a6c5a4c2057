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
pub const QUEUE: usize = 1;
/// A client that takes no message for this long is dropped.
pub const SLOW_CLIENT: Duration = Duration::from_secs(30);

/// What is still to be sent: a whole revision, then broadcast events, each
/// shared with every other client and cut as it goes (how far it was sent
/// beside it), so a big change is never copied per client.
struct Pending {
    whole: Option<(Arc<Snapshot>, usize)>,
    events: VecDeque<(Arc<WatchEvent>, usize)>,
    opts: WatchRequest,
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
        let (ev, at) = self.events.pop_front()?;
        let (piece, next) = piece(&ev, at, self.opts.discovery);
        if let Some(next) = next {
            self.events.push_front((ev, next));
        }
        Some(piece)
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
    slot: impl Send + 'static,
    dropped: impl Fn() + Send + 'static,
) -> WatchStream {
    let mut pending = Pending {
        whole: None,
        events: VecDeque::new(),
        opts,
    };
    if opts.initial_snapshot {
        pending.whole = Some((first, 0));
    } else {
        let revision = WatchEvent {
            revision: first.revision.clone(),
            ..Default::default()
        };
        pending.events.push_back((Arc::new(revision), 0));
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
                Ok(ev) if wanted(&ev, &opts) => pending.events.push_back((ev, 0)),
                Ok(_) => {}
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

/// Whether this client asked for a broadcast event: one of discovery only
/// with `discovery`.
fn wanted(ev: &WatchEvent, opts: &WatchRequest) -> bool {
    let is_discovery =
        ev.changed.is_empty() && ev.removed.is_empty() && db::store::carries_discovery(ev);
    opts.discovery || !is_discovery
}

/// Machines per Watch message: a whole 100k-machine revision in one
/// message would pass tonic's 4 MiB limit.
pub const WATCH_CHUNK: usize = 250;

/// The message of `ev` whose machines start at `at`, at most `WATCH_CHUNK`
/// of them, all messages with the same revision; removals, `whole` and
/// (with `discovery`) the discovery ride on the first, and every message
/// but the last says `more`. Where the next message starts, if any.
fn piece(ev: &WatchEvent, at: usize, discovery: bool) -> (WatchEvent, Option<usize>) {
    let end = (at + WATCH_CHUNK).min(ev.changed.len());
    let more = end < ev.changed.len();
    let mut out = WatchEvent {
        revision: ev.revision.clone(),
        changed: ev.changed[at.min(end)..end].to_vec(),
        more,
        ..Default::default()
    };
    if at == 0 {
        out.whole = ev.whole;
        out.removed = ev.removed.clone();
        if discovery {
            out.discovered = ev.discovered.clone();
            out.transitions = ev.transitions.clone();
            out.sweep = ev.sweep.clone();
            out.histories = ev.histories.clone();
            out.removed_hosts = ev.removed_hosts.clone();
            out.histories_complete = ev.histories_complete;
        }
    }
    (out, more.then_some(end))
}

/// Every message of `ev`, as a client asking for discovery gets them.
pub fn chunks(ev: WatchEvent) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    let mut at = Some(0);
    while let Some(from) = at {
        let (p, next) = piece(&ev, from, true);
        out.push(p);
        at = next;
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
            changed: (0..2 * WATCH_CHUNK + 100).map(m).collect(),
            removed: vec!["gone".into()],
            ..Default::default()
        };
        let parts = chunks(ev);
        assert_eq!(
            parts.iter().map(|p| p.changed.len()).collect::<Vec<_>>(),
            [WATCH_CHUNK, WATCH_CHUNK, 100]
        );
        assert!(parts.iter().all(|p| p.revision == "r"));
        assert_eq!(
            parts.iter().map(|p| p.more).collect::<Vec<_>>(),
            [true, true, false],
            "only the last piece completes the revision"
        );
        assert_eq!(parts[0].removed, ["gone"]);
        assert_eq!(
            parts[2].changed[99].name,
            format!("m{}", 2 * WATCH_CHUNK + 99)
        );
        assert!(parts[1].removed.is_empty(), "removals ride on the first");
    }
}
