//! Routers as sources, with real parts: Debian's `snmpd` runs in a router
//! namespace that routes between the scanner's segment (lab) and a second
//! one where the scanner has no interface. mdb reads the router's
//! neighbour table each sweep, over SNMPv2c (a community whose view lacks
//! ipNetToPhysicalTable, so the ipNetToMediaTable fallback is what answers)
//! and over SNMPv3 authPriv (the physical table, IPv6 included). A source
//! with a wrong password is a counted failure with a clear line; a router
//! that stops answering leaves its hosts as they were, marked stale; a host
//! gone from the table goes down.

use crate::util;

use std::{
    collections::HashMap,
    process::{Child, Command},
    time::Instant,
};

use serde_json::Value;
use util::{
    lan::{HostSpec, Lan},
    wait_for,
};

const SCANNER_LINK: &str = "198.19.255.1";
pub(crate) const ROUTER_LINK: &str = "198.19.255.2";
pub(crate) const SERVER: &str = "http://127.0.0.1:50051";
const GUEST_MAC: &str = "00:16:3e:00:0c:10";
const CAM_MAC: &str = "00:16:3e:00:0c:c8";
pub(crate) const COMMUNITY: &str = "lab-community-7f3a";
const MEDIA_ONLY: &str = "media-only-29c1";
const AUTH_PASS: &str = "auth-pass-4d1e90";
const PRIV_PASS: &str = "priv-pass-b7c2a1";

pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all);
}

/// The `guest` LAN's bridge namespace made a router: its own address on
/// the guest subnets, a link to the scanner, forwarding on, and each
/// host in its neighbour table.
pub(crate) fn make_router(lab: &Lan, guest: &Lan) {
    let r = &guest.scanner;
    ip(&["-n", r, "addr", "flush", "dev", "br0"]);
    ip(&["-n", r, "addr", "add", "198.18.2.1/24", "dev", "br0"]);
    ip(&[
        "-n",
        r,
        "-6",
        "addr",
        "add",
        "2001:db8:2::1/64",
        "dev",
        "br0",
        "nodad",
    ]);
    ip(&[
        "link",
        "add",
        "up0",
        "netns",
        &lab.scanner,
        "type",
        "veth",
        "peer",
        "name",
        "down0",
        "netns",
        r,
    ]);
    ip(&[
        "-n",
        &lab.scanner,
        "addr",
        "add",
        &format!("{SCANNER_LINK}/30"),
        "dev",
        "up0",
    ]);
    ip(&[
        "-n",
        r,
        "addr",
        "add",
        &format!("{ROUTER_LINK}/30"),
        "dev",
        "down0",
    ]);
    ip(&["-n", &lab.scanner, "link", "set", "up0", "up"]);
    ip(&["-n", r, "link", "set", "down0", "up"]);
    ip(&[
        "-n",
        &lab.scanner,
        "route",
        "add",
        "198.18.2.0/24",
        "via",
        ROUTER_LINK,
    ]);
    in_ns(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (i, h) in guest.hosts.iter().enumerate() {
        ip(&["-n", &h.ns, "route", "add", "default", "via", "198.18.2.1"]);
        if i == 1 {
            ip(&[
                "-n",
                &h.ns,
                "-6",
                "addr",
                "add",
                "2001:db8:2::200/64",
                "dev",
                "eth0",
                "nodad",
            ]);
        }
    }
    refresh_neighbours(guest);
}

/// `ping ARGS` from namespace `ns`, once, answered or not.
pub(crate) fn ping_from(ns: &str, args: &[&str]) {
    let _ = Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1"])
        .args(args)
        .output();
}

/// The router asks each host (as traffic through it would): its table
/// holds them, reachable.
pub(crate) fn refresh_neighbours(guest: &Lan) {
    for target in ["198.18.2.10", "198.18.2.200"] {
        ping_from(&guest.scanner, &[target]);
    }
    ping_from(&guest.scanner, &["-6", "2001:db8:2::200"]);
}

/// Debian's snmpd in the router namespace, on the scanner link only: a
/// v2c community with the whole tree, one whose view lacks
/// ipNetToPhysicalTable, and a v3 user for authPriv (SHA, AES).
fn start_snmpd(guest: &Lan) -> Child {
    start_snmpd_with(guest, "")
}

/// [`start_snmpd`] with more lines of configuration.
pub(crate) fn start_snmpd_with(guest: &Lan, more: &str) -> Child {
    let dir = guest.dir().join("snmpd");
    std::fs::create_dir_all(&dir).expect("snmpd dir");
    let conf = dir.join("snmpd.conf");
    std::fs::write(
        &conf,
        format!(
            "agentaddress udp:{ROUTER_LINK}:161\nrocommunity {COMMUNITY} default\nview noPhys included .1\nview noPhys excluded .1.3.6.1.2.1.4.35\nrocommunity {MEDIA_ONLY} default -V noPhys\ncreateUser mdbuser SHA \"{AUTH_PASS}\" AES \"{PRIV_PASS}\"\nrouser mdbuser priv\n{more}"
        ),
    )
    .expect("snmpd.conf");
    let child = Command::new("ip")
        .args(["netns", "exec", &guest.scanner, "snmpd", "-f", "-Lf"])
        .arg(dir.join("log"))
        .args(["-C", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("pid"))
        .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
        .env("MIBS", "")
        .spawn()
        .expect("snmpd (apt install snmpd; .ci/run does)");
    // Ready when it answers on the link.
    wait_for("snmpd answering", 20, || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &guest.scanner,
                "snmpget",
                "-v2c",
                "-c",
                COMMUNITY,
                "-t",
                "1",
                "-r",
                "0",
            ])
            .arg(ROUTER_LINK)
            .arg(".1.3.6.1.2.1.1.3.0")
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    child
}

pub(crate) fn secret(lan: &Lan, name: &str, text: &str) -> String {
    let p = lan.dir().join(name);
    std::fs::write(&p, format!("{text}\n")).expect("secret");
    p.display().to_string()
}

fn config(lab: &Lan, repo: &util::TestRepo) -> std::path::PathBuf {
    let community = secret(lab, "community", MEDIA_ONLY);
    let auth = secret(lab, "auth", AUTH_PASS);
    let privacy = secret(lab, "privacy", PRIV_PASS);
    let wrong = secret(lab, "wrong", "not-the-password");
    let cfg = lab.dir().join("serve.toml");
    let v3 = |name: &str, segment: &str, subnets: &str, auth: &str| {
        format!(
            "[[scan.snmp]]\nname = \"{name}\"\naddress = \"{ROUTER_LINK}\"\nsegment = \"{segment}\"\nsubnets = {subnets}\nversion = \"3\"\nuser = \"mdbuser\"\nauth = \"sha\"\nauth_password_file = \"{auth}\"\nprivacy = \"aes\"\nprivacy_password_file = \"{privacy}\"\ntimeout = \"300ms\"\nretries = 0\n\n"
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsegment = \"lab\"\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"1s\"\nreverse_dns = false\nmdns = false\nstate_dir = \"{}\"\n\n[[scan.snmp]]\nname = \"gw\"\naddress = \"{ROUTER_LINK}\"\nsegment = \"guest\"\nsubnets = [\"198.18.2.0/25\"]\nversion = \"2c\"\ncommunity_file = \"{community}\"\ntimeout = \"300ms\"\nretries = 0\n\n{}{}",
            repo.url(),
            lab.dir().join("checkout").display(),
            lab.dir().join("state").display(),
            v3("gw3", "cams", "[\"198.18.2.128/25\", \"2001:db8:2::/64\"]", &auth),
            v3("bad", "attic", "[\"198.18.3.0/24\"]", &wrong),
        ),
    )
    .expect("config");
    cfg
}

fn by_ip(lab: &Lan) -> HashMap<String, Value> {
    lab.discovered(SERVER)
}

fn reads(lab: &Lan, source: &str, result: &str) -> f64 {
    lab.metric_in_scanner(
        "127.0.0.1:9090",
        &format!("mdb_snmp_reads_total{{result=\"{result}\",source=\"snmp:{source}\"}}"),
    )
    .unwrap_or(0.0)
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

#[test]
fn a_routers_table_gives_the_hosts_of_a_segment_without_a_scanner() {
    let mut lab = Lan::new(&[HostSpec {
        ip: "198.18.0.21",
        mac: "00:16:3e:00:0c:21",
        ..Default::default()
    }]);
    let guest = Lan::new(&[
        HostSpec {
            ip: "198.18.2.10",
            mac: GUEST_MAC,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.2.200",
            mac: CAM_MAC,
            ..Default::default()
        },
    ]);
    make_router(&lab, &guest);
    let mut snmpd = start_snmpd(&guest);
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n  - name: guest\n    cidr: 198.18.2.0/24\nscan:\n  down_after: 2\n",
    );
    repo.write(
        "machines/cams.yaml",
        &format!("machines:\n  - name: cam\n    ip: 198.18.2.200\n    mac: {CAM_MAC}\n    use: {{ device: camera }}\n"),
    );
    repo.commit("lab and guest");
    let cfg = config(&lab, &repo);
    let started = Instant::now();
    lab.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );

    // Both guest hosts, each with its source and segment; the lab host as
    // the scanner sees it.
    let hosts = wait_for("the router's hosts", 60, || {
        refresh_neighbours(&guest);
        let h = by_ip(&lab);
        let both = h.contains_key("198.18.2.10") && h.contains_key("198.18.2.200");
        let v6 = h
            .get("198.18.2.200")
            .is_some_and(|c| c["ipv6_addresses"] != Value::Array(vec![]));
        (both && v6 && h.contains_key("198.18.0.21")).then_some(h)
    });
    eprintln!("router hosts served {:?} after start", started.elapsed());
    let guest_host = &hosts["198.18.2.10"];
    assert_eq!(guest_host["mac"], GUEST_MAC);
    assert_eq!(guest_host["source"], "snmp:gw", "{guest_host}");
    assert_eq!(strings(&guest_host["segments"]), ["guest"]);
    assert_eq!(guest_host["seen_by"], "snmp");
    assert_eq!(guest_host["state"], "new");
    assert_eq!(
        guest_host["ipv6_addresses"],
        Value::Array(vec![]),
        "the v2c community's view lacks the physical table: the IPv4-only media table answered"
    );
    let cam = &hosts["198.18.2.200"];
    assert_eq!(cam["source"], "snmp:gw3", "v3 authPriv: {cam}");
    assert_eq!(strings(&cam["segments"]), ["cams"]);
    assert_eq!(
        (cam["state"].as_str(), cam["machine"].as_str()),
        (Some("known"), Some("cam"))
    );
    let v6: Vec<&str> = cam["ipv6_addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str())
        .collect();
    assert!(
        v6.contains(&"2001:db8:2::200"),
        "IPv6 from the physical table: {v6:?}"
    );
    assert_eq!(hosts["198.18.0.21"]["source"], "");
    assert_eq!(strings(&hosts["198.18.0.21"]["segments"]), ["lab"]);
    assert!(
        !hosts.contains_key(SCANNER_LINK),
        "nothing outside the served subnets: {:?}",
        hosts.keys()
    );
    let table = lab.mdb(&["discovered", "--server", SERVER]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("SEEN ON") && text.contains("guest via snmp:gw"),
        "{text}"
    );

    // A wrong password: a counted failure and one clear line, no hosts.
    wait_for("the bad source counted", 30, || {
        (reads(&lab, "bad", "auth") >= 1.0).then_some(())
    });
    assert_eq!(
        lab.metric_in_scanner(
            "127.0.0.1:9090",
            "mdb_snmp_reads_total{result=\"ok\",source=\"snmp:bad\"}"
        ),
        Some(0.0),
        "the series exists, at 0"
    );
    let log = lab.mdb_log();
    let line = log
        .lines()
        .find(|l| l.contains("snmp:bad") && l.contains("not read"))
        .unwrap_or_else(|| panic!("no line for the bad source:\n{log}"));
    assert!(line.contains("authentication failed"), "{line}");
    assert!(!log.contains(AUTH_PASS) && !log.contains(PRIV_PASS) && !log.contains(MEDIA_ONLY));
    assert!(reads(&lab, "gw", "ok") >= 1.0 && reads(&lab, "gw3", "ok") >= 1.0);

    // A host gone from the router's table goes down; the other stays up.
    ip(&["-n", &guest.hosts[0].ns, "link", "set", "eth0", "down"]);
    ip(&["-n", &guest.scanner, "neigh", "flush", "to", "198.18.2.10"]);
    wait_for("the departed host down", 30, || {
        let h = by_ip(&lab);
        (h.get("198.18.2.10")?["presence"] == "down").then_some(())
    });
    let cam = &by_ip(&lab)["198.18.2.200"];
    assert_eq!(
        (&cam["presence"], &cam["segment_stale"]),
        (&Value::from("up"), &Value::from(false))
    );

    // The router stops answering: its hosts are kept as last seen, stale,
    // and every failed read is counted.
    let pid = snmpd.id().to_string();
    let snmpd_pid = std::fs::read_to_string(guest.dir().join("snmpd/pid")).unwrap_or(pid);
    let signal = |s: &str| {
        Command::new("kill")
            .args([s, snmpd_pid.trim()])
            .status()
            .expect("kill");
    };
    signal("-STOP");
    let timeouts = reads(&lab, "gw3", "timeout");
    let auth_failures = reads(&lab, "gw3", "auth");
    let stale = wait_for("the router's hosts stale", 30, || {
        let h = by_ip(&lab);
        (h.get("198.18.2.200")?["segment_stale"] == true).then_some(h)
    });
    wait_for("more reads timed out", 30, || {
        (reads(&lab, "gw3", "timeout") >= timeouts + 2.0).then_some(())
    });
    assert_eq!(
        reads(&lab, "gw3", "auth"),
        auth_failures,
        "a stopped router is no wrong password"
    );
    let cam = &by_ip(&lab)["198.18.2.200"];
    assert_eq!(cam["presence"], "up", "kept, not missed: {cam}");
    assert_eq!(cam["state"], "known");
    assert_eq!(
        stale["198.18.0.21"]["segment_stale"], false,
        "the scanner's own segment"
    );
    let text =
        String::from_utf8_lossy(&lab.mdb(&["discovered", "--server", SERVER]).stdout).to_string();
    assert!(text.contains("cams via snmp:gw3 (stale)"), "{text}");
    signal("-CONT");
    refresh_neighbours(&guest);
    wait_for("fresh again", 30, || {
        let h = by_ip(&lab);
        (h.get("198.18.2.200")?["segment_stale"] == false).then_some(())
    });
    lab.stop_mdb();
    let _ = snmpd.kill();
    let _ = snmpd.wait();
}
