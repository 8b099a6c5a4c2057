//! How news is delivered, on a namespace LAN with `mdb serve` and local
//! HTTP receivers: a sink's `min_gap` between messages, ntfy's bearer
//! token, `events = [...]` keeping the other events out, five tries with
//! a doubling wait for a sink that refuses, then the message given up and
//! counted, and the `MdbNotificationsLost` alert (promtool) on the counts
//! that real process served; a sink that hangs while hundreds of devices
//! appear keeps 256 messages and counts every one it drops.

use crate::util;

use std::{
    net::TcpListener,
    process::Command,
    time::{Duration, Instant},
};

use util::{
    lan::{HostSpec, Lan},
    receiver::{events, receiver, receiver_refusing, Received},
    wait_for,
};

const NTFY_TOKEN: &str = "tk_ntfy_token_for_tests";
const METRICS: &str = "127.0.0.1:9090";

fn port(l: &TcpListener) -> u16 {
    l.local_addr().expect("addr").port()
}

fn arrivals(got: &std::sync::Mutex<Vec<Received>>) -> Vec<Instant> {
    got.lock().expect("lock").iter().map(|r| r.at).collect()
}

fn gaps(at: &[Instant]) -> Vec<Duration> {
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The config of `mdb serve` with these [scan] lines and sinks, and the DB
/// repository it follows (nas is a database machine).
fn serve_config(lan: &Lan, scan: &str, sinks: &str) -> (std::path::PathBuf, util::TestRepo) {
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\nscan:\n  down_after: 1\n  missing_after: 2\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n  - name: nas\n    ip: 198.18.0.11\n    mac: 00:16:3e:00:00:11\n    use: { device: nas }\n",
    );
    repo.commit("lab");
    let cfg = lan.dir().join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"{METRICS}\"\n\n[scan]\n{scan}\ninterval = \"500ms\"\nreverse_dns = false\nmdns = false\nstate_dir = \"{}\"\n\n{sinks}",
            repo.url(),
            lan.dir().join("checkout").display(),
            lan.dir().join("state").display(),
        ),
    )
    .expect("config");
    (cfg, repo)
}

/// One series of the scrape's text, as scraped (name and labels), and its value.
fn scraped(text: &str, name_and_label: &str) -> (String, f64) {
    let line = text
        .lines()
        .find(|l| l.starts_with(name_and_label))
        .unwrap_or_else(|| panic!("{name_and_label} not in the scrape"));
    let (series, value) = line.rsplit_once(' ').expect("series and value");
    (series.to_string(), value.parse().expect("a value"))
}

#[test]
fn each_sink_keeps_its_gap_token_and_events_and_a_refusing_one_is_tried_five_times_then_alerted() {
    let host = |ip, mac| HostSpec {
        ip,
        mac,
        ..Default::default()
    };
    let mut lan = Lan::new(&[
        host("198.18.0.11", "00:16:3e:00:00:11"),
        host("198.18.0.21", "dc:a6:32:00:00:21"),
        host("198.18.0.22", "dc:a6:32:00:00:22"),
        host("198.18.0.23", "dc:a6:32:00:00:23"),
    ]);
    let (gap_l, ntfy_l, missing_l, refuse_l) = (
        lan.listen_in_scanner(),
        lan.listen_in_scanner(),
        lan.listen_in_scanner(),
        lan.listen_in_scanner(),
    );
    let sinks = format!(
        "[[notify]]\nname = \"gap\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/gap\"\nmin_gap = \"1500ms\"\nevents = [\"new_device\"]\n\n\
         [[notify]]\nname = \"ntfy\"\nkind = \"ntfy\"\nurl = \"http://127.0.0.1:{}/lab\"\nsecret_env = \"MDB_NTFY_TOKEN\"\nmin_gap = \"10ms\"\nevents = [\"new_device\"]\n\n\
         [[notify]]\nname = \"missing\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/missing\"\nmin_gap = \"10ms\"\nevents = [\"machine_missing\"]\n\n\
         [[notify]]\nname = \"refuse\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/refuse\"\nmin_gap = \"10ms\"\nevents = [\"machine_missing\"]\n",
        port(&gap_l),
        port(&ntfy_l),
        port(&missing_l),
        port(&refuse_l),
    );
    let (gap, ntfy, missing, refuse) = (
        receiver(gap_l, false),
        receiver(ntfy_l, false),
        receiver(missing_l, false),
        receiver_refusing(refuse_l),
    );
    let (cfg, _repo) = serve_config(&lan, "subnets = [\"198.18.0.0/24\"]", &sinks);
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("utf-8")],
        &[("MDB_NTFY_TOKEN", NTFY_TOKEN), ("MDB_LOG", "info")],
    );

    // Three new devices at once: three messages, each min_gap apart.
    wait_for("three new devices on the gap sink", 60, || {
        (events(&gap, "new_device") == 3).then_some(())
    });
    let spaced = gaps(&arrivals(&gap));
    assert!(
        spaced.iter().all(|g| *g >= Duration::from_millis(1400)),
        "min_gap 1500ms kept: {spaced:?}"
    );
    // ntfy carries its token, from the environment.
    wait_for("three new devices on ntfy", 30, || {
        (events(&ntfy, "new_device") == 3).then_some(())
    });
    for r in ntfy.lock().expect("lock").iter() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {NTFY_TOKEN}").as_str()),
            "{r:?}"
        );
    }
    // Sinks that take machine_missing only heard nothing of new devices.
    assert!(missing.lock().expect("lock").is_empty());
    assert!(refuse.lock().expect("lock").is_empty());
    let (_, before) =
        lan.http_in_scanner("GET", METRICS.parse().expect("addr"), "/metrics", &[], "");

    // nas goes: one machine_missing, taken by one sink, refused by the other.
    lan.set_link(0, false);
    wait_for("machine_missing on its sink", 60, || {
        (events(&missing, "machine_missing") == 1).then_some(())
    });
    wait_for("five tries on the refusing sink", 30, || {
        (refuse.lock().expect("lock").len() == 5).then_some(())
    });
    let metric = |series: &str| lan.metric_in_scanner(METRICS, series).unwrap_or(-1.0);
    wait_for("the message given up", 30, || {
        (metric("mdb_notify_dropped_total{sink=\"refuse\"}") == 1.0).then_some(())
    });
    assert_eq!(metric("mdb_notify_failures_total{sink=\"refuse\"}"), 5.0);
    assert_eq!(metric("mdb_notify_dropped_total{sink=\"missing\"}"), 0.0);
    let waits = gaps(&arrivals(&refuse));
    eprintln!("FIGURE waits between the five tries: {waits:?}");
    for (w, least) in waits.iter().zip([500u64, 1000, 2000, 4000]) {
        assert!(
            *w >= Duration::from_millis(least * 9 / 10) && *w < Duration::from_millis(least * 3),
            "waits double from 500 ms: {waits:?}"
        );
    }
    assert_eq!(refuse.lock().expect("lock").len(), 5, "no sixth try");
    assert_eq!(events(&gap, "new_device"), 3, "nothing told twice");
    assert_eq!(events(&missing, "new_device"), 0);

    // The alert, on the counts this process served before and after.
    let (_, after) =
        lan.http_in_scanner("GET", METRICS.parse().expect("addr"), "/metrics", &[], "");
    alert_fires_on(&before, &after);
    lan.stop_mdb();
}

/// promtool evaluates the shipped rules on series built from two real
/// scrapes: the refusing sink's drop counter fires `MdbNotificationsLost`
/// for that sink, the sink that delivered everything does not.
fn alert_fires_on(before: &str, after: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let series = |sink: &str| {
        let name = format!("mdb_notify_dropped_total{{sink=\"{sink}\"}}");
        let (s, was) = scraped(before, &name);
        let (_, now) = scraped(after, &name);
        let labelled = s.replacen('{', "{namespace=\"lab\",", 1);
        format!("      - series: '{labelled}'\n        values: '{was}x5 {now}x30'\n")
    };
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/mdb-rules.yaml");
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}{}    alert_rule_test:\n      - eval_time: 15m\n        alertname: MdbNotificationsLost\n        exp_alerts:\n          - exp_labels: {{ severity: warning, namespace: lab, sink: refuse }}\n            exp_annotations:\n              summary: mdb gave up notifications to sink refuse\n              description: Every try failed or its queue was full; check the sink's URL, secret and reachability (mdb_notify_failures_total).\n",
        rules.display(),
        series("refuse"),
        series("gap"),
    );
    let file = dir.path().join("lost.test.yaml");
    std::fs::write(&file, test).expect("promtool test");
    let mut c = Command::new("promtool");
    c.args(["test", "rules"]).arg(&file);
    let out = util::run_ok(c);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// A sink that never answers while 400 devices appear in one sweep: 256
/// messages queued (one more if it took one in flight meanwhile), every
/// other one dropped and counted; a sink that answers delivers what its
/// queue took and counts the rest.
#[test]
fn a_hung_sink_keeps_256_messages_and_counts_every_one_it_drops() {
    const DEVICES: u32 = 400;
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.2",
        mac: "00:16:3e:00:00:02",
        ..Default::default()
    }]);
    // A second /24 on the scanner's bridge: 400 devices need more than one.
    let out = Command::new("ip")
        .args([
            "-n",
            &lan.scanner,
            "addr",
            "add",
            "198.18.1.1/24",
            "dev",
            "br0",
        ])
        .output()
        .expect("ip");
    assert!(out.status.success(), "{out:?}");
    lan.start_campus(0, "198.18.0.20", DEVICES as usize);
    let (stuck_l, ok_l) = (lan.listen_in_scanner(), lan.listen_in_scanner());
    let sinks = format!(
        "[[notify]]\nname = \"stuck\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/never\"\nevents = [\"new_device\"]\n\n\
         [[notify]]\nname = \"ok\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/ok\"\nmin_gap = \"1ms\"\nevents = [\"new_device\"]\n",
        port(&stuck_l),
        port(&ok_l),
    );
    let (stuck, ok) = (receiver(stuck_l, true), receiver(ok_l, false));
    let (cfg, _repo) = serve_config(
        &lan,
        "subnets = [\"198.18.0.0/24\", \"198.18.1.0/24\"]",
        &sinks,
    );
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("utf-8")],
        &[("MDB_LOG", "info")],
    );
    // Every device but those at the first /24's broadcast address, the
    // second's network address and the scanner's own there; and host 0:
    // each one news.
    let news = wait_for("every device found, new", 120, || {
        let d = lan.discovered("http://127.0.0.1:50051");
        let new = d.values().filter(|h| h["state"] == "new").count();
        (new == DEVICES as usize - 3 + 1).then_some(new)
    });
    let metric = |series: &str| lan.metric_in_scanner(METRICS, series).unwrap_or(-1.0);
    // The answering sink's queue holds 256 too: what it did not take in
    // the burst is dropped and counted, the rest delivered.
    let settled = wait_for("the answering sink to settle", 120, || {
        let sent = metric("mdb_notify_sent_total{sink=\"ok\"}");
        let dropped = metric("mdb_notify_dropped_total{sink=\"ok\"}");
        (sent + dropped == news as f64).then_some((sent, dropped))
    });
    assert_eq!(events(&ok, "new_device"), settled.0 as usize);
    assert!(settled.0 >= 256.0, "a full queue delivered: {settled:?}");
    let dropped = metric("mdb_notify_dropped_total{sink=\"stuck\"}");
    eprintln!(
        "FIGURE {news} events at once: a hung sink dropped {dropped}; an answering one delivered {} and dropped {}",
        settled.0, settled.1
    );
    // 256 queued, and one the sink may have taken in flight meanwhile.
    let dropped = dropped as usize;
    assert!(
        dropped == news - 256 || dropped == news - 257,
        "256 queued (and one in flight at most), the rest dropped and counted: {dropped} of {news}"
    );
    assert!(
        !stuck.lock().expect("lock").is_empty(),
        "the one in flight is held"
    );
    lan.stop_mdb();
}
