//! News out, end to end on a namespace LAN: `mdb serve` tells a signed
//! webhook and an ntfy topic (local HTTP receivers in the scanner's
//! namespace) of a new device, a database machine going missing and
//! coming back, one message per event across 3 restarts, while a third
//! sink that never answers slows no sweep. ntfy behind TLS trusts the
//! lab's own CA; Home Assistant gets its trackers from a real mosquitto,
//! in the clear and over TLS.

use crate::util;

use std::{
    net::TcpListener,
    process::Command,
    time::{Duration, Instant},
};

use util::{
    lan::{HostSpec, Lan},
    pki::Pki,
    receiver::{events, receiver, receiver_tls},
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
        if restart == 1 {
            // The history is unreadable (moved aside, a new one starts), so
            // every host is news again: only the ledger keeps each sink
            // from being told twice.
            std::fs::write(
                lan.dir().join("state").join("history.log"),
                "not a history log",
            )
            .expect("spoil the history");
        }
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
        let sent = lan
            .metric_in_scanner("127.0.0.1:9090", "mdb_notify_sent_total{sink=\"hooks\"}")
            .unwrap_or(-1.0);
        assert_eq!(sent, 0.0, "nothing told again after restart {restart}");
    }

    // Every webhook message is JSON, signed with the secret over its
    // timestamp and body: the README's receiver takes it, and refuses the
    // same message replayed five minutes later.
    let verify = |r: &util::receiver::Received, late: i64| {
        let ts = r.header("x-mdb-timestamp").unwrap_or_default().to_string();
        let body = lan.dir().join("hook-body");
        std::fs::write(&body, &r.body).expect("body");
        let now = ts.parse::<i64>().unwrap_or(0) + late;
        let (python, script) = util::lan::Lan::python_script("webhook_verify.py");
        std::process::Command::new(python)
            .args([&script, SECRET, &ts])
            .arg(r.header("x-mdb-signature").unwrap_or_default())
            .arg(&body)
            .arg(now.to_string())
            .output()
            .expect("python")
    };
    for r in hook.lock().expect("lock").iter() {
        assert_eq!(r.path, "/hook");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert!(v["event"].is_string() && v["key"].is_string(), "{v}");
        let fresh = verify(r, 1);
        assert!(fresh.status.success(), "{fresh:?}");
        let replayed = verify(r, 301);
        assert!(
            !replayed.status.success(),
            "a replay was taken: {replayed:?}"
        );
        let signed = mdb::notify::deliver::sign(SECRET.as_bytes(), r.body.as_bytes());
        assert_ne!(
            r.header("x-mdb-signature"),
            Some(format!("sha256={signed}").as_str()),
            "the body alone is not what is signed"
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

/// `mosquitto_sub`/`mosquitto_pub` in the scanner's namespace, over TLS
/// to `localhost:8883` with the test CA and mdb's login.
fn mosquitto_tls(
    lan: &Lan,
    tool: &str,
    ca: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &lan.scanner, tool])
        .args(["-h", "localhost", "-p", "8883", "--cafile"])
        .arg(ca)
        .args(["-u", "mdb", "-P", MQTT_PASSWORD])
        .args(args)
        .output()
        .expect("mosquitto client")
}

const MQTT_PASSWORD: &str = "mqtt-password-for-tests";

/// A mosquitto in the scanner's namespace on `localhost:8883`, TLS only,
/// with a certificate of its own test CA and one login (mdb's); returns
/// its PKI directory and its log.
fn start_tls_broker(lan: &mut Lan) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = lan.dir().to_path_buf();
    let broker_pki = Pki::for_host("localhost").write(&dir.join("pki"));
    let ca = broker_pki.join("ca.pem");
    let passwd = dir.join("passwd");
    let mut c = Command::new("mosquitto_passwd");
    c.args(["-b", "-c"])
        .arg(&passwd)
        .args(["mdb", MQTT_PASSWORD]);
    util::run_ok(c);
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener 8883 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
            ca.display(),
            broker_pki.join("cert.pem").display(),
            broker_pki.join("key.pem").display(),
            passwd.display(),
        ),
    )
    .expect("mosquitto.conf");
    let broker_log = dir.join("mosquitto.log");
    lan.spawn_in_scanner(
        &["mosquitto", "-v", "-c", conf.to_str().expect("path")],
        &[],
        &broker_log,
    );
    wait_for("the TLS broker", 20, || {
        let out = mosquitto_tls(lan, "mosquitto_pub", &ca, &["-t", "probe", "-m", "x"]);
        out.status.success().then_some(())
    });
    (broker_pki, broker_log)
}

/// Home Assistant's broker over TLS with a password (`mqtts://`): mdb
/// checks the broker's certificate against its `ca_file` before it sends
/// the password. A broker whose certificate another CA signed gets no
/// login and no message, and the failures are counted and retried.
#[test]
fn home_assistant_over_tls_checks_the_brokers_certificate_before_logging_in() {
    let mut lan = Lan::new(&[]);
    let dir = lan.dir().to_path_buf();
    let (broker_pki, broker_log) = start_tls_broker(&mut lan);
    let ca = broker_pki.join("ca.pem");
    let other_pki = Pki::for_host("localhost").write(&dir.join("other"));
    let mut repo = util::TestRepo::new();
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: nas\n    ip: 198.18.0.11\n    mac: 00:16:3e:00:00:11\n    use: { device: nas }\n",
    );
    repo.commit("lab");
    std::fs::write(dir.join("mqtt.secret"), format!("{MQTT_PASSWORD}\n")).expect("secret");
    let config = |trusted: &std::path::Path| {
        let cfg = dir.join("mdb.toml");
        std::fs::write(
            &cfg,
            format!(
                "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"1s\"\nreverse_dns = false\n\n[[notify]]\nname = \"ha\"\nkind = \"mqtt\"\nurl = \"mqtts://localhost:8883\"\nca_file = \"{}\"\nusername = \"mdb\"\nsecret_file = \"{}\"\n",
                repo.url(),
                dir.join("checkout").display(),
                trusted.join("ca.pem").display(),
                dir.join("mqtt.secret").display(),
            ),
        )
        .expect("config");
        cfg
    };
    let retained = |lan: &Lan| {
        let out = mosquitto_tls(
            lan,
            "mosquitto_sub",
            &ca,
            &["-v", "-W", "2", "-C", "1", "-t", "homeassistant/#"],
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // Another CA signed the broker's certificate: no login, no message.
    let cfg = config(&other_pki);
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );
    wait_for("failed TLS handshakes, retried", 30, || {
        let n =
            lan.metric_in_scanner("127.0.0.1:9090", "mdb_notify_failures_total{sink=\"ha\"}")?;
        (n >= 2.0).then_some(())
    });
    assert_eq!(
        retained(&lan),
        "",
        "nothing published to an untrusted broker"
    );
    let log = std::fs::read_to_string(&broker_log).unwrap_or_default();
    // mdb's client id is `mdb-PID`; the test's own clients are `auto-…`.
    assert!(
        !log.contains(" as mdb-"),
        "no login of mdb reached the broker:\n{log}"
    );
    assert!(
        log.contains("OpenSSL Error"),
        "the handshake was refused:\n{log}"
    );
    lan.stop_mdb();
    // The broker's own CA: logged in with the password, the tracker there.
    let cfg = config(&broker_pki);
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );
    let text = wait_for("the retained tracker config over TLS", 30, || {
        let text = retained(&lan);
        text.starts_with("homeassistant/device_tracker/mdb_nas/config ")
            .then_some(text)
    });
    assert!(text.contains("\"state_topic\":\"mdb/nas/state\""), "{text}");
    let log = std::fs::read_to_string(&broker_log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("as mdb-") && l.contains("u'mdb'")),
        "mdb logged in as mdb:\n{log}"
    );
    assert!(
        !lan.mdb_log().contains(MQTT_PASSWORD),
        "the password is never logged"
    );
    lan.stop_mdb();
}

/// ntfy behind TLS with the lab's own CA (`ca_file`): the new device's
/// message arrives over https://. A sink trusting another CA sends
/// nothing the server can read, and its failures are counted.
#[test]
fn ntfy_over_https_trusts_the_labs_own_ca_and_no_other() {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.23",
        mac: "dc:a6:32:00:00:23",
        ..Default::default()
    }]);
    let dir = lan.dir().to_path_buf();
    let lab_ca = Pki::for_host("localhost");
    let lab_dir = lab_ca.write(&dir.join("pki"));
    let other_dir = Pki::for_host("localhost").write(&dir.join("other"));
    let (good_l, bad_l) = (lan.listen_in_scanner(), lan.listen_in_scanner());
    let port = |l: &TcpListener| l.local_addr().expect("addr").port();
    let (good_port, bad_port) = (port(&good_l), port(&bad_l));
    let good = receiver_tls(good_l, lab_ca.server_config());
    let bad = receiver_tls(bad_l, lab_ca.server_config());
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n",
    );
    repo.write(
        "machines/lab.yaml",
        "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n",
    );
    repo.commit("lab");
    let cfg = dir.join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\n\n[[notify]]\nname = \"lab\"\nkind = \"ntfy\"\nurl = \"https://localhost:{good_port}/lab\"\nca_file = \"{}\"\n\n[[notify]]\nname = \"wrong-ca\"\nkind = \"ntfy\"\nurl = \"https://localhost:{bad_port}/lab\"\nca_file = \"{}\"\n",
            repo.url(),
            dir.join("checkout").display(),
            lab_dir.join("ca.pem").display(),
            other_dir.join("ca.pem").display(),
        ),
    )
    .expect("config");
    lan.spawn_mdb(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("MDB_LOG", "info")],
    );
    wait_for("the new device over https", 30, || {
        (events(&good, "new_device") == 1).then_some(())
    });
    let got = good.lock().expect("lock")[0].clone();
    assert_eq!(got.path, "/lab");
    assert!(got.body.contains("198.18.0.23"), "{got:?}");
    wait_for("the other CA's sink failing", 30, || {
        let series = "mdb_notify_failures_total{sink=\"wrong-ca\"}";
        (lan.metric_in_scanner("127.0.0.1:9090", series)? >= 2.0).then_some(())
    });
    assert!(
        bad.lock().expect("lock").is_empty(),
        "nothing reached a server another CA vouches for"
    );
    lan.stop_mdb();
}
