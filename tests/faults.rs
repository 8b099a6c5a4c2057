//! The fault suite, hostile commits: alias bombs, deep nesting, huge files
//! and repositories, binaries, links, a revision of 100,000 problems; the
//! last good revision keeps serving. (Remotes that fail are in
//! `faults_remote.rs`, serving and exiting in `faults_serve.rs`.) Each case
//! runs the real `mdb serve` and prints its figure.

use crate::util;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use git2::{Oid, Repository};
use mdb::proto::GetMachineRequest;
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
        last = server.stats().await.last_sync_error;
    }
    let s = server.stats().await;
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
        err = server.stats().await.last_sync_error;
    }
    assert!(
        err.len() < 16 * 1024,
        "the report in GetStats is {} bytes",
        err.len()
    );
    assert!(err.contains("100000 problems"), "{}", &err[..200]);
    // Three more polls of the same bad head: logged once, not per poll.
    let errors = |text: &str| metric(text, "mdb_sync_runs_total{result=\"error\"}").unwrap_or(0.0);
    let seen = errors(&server.metrics_text().await);
    while errors(&server.metrics_text().await) < seen + 3.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
