//! News out, end to end on a namespace LAN: `mdb serve` tells a signed
//! webhook and an ntfy topic (local HTTP receivers in the scanner's
//! namespace) of a new device, a database machine going missing and
//! coming back, one message per event across 3 restarts, while a third
//! sink that never answers slows no sweep.

mod util;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use util::{
    lan::{HostSpec, Lan},
    wait_for,
};

const SECRET: &str = "hook-secret-for-tests";

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 receiver: records each request and answers 200, or
/// (`hang`) reads it and never answers.
fn receiver(listener: TcpListener, hang: bool) -> Arc<Mutex<Vec<Received>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut headers = Vec::new();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k.to_string(), v.trim().to_string()));
                    }
                }
                let mut body = vec![0; len.min(1 << 20)];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                keep.lock().expect("lock").push(Received {
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                if hang {
                    held.push(stream.try_clone().expect("clone"));
                    break;
                }
                let mut s = stream.try_clone().expect("clone");
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            }
        }
    });
    got
}

fn events(got: &Arc<Mutex<Vec<Received>>>, what: &str) -> usize {
    got.lock()
        .expect("lock")
        .iter()
        .filter(|r| r.body.contains(what) || r.header("x-tags") == Some(what))
        .count()
}

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
