//! Discovery that lasts, on a real LAN of network namespaces: a scanner
//! (`mdb serve` with [scan] and a state_dir) and an API replica (`mdb
//! serve --scanner`) that mirrors it. Hosts come and go by link down/up,
//! the scanner dies by `kill -9` mid-sweep, and the history is checked
//! through the real CLI and a real gRPC client.

use crate::util;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mdb::proto::{machine_db_client::MachineDbClient, WatchRequest};
use serde_json::Value;
use util::lan::{HostSpec, Lan};

const SCANNER: &str = "127.0.0.1:50051";
const REPLICA: &str = "127.0.0.1:50061";

/// 0 stays, 1 leaves and comes back, 2 answers every other sweep.
fn hosts() -> Vec<HostSpec> {
    let host = |ip, mac| HostSpec {
        ip,
        mac,
        ..Default::default()
    };
    vec![
        host("198.18.0.20", "00:16:3e:00:00:20"),
        host("198.18.0.50", "00:16:3e:00:00:50"),
        host("198.18.0.40", "00:16:3e:00:00:40"),
    ]
}

const DB: &str = "machines:\n  - name: printer\n    ip: 198.18.0.20\n    mac: 00:16:3e:00:00:20\n    use: { device: receipt printer }\n";

fn repo() -> util::TestRepo {
    let mut repo = util::TestRepo::new();
    repo.write("machines/lab.yaml", DB);
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.40-198.18.0.60\nscan:\n  down_after: 3\n",
    );
    repo.commit("lab");
    repo
}

/// The scanner's config: sweeps every 300 ms, history in `state`.
fn scanner_config(lan: &Lan, repo: &util::TestRepo) -> PathBuf {
    let path = lan.dir().join("scanner.toml");
    std::fs::write(
        &path,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"{SCANNER}\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\nstate_dir = \"{}\"\n",
            repo.url(),
            lan.dir().join("scanner-checkout").display(),
            lan.dir().join("state").display(),
        ),
    )
    .expect("scanner config");
    path
}

fn replica_config(lan: &Lan, repo: &util::TestRepo) -> PathBuf {
    let path = lan.dir().join("replica.toml");
    std::fs::write(
        &path,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"{REPLICA}\"\nmetrics_listen = \"127.0.0.1:9091\"\nscanner = \"http://{SCANNER}\"\n",
            repo.url(),
            lan.dir().join("replica-checkout").display(),
        ),
    )
    .expect("replica config");
    path
}

fn spawn(lan: &mut Lan, cfg: &Path) -> u32 {
    let args = ["serve", "--config", cfg.to_str().expect("utf-8")];
    lan.spawn_mdb(&args, &[("MDB_LOG", "info")]).id()
}

fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// `mdb ARGS --json --server SERVER` in the scanner namespace; None if it failed.
fn cli(lan: &Lan, server: &str, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["--json", "--server", server]);
    let out = lan.mdb(&all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn transitions(lan: &Lan, server: &str, key: &str) -> Vec<String> {
    cli(lan, server, &["history", key])
        .map(|h| {
            h["transitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t["presence"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn presence(d: &HashMap<String, Value>, ip: &str) -> String {
    d.get(ip)
        .and_then(|h| h["presence"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The metrics page of the server on `port` in the scanner namespace.
fn scrape(lan: &Lan, port: u16) -> String {
    let script = format!(
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.scanner, "python3", "-c", &script])
        .output()
        .expect("scrape");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sweep's identity on both streams.
type SweepId = (i64, u32, u32);

/// Reads `n` sweep events from the scanner's Watch, calling `on_sweep`
/// after each, while a second Watch on the replica records when the same
/// sweeps arrive there. Returns the replica's lag per sweep.
fn follow_sweeps(
    lan: &Lan,
    n: usize,
    mut on_sweep: impl FnMut(usize) + Send + 'static,
) -> Vec<Duration> {
    lan.run_in_scanner(move || {
        Box::pin(async move {
            let req = || WatchRequest {
                initial_snapshot: false,
                discovery: true,
            };
            let mut scanner = MachineDbClient::connect(format!("http://{SCANNER}"))
                .await
                .expect("scanner")
                .watch(req())
                .await
                .expect("watch scanner")
                .into_inner();
            let mut replica = MachineDbClient::connect(format!("http://{REPLICA}"))
                .await
                .expect("replica")
                .watch(req())
                .await
                .expect("watch replica")
                .into_inner();
            let at: Arc<Mutex<HashMap<SweepId, Instant>>> = Arc::default();
            let seen = at.clone();
            let mirrored = tokio::spawn(async move {
                while let Ok(Some(ev)) = replica.message().await {
                    if let Some(s) = ev.sweep {
                        let id = (s.at_unix, s.duration_ms, s.answered);
                        seen.lock().expect("lock").insert(id, Instant::now());
                    }
                }
            });
            let mut swept: Vec<(SweepId, Instant)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while swept.len() < n {
                let left = deadline.saturating_duration_since(Instant::now());
                let ev = tokio::time::timeout(left, scanner.message())
                    .await
                    .expect("sweeps keep coming")
                    .expect("stream")
                    .expect("event");
                if let Some(s) = ev.sweep {
                    swept.push(((s.at_unix, s.duration_ms, s.answered), Instant::now()));
                    on_sweep(swept.len());
                }
            }
            // Until the replica has the last sweep (it may merge earlier ones).
            let last = swept.last().map(|(id, _)| *id);
            let mirror_deadline = Instant::now() + Duration::from_secs(20);
            while last.is_some_and(|id| !at.lock().expect("lock").contains_key(&id)) {
                assert!(
                    Instant::now() < mirror_deadline,
                    "the replica never had the last sweep"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            mirrored.abort();
            let at = at.lock().expect("lock");
            swept
                .iter()
                .filter_map(|(id, t)| at.get(id).map(|r| r.saturating_duration_since(*t)))
                .collect()
        })
    })
    .join()
    .expect("watch thread")
}

#[test]
fn history_survives_kill_9_and_the_replica_follows_without_flapping() {
    let mut lan = Lan::new(&hosts());
    let repo = repo();
    let scanner_cfg = scanner_config(&lan, &repo);
    let mut scanner = spawn(&mut lan, &scanner_cfg);
    let replica_cfg = replica_config(&lan, &repo);
    spawn(&mut lan, &replica_cfg);

    let all_up = |d: &HashMap<String, Value>| {
        ["198.18.0.20", "198.18.0.40", "198.18.0.50"]
            .iter()
            .all(|ip| presence(d, ip) == "up")
    };
    util::wait_for("every host up at the scanner", 60, || {
        all_up(&lan.discovered(SCANNER)).then_some(())
    });
    let on_replica = util::wait_for("the replica to mirror the scanner", 60, || {
        let d = lan.discovered(REPLICA);
        all_up(&d).then_some(d)
    });
    assert_eq!(on_replica["198.18.0.20"]["machine"], "printer");
    let stats = cli(&lan, REPLICA, &["stats"]).expect("replica stats");
    assert_eq!(
        stats["discovery_source"],
        format!("replica of http://{SCANNER}")
    );
    assert_eq!(stats["discovery_stale"], false);
    // The replica suggests addresses as the scanner does: not one a host
    // answered from, though no machine in the database has it.
    for server in [SCANNER, REPLICA] {
        let out = lan.mdb(&["ip", "next", "lab", "--server", server]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "198.18.0.41",
            "{server}"
        );
    }
    let first_seen = lan.discovered(SCANNER)["198.18.0.20"]["first_seen_unix"]
        .as_i64()
        .expect("first seen");

    // Host 1 leaves; host 2 answers every other sweep, toggled right after
    // each sweep ends. The replica's lag is measured on the same sweeps.
    lan.set_link(1, false);
    let flapper = lan.hosts[2].ns.clone();
    let lags = follow_sweeps(&lan, 14, move |i| {
        let up = if i % 2 == 0 { "up" } else { "down" };
        let _ = std::process::Command::new("ip")
            .args(["-n", &flapper, "link", "set", "eth0", up])
            .status();
    });
    lan.set_link(2, true);
    assert!(lags.len() >= 10, "the replica saw the sweeps: {lags:?}");
    let mut sorted = lags.clone();
    sorted.sort();
    println!(
        "FIGURE replica lag behind the scanner over {} sweeps: median {:?}, max {:?}",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );

    assert_eq!(
        transitions(&lan, SCANNER, "198.18.0.40"),
        ["up"],
        "a host missing every other sweep never goes down with down_after 3"
    );
    let d = lan.discovered(SCANNER);
    let share = d["198.18.0.40"]["uptime_24h"].as_f64().unwrap_or_default();
    assert!((0.3..0.9).contains(&share), "uptime share {share}");
    assert_eq!(presence(&d, "198.18.0.50"), "down");
    assert_eq!(
        d["198.18.0.50"]["state"], "new",
        "an offline new device stays listed"
    );
    assert_eq!(transitions(&lan, SCANNER, "198.18.0.50"), ["up", "down"]);
    assert_eq!(transitions(&lan, REPLICA, "198.18.0.50"), ["up", "down"]);
    // `mdb get` of a host the database does not have shows what was seen.
    let got = cli(&lan, REPLICA, &["get", "198.18.0.50"]).expect("get a discovered host");
    assert_eq!(
        (got["state"].as_str(), got["presence"].as_str()),
        (Some("new"), Some("down"))
    );
    let out = lan.mdb(&["get", "printer", "--server", REPLICA]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("first seen") && text.contains("(up)"),
        "{text}"
    );
    let metrics = scrape(&lan, 9090);
    let downs = util::metric(
        &metrics,
        "mdb_presence_transitions_total{presence=\"down\"}",
    );
    assert_eq!(downs, Some(1.0), "{metrics}");
    assert!(util::metric(&metrics, "mdb_history_store_bytes").unwrap_or_default() > 0.0);
    assert_eq!(
        util::metric(&metrics, "mdb_discovered_presence{presence=\"down\"}"),
        Some(1.0)
    );

    // kill -9 in the middle of a sweep: a sweep takes at least the 500 ms
    // scanner timeout and starts 300 ms after the last one ended.
    follow_sweeps(&lan, 1, |_| {});
    std::thread::sleep(Duration::from_millis(450));
    kill9(scanner);

    // The replica keeps answering, marked stale.
    let stale = util::wait_for("the replica to notice", 30, || {
        let s = cli(&lan, REPLICA, &["stats"])?;
        (s["discovery_stale"] == true).then_some(s)
    });
    let replica_metrics = scrape(&lan, 9091);
    assert_eq!(
        util::metric(&replica_metrics, "mdb_discovery_stale"),
        Some(1.0),
        "{replica_metrics}"
    );
    let frozen = lan.discovered(REPLICA);
    assert_eq!(presence(&frozen, "198.18.0.20"), "up", "{stale}");
    let out = lan.mdb(&["discovered", "--server", REPLICA]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));

    scanner = spawn(&mut lan, &scanner_cfg);
    let restarted_at = mdb::db::store::now_unix();
    let log = util::wait_for("the scanner to open its store", 30, || {
        let log = lan.mdb_log();
        log.matches("history store opened")
            .nth(1)
            .map(|_| log.clone())
    });
    assert!(!log.contains("moved it aside"), "{log}");
    let opened = log
        .lines()
        .rfind(|l| l.contains("history store opened"))
        .unwrap_or_default();
    assert!(
        opened.contains("recovered=false") && !opened.contains("hosts=0"),
        "{opened}"
    );
    let d = util::wait_for("the scanner to answer from its store", 30, || {
        let d = lan.discovered(SCANNER);
        d.contains_key("198.18.0.20").then_some(d)
    });
    assert_eq!(
        d["198.18.0.20"]["first_seen_unix"].as_i64(),
        Some(first_seen)
    );
    assert_eq!(transitions(&lan, SCANNER, "198.18.0.50"), ["up", "down"]);

    // The replica catches up on its own.
    util::wait_for("the replica to catch up", 60, || {
        let s = cli(&lan, REPLICA, &["stats"])?;
        let fresh = s["discovery_stale"] == false
            && s["last_sweep_unix"].as_i64().unwrap_or_default() >= restarted_at;
        fresh.then_some(())
    });

    // Host 1 comes back: one more transition, everywhere.
    lan.set_link(1, true);
    util::wait_for("host 1 up again on the replica", 60, || {
        (transitions(&lan, REPLICA, "198.18.0.50") == ["up", "down", "up"]).then_some(())
    });
    let h = cli(&lan, SCANNER, &["history", "printer"]).expect("history by machine name");
    assert_eq!(h["host"]["key"], "machine:printer");
    let _ = scanner;
}

/// `kill -9` at random points while sweeps are being written: every sweep
/// the writer announced as committed is in the store afterwards (at most
/// the one being written is lost), hosts and the sweep summary commit
/// together, and the store opens without a repair walk.
#[test]
fn a_newer_or_unreadable_store_stops_the_start_or_is_moved_aside() {
    let mut lan = Lan::new(&[]);
    let repo = repo();
    let cfg = scanner_config(&lan, &repo);
    let state = lan.dir().join("state");

    // A store from a newer mdb: refused before any port is bound, kept.
    mdb::discover::history::store::force_schema(&state, 99).expect("newer store");
    let out = lan.mdb(&["serve", "--config", cfg.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("schema 99 is newer than this mdb knows (3)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(state
        .join(mdb::discover::history::store::FILE_NAME)
        .exists());

    // Junk where the store should be: moved aside, said so, a fresh start.
    std::fs::write(
        state.join(mdb::discover::history::store::FILE_NAME),
        b"not a database at all\n".repeat(2000),
    )
    .expect("junk");
    spawn(&mut lan, &cfg);
    util::wait_for("the scanner to serve", 30, || {
        cli(&lan, SCANNER, &["stats"]).map(|_| ())
    });
    let log = lan.mdb_log();
    assert!(log.contains("moved it aside"), "{log}");
    let aside: Vec<_> = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).expect("kept"),
        b"not a database at all\n".repeat(2000)
    );
}

#[test]
fn a_rotating_random_mac_is_one_host_one_issue_one_pull_request() {
    use util::fake_github::{FakeGithub, OWNER, REPO, TOKEN};
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.30",
        mac: "02:00:00:00:00:01",
        ..Default::default()
    }]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lan.listen_in_scanner()) });
    let mut repo = util::TestRepo::new();
    gh.attach_git(&repo.path());
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.100-198.18.0.199\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n",
    );
    repo.commit("lab");
    let cfg = scanner_config(&lan, &repo);
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str(&format!(
        "\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"10ms\"\nretry_base = \"50ms\"\nenrol_random_macs = true\n",
        gh.url()
    ));
    std::fs::write(&cfg, text).expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("utf-8")],
        &[("MDB_GITHUB_TOKEN", TOKEN), ("MDB_LOG", "info")],
    );
    util::wait_for("the issue and pull request of the new device", 60, || {
        (!gh.plain_issues().is_empty() && !gh.pulls().is_empty()).then_some(())
    });
    for mac in [
        "06:00:00:00:00:02",
        "0a:00:00:00:00:03",
        "0e:00:00:00:00:04",
    ] {
        lan.set_mac(0, mac);
        util::wait_for(&format!("the sweeps to see {mac}"), 30, || {
            let h = lan.discovered(SCANNER).remove("198.18.0.30")?;
            (h["mac"] == mac).then_some(())
        });
    }
    // Three reconcile passes after the last change: nothing more is filed.
    let passes = || {
        lan.metric_in_scanner("127.0.0.1:9090", "mdb_github_passes_total")
            .unwrap_or(0.0)
    };
    let then = passes();
    util::wait_for("three more reconcile passes", 30, || {
        (passes() >= then + 3.0).then_some(())
    });
    let d = lan.discovered(SCANNER);
    let hosts: Vec<_> = d.keys().filter(|ip| *ip != "198.18.0.1").collect();
    assert_eq!(hosts, ["198.18.0.30"], "one entry");
    assert_eq!(
        d["198.18.0.30"]["macs_seen"],
        serde_json::json!([
            "0e:00:00:00:00:04",
            "0a:00:00:00:00:03",
            "06:00:00:00:00:02",
            "02:00:00:00:00:01"
        ])
    );
    assert_eq!(d["198.18.0.30"]["presence"], "up");
    assert_eq!(gh.plain_issues().len(), 1, "{:#?}", gh.plain_issues());
    assert_eq!(gh.pulls().len(), 1, "{:#?}", gh.pulls());

    // The pull request holds 198.18.0.100; a replica does not offer it.
    let replica_cfg = replica_config(&lan, &repo);
    spawn(&mut lan, &replica_cfg);
    util::wait_for("the replica to mirror the scanner", 30, || {
        let s = cli(&lan, REPLICA, &["stats"])?;
        (s["discovery_stale"] == false).then_some(())
    });
    for server in [SCANNER, REPLICA] {
        let next = util::wait_for("a suggestion", 30, || {
            let out = lan.mdb(&["ip", "next", "lab", "--server", server]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        });
        assert_eq!(next, "198.18.0.101", "{server}");
    }
}
