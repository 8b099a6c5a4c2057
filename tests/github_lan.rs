//! GitHub issues end to end: `mdb serve` sweeps a real namespace LAN and
//! files to the fake GitHub, once, across restarts and a lost answer, and
//! closes what is resolved.

use crate::util;

use std::time::Duration;

use mdb::github;
use util::fake_github::{FakeGithub, Fault, OWNER, REPO, TOKEN};

/// Reconcile passes the `mdb serve` in the scanner's namespace completed.
fn github_passes(lan: &util::lan::Lan) -> f64 {
    lan.metric_in_scanner("127.0.0.1:9090", "mdb_github_passes_total")
        .unwrap_or(0.0)
}

/// End to end: `mdb serve` sweeps a real namespace LAN and files to the
/// fake GitHub (which listens inside the scanner's namespace).
#[test]
fn serve_files_once_survives_restarts_and_closes_on_a_real_lan() {
    use util::lan::{HostSpec, Lan};
    let mut lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:00:11",
            sshd: true,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.23",
            mac: "dc:a6:32:00:00:23",
            ..Default::default()
        },
    ]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let hook_listener = lan.listen_in_scanner();
    let hook_port = hook_listener.local_addr().expect("addr").port();
    let hook = util::receiver::receiver(hook_listener, false);
    let listener = lan.listen_in_scanner();
    let gh = rt.block_on(async { FakeGithub::start(listener) });
    // The first create is carried out but its answer is lost.
    gh.fail_next(Fault {
        method: Some("POST"),
        status: 502,
        headers: vec![],
        apply: true,
    });

    let mut repo = util::TestRepo::new();
    gh.attach_git(&repo.path());
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.100-198.18.0.199\nscan:\n  missing_after: 2\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n  - name: devbox\n    ip: 198.18.0.11\n    mac: 00:16:3e:00:00:11\n    use: { development: server }\n",
    );
    repo.commit("lab");
    let cfg = lan.dir().join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"10ms\"\nretry_base = \"50ms\"\n\n[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nmin_gap = \"10ms\"\nevents = [\"pull_opened\", \"pull_merged\"]\n",
            repo.url(),
            lan.dir().join("checkout").display(),
            gh.url()
        ),
    )
    .expect("config");
    let args = ["serve", "--config", cfg.to_str().expect("path")];
    let env = [("MDB_GITHUB_TOKEN", TOKEN), ("MDB_LOG", "info")];
    lan.spawn_mdb(&args, &env);

    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; issues: {:#?}",
                gh.issues()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // "Nothing more happened" is proven by reconcile passes that came and
    // went, not by a sleep.
    let three_more_passes = |lan: &Lan| {
        let seen = github_passes(lan);
        wait("three more reconcile passes", &|| {
            github_passes(lan) >= seen + 3.0
        });
    };
    let started = std::time::Instant::now();
    wait("the new device's issue and pull request", &|| {
        !gh.plain_issues().is_empty() && !gh.pulls().is_empty()
    });
    let to_pull_request = started.elapsed();
    three_more_passes(&lan);
    let issues = gh.plain_issues();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(
        issues[0]
            .title
            .starts_with("New device 198.18.0.23 (Raspberry Pi"),
        "{}",
        issues[0].title
    );
    assert_eq!(
        github::Trailer::read(&issues[0].body)
            .fingerprint
            .map(|f| f.to_string())
            .as_deref(),
        Some("new-device:mac=dc:a6:32:00:00:23")
    );
    assert!(
        issues[0].body.contains("    ip: 198.18.0.100\n"),
        "suggested address: {}",
        issues[0].body
    );

    // Restarts: each one reads the issues back and files nothing new.
    let loads = || gh.requests().iter().filter(|r| r.method == "GET").count();
    for _ in 0..3 {
        lan.stop_mdb();
        let before = loads();
        lan.spawn_mdb(&args, &env);
        wait("the restarted filer to read the issues", &|| {
            loads() > before
        });
        three_more_passes(&lan);
    }
    assert_eq!(gh.plain_issues().len(), 1);
    assert_eq!(gh.pulls().len(), 1);
    assert_eq!(gh.creates("issues"), 1);

    // The pull request's branch is a valid revision with a free static address.
    let pr = gh.pulls().remove(0);
    let branch = pr.pull.clone().expect("pull").head;
    let check = lan.dir().join("check");
    git2::build::RepoBuilder::new()
        .branch(&branch)
        .clone(&repo.url(), &check)
        .expect("clone the branch");
    util::mdb([std::path::Path::new("validate"), &check]).ok();
    let entry = std::fs::read_dir(check.join("machines/enrol"))
        .expect("enrol dir")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("entry"))
        .next()
        .expect("one entry");
    assert!(entry.contains("ip: 198.18.0.100\n"), "{entry}");

    // Merging it: the served DB gets the Pi, the issue closes, the branch goes.
    let tip = repo
        .repo
        .refname_to_id(&format!("refs/heads/{branch}"))
        .expect("branch");
    repo.repo
        .reference("refs/heads/main", tip, true, "merge")
        .expect("merge");
    gh.mark_merged(pr.number);
    // Still at its old address: one comment that it waits, and it stays open.
    wait("the waiting comment", &|| {
        gh.plain_issues()[0]
            .comments
            .iter()
            .any(|c| c.starts_with("Merged: reserved 198.18.0.100, still at 198.18.0.23"))
    });
    three_more_passes(&lan);
    let issue = gh.plain_issues().remove(0);
    assert_eq!(issue.state, "open", "it waits for its reservation");
    assert_eq!(
        issue
            .comments
            .iter()
            .filter(|c| c.starts_with("Merged:"))
            .count(),
        1,
        "said once: {:#?}",
        issue.comments
    );
    // Its renewal: at its reserved address, the issue closes.
    lan.set_ip(1, "198.18.0.100");
    wait("the new device's issue to close", &|| {
        gh.plain_issues()[0].state == "closed"
    });
    assert!(gh.plain_issues()[0]
        .comments
        .iter()
        .any(|c| c.contains("now in the database as `pi-dca632-0023`")
            && c.contains(&tip.to_string())));
    wait("the merged branch to be deleted", &|| {
        repo.repo
            .find_reference(&format!("refs/heads/{branch}"))
            .is_err()
    });
    three_more_passes(&lan);
    assert_eq!(
        (gh.plain_issues().len(), gh.pulls().len()),
        (1, 1),
        "nothing new over the next sweeps"
    );
    // The webhook heard of the pull request once, and of its merge once.
    wait("the merge on the webhook", &|| {
        util::receiver::events(&hook, "pull_merged") == 1
    });
    assert_eq!(util::receiver::events(&hook, "pull_opened"), 1);
    println!("FIGURE mdb serve start to open pull request on the LAN: {to_pull_request:?} (sweep interval 300 ms); GitHub requests so far: {}", gh.requests().len());

    // devbox's sshd stops: unprovisionable; it comes back: closed.
    lan.stop_sshd(0);
    wait("an unprovisionable issue", &|| {
        gh.issues()
            .iter()
            .any(|i| i.title.starts_with("Cannot provision devbox") && i.state == "open")
    });
    lan.start_sshd(0);
    wait("the unprovisionable issue to close", &|| {
        gh.plain_issues().iter().all(|i| i.state == "closed")
    });
    assert_eq!(gh.plain_issues().len(), 2);
    assert!(gh.rejected().is_empty(), "{:?}", gh.rejected());
    let log = lan.mdb_log();
    assert!(log.contains("filed issue"), "{log}");
    assert!(!log.contains(TOKEN), "token leaked into the log");
    lan.stop_mdb();
}
