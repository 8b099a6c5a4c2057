//! Wake-on-LAN with real parts: a namespace host is a sleeping machine
//! whose sshd starts only once a listener on its link (tests/py/
//! wol_listen.py, a raw socket like a network card's) sees a magic packet
//! for its MAC. The runner wakes a `wake: true` machine it finds not ready,
//! waits for its SSH and provisions it (real sshd and Ansible); `mdb wake`
//! does the same by hand.

use crate::util;

use std::time::{Duration, Instant};

use util::{bench::Bench, lan::HostSpec};

const LAB: &str = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\nscan:\n  ports: [22]\n";
const SLEEPY_MAC: &str = "00:16:3e:00:07:21";
const DESK_MAC: &str = "00:16:3e:00:07:22";

fn machines() -> Vec<String> {
    vec![
        format!("  - name: sleepy\n    ip: 198.18.0.21\n    mac: {SLEEPY_MAC}\n    use: {{ development: server }}\n    ssh: {{ user: root }}\n    wake: true\n"),
        format!("  - name: desk\n    ip: 198.18.0.22\n    mac: {DESK_MAC}\n    use: games\n"),
    ]
}

fn wait_for_file(path: &std::path::Path, secs: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_sleeping_machine_is_woken_then_provisioned_and_mdb_wake_wakes_by_hand() {
    let mut b = Bench::with(&[
        HostSpec {
            ip: "198.18.0.21",
            mac: SLEEPY_MAC,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.22",
            mac: DESK_MAC,
            ..Default::default()
        },
        // A laptop on another subnet of the same wire: no link of its own
        // to 198.18.0.0/24, so it asks the scanner to wake.
        HostSpec {
            ip: "198.19.0.5",
            mac: "00:16:3e:00:07:05",
            ..Default::default()
        },
    ]);
    std::process::Command::new("ip")
        .args([
            "-n",
            &b.lan.scanner,
            "addr",
            "add",
            "198.19.0.1/24",
            "dev",
            "br0",
        ])
        .status()
        .expect("ip");
    let woken = [b.dir.join("woken-0"), b.dir.join("woken-1")];
    for (i, (mac, file)) in [SLEEPY_MAC, DESK_MAC].iter().zip(&woken).enumerate() {
        b.lan.spawn_py_in_host(
            i,
            "wol_listen.py",
            &["eth0", mac, file.to_str().expect("path")],
        );
    }
    b.commit_with(LAB, &machines(), "lab");
    let serve = b.dir.join("serve.toml");
    std::fs::write(
        &serve,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"100ms\"\n\n[server]\ngrpc_listen = \"0.0.0.0:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n",
            b.repo.url(),
            b.dir.join("checkout").display(),
        ),
    )
    .expect("serve config");
    b.start_server_with(&["serve", "--config", serve.to_str().expect("path")], &[]);
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    let text = std::fs::read_to_string(&cfg).expect("runner config");
    std::fs::write(
        &cfg,
        text.replacen("[provision]\n", "[provision]\nwake_timeout = \"60s\"\n", 1),
    )
    .expect("runner config");
    b.start_runner(&cfg);

    // Asleep: no sshd until the magic packet comes.
    assert!(
        wait_for_file(&woken[0], 60),
        "the runner sent sleepy a magic packet; runner log: {}",
        std::fs::read_to_string(b.dir.join("provision.log")).unwrap_or_default()
    );
    let woke_at = Instant::now();
    assert!(
        !woken[1].exists(),
        "desk is not marked wake and was not woken"
    );
    b.lan.start_sshd(0);
    b.authorize(0, true);
    b.wait("sleepy provisioned after waking", 90, || {
        b.status("sleepy").is_some_and(|s| s["result"] == "ok")
    });
    eprintln!(
        "figures: wake to provisioned {:.1} s",
        woke_at.elapsed().as_secs_f64()
    );
    assert!(
        b.marker("machine-sleepy").contains("198.18.0.21"),
        "the playbook ran on sleepy: {:?}",
        b.marker("machine-sleepy")
    );

    // By hand, from the DB checkout: the packet goes out on br0.
    let checkout = b.dir.join("checkout");
    let out = b
        .lan
        .mdb(&["wake", "desk", "--db", checkout.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("woke desk (00:16:3e:00:07:22) on br0"));
    assert!(wait_for_file(&woken[1], 10), "desk's card saw the packet");
    // From the laptop, by MAC: it is on no link of desk's subnet, so the
    // scanner sends the packet (its Wake call).
    std::fs::remove_file(&woken[1]).expect("rm");
    b.lan.spawn_py_in_host(
        1,
        "wol_listen.py",
        &["eth0", DESK_MAC, woken[1].to_str().expect("path")],
    );
    std::thread::sleep(Duration::from_millis(500));
    let from_laptop = |what: &str| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &b.lan.hosts[2].ns, util::bin()])
            .args(["wake", what, "--server", "198.19.0.1:50051"])
            .output()
            .expect("mdb wake")
    };
    let out = from_laptop(DESK_MAC);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("on br0 (by 198.19.0.1:50051)"), "{said}");
    assert!(
        wait_for_file(&woken[1], 10),
        "desk's card saw the scanner's packet"
    );
    // The scanner wakes a machine a few times an hour at most.
    let refused = (0..5)
        .map(|_| from_laptop("desk"))
        .find(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert!(refused.contains("times in the last hour"), "{refused:?}");
    // Only machines of the database are woken.
    let out = b
        .lan
        .mdb(&["wake", "nosuch", "--db", checkout.to_str().expect("path")]);
    assert!(!out.status.success());
}

/// A machine that stays asleep is reported so, and not woken without end;
/// here its use is what `provision: wake:` in mdb.yaml wakes.
#[test]
fn a_machine_that_never_wakes_is_told_and_woken_a_bounded_number_of_times() {
    let mut b = Bench::with(&[HostSpec {
        ip: "198.18.0.21",
        mac: SLEEPY_MAC,
        ..Default::default()
    }]);
    // Woken by its use's word in mdb.yaml, not its own `wake: true`.
    let lab = format!("{LAB}provision:\n  wake: [development]\n");
    let sleepy = machines()[0].replace("    wake: true\n", "");
    b.commit_with(&lab, &[sleepy], "lab");
    let serve = b.dir.join("serve.toml");
    std::fs::write(
        &serve,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"100ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n",
            b.repo.url(),
            b.dir.join("checkout").display(),
        ),
    )
    .expect("serve config");
    b.start_server_with(&["serve", "--config", serve.to_str().expect("path")], &[]);
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    let text = std::fs::read_to_string(&cfg).expect("runner config");
    std::fs::write(
        &cfg,
        text.replacen("[provision]\n", "[provision]\nwake_timeout = \"2s\"\n", 1),
    )
    .expect("runner config");
    // Count the magic packets on the link, as the scanner's bridge sees them.
    b.start_runner(&cfg);
    b.wait("sleepy told woken, not up", 60, || {
        b.status("sleepy").is_some_and(|s| {
            s["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("woken, not up after 2 s")
        })
    });
    b.wait("the wakes to run out", 60, || {
        b.status("sleepy").is_some_and(|s| {
            s["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("times in the last hour")
        })
    });
}
