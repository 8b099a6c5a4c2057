//! A DHCP hostname is the client's own words: Debian's `udhcpc` asks Debian's
//! ISC `dhcpd` and Kea for a lease under a hostname that reads like a
//! never-ending lease of another address. mdb reads each server's lease file
//! as the server wrote it (quotes, escapes), so the hostname names its own
//! host and claims nothing else: `mdb dhcp --follow` keeps the reservation
//! the forged lease would have taken.

use crate::util;

use std::time::{Duration, Instant};

use util::{
    bench::{Bench, MDB_YAML},
    lan::HostSpec,
};

const CLIENT_MAC: &str = "dc:a6:32:00:00:31";
/// What the client calls itself to dhcpd: a lease of 198.18.0.10 that
/// never ends.
const HOSTILE: &str = "x lease 198.18.0.10 { ends never; hardware ethernet 02:66:66:66:66:66";
/// What it calls itself to Kea: the fields of a CSV line of another lease.
const HOSTILE_CSV: &str = "x,198.18.0.10,02:66:66:66:66:66,,600,1999999999,1,0,0,y,0,";

fn wait(what: &str, secs: u64, b: &Bench, cond: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        let said = |f: &str| std::fs::read_to_string(b.dir.join(f)).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- dhcpd.leases\n{}\n--- kea-leases.csv\n{}\n--- dhcpd.log\n{}\n--- kea.log\n{}",
            said("dhcpd.leases"),
            said("kea-leases.csv"),
            said("dhcpd.log"),
            said("kea.log"),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A lab whose database reserves 198.18.0.10 for `printer`, a DHCP
/// client asking under [`HOSTILE`], and a DHCP follower reading `leases`.
fn follower_keeps_the_reservation(b: &mut Bench, leases: &std::path::Path, hostname: &str) {
    b.commit_with(
        MDB_YAML,
        &["  - name: printer\n    ip: 198.18.0.10\n    mac: 00:16:3e:00:00:10\n    use: { device: receipt printer }\n".to_string()],
        "the printer's reservation",
    );
    b.start_server();
    b.lan.start_dhcp_client(0, hostname);
    wait("the client's lease", 60, b, &|| {
        b.lan.address_of(0).is_some()
    });
    wait("the lease in the server's file", 30, b, &|| {
        std::fs::read_to_string(leases).is_ok_and(|t| t.contains("02:66:66:66:66:66"))
    });
    let hosts = b.dir.join("hosts");
    std::fs::create_dir_all(&hosts).expect("hostsdir");
    let port = b.start_dhcp_follower(&[
        "--hostsdir",
        hosts.to_str().expect("path"),
        "--leases",
        leases.to_str().expect("path"),
    ]);
    wait("the follower to apply the database", 60, b, &|| {
        b.dhcp_status(port)["targets"]["hostsdir"]["ok"] == true
    });
    let st = b.dhcp_status(port);
    assert_eq!(st["refused"], serde_json::json!([]), "{st}");
    assert!(hosts.join("mdb-printer").exists(), "{st}");
    // The client is named by what it said, at its own address only.
    let leased = b.lan.address_of(0).expect("lease");
    let scanned = b.lan.scan_json(&[
        "--no-rdns",
        "--no-mdns",
        "--no-ports",
        "--leases",
        leases.to_str().expect("path"),
    ]);
    let names = scanned[&leased]["names"].to_string();
    assert!(
        names.contains(&serde_json::to_string(hostname).expect("json")),
        "the whole hostname, unescaped: {names}"
    );
    assert!(
        !scanned.contains_key("198.18.0.10"),
        "no host at the forged address: {scanned:?}"
    );
}

#[test]
fn isc_dhcpd_leases_keep_a_hostname_in_its_quotes() {
    let mut b = Bench::with(&[HostSpec {
        mac: CLIENT_MAC,
        dhcp: true,
        ..Default::default()
    }]);
    let leases = b.dir.join("dhcpd.leases");
    std::fs::write(&leases, "").expect("lease file");
    let conf = b.dir.join("dhcpd.conf");
    std::fs::write(
        &conf,
        "default-lease-time 600;\nmax-lease-time 600;\nauthoritative;\nsubnet 198.18.0.0 netmask 255.255.255.0 {\n  range 198.18.0.100 198.18.0.199;\n}\n",
    )
    .expect("dhcpd.conf");
    b.lan.spawn_in_scanner(
        &[
            "dhcpd",
            "-f",
            "-d",
            "-4",
            "-cf",
            conf.to_str().expect("path"),
            "-lf",
            leases.to_str().expect("path"),
            "-pf",
            b.dir.join("dhcpd.pid").to_str().expect("path"),
            "br0",
        ],
        &[],
        &b.dir.join("dhcpd.log"),
    );
    follower_keeps_the_reservation(&mut b, &leases, HOSTILE);
    let text = std::fs::read_to_string(&leases).expect("leases");
    assert!(
        text.contains("client-hostname \"x lease 198.18.0.10 {"),
        "{text}"
    );
}

#[test]
fn kea_leases_keep_a_hostname_in_its_field() {
    let mut b = Bench::with(&[HostSpec {
        mac: CLIENT_MAC,
        dhcp: true,
        ..Default::default()
    }]);
    // No sanitising of hostnames: what the client sent is what Kea keeps.
    let leases = b.start_kea("\"hostname-char-set\": \"\",");
    follower_keeps_the_reservation(&mut b, &leases, HOSTILE_CSV);
    let text = std::fs::read_to_string(&leases).expect("leases");
    assert!(
        text.contains("x&#x2c198.18.0.10&#x2c"),
        "Kea escaped the commas: {text}"
    );
}
