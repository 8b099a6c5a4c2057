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
    let lan = Lan::new(&[HostSpec::at("198.18.0.31", "00:16:3e:00:00:31")]);
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
    let lan = Lan::new(&[HostSpec::at("198.18.0.41", "00:16:3e:00:00:41")]);
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
    let lan = Lan::new(&[HostSpec::at("198.18.0.71", "00:16:3e:00:00:71")]);
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
        HostSpec::at("198.18.0.51", "00:16:3e:00:00:51"),
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
    let lan = Lan::new(&[HostSpec::at("198.18.0.61", "00:16:3e:00:00:61")]);
    let mut flood = start_flood(&lan, "198.18.0.61");
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

/// Host 0 floods forged ARP replies for `claim` (an address or a network)
/// from random MACs, 200,000 at most, for 3 s at most.
fn start_flood(lan: &Lan, claim: &str) -> std::process::Child {
    start_in_host(lan, "arp_flood.py", &["eth0", claim, "200000", "3"])
}

/// Starts `tests/py/SCRIPT ARGS` in host 0's namespace; returned once it
/// says "ready" (Python can take a while to start on a loaded machine).
fn start_in_host(lan: &Lan, script: &str, args: &[&str]) -> std::process::Child {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.hosts[0].ns, &python])
        .arg(&script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("a test script");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
        &mut ready,
    )
    .expect("the script's ready line");
    assert_eq!(ready.trim(), "ready", "{script:?}");
    child
}

/// Counts, in host namespace `ns`, the broadcast ARP requests the scanner
/// sends; read with [`requests_counted`].
fn count_requests(ns: &str) {
    let rules = "table netdev count {\n chain in {\n  type filter hook ingress device eth0 priority 0;\n  ether daddr ff:ff:ff:ff:ff:ff arp operation request arp saddr ip 198.18.0.1 counter\n }\n}\n";
    nft_in(ns, rules);
}

/// Loads nftables `rules` in namespace `ns`.
fn nft_in(ns: &str, rules: &str) {
    let mut nft = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    std::io::Write::write_all(nft.stdin.as_mut().expect("stdin"), rules.as_bytes()).expect("rules");
    assert!(nft.wait().expect("nft").success(), "{rules}");
}

fn requests_counted(ns: &str) -> u64 {
    let listed = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "netdev", "count",
        ])
        .output()
        .expect("nft list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    listed
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter: {listed}"))
}

/// `mdb scan 198.18.4.0/23` (no follow-up but the ICMP witness) in the
/// scanner of `lan`, which has an address there.
fn scan_22(lan: &Lan) -> (Vec<serde_json::Value>, String) {
    scan_with_log(
        lan,
        "198.18.4.0/23",
        &["--no-rdns", "--no-ports", "--no-mdns", "--no-ipv6"],
    )
}

/// A host flooding forged replies for every address of a /24 (broadcast,
/// most before any request) gets its 253 addresses found, as conflicts,
/// and none told to the kernel: the kernel takes whichever reply follows
/// a request of its own, so no entry holds the MAC the scan saw first.
#[test]
fn forged_replies_are_never_told_to_the_kernel() {
    let lan = Lan::new(&[HostSpec::at("198.18.0.61", "00:16:3e:00:00:61")]);
    lan.ip_in_scanner(&["addr", "add", "198.18.4.1/23", "dev", "br0"]);
    let mut flood = start_flood(&lan, "198.18.4.0/24");
    let (found, _log) = scan_22(&lan);
    let table = lan.ip_in_scanner(&["-4", "neigh", "show", "dev", "br0"]);
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(
        found.len() > 150,
        "the flood claimed too few: {}",
        found.len()
    );
    let first_seen: std::collections::HashSet<String> = found
        .iter()
        .filter_map(|h| {
            Some(format!(
                "{} lladdr {} ",
                h["ip"].as_str()?,
                h["mac"].as_str()?
            ))
        })
        .collect();
    let told: Vec<&str> = table
        .lines()
        .filter(|l| first_seen.iter().any(|s| l.starts_with(s.as_str())))
        .collect();
    assert!(told.is_empty(), "told of {} found: {told:?}", found.len());
}

/// (Sizes stay below the kernel's table limit, which every namespace on
/// the machine shares: a full table stops every test host's ARP replies.)
/// 300 real-looking devices answering their requests properly (one
/// responder, each with its own MAC) get at most `MAX_SEEDS` entries told
/// in a window, by the scan's account and by the kernel's: told entries
/// are the stale ones (delayed once used); the kernel asks for the rest
/// itself, and what it learns so is reachable.
#[test]
fn a_whole_range_of_hosts_does_not_fill_the_kernels_table() {
    let lan = Lan::new(&[HostSpec::at("198.18.0.61", "00:16:3e:00:00:61")]);
    lan.ip_in_scanner(&["addr", "add", "198.18.4.1/23", "dev", "br0"]);
    let mut campus = start_in_host(&lan, "arp_campus.py", &["eth0", "198.18.4.2", "300", "10"]);
    let (found, log) = scan_22(&lan);
    let table = lan.ip_in_scanner(&["-4", "neigh", "show", "dev", "br0"]);
    let _ = campus.kill();
    let _ = campus.wait();
    assert_eq!(found.len(), 300);
    let max = mdb::discover::scan::seed::MAX_SEEDS;
    let told = logged(&log, "told") as usize;
    assert!((1..=max).contains(&told), "{told} told of {}", found.len());
    let stale = table
        .lines()
        .filter(|l| l.trim_end().ends_with("STALE") || l.trim_end().ends_with("DELAY"))
        .count();
    assert!(stale <= max, "{stale} stale entries:\n{table}");
}

/// Drops the first ARP request for `ip` that reaches host `ns` (and every
/// second one after): a frame lost once, on demand. A fresh table each
/// time, so the first request is always the one lost, and the scanner's
/// neighbour table flushed, so its kernel sends no probe of its own
/// (an earlier scan's ICMP witness left entries) that would be that one.
fn lose_first_request(lan: &Lan, ns: &str, ip: &str) {
    let _ = std::process::Command::new("ip")
        .args(["-n", &lan.scanner, "neigh", "flush", "dev", "br0"])
        .output();
    lose_nothing(ns);
    let rules = format!(
        "table netdev loss {{\n chain in {{\n  type filter hook ingress device eth0 priority 0;\n  arp operation request arp daddr ip {ip} numgen inc mod 2 0 drop\n }}\n}}\n"
    );
    nft_in(ns, &rules);
}

/// Host `ns` drops no request any more.
fn lose_nothing(ns: &str) {
    let _ = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "delete", "table", "netdev", "loss",
        ])
        .output();
}

/// A scan's hosts (by IP) and the ARP requests it sent, from its debug
/// log; no follow-up runs.
fn scan_counting_requests(lan: &Lan, extra: &[&str]) -> (Vec<String>, u64) {
    let mut flags = vec!["--no-rdns", "--no-ports", "--no-mdns", "--no-ipv6"];
    flags.extend_from_slice(extra);
    scan_logged(lan, &flags)
}

/// A scan of the /24 with `flags`: its hosts (by IP) and the ARP requests
/// it sent, from its debug log.
fn scan_logged(lan: &Lan, flags: &[&str]) -> (Vec<String>, u64) {
    let (hosts, sent) = scan_hosts_logged(lan, "198.18.0.0/24", flags);
    let ips = hosts
        .iter()
        .filter_map(|h| h["ip"].as_str().map(String::from))
        .collect();
    (ips, sent)
}

/// A scan of `range` with `flags`: its hosts but the scanner, and the ARP
/// requests it sent, from its debug log.
fn scan_hosts_logged(lan: &Lan, range: &str, flags: &[&str]) -> (Vec<serde_json::Value>, u64) {
    let (hosts, log) = scan_with_log(lan, range, flags);
    (hosts, logged(&log, "sent"))
}

/// The number a scan's debug log gives as `KEY=N` first.
fn logged(log: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    log.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in the log: {log}"))
}

/// A scan of `range` with `flags`: its hosts but the scanner, and its
/// debug log.
fn scan_with_log(lan: &Lan, range: &str, flags: &[&str]) -> (Vec<serde_json::Value>, String) {
    let mut args = vec![
        "netns",
        "exec",
        &lan.scanner,
        "env",
        "MDB_LOG=mdb=debug",
        util::bin(),
        "scan",
        range,
        "--json",
    ];
    args.extend_from_slice(flags);
    let out = std::process::Command::new("ip")
        .args(&args)
        .output()
        .expect("mdb scan");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let hosts = hosts
        .into_iter()
        .filter(|h| h["state"] != "scanner")
        .collect();
    (hosts, log.into_owned())
}

/// ARP asks every address once, then checks the silent neighbours of the
/// hosts found: on a LAN without loss that is a few frames, not a second
/// pass over the empty addresses; a check answered is loss, and every
/// silent address is asked again, which finds a lone host whose first
/// request was lost too. A lone host lost on an otherwise clean LAN is
/// the price: the next sweep or `--tries 2` finds it.
#[test]
fn loss_is_checked_for_by_the_neighbours_of_hosts_found() {
    let ips = ["198.18.0.81", "198.18.0.82", "198.18.0.83", "198.18.0.90"];
    let macs = [
        "00:16:3e:00:00:81",
        "00:16:3e:00:00:82",
        "00:16:3e:00:00:83",
        "00:16:3e:00:00:90",
    ];
    let lan = Lan::plain(&ips, &macs);
    let all: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
    // 253 addresses besides the scanner's own, asked once each.
    let once = 253;

    let (found, clean) = scan_counting_requests(&lan, &[]);
    assert_eq!(found, all);
    // The checks: .80 and .84 beside .81-.83, .89 and .91 beside .90.
    assert_eq!(clean, once + 4, "a clean LAN: one pass and the four checks");

    lose_first_request(&lan, &lan.hosts[1].ns, ips[1]);
    lose_first_request(&lan, &lan.hosts[3].ns, ips[3]);
    let (found, lossy) = scan_counting_requests(&lan, &[]);
    assert_eq!(found, all, "the check found .82, the pass it earned .90");
    assert!(lossy >= once + 200, "a full second pass: {lossy} requests");

    lose_nothing(&lan.hosts[1].ns);
    lose_first_request(&lan, &lan.hosts[3].ns, ips[3]);
    let (found, _) = scan_counting_requests(&lan, &[]);
    assert_eq!(found, all[..3], "the lone host lost once is not checked");
    lose_first_request(&lan, &lan.hosts[3].ns, ips[3]);
    let (found, _) = scan_counting_requests(&lan, &["--tries", "2"]);
    assert_eq!(found, all);
}

/// A scan hands its packet sockets to a closer process so the prompt does
/// not wait for the kernel to release them: the closer holds none of the
/// scan's output open (read to its end here) and is gone once they are
/// closed, leaving no process in the namespace.
#[test]
fn a_scan_leaves_no_process_behind() {
    let lan = Lan::new(&[HostSpec::at("198.18.0.95", "00:16:3e:00:00:95")]);
    for _ in 0..3 {
        let found = lan.scan_json(&["--no-rdns"]);
        assert_eq!(found["198.18.0.95"]["mac"], "00:16:3e:00:00:95");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let pids = std::process::Command::new("ip")
                .args(["netns", "pids", &lan.scanner])
                .output()
                .expect("ip netns pids");
            let left = String::from_utf8_lossy(&pids.stdout).trim().to_string();
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "left in the scanner's namespace: {left}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The kernel ignores ARP replies to requests it did not send, so without
/// being told it would broadcast a request of its own for every host found
/// before the follow-ups (mDNS, the ICMP witness) could reach it. A scan
/// tells it the MACs it found: the wire carries the sweep's requests and
/// no others. An entry the kernel holds already (here a permanent one an
/// operator pinned for a live host) is never changed, and the hosts after
/// it are still told.
#[test]
fn found_hosts_are_told_to_the_kernel_rather_than_asked_for_again() {
    let ips = ["198.18.0.61", "198.18.0.62", "198.18.0.63"];
    let macs = [
        "00:16:3e:00:00:61",
        "00:16:3e:00:00:62",
        "00:16:3e:00:00:63",
    ];
    let lan = Lan::plain(&ips, &macs);
    let ip = |args: &[&str]| lan.ip_in_scanner(args);
    ip(&["neigh", "flush", "dev", "br0"]);
    let pinned = "02:00:00:00:00:99";
    ip(&[
        "neigh",
        "add",
        ips[0],
        "lladdr",
        pinned,
        "nud",
        "permanent",
        "dev",
        "br0",
    ]);
    count_requests(&lan.hosts[1].ns);

    let (found, sent) = scan_logged(&lan, &["--no-rdns"]);
    assert_eq!(found, ips);
    let wire = requests_counted(&lan.hosts[1].ns);
    assert_eq!(
        wire, sent,
        "broadcast requests on the wire against the scan's own"
    );
    let table = ip(&["-4", "neigh", "show", "dev", "br0"]);
    let entry = |ip: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{ip} ")))
            .unwrap_or_else(|| panic!("no entry for {ip}: {table}"))
    };
    assert!(
        entry(ips[0]).contains(pinned) && entry(ips[0]).contains("PERMANENT"),
        "{table}"
    );
    assert!(entry(ips[1]).contains(macs[1]), "{table}");
    assert!(entry(ips[2]).contains(macs[2]), "{table}");
}
