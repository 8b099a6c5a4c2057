//! Git sync end to end: a real bare repository over file://, a real server,
//! a real gRPC client on a TCP socket.

use crate::util;

use std::time::Duration;

use mdb::proto::{GetMachineRequest, GetStatsRequest, WatchRequest};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use util::{metric, start_server, wait_until, TestRepo};

const NEW_BOX: &str = "machines/new.yaml";
const NEW_BOX_YAML: &str = "machines:\n  - name: new-box\n    ip: 198.18.10.77\n    use: games\n";

#[tokio::test]
async fn valid_change_is_served_and_watched() {
    let mut repo = TestRepo::with_demo();
    let first = repo.head.expect("head");
    let server = start_server(&repo.url(), "100ms", "1h").await;
    server.wait_for_revision(first).await;

    let mut client = server.client().await;
    let mut watch = client
        .watch(WatchRequest {
            initial_snapshot: false,
            discovery: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let hello = watch.message().await.expect("stream").expect("first event");
    assert_eq!(hello.revision, first.to_string());

    repo.write(NEW_BOX, NEW_BOX_YAML);
    let second = repo.commit("add new-box");
    server.wait_for_revision(second).await;

    let m = client
        .get_machine(GetMachineRequest {
            key: "198.18.10.77".into(),
        })
        .await
        .expect("new machine is served")
        .into_inner();
    assert_eq!(m.name, "new-box");
    let ev = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("watch event in time")
        .expect("stream ok")
        .expect("event");
    assert_eq!(ev.revision, second.to_string());
    assert_eq!(
        ev.changed
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["new-box"]
    );
    assert!(ev.removed.is_empty());

    repo.remove(NEW_BOX);
    let third = repo.commit("remove new-box");
    server.wait_for_revision(third).await;
    let ev = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("watch event in time")
        .expect("stream ok")
        .expect("event");
    assert_eq!(ev.removed, ["new-box"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_commit_keeps_serving_last_good_revision() {
    let mut repo = TestRepo::with_demo();
    let good = repo.head.expect("head");
    let server = start_server(&repo.url(), "100ms", "1h").await;
    server.wait_for_revision(good).await;

    // Malformed YAML, then a duplicate IP: neither is ever served.
    repo.write(
        "machines/broken.yaml",
        "machines:\n  - name: broken\n    ip: [198.18.10.9\n",
    );
    let bad = repo.commit("broken yaml");
    wait_until("sync error for the broken commit", || {
        server.store.status().last_error.contains(&bad.to_string())
    })
    .await;
    let err = server.store.status().last_error;
    assert!(err.contains("machines/broken.yaml:"), "{err}");

    repo.remove("machines/broken.yaml");
    repo.write(
        "machines/dup.yaml",
        "machines:\n  - name: twin\n    ip: 198.18.10.11\n    use: games\n",
    );
    let dup = repo.commit("duplicate ip");
    wait_until("sync error for the duplicate", || {
        server.store.status().last_error.contains(&dup.to_string())
    })
    .await;
    let err = server.store.status().last_error;
    assert!(err.contains("duplicate ip 198.18.10.11"), "{err}");
    assert!(
        err.contains("machines/clusters.yaml:") && err.contains("machines/dup.yaml:"),
        "{err}"
    );

    let mut client = server.client().await;
    let stats = client
        .get_stats(GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        stats.revision,
        good.to_string(),
        "still the last good revision"
    );
    assert_eq!(stats.machines, 11);
    assert!(stats.last_sync_error.contains("duplicate ip"));
    let text = server.metrics_text().await;
    assert!(
        metric(&text, "mdb_sync_errors_total{kind=\"invalid\"}").unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert_eq!(metric(&text, "mdb_machines"), Some(11.0));

    // Fixing the repository recovers without a restart.
    repo.remove("machines/dup.yaml");
    let fixed = repo.commit("fix");
    server.wait_for_revision(fixed).await;
    assert!(server.store.status().last_error.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn force_push_rewriting_history_is_followed() {
    let mut repo = TestRepo::with_demo();
    let base = repo.head.expect("head");
    repo.write(NEW_BOX, NEW_BOX_YAML);
    let doomed = repo.commit("soon rewritten");
    let server = start_server(&repo.url(), "100ms", "1h").await;
    server.wait_for_revision(doomed).await;

    repo.write(NEW_BOX, &NEW_BOX_YAML.replace("new-box", "rewritten-box"));
    let rewritten = repo.force_commit(Some(base), "rewritten history");
    server.wait_for_revision(rewritten).await;
    let snap = server.store.snapshot().expect("snapshot");
    assert!(snap.by_name("new-box").is_none());
    assert!(snap.by_name("rewritten-box").is_some());
    let checkout = git2::Repository::open(&server.checkout).expect("checkout");
    assert_eq!(checkout.head().expect("head").target(), Some(rewritten));
    server.stop().await;
}

#[tokio::test]
async fn hourly_hard_resync_discards_local_commits_and_files() {
    let repo = TestRepo::with_demo();
    let head = repo.head.expect("head");
    // The "hour" is shortened; the schedule is the same code.
    let server = start_server(&repo.url(), "100ms", "1s").await;
    server.wait_for_revision(head).await;

    // Someone edits mdb's checkout by hand and commits there.
    let checkout = git2::Repository::open(&server.checkout).expect("checkout");
    let file = server.checkout.join("machines/desk.yaml");
    std::fs::write(&file, "machines: []\n").expect("edit");
    std::fs::write(server.checkout.join("stray.txt"), "untracked").expect("stray");
    let mut index = checkout.index().expect("index");
    index
        .add_path(std::path::Path::new("machines/desk.yaml"))
        .expect("add");
    index.write().expect("index write");
    let tree = checkout
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let sig = git2::Signature::now("someone", "someone@localhost").expect("sig");
    let parent = checkout.find_commit(head).expect("parent");
    let local = checkout
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            "local divergent commit",
            &tree,
            &[&parent],
        )
        .expect("local commit");
    assert_ne!(local, head);

    wait_until("the hard resync to reset the checkout", || {
        let repo = git2::Repository::open(&server.checkout).ok();
        let at_remote = repo.and_then(|r| r.head().ok().and_then(|h| h.target())) == Some(head);
        at_remote && !server.checkout.join("stray.txt").exists()
    })
    .await;
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.contains("gaming-pc"),
        "working tree is the remote's again"
    );

    // Uncommitted edits leave HEAD alone, so only the hourly hard resync
    // (reset + clean even when unchanged) removes them.
    std::fs::write(&file, "machines: []\n").expect("edit");
    std::fs::create_dir_all(server.checkout.join("junk/deeper")).expect("mkdir");
    std::fs::write(server.checkout.join("junk/deeper/stray.txt"), "untracked").expect("stray");
    wait_until("the hard resync to clean the working tree", || {
        !server.checkout.join("junk").exists()
            && std::fs::read_to_string(&file).is_ok_and(|t| t.contains("gaming-pc"))
    })
    .await;
    server.stop().await;
}

/// Local edits in the checkout never leak into what is served: the remote
/// moves on while the checkout holds an edited file and an untracked one,
/// and what is served is exactly the remote's revision.
#[tokio::test]
async fn local_edits_never_leak_into_what_is_served() {
    let mut repo = TestRepo::with_demo();
    let server = start_server(&repo.url(), "100ms", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    let desk = server.checkout.join("machines/desk.yaml");
    std::fs::write(&desk, "machines: []\n").expect("edit a tracked file");
    std::fs::write(
        server.checkout.join("machines/intruder.yaml"),
        "machines:\n  - name: intruder\n    ip: 198.18.10.66\n    use: games\n",
    )
    .expect("an untracked file");
    repo.write(NEW_BOX, NEW_BOX_YAML);
    let next = repo.commit("the remote moves on");
    server.wait_for_revision(next).await;
    let snap = server.store.snapshot().expect("snap");
    let names: Vec<&str> = snap.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names.len(),
        12,
        "the remote's 11 and the new one: {names:?}"
    );
    assert!(
        snap.by_name("gaming-pc").is_some(),
        "the edited file is served as committed"
    );
    assert!(
        snap.by_name("intruder").is_none(),
        "the untracked file is not served"
    );
    server.stop().await;
}

#[tokio::test]
async fn corrupt_checkout_is_recloned() {
    let mut repo = TestRepo::with_demo();
    let server = start_server(&repo.url(), "100ms", "1s").await;
    server.wait_for_revision(repo.head.expect("head")).await;

    // A crash mid-checkout leaves a lock behind.
    std::fs::write(server.checkout.join(".git/index.lock"), "").expect("lock");
    repo.write(NEW_BOX, NEW_BOX_YAML);
    let next = repo.commit("after the crash");
    server.wait_for_revision(next).await;
    wait_until("the checkout to be at the new head", || {
        git2::Repository::open(&server.checkout)
            .ok()
            .and_then(|r| r.head().ok().and_then(|h| h.target()))
            == Some(next)
    })
    .await;
    let text = server.metrics_text().await;
    assert_eq!(
        metric(&text, "mdb_sync_reclones"),
        Some(1.0),
        "the checkout was cloned again exactly once:\n{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unreachable_remote_is_retried_until_it_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("later.git");
    let url = format!("file://{}", path.display());
    let server = start_server(&url, "200ms", "1h").await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let status = |r: tonic::Response<tonic_health::pb::HealthCheckResponse>| r.into_inner().status;
    let s = health
        .check(HealthCheckRequest {
            service: "mdb.v1.MachineDb".into(),
        })
        .await
        .map(status)
        .expect("health check");
    assert_eq!(s, ServingStatus::NotServing as i32);
    let (code, _) = util::http_get(server.metrics, "/readyz").await;
    assert_eq!(code, 503);
    wait_until("fetch errors to be counted", || {
        !server.store.status().last_error.is_empty()
    })
    .await;

    // The remote appears; the server recovers by itself.
    let repo = git2::Repository::init_bare(&path).expect("init");
    let files = mdb::demo::FILES
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let head = mdb::demo::commit_files(&repo, "main", &files, None, "first").expect("commit");
    server.wait_for_revision(head).await;
    let mut serving = false;
    for _ in 0..100 {
        let s = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(status)
            .expect("health check");
        if s == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "health turns SERVING after the first good load");
    let text = server.metrics_text().await;
    assert!(
        metric(&text, "mdb_sync_errors_total{kind=\"fetch\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert_eq!(util::http_get(server.metrics, "/readyz").await.0, 200);
    server.stop().await;
}

/// File descriptors of this process open on something under `dir` (the
/// test binary runs other tests meanwhile; theirs are elsewhere).
fn fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// A year of commits costs no more than a day's: 2,000 commits fetched one
/// by one into a checkout keep its packs, its open files and the time of a
/// poll that finds nothing new flat.
#[test]
fn a_long_history_keeps_packs_open_files_and_polls_flat() {
    use mdb::sync::{packs, Checkout, Outcome, Source};
    mdb::sync::set_git_timeouts(Duration::from_secs(10), Duration::from_secs(60));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut repo = TestRepo::with_demo();
    let checkout_dir = dir.path().join("checkout");
    let mut checkout = Checkout::new(Source {
        url: repo.url(),
        branch: "main".into(),
        token: None,
        checkout: checkout_dir.clone(),
        fetch_timeout: Duration::from_secs(60),
        limits: Default::default(),
    });
    let mut served = None;
    let mut figures = Vec::new();
    for n in 1..=2000 {
        repo.write(
            "machines/soak.yaml",
            &format!("machines:\n  - name: soak\n    ip: 198.18.10.77\n    use: games\n    notes: commit {n}\n"),
        );
        repo.commit(&format!("commit {n}"));
        match checkout.step(served.as_deref(), false).expect("step") {
            Outcome::Loaded(snap) => served = Some(snap.revision.clone()),
            Outcome::Unchanged(_) => panic!("commit {n} was not seen"),
        }
        if [10, 1000, 2000].contains(&n) {
            let started = std::time::Instant::now();
            let polls = 5;
            for _ in 0..polls {
                let o = checkout.step(served.as_deref(), false).expect("poll");
                assert!(matches!(o, Outcome::Unchanged(_)));
            }
            let poll = started.elapsed() / polls;
            let packs = packs::packs(&checkout_dir.join(".git")).len();
            let fds = fds_under(dir.path());
            figures.push((n, packs, fds, poll));
        }
    }
    eprintln!("FIGURE commits fetched one by one: (commits, packs, open files, no-change poll) {figures:?}");
    for (n, packs, fds, _) in &figures {
        assert!(*packs <= packs::MAX_PACKS + 1, "{n} commits: {packs} packs");
        assert!(
            *fds <= packs::MAX_OPEN_PACKS + 8,
            "{n} commits: {fds} open files"
        );
    }
    let (first, last) = (figures[0].3, figures[2].3);
    assert!(
        last < first * 5 + Duration::from_millis(50),
        "a poll grew from {first:?} to {last:?}"
    );
}
