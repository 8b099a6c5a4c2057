//! GitHub issues for new and unprovisionable hosts, against a fake GitHub
//! REST server on a real socket: filed once, never duplicated across
//! restarts or failures, updated, closed and reopened as hosts change.

mod util;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mdb::{
    db::{validate, Snapshot, SourceFile},
    discover::sweep::SweepResult,
    github::{self, Filer},
    proto::{DiscoveredHost, HostState, UseKind},
    secret::Secret,
    serve::metrics::Metrics,
};
use util::fake_github::{FakeGithub, Fault, OWNER, REPO, TOKEN};

fn config(fake: &FakeGithub) -> github::Config {
    github::Config {
        repo: format!("{OWNER}/{REPO}"),
        token: Secret::new(TOKEN),
        api_url: fake.url(),
        labels: github::DEFAULT_LABELS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        assignee: Some("lab-admin".into()),
        caps: github::Caps::default(),
        write_gap: Duration::from_millis(5),
        retry_base: Duration::from_millis(20),
        max_wait: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        enrol: None,
    }
}

async fn fake() -> FakeGithub {
    FakeGithub::start(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
}

fn demo(extra: &str) -> Snapshot {
    let mut files = mdb::demo::source_files();
    if !extra.is_empty() {
        files.push(SourceFile {
            path: "machines/extra.yaml".into(),
            text: extra.into(),
        });
    }
    validate(&files, "rev").unwrap_or_else(|r| panic!("{r}"))
}

fn host(ip: &str, mac: &str, state: HostState, machine: &str) -> DiscoveredHost {
    DiscoveredHost {
        ip: ip.into(),
        mac: mac.into(),
        vendor: if mac.starts_with("dc:a6:32") {
            "Raspberry Pi Trading Ltd".into()
        } else {
            String::new()
        },
        state: state as i32,
        machine: machine.into(),
        guessed_use: UseKind::Cluster as i32,
        detail: "not in the database".into(),
        open_ports: vec![22],
        first_seen_unix: 1_790_000_000,
        last_seen_unix: 1_790_000_000,
        ..Default::default()
    }
}

fn sweep(hosts: Vec<DiscoveredHost>) -> SweepResult {
    SweepResult {
        hosts,
        revision: "rev".into(),
        swept: vec![],
        at_unix: 1_790_000_000,
    }
}

fn posts_to_issues(f: &FakeGithub) -> usize {
    f.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == format!("/repos/{OWNER}/{REPO}/issues"))
        .count()
}

const NEW_MAC: &str = "dc:a6:32:77:00:01";

#[tokio::test]
async fn new_device_is_filed_once_with_fingerprint_labels_and_yaml() {
    let gh = fake().await;
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    let result = sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]);
    let s = f.reconcile(&result, &demo("")).await.expect("reconcile");
    assert_eq!(s.created, 1);
    let issues = gh.issues();
    assert_eq!(issues.len(), 1);
    let i = &issues[0];
    assert!(
        i.title
            .starts_with("New device 198.18.10.230 (Raspberry Pi"),
        "{}",
        i.title
    );
    assert_eq!(i.labels, ["mdb", "priority/high", "new-device"]);
    assert_eq!(i.assignees, ["lab-admin"]);
    assert_eq!(
        github::Trailer::read(&i.body)
            .fingerprint
            .map(|f| f.to_string())
            .as_deref(),
        Some("new-device:mac=dc:a6:32:77:00:01")
    );
    // The ready-to-paste entry uses the next free static address, since
    // .230 sits in the DHCP pool.
    let yaml = i
        .body
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("yaml block");
    assert!(yaml.contains("ip: 198.18.10.10\n"), "{yaml}");
    let mut files = mdb::demo::source_files();
    files.push(SourceFile {
        path: "machines/new.yaml".into(),
        text: yaml.replace("CHANGE-ME", "alpha"),
    });
    validate(&files, "t").unwrap_or_else(|r| panic!("the snippet must validate: {r}\n{yaml}"));

    // The same sweep again changes nothing.
    let s = f.reconcile(&result, &demo("")).await.expect("reconcile");
    assert_eq!(s, github::Summary::default());
    assert_eq!(posts_to_issues(&gh), 1);
    assert!(gh.rejected().is_empty(), "{:?}", gh.rejected());
}

#[tokio::test]
async fn ten_restarts_leave_exactly_one_issue() {
    let gh = fake().await;
    let result = sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]);
    for _ in 0..10 {
        // A fresh filer knows nothing but what GitHub holds.
        let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
        f.reconcile(&result, &demo("")).await.expect("reconcile");
    }
    assert_eq!(gh.issues().len(), 1);
    assert_eq!(posts_to_issues(&gh), 1);
}

#[tokio::test]
async fn adding_the_machine_to_the_db_closes_the_issue_with_a_comment() {
    let gh = fake().await;
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    let h = host("198.18.10.230", NEW_MAC, HostState::New, "");
    f.reconcile(&sweep(vec![h.clone()]), &demo(""))
        .await
        .expect("reconcile");
    let db = format!(
        "machines:\n  - name: new-pi\n    ip: 198.18.10.60\n    mac: {NEW_MAC}\n    use: games\n"
    );
    let mut known = h.clone();
    known.state = HostState::Moved as i32;
    known.machine = "new-pi".into();
    let s = f
        .reconcile(&sweep(vec![known]), &demo(&db))
        .await
        .expect("reconcile");
    assert_eq!(s.closed, 1);
    let i = &gh.issues()[0];
    assert_eq!(i.state, "closed");
    assert!(
        i.comments
            .last()
            .is_some_and(|c| c.contains("now in the database as `new-pi`")),
        "{:?}",
        i.comments
    );
}

#[tokio::test]
async fn offline_new_device_keeps_its_issue_open() {
    let gh = fake().await;
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    f.reconcile(
        &sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]),
        &demo(""),
    )
    .await
    .expect("reconcile");
    let s = f
        .reconcile(&sweep(vec![]), &demo(""))
        .await
        .expect("reconcile");
    assert_eq!(s.closed, 0);
    assert_eq!(gh.issues()[0].state, "open");
}

#[tokio::test]
async fn unprovisionable_issue_closes_when_ssh_returns_and_reopens_when_it_breaks() {
    let gh = fake().await;
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    let snap = demo("");
    let mut broken = host(
        "198.18.10.31",
        "00:1b:21:10:00:31",
        HostState::Unprovisionable,
        "devbox",
    );
    broken.detail = "SSH port 22 of devbox is closed or filtered".into();
    let mut fine = broken.clone();
    fine.state = HostState::Known as i32;

    f.reconcile(&sweep(vec![broken.clone()]), &snap)
        .await
        .expect("reconcile");
    let i = &gh.issues()[0];
    assert_eq!(i.title, "Cannot provision devbox (198.18.10.31)");
    assert_eq!(i.labels, ["mdb", "priority/high", "unprovisionable"]);
    assert!(
        !i.body.contains("```yaml"),
        "a known machine needs no DB entry"
    );

    let s = f
        .reconcile(&sweep(vec![fine.clone()]), &snap)
        .await
        .expect("reconcile");
    assert_eq!(s.closed, 1);
    assert!(gh.issues()[0]
        .comments
        .last()
        .is_some_and(|c| c.contains("SSH on `devbox`")));

    // Broken again, after a restart: the same issue comes back.
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    let s = f
        .reconcile(&sweep(vec![broken]), &snap)
        .await
        .expect("reconcile");
    assert_eq!(s.reopened, 1);
    let issues = gh.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].state, "open");
    assert!(issues[0]
        .comments
        .last()
        .is_some_and(|c| c.starts_with("The problem is back")));
}

#[tokio::test]
async fn a_moved_host_gets_a_comment_and_a_fresh_body() {
    let gh = fake().await;
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    f.reconcile(
        &sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]),
        &demo(""),
    )
    .await
    .expect("reconcile");
    let s = f
        .reconcile(
            &sweep(vec![host("198.18.10.231", NEW_MAC, HostState::New, "")]),
            &demo(""),
        )
        .await
        .expect("reconcile");
    assert_eq!(s.updated, 1);
    let i = &gh.issues()[0];
    assert!(
        i.comments[0].starts_with("Now seen at 198.18.10.231 (was 198.18.10.230)"),
        "{:?}",
        i.comments
    );
    assert_eq!(
        github::Trailer::read(&i.body).ip.as_deref(),
        Some("198.18.10.231")
    );
}

#[tokio::test]
async fn server_errors_then_rate_limits_then_recovery_yield_one_issue() {
    let gh = fake().await;
    let reset = (mdb::db::store::now_unix() + 1).to_string();
    gh.fail_next(Fault {
        method: Some("GET"),
        status: 500,
        headers: vec![],
        apply: false,
    });
    gh.fail_next(Fault {
        method: Some("GET"),
        status: 502,
        headers: vec![],
        apply: false,
    });
    gh.fail_next(Fault {
        method: Some("GET"),
        status: 429,
        headers: vec![("retry-after", "1".into())],
        apply: false,
    });
    gh.fail_next(Fault {
        method: Some("GET"),
        status: 403,
        headers: vec![
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset),
        ],
        apply: false,
    });
    gh.fail_next(Fault {
        method: Some("POST"),
        status: 403,
        headers: vec![("retry-after", "1".into())],
        apply: false,
    });
    let metrics = Metrics::new();
    let mut f = Filer::new(config(&gh), metrics.github.clone()).expect("filer");
    let s = f
        .reconcile(
            &sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]),
            &demo(""),
        )
        .await
        .expect("recovers");
    assert_eq!(s.created, 1);
    assert_eq!(gh.issues().len(), 1);
    let statuses: Vec<u16> = gh.requests().iter().map(|r| r.status).collect();
    // GET /user (asked once, through the same retries), GET issues, POST.
    assert_eq!(statuses, [500, 502, 429, 403, 200, 200, 403, 201]);
    let text = metrics.render();
    assert_eq!(
        util::metric(&text, "mdb_github_requests_total{result=\"rate_limited\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        util::metric(&text, "mdb_github_requests_total{result=\"server_error\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_sent_twice() {
    let gh = fake().await;
    // GitHub creates the issue, but the answer is a 502.
    gh.fail_next(Fault {
        method: Some("POST"),
        status: 502,
        headers: vec![],
        apply: true,
    });
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    let s = f
        .reconcile(
            &sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]),
            &demo(""),
        )
        .await
        .expect("reconcile");
    assert_eq!(s.created, 1);
    assert_eq!(gh.issues().len(), 1, "no duplicate");
    assert_eq!(posts_to_issues(&gh), 1, "looked instead of posting again");
}

#[tokio::test]
async fn a_persistent_outage_is_an_error_not_a_duplicate_later() {
    let gh = fake().await;
    for _ in 0..5 {
        gh.fail_next(Fault {
            method: Some("GET"),
            status: 503,
            headers: vec![],
            apply: false,
        });
    }
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    let result = sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]);
    let e = f.reconcile(&result, &demo("")).await.unwrap_err();
    assert_eq!(e.metric_label(), "transient");
    assert!(gh.issues().is_empty());
    // GitHub is back: exactly one issue.
    f.reconcile(&result, &demo("")).await.expect("recovers");
    f.reconcile(&result, &demo("")).await.expect("stable");
    assert_eq!(gh.issues().len(), 1);
}

#[tokio::test]
async fn a_flood_is_capped_per_sweep() {
    let gh = fake().await;
    let metrics = Metrics::new();
    let mut cfg = config(&gh);
    cfg.caps.new_per_sweep = 4;
    let mut f = Filer::new(cfg, metrics.github.clone()).expect("filer");
    let hosts: Vec<DiscoveredHost> = (0..7)
        .map(|i| {
            host(
                &format!("198.18.10.{}", 230 + i),
                &format!("00:16:3e:00:01:{i:02x}"),
                HostState::New,
                "",
            )
        })
        .collect();
    let s = f
        .reconcile(&sweep(hosts.clone()), &demo(""))
        .await
        .expect("reconcile");
    assert_eq!((s.created, s.deferred_total()), (4, 3));
    assert_eq!(
        util::metric(&metrics.render(), "mdb_github_deferred_problems"),
        Some(3.0)
    );
    let s = f
        .reconcile(&sweep(hosts), &demo(""))
        .await
        .expect("reconcile");
    assert_eq!((s.created, s.deferred_total()), (3, 0));
    assert_eq!(gh.issues().len(), 7);
}

/// The fake holds requests to GitHub's rules: it refuses a wrong token, an
/// unknown field and an unknown route, as GitHub does.
#[tokio::test]
async fn the_fake_rejects_what_github_would_reject() {
    let gh = fake().await;
    let client = |token: &str| {
        octocrab::Octocrab::builder()
            .personal_token(token.to_string())
            .base_uri(gh.url())
            .expect("uri")
            .build()
            .expect("client")
    };
    let path = format!("/repos/{OWNER}/{REPO}/issues");
    let r = client("wrong")._get(path.as_str()).await.expect("sent");
    assert_eq!(r.status(), 401);
    let r = client(TOKEN)
        ._post(
            path.as_str(),
            Some(&serde_json::json!({"title": "x", "colour": "red"})),
        )
        .await
        .expect("sent");
    assert_eq!(r.status(), 422);
    let r = client(TOKEN)
        ._post(
            path.as_str(),
            Some(&serde_json::json!({"body": "no title"})),
        )
        .await
        .expect("sent");
    assert_eq!(r.status(), 422);
    let r = client(TOKEN)
        ._get(format!("/repos/{OWNER}/other/issues").as_str())
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
    let r = client(TOKEN)
        ._get(format!("{path}?per_page=500").as_str())
        .await
        .expect("sent");
    assert_eq!(r.status(), 422);
    assert_eq!(gh.rejected().len(), 5);
    // What octocrab really sends, and the fake expects.
    let req = &gh.requests()[1];
    let h = |k: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(h("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(h("user-agent"), "octocrab");
    assert_eq!(h("x-github-api-version"), "2022-11-28");
    assert_eq!(h("content-type"), "application/json");
}

/// Logs of a failing reconcile name the problem, never the token.
#[tokio::test]
async fn token_never_appears_in_logs() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let gh = fake().await;
    gh.fail_next(Fault {
        method: Some("GET"),
        status: 500,
        headers: vec![],
        apply: false,
    });
    gh.fail_next(Fault {
        method: Some("POST"),
        status: 429,
        headers: vec![("retry-after", "1".into())],
        apply: false,
    });
    let mut f = Filer::new(config(&gh), Metrics::new().github.clone()).expect("filer");
    f.reconcile(
        &sweep(vec![host("198.18.10.230", NEW_MAC, HostState::New, "")]),
        &demo(""),
    )
    .await
    .expect("reconcile");
    let log = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        log.contains("GitHub server error"),
        "the failure is logged:\n{log}"
    );
    assert!(log.contains("GitHub rate limit"), "{log}");
    assert!(!log.contains(TOKEN), "token leaked:\n{log}");
    assert!(!format!("{:?}", config(&gh)).contains(TOKEN));
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
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"10ms\"\nretry_base = \"50ms\"\n",
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
    let started = std::time::Instant::now();
    wait("the new device's issue and pull request", &|| {
        !gh.plain_issues().is_empty() && !gh.pulls().is_empty()
    });
    let to_pull_request = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
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
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(gh.plain_issues().len(), 1);
    assert_eq!(gh.pulls().len(), 1);
    assert_eq!(posts_to_issues(&gh), 1);

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
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        (gh.plain_issues().len(), gh.pulls().len()),
        (1, 1),
        "nothing new over the next sweeps"
    );
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
