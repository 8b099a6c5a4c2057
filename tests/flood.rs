//! A flood on a real `mdb serve` of 5,000 machines: 340 Watch streams that
//! never read (40 from one address, 300 from ten others), and 200 `/events` connections from
//! seven loopback addresses that hold them. The Watch cap refuses what is
//! past it, `/events` past its cap and the port's connections past theirs
//! are refused or closed, and the liveness probe (from another address and
//! from an attacker's own) is answered on the slots kept for probes; a
//! fresh client's GetMachine still answers, and memory stays bounded.

use crate::util;

use std::{net::SocketAddr, time::Duration};

use mdb::proto::{machine_db_client::MachineDbClient, GetMachineRequest, WatchRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use util::process::ServeProcess;

const WATCHES: usize = 300;
const EVENT_STREAMS: usize = 200;

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// A GET of `path` from `from`: the status line's code and the time it
/// took, or why there was none.
async fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> Result<(u16, Duration), String> {
    let started = std::time::Instant::now();
    let mut c = connect_from(from, to).await.map_err(|e| e.to_string())?;
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: mdb\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut head))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let code = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    Ok((code, started.elapsed()))
}

/// An `/events` request from `from` that is never read past its status
/// line: the connection, and its status (none when it was refused).
async fn hold_events(
    from: [u8; 4],
    to: SocketAddr,
) -> (Option<tokio::net::TcpStream>, Option<u16>) {
    let Ok(mut c) = connect_from(from, to).await else {
        return (None, None);
    };
    if c.write_all(b"GET /events HTTP/1.1\r\nHost: mdb\r\n\r\n")
        .await
        .is_err()
    {
        return (None, None);
    }
    let mut head = [0u8; 12];
    match tokio::time::timeout(Duration::from_secs(3), c.read_exact(&mut head)).await {
        Ok(Ok(_)) => {
            let code = std::str::from_utf8(&head[9..12])
                .ok()
                .and_then(|c| c.parse().ok());
            (Some(c), code)
        }
        _ => (None, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_watch_streams_and_held_event_streams_starve_neither_probes_nor_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = util::TestRepo::new();
    for (p, t) in mdb::gen::database(5000, 1000) {
        repo.write(&p, &t);
    }
    repo.commit("5,000 machines");
    let mut s = ServeProcess::for_repo(dir.path(), &repo.url(), &[]);
    s.wait_ready().await;
    let rss_before = s.rss_mib();
    let url = format!("http://{}", s.grpc);

    // Watch streams, each asking for the whole revision, never read: 40
    // from one address (its cap is 32), then 300 from ten others.
    let mut held = Vec::new();
    let mut refused = 0;
    let open = |from: u8, n: usize| {
        let url = url.clone();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("url")
                .local_address(Some([127, 0, 0, from].into()))
                .connect()
                .await
                .expect("connect");
            let (mut taken, mut turned_away) = (Vec::new(), 0);
            for _ in 0..n {
                let mut c = MachineDbClient::new(channel.clone());
                let call = c.watch(WatchRequest {
                    initial_snapshot: true,
                    discovery: true,
                });
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(stream)) => taken.push(stream.into_inner()),
                    Ok(Err(status)) if status.code() == Code::ResourceExhausted => turned_away += 1,
                    other => panic!("a Watch neither taken nor refused: {other:?}"),
                }
            }
            (taken, turned_away)
        }
    };
    let (taken, turned_away) = open(50, 40).await;
    assert_eq!(
        (taken.len(), turned_away),
        (
            mdb::serve::api::MAX_WATCHES_PER_CLIENT,
            40 - mdb::serve::api::MAX_WATCHES_PER_CLIENT
        ),
        "one address's Watch streams are capped"
    );
    held.extend(taken);
    refused += turned_away;
    for from in 10..20 {
        let (taken, turned_away) = open(from, WATCHES / 10).await;
        held.extend(taken);
        refused += turned_away;
    }
    assert_eq!(
        held.len(),
        mdb::serve::api::MAX_WATCHES,
        "Watch streams taken"
    );
    assert_eq!(refused, 40 + WATCHES - mdb::serve::api::MAX_WATCHES);

    // Event streams from seven addresses, each under its per-address cap.
    let attackers: Vec<[u8; 4]> = (1..=7).map(|i| [127, 0, 0, i]).collect();
    let mut tasks = Vec::new();
    for i in 0..EVENT_STREAMS {
        let from = attackers[i % attackers.len()];
        tasks.push(tokio::spawn(hold_events(from, s.metrics)));
    }
    let mut streams = Vec::new();
    let (mut streaming, mut turned_away, mut dropped) = (0, 0, 0);
    for t in tasks {
        match t.await.expect("join") {
            (Some(c), Some(200)) => {
                streaming += 1;
                streams.push(c);
            }
            (Some(c), Some(503)) => {
                turned_away += 1;
                streams.push(c);
            }
            _ => dropped += 1,
        }
    }
    eprintln!(
        "FIGURE /events flood: {streaming} streaming, {turned_away} told 503, {dropped} refused"
    );
    assert_eq!(streaming, mdb::serve::web::MAX_EVENT_STREAMS);
    assert!(dropped > 0, "the port's connections are capped");

    // Probes: from an address of their own, and from an attacker's.
    let mut slowest = Duration::ZERO;
    for from in [[127, 0, 0, 8], [127, 0, 0, 1]] {
        for path in ["/healthz", "/readyz"] {
            for _ in 0..5 {
                let (code, took) = get_from(from, s.metrics, path)
                    .await
                    .unwrap_or_else(|e| panic!("{path} from {from:?}: {e}"));
                assert_eq!(code, 200, "{path} from {from:?}");
                slowest = slowest.max(took);
            }
        }
    }
    // The page is not answered on a probe's slot.
    let (page, _) = get_from([127, 0, 0, 8], s.metrics, "/")
        .await
        .expect("an answer");
    assert_eq!(page, 503);
    // A fresh client still reads.
    let started = std::time::Instant::now();
    let mut c = MachineDbClient::connect(url.clone())
        .await
        .expect("connect");
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        c.get_machine(GetMachineRequest {
            key: "198.18.0.1".into(),
        }),
    )
    .await
    .expect("GetMachine in time")
    .expect("GetMachine")
    .into_inner();
    assert!(!m.name.is_empty());
    let get_machine = started.elapsed();
    let (rss, peak) = (s.rss_mib(), s.peak_rss_mib());
    eprintln!(
        "FIGURE flood of {} unread Watch + {EVENT_STREAMS} /events: slowest probe {slowest:?}, GetMachine {get_machine:?}, RSS {rss_before:.0} -> {rss:.0} MiB (peak {peak:.0} MiB)",
        40 + WATCHES
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a probe took {slowest:?}"
    );
    assert!(peak < 200.0, "held {peak:.0} MiB");

    // Once the streams go, the refusals are counted.
    drop(streams);
    drop(held);
    let text = util::wait_for("the port to be free again", 30, || {
        let addr = s.metrics;
        let text = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(util::process::try_get(addr, "/metrics"))
        })
        .join()
        .expect("thread");
        match text {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    });
    assert_eq!(
        util::metric(&text, "mdb_grpc_watch_refused_total{reason=\"limit\"}"),
        Some(refused as f64)
    );
}

/// One address holds at most `MAX_CONNECTIONS_PER_ADDRESS` connections of
/// the gRPC port, idle ones included: past them its connections are closed
/// at once, another address is served, and a closed one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_bounded_share_of_the_grpc_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = util::TestRepo::new();
    repo.write("machines/lab.yaml", "machines: []\n");
    repo.commit("empty");
    let mut s = ServeProcess::for_repo(dir.path(), &repo.url(), &[]);
    s.wait_ready().await;
    let cap = mdb::serve::MAX_CONNECTIONS_PER_ADDRESS;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(
            connect_from([127, 0, 0, 60], s.grpc)
                .await
                .expect("connect"),
        );
    }
    // Past the cap: accepted by the kernel, closed by mdb without a byte.
    let mut extra = connect_from([127, 0, 0, 60], s.grpc)
        .await
        .expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past the cap is closed at once: {read:?}"
    );
    // Another address is served, over gRPC.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .expect("url")
        .local_address(Some([127, 0, 0, 61].into()))
        .connect()
        .await
        .expect("another address connects");
    let stats = MachineDbClient::new(channel)
        .get_stats(mdb::proto::GetStatsRequest {})
        .await;
    assert!(stats.is_ok(), "{stats:?}");
    // One of the first closes: the address may connect again.
    drop(held.pop());
    let served = async {
        loop {
            let c = connect_from([127, 0, 0, 60], s.grpc)
                .await
                .expect("connect");
            let mut c = c;
            // An HTTP/2 preface: a connection mdb kept answers with SETTINGS.
            c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await
                .expect("preface");
            let mut frame = [0u8; 9];
            if tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut frame))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return frame[3];
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let kind = tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("the freed place is taken again");
    assert_eq!(kind, 4, "a SETTINGS frame");
    drop(held);
}
