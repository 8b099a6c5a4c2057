//! The fault suite: hostile commits, remotes that vanish, hang or drip,
//! restarts during outages, shutdown under load, idle connections and bad
//! input. Each case runs the real `mdb serve` against a real bare repository
//! and prints its figure (peak RSS, time to exit, success rate).

mod util;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use git2::{Oid, Repository};
use mdb::proto::{GetMachineRequest, GetStatsRequest, WatchRequest};
use util::{metric, process::ServeProcess, TestRepo};

const DEMO_MACHINE: &str = "devbox";
/// Memory a refused commit may cost the server, peak (the demo itself
/// needs ~20 MiB).
const PEAK_RSS_LIMIT_MIB: f64 = 200.0;

/// Commits one file under `path` with raw `bytes` and `mode` (a blob or a
/// link) on top of the repository's head, as a push would.
fn commit_raw(repo: &mut TestRepo, path: &str, bytes: &[u8], mode: i32) -> Oid {
    let r: &Repository = &repo.repo;
    let head = repo.head.expect("a head to build on");
    let parent = r.find_commit(head).expect("head commit");
    let root = parent.tree().expect("tree");
    let blob = r.blob(bytes).expect("blob");
    let (dir, name) = path.split_once('/').expect("a file inside a folder");
    let sub = root.get_name(dir).and_then(|e| r.find_tree(e.id()).ok());
    let mut sub_builder = r.treebuilder(sub.as_ref()).expect("treebuilder");
    sub_builder.insert(name, blob, mode).expect("insert");
    let sub_id = sub_builder.write().expect("write");
    let mut root_builder = r.treebuilder(Some(&root)).expect("treebuilder");
    root_builder.insert(dir, sub_id, 0o040000).expect("insert");
    let tree = r
        .find_tree(root_builder.write().expect("write"))
        .expect("tree");
    let sig = git2::Signature::now("t", "t@localhost").expect("sig");
    let oid = r
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "hostile",
            &tree,
            &[&parent],
        )
        .expect("commit");
    repo.head = Some(oid);
    oid
}

async fn stats(server: &ServeProcess) -> mdb::proto::Stats {
    server
        .client()
        .await
        .get_stats(GetStatsRequest::default())
        .await
        .expect("GetStats")
        .into_inner()
}

/// A bad commit on top of the demo: the server reports `expect`, keeps
/// serving the demo revision, and stays under the memory limit; `mdb
/// validate` on a checkout of it says the same in bounded time.
async fn bad_commit_is_refused(case: &str, path: &str, bytes: &[u8], mode: i32, expect: &str) {
    bad_commit_with(case, path, bytes, mode, expect, &[]).await;
}

async fn bad_commit_with(
    case: &str,
    path: &str,
    bytes: &[u8],
    mode: i32,
    expect: &str,
    extra: &[&str],
) {
    let mut repo = TestRepo::with_demo();
    let good = repo.head.expect("head").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let checkout = dir.path().join("checkout");
    let url = repo.url();
    let mut args = vec![
        "--db-url",
        url.as_str(),
        "--checkout",
        checkout.to_str().expect("utf-8"),
        "--poll-interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    let mut server = ServeProcess::start(dir.path(), &args);
    server.wait_ready().await;
    commit_raw(&mut repo, path, bytes, mode);

    let started = Instant::now();
    let mut last = String::new();
    while !last.contains(expect) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{case}: no {expect:?} in the sync error {last:?}:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = stats(&server).await.last_sync_error;
    }
    let s = stats(&server).await;
    assert_eq!(
        s.revision, good,
        "{case}: still serving the last good revision"
    );
    let m = server
        .client()
        .await
        .get_machine(GetMachineRequest {
            key: DEMO_MACHINE.into(),
        })
        .await;
    assert!(m.is_ok(), "{case}: {m:?}");
    let peak = server.peak_rss_mib();
    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "{case}: the server died:\n{}",
        server.logs()
    );
    assert!(peak < PEAK_RSS_LIMIT_MIB, "{case}: peak RSS {peak:.0} MiB");
    println!(
        "FIGURE {case}: server peak RSS {peak:.1} MiB, refused in {:?}",
        started.elapsed()
    );

    let limits: Vec<&str> = if extra.contains(&"--config") {
        vec!["--max-repo-size", "64KiB"]
    } else {
        Vec::new()
    };
    let (code, out, secs) = validate_clone(&repo.url(), dir.path(), &limits);
    assert_eq!(
        code,
        Some(1),
        "{case}: mdb validate exit code; output:\n{out}"
    );
    assert!(out.contains(expect), "{case}: mdb validate said:\n{out}");
    println!("FIGURE {case}: mdb validate exit 1 in {secs:.2} s");
}

/// Clones `url` into `dir/clone` and runs `mdb validate` on it: exit code,
/// output, seconds.
fn validate_clone(url: &str, dir: &Path, extra: &[&str]) -> (Option<i32>, String, f64) {
    let clone = dir.join("clone");
    git2::build::RepoBuilder::new()
        .branch("main")
        .clone(url, &clone)
        .expect("clone");
    let started = Instant::now();
    let out = Command::new(util::bin())
        .arg("validate")
        .arg(&clone)
        .args(extra)
        .output()
        .expect("mdb validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, started.elapsed().as_secs_f64())
}

fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [\"x\"]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    text
}

const BLOB: i32 = 0o100644;
const LINK: i32 = 0o120000;

#[tokio::test]
async fn alias_bomb_commit_is_refused_and_the_last_good_revision_serves() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 1000, "a few hundred bytes: {}", bomb.len());
    bad_commit_is_refused(
        "alias bomb",
        "machines/bomb.yaml",
        bomb.as_bytes(),
        BLOB,
        "alias bomb",
    )
    .await;
}

#[tokio::test]
async fn deep_nesting_commit_is_refused_without_a_stack_overflow() {
    let deep = "- ".repeat(8000) + "x\n";
    bad_commit_is_refused(
        "deep nesting",
        "machines/deep.yaml",
        deep.as_bytes(),
        BLOB,
        "nested deeper than 64",
    )
    .await;
}

#[tokio::test]
async fn oversized_file_is_refused_before_it_is_read() {
    let big = "# padding\n".repeat(2 * 1024 * 1024); // 20 MiB > 16 MiB
    bad_commit_is_refused(
        "oversized file (20 MiB)",
        "machines/huge.yaml",
        big.as_bytes(),
        BLOB,
        "over the limit of 16777216",
    )
    .await;
}

#[tokio::test]
async fn oversized_repository_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("mdb.toml");
    std::fs::write(&cfg, "[db]\nmax_repo_size = \"64KiB\"\n").expect("config");
    let filler = "# padding\n".repeat(8 * 1024); // 80 KiB
    bad_commit_with(
        "oversized repository (80 KiB over a 64 KiB limit)",
        "machines/filler.yaml",
        filler.as_bytes(),
        BLOB,
        "max_repo_size",
        &["--config", cfg.to_str().expect("utf-8")],
    )
    .await;
}

#[tokio::test]
async fn binary_file_is_refused() {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    bad_commit_is_refused("binary file", "machines/blob.yaml", &bytes, BLOB, "binary").await;
}

#[tokio::test]
async fn symlink_is_refused_by_server_and_validate_alike() {
    // Valid YAML outside the repository: following the link would pass.
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("outside.yaml");
    std::fs::write(
        &target,
        "machines:\n  - name: sneaky\n    ip: 198.18.10.99\n    use: games\n",
    )
    .expect("write");
    bad_commit_is_refused(
        "symlink",
        "machines/link.yaml",
        target.to_str().expect("utf-8").as_bytes(),
        LINK,
        "symbolic link",
    )
    .await;
}

#[tokio::test]
async fn a_100k_problem_revision_gives_a_bounded_report_that_stats_can_carry() {
    let mut text = String::from("machines:\n");
    for i in 0..100_000 {
        text.push_str(&format!("  - {{name: m{i}, ip: bad, use: games}}\n"));
    }
    let mut repo = TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::for_repo(dir.path(), &repo.url(), &["--poll-interval", "200ms"]);
    server.wait_ready().await;
    commit_raw(&mut repo, "machines/bad.yaml", text.as_bytes(), BLOB);
    let started = Instant::now();
    let mut err = String::new();
    while !err.contains("more") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{err}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        err = stats(&server).await.last_sync_error;
    }
    assert!(
        err.len() < 16 * 1024,
        "the report in GetStats is {} bytes",
        err.len()
    );
    assert!(err.contains("100000 problems"), "{}", &err[..200]);
    // A few more polls of the same bad head: logged once, not per poll.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logs = server.logs();
    let warned = logs.matches("database sync failed").count();
    assert_eq!(
        warned,
        1,
        "the same failure is logged once:\n{}",
        &logs[..logs.len().min(4000)]
    );
    let out = Command::new(util::bin())
        .args(["stats", "--server", &format!("http://{}", server.grpc)])
        .output()
        .expect("mdb stats");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "FIGURE 100k problems: GetStats error {} bytes, log {} bytes, peak RSS {:.1} MiB",
        err.len(),
        logs.len(),
        server.peak_rss_mib()
    );
}

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
            while stats(&server).await.last_sync_error.is_empty() {
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
    while !stats(&server).await.last_sync_error.is_empty() {
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
    let s = stats(&second).await;
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
    while stats(&second).await.last_sync_error.is_empty() {
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    outage.end();
    repo.write(
        "machines/extra.yaml",
        "machines:\n  - name: extra\n    ip: 198.18.10.77\n    use: games\n",
    );
    let next = repo.commit("after the outage").to_string();
    let started = Instant::now();
    while stats(&server).await.revision != next {
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
    println!("FIGURE outage across 6 resyncs: checkout kept, 0 re-clones");
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

#[tokio::test]
async fn sigterm_with_open_and_unread_watch_streams_exits_within_grace() {
    let repo = TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("mdb.toml");
    std::fs::write(&cfg, "[server]\nshutdown_grace = \"3s\"\n").expect("config");
    let checkout = dir.path().join("checkout");
    let url = repo.url();
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
    server.wait_ready().await;
    let mut reading = Vec::new();
    for _ in 0..3 {
        let mut stream = server
            .client()
            .await
            .watch(WatchRequest {
                discovery: true,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let first = stream.message().await.expect("first event");
        assert!(first.is_some());
        reading.push(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {}
        }));
    }
    // Opened and never read.
    let unread = server
        .client()
        .await
        .watch(WatchRequest {
            discovery: true,
            ..Default::default()
        })
        .await
        .expect("watch");
    let (took, status) = server.terminate();
    assert!(status.success(), "{status}:\n{}", server.logs());
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    for r in reading {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    drop(unread);
    println!("FIGURE SIGTERM with 3 open and 1 unread Watch streams: exit in {took:?} (grace 3 s)");
}

fn raise_fd_limit(n: u64) {
    // SAFETY: plain get/setrlimit on our own process.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < n {
            l.rlim_cur = n.min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[tokio::test]
async fn a_thousand_idle_metrics_connections_do_not_starve_grpc() {
    raise_fd_limit(4096);
    let repo = TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServeProcess::for_repo(dir.path(), &repo.url(), &[]);
    server.wait_ready().await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(s) = tokio::net::TcpStream::connect(server.metrics).await {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds = server.open_fds();
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        server.client().await.get_machine(GetMachineRequest {
            key: DEMO_MACHINE.into(),
        }),
    )
    .await;
    let grpc_took = started.elapsed();
    assert!(
        matches!(answer, Ok(Ok(_))),
        "gRPC answers beside 1000 idle connections: {answer:?}"
    );
    assert!(fds < 400, "the server holds {fds} descriptors");
    // Metrics answer again once idle connections time out (5 s headers).
    let started = Instant::now();
    loop {
        if let Ok(Ok((200, _))) = tokio::time::timeout(
            Duration::from_secs(2),
            util::process::try_get(server.metrics, "/metrics"),
        )
        .await
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "metrics never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics_back = started.elapsed();
    drop(idle);
    println!("FIGURE 1000 idle metrics connections: GetMachine in {grpc_took:?}, server fds {fds}, /metrics answered after {metrics_back:?}");
}

fn serve_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(util::bin())
        .arg("serve")
        .args(args)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.2:0",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("mdb serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn token_in_the_url_exits_64_without_showing_it() {
    let (code, err) = serve_exit(&["--db-url", "https://x:ghp_topsecret@example.invalid/a.git"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(!err.contains("ghp_topsecret"), "{err}");
    assert!(err.contains("token_file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn absurd_durations_exit_64_not_101() {
    for bad in ["99999999999999999999h", "1e400", "-5s", "soon"] {
        let flag = format!("--poll-interval={bad}");
        let (code, err) = serve_exit(&["--db-url", "file:///nonexistent", &flag]);
        assert_eq!(code, Some(64), "{bad}: {err}");
        assert!(err.contains("poll_interval"), "{bad}: {err}");
    }
}

#[test]
fn broken_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    util::write_tree(dir.path(), mdb::demo::FILES);
    let mut child = Command::new(util::bin())
        .args(["inventory", "--list", "--db"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn logs_off_a_terminal_have_no_colour_and_json_lines_parse() {
    let (code, err) = serve_exit(&["--db-url", "https://x:t@example.invalid/a.git"]);
    assert_eq!(code, Some(64));
    assert!(!err.contains('\u{1b}'), "{err:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = TestRepo::with_demo();
    let checkout = dir.path().join("checkout");
    let url = repo.url();
    let mut server = ServeProcess::start(
        dir.path(),
        &[
            "--log-format",
            "json",
            "--db-url",
            &url,
            "--checkout",
            checkout.to_str().expect("utf-8"),
        ],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(server.wait_ready());
    server.terminate();
    let logs = server.logs();
    assert!(logs.lines().count() >= 2, "{logs}");
    for line in logs.lines() {
        assert!(!line.contains('\u{1b}'), "{line:?}");
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[tokio::test]
async fn bad_keys_and_unknown_enum_values_are_invalid_arguments_and_never_echoed() {
    use mdb::proto::{GetDiscoveredRequest, ListDiscoveredRequest, ListMachinesRequest};
    use tonic::Code;
    let repo = TestRepo::with_demo();
    let server = util::start_server(&repo.url(), "1h", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    let mut c = server.client().await;
    let empty = c
        .get_machine(GetMachineRequest { key: String::new() })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let huge = "k".repeat(1 << 20);
    let e = c
        .get_machine(GetMachineRequest { key: huge.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().len() < 200,
        "the key is not echoed: {} bytes",
        e.message().len()
    );
    let e = c
        .get_discovered(GetDiscoveredRequest { key: huge })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 200);
    let e = c
        .list_machines(ListMachinesRequest {
            r#use: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c
        .list_machines(ListMachinesRequest {
            provisioner: Some(42),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c
        .list_discovered(ListDiscoveredRequest { state: 77 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    server.stop().await;
}

#[tokio::test]
async fn get_stats_answers_before_the_first_load_with_the_sync_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().join("missing.git").display());
    let server = util::start_server(&url, "100ms", "1h").await;
    let mut c = server.client().await;
    let started = Instant::now();
    loop {
        let s = c
            .get_stats(GetStatsRequest::default())
            .await
            .expect("GetStats before any load");
        let s = s.into_inner();
        if !s.last_sync_error.is_empty() {
            assert_eq!(s.revision, "");
            assert!(
                s.last_sync_error.contains("missing.git"),
                "{}",
                s.last_sync_error
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn cli_errors_are_one_line_without_transport_internals() {
    let run = tokio::task::spawn_blocking(|| util::mdb(["get", "foo", "--server", "127.0.0.1:1"]))
        .await
        .expect("run")
        .code(1);
    assert_eq!(
        run.stderr,
        "mdb: cannot reach mdb at 127.0.0.1:1: connection refused (is `mdb serve` running there? see --server or MDB_SERVER)\n"
    );
    let repo = TestRepo::with_demo();
    let server = util::start_server(&repo.url(), "1h", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    let addr = server.grpc.to_string();
    let run = tokio::task::spawn_blocking(move || util::mdb(["get", "nope", "--server", &addr]))
        .await
        .expect("run")
        .code(1);
    assert_eq!(
        run.stderr,
        "mdb: no machine with name, IP or MAC \"nope\"\n"
    );
    server.stop().await;
}
