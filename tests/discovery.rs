//! Discovery on a real LAN of network namespaces (198.18.0.0/24): real ARP,
//! real ICMP, a real sshd, nftables dropping ICMP, real TCP listeners.

use crate::util;

use std::collections::BTreeMap;

use serde_json::Value;
use util::lan::{HostSpec, Lan};

const CP_MAC: &str = "00:16:3e:00:00:13";

fn hosts() -> Vec<HostSpec> {
    vec![
        // 0: a dev box with a real sshd
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:00:11",
            sshd: true,
            ..Default::default()
        },
        // 1: a printer-like box that drops ICMP but answers ARP
        HostSpec {
            ip: "198.18.0.12",
            mac: "00:16:3e:00:00:12",
            drop_icmp: true,
            ..Default::default()
        },
        // 2: a Kubernetes control plane
        HostSpec {
            ip: "198.18.0.13",
            mac: CP_MAC,
            ports: vec![6443, 10250],
            ..Default::default()
        },
        // 3: a Raspberry Pi worker without sshd
        HostSpec {
            ip: "198.18.0.14",
            mac: "dc:a6:32:00:00:14",
            ..Default::default()
        },
        // 4: unknown, randomised MAC, printer ports
        HostSpec {
            ip: "198.18.0.15",
            mac: "06:00:00:00:00:15",
            ports: vec![631, 9100],
            ..Default::default()
        },
    ]
}

const DB: &str = "machines:
  - name: devbox
    ip: 198.18.0.11
    mac: 00:16:3e:00:00:11
    use: { development: server }
    ssh: { user: admin }
  - name: printer
    ip: 198.18.0.12
    mac: 00:16:3e:00:00:12
    use: { device: receipt printer }
  - name: cp
    ip: 198.18.0.13
    mac: 00:16:3e:00:00:13
    use: { cluster: { name: lab, role: control-plane } }
  - name: pi
    ip: 198.18.0.14
    mac: dc:a6:32:00:00:14
    use: { cluster: { name: lab, role: worker } }
  - name: offline
    ip: 198.18.0.40
    use: games
  - name: scanner
    ip: 198.18.0.1
    use: discover
";

fn scan(lan: &Lan, db: &std::path::Path, extra: &[&str]) -> BTreeMap<String, Value> {
    let mut args = vec!["--db", db.to_str().expect("path")];
    args.extend_from_slice(extra);
    lan.scan_json(&args)
}

fn write_db(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("db");
    util::write_tree(&db, &[("machines/lab.yaml", DB)]);
    db
}

#[test]
fn sweep_finds_every_live_host_with_mac_vendor_name_and_state() {
    let lan = Lan::new(&hosts());
    let db = write_db(lan.dir());
    let found = scan(&lan, &db, &[]);

    let ips: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(
        ips,
        [
            "198.18.0.1",
            "198.18.0.11",
            "198.18.0.12",
            "198.18.0.13",
            "198.18.0.14",
            "198.18.0.15"
        ],
        "live hosts only, no dead addresses"
    );
    for (i, h) in hosts().iter().enumerate() {
        assert_eq!(found[h.ip]["mac"], h.mac, "MAC of {}", h.ip);
        assert_eq!(
            found[h.ip]["dns_name"],
            format!("h{i}.lan.test"),
            "reverse DNS of {}",
            h.ip
        );
    }
    let state = |ip: &str| found[ip]["state"].as_str().unwrap_or_default().to_string();
    assert_eq!(state("198.18.0.11"), "known");
    assert_eq!(found["198.18.0.11"]["open_ports"], serde_json::json!([22]));
    assert!(found["198.18.0.11"]["ssh_banner"]
        .as_str()
        .unwrap_or_default()
        .starts_with("SSH-2.0-OpenSSH"));
    // ICMP dropped, still found by ARP.
    assert_eq!(state("198.18.0.12"), "known");
    // "ndp" joins when the hosts' link-local addresses are out of DAD.
    let seen_by = |ip: &str| {
        found[ip]["seen_by"]
            .as_str()
            .unwrap_or_default()
            .replace(",ndp", "")
    };
    assert_eq!(seen_by("198.18.0.12"), "arp");
    assert_eq!(seen_by("198.18.0.11"), "arp,icmp");
    assert_eq!(
        state("198.18.0.13"),
        "unprovisionable",
        "a cluster node without SSH cannot be provisioned"
    );
    assert_eq!(
        found["198.18.0.13"]["open_ports"],
        serde_json::json!([6443, 10250])
    );
    assert_eq!(state("198.18.0.14"), "unprovisionable");
    assert!(found["198.18.0.14"]["vendor"]
        .as_str()
        .unwrap_or_default()
        .contains("Raspberry Pi"));
    assert_eq!(state("198.18.0.15"), "new");
    assert_eq!(found["198.18.0.15"]["guessed_use"], "device");
    assert_eq!(found["198.18.0.15"]["mac_is_local"], true);
    assert_eq!(found["198.18.0.15"]["vendor"], "(locally administered)");
    assert_eq!(state("198.18.0.1"), "known", "the scanner itself");
    assert_eq!(found["198.18.0.1"]["detail"], "this scanner's own address");
    assert_eq!(found["198.18.0.1"]["seen_by"], "self");
}

#[test]
fn moving_a_host_or_swapping_its_mac_is_noticed() {
    let mut lan = Lan::new(&hosts());
    let db = write_db(lan.dir());
    lan.set_ip(0, "198.18.0.31");
    lan.set_mac(1, "00:16:3e:00:00:99");
    let found = scan(&lan, &db, &["--no-rdns", "--no-ports"]);
    assert!(
        !found.contains_key("198.18.0.11"),
        "the old address is dead now"
    );
    assert_eq!(found["198.18.0.31"]["state"], "moved");
    assert_eq!(found["198.18.0.31"]["machine"], "devbox");
    assert_eq!(found["198.18.0.12"]["state"], "conflict");
    assert_eq!(found["198.18.0.12"]["mac"], "00:16:3e:00:00:99");
    assert_eq!(found["198.18.0.12"]["machine"], "printer");
}

#[test]
fn scan_refuses_huge_ranges_and_unknown_interfaces() {
    let out = std::process::Command::new(util::bin())
        .args(["scan", "198.18.0.0/15"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-large"));
    let lan = Lan::new(&[]);
    let out = lan.mdb(&["scan", "198.18.0.0/24", "--interface", "nope0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interface nope0 not found"));
}

/// `mdb serve` in the scanner namespace sweeps on its own, remembers hosts
/// across sweeps and serves the result over gRPC and metrics.
#[test]
fn serve_sweeps_on_a_schedule_and_follows_state_changes() {
    let mut lan = Lan::new(&hosts());
    let mut repo = util::TestRepo::new();
    repo.write("machines/lab.yaml", DB);
    repo.write("mdb.yaml", "scan:\n  missing_after: 2\n");
    repo.commit("lab");
    let cfg = lan.dir().join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\n",
            repo.url(),
            lan.dir().join("checkout").display()
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );
    let log = lan.dir().join("serve.log");
    let _ = log;

    let discovered = |lan: &Lan| -> BTreeMap<String, Value> {
        let out = lan.mdb(&["discovered", "--json", "--server", "127.0.0.1:50051"]);
        if !out.status.success() {
            eprintln!("discovered: {}", String::from_utf8_lossy(&out.stderr));
            return BTreeMap::new();
        }
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.into_iter()
            .map(|h| {
                let key = if h["state"] == "missing" {
                    format!("missing:{}", h["machine"].as_str().unwrap_or_default())
                } else {
                    h["ip"].as_str().unwrap_or_default().to_string()
                };
                (key, h)
            })
            .collect()
    };
    let wait = |lan: &Lan,
                what: &str,
                cond: &dyn Fn(&BTreeMap<String, Value>) -> bool|
     -> BTreeMap<String, Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let d = discovered(lan);
            if cond(&d) {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; last: {d:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let state = |d: &BTreeMap<String, Value>, k: &str| {
        d.get(k)
            .and_then(|h| h["state"].as_str())
            .unwrap_or_default()
            .to_string()
    };

    let d = wait(&lan, "the first sweeps", &|d| {
        state(d, "198.18.0.11") == "known" && d.contains_key("missing:offline")
    });
    assert_eq!(state(&d, "198.18.0.15"), "new");
    assert_eq!(d["missing:offline"]["ip"], "198.18.0.40");
    assert_eq!(d["missing:offline"]["detail"], "not seen for 2 sweeps");
    let first_seen = d["198.18.0.11"]["first_seen_unix"]
        .as_i64()
        .unwrap_or_default();
    assert!(first_seen > 0);

    lan.stop_sshd(0);
    let d = wait(&lan, "devbox to become unprovisionable", &|d| {
        state(d, "198.18.0.11") == "unprovisionable"
    });
    assert!(d["198.18.0.11"]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("SSH port 22"));
    assert_eq!(
        d["198.18.0.11"]["first_seen_unix"].as_i64(),
        Some(first_seen),
        "history keeps first-seen"
    );

    lan.start_sshd(0);
    wait(&lan, "devbox to be provisionable again", &|d| {
        state(d, "198.18.0.11") == "known"
    });

    let script = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9090/metrics').read().decode())";
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.scanner, "python3", "-c", script])
        .output()
        .expect("metrics");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        util::metric(&text, "mdb_discovered_hosts{state=\"missing\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        util::metric(&text, "mdb_discovered_hosts{state=\"new\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        util::metric(&text, "mdb_sweeps_total{result=\"ok\"}").unwrap_or(0.0) >= 3.0,
        "{text}"
    );
    assert!(
        util::metric(&text, "mdb_probes_sent_total{kind=\"arp\"}").unwrap_or(0.0) > 0.0,
        "{text}"
    );

    // The web page shows what the sweeps of the real LAN found.
    let fetch = |path: &str| {
        let script = format!("import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9090{path}').read().decode())");
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &lan.scanner, "python3", "-c", &script])
            .output()
            .expect("page");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let page = fetch("/discovered");
    assert!(
        page.contains("198.18.0.11") && page.contains("class=\"state missing\""),
        "{page}"
    );
    let overview: serde_json::Value =
        serde_json::from_str(&fetch("/?format=json")).expect("overview json");
    assert!(
        overview["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{overview}"
    );
    assert_eq!(overview["hosts_by_state"]["missing"], 1, "{overview}");
}

/// Without CAP_NET_RAW: a warning that says which capability is missing,
/// then ICMP-only (unprivileged ping sockets), which misses ICMP-silent hosts.
#[test]
fn without_cap_net_raw_the_scan_warns_and_pings_only() {
    let lan = Lan::new(&hosts());
    let ns = lan.scanner.clone();
    util::run_ok({
        let mut c = std::process::Command::new("ip");
        c.args([
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ping_group_range=0 2147483647",
        ]);
        c
    });
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(util::bin())
        .args(["scan", "198.18.0.0/24", "--json", "--no-rdns", "--no-ports"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("needs CAP_NET_RAW"), "{err}");
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let ips: Vec<&str> = v.iter().filter_map(|h| h["ip"].as_str()).collect();
    assert!(ips.contains(&"198.18.0.11"));
    assert!(
        !ips.contains(&"198.18.0.12"),
        "the ICMP-silent host needs ARP"
    );
}

/// Two hosts claiming one address: every reply is kept, and the address
/// is a conflict whether the database's owner answers first or second.
#[test]
fn two_macs_for_one_address_are_a_conflict_whoever_answers_first() {
    let a = "00:16:3e:00:00:21";
    let b = "00:16:3e:00:00:22";
    let lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.21",
            mac: a,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.21",
            mac: b,
            ..Default::default()
        },
    ]);
    for owner in [a, b] {
        let db = lan.dir().join(format!("db-{owner}"));
        util::write_tree(
            &db,
            &[(
                "machines/lab.yaml",
                &format!(
                    "machines:\n  - name: owner\n    ip: 198.18.0.21\n    mac: {owner}\n    use: games\n"
                ),
            )],
        );
        let found = scan(&lan, &db, &["--no-rdns", "--no-ports"]);
        let h = &found["198.18.0.21"];
        assert_eq!(h["state"], "conflict", "owner {owner}: {h}");
        let mut macs = vec![h["mac"].as_str().unwrap_or_default().to_string()];
        macs.extend(
            h["other_macs"]
                .as_array()
                .expect("other_macs")
                .iter()
                .filter_map(|m| m.as_str().map(String::from)),
        );
        macs.sort();
        assert_eq!(macs, [a, b], "both MACs kept");
        assert!(
            h["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("198.18.0.21 answered ARP from 2 MACs")),
            "{h}"
        );
    }
    // Without a database the conflict is still plain.
    let found = lan.scan_json(&["--no-rdns", "--no-ports"]);
    assert_eq!(found["198.18.0.21"]["state"], "conflict");
}
