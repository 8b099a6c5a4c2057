//! The command line against a real server: the README's `mdb demo` and
//! what it suggests to try, `mdb list` and `mdb get` as tables and JSON, and
//! a bad configuration refused with exit 64 before any port is bound.

use crate::util;

use std::process::Command;

use util::demo_server;

/// The README's first command, `mdb demo`, answers what the README says to
/// try: list, get, discovered (its loopback sweep), the inventory, metrics,
/// the page and GetStats; and it leaves nothing behind.
#[tokio::test]
async fn the_demo_answers_every_command_the_readme_suggests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = util::process::ServeProcess::demo(dir.path());
    demo.wait_ready().await;
    let server = demo.grpc.to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &server]);
        util::mdb(&all).ok().stdout
    };
    assert!(cli(&["list"]).contains("alpha-w-1"));
    assert!(cli(&["get", "198.18.10.12"]).contains("alpha-w-1"));
    let inventory: serde_json::Value =
        serde_json::from_str(&cli(&["inventory", "--list"])).expect("inventory json");
    assert!(inventory["_meta"]["hostvars"]["alpha-w-1"].is_object());
    // The demo sweeps loopback only, and finds itself there.
    let started = std::time::Instant::now();
    let hosts = loop {
        let out = cli(&["discovered", "--json"]);
        let hosts: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        if !hosts.is_empty() {
            break hosts;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no sweep:\n{}",
            demo.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    for h in &hosts {
        let ip: std::net::IpAddr = h["ip"].as_str().unwrap_or("").parse().expect("an address");
        assert!(ip.is_loopback(), "the demo swept {ip}");
    }
    let (code, metrics) = util::http_get(demo.metrics, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        util::metric(&metrics, "mdb_machines").is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    let (code, page) = util::http_get(demo.metrics, "/").await;
    assert_eq!(code, 200);
    assert!(page.contains("alpha"), "{page}");
    let stats = demo.stats().await;
    assert!(
        stats.machines > 0 && !stats.revision.is_empty(),
        "{stats:?}"
    );
    let (_, status) = demo.terminate();
    assert!(status.success(), "{status}:\n{}", demo.logs());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mdb-demo-"))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[tokio::test]
async fn list_and_get_commands_print_tables_and_json() {
    let (_repo, server) = demo_server().await;
    let addr = server.grpc.to_string();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(util::bin()).args(args).output().expect("run")
        })
    };
    let out = run(vec![
        "list".into(),
        "--server".into(),
        addr.clone(),
        "--use".into(),
        "cluster".into(),
    ])
    .await
    .expect("join");
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.lines().count(), 6, "{table}");
    let out = run(vec![
        "get".into(),
        "dc:a6:32:10:00:13".into(),
        "--server".into(),
        addr.clone(),
        "--json".into(),
    ])
    .await
    .expect("join");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["name"], "alpha-w-2");
    assert_eq!(v["use"]["role"], "worker");
    let a = addr.clone();
    let text = tokio::task::spawn_blocking(move || {
        util::mdb(["get", "alpha-w-2", "--server", &a]).ok().stdout
    })
    .await
    .expect("join");
    for line in [
        "name         alpha-w-2",
        "mac          dc:a6:32:10:00:13",
        "use          cluster alpha (worker)",
        "defined in   machines/clusters.yaml:",
        "discovery    not seen by the sweeps",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let a = addr.clone();
    let text =
        tokio::task::spawn_blocking(move || util::mdb(["stats", "--server", &a]).ok().stdout)
            .await
            .expect("join");
    for line in [
        "revision    ",
        "synced      20",
        "machines    11",
        "last sweep  never",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let out = run(vec![
        "get".into(),
        "missing".into(),
        "--server".into(),
        addr,
    ])
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no machine"));
    server.stop().await;
}

#[tokio::test]
async fn bad_config_exits_64_with_one_line() {
    let out = tokio::task::spawn_blocking(|| {
        Command::new(util::bin())
            .args([
                "serve",
                "--db-url",
                "file:///nowhere",
                "--poll-interval",
                "soon",
            ])
            .env_remove("MDB_DB_URL")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("poll_interval"), "{err}");
}
