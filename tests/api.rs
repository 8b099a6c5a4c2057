//! The read-only gRPC API over a real socket, its metrics checked by
//! promtool, and a Python client that knows the API only by reflection.

use crate::util;

use std::process::Command;

use mdb::proto::{
    GetClusterRequest, GetMachineRequest, ListClustersRequest, ListMachinesRequest, Provisioner,
    UseKind,
};
use tonic::Code;
use util::{demo_server, start_server};

#[tokio::test]
async fn get_machine_by_name_ip_or_mac() {
    let (_repo, server) = demo_server().await;
    let mut c = server.client().await;
    for key in [
        "alpha-w-1",
        "198.18.10.12",
        "dc:a6:32:10:00:12",
        "DC-A6-32-10-00-12",
    ] {
        let m = c
            .get_machine(GetMachineRequest { key: key.into() })
            .await
            .expect(key)
            .into_inner();
        assert_eq!(m.name, "alpha-w-1", "key {key}");
        assert_eq!(m.source, "machines/clusters.yaml:11");
    }
    let err = c
        .get_machine(GetMachineRequest { key: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_machine(GetMachineRequest {
            key: "198.18.10.254".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn list_machines_filters_and_pages_in_name_order() {
    let (_repo, server) = demo_server().await;
    let mut c = server.client().await;
    let names = |r: mdb::proto::ListMachinesResponse| {
        r.machines.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };

    let all = c
        .list_machines(ListMachinesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(all.total_matching, 11);
    let all = names(all);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);

    // Paging by 3 returns the same list.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = c
            .list_machines(ListMachinesRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.machines.len() <= 3);
        token = page.next_page_token.clone();
        paged.extend(names(page));
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, all);

    let req = |f: ListMachinesRequest| f;
    let r = c
        .list_machines(req(ListMachinesRequest {
            r#use: UseKind::Cluster as i32,
            cluster: "beta".into(),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(r), ["beta-cp-1", "beta-w-1"]);
    let r = c
        .list_machines(req(ListMachinesRequest {
            provisioner: Some(Provisioner::Primary as i32),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(r), ["devbox"]);
    let r = c
        .list_machines(req(ListMachinesRequest {
            labels: vec!["rack=shelf-2".into()],
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(r), ["beta-cp-1", "beta-w-1"]);
    let r = c
        .list_machines(req(ListMachinesRequest {
            labels: vec!["room".into()],
            r#use: UseKind::Device as i32,
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(r), ["receipt-printer"]);
    let err = c
        .list_machines(ListMachinesRequest {
            page_size: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn clusters_list_their_nodes_by_role() {
    let (_repo, server) = demo_server().await;
    let mut c = server.client().await;
    let list = c
        .list_clusters(ListClustersRequest {})
        .await
        .expect("clusters")
        .into_inner();
    assert_eq!(
        list.clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    let alpha = c
        .get_cluster(GetClusterRequest {
            name: "alpha".into(),
        })
        .await
        .expect("alpha")
        .into_inner();
    let names = |ms: &[mdb::proto::Machine]| ms.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&alpha.control_plane), ["alpha-cp-1"]);
    assert_eq!(names(&alpha.workers), ["alpha-w-1", "alpha-w-2"]);
    let err = c
        .get_cluster(GetClusterRequest {
            name: "gamma".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

/// promtool (Debian package `prometheus`) is the judge of the exposition format.
#[tokio::test]
async fn metrics_pass_promtool_and_count_machines_per_use() {
    let (_repo, server) = demo_server().await;
    let mut c = server.client().await;
    let _ = c
        .get_machine(GetMachineRequest { key: "nope".into() })
        .await;
    let text = server.metrics_text().await;
    assert_eq!(util::metric(&text, "mdb_machines"), Some(11.0));
    // Process series, unprefixed as every exporter names them.
    let rss = util::metric(&text, "process_resident_memory_bytes").expect("process RSS");
    assert!(rss > 1e6, "{rss}");
    assert!(util::metric(&text, "process_open_fds").is_some_and(|n| n >= 3.0));
    assert_eq!(
        util::metric(&text, "mdb_machines_by_use{use=\"cluster\"}"),
        Some(5.0)
    );
    assert_eq!(
        util::metric(&text, "mdb_machines_by_use{use=\"games\"}"),
        Some(1.0)
    );
    assert_eq!(
        util::metric(
            &text,
            "mdb_cluster_nodes{cluster=\"alpha\",role=\"worker\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        util::metric(
            &text,
            "mdb_grpc_requests_total{code=\"NotFound\",method=\"GetMachine\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        util::metric(
            &text,
            "mdb_grpc_requests_total{code=\"Ok\",method=\"Watch\"}"
        ),
        Some(0.0),
        "every method's series exists from the start"
    );
    assert_eq!(
        util::metric(&text, "mdb_sync_errors_total{kind=\"fetch\"}"),
        Some(0.0)
    );
    assert!(util::metric(&text, "mdb_sync_last_success_timestamp_seconds").unwrap_or(0.0) > 1.7e9);

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (apt-get install prometheus); .ci/run does it");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}

/// Python with grpcio: `MDB_PYTHON` names the interpreter (.ci/run sets it
/// to its virtualenv), else `python3`.
#[tokio::test]
async fn python_client_discovers_the_api_by_reflection() {
    let (repo, server) = demo_server().await;
    let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let addr = server.grpc.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/py/reflection_client.py"
            ))
            .arg(addr)
            .output()
    })
    .await
    .expect("join")
    .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "python client failed (needs grpcio and grpcio-reflection; .ci/run installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let services: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(services.contains(&"mdb.v1.MachineDb"), "{services:?}");
    assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");
    assert_eq!(v["stats"]["machines"], "11");
    assert_eq!(v["stats"]["revision"], repo.head.expect("head").to_string());
    let games = v["games"]["machines"].as_array().expect("games");
    assert_eq!(games.len(), 1);
    assert_eq!(games[0]["name"], "gaming-pc");
    server.stop().await;
}

/// The token reaches git only through the credentials callback: a git HTTP
/// server that answers 401 gets it once per fetch (libgit2 would ask again
/// and again), as the HTTP password, and it never appears in a log line.
#[tokio::test]
async fn a_refused_token_is_tried_once_per_fetch_and_never_logged() {
    use base64_like::basic;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let secret = "ghp_mdbTestSecret0123456789";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let auth = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Authorization: ")
                        .or_else(|| l.strip_prefix("authorization: "))
                })
                .map(|v| v.trim().to_string());
            log.lock().expect("lock").push(auth);
            let _ = s
                .write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new(util::bin())
        .args(["serve", "--db-url", &format!("http://{addr}/lab/db.git")])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--poll-interval", "200ms"])
        .arg("--checkout")
        .arg(dir.path().join("c"))
        .env("MDB_DB_TOKEN", secret)
        .env("MDB_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let child = util::process::Reaped(child);
    util::wait_until("two fetches to be refused", || {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|a| a.is_some())
            .count()
            >= 2
    })
    .await;
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    let mut child = child;
    let out = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        use std::io::Read;
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        stderr
    })
    .await
    .expect("join");
    let requests = seen.lock().expect("lock").clone();
    let expected = basic("x-access-token", secret);
    for pair in requests.windows(2) {
        assert!(
            !(pair[0].is_some() && pair[1].is_some()),
            "the token was sent twice in a row (libgit2 asking again): {requests:?}"
        );
    }
    assert!(
        requests.iter().flatten().all(|a| *a == expected),
        "the token as the HTTP password: {requests:?}"
    );
    assert!(
        out.contains("database sync failed"),
        "the failure is logged:\n{out}"
    );
    assert!(!out.contains(secret), "token leaked:\n{out}");
}

/// `Authorization: Basic …` as git sends it, without a base64 crate.
mod base64_like {
    pub fn basic(user: &str, password: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let raw = format!("{user}:{password}").into_bytes();
        let mut out = String::new();
        for chunk in raw.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
                if i <= chunk.len() {
                    out.push(T[((n >> shift) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Basic {out}")
    }
}

/// SIGTERM with a Watch stream open: the stream ends and the process exits
/// cleanly instead of waiting on the connection.
#[tokio::test]
async fn sigterm_ends_watch_streams_and_exits_cleanly() {
    let repo = util::TestRepo::with_demo();
    let dir = tempfile::tempdir().expect("tempdir");
    let checkout = dir.path().join("c");
    let url = repo.url();
    let mut server = util::process::ServeProcess::start(
        dir.path(),
        &[
            "--db-url",
            &url,
            "--checkout",
            checkout.to_str().expect("path"),
        ],
    );
    server.wait_ready().await;
    let mut stream = server
        .client()
        .await
        .watch(mdb::proto::WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert!(stream.message().await.expect("first event").is_some());
    let reader = tokio::spawn(async move { stream.message().await });
    let (took, status) = tokio::task::spawn_blocking(move || {
        let r = server.terminate();
        drop(server);
        r
    })
    .await
    .expect("terminate");
    assert!(status.success(), "{status:?}");
    assert!(
        took < std::time::Duration::from_secs(15),
        "exit took {took:?}"
    );
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .expect("the stream ends")
        .expect("reader");
    assert!(
        matches!(end, Ok(None)),
        "the server ends the stream cleanly before it exits, not by dropping it: {end:?}"
    );
}

#[tokio::test]
async fn watch_carries_discovery_changes_only_when_asked() {
    let (mut repo, server) = demo_server().await;
    let mut c = server.client().await;
    let mut with = c
        .watch(mdb::proto::WatchRequest {
            initial_snapshot: true,
            discovery: true,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut without = c
        .watch(mdb::proto::WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let first = with.message().await.expect("ok").expect("event");
    assert_eq!(
        first.changed.len(),
        11,
        "initial snapshot has every machine"
    );
    assert!(without
        .message()
        .await
        .expect("ok")
        .expect("event")
        .changed
        .is_empty());

    let host = mdb::proto::DiscoveredHost {
        ip: "198.18.10.99".into(),
        state: mdb::proto::HostState::New as i32,
        key: "ip:198.18.10.99".into(),
        ..Default::default()
    };
    let history = mdb::proto::HostHistory {
        host: Some(host.clone()),
        ..Default::default()
    };
    server.publish_hosts(vec![history], vec![host]);
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), with.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    assert_eq!(ev.discovered.len(), 1);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), without.message())
            .await
            .is_err(),
        "no discovery events without asking"
    );
    let d = c
        .get_discovered(mdb::proto::GetDiscoveredRequest {
            key: "198.18.10.99".into(),
        })
        .await
        .expect("get discovered")
        .into_inner();
    assert_eq!(d.state, mdb::proto::HostState::New as i32);

    // A revision that changes no machine is still news to every watcher.
    repo.write("README.md", "the lab\n");
    let head = repo.commit("notes only");
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), without.message())
        .await
        .expect("the new revision arrives")
        .expect("ok")
        .expect("event");
    assert_eq!(ev.revision, head.to_string());
    assert!(ev.changed.is_empty() && ev.removed.is_empty());
    server.stop().await;
}

/// A whole large revision over Watch arrives in several messages, none over
/// tonic's 4 MiB limit.
#[tokio::test]
async fn watch_streams_a_large_revision_in_pieces() {
    let mut repo = util::TestRepo::new();
    for (p, t) in mdb::gen::database(30_000, 5000) {
        repo.write(&p, &t);
    }
    let head = repo.commit("30k machines");
    let server = start_server(&repo.url(), "1s", "1h").await;
    server.wait_for_revision(head).await;
    let mut c = server.client().await;
    let mut stream = c
        .watch(mdb::proto::WatchRequest {
            initial_snapshot: true,
            discovery: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut total = 0;
    while total < 30_000 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
            .await
            .expect("in time")
            .expect("each message fits")
            .expect("event");
        assert_eq!(ev.revision, head.to_string());
        assert!(ev.changed.len() <= mdb::serve::api::WATCH_CHUNK);
        total += ev.changed.len();
    }
    assert_eq!(total, 30_000);
    server.stop().await;
}
