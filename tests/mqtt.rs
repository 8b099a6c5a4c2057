//! Home Assistant over a real mosquitto, what the first test of
//! `notify.rs` does not show: `discovery_prefix` and `topic_prefix` name
//! every topic; a machine removed from the database has its retained
//! config cleared; a broker that restarts (and so forgets every retained
//! message) gets everything again once mdb reconnects; and mdb's last will
//! says `offline` when it dies by `kill -9`, never having said goodbye.

use crate::util;

use std::{path::Path, process::Command, time::Duration};

use util::{
    lan::{HostSpec, Lan},
    wait_for,
};

const PORT: &str = "1883";

/// `mosquitto_sub` in the scanner's namespace for `seconds`: every
/// retained message under `filter` as "topic payload" lines.
fn retained(lan: &Lan, filter: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lan.scanner, "mosquitto_sub", "-p", PORT])
        .args(["-v", "--retained-only", "-W", "2", "-t", filter])
        .output()
        .expect("mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn start_broker(lan: &mut Lan, dir: &Path, n: u32) -> u32 {
    let pid = lan.spawn_in_scanner(
        &["mosquitto", "-p", PORT],
        &[],
        &dir.join(format!("mosquitto-{n}.log")),
    );
    wait_for("the broker", 20, || {
        Command::new("ip")
            .args(["netns", "exec", &lan.scanner, "mosquitto_pub", "-p", PORT])
            .args(["-t", "probe", "-m", "x"])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    });
    pid
}

fn kill9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn prefixes_name_the_topics_removals_clear_a_restarted_broker_is_refilled_and_kill_9_leaves_offline(
) {
    let mut lan = Lan::new(&[HostSpec {
        ip: "198.18.0.11",
        mac: "00:16:3e:00:00:11",
        ..Default::default()
    }]);
    let dir = lan.dir().to_path_buf();
    let broker = start_broker(&mut lan, &dir, 1);
    let mut repo = util::TestRepo::new();
    repo.write(
        "mdb.yaml",
        "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n",
    );
    let machines = |spare: bool| {
        format!(
            "machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n  - name: nas\n    ip: 198.18.0.11\n    mac: 00:16:3e:00:00:11\n    use: {{ device: nas }}\n{}",
            if spare {
                "  - name: spare-pi\n    mac: dc:a6:32:00:00:99\n    use: discover\n"
            } else {
                ""
            }
        )
    };
    repo.write("machines/lab.yaml", &machines(true));
    repo.commit("lab");
    let cfg = dir.join("mdb.toml");
    std::fs::write(
        &cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"200ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"1s\"\nreverse_dns = false\n\n[[notify]]\nname = \"ha\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{PORT}\"\ndiscovery_prefix = \"ha-lab\"\ntopic_prefix = \"lab/mdb\"\n",
            repo.url(),
            dir.join("checkout").display(),
        ),
    )
    .expect("config");
    let args = ["serve", "--config", cfg.to_str().expect("path")];
    let pid = lan.spawn_mdb(&args, &[("MDB_LOG", "info")]).id();

    // Every topic under the prefixes given, none under the defaults.
    let has = |lines: &[String], line: &str| lines.iter().any(|l| l == line);
    let all = wait_for(
        "nas home and spare-pi's config, under the prefixes",
        60,
        || {
            let all = retained(&lan, "#");
            (has(&all, "lab/mdb/nas/state home")
                && all
                    .iter()
                    .any(|l| l.starts_with("ha-lab/device_tracker/mdb_spare_pi/config ")))
            .then_some(all)
        },
    );
    assert!(has(&all, "lab/mdb/status online"), "{all:?}");
    assert!(
        !all.iter()
            .any(|l| l.starts_with("mdb/") || l.starts_with("homeassistant/")),
        "nothing under the default prefixes: {all:?}"
    );

    // spare-pi leaves the database: its retained config is cleared.
    repo.write("machines/lab.yaml", &machines(false));
    repo.commit("spare-pi leaves");
    let left = wait_for("spare-pi's config cleared", 60, || {
        let all = retained(&lan, "ha-lab/#");
        (!all.iter().any(|l| l.contains("mdb_spare_pi"))).then_some(all)
    });
    assert!(
        left.iter()
            .any(|l| l.starts_with("ha-lab/device_tracker/mdb_nas/config ")),
        "nas stays: {left:?}"
    );

    // The broker restarts with nothing retained; mdb reconnects and
    // publishes everything again.
    kill9(broker);
    std::thread::sleep(Duration::from_millis(500));
    let broker = start_broker(&mut lan, &dir, 2);
    let again = wait_for("everything published again", 60, || {
        let all = retained(&lan, "#");
        (has(&all, "lab/mdb/nas/state home")
            && has(&all, "lab/mdb/status online")
            && all
                .iter()
                .any(|l| l.starts_with("ha-lab/device_tracker/mdb_nas/config ")))
        .then_some(all)
    });
    assert!(
        !again.iter().any(|l| l.contains("mdb_spare_pi")),
        "{again:?}"
    );

    // kill -9: no goodbye from mdb, the broker says its last will.
    kill9(pid);
    wait_for("the last will", 30, || {
        has(&retained(&lan, "lab/mdb/status"), "lab/mdb/status offline").then_some(())
    });
    lan.stop_mdb();
    kill9(broker);
}
