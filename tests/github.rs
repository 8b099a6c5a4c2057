//! GitHub issues for new and unprovisionable hosts, against a fake GitHub
//! REST server on a real socket: filed once, never duplicated across
//! restarts or failures, updated, closed and reopened as hosts change.

use crate::util;

use std::time::Duration;

use mdb::{
    db::{validate, SourceFile},
    github::{self, Filer},
    proto::{DiscoveredHost, HostState},
    serve::metrics::Metrics,
};
use util::fake_github::{Fault, OWNER, REPO, TOKEN};

use util::filer_bench::{config, demo, fake, host, sweep};

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
    assert_eq!(gh.creates("issues"), 1);
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
    assert_eq!(gh.creates("issues"), 1);
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
    assert_eq!(gh.creates("issues"), 1, "looked instead of posting again");
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

/// Content-creating requests are `write_gap` apart, as GitHub asks.
#[tokio::test]
async fn writes_are_write_gap_apart() {
    let gh = fake().await;
    let mut cfg = config(&gh);
    cfg.write_gap = Duration::from_millis(300);
    let mut f = Filer::new(cfg, Metrics::new().github.clone()).expect("filer");
    let hosts: Vec<DiscoveredHost> = (0..3)
        .map(|i| {
            host(
                &format!("198.18.10.{}", 240 + i),
                &format!("00:16:3e:00:02:{i:02x}"),
                HostState::New,
                "",
            )
        })
        .collect();
    let s = f
        .reconcile(&sweep(hosts), &demo(""))
        .await
        .expect("reconcile");
    assert_eq!(s.created, 3);
    let writes: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.len() >= 3, "{writes:#?}");
    for pair in writes.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // Arrival times: a request sent late can arrive a little closer to
        // the next one than it left.
        assert!(
            gap >= Duration::from_millis(280),
            "{} {} then {} {} only {gap:?} apart",
            pair[0].method,
            pair[0].path,
            pair[1].method,
            pair[1].path
        );
    }
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
