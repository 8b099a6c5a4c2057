//! An API replica's discovery: it never sweeps, it mirrors its scanners
//! (one per network segment; `mirrors` merges them). It watches each
//! scanner's Watch stream and, on every sweep event, reads that scanner's
//! whole history again (`ListHostHistory`). While a scanner is away its
//! hosts keep their last state, marked stale, and it reconnects with
//! backoff. Everything a scanner sends is held to mdb's own forms
//! (`received`) and bounded (message size, pages, hosts, delta size);
//! past a bound the scanner is an error and its last view stays.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::mirrors::Mirrors;
use crate::{
    db::store::{carries_discovery, Discovery, DiscoverySource, News},
    proto::{machine_db_client::MachineDbClient, ListHostHistoryRequest, WatchEvent, WatchRequest},
};

/// Backoff between attempts to reach the scanner.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Each call to the scanner has this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The mirror is read whole again at least this often by default
/// (`server.mirror_refresh`: deltas carry no pulses, so uptime shares and
/// missed sweeps drift until then), and without any event for this long;
/// a dead connection is found by HTTP/2 keep-alive well before.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);
const PAGE: u32 = 1000;
/// Pages read at most per mirror.
const MAX_PAGES: usize = 1000;
/// The largest message taken from a scanner.
const MAX_MESSAGE: usize = 4 << 20;
/// The most history read from one scanner, encoded (a campus of 5,000
/// devices is a few MiB; a scanner's full store of 65,536 hosts fits):
/// decoded it is a few times larger, and the last view is kept while the
/// next is read, so a scanner holds at most a few hundred MiB of the
/// follower.
pub const MAX_VIEW_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scanner {0}: {1}")]
    Connect(String, String),
    #[error("scanner {0}: {1}")]
    Call(String, tonic::Status),
    #[error("scanner {0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("scanner {0} ended the Watch stream")]
    Ended(String),
    #[error("scanner {0}: more than {MAX_PAGES} pages, {max} hosts or {mib} MiB of history", max = super::received::MAX_HOSTS, mib = MAX_VIEW_BYTES >> 20)]
    TooLong(String),
    #[error("scanner {0}: a sweep event of more than {max} histories", max = super::history::MAX_DELTA)]
    DeltaTooLarge(String),
    #[error("scanner {0} files GitHub issues itself, and so does this process: two filers would file every device of its segment twice; remove [github] from one of them (this segment is not merged meanwhile)")]
    TwoFilers(String),
}

/// Follows `scanner` until cancelled.
pub async fn run(
    scanner: String,
    creds: crate::dial::Credentials,
    store: Arc<Mirrors>,
    shutdown: CancellationToken,
) {
    let mut wait = RETRY_MIN;
    let mut last_error = String::new();
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connection(&scanner, &creds, &store, &mut wait) => r,
        };
        store.stale(&scanner, true);
        if let Err(e) = outcome {
            let text = e.to_string();
            if text != last_error {
                warn!(error = %text, "discovery mirror lost its scanner; serving the last state, marked stale");
                last_error = text;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One connection: subscribe, read everything, then read again on every
/// sweep the scanner announces. Returns when the connection fails.
async fn connection(
    scanner: &str,
    creds: &crate::dial::Credentials,
    store: &Mirrors,
    wait: &mut Duration,
) -> Result<(), Error> {
    let mut client = connect(scanner, creds).await?;
    if store.files_github() {
        let stats = timed(scanner, client.get_stats(crate::proto::GetStatsRequest {}))
            .await?
            .into_inner();
        if stats.files_github {
            return Err(Error::TwoFilers(scanner.to_string()));
        }
    }
    // Subscribe first, so no sweep falls between the read and the stream.
    let mut events = timed(
        scanner,
        client.watch(WatchRequest {
            initial_snapshot: false,
            discovery: true,
        }),
    )
    .await?
    .into_inner();
    let mut at = mirror(scanner, &mut client, store, News::default()).await?;
    let mut read_whole = std::time::Instant::now();
    // What the deltas applied since the last whole read weighed: past the
    // bound of one read, everything is read again (and bounded) instead.
    let mut delta_bytes = 0usize;
    info!(scanner, "discovery mirror caught up");
    *wait = RETRY_MIN;
    loop {
        let next = tokio::time::timeout(store.refresh(), events.message()).await;
        match next {
            Err(_) => {
                at = mirror(scanner, &mut client, store, News::default()).await?;
                read_whole = std::time::Instant::now();
                delta_bytes = 0;
            }
            Ok(Ok(Some(ev))) if carries_discovery(&ev) => {
                // The next sweep of the same run, with its whole change:
                // applied. A gap, a restarted scanner or a partial event:
                // everything is read again.
                let next_in_line = ev
                    .sweep
                    .as_ref()
                    .zip(at)
                    .is_some_and(|(s, (epoch, seq))| s.epoch == epoch && s.seq == seq + 1);
                let max = super::history::MAX_DELTA;
                if ev.histories.len() > max
                    || ev.removed_hosts.len() > max
                    || ev.discovered.len() > max
                {
                    return Err(Error::DeltaTooLarge(scanner.to_string()));
                }
                delta_bytes += prost::Message::encoded_len(&ev);
                let ev = received(ev);
                let within = delta_bytes <= MAX_VIEW_BYTES
                    && store.hosts_of(scanner) + ev.histories.len() <= super::received::MAX_HOSTS;
                if next_in_line
                    && within
                    && ev.histories_complete
                    && read_whole.elapsed() < store.refresh()
                {
                    let sweep = ev.sweep.clone().unwrap_or_default();
                    at = Some((sweep.epoch, sweep.seq));
                    let delta = super::mirrors::Delta {
                        histories: ev.histories.clone(),
                        removed: ev.removed_hosts.clone(),
                        sweep,
                    };
                    store.apply(scanner, delta, news(ev));
                } else {
                    at = mirror(scanner, &mut client, store, news(ev)).await?;
                    read_whole = std::time::Instant::now();
                    delta_bytes = 0;
                }
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Err(Error::Ended(scanner.to_string())),
            Ok(Err(status)) => return Err(Error::Call(scanner.to_string(), status)),
        }
    }
}

async fn connect(
    scanner: &str,
    creds: &crate::dial::Credentials,
) -> Result<MachineDbClient<crate::dial::Conn>, Error> {
    crate::dial::warn_if_plaintext(scanner, "this API replica");
    let err = |e: String| Error::Connect(scanner.to_string(), e);
    creds
        .check_transport(scanner)
        .map_err(|e| err(e.to_string()))?;
    let endpoint = crate::dial::endpoint(scanner, None, creds.identity.as_ref())
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| err(e.to_string()))?;
    let conn = creds.on(channel).map_err(|e| err(e.to_string()))?;
    Ok(MachineDbClient::new(conn).max_decoding_message_size(MAX_MESSAGE))
}

/// A sweep event as mdb's own forms allow: hosts and histories that are
/// none are dropped, keys checked, summaries bounded.
fn received(mut ev: WatchEvent) -> WatchEvent {
    use super::received;
    ev.discovered = ev
        .discovered
        .into_iter()
        .filter_map(received::host)
        .collect();
    ev.histories = ev
        .histories
        .into_iter()
        .filter_map(received::history)
        .collect();
    ev.transitions = ev
        .transitions
        .into_iter()
        .filter_map(received::transition)
        .collect();
    ev.removed_hosts
        .retain(|k| k.len() <= 300 && !k.contains(char::is_control));
    ev.sweep = ev.sweep.map(received::sweep);
    ev
}

fn news(ev: WatchEvent) -> News {
    News {
        changed: ev.discovered,
        transitions: ev.transitions,
        sweep: ev.sweep,
        histories: ev.histories,
        removed_hosts: ev.removed_hosts,
        complete: ev.histories_complete,
    }
}

async fn timed<T>(
    scanner: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(s)) => Err(Error::Call(scanner.to_string(), s)),
        Err(_) => Err(Error::Timeout(scanner.to_string(), CALL_TIMEOUT)),
    }
}

/// Reads the scanner's whole history, page by page, and serves it; the run
/// and number of the scanner's last sweep (none before its first).
async fn mirror(
    scanner: &str,
    client: &mut MachineDbClient<crate::dial::Conn>,
    store: &Mirrors,
    news: News,
) -> Result<Option<(u64, u64)>, Error> {
    let mut histories = Vec::new();
    let mut sweeps = Vec::new();
    let mut as_of = 0;
    let mut reserved = std::collections::HashSet::new();
    let mut token = String::new();
    let mut bytes = 0;
    for page in 0.. {
        if page >= MAX_PAGES || bytes > MAX_VIEW_BYTES {
            return Err(Error::TooLong(scanner.to_string()));
        }
        let r = timed(
            scanner,
            client.list_host_history(ListHostHistoryRequest {
                page_size: PAGE,
                page_token: token.clone(),
            }),
        )
        .await?
        .into_inner();
        bytes += prost::Message::encoded_len(&r);
        histories.extend(r.hosts.into_iter().filter_map(super::received::history));
        if histories.len() > super::received::MAX_HOSTS {
            return Err(Error::TooLong(scanner.to_string()));
        }
        if page == 0 {
            sweeps = r
                .sweeps
                .into_iter()
                .take(super::history::store::RECENT_SWEEPS)
                .map(super::received::sweep)
                .collect();
            as_of = super::received::time(r.as_of_unix);
            reserved = super::received::reserved(&r.reserved, &sweeps);
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    super::received::scanner_claims(&mut histories, &sweeps);
    let source = DiscoverySource::Replica(scanner.to_string());
    let mut next = Discovery::of(histories, sweeps, source);
    next.last_sweep_unix = as_of;
    let at = next.sweeps.first().map(|s| (s.epoch, s.seq));
    store.set_reserved(scanner, reserved);
    store.update(scanner, next, news);
    Ok(at)
}
