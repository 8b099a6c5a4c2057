//! The fault suite, the serving side: SIGTERM with streams open, idle
//! connections, configuration that exits 64, broken pipes, logs off a
//! terminal, hostile keys over gRPC, a CLI that fails in one line.

use crate::util;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mdb::proto::{GetMachineRequest, GetStatsRequest, WatchRequest};
use util::{process::ServeProcess, TestRepo};

const DEMO_MACHINE: &str = "devbox";

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

/// SIGTERM turns health NOT_SERVING at once, before the drain: a load
/// balancer watching health stops sending work while streams finish.
#[tokio::test]
async fn sigterm_turns_health_not_serving_before_the_drain() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let repo = TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("mdb.toml");
    std::fs::write(&cfg, "[server]\nshutdown_grace = \"4s\"\n").expect("config");
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
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "mdb.v1.MachineDb".into(),
        })
        .await
        .expect("health watch")
        .into_inner();
    let first = health.message().await.expect("a status").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    // A Watch stream keeps the server draining for a while after SIGTERM.
    let mut stream = server
        .client()
        .await
        .watch(WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let _ = stream.message().await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid(), libc::SIGTERM);
    }
    let next = tokio::time::timeout(Duration::from_secs(2), health.message())
        .await
        .expect("health changes within 2 s of SIGTERM")
        .expect("the health stream")
        .expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32, "{next:?}");
    let (took, status) = server.terminate();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
}
