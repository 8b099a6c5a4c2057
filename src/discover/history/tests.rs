//! The fold's behaviour over sweeps: flapping, leaving, rotating MACs,
//! enrolment, retention.

use super::*;

const RULES: Rules = Rules {
    down_after: 3,
    missing_after: MissingAfter::Sweeps(5),
    retention: DEFAULT_RETENTION,
};

fn lan() -> Vec<IpNetwork> {
    vec!["198.18.0.0/24".parse().unwrap()]
}

fn seen(ip: &str, mac: &str, local: bool) -> Classified {
    Classified {
        listed6: Vec::new(),
        key: classify::identity(ip.parse().ok(), mac.parse().ok()),
        host: DiscoveredHost {
            ip: ip.into(),
            mac: mac.into(),
            mac_is_local: local,
            state: HostState::New as i32,
            ..Default::default()
        },
    }
}

/// Folds one sweep at `now` (seconds) with `hosts` answering.
fn sweep(h: &mut History, hosts: Vec<Classified>, unseen: &[&Machine], now: i64) -> Fold {
    let swept = lan();
    let in_db = |n: &str| unseen.iter().any(|m| m.name == n) || n == "devbox";
    h.fold(
        Sweep {
            seen: hosts,
            unseen,
            swept: &swept,
            in_db: &in_db,
            now,
            stale_sources: &[],
            sources: &[],
            switches_failed: &[],
        },
        &RULES,
    )
}

fn only(h: &History) -> DiscoveredHost {
    let r = h.records();
    assert_eq!(r.len(), 1, "{r:#?}");
    r[0].host.clone().unwrap()
}

#[test]
fn a_host_that_misses_every_other_sweep_never_flaps() {
    let mut h = History::default();
    let mut transitions = 0;
    for i in 0..100 {
        let answering = if i % 2 == 0 {
            vec![seen("198.18.0.20", "00:16:3e:00:00:20", false)]
        } else {
            vec![]
        };
        transitions += sweep(&mut h, answering, &[], 1000 + i * 60)
            .transitions
            .len();
    }
    assert_eq!(transitions, 1, "only the first up");
    let host = only(&h);
    assert_eq!(host.presence, Presence::Up as i32);
    assert!((host.uptime_24h - 0.5).abs() < 0.01, "{}", host.uptime_24h);
}

#[test]
fn a_host_that_leaves_is_down_after_n_sweeps_with_one_transition() {
    let mut h = History::default();
    let mut downs = Vec::new();
    sweep(
        &mut h,
        vec![seen("198.18.0.20", "00:16:3e:00:00:20", false)],
        &[],
        1000,
    );
    for i in 1..=10 {
        let f = sweep(&mut h, vec![], &[], 1000 + i * 60);
        downs.extend(f.transitions.into_iter().map(|t| (i, t.presence)));
    }
    assert_eq!(downs, [(3, Presence::Down as i32)]);
    let host = only(&h);
    assert_eq!(host.missed_sweeps, 10);
    assert_eq!(
        host.state,
        HostState::New as i32,
        "still a new device, offline"
    );
    assert_eq!(host.last_seen_unix, 1000);
    assert_eq!(host.state_since_unix, 1000 + 3 * 60);
}

#[test]
fn a_rotating_random_mac_stays_one_host_listing_every_mac() {
    let mut h = History::default();
    for (i, mac) in [
        "02:00:00:00:00:01",
        "06:00:00:00:00:02",
        "0a:00:00:00:00:03",
    ]
    .iter()
    .enumerate()
    {
        sweep(
            &mut h,
            vec![seen("198.18.0.30", mac, true)],
            &[],
            1000 + i as i64 * 60,
        );
    }
    let host = only(&h);
    assert_eq!(host.first_seen_unix, 1000);
    assert_eq!(
        host.macs_seen,
        [
            "0a:00:00:00:00:03",
            "06:00:00:00:00:02",
            "02:00:00:00:00:01"
        ]
    );
}

#[test]
fn a_random_mac_that_announces_a_name_keeps_its_history_at_a_new_address() {
    let mut h = History::default();
    let mut a = seen("198.18.0.30", "02:00:00:00:00:01", true);
    a.host.dns_name = "phone.lan".into();
    sweep(&mut h, vec![a], &[], 1000);
    let mut b = seen("198.18.0.31", "06:00:00:00:00:02", true);
    b.host.dns_name = "phone.lan".into();
    sweep(&mut h, vec![b], &[], 1060);
    let host = only(&h);
    assert_eq!(host.key, "name:phone.lan");
    assert_eq!(host.first_seen_unix, 1000);
    assert_eq!(host.macs_seen.len(), 2);
}

#[test]
fn enrolment_carries_the_past_over_and_a_db_machine_goes_missing() {
    let mut h = History::default();
    sweep(
        &mut h,
        vec![seen("198.18.0.11", "00:16:3e:00:00:11", false)],
        &[],
        1000,
    );
    let mut known = seen("198.18.0.11", "00:16:3e:00:00:11", false);
    known.host.state = HostState::Known as i32;
    known.host.machine = "devbox".into();
    sweep(&mut h, vec![known], &[], 1060);
    let host = only(&h);
    assert_eq!(
        (host.key.as_str(), host.first_seen_unix),
        ("machine:devbox", 1000)
    );
    let devbox = Machine {
        name: "devbox".into(),
        ips: vec!["198.18.0.11".into()],
        ..Default::default()
    };
    let mut states = Vec::new();
    for i in 1..=6 {
        sweep(&mut h, vec![], &[&devbox], 1060 + i * 60);
        states.push(only(&h).state);
    }
    let missing = HostState::Missing as i32;
    assert_eq!(states.iter().filter(|s| **s == missing).count(), 2);
    assert_eq!(only(&h).detail, "not seen for 6 sweeps");
}

#[test]
fn a_db_machine_without_a_fixed_address_goes_down_where_it_was_seen() {
    let mut h = History::default();
    let mut known = seen("198.18.0.77", "dc:a6:32:00:00:77", false);
    known.host.state = HostState::Known as i32;
    known.host.machine = "devbox".into();
    sweep(&mut h, vec![known], &[], 1000);
    for i in 1..=3 {
        sweep(&mut h, vec![], &[], 1000 + i * 60);
    }
    assert_eq!(only(&h).presence, Presence::Down as i32);
}

#[test]
fn a_new_device_on_an_old_lease_starts_its_own_history() {
    let mut h = History::default();
    sweep(
        &mut h,
        vec![seen("198.18.0.30", "02:00:00:00:00:01", true)],
        &[],
        1000,
    );
    sweep(
        &mut h,
        vec![seen("198.18.0.30", "00:16:3e:00:00:30", false)],
        &[],
        2000,
    );
    let r = h.records();
    assert_eq!(r.len(), 2, "{r:#?}");
    let stable = r
        .iter()
        .find_map(|r| r.host.as_ref().filter(|h| h.key.starts_with("mac:")));
    assert_eq!(stable.map(|h| h.first_seen_unix), Some(2000));
}

#[test]
fn retention_forgets_hosts_and_bounds_every_list() {
    let mut h = History::default();
    for i in 0..(MAX_ADDRESSES as i64 + 10) {
        let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
        sweep(
            &mut h,
            vec![seen("198.18.0.30", &mac, true)],
            &[],
            1000 + i * 60,
        );
    }
    let r = h.records();
    assert_eq!(r[0].addresses.len(), MAX_ADDRESSES);
    let later = 1000 + RULES.retention.as_secs() as i64 + 3600 * 24;
    let f = sweep(&mut h, vec![], &[], later);
    assert!(h.is_empty());
    assert_eq!(f.removed, ["ip:198.18.0.30"]);
}

/// A sweep where the router `snmp:gw` (serving 198.18.2.0/24) is
/// configured when `configured`, and answered when `answered`.
fn sweep_with_router(
    h: &mut History,
    hosts: Vec<Classified>,
    answered: bool,
    configured: bool,
    now: i64,
) -> Fold {
    // Its subnet is swept whatever the router does (as when a second
    // source serves it): staleness alone keeps its host from a miss.
    let mut swept = lan();
    if configured {
        swept.push("198.18.2.0/24".parse().unwrap());
    }
    let tag = vec!["snmp:gw".to_string()];
    let none: Vec<String> = Vec::new();
    h.fold(
        Sweep {
            seen: hosts,
            unseen: &[],
            swept: &swept,
            in_db: &|_| false,
            now,
            stale_sources: if answered || !configured { &none } else { &tag },
            sources: if configured { &tag } else { &none },
            switches_failed: &[],
        },
        &RULES,
    )
}

#[test]
fn a_routers_host_is_kept_stale_while_the_router_is_away_then_judged_again() {
    let mut h = History::default();
    let mut c = seen("198.18.2.10", "00:16:3e:00:02:10", false);
    c.host.source = "snmp:gw".into();
    sweep_with_router(&mut h, vec![c.clone()], true, true, 1000);
    // The router does not answer: kept up, stale, written, not missed.
    for i in 1..=5 {
        let fold = sweep_with_router(&mut h, vec![], false, true, 1000 + i);
        let host = only(&h);
        assert!(host.segment_stale);
        assert_eq!(
            (host.missed_sweeps, host.presence),
            (0, Presence::Up as i32)
        );
        assert_eq!(
            fold.written.len(),
            usize::from(i == 1),
            "written once, when it turned stale"
        );
    }
    // It answers without the host: fresh again, and missed.
    let fold = sweep_with_router(&mut h, vec![], true, true, 2000);
    let host = only(&h);
    assert!(!host.segment_stale);
    assert_eq!(host.missed_sweeps, 1);
    assert_eq!(fold.written.len(), 1, "one write for the flip and the miss");
    // A router taken out of the configuration: its hosts are missed until down.
    sweep_with_router(&mut h, vec![c], true, true, 3000);
    for i in 1..=RULES.down_after {
        sweep_with_router(&mut h, vec![], false, false, 3000 + i64::from(i));
    }
    assert_eq!(only(&h).presence, Presence::Down as i32);
}

#[test]
fn a_port_stands_while_its_switch_is_away_and_is_cleared_when_it_says_otherwise() {
    let mut h = History::default();
    let mut c = seen("198.18.0.30", "00:16:3e:00:00:30", false);
    c.host.switch_port = Some(crate::proto::SwitchPort {
        switch: "sw-2".into(),
        port: "p3".into(),
        vlan: 10,
    });
    let fold = |h: &mut History, c: Classified, failed: &[String], now| {
        let swept = lan();
        h.fold(
            Sweep {
                seen: vec![c],
                unseen: &[],
                swept: &swept,
                in_db: &|_| false,
                now,
                stale_sources: &[],
                sources: &[],
                switches_failed: failed,
            },
            &RULES,
        );
    };
    fold(&mut h, c.clone(), &[], 100);
    let mut unplaced = c.clone();
    unplaced.host.switch_port = None;
    fold(&mut h, unplaced.clone(), &["sw-2".to_string()], 101);
    assert_eq!(
        only(&h).switch_port.map(|p| p.port),
        Some("p3".into()),
        "its switch did not answer"
    );
    fold(&mut h, unplaced.clone(), &["sw-9".to_string()], 102);
    assert_eq!(
        only(&h).switch_port,
        None,
        "its switch answered and placed it nowhere"
    );
}
