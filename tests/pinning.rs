//! Pinned trust with real parts: a provisioned machine's host key is pinned
//! on its first login, a device that clones its MAC at another address
//! (with an sshd that accepts any key) gets no session, no playbook and one
//! issue, and the real machine is provisioned again once it is back.

use crate::util;

use std::time::Instant;

use util::{
    bench::{count, Bench},
    lan::HostSpec,
};

const SRV_MAC: &str = "00:16:3e:00:01:11";

const LAB: &str = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\n    dynamic: 198.18.0.100-198.18.0.199\nscan:\n  ports: [22]\n";

fn srv(labels: &str) -> String {
    format!("  - name: srv-1\n    ip: 198.18.0.11\n    mac: {SRV_MAC}\n    use: {{ development: server }}\n    ssh: {{ user: root }}\n    labels: {{ {labels} }}\n")
}

#[test]
fn a_mac_clone_gets_no_session_and_the_real_machine_is_provisioned_when_back() {
    let mut b = Bench::with(&[
        HostSpec {
            ip: "198.18.0.11",
            mac: SRV_MAC,
            sshd: true,
            ..Default::default()
        },
        // The impostor: on the LAN with a MAC of its own until it clones.
        HostSpec {
            ip: "198.18.0.150",
            mac: "02:66:66:66:66:66",
            ..Default::default()
        },
    ]);
    b.commit_with(LAB, &[srv("rack: \"1\"")], "srv-1");
    let serve = b.dir.join("serve.toml");
    std::fs::write(
        &serve,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"100ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\nmdns = false\n",
            b.repo.url(),
            b.dir.join("checkout").display(),
        ),
    )
    .expect("serve config");
    b.start_server_with(&["serve", "--config", serve.to_str().expect("path")], &[]);
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&cfg);
    b.wait("srv-1 provisioned at home", 90, || {
        b.status("srv-1").is_some_and(|s| s["result"] == "ok")
    });
    let pins = std::fs::read_to_string(b.dir.join("state/pinned_host_keys")).expect("pins");
    let real_key = std::fs::read_to_string(b.lan.dir().join("hostkey0.pub")).expect("host key");
    let real_key: Vec<&str> = real_key.split_whitespace().take(2).collect();
    assert_eq!(
        pins.trim(),
        format!("srv-1 {}", real_key.join(" ")),
        "the key of its first login is pinned"
    );
    assert!(
        std::fs::read_to_string(b.dir.join("provision.log"))
            .unwrap_or_default()
            .contains("host key pinned on its first successful login"),
        "the log says so"
    );

    // srv-1 is unplugged; the impostor takes its MAC and answers SSH with
    // any key.
    b.lan.set_link(0, false);
    let impostor_log = b.lan.start_any_key_sshd(1);
    b.lan.set_mac(1, SRV_MAC);
    b.wait("the sweeps to see srv-1 moved to the impostor", 60, || {
        b.lan
            .discovered("127.0.0.1:50051")
            .get("198.18.0.150")
            .is_some_and(|h| h["state"] == "moved" && h["machine"] == "srv-1")
    });
    let runs_before = count(&b.runs(), "start machine srv-1");
    let rev = b.commit_with(LAB, &[srv("rack: \"2\"")], "srv-1 moves racks");
    b.wait("the runner to refuse the impostor", 90, || {
        b.status("srv-1")
            .is_some_and(|s| s["result"] == "host key changed")
    });
    let st = b.status("srv-1").expect("status");
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("198.18.0.150") && reason.contains("pinned on first use"),
        "{st}"
    );
    b.wait("one issue for srv-1", 60, || {
        b.gh.plain_issues()
            .iter()
            .any(|i| i.title == "Cannot provision srv-1" && i.state == "open")
    });
    // Several more passes: still one issue, still no session.
    let not_ready = || {
        b.runner_metric("mdb_provision_runs_total{kind=\"machine\",result=\"not_ready\"}")
            .unwrap_or(0.0)
    };
    let refusals = not_ready();
    b.wait("three more refusals", 60, || not_ready() >= refusals + 3.0);
    assert_eq!(b.gh.plain_issues().len(), 1, "{:?}", b.gh.plain_issues());
    let said = std::fs::read_to_string(&impostor_log).unwrap_or_default();
    assert!(
        said.contains("Connection") || said.contains("connection"),
        "the impostor was dialled: {said}"
    );
    assert!(
        !said.contains("publickey") && !said.contains("Accepted"),
        "no key was ever offered to the impostor:\n{said}"
    );
    assert_eq!(
        count(&b.runs(), "start machine srv-1"),
        runs_before,
        "no playbook ran: {:?}",
        b.runs()
    );

    // The impostor leaves and the real srv-1 comes back home.
    b.lan.set_link(1, false);
    b.lan.set_link(0, true);
    let back = Instant::now();
    b.wait("srv-1 provisioned at home again", 90, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine srv-1 {rev}"))
    });
    assert_eq!(
        b.marker("machine-srv-1").split_whitespace().nth(2),
        Some("198.18.0.11"),
        "over SSH at its own address"
    );
    b.wait("the issue to close", 60, || {
        b.gh.plain_issues().iter().all(|i| i.state == "closed")
    });
    println!(
        "FIGURE real machine back to provisioned: {:.1?}",
        back.elapsed()
    );
}

/// Ansible as the runner sets it up (`pins::ansible_vars` in the
/// inventory, the `ssh` wrapper), against a real sshd on the LAN: a session
/// only when the known hosts pin the machine's own key under its name, and
/// none when a playbook's variables drop the runner's ssh options.
#[test]
fn ansible_reaches_a_machine_only_with_its_pinned_key_whatever_a_playbook_says() {
    use mdb::{
        db::Snapshot,
        export::inventory,
        proto::{machine::Use, Machine, Ssh},
        provision::{pins, ready::SshLogin},
    };
    let b = Bench::with(&[HostSpec {
        ip: "198.18.0.11",
        mac: SRV_MAC,
        sshd: true,
        ..Default::default()
    }]);
    let state = b.dir.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let login = SshLogin {
        key: Some(b.key.clone()),
        known_hosts: state.join("known_hosts"),
        default_user: "root".into(),
        timeout: std::time::Duration::from_secs(5),
        wake_timeout: std::time::Duration::from_secs(5),
    };
    pins::write_ssh_wrapper(&state, &login.known_hosts).expect("wrapper");
    let srv = Machine {
        name: "srv-1".into(),
        ips: vec!["198.18.0.11".into()],
        r#use: Some(Use::Games(Default::default())),
        ssh: Some(Ssh {
            user: "root".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let snap = Snapshot::new("abcd".into(), vec![srv], Default::default());
    let more =
        |m: &Machine| pins::ansible_vars(&m.name, &login.known_hosts, login.key.as_deref(), &state);
    let inv = b.dir.join("inventory.yaml");
    std::fs::write(
        &inv,
        inventory::static_yaml_with(&snap, &more).expect("plain"),
    )
    .expect("inventory");
    let marker = b.dir.join("markers/reached");
    let play = b.dir.join("reach.yml");
    std::fs::write(
        &play,
        format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: echo reached > {}\n",
            marker.display()
        ),
    )
    .expect("playbook");
    let playbook = util::venv_tool("ansible-playbook")
        .get_program()
        .to_string_lossy()
        .into_owned();
    let run = |extra: &[&str]| {
        let _ = std::fs::remove_file(&marker);
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &b.lan.scanner, &playbook, "-i"])
            .arg(&inv)
            .args(extra)
            .arg(&play)
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_PRIVATE_KEY_FILE", &b.key)
            .env("ANSIBLE_LOCAL_TEMP", b.dir.join("ansible-tmp"))
            .env("ANSIBLE_HOME", b.dir.join("ansible-home"))
            .output()
            .expect("ansible-playbook");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (marker.exists(), said)
    };
    let own = std::fs::read_to_string(b.lan.dir().join("hostkey0.pub")).expect("host key");
    let own: mdb::hostkey::HostKey = own.parse().expect("key");
    let other = std::fs::read_to_string(b.key.with_extension("pub")).expect("key");
    let other: mdb::hostkey::HostKey = other.parse().expect("key");
    for (known, why) in [
        (String::new(), "nothing pinned"),
        (
            mdb::hostkey::known_hosts_line("srv-1", &other),
            "another key",
        ),
        (
            mdb::hostkey::known_hosts_line("srv-2", &own),
            "its key under another name",
        ),
    ] {
        std::fs::write(&login.known_hosts, known).expect("known hosts");
        let (reached, said) = run(&[]);
        assert!(!reached, "{why}: a session was made:\n{said}");
        assert!(
            said.contains("Host key verification failed"),
            "{why}:\n{said}"
        );
    }
    std::fs::write(
        &login.known_hosts,
        mdb::hostkey::known_hosts_line("srv-1", &own),
    )
    .expect("known hosts");
    let (reached, said) = run(&[]);
    assert!(reached, "its own key pinned under its name:\n{said}");
    // A playbook's variables that drop the runner's options: the wrapper
    // still checks strictly, and the address alone is known to no one.
    let (reached, said) = run(&["-e", "ansible_ssh_args=-oStrictHostKeyChecking=no"]);
    assert!(
        !reached,
        "a playbook's variables turned checking off:\n{said}"
    );
}
