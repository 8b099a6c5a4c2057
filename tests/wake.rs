//! Wake-on-LAN with real parts: a namespace host is a sleeping machine
//! whose sshd starts only once a listener on its link (tests/py/
//! wol_listen.py, a raw socket like a network card's) sees a magic packet
//! for its MAC. The runner wakes a `wake: true` machine it finds not ready
//! and provisions it once it is up (real sshd and Ansible); `mdb wake` does
//! the same by hand, directly or through the scanner.

use crate::util;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use util::{bench::Bench, lan::HostSpec};

const LAB: &str = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\nscan:\n  ports: [22]\n";
const SLEEPY_MAC: &str = "00:16:3e:00:07:21";
const DESK_MAC: &str = "00:16:3e:00:07:22";
const TOKEN: &str = "read-and-wake-token-0123456789";

/// sleepy wakes; desk is a dev box too, but not marked: never woken.
fn machines() -> Vec<String> {
    vec![
        format!("  - name: sleepy\n    ip: 198.18.0.21\n    mac: {SLEEPY_MAC}\n    use: {{ development: server }}\n    ssh: {{ user: root }}\n    wake: true\n"),
        format!("  - name: desk\n    ip: 198.18.0.22\n    mac: {DESK_MAC}\n    use: {{ development: server }}\n    ssh: {{ user: root }}\n"),
    ]
}

fn wakes_seen(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn wait_until(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A listener on host `i` for `mac`, ready before this returns.
fn listen(b: &mut Bench, i: usize, mac: &str, once: bool) -> PathBuf {
    let file = b.dir.join(format!("woken-{i}"));
    let mut args = vec!["eth0", mac, file.to_str().expect("path")];
    if once {
        args.push("--once");
    }
    b.lan.spawn_py_in_host(i, "wol_listen.py", &args);
    let ready = PathBuf::from(format!("{}.ready", file.display()));
    wait_until("the listener", 10, || ready.exists());
    file
}

/// `mdb serve` on 0.0.0.0:50051 that wants a token of scope read or wake
/// (one file holds one token for both), and the runner's config with
/// `wake_timeout` and that token.
fn serve_and_config(b: &mut Bench, wake_timeout: &str) -> (PathBuf, PathBuf) {
    let token = b.dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let serve = b.dir.join("serve.toml");
    std::fs::write(
        &serve,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"100ms\"\n\n[server]\ngrpc_listen = \"0.0.0.0:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[server.tokens]\nread = \"{t}\"\nwake = \"{t}\"\n",
            b.repo.url(),
            b.dir.join("checkout").display(),
            t = token.display(),
        ),
    )
    .expect("serve config");
    b.start_server_with(&["serve", "--config", serve.to_str().expect("path")], &[]);
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    let text = std::fs::read_to_string(&cfg).expect("runner config");
    let extra = format!(
        "[provision]\nwake_timeout = \"{wake_timeout}\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    std::fs::write(&cfg, text.replacen("[provision]\n", &extra, 1)).expect("runner config");
    (cfg, token)
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
    let scanner = b.lan.scanner.clone();
    std::process::Command::new("ip")
        .args(["-n", &scanner, "addr", "add", "198.19.0.1/24", "dev", "br0"])
        .status()
        .expect("ip");
    let sleepy_card = listen(&mut b, 0, SLEEPY_MAC, true);
    let desk_card = listen(&mut b, 1, DESK_MAC, false);
    b.commit_with(LAB, &machines(), "lab");
    let (cfg, token) = serve_and_config(&mut b, "60s");
    b.start_runner(&cfg);

    // Asleep: no sshd until the magic packet comes.
    wait_until("the runner to send sleepy a magic packet", 60, || {
        wakes_seen(&sleepy_card) > 0
    });
    let woke_at = Instant::now();
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
    // desk, not ready the whole time but not marked, got no packet.
    assert!(b.status("desk").is_some_and(|s| s["result"] != "ok"));
    assert_eq!(wakes_seen(&desk_card), 0, "desk is not marked wake");

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
    wait_until("desk's card to see the packet", 10, || {
        wakes_seen(&desk_card) == 1
    });

    // From the laptop, by MAC: it is on no link of desk's subnet, so the
    // scanner sends the packet (its Wake call, with the wake token).
    let from_laptop = |what: &str, token: &Path| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &b.lan.hosts[2].ns, util::bin()])
            .args(["wake", what, "--server", "198.19.0.1:50051"])
            .env("MDB_TOKEN_FILE", token)
            .env("MDB_ALLOW_PLAINTEXT", "1")
            .output()
            .expect("mdb wake")
    };
    let out = from_laptop(DESK_MAC, &token);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("on br0 (by 198.19.0.1:50051)"), "{said}");
    wait_until("desk's card to see the scanner's packet", 10, || {
        wakes_seen(&desk_card) == 2
    });
    // The scanner counts desk by machine, whether named by MAC or name:
    // two more, then the fourth of the hour is the last.
    for n in 2..=4 {
        let out = from_laptop("desk", &token);
        assert!(
            out.status.success(),
            "wake {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = from_laptop("desk", &token);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("4 times in the last hour"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A token of another scope wakes nothing.
    let reader = b.dir.join("reader");
    std::fs::write(&reader, "not-a-wake-token-0123456789\n").expect("token");
    let out = from_laptop("desk", &reader);
    assert!(!out.status.success());
    // Only machines of the database are woken.
    let out = b
        .lan
        .mdb(&["wake", "nosuch", "--db", checkout.to_str().expect("path")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no machine of the database"));
    assert_eq!(wakes_seen(&desk_card), 5, "five packets for desk in all");
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
    let card = listen(&mut b, 0, SLEEPY_MAC, false);
    let lab = format!("{LAB}provision:\n  wake: [development]\n");
    let sleepy = machines()[0].replace("    wake: true\n", "");
    b.commit_with(&lab, &[sleepy], "lab");
    let (cfg, _) = serve_and_config(&mut b, "2s");
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
                .contains("4 times in the last hour")
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(wakes_seen(&card), 4, "four packets in the hour, no more");
}
