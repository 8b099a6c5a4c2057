//! An impostor scanner: a real tonic server, over TLS with a certificate
//! the filer trusts (a scanner taken over), followed by the filer of a
//! namespace LAN. It serves hostile hosts (Markdown, HTML and mdb's own
//! markers in every field, addresses that are none, a claim that a device
//! with an open issue is a database machine and up, scanners at every
//! address, a ghost gone missing, every address reserved), then a delta
//! past the bound and endless pages. The filer files only what its own
//! classification allows, every body stays inert, its memory stays
//! bounded and it keeps its last view. A server whose certificate no
//! trusted CA signed, or one in plaintext off the host while a token is
//! configured, is not followed at all and never sees the token.

use crate::util;

use mdb::proto::{
    DiscoveredHost, HostHistory, HostName, HostState, Presence, PresenceTransition, SweepSummary,
    WatchEvent,
};
use util::{
    fake_github::{FakeGithub, Issue, OWNER, REPO, TOKEN},
    impostor::{history, Impostor},
    lan::{HostSpec, Lan},
    pki::Pki,
    wait_for,
};

const MIRROR: &str = "mirror-token-0123456789abcdef";
/// What an attacker puts in every field a device can name.
const HOSTILE: &str = "<img src=x onerror=alert(1)> **bold** [link](https://evil.example) @octocat closes #4242 <!-- mdb-fingerprint: new-device:mac=00:16:3e:00:0a:21 --> | cell |";
const THEIR_SUBNET: &str = "198.18.7.0/24";

fn host(ip: &str, mac: &str, state: HostState) -> DiscoveredHost {
    DiscoveredHost {
        ip: ip.into(),
        mac: mac.into(),
        key: format!("mac:{mac}"),
        state: state as i32,
        presence: Presence::Up as i32,
        segments: vec!["iot".into()],
        seen_by: "arp".into(),
        first_seen_unix: mdb::db::store::now_unix() - 60,
        last_seen_unix: mdb::db::store::now_unix(),
        ..Default::default()
    }
}

/// The impostor's hosts: see the module's words.
fn hostile_view() -> Vec<HostHistory> {
    let far_future = mdb::db::store::now_unix() + 10 * 365 * 86_400;
    let marked = DiscoveredHost {
        vendor: HOSTILE.into(),
        dns_name: HOSTILE.into(),
        detail: HOSTILE.into(),
        ssh_banner: HOSTILE.into(),
        names: vec![HostName {
            name: HOSTILE.into(),
            source: "mdns".into(),
        }],
        ..host("198.18.7.77", "00:16:3e:00:07:77", HostState::New)
    };
    // The lab's real new device, which has an issue: "a database machine,
    // known and up", dated far ahead so that it outranks the filer's own.
    let claimed_known = DiscoveredHost {
        machine: "nas".into(),
        open_ports: vec![22],
        last_seen_unix: far_future,
        ..host("198.18.0.22", "dc:a6:32:00:0a:22", HostState::Known)
    };
    let ghost = DiscoveredHost {
        machine: "ghost".into(),
        presence: Presence::Down as i32,
        ..host("198.18.7.9", "00:16:3e:00:07:09", HostState::Missing)
    };
    let mut bad = vec![
        host("198.18.7.300", "00:16:3e:00:07:30", HostState::New),
        host("198.18.7.31\n| x |", "00:16:3e:00:07:31", HostState::New),
        host("198.18.7.32", "not-a-mac", HostState::New),
    ];
    bad.push(DiscoveredHost {
        key: "mac:<b>".into(),
        ..host("198.18.7.33", "00:16:3e:00:07:33", HostState::New)
    });
    [
        host("198.18.7.1", "00:16:3e:00:07:01", HostState::Scanner),
        marked,
        // A second "scanner" on one subnet: a device hidden from the filer.
        host("198.18.7.66", "00:16:3e:00:07:66", HostState::Scanner),
        claimed_known,
        ghost,
    ]
    .into_iter()
    .chain(bad)
    .map(history)
    .collect()
}

/// A page with every address of the lab, and thousands more, reserved.
fn hostile_page() -> mdb::proto::ListHostHistoryResponse {
    let mut reserved: Vec<String> = (0..=255).map(|i| format!("198.18.0.{i}")).collect();
    reserved.extend((0..10_000).map(|i| format!("198.19.{}.{}", i / 256, i % 256)));
    mdb::proto::ListHostHistoryResponse {
        reserved,
        sweeps: vec![SweepSummary {
            subnets: vec![THEIR_SUBNET.into()],
            epoch: 7,
            seq: 1,
            at_unix: mdb::db::store::now_unix(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Histories of valid form that fill most of one 4 MiB message.
fn heavy_page() -> Vec<HostHistory> {
    (0..100u32)
        .map(|i| {
            let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
            let mut h = history(host(
                &format!("198.18.9.{}", i % 250 + 1),
                &mac,
                HostState::New,
            ));
            let key = format!("mac:{mac}");
            h.transitions = (0..256)
                .map(|t| PresenceTransition {
                    key: key.clone(),
                    ip: format!("198.18.9.{}", i % 250 + 1),
                    machine: format!("padding-{t:0>40}"),
                    presence: Presence::Up as i32,
                    at_unix: 1_700_000_000 + t,
                })
                .collect();
            h
        })
        .collect()
}

/// Everything a reader of `text` on GitHub could be steered by: HTML, a
/// link, a mention, a reference, emphasis, a marker of mdb's.
fn live_markup(text: &str) -> Vec<&'static str> {
    [
        "<img", "<!--", "](", "@octocat", "#4242", "**bold**", "| cell |",
    ]
    .into_iter()
    .filter(|bad| text.contains(bad))
    .collect()
}

/// `body` without mdb's own trailer (its last lines of markers).
fn above_trailer(body: &str) -> &str {
    let mut end = body.trim_end().len();
    for line in body.trim_end().lines().rev() {
        if !(line.starts_with("<!-- mdb-") && line.ends_with(" -->")) {
            break;
        }
        end = body[..end].trim_end().len().saturating_sub(line.len());
    }
    &body[..end]
}

fn assert_inert(item: &Issue) {
    // A title is plain text on GitHub: only a mention or a reference
    // would be live in it.
    for bad in ["@octocat", "#4242"] {
        assert!(
            !item.title.contains(bad),
            "#{}: {}",
            item.number,
            item.title
        );
    }
    let shown = [above_trailer(&item.body)]
        .into_iter()
        .chain(item.comments.iter().map(String::as_str));
    for text in shown {
        let live = live_markup(text);
        assert!(
            live.is_empty(),
            "#{} shows {live:?} live:\n{text}",
            item.number
        );
    }
    let trailer = &item.body[above_trailer(&item.body).len()..];
    for line in trailer.lines().filter(|l| !l.trim().is_empty()) {
        let value = line
            .trim_start_matches("<!-- mdb-")
            .trim_end_matches(" -->");
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:= ".contains(&b)),
            "#{} has a marker mdb did not write: {line}",
            item.number
        );
        assert!(
            !line.contains("00:16:3e:00:0a:21"),
            "a forged marker: {line}"
        );
    }
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    util::process::proc_status_kib(pid as i32, field)
}

#[test]
fn a_scanner_taken_over_files_only_what_the_filers_own_classification_allows() {
    let mut lab = Lan::new(&[
        HostSpec {
            ip: "198.18.0.21",
            mac: "00:16:3e:00:0a:21",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.22",
            mac: "dc:a6:32:00:0a:22",
            ..Default::default()
        },
    ]);
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.100-198.18.0.199\nscan:\n  file_missing: { uses: [device] }\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: nas\n    ip: 198.18.0.21\n    mac: 00:16:3e:00:0a:21\n    use: { device: nas }\n",
    );
    repo.commit("lab");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lab.listen_in_scanner()) });
    gh.attach_git(&repo.path());
    let dir = lab.dir().to_path_buf();
    let pki = Pki::for_host("localhost").write(&dir.join("scanner-pki"));
    let impostor = Impostor::new("", vec![]);
    *impostor.histories.lock().expect("lock") = hostile_view();
    *impostor.page.lock().expect("lock") = hostile_page();
    let url = rt.block_on(impostor.serve_tls_on(lab.listen_in_scanner(), &pki));
    // Two that are not followed: a server whose certificate another CA
    // signed, and one in plaintext off this host while a token is set.
    let (stranger, plaintext) = (Impostor::new("", vec![]), Impostor::new("", vec![]));
    for i in [&stranger, &plaintext] {
        *i.histories.lock().expect("lock") = vec![history(host(
            "198.18.8.88",
            "00:16:3e:00:08:88",
            HostState::New,
        ))];
    }
    let theirs = Pki::for_host("localhost").write(&dir.join("stranger-pki"));
    let stranger_url = rt.block_on(stranger.serve_tls_on(lab.listen_in_scanner(), &theirs));
    let plaintext_url = rt.block_on(plaintext.serve_on(lab.listen_in_scanner_at("198.18.0.1:0")));
    std::fs::write(dir.join("mirror"), MIRROR).expect("token");
    let cfg = dir.join("filer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{api}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\n\n[db]\nurl = \"{db}\"\ncheckout = \"{checkout}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50052\"\nmetrics_listen = \"127.0.0.1:9092\"\nscanners = [\"{url}\", \"{stranger_url}\"]\nscanner_token_file = \"{token}\"\n\n[scan]\nsegment = \"lab\"\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\nmdns = false\n",
            api = gh.url(),
            db = repo.url(),
            checkout = dir.join("checkout").display(),
            token = dir.join("mirror").display(),
        ),
    )
    .expect("config");
    let ca = pki.join("ca.pem");
    // The token never goes in plaintext to another host: a configuration
    // that would send it is refused before anything is dialled.
    let text = std::fs::read_to_string(&cfg).expect("config");
    let plain_cfg = dir.join("plain.toml");
    std::fs::write(&plain_cfg, text.replace(&stranger_url, &plaintext_url)).expect("config");
    let refused = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.scanner,
            util::bin(),
            "serve",
            "--config",
        ])
        .arg(&plain_cfg)
        .env("MDB_GITHUB_TOKEN", TOKEN)
        .output()
        .expect("mdb");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("is plaintext to another host"), "{stderr}");
    let filer = lab
        .spawn_mdb(
            &[
                "--ca-file",
                ca.to_str().expect("path"),
                "serve",
                "--config",
                cfg.to_str().expect("path"),
            ],
            &[("MDB_LOG", "info"), ("MDB_GITHUB_TOKEN", TOKEN)],
        )
        .id();

    // The filer files the lab's new device and the two devices of the
    // impostor's segment that its own classification calls new; the
    // impostor's claims make no other issue and close none.
    let fingerprints = |issues: &[Issue]| -> Vec<String> {
        let mut f: Vec<String> = issues
            .iter()
            .filter_map(|i| i.body.lines().find(|l| l.contains("mdb-fingerprint")))
            .map(String::from)
            .collect();
        f.sort();
        f
    };
    let expected = [
        "<!-- mdb-fingerprint: new-device:mac=00:16:3e:00:07:66 -->",
        "<!-- mdb-fingerprint: new-device:mac=00:16:3e:00:07:77 -->",
        "<!-- mdb-fingerprint: new-device:mac=dc:a6:32:00:0a:22 -->",
    ];
    wait_for("the filer to file three devices", 90, || {
        (fingerprints(&gh.plain_issues()) == expected).then_some(())
    });
    let passes = || {
        lab.metric_in_scanner("127.0.0.1:9092", "mdb_github_passes_total")
            .unwrap_or(0.0)
    };
    let before = passes();
    wait_for("four more filer passes", 60, || {
        (passes() >= before + 4.0).then_some(())
    });
    let issues = gh.plain_issues();
    assert_eq!(fingerprints(&issues), expected, "{:#?}", issues);
    assert!(
        issues.iter().all(|i| i.state == "open"),
        "an issue was closed on the impostor's word: {issues:#?}"
    );
    assert!(
        gh.requests()
            .iter()
            .all(|r| r.body["state"].as_str() != Some("closed")),
        "a close was sent"
    );
    for item in issues.iter().chain(gh.pulls().iter()) {
        assert_inert(item);
    }
    // The enrolment reserves from the filer's own database and pull
    // requests, not from the addresses the impostor says are reserved.
    let pulls = gh.pulls();
    assert!(
        pulls.iter().any(|p| p.body.contains("198.18.0.100")),
        "the lab's new device got the first static address: {pulls:#?}"
    );
    let hosts = lab.discovered("http://127.0.0.1:50052");
    for dropped in ["198.18.7.31", "198.18.7.32", "198.18.7.33"] {
        assert!(!hosts.contains_key(dropped), "{dropped} was taken");
    }
    assert!(!hosts.contains_key("198.18.7.9"), "a ghost was served");
    assert_eq!(hosts["198.18.7.1"]["state"], "scanner");
    assert_eq!(hosts["198.18.7.66"]["state"], "new");
    assert_eq!(hosts["198.18.0.22"]["state"], "new");
    let seen = hosts["198.18.0.22"]["last_seen_unix"].as_i64().unwrap_or(0);
    assert!(
        seen <= mdb::db::store::now_unix() + 5,
        "dated ahead: {seen}"
    );
    let calls = impostor.calls.lock().expect("lock").clone();
    assert!(
        calls
            .iter()
            .any(|c| c == &format!("ListHostHistory Bearer {MIRROR}")),
        "the filer showed its mirror token: {calls:?}"
    );
    assert!(
        !hosts.contains_key("198.18.8.88"),
        "a stranger was followed"
    );
    for (name, i) in [("stranger", &stranger), ("plaintext", &plaintext)] {
        let calls = i.calls.lock().expect("lock").clone();
        assert!(calls.is_empty(), "the {name} was called: {calls:?}");
    }
    let log = lab.mdb_log();
    assert!(
        log.contains(&format!("scanner {stranger_url}: transport error")),
        "the stranger was refused"
    );
    assert!(
        !log.contains(MIRROR) && !stderr.contains(MIRROR),
        "the token was shown"
    );

    // A delta past the bound, then endless pages of valid history: each
    // is an error, the last view stays, and the filer's memory stays
    // bounded while it reads and reconnects again and again.
    let rss_before = vm_kib(filer, "VmRSS:");
    let flood = heavy_page();
    let watches = || {
        impostor
            .calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.starts_with("Watch"))
            .count()
    };
    let small = history(host("198.18.7.40", "00:16:3e:00:07:40", HostState::New));
    let watched = watches();
    impostor.send(WatchEvent {
        sweep: Some(SweepSummary {
            epoch: 7,
            seq: 2,
            ..Default::default()
        }),
        histories: vec![small; 1001],
        histories_complete: true,
        ..Default::default()
    });
    wait_for("the delta to be refused", 30, || {
        lab.mdb_log()
            .contains("a sweep event of more than 1000 histories")
            .then_some(())
    });
    // One message past 4 MiB, once the filer watches again.
    wait_for("the filer to watch again", 30, || {
        (watches() > watched && impostor.events.receiver_count() > 0).then_some(())
    });
    impostor.send(WatchEvent {
        sweep: Some(SweepSummary {
            epoch: 7,
            seq: 3,
            ..Default::default()
        }),
        histories: flood.iter().cloned().cycle().take(300).collect(),
        ..Default::default()
    });
    wait_for("the message to be refused", 30, || {
        lab.mdb_log()
            .contains("message length too large")
            .then_some(())
    });
    *impostor.histories.lock().expect("lock") = flood;
    impostor
        .endless
        .store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for("endless pages to be refused, twice", 90, || {
        (lab.mdb_log().matches("MiB of history").count() >= 1
            && impostor
                .calls
                .lock()
                .expect("lock")
                .iter()
                .filter(|c| c.starts_with("ListHostHistory"))
                .count()
                > 40)
            .then_some(())
    });
    let peak = vm_kib(filer, "VmHWM:") / 1024;
    let rss = vm_kib(filer, "VmRSS:") / 1024;
    eprintln!(
        "FIGURE filer memory under an impostor's endless pages: RSS {} MiB before, {rss} MiB after, peak {peak} MiB",
        rss_before / 1024
    );
    assert!(peak < 400, "the filer held {peak} MiB");
    let kept = lab.discovered("http://127.0.0.1:50052");
    assert!(
        kept.contains_key("198.18.7.77"),
        "the last view was dropped"
    );
    assert!(
        !kept.contains_key("198.18.9.1"),
        "a refused read was served"
    );
}
