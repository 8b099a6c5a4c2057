//! A sweep's follow-ups (ports, SSH banner, name) on a real LAN of network
//! namespaces, with `mdb serve` as the scanner: a host whose probes are
//! fresh is not probed again until its MAC or the ports asked change, and a
//! sweep that would overrun its interval sheds follow-ups and says so once.

use crate::util;

use std::path::PathBuf;

use serde_json::Value;
use util::lan::{HostSpec, Lan};

const GRPC: &str = "127.0.0.1:50051";
const METRICS: &str = "127.0.0.1:9090";

fn repo() -> util::TestRepo {
    let mut repo = util::TestRepo::new();
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n",
    );
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\nscan:\n  ports: [22, 80]\n",
    );
    repo.commit("lab");
    repo
}

fn config(lan: &Lan, repo: &util::TestRepo, interval: &str) -> PathBuf {
    let path = lan.dir().join("scanner.toml");
    std::fs::write(
        &path,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"{GRPC}\"\nmetrics_listen = \"{METRICS}\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"{interval}\"\nreverse_dns = false\nstate_dir = \"{}\"\n",
            repo.url(),
            lan.dir().join("checkout").display(),
            lan.dir().join("state").display(),
        ),
    )
    .expect("config");
    path
}

fn serve(lan: &mut Lan, cfg: &std::path::Path) {
    let args = ["serve", "--config", cfg.to_str().expect("utf-8")];
    lan.spawn_mdb(&args, &[("MDB_LOG", "info")]);
}

fn ports(h: &Value) -> Vec<u64> {
    h["open_ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

/// The `took_ms` of every "sweep done" line so far.
fn sweeps(lan: &Lan) -> Vec<u64> {
    lan.mdb_log()
        .lines()
        .filter(|l| l.contains("sweep done"))
        .filter_map(|l| {
            l.split("took_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits for `n` more sweeps than there are now.
fn more_sweeps(lan: &Lan, n: usize) {
    let now = sweeps(lan).len();
    util::wait_for(&format!("{n} more sweeps"), 60, || {
        (sweeps(lan).len() >= now + n).then_some(())
    });
}

#[test]
fn a_fresh_host_is_not_probed_again_until_its_mac_changes() {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.30",
        mac: "00:16:3e:00:00:30",
        ports: vec![80],
        ..Default::default()
    }]);
    let repo = repo();
    let cfg = config(&lan, &repo, "300ms");
    serve(&mut lan, &cfg);
    let first = util::wait_for("the host probed, port 80 open", 60, || {
        let h = lan.discovered(GRPC).remove("198.18.0.30")?;
        (ports(&h) == [80]).then_some(h)
    });
    let probed = first["probed_unix"].as_i64().expect("probed_unix");
    assert!(probed > 0, "{first}");
    // Its port closes, but it keeps its address and MAC and stays up: the
    // refresh (1 h by default) has not passed, so nothing probes it again.
    lan.stop_listening(0);
    let carried_before = lan
        .metric_in_scanner(METRICS, "mdb_sweep_followups_carried_total")
        .unwrap_or(0.0);
    more_sweeps(&lan, 4);
    let h = &lan.discovered(GRPC)["198.18.0.30"];
    assert_eq!(ports(h), [80], "carried over, not probed again: {h}");
    assert_eq!(h["probed_unix"].as_i64(), Some(probed), "{h}");
    let carried = lan
        .metric_in_scanner(METRICS, "mdb_sweep_followups_carried_total")
        .unwrap_or(0.0);
    assert!(
        carried >= carried_before + 4.0,
        "{carried_before} → {carried}"
    );
    // A new MAC at the address is another device: probed at once.
    lan.set_mac(0, "00:16:3e:00:00:31");
    let h = util::wait_for("the new MAC probed again", 30, || {
        let h = lan.discovered(GRPC).remove("198.18.0.30")?;
        (h["mac"] == "00:16:3e:00:00:31").then_some(h)
    });
    assert_eq!(ports(&h), Vec::<u64>::new(), "probed again at once: {h}");
    assert!(h["probed_unix"].as_i64() >= Some(probed), "{h}");
}

/// A merge that changes `scan.ports` asks every host a new question: the
/// next sweep probes them all again although the refresh (1 h) has not
/// passed, and so does the first sweep after a restart whose database
/// changed them meanwhile (the ports asked are kept with each sweep).
#[test]
fn a_change_of_scan_ports_probes_every_host_again_also_across_a_restart() {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.30",
        mac: "00:16:3e:00:00:30",
        ports: vec![80, 8080],
        ..Default::default()
    }]);
    let mut repo = repo();
    let cfg = config(&lan, &repo, "300ms");
    serve(&mut lan, &cfg);
    let open_ports = |lan: &Lan, want: &[u64]| {
        util::wait_for(&format!("open ports {want:?}"), 30, || {
            let h = lan.discovered(GRPC).remove("198.18.0.30")?;
            (ports(&h) == want).then_some(())
        })
    };
    open_ports(&lan, &[80]);
    let asks = |ports: &str| {
        format!("subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\nscan:\n  ports: [{ports}]\n")
    };
    repo.write("mdb.yaml", &asks("22, 80, 8080"));
    repo.commit("ask port 8080 too");
    open_ports(&lan, &[80, 8080]);
    more_sweeps(&lan, 1);
    lan.stop_mdb();
    repo.write("mdb.yaml", &asks("22, 8080"));
    repo.commit("port 80 no more");
    serve(&mut lan, &cfg);
    open_ports(&lan, &[8080]);
}

#[test]
fn a_sweep_that_would_overrun_its_interval_sheds_follow_ups_and_says_so_once() {
    let mut lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.20",
            mac: "00:16:3e:00:00:20",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.21",
            mac: "00:16:3e:00:00:21",
            ports: vec![80],
            ..Default::default()
        },
    ]);
    // Port 22 of .20 accepts and never speaks: reading its SSH banner
    // would take 2 s, twice the interval.
    let silent = "import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',22)); s.listen(64)\nprint('ready',flush=True)\nheld=[]\nwhile len(held)<10000:\n c,_=s.accept(); held.append(c)\n";
    lan.spawn_ready(0, &["python3", "-c", silent]);
    let repo = repo();
    let cfg = config(&lan, &repo, "1s");
    serve(&mut lan, &cfg);
    util::wait_for("5 sweeps", 60, || (sweeps(&lan).len() >= 5).then_some(()));
    let took = sweeps(&lan);
    // Shedding keeps every sweep inside its interval; without it, each
    // would wait out the 2 s banner.
    assert!(took.iter().all(|ms| *ms < 1500), "{took:?}");
    let log = lan.mdb_log();
    assert_eq!(
        log.matches("sweep would overrun its interval").count(),
        1,
        "said once, not every sweep:\n{log}"
    );
    assert_eq!(
        lan.metric_in_scanner(METRICS, "mdb_sweep_overrun"),
        Some(1.0)
    );
    let shed = lan
        .metric_in_scanner(METRICS, "mdb_sweep_followups_shed_total")
        .unwrap_or(0.0);
    assert!(shed >= 4.0, "the slow host is shed every sweep: {shed}");
    // The host itself is still found; the quick one's follow-ups finish.
    let d = lan.discovered(GRPC);
    assert!(d.contains_key("198.18.0.20"), "{d:?}");
    assert_eq!(ports(&d["198.18.0.21"]), [80], "{:?}", d["198.18.0.21"]);
    // Port 22 closes: the follow-ups fit again, and that is said too.
    lan.stop_helpers();
    util::wait_for("sweeps fitting again", 30, || {
        lan.mdb_log()
            .contains("sweeps fit their interval again")
            .then_some(())
    });
    more_sweeps(&lan, 1);
    assert_eq!(
        lan.metric_in_scanner(METRICS, "mdb_sweep_overrun"),
        Some(0.0)
    );
}
