//! The campus in miniature: 1,000 devices behind one namespace
//! (`tests/py/arp_campus.py`), each with its own Raspberry Pi MAC and none
//! answering TCP, in a /22. `mdb scan` and `mdb serve` find every one, at
//! a bounded cost per host: frames per address counted, and the time held
//! to the campus's own figure for five times as many devices (3 s), which
//! a cost per host of a few milliseconds (a fixed wait, a sleep per host,
//! probes one after another) would break. The speed itself is measured
//! side by side with peers in `bench/sweep.sh campus`.

use crate::util;

use util::{
    lan::{HostSpec, Lan},
    wait_for,
};

const DEVICES: usize = 1000;
const FIRST: &str = "198.18.4.10";
/// The campus's own bound, for 5,000 devices.
const BOUND_S: f64 = 3.0;

/// "N of M addresses answered in X s (A ARP, I ICMP, T TCP probes)".
fn summary(stderr: &str) -> (f64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("addresses answered in"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let number_before = |word: &str| -> f64 {
        line.split(word)
            .next()
            .and_then(|s| s.split_whitespace().last())
            .map(|n| n.trim_start_matches('(').replace(',', ""))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {word} in {line}"))
    };
    (
        number_before(" s ("),
        number_before(" ARP") as u64,
        number_before(" TCP probes") as u64,
    )
}

#[test]
fn a_thousand_devices_are_found_by_a_scan_and_a_sweep_at_a_bounded_cost_per_host() {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.2",
        mac: "00:16:3e:00:00:02",
        ..Default::default()
    }]);
    let out = std::process::Command::new("ip")
        .args([
            "-n",
            &lan.scanner,
            "addr",
            "add",
            "198.18.4.1/22",
            "dev",
            "br0",
        ])
        .output()
        .expect("ip");
    assert!(out.status.success(), "{out:?}");
    lan.start_campus(0, FIRST, DEVICES);

    // One scan, at its defaults.
    let out = lan.mdb(&["scan", "198.18.4.0/22"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The table: one row per host, its MAC in the second column.
    let found = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|m| m.starts_with("dc:a6:32"))
        })
        .count();
    let (took, arp, tcp) = summary(&stderr);
    eprintln!(
        "FIGURE mdb scan of {DEVICES} devices in a /22: {took} s, {arp} ARP, {tcp} TCP probes"
    );
    assert_eq!(found, DEVICES, "every device found by one scan");
    assert!(
        arp <= 2 * 1022,
        "two ARP requests per address at most: {arp}"
    );
    assert!(
        tcp <= 7 * DEVICES as u64,
        "one SYN per port per device: {tcp}"
    );
    assert!(took <= BOUND_S, "{took} s for {DEVICES} devices");

    // One `mdb serve` sweep after the first (which probes everyone).
    let mut repo = util::TestRepo::new();
    repo.write("machines/lab.yaml", "machines: []\n");
    repo.commit("empty");
    let cfg = lan.dir().join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.4.0/22\"]\ninterval = \"4s\"\nreverse_dns = false\nstate_dir = \"{}\"\n",
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
    let took_ms = wait_for("two sweeps", 60, || {
        let log = lan.mdb_log();
        let took: Vec<f64> = log
            .lines()
            .filter(|l| l.contains("sweep done"))
            .filter_map(|l| l.split("took_ms=").nth(1))
            .filter_map(|t| t.split_whitespace().next()?.parse().ok())
            .collect();
        (took.len() >= 2).then(|| took[1])
    });
    let listed = lan.discovered("http://127.0.0.1:50051");
    let devices = listed
        .values()
        .filter(|h| h["mac"].as_str().is_some_and(|m| m.starts_with("dc:a6:32")))
        .count();
    eprintln!("FIGURE one mdb serve sweep of {DEVICES} devices: {took_ms} ms");
    assert_eq!(devices, DEVICES, "every device listed by the server");
    assert!(took_ms <= BOUND_S * 1000.0, "{took_ms} ms for a sweep");
    lan.stop_mdb();
}
