//! Switch ports with real parts: a Linux bridge is the switch. Debian's
//! snmpd serves its forwarding table through a `pass_persist` script that
//! reads `bridge fdb` (tests/py/bridge_fdb.py), IF-MIB's ifName natively,
//! and LLDP-MIB through lldpd's AgentX subagent; lldpd runs on the hosts
//! and on the bridge too. Every host shows its bridge port; a port whose
//! LLDP neighbour is a bridge, and one crowded with MACs, are uplinks and
//! no device's port; a machine that goes missing says where it was.

use crate::{
    snmp::{
        ip, make_router, ping_from, refresh_neighbours, secret, start_snmpd_with, COMMUNITY,
        ROUTER_LINK, SERVER,
    },
    util,
};

use std::{
    collections::HashMap,
    process::{Child, Command},
};

use serde_json::Value;
use util::{
    fake_github::{FakeGithub, OWNER, REPO, TOKEN},
    lan::{HostSpec, Lan},
    wait_for,
};

const H0_MAC: &str = "00:16:3e:00:0d:10";
const H1_MAC: &str = "00:16:3e:00:0d:c8";
const PEER_MAC: &str = "00:16:3e:00:0d:50";
const CROWD_MAC: &str = "00:16:3e:00:0d:60";

/// Namespaces and programs of this test beside the LANs, gone on drop.
struct Extra {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Extra {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A namespace `name` plugged into the bridge as port `port`, at `addr`;
/// a switch itself when `switch` (its port in a bridge of its own, which
/// its lldpd announces as a bridge).
fn plug(
    extra: &mut Extra,
    bridge_ns: &str,
    name: &str,
    port: &str,
    mac: &str,
    addr: &str,
    switch: bool,
) {
    let ns = format!("{bridge_ns}{name}");
    ip(&["netns", "add", &ns]);
    extra.namespaces.push(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&[
        "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", port, "netns",
        bridge_ns,
    ]);
    ip(&["-n", &ns, "link", "set", "eth0", "address", mac]);
    let mut dev = "eth0";
    if switch {
        ip(&["-n", &ns, "link", "add", "br1", "type", "bridge"]);
        ip(&["-n", &ns, "link", "set", "br1", "address", mac]);
        ip(&["-n", &ns, "link", "set", "eth0", "master", "br1"]);
        ip(&["-n", &ns, "link", "set", "br1", "up"]);
        dev = "br1";
    }
    ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
    ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    ip(&["-n", bridge_ns, "link", "set", port, "master", "br0", "up"]);
}

/// lldpd in `ns` (its control socket under `dir`, named by `tag`), with
/// AgentX to the bridge's snmpd when `agentx` is given: its socket and pid.
fn lldpd(
    extra: &mut Extra,
    ns: &str,
    dir: &std::path::Path,
    agentx: Option<&std::path::Path>,
    tag: &str,
) -> (String, u32) {
    let sock = dir
        .join(format!("lldpd-{ns}{tag}.sock"))
        .display()
        .to_string();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "lldpd", "-d", "-u", &sock]);
    if let Some(x) = agentx {
        cmd.arg("-x").arg("-X").arg(x);
    }
    let log = std::fs::File::create(dir.join(format!("lldpd-{ns}{tag}.log"))).expect("log");
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("lldpd (apt install lldpd; .ci/run does)");
    let pid = child.id();
    extra.children.push(child);
    (sock, pid)
}

fn lldpcli(ns: &str, sock: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "lldpcli", "-u", sock])
        .args(args)
        .output()
        .expect("lldpcli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bridge's own word: each learned MAC's port (`bridge fdb`).
fn bridge_fdb(ns: &str) -> HashMap<String, String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "bridge", "-j", "fdb", "show", "br", "br0",
        ])
        .output()
        .expect("bridge fdb");
    let list: Value = serde_json::from_slice(&out.stdout).expect("bridge json");
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["master"] == "br0" && e["state"] == "")
        .filter_map(|e| {
            Some((
                e["mac"].as_str()?.to_string(),
                e["ifname"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn a_switch_shows_each_hosts_port_and_never_an_uplink() {
    let mut lab = Lan::new(&[HostSpec {
        ip: "198.18.0.21",
        mac: "00:16:3e:00:0d:21",
        ..Default::default()
    }]);
    let guest = Lan::new(&[
        HostSpec {
            ip: "198.18.2.10",
            mac: H0_MAC,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.2.200",
            mac: H1_MAC,
            ..Default::default()
        },
    ]);
    make_router(&lab, &guest);
    let bridge = guest.scanner.clone();
    let mut extra = Extra {
        namespaces: Vec::new(),
        children: Vec::new(),
    };
    // up1 leads to another bridge (its LLDP says so); up2 to a crowd of
    // MACs (nine static entries besides the one that answers).
    plug(
        &mut extra,
        &bridge,
        "peer",
        "up1",
        PEER_MAC,
        "198.18.2.50",
        true,
    );
    plug(
        &mut extra,
        &bridge,
        "crowd",
        "up2",
        CROWD_MAC,
        "198.18.2.60",
        false,
    );
    // Behind the peer switch, one device (up1 holds two MACs: the peer's
    // own alone would be the peer's port).
    let behind = |mac: &str, port: &str| (mac.to_string(), port.to_string());
    let mut entries = vec![behind("00:16:3e:00:0f:01", "up1")];
    entries.extend((0..9).map(|i| behind(&format!("00:16:3e:00:0e:{i:02x}"), "up2")));
    for (mac, port) in entries {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &bridge, "bridge", "fdb", "add", &mac, "dev", &port, "master",
                "static",
            ])
            .output()
            .expect("bridge fdb add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = guest.dir().join("switch");
    std::fs::create_dir_all(&dir).expect("dir");
    let agentx = dir.join("agentx");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/bridge_fdb.py");
    let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut snmpd = start_snmpd_with(
        &guest,
        &format!(
            "pass_persist .1.3.6.1.2.1.17 {python} {} br0\nmaster agentx\nagentXSocket {}\n",
            script.display(),
            agentx.display()
        ),
    );
    let (mut bridge_lldp, mut bridge_pid) = lldpd(&mut extra, &bridge, &dir, Some(&agentx), "");
    let mut stations: Vec<(String, String)> = Vec::new();
    for h in &guest.hosts {
        stations.push((h.ns.clone(), lldpd(&mut extra, &h.ns, &dir, None, "").0));
    }
    let peer_ns = format!("{bridge}peer");
    let peer_lldp = lldpd(&mut extra, &peer_ns, &dir, None, "").0;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut restarted = false;
    loop {
        let n = lldpcli(&bridge, &bridge_lldp, &["show", "neighbors", "summary"]);
        let ports = ["Interface:    up1", "Interface:    p0", "Interface:    p1"];
        if ports.iter().all(|p| n.contains(p)) {
            break;
        }
        // A frame sent before the bridge's lldpd listened is lost until
        // the next (30 s): ask every sender for one now.
        for (ns, sock) in stations
            .iter()
            .chain(std::iter::once(&(peer_ns.clone(), peer_lldp.clone())))
        {
            lldpcli(ns, sock, &["update"]);
        }
        if !restarted && std::time::Instant::now() + std::time::Duration::from_secs(40) > until {
            // lldpd can miss a port that came up as it started: start the
            // bridge's again, once (its AgentX connects anew).
            restarted = true;
            let _ = Command::new("kill").arg(bridge_pid.to_string()).status();
            std::thread::sleep(std::time::Duration::from_millis(500));
            (bridge_lldp, bridge_pid) = lldpd(&mut extra, &bridge, &dir, Some(&agentx), "-again");
        }
        if std::time::Instant::now() > until {
            let logs: String = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| {
                    format!(
                        "== {}\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    )
                })
                .collect();
            panic!("the bridge's LLDP neighbours never came: {n}\n{logs}");
        }
        std::thread::sleep(std::time::Duration::from_millis(1000));
    }
    // lldpd's view reaches the MIB through AgentX: wait until snmpd
    // serves the bridging neighbour (0x20), so that no sweep reads a
    // table without it.
    wait_for("LLDP-MIB through snmpd", 30, || {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &bridge, "snmpwalk", "-v2c", "-c", COMMUNITY, "-On", "-Ox", "-t",
                "1", "-r", "0",
            ])
            .arg(ROUTER_LINK)
            .arg(".1.0.8802.1.1.2.1.4.1.1.12")
            .env("MIBS", "")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .any(|l| l.contains("Hex-STRING: 20"))
            .then_some(())
    });
    wait_for("the router's entries for the uplinks' hosts", 20, || {
        for addr in ["198.18.2.50", "198.18.2.60"] {
            ping_from(&bridge, &[addr]);
        }
        let out = Command::new("ip")
            .args(["-n", &bridge, "neigh"])
            .output()
            .ok()?;
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("{table}");
        (table.contains(PEER_MAC) && table.contains(CROWD_MAC)).then_some(())
    });

    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n  - name: guest\n    cidr: 198.18.2.0/24\nscan:\n  down_after: 1\n  missing_after: 2\n  file_missing: { machines: [printer] }\n",
    );
    repo.write(
        "machines/guest.yaml",
        &format!("machines:\n  - name: printer\n    ip: 198.18.2.200\n    mac: {H1_MAC}\n    use: {{ device: printer }}\n"),
    );
    repo.commit("guest");
    let community = secret(&lab, "community", COMMUNITY);
    // The scanner files issues and enrolment pull requests (a fake GitHub).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gh = rt.block_on(async { FakeGithub::start(lab.listen_in_scanner()) });
    gh.attach_git(&repo.path());
    let cfg = lab.dir().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\n\n[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsegment = \"lab\"\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"1s\"\nreverse_dns = false\nmdns = false\n\n[[scan.snmp]]\nname = \"gw\"\naddress = \"{ROUTER_LINK}\"\nsegment = \"guest\"\nsubnets = [\"198.18.2.0/24\"]\nports = true\nversion = \"2c\"\ncommunity_file = \"{community}\"\ntimeout = \"2s\"\nretries = 1\n",
            gh.url(),
            repo.url(),
            lab.dir().join("checkout").display(),
        ),
    )
    .expect("config");
    lab.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info"), ("MDB_GITHUB_TOKEN", TOKEN)],
    );

    let hosts = wait_for("the hosts with their ports", 60, || {
        // Traffic through the router keeps its table: every host is in it.
        refresh_neighbours(&guest);
        for addr in ["198.18.2.50", "198.18.2.60"] {
            ping_from(&bridge, &[addr]);
        }
        let h = lab.discovered(SERVER);
        let placed = ["198.18.2.10", "198.18.2.200"]
            .iter()
            .all(|ip| h.get(*ip).is_some_and(|x| !x["switch_port"].is_null()));
        (placed && h.contains_key("198.18.2.50") && h.contains_key("198.18.2.60")).then_some(h)
    });
    let port = |ip: &str| hosts[ip]["switch_port"].clone();
    // The uplinks' own MACs were learned there: left out, not unknown.
    let learned = bridge_fdb(&bridge);
    assert_eq!(learned.get(PEER_MAC).map(String::as_str), Some("up1"));
    assert_eq!(learned.get(CROWD_MAC).map(String::as_str), Some("up2"));
    assert_eq!(port("198.18.2.10")["switch"], "gw");
    assert_eq!(port("198.18.2.10")["port"], "p0");
    assert_eq!(port("198.18.2.10")["vlan"], 1);
    assert_eq!(port("198.18.2.200")["port"], "p1");
    assert!(
        port("198.18.2.50").is_null(),
        "up1's neighbour bridges: {}",
        hosts["198.18.2.50"]
    );
    assert!(
        port("198.18.2.60").is_null(),
        "up2 holds ten MACs: {}",
        hosts["198.18.2.60"]
    );
    // Against the bridge's own word, every host the bridge learned.
    let fdb = bridge_fdb(&bridge);
    let mut matched = 0;
    for h in hosts.values().filter(|h| !h["switch_port"].is_null()) {
        let mac = h["mac"].as_str().unwrap_or_default();
        assert_eq!(
            fdb.get(mac).map(String::as_str),
            h["switch_port"]["port"].as_str(),
            "{mac}"
        );
        matched += 1;
    }
    let devices = fdb.values().filter(|p| p.starts_with('p')).count();
    eprintln!("ports matched against bridge fdb: {matched} of {devices} device ports' MACs");
    assert_eq!((matched, devices), (2, 2));
    let text =
        String::from_utf8_lossy(&lab.mdb(&["discovered", "--server", SERVER]).stdout).to_string();
    assert!(
        text.contains("SWITCH PORT") && text.contains("gw port p0, VLAN 1"),
        "{text}"
    );

    // The new device's issue says where it is; its enrolment pull request
    // carries the port and VLAN as labels.
    let (issue, pull) = wait_for("the new device's issue and pull request", 60, || {
        let issue = gh
            .plain_issues()
            .into_iter()
            .find(|i| i.body.contains(H0_MAC))?;
        let pull = gh
            .pulls()
            .into_iter()
            .find(|p| p.body.contains(H0_MAC) && !p.labels.is_empty())?;
        Some((issue, pull))
    });
    assert!(
        issue
            .body
            .contains("| switch port | gw port p0\\, VLAN 1 |"),
        "{}",
        issue.body
    );
    assert!(
        issue.body.contains("| seen on | guest via snmp\\:gw |"),
        "{}",
        issue.body
    );
    assert!(
        pull.labels.contains(&"port:gw/p0".to_string())
            && pull.labels.contains(&"vlan:1".to_string()),
        "{:?}",
        pull.labels
    );

    // The printer leaves: missing, with the port it was last seen on.
    ip(&["-n", &guest.hosts[1].ns, "link", "set", "eth0", "down"]);
    ip(&["-n", &bridge, "neigh", "flush", "to", "198.18.2.200"]);
    let gone = wait_for("the printer missing", 60, || {
        let h = lab.discovered(SERVER);
        let p = h.get("198.18.2.200")?.clone();
        (p["state"] == "missing").then_some(p)
    });
    let detail = gone["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("last seen on gw port p1, VLAN 1"),
        "{detail}"
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let missing = loop {
        let found = gh
            .plain_issues()
            .into_iter()
            .find(|i| i.body.contains("printer"));
        if let Some(i) = found.filter(|i| i.body.contains("last seen on gw port p1")) {
            break i;
        }
        assert!(
            std::time::Instant::now() < until,
            "no missing issue for the printer with its port: {:#?}",
            gh.plain_issues()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(missing.title.contains("printer"), "{}", missing.title);
    refresh_neighbours(&guest);
    lab.stop_mdb();
    let _ = snmpd.kill();
    let _ = snmpd.wait();
}
