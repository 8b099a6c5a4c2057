//! The fault suite, the remote's side: a remote that vanishes (with 2,000
//! lookups running), a restart during the outage, an outage across the
//! hourly resync, remotes that hang or drip, and the cap on fetch threads
//! left stuck. Each case runs the real `mdb serve` and prints its figure.

use crate::util;

use std::time::{Duration, Instant};

use mdb::proto::GetMachineRequest;
use util::{metric, process::ServeProcess, TestRepo};

const DEMO_MACHINE: &str = "devbox";

/// Moves the bare repository away, as an outage would, and back.
struct Outage {
    path: std::path::PathBuf,
    away: std::path::PathBuf,
}

impl Outage {
    fn begin(repo: &TestRepo) -> Outage {
        let path = repo.path();
        let away = path.with_extension("gone");
        std::fs::rename(&path, &away).expect("remote away");
        Outage { path, away }
    }

    fn end(self) {
        std::fs::rename(&self.away, &self.path).expect("remote back");
    }
}

#[tokio::test]
async fn remote_removed_and_restored_while_2000_lookups_run_all_answered() {
    let repo = TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::for_repo(dir.path(), &repo.url(), &["--poll-interval", "100ms"]);
    server.wait_ready().await;
    let client = server.client().await;
    let mut outage = Some(Outage::begin(&repo));
    let mut ok = 0;
    for i in 0..2000 {
        if i == 1000 {
            // Half-way, the outage has been seen ...
            let started = Instant::now();
            while server.stats().await.last_sync_error.is_empty() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the outage shows in GetStats"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if i == 1500 {
            // ... and the remote comes back while lookups go on.
            outage.take().expect("outage").end();
        }
        let answer = client
            .clone()
            .get_machine(GetMachineRequest {
                key: DEMO_MACHINE.into(),
            })
            .await;
        if answer.is_ok() {
            ok += 1;
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let text = server.metrics_text().await;
    let errors = metric(&text, "mdb_sync_errors_total{kind=\"fetch\"}").unwrap_or(0.0);
    assert!(errors >= 1.0, "fetch errors were counted:\n{text}");
    let started = Instant::now();
    while !server.stats().await.last_sync_error.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sync recovers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ok, 2000);
    println!("FIGURE remote removed and restored: GetMachine {ok}/2000 answered (100.0 %), {errors} fetch errors counted");
}

#[tokio::test]
async fn restart_while_the_remote_is_missing_serves_the_last_good_revision() {
    let repo = TestRepo::with_demo();
    let good = repo.head.expect("head").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let checkout = dir.path().join("checkout");
    let url = repo.url();
    let args = [
        "--db-url",
        &url,
        "--checkout",
        checkout.to_str().expect("utf-8"),
        "--poll-interval",
        "100ms",
    ];
    let mut first = ServeProcess::start(dir.path(), &args);
    first.wait_ready().await;
    first.terminate();

    let outage = Outage::begin(&repo);
    let mut second = ServeProcess::start(dir.path(), &args);
    let ready_in = second.wait_ready().await;
    let s = second.stats().await;
    assert_eq!(s.revision, good);
    let mut ok = 0;
    for _ in 0..200 {
        if second
            .client()
            .await
            .get_machine(GetMachineRequest {
                key: DEMO_MACHINE.into(),
            })
            .await
            .is_ok()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 200);
    let started = Instant::now();
    while second.stats().await.last_sync_error.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(checkout.join(".git").exists(), "the checkout was kept");
    outage.end();
    println!("FIGURE restart during an outage: ready in {ready_in:?} on the last good revision, GetMachine {ok}/200 answered");
}

#[tokio::test]
async fn outage_across_the_hourly_resync_keeps_the_checkout() {
    let mut repo = TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::for_repo(
        dir.path(),
        &repo.url(),
        &["--poll-interval", "100ms", "--resync-interval", "300ms"],
    );
    server.wait_ready().await;
    // A file git knows nothing of inside .git: gone if the checkout is re-cloned.
    let marker = dir.path().join("checkout/.git/mdb-test-marker");
    std::fs::write(&marker, "x").expect("marker");
    let outage = Outage::begin(&repo);
    // Six failed fetches, each at least a poll apart, span two resyncs.
    let errors = |text: &str| metric(text, "mdb_sync_runs_total{result=\"error\"}").unwrap_or(0.0);
    let outage_began = Instant::now();
    while errors(&server.metrics_text().await) < 6.0 {
        assert!(
            outage_began.elapsed() < Duration::from_secs(30),
            "{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outage_lasted = outage_began.elapsed();
    outage.end();
    repo.write(
        "machines/extra.yaml",
        "machines:\n  - name: extra\n    ip: 198.18.10.77\n    use: games\n",
    );
    let next = repo.commit("after the outage").to_string();
    let started = Instant::now();
    while server.stats().await.revision != next {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = server.metrics_text().await;
    assert!(
        marker.exists(),
        "the checkout was deleted during the outage"
    );
    assert_eq!(metric(&text, "mdb_sync_reclones"), Some(0.0), "{text}");
    println!("FIGURE outage of {outage_lasted:?} (6 failed fetches, resync every 300 ms): checkout kept, 0 re-clones");
}

/// A remote speaking the start of git's smart-HTTP answer, then `drip`:
/// one byte per interval, or nothing at all.
async fn stalling_remote(drip: Option<Duration>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        let served = Instant::now();
        // Bounded: the remote stops itself after two minutes.
        while served.elapsed() < Duration::from_secs(120) {
            let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(120), listener.accept()).await
            else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let Some(every) = drip else {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    return;
                };
                let body = b"1e\r\n001e# service=git-upload-pack\n\r\n";
                for b in body.iter().cycle().take(120) {
                    if s.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    (format!("http://{addr}/db.git"), handle)
}

async fn stalling_remote_is_a_counted_timeout_and_exit_is_within_grace(
    case: &str,
    drip: Option<Duration>,
) {
    let (url, remote) = stalling_remote(drip).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("mdb.toml");
    std::fs::write(
        &cfg,
        "[db]\nfetch_timeout = \"2s\"\n[server]\nshutdown_grace = \"3s\"\n",
    )
    .expect("config");
    let checkout = dir.path().join("checkout");
    let mut server = ServeProcess::start(
        dir.path(),
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--db-url",
            &url,
            "--checkout",
            checkout.to_str().expect("utf-8"),
        ],
    );
    server.wait_listening().await;
    let started = Instant::now();
    loop {
        let text = server.metrics_text().await;
        if metric(&text, "mdb_sync_errors_total{kind=\"timeout\"}").unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no timeout counted:\n{text}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counted_after = started.elapsed();
    // SIGTERM while the next fetch is stuck again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (took, status) = server.terminate();
    assert!(status.success(), "{status}:\n{}", server.logs());
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?}, over the 3 s grace"
    );
    remote.abort();
    println!("FIGURE {case}: timeout counted after {counted_after:?} (fetch_timeout 2 s), exit in {took:?} (grace 3 s)");
}

#[tokio::test]
async fn dripping_remote_is_a_counted_timeout_and_exit_is_within_grace() {
    stalling_remote_is_a_counted_timeout_and_exit_is_within_grace(
        "dripping remote",
        Some(Duration::from_millis(500)),
    )
    .await;
}

#[tokio::test]
async fn hanging_remote_is_a_counted_timeout_and_exit_is_within_grace() {
    stalling_remote_is_a_counted_timeout_and_exit_is_within_grace("hanging remote", None).await;
}
