//! News out, end to end on a namespace LAN: `mdb serve` tells a signed
//! webhook and an ntfy topic (local HTTP receivers in the scanner's
//! namespace) of a new device, a database machine going missing and
//! coming back, one message per event across 3 restarts, while a third
//! sink that never answers slows no sweep.

mod util;

use std::{
    net::TcpListener,
    process::Command,
    time::{Duration, Instant},
};

use util::{
    lan::{HostSpec, Lan},
    receiver::{events, receiver},
    wait_for,
};

const SECRET: &str = "hook-secret-for-tests";

#[test]
fn events_reach_a_signed_webhook_and_ntfy_once_each_across_restarts_and_a_hung_sink_slows_nothing()
{
    let mut lan = Lan::new(&[
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:00:11",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.23",
            mac: "dc:a6:32:00:00:23",
            ..Default::default()
        },
    ]);
    let (hook_l, ntfy_l, stuck_l) = (
        lan.listen_in_scanner(),
        lan.listen_in_scanner(),
        lan.listen_in_scanner(),
    );
    let port = |l: &TcpListener| l.local_addr().expect("addr").port();
    let (hook_port, ntfy_port, stuck_port) = (port(&hook_l), port(&ntfy_l), port(&stuck_l));
    let hook = receiver(hook_l, false);
    let ntfy = receiver(ntfy_l, false);
    let stuck = receiver(stuck_l, true);

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
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\nstate_dir = \"{}\"\n\n[[notify]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret_env = \"MDB_HOOK_SECRET\"\nmin_gap = \"10ms\"\n\n[[notify]]\nkind = \"ntfy\"\nurl = \"http://127.0.0.1:{ntfy_port}/lab\"\nmin_gap = \"10ms\"\npriority = {{ new_device = \"urgent\" }}\n\n[[notify]]\nname = \"stuck\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{stuck_port}/never\"\n",
            repo.url(),
            lan.dir().join("checkout").display(),
            lan.dir().join("state").display(),
        ),
    )
    .expect("config");
    let args = ["serve", "--config", cfg.to_str().expect("path")];
    let env = [("MDB_HOOK_SECRET", SECRET), ("MDB_LOG", "info")];
    let sweeps = |lan: &Lan| {
        lan.metric_in_scanner("127.0.0.1:9090", "mdb_sweeps_total{result=\"ok\"}")
            .unwrap_or(0.0)
    };
    lan.spawn_mdb(&args, &env);

    wait_for("the new device on both sinks", 60, || {
        (events(&hook, "new_device") == 1 && events(&ntfy, "new_device") == 1).then_some(())
    });
    // The hung sink holds its first request; sweeps go on at their pace.
    wait_for("the hung sink to hold a request", 30, || {
        (!stuck.lock().expect("lock").is_empty()).then_some(())
    });
    let (start, at) = (sweeps(&lan), Instant::now());
    wait_for("ten more sweeps", 30, || {
        (sweeps(&lan) >= start + 10.0).then_some(())
    });
    let per_sweep = at.elapsed() / 10;
    assert!(
        per_sweep < Duration::from_millis(1500),
        "sweeps slowed to {per_sweep:?} while a sink hangs"
    );

    lan.set_link(0, false);
    wait_for("nas missing on both sinks", 60, || {
        (events(&hook, "machine_missing") == 1 && events(&ntfy, "machine_missing") == 1)
            .then_some(())
    });
    lan.set_link(0, true);
    wait_for("nas back on both sinks", 60, || {
        (events(&hook, "machine_back") == 1 && events(&ntfy, "machine_back") == 1).then_some(())
    });

    for restart in 0..3 {
        lan.stop_mdb();
        lan.spawn_mdb(&args, &env);
        let before = wait_for("the restarted server's metrics", 30, || {
            lan.metric_in_scanner("127.0.0.1:9090", "mdb_sweeps_total{result=\"ok\"}")
        });
        wait_for("five sweeps after the restart", 30, || {
            (sweeps(&lan) >= before + 5.0).then_some(())
        });
        for (sink, got) in [("hooks", &hook), ("ntfy", &ntfy)] {
            for what in ["new_device", "machine_missing", "machine_back"] {
                assert_eq!(
                    events(got, what),
                    1,
                    "{sink} {what} after restart {restart}"
                );
            }
        }
    }

    // Every webhook message is JSON, signed with the secret.
    for r in hook.lock().expect("lock").iter() {
        assert_eq!(r.path, "/hook");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert!(v["event"].is_string() && v["key"].is_string(), "{v}");
        let signed = mdb::notify::deliver::sign(SECRET.as_bytes(), r.body.as_bytes());
        assert_eq!(
            r.header("x-mdb-signature"),
            Some(format!("sha256={signed}").as_str())
        );
    }
    let new = hook
        .lock()
        .expect("lock")
        .iter()
        .find(|r| r.body.contains("new_device"))
        .cloned()
        .expect("new device");
    let v: serde_json::Value = serde_json::from_str(&new.body).expect("JSON");
    assert_eq!(v["ip"], "198.18.0.23");
    assert_eq!(v["mac"], "dc:a6:32:00:00:23");
    let ntfy_new = ntfy
        .lock()
        .expect("lock")
        .iter()
        .find(|r| r.header("x-tags") == Some("new_device"))
        .cloned()
        .expect("ntfy new device");
    assert_eq!(ntfy_new.path, "/lab");
    assert_eq!(ntfy_new.header("x-priority"), Some("urgent"));
    assert!(ntfy_new.body.contains("198.18.0.23"), "{}", ntfy_new.body);
    let failures = lan
        .metric_in_scanner("127.0.0.1:9090", "mdb_notify_sent_total{sink=\"hooks\"}")
        .unwrap_or(-1.0);
    assert!(failures >= 0.0, "the sink's series exist after a restart");
    lan.stop_mdb();
}

/// Lines `mosquitto_sub -F '%U %t %p'` wrote: (unix time, topic, payload).
fn mqtt_lines(path: &std::path::Path) -> Vec<(f64, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ' ');
            Some((
                p.next()?.parse().ok()?,
                p.next()?.to_string(),
                p.next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[test]
fn home_assistant_gets_a_retained_tracker_per_machine_and_presence_once_per_change() {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.11",
        mac: "00:16:3e:00:00:11",
        ..Default::default()
    }]);
    let dir = lan.dir().to_path_buf();
    lan.spawn_in_scanner(
        &["mosquitto", "-p", "1883"],
        &[],
        &dir.join("mosquitto.log"),
    );
    let sub_log = dir.join("sub.log");
    let wait_broker = || {
        wait_for("the broker", 20, || {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lan.scanner,
                    "mosquitto_pub",
                    "-p",
                    "1883",
                    "-t",
                    "probe",
                    "-m",
                    "x",
                ])
                .stderr(std::process::Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
        })
    };
    wait_broker();
    lan.spawn_in_scanner(
        &["sh", "-c", &format!("exec stdbuf -oL mosquitto_sub -p 1883 -v -F '%U %t %p' -t 'mdb/#' -t 'homeassistant/#' > {}", sub_log.display())],
        &[],
        &dir.join("sub.err"),
    );
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\nscan:\n  down_after: 3\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n  - name: nas\n    ip: 198.18.0.11\n    mac: 00:16:3e:00:00:11\n    use: { device: nas }\n  - name: spare-pi\n    mac: dc:a6:32:00:00:99\n    use: discover\n",
    );
    repo.commit("lab");
    let cfg = dir.join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"1s\"\nreverse_dns = false\n\n[[notify]]\nname = \"ha\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n",
            repo.url(),
            dir.join("checkout").display(),
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );
    let has = |topic: &str, payload: &str| {
        mqtt_lines(&sub_log)
            .iter()
            .any(|(_, t, p)| t == topic && p == payload)
    };
    wait_for("nas at home", 60, || {
        has("mdb/nas/state", "home").then_some(())
    });
    assert!(has("mdb/status", "online"));
    assert!(has("mdb/spare-pi/state", "not_home"));

    let down = unix_now();
    lan.set_link(0, false);
    let gone = wait_for("nas not_home", 60, || {
        mqtt_lines(&sub_log)
            .into_iter()
            .find(|(at, t, p)| *at >= down && t == "mdb/nas/state" && p == "not_home")
    });
    let up = unix_now();
    lan.set_link(0, true);
    let back = wait_for("nas home again", 60, || {
        mqtt_lines(&sub_log)
            .into_iter()
            .find(|(at, t, p)| *at >= up && t == "mdb/nas/state" && p == "home")
    });
    eprintln!(
        "down to not_home: {:.2} s; up to home: {:.2} s (down_after = 3, 1 s sweeps)",
        gone.0 - down,
        back.0 - up
    );
    // Three more sweeps: still once each.
    let seen = lan
        .metric_in_scanner("127.0.0.1:9090", "mdb_sweeps_total{result=\"ok\"}")
        .unwrap_or(0.0);
    wait_for("three more sweeps", 30, || {
        (lan.metric_in_scanner("127.0.0.1:9090", "mdb_sweeps_total{result=\"ok\"}")
            .unwrap_or(0.0)
            >= seen + 3.0)
            .then_some(())
    });
    let states: Vec<String> = mqtt_lines(&sub_log)
        .into_iter()
        .filter(|(at, t, _)| *at >= down && t == "mdb/nas/state")
        .map(|(_, _, p)| p)
        .collect();
    assert_eq!(states, ["not_home", "home"]);

    // A subscriber that comes later gets the retained discovery config.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.scanner,
            "mosquitto_sub",
            "-p",
            "1883",
            "-v",
            "-W",
            "3",
            "-C",
            "3",
            "-t",
            "homeassistant/#",
        ])
        .output()
        .expect("mosquitto_sub");
    let text = String::from_utf8_lossy(&out.stdout);
    let config_line = text
        .lines()
        .find(|l| l.starts_with("homeassistant/device_tracker/mdb_nas/config "))
        .unwrap_or_else(|| panic!("retained config: {text}"));
    let config: serde_json::Value =
        serde_json::from_str(config_line.split_once(' ').expect("payload").1).expect("JSON");
    assert_eq!(config["state_topic"], "mdb/nas/state");
    assert_eq!(config["availability_topic"], "mdb/status");
    assert_eq!(config["payload_not_home"], "not_home");
    assert_eq!(config["device"]["connections"][0][1], "00:16:3e:00:00:11");
    lan.stop_mdb();
    wait_for("offline at the end", 20, || {
        has("mdb/status", "offline").then_some(())
    });
    let before_first_sweep = mqtt_lines(&sub_log)
        .into_iter()
        .find(|(_, t, _)| t == "mdb/nas/state")
        .map(|(_, _, p)| p);
    assert_eq!(
        before_first_sweep.as_deref(),
        Some("home"),
        "no not_home before the first sweep"
    );
}
