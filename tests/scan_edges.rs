//! `mdb scan` at its edges on a real LAN of network namespaces: the
//! scanner's own address, zero and short timeouts, the progress bar and
//! debug phases on a terminal, an unroutable target, a host that answers
//! ARP late, and a flood of ARP replies.

use crate::util;

use util::lan::{HostSpec, Lan};

/// The scanner's own address is labelled as the scanner and is never a
/// new device: `--report` files nothing for it.
#[test]
fn the_scanners_own_address_is_never_new_nor_filed() {
    let lan = Lan::new(&[HostSpec {
        ip: "198.18.0.31",
        mac: "00:16:3e:00:00:31",
        ..Default::default()
    }]);
    let found = lan.scan_json(&["--no-rdns", "--no-ports"]);
    assert_eq!(found["198.18.0.1"]["state"], "scanner");
    assert_eq!(found["198.18.0.1"]["seen_by"], "self");
    let db = lan.dir().join("db");
    util::write_tree(&db, &[("machines/lab.yaml", "machines: []\n")]);
    let out = lan.mdb(&[
        "scan",
        "198.18.0.0/24",
        "--no-rdns",
        "--no-ports",
        "--report",
        "--db",
        db.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("198.18.0.31"), "{report}");
    assert!(!report.contains("198.18.0.1 "), "{report}");
    assert!(!report.contains("198.18.0.1)"), "{report}");
}

/// `--timeout` is honoured down to a millisecond and refused below, with
/// a clear error and never a panic.
#[test]
fn short_and_zero_timeouts_are_accepted_or_refused_clearly() {
    let lan = Lan::new(&[HostSpec {
        ip: "198.18.0.41",
        mac: "00:16:3e:00:00:41",
        ..Default::default()
    }]);
    let found = lan.scan_json(&["--no-rdns", "--no-ports", "--timeout", "10ms"]);
    assert_eq!(found["198.18.0.41"]["mac"], "00:16:3e:00:00:41");
    for zero in ["0", "0ms", "500us"] {
        let out = lan.mdb(&["scan", "198.18.0.0/24", "--timeout", zero]);
        assert_eq!(out.status.code(), Some(2), "{zero}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.trim() == format!("mdb scan: --timeout {zero:?}: must be at least 1ms (or auto)")
                || err.trim()
                    == format!(
                        "mdb scan: --timeout {zero:?} is not a duration like 500ms (or auto)"
                    ),
            "{zero}: {err}"
        );
    }
}

/// On a terminal a progress bar counts the addresses probed and the hosts
/// answered, and `MDB_LOG=mdb=debug` logs the sweep's phases; off a
/// terminal there is no bar.
#[test]
fn a_terminal_gets_a_progress_bar_and_debug_logs_the_phases() {
    let lan = Lan::new(&[HostSpec {
        ip: "198.18.0.71",
        mac: "00:16:3e:00:00:71",
        ..Default::default()
    }]);
    let command = format!(
        "MDB_LOG=mdb=debug {} scan 198.18.0.0/24 --no-rdns --no-ports",
        util::bin()
    );
    // script(1) gives the scan a pseudo-terminal and copies it to stdout.
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.scanner,
            "script",
            "-qefc",
            &command,
            "/dev/null",
        ])
        .output()
        .expect("script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("probed "),
        "no progress bar on a terminal: {tty}"
    );
    assert!(tty.contains("/254 addresses"), "{tty}");
    for phase in ["planned", "ARP done"] {
        assert!(tty.contains(phase), "no {phase:?} in the debug log: {tty}");
    }
    assert!(tty.contains("198.18.0.71"), "{tty}");
    let piped = lan.mdb(&["scan", "198.18.0.0/24", "--no-rdns", "--no-ports"]);
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("probed "), "a bar off a terminal: {err}");
}

/// A target no route leads to is a warning naming it and a failed scan,
/// not "0 of 254 answered"; nothing is sent there.
#[test]
fn an_unroutable_target_warns_and_fails() {
    let lan = Lan::new(&[]);
    let out = lan.mdb(&["scan", "198.19.200.0/24", "--no-rdns"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mdb scan: warning: no route to 198.19.200.0/24: network unreachable; nothing was sent there"),
        "{err}"
    );
}

/// A host that answers ARP 2.5 s late is found within `--timeout`, which
/// is honoured for every address; `auto` trades it for speed.
#[test]
fn a_late_responder_is_found_within_the_timeout() {
    let lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.51",
            mac: "00:16:3e:00:00:51",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.52",
            mac: "00:16:3e:00:00:52",
            arp_delay_ms: Some(2500),
            ..Default::default()
        },
    ]);
    let found = lan.scan_json(&["--no-rdns", "--no-ports", "--timeout", "3s"]);
    assert_eq!(
        found["198.18.0.52"]["mac"], "00:16:3e:00:00:52",
        "{found:?}"
    );
    let rtt = found["198.18.0.52"]["rtt_micros"].as_u64().unwrap_or(0);
    assert!(
        (2_500_000..3_000_000).contains(&rtt),
        "a true round trip: {rtt} µs"
    );
    // auto's longest sweep of a /24, however slow the machine, is 4 passes
    // (MAX_TRIES) with waits of at most 500 ms (AUTO_CAP) between them and
    // at the end: about 2.1 s, so a 2.5 s answer is never seen, by design
    // rather than by luck. The prompt host is.
    let found = lan.scan_json(&["--no-rdns", "--no-ports"]);
    assert!(found.contains_key("198.18.0.51"));
    assert!(!found.contains_key("198.18.0.52"), "{found:?}");
}

/// A host spoofing thousands of MACs for one address while the sweep runs:
/// the sweep still ends on time, keeps a bounded number of replies and
/// calls the address a conflict.
#[test]
fn an_arp_flood_is_bounded_and_a_conflict() {
    let lan = Lan::new(&[HostSpec {
        ip: "198.18.0.61",
        mac: "00:16:3e:00:00:61",
        ..Default::default()
    }]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/arp_flood.py");
    let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut flood = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.hosts[0].ns, &python])
        .arg(&script)
        .args(["eth0", "198.18.0.61", "200000", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flood");
    // The sweep starts once the flood does (Python can take a while to
    // start on a loaded machine).
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.stdout.as_mut().expect("stdout")),
        &mut ready,
    )
    .expect("the flood's ready line");
    assert_eq!(ready.trim(), "ready");
    let started = std::time::Instant::now();
    let found = lan.scan_json(&["--no-rdns", "--no-ports", "--timeout", "50ms"]);
    let took = started.elapsed();
    let _ = flood.wait();
    let h = &found["198.18.0.61"];
    assert_eq!(h["state"], "conflict", "{h}");
    let others = h["other_macs"].as_array().map_or(0, Vec::len);
    // At most one reply per address of the /24 plus 4096 more, in all.
    assert!(
        (1..=253 + 4096).contains(&others),
        "{others} other MACs kept"
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
