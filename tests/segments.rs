//! Two network segments, each a namespace LAN with its own bridge and its
//! own scanner (`scan.segment` lab and iot), and an API replica following
//! both (`server.scanners`): one merged view, a move between segments,
//! a dead scanner that makes only its own segment stale, and a replica
//! restarted while a scanner is away that serves that segment's last view.

use crate::util;

use std::{collections::HashMap, process::Command};

use serde_json::Value;
use util::{
    fake_github::{FakeGithub, OWNER, REPO, TOKEN},
    lan::{HostSpec, Lan},
    wait_for,
};

/// The link between the two scanner namespaces (never swept).
const LINK_A: &str = "198.19.255.1";
const LINK_B: &str = "198.19.255.2";
const REPLICA: &str = "http://127.0.0.1:50051";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The replica's hosts by MAC (the scanners' own addresses aside).
fn by_mac(lan: &Lan) -> HashMap<String, Value> {
    let out = lan.mdb(&["discovered", "--json", "--server", REPLICA]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["ip"] != "198.18.0.1")
        .map(|h| (h["mac"].as_str().unwrap_or_default().to_string(), h.clone()))
        .collect()
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

fn segments(h: &Value) -> Vec<String> {
    let mut s: Vec<String> = h["segments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    s.sort();
    s
}

fn scanner_config(
    lan: &Lan,
    repo: &util::TestRepo,
    (segment, grpc, metrics): (&str, &str, u16),
    more: &str,
) -> std::path::PathBuf {
    let cfg = lan.dir().join(format!("{segment}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "{more}\n[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"{grpc}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\n[scan]\nsegment = \"{segment}\"\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\nmdns = false\nstate_dir = \"{}\"\n",
            repo.url(),
            lan.dir().join(format!("checkout-{segment}")).display(),
            lan.dir().join(format!("state-{segment}")).display(),
        ),
    )
    .expect("scanner config");
    cfg
}

#[test]
fn two_segments_merge_into_one_view_and_a_dead_scanner_makes_only_its_segment_stale() {
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
    let mut iot = Lan::new(&[
        HostSpec {
            ip: "198.18.0.31",
            mac: "00:16:3e:00:0b:31",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.33",
            mac: "00:16:3e:00:0b:33",
            ..Default::default()
        },
    ]);
    // The replica (in the lab scanner's namespace) reaches the iot scanner
    // over a link of their own.
    ip(&[
        "link",
        "add",
        "xa",
        "netns",
        &lab.scanner,
        "type",
        "veth",
        "peer",
        "name",
        "xb",
        "netns",
        &iot.scanner,
    ]);
    ip(&[
        "-n",
        &lab.scanner,
        "addr",
        "add",
        &format!("{LINK_A}/30"),
        "dev",
        "xa",
    ]);
    ip(&[
        "-n",
        &iot.scanner,
        "addr",
        "add",
        &format!("{LINK_B}/30"),
        "dev",
        "xb",
    ]);
    ip(&["-n", &lab.scanner, "link", "set", "xa", "up"]);
    ip(&["-n", &iot.scanner, "link", "set", "xb", "up"]);

    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.100-198.18.0.199\nscan:\n  down_after: 2\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: nas\n    ip: 198.18.0.21\n    mac: 00:16:3e:00:0a:21\n    use: { device: nas }\n",
    );
    repo.commit("lab");
    // The lab scanner is the one filer: it follows the iot scanner and
    // files from the merged view.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lab.listen_in_scanner()) });
    gh.attach_git(&repo.path());
    let filer = format!(
        "[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\n",
        gh.url()
    );
    let lab_cfg = scanner_config(&lab, &repo, ("lab", "127.0.0.1:50052", 9092), &filer);
    let iot_cfg = scanner_config(&iot, &repo, ("iot", &format!("{LINK_B}:50052"), 9093), "");
    let text = std::fs::read_to_string(&lab_cfg).expect("lab config");
    std::fs::write(
        &lab_cfg,
        text.replacen(
            "[server]\n",
            &format!("[server]\nscanners = [\"http://{LINK_B}:50052\"]\n"),
            1,
        ),
    )
    .expect("lab config");
    lab.spawn_mdb(
        &["serve", "--config", lab_cfg.to_str().expect("path")],
        &[("MDB_LOG", "info"), ("MDB_GITHUB_TOKEN", TOKEN)],
    );
    let iot_scanner = iot
        .spawn_mdb(
            &["serve", "--config", iot_cfg.to_str().expect("path")],
            &[("MDB_LOG", "info")],
        )
        .id();
    let replica_cfg = lab.dir().join("replica.toml");
    std::fs::write(
        &replica_cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\nscanners = [\"http://127.0.0.1:50052\", \"http://{LINK_B}:50052\"]\nmirror_cache = \"{}\"\n",
            repo.url(),
            lab.dir().join("checkout-replica").display(),
            lab.dir().join("mirror").display(),
        ),
    )
    .expect("replica config");
    let replica_args = ["serve", "--config", replica_cfg.to_str().expect("path")];
    let replica = lab.spawn_mdb(&replica_args, &[("MDB_LOG", "info")]).id();

    // Every host of both segments, once, with its segment.
    let hosts = wait_for("both segments on the replica", 60, || {
        let h = by_mac(&lab);
        (h.len() == 4).then_some(h)
    });
    assert_eq!(segments(&hosts["00:16:3e:00:0a:21"]), ["lab"]);
    assert_eq!(segments(&hosts["dc:a6:32:00:0a:22"]), ["lab"]);
    assert_eq!(segments(&hosts["00:16:3e:00:0b:31"]), ["iot"]);
    assert_eq!(segments(&hosts["00:16:3e:00:0b:33"]), ["iot"]);
    assert!(hosts.values().all(|h| h["segment_stale"] == false));

    // .31 moves from the iot segment to the lab one: its link goes to the
    // other bridge. One host, seen on both, at its address, one history.
    let first_seen = hosts["00:16:3e:00:0b:31"]["first_seen_unix"].clone();
    ip(&["-n", &iot.scanner, "link", "set", "p0", "name", "mv0"]);
    ip(&[
        "-n",
        &iot.scanner,
        "link",
        "set",
        "mv0",
        "netns",
        &lab.scanner,
    ]);
    ip(&[
        "-n",
        &lab.scanner,
        "link",
        "set",
        "mv0",
        "master",
        "br0",
        "up",
    ]);
    let moved = wait_for("the moved host seen on lab", 60, || {
        let h = by_mac(&lab);
        h.get("00:16:3e:00:0b:31")
            .filter(|m| segments(m) == ["iot", "lab"] && m["presence"] == "up")
            .cloned()
            .map(|m| (m, h.len()))
    });
    assert_eq!(moved.1, 4, "a move, not a new host");
    assert_eq!(moved.0["first_seen_unix"], first_seen, "one history");
    assert_eq!(moved.0["ip"], "198.18.0.31");

    // The iot scanner's changes reach followers as deltas: .33 goes down,
    // the replica shows it, and nobody reads iot's whole history again.
    let reads = || {
        iot.metric_in_scanner(
            "127.0.0.1:9093",
            "mdb_grpc_request_duration_seconds_count{method=\"ListHostHistory\"}",
        )
        .unwrap_or(0.0)
    };
    let before = reads();
    assert!(before >= 2.0, "the filer and the replica each read it once");
    iot.set_link(1, false);
    // The lag from the scanner's view to the replica's (both polled in
    // turn, so within one poll).
    let down_on = |server: &str| {
        let out = lab.mdb(&["discovered", "--json", "--server", server]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.as_array()
            .into_iter()
            .flatten()
            .any(|h| h["mac"] == "00:16:3e:00:0b:33" && h["presence"] == "down")
    };
    let on_scanner = wait_for(".33 down on the iot scanner", 60, || {
        down_on(&format!("http://{LINK_B}:50052")).then(std::time::Instant::now)
    });
    let on_replica = wait_for(".33 down on the replica", 60, || {
        down_on(REPLICA).then(std::time::Instant::now)
    });
    eprintln!(
        "FIGURE lag from the scanner's view to the replica's (2 scanners): {:?}",
        on_replica - on_scanner
    );
    iot.set_link(1, true);
    wait_for(".33 up again on the replica", 60, || {
        (by_mac(&lab).get("00:16:3e:00:0b:33")?["presence"] == "up").then_some(())
    });
    assert_eq!(
        reads(),
        before,
        "deltas applied, no whole history read again"
    );

    // One filer: each new device of either segment, the moved one too, has
    // one issue and one pull request.
    let new_devices = [
        "dc:a6:32:00:0a:22",
        "00:16:3e:00:0b:31",
        "00:16:3e:00:0b:33",
    ];
    wait_for("an issue and a pull request per new device", 60, || {
        (gh.plain_issues().len() >= 3 && gh.pulls().len() >= 3).then_some(())
    });
    let passes = || lab.metric_in_scanner("127.0.0.1:9092", "mdb_github_passes_total");
    let seen = passes().unwrap_or(0.0);
    wait_for("three more filer passes", 60, || {
        (passes()? >= seen + 3.0).then_some(())
    });
    for mac in new_devices {
        let issues = gh
            .plain_issues()
            .iter()
            .filter(|i| i.body.contains(mac))
            .count();
        let pulls = gh.pulls().iter().filter(|p| p.body.contains(mac)).count();
        assert_eq!((issues, pulls), (1, 1), "{mac}: {:#?}", gh.issues());
    }
    assert_eq!((gh.plain_issues().len(), gh.pulls().len()), (3, 3));

    // kill -9 of the iot scanner: only its own hosts go stale.
    kill(iot_scanner, "-9");
    let stale = wait_for("the iot segment stale", 60, || {
        let h = by_mac(&lab);
        (h.get("00:16:3e:00:0b:33")?["segment_stale"] == true).then_some(h)
    });
    assert_eq!(stale["00:16:3e:00:0a:21"]["segment_stale"], false);
    assert_eq!(stale["dc:a6:32:00:0a:22"]["segment_stale"], false);
    let stale_metric = |segment: &str| {
        lab.metric_in_scanner(
            "127.0.0.1:9090",
            &format!("mdb_discovery_segment_stale{{segment=\"{segment}\"}}"),
        )
    };
    wait_for(
        "the replica's metrics say iot is stale, lab is not",
        30,
        || (stale_metric("iot")? == 1.0 && stale_metric("lab")? == 0.0).then_some(()),
    );
    assert_eq!(
        stale["00:16:3e:00:0b:31"]["segment_stale"], false,
        "the lab scanner sees it"
    );

    // The replica restarts while the iot scanner is away: it serves the
    // iot segment's last view, marked stale, not an empty one.
    kill(replica, "-TERM");
    wait_for("the replica gone", 30, || {
        (!std::path::Path::new(&format!("/proc/{replica}")).exists()
            || std::fs::read_to_string(format!("/proc/{replica}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    let started = std::time::Instant::now();
    lab.spawn_mdb(&replica_args, &[("MDB_LOG", "info")]);
    let after = wait_for("the restarted replica", 60, || {
        let h = by_mac(&lab);
        h.get("00:16:3e:00:0b:33")
            .filter(|x| x["segment_stale"] == true)
            .cloned()
            .map(|x| (x, h))
    });
    eprintln!(
        "FIGURE replica start to serving with a scanner down: {:?}",
        started.elapsed()
    );
    assert_eq!(segments(&after.0), ["iot"]);
    // The lab segment is fresh again once its scanner is caught up; iot
    // stays stale.
    wait_for("the lab segment fresh after the restart", 60, || {
        let h = by_mac(&lab);
        (h.get("00:16:3e:00:0a:21")?["segment_stale"] == false
            && h.get("00:16:3e:00:0b:33")?["segment_stale"] == true)
            .then_some(())
    });
    lab.stop_mdb();
}

/// What a follower's Watch carries from a real scanner (`mdb serve` with
/// [scan]) whose /24 holds `devices` answered by `tests/py/arp_campus.py`
/// and two hosts, one of which leaves mid-way: the bytes of each sweep's
/// event, and of a whole read (every page of ListHostHistory).
fn follower_bytes(devices: u32) -> (usize, Vec<usize>) {
    use mdb::proto::{machine_db_client::MachineDbClient, ListHostHistoryRequest, WatchRequest};
    use prost::Message;
    const SCANNER: &str = "127.0.0.1:50052";
    let host = |ip, mac| HostSpec {
        ip,
        mac,
        ..Default::default()
    };
    let mut lan = Lan::new(&[
        host("198.18.0.2", "00:16:3e:00:02:02"),
        host("198.18.0.3", "00:16:3e:00:02:03"),
    ]);
    lan.start_campus(0, "198.18.0.20", devices as usize);
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n",
    );
    repo.commit("lab");
    let cfg = lan.dir().join("scanner.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\n\n[server]\ngrpc_listen = \"{SCANNER}\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"1s\"\nreverse_dns = false\nstate_dir = \"{}\"\n",
            repo.url(),
            lan.dir().join("checkout").display(),
            lan.dir().join("state").display(),
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("utf-8")],
        &[("MDB_LOG", "info")],
    );
    wait_for("every device found", 90, || {
        (lan.discovered(&format!("http://{SCANNER}")).len() >= devices as usize + 3).then_some(())
    });
    let leaver = lan.hosts[1].ns.clone();
    let (whole, per_sweep) = lan
        .run_in_scanner(move || {
            Box::pin(async move {
                let mut client = MachineDbClient::connect(format!("http://{SCANNER}"))
                    .await
                    .expect("scanner");
                let mut stream = client
                    .watch(WatchRequest {
                        initial_snapshot: false,
                        discovery: true,
                    })
                    .await
                    .expect("watch")
                    .into_inner();
                let mut per_sweep = Vec::new();
                // The sweep in flight when the watch began may be the one
                // that found the devices (its fold was already listed):
                // the first event is not a steady sweep's.
                let mut in_flight = true;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
                while per_sweep.len() < 8 {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let ev = tokio::time::timeout(left, stream.message())
                        .await
                        .expect("sweeps keep coming")
                        .expect("stream")
                        .expect("event");
                    if ev.sweep.is_some() && std::mem::take(&mut in_flight) {
                        continue;
                    }
                    if ev.sweep.is_some() {
                        per_sweep.push(ev.encoded_len());
                        if per_sweep.len() == 2 {
                            // One host leaves: the sweeps after it change it.
                            let _ = Command::new("ip")
                                .args(["-n", &leaver, "link", "set", "eth0", "down"])
                                .status();
                        }
                    }
                }
                let (mut whole, mut token) = (0, String::new());
                loop {
                    let page = client
                        .list_host_history(ListHostHistoryRequest {
                            page_size: 1000,
                            page_token: token.clone(),
                        })
                        .await
                        .expect("history page")
                        .into_inner();
                    whole += page.encoded_len();
                    token = page.next_page_token;
                    if token.is_empty() {
                        break (whole, per_sweep);
                    }
                }
            })
        })
        .join()
        .expect("watch thread");
    let changed = lan.discovered(&format!("http://{SCANNER}"))["198.18.0.3"]["presence"].clone();
    assert_eq!(
        changed, "down",
        "the leaver's change was among those sweeps"
    );
    (whole, per_sweep)
}

/// A follower pays per sweep for what changed, not for the LAN: the
/// events of a real scanner are the same size with 20 devices and with
/// 200 (a scanner that sent every history would send ten times more),
/// while a whole read grows with the devices.
#[test]
fn a_sweep_that_changes_one_host_costs_a_follower_the_same_bytes_at_any_size() {
    let (whole_20, sweeps_20) = follower_bytes(20);
    let (whole_200, sweeps_200) = follower_bytes(200);
    let most = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
    eprintln!(
        "FIGURE bytes a follower reads: 20 devices whole {whole_20}, per sweep {sweeps_20:?}; 200 devices whole {whole_200}, per sweep {sweeps_200:?}"
    );
    assert!(
        whole_200 > 5 * whole_20,
        "a whole read grows with the hosts"
    );
    assert!(
        most(&sweeps_200) <= most(&sweeps_20) + 512,
        "a sweep's event does not grow with the hosts: {sweeps_20:?} vs {sweeps_200:?}"
    );
    assert!(most(&sweeps_200) * 10 < whole_200);
}
