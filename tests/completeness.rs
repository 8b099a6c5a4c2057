//! The follow-ups end when their answers are in, and nothing is lost for
//! it: on a LAN with an SSH server, an open web port, a host whose port 80
//! drops SYNs, Avahi responders, a responder that answers 200 ms late and
//! hosts that drop ICMP, twenty `mdb scan` runs at the defaults each find
//! the same hosts, MACs, open ports, names and services as the slow path
//! (every wait fixed at 500 ms), and the late answer is taken every time.

use crate::util;

use std::collections::BTreeMap;

use serde_json::Value;
use util::lan::{HostSpec, Lan};

const RUNS: usize = 20;

/// What a run found: by address, the MAC, open ports, name and services.
fn found(lan: &Lan, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["--ports", "22,80,443"];
    args.extend_from_slice(extra);
    lan.scan_json(&args)
        .into_iter()
        .filter(|(ip, _)| ip != "198.18.0.1")
        .map(|(ip, h)| {
            let list = |v: &Value| -> String {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mdns: Vec<&str> = h["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["source"] == "mdns")
                .filter_map(|n| n["name"].as_str())
                .collect();
            let seen = format!(
                "mac={} ports={} name={} services={}",
                h["mac"].as_str().unwrap_or(""),
                list(&h["open_ports"]),
                mdns.join(","),
                list(&h["services"]),
            );
            (ip, seen)
        })
        .collect()
}

#[test]
fn every_quick_run_finds_what_the_slow_path_finds_and_the_late_answer() {
    let mut lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.10",
            mac: "dc:a6:32:00:0c:10",
            sshd: true,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:0c:11",
            ports: vec![80],
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.12",
            mac: "00:16:3e:00:0c:12",
            ports: vec![80],
            drop_icmp: true,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.13",
            mac: "00:16:3e:00:0c:13",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.14",
            mac: "00:16:3e:00:0c:14",
            drop_icmp: true,
            ..Default::default()
        },
    ]);
    lan.start_avahi(0, "laser", &["_ipp._tcp"]);
    lan.start_avahi(1, "webby", &[]);
    // Port 80 of the third host is open, but every SYN to it is dropped.
    lan.watch_port(2, 80, true);
    let (python, script) = Lan::python_script("mdns_late.py");
    lan.spawn_ready(3, &[&python, &script, "slowpoke", "200"]);

    // The reference: the slow path once the LAN is whole (avahi and sshd
    // take a moment to come up on a loaded machine).
    let expected = [
        ("198.18.0.10", "ports=22 name=laser services=\"_ipp._tcp\""),
        ("198.18.0.11", "ports=80 name=webby"),
        ("198.18.0.12", "ports= name="),
        ("198.18.0.13", "name=slowpoke services=\"_http._tcp\""),
    ];
    let slow = util::wait_for("the slow path to see the whole LAN", 60, || {
        let slow = found(&lan, &["--timeout", "500ms"]);
        let whole = expected
            .iter()
            .all(|(ip, part)| slow.get(*ip).is_some_and(|seen| seen.contains(part)));
        (whole && slow.len() == 5).then_some(slow)
    });
    for run in 0..RUNS {
        let quick = found(&lan, &[]);
        assert_eq!(quick, slow, "run {run} differs from the slow path");
    }
}
