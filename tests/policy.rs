//! The runner acts only where the DB's policy says, and clusters grow by
//! themselves: real sshd hosts, devices that answer HTTP or only ping, real
//! `ansible-playbook`, real `mdb serve` and `mdb provision` processes, a
//! bare DB repository and the fake GitHub whose merge button merges.

use crate::util;

use std::time::Instant;

use util::{
    bench::{machine, Bench},
    lan::{HostSpec, Lan},
};

const READINESS: &str = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.149\nreadiness:\n  device: [ { http: /, port: 80, status: 200 } ]\n";

fn dev(name: &str, ip: &str) -> String {
    format!("  - name: {name}\n    ip: {ip}\n    use: {{ development: server }}\n    ssh: {{ user: root }}\n")
}

/// Appends `[provision]` settings a test needs to the bench's config.
fn tune(cfg: &std::path::Path, extra: &[(&str, &str)], tables: &str) {
    let mut text = std::fs::read_to_string(cfg).expect("config");
    for (k, v) in extra {
        text = text.replacen("[provision]\n", &format!("[provision]\n{k} = {v}\n"), 1);
    }
    text.push_str(tables);
    std::fs::write(cfg, text).expect("config");
}

#[test]
fn the_db_policy_decides_and_devices_are_judged_by_their_checks_alone() {
    let mut b = Bench::with(&[
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:01:11",
            sshd: true,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.50",
            mac: "00:26:ab:00:01:50",
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.40",
            mac: "04:d9:f5:00:01:40",
            ..Default::default()
        },
    ]);
    let (python, page) = Lan::python_script("http_status.py");
    b.lan
        .spawn_ready(1, &[&python, &page, "198.18.0.50", "80", "200", "300"]);
    b.lan.watch_port(1, 22, false);
    b.lan.watch_port(2, 22, false);
    let machines = [
        dev("lab-1", "198.18.0.11"),
        "  - name: printer\n    ip: 198.18.0.50\n    use: { device: receipt printer }\n".into(),
        "  - name: gaming-pc\n    ip: 198.18.0.40\n    use: games\n".into(),
        "  - name: ghost\n    mac: 00:16:3e:00:01:99\n    use: { development: server }\n".into(),
    ];
    b.commit_with(READINESS, &machines, "a lab of four kinds");
    b.start_server();
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    tune(&cfg, &[("recheck_interval", "\"1s\"")], "");
    b.start_runner(&cfg);
    let result = |name: &str| {
        b.status(name)
            .map(|s| s["result"].as_str().unwrap_or("").to_string())
    };
    b.wait("every machine's status", 90, || {
        result("lab-1").as_deref() == Some("ok")
            && result("printer").as_deref() == Some("ready")
            && result("gaming-pc").as_deref() == Some("skipped")
            && result("ghost").as_deref() == Some("no address")
    });
    assert!(
        b.marker("machine-lab-1").contains("198.18.0.11"),
        "lab-1 was provisioned over SSH"
    );
    for name in ["printer", "gaming-pc", "ghost"] {
        assert!(
            b.marker(&format!("machine-{name}")).is_empty(),
            "{name} got no run"
        );
    }
    let printer = b.status("printer").expect("status");
    assert_eq!(printer["treatment"], "readiness", "{printer}");
    assert_eq!(b.status("ghost").expect("status")["attempts"], 0);
    // `mdb list --runner` shows the same, as a column and in JSON.
    let out = b.lan.mdb(&["list", "--runner", "127.0.0.1:50053"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .contains("PROVISIONING"),
        "{table}"
    );
    assert!(row("gaming-pc").contains("skipped"), "{table}");
    assert!(row("ghost").contains("no address"), "{table}");
    let out = b
        .lan
        .mdb(&["list", "--runner", "127.0.0.1:50053", "--json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let provisioning = |name: &str| {
        listed
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["provisioning"]["result"].clone())
    };
    assert_eq!(provisioning("lab-1"), Some("ok".into()), "{listed:?}");
    assert_eq!(provisioning("printer"), Some("ready".into()), "{listed:?}");
    let out = b
        .lan
        .mdb(&["inventory", "--list", "--runner", "127.0.0.1:50053"]);
    let inventory: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inventory");
    assert_eq!(
        inventory["_meta"]["hostvars"]["lab-1"]["labels"]["mdb_provision_result"], "ok",
        "{inventory}"
    );

    // The printer's status follows its page, and it is never SSH'd.
    b.lan.set_link(1, false);
    b.wait("the printer to be not ready", 60, || {
        result("printer").as_deref() == Some("not ready")
    });
    b.lan.set_link(1, true);
    b.wait("the printer to be ready again", 60, || {
        result("printer").as_deref() == Some("ready")
    });
    assert_eq!(b.lan.port_hits(1), 0, "no SSH to the printer");
    assert_eq!(b.lan.port_hits(2), 0, "no SSH to the games PC");
    assert!(
        b.gh.plain_issues().is_empty(),
        "no issue for a device, a games PC or a machine without an address: {:?}",
        b.gh.plain_issues()
            .iter()
            .map(|i| &i.title)
            .collect::<Vec<_>>()
    );
}

/// A removed machine triggers nothing unless `removal_command` is set, and
/// nothing ever runs against a host the database does not have, though the
/// server's sweeps tell the runner of it on every pass (this one answers
/// SSH and would accept any key).
#[test]
fn removals_run_only_when_configured_and_strangers_are_never_touched() {
    let mut b = Bench::new(3);
    // The stranger's sshd takes any key: were anything to log in, its log
    // would say so (the scanner's banner grab never authenticates).
    b.lan.stop_sshd(2);
    let stranger_log = b.lan.start_any_key_sshd(2);
    let (cp, w1) = (
        machine("cp", "198.18.0.11", "control-plane"),
        machine("w1", "198.18.0.12", "worker"),
    );
    b.commit(
        &[cp.clone(), w1.clone()],
        "cp and w1; 198.18.0.13 is not in the database",
    );
    // The server sweeps the LAN, so the runner hears of .13 from it (as a
    // new device) on every pass, and must leave it alone.
    let (url, checkout) = (b.repo.url(), b.dir.join("checkout"));
    b.start_server_with(
        &[
            "serve",
            "--db-url",
            &url,
            "--poll-interval",
            "100ms",
            "--checkout",
            checkout.to_str().expect("utf-8"),
            "--grpc-listen",
            "127.0.0.1:50051",
            "--metrics-listen",
            "127.0.0.1:9090",
            "--scan",
            "198.18.0.0/24",
            "--scan-interval",
            "1s",
        ],
        &[],
    );
    b.wait("the stranger seen by the server", 60, || {
        b.lan
            .discovered("http://127.0.0.1:50051")
            .get("198.18.0.13")
            .is_some_and(|h| h["state"] == "new" && h["presence"] == "up")
    });
    // Checked at every poll below: nothing ever logs in to the stranger.
    let untouched = || {
        let log = std::fs::read_to_string(&stranger_log).unwrap_or_default();
        assert!(
            !log.contains("Accepted"),
            "nothing logs in to a host the database does not have: {log}"
        );
    };
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&cfg);
    b.wait("the first build", 90, || {
        untouched();
        b.status("w1").is_some_and(|s| s["result"] == "ok")
    });

    // w1 leaves; no removal_command: its status goes, nothing runs.
    let removed_at = mdb::db::store::now_unix();
    b.commit(std::slice::from_ref(&cp), "w1 leaves");
    b.wait("a pass after the removal", 60, || {
        b.status("w1").is_none()
            && b.runner_metric("mdb_provision_last_pass_timestamp_seconds")
                .unwrap_or(0.0)
                >= removed_at as f64
    });
    let runs = b.runs();
    assert!(
        !runs.iter().any(|l| l.starts_with("start removal")),
        "{runs:?}"
    );

    // With removal_command, a removed machine gets exactly it.
    b.kill_runner();
    let log = b.dir.join("removals.log");
    tune(
        &cfg,
        &[(
            "removal_command",
            &format!(
                "[\"sh\", \"-c\", \"echo removed $MDB_HOSTS >> {}\"]",
                log.display()
            ),
        )],
        "",
    );
    b.start_runner(&cfg);
    b.commit(&[cp.clone(), w1.clone()], "w1 back");
    b.wait("w1 provisioned again", 90, || {
        untouched();
        b.status("w1").is_some_and(|s| s["result"] == "ok")
    });
    b.commit(std::slice::from_ref(&cp), "w1 leaves again");
    b.wait("the removal command", 60, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("removed w1"))
    });
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "removed w1\n",
        "once, for w1 alone"
    );
    untouched();
    let stranger = std::fs::read_to_string(&stranger_log).expect("sshd log");
    assert!(
        stranger.contains("Connection from 198.18.0.1"),
        "the scanner did reach the stranger's sshd: {stranger}"
    );
}

#[test]
fn a_failing_task_is_the_reason_with_its_message() {
    let mut b = Bench::new(1);
    std::fs::write(
        b.dir.join("failing.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: check in\n      ansible.builtin.raw: \"true\"\n    - name: install the agent\n      ansible.builtin.fail:\n        msg: \"pyenv: python3.13: command not found\"\n",
    )
    .expect("playbook");
    b.commit(&[machine("cp", "198.18.0.11", "control-plane")], "cp");
    b.start_server();
    let playbook = util::venv_tool("ansible-playbook")
        .get_program()
        .to_string_lossy()
        .into_owned();
    let failing = format!(
        "[\"{playbook}\", \"-i\", \"{{inventory}}\", \"--limit\", \"{{hosts}}\", \"{}\"]",
        b.dir.join("failing.yml").display()
    );
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    tune(
        &cfg,
        &[],
        &format!("\n[provision.actions]\nagent = {failing}\n"),
    );
    b.commit_with(
        &format!("{}provision:\n  cluster: agent\n", util::bench::MDB_YAML),
        &[machine("cp", "198.18.0.11", "control-plane")],
        "cp gets the agent action",
    );
    b.start_runner(&cfg);
    b.wait("the failing run", 90, || {
        b.status("cp").is_some_and(|s| s["result"] == "failed")
    });
    let st = b.status("cp").expect("status");
    assert_eq!(
        st["reason"].as_str().unwrap_or_default(),
        format!("{playbook} failed (exit status: 2): task \"install the agent\" failed on cp: pyenv: python3.13: command not found"),
        "{st}"
    );
    assert_eq!(st["treatment"], "agent");
    let detail = b
        .lan
        .mdb(&["provisioned", "cp", "--runner", "127.0.0.1:50053"]);
    let text = String::from_utf8_lossy(&detail.stdout);
    assert!(
        text.contains("PLAY RECAP"),
        "the whole tail is readable: {text}"
    );
}

#[test]
fn a_pass_over_twenty_silent_machines_takes_about_one_ssh_timeout() {
    let mut b = Bench::with(&[HostSpec {
        ip: "198.18.0.100",
        mac: "00:16:3e:00:02:00",
        ..Default::default()
    }]);
    // One namespace stands in for 20 machines whose SSH never answers.
    let ips: Vec<String> = (100..120).map(|i| format!("198.18.0.{i}")).collect();
    for ip in &ips[1..] {
        b.lan.add_address(0, ip);
    }
    b.lan.watch_port(0, 22, true);
    let machines: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| dev(&format!("silent-{i:02}"), ip))
        .collect();
    b.commit_with(
        util::bench::MDB_YAML.replace(".99", ".149").as_str(),
        &machines,
        "20 silent machines",
    );
    b.start_server();
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("ssh_timeout = \"5s\"", "ssh_timeout = \"2s\"")
        .replace("debounce = \"700ms\"", "debounce = \"100ms\"")
        .replace("retry_base = \"300ms\"", "retry_base = \"60s\"");
    std::fs::write(&cfg, text).expect("config");
    b.start_runner(&cfg);
    b.wait("20 statuses", 60, || {
        b.statuses()
            .iter()
            .filter(|s| s["result"] == "not ready")
            .count()
            == 20
    });
    let took = b
        .runner_metric("mdb_provision_last_pass_duration_seconds")
        .expect("the pass metric");
    println!("FIGURE readiness pass over 20 machines whose SSH never answers (ssh_timeout 2 s): {took:.2} s");
    assert!(took <= 4.0, "at most 2 x ssh_timeout, not 20 x: {took} s");
    assert!(b.lan.port_hits(0) >= 20, "each machine was tried");
}

/// A Raspberry Pi plugged into the lab: one pull request proposing it as a
/// worker of alpha (reached as alpha's nodes are), merged through the API,
/// then provisioned over SSH and alpha rebuilt with it as an agent.
#[test]
fn a_pi_plugged_in_joins_alpha_after_one_merge() {
    use util::fake_github::{OWNER, REPO, TOKEN};
    let mut b = Bench::with(&[
        HostSpec {
            ip: "198.18.0.11",
            mac: "00:16:3e:00:01:11",
            sshd: true,
            ..Default::default()
        },
        HostSpec {
            ip: "198.18.0.23",
            mac: "dc:a6:32:00:00:23",
            sshd: true,
            ..Default::default()
        },
    ]);
    b.gh.attach_git(&b.repo.path());
    let mdb_yaml = "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\n    dynamic: 198.18.0.100-198.18.0.200\nscan:\n  ports: [22]\n  rules:\n    - { mac_prefix: dc:a6:32, subnet: lab, join: { cluster: alpha, role: worker } }\n";
    let cp = "  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n".to_string()
        + &machine("cp", "198.18.0.11", "control-plane");
    b.commit_with(mdb_yaml, &[cp], "alpha has a control plane");
    let serve_cfg = b.dir.join("serve.toml");
    std::fs::write(
        &serve_cfg,
        format!(
            "[db]\nurl = \"{}\"\ncheckout = \"{}\"\npoll_interval = \"100ms\"\n\n[server]\ngrpc_listen = \"127.0.0.1:50051\"\nmetrics_listen = \"127.0.0.1:9090\"\n\n[scan]\nsubnets = [\"198.18.0.0/24\"]\ninterval = \"300ms\"\nreverse_dns = false\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"50ms\"\n",
            b.repo.url(),
            b.dir.join("checkout").display(),
            b.gh.url()
        ),
    )
    .expect("serve config");
    let plugged = Instant::now();
    b.start_server_with(
        &["serve", "--config", serve_cfg.to_str().expect("path")],
        &[("MDB_GITHUB_TOKEN", TOKEN)],
    );
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&cfg);
    b.wait("alpha's first build", 90, || {
        b.times("end cluster alpha").is_some()
    });
    b.wait("the Pi's pull request", 90, || !b.gh.pulls().is_empty());
    let to_pull = plugged.elapsed();
    let pr = b.gh.pulls().remove(0);
    assert_eq!(b.gh.pulls().len(), 1, "one pull request");
    for want in ["cluster:", "name: alpha", "role: worker", "user: root"] {
        assert!(
            pr.body.contains(want),
            "{want:?} not proposed:\n{}",
            pr.body
        );
    }
    let name = mdb::github::Trailer::read(&pr.body).name.expect("a name");

    // The test clicks merge (through the API): everything else is mdb's.
    let merged_at = Instant::now();
    let (status, answer) = b.lan.http_in_scanner(
        "PUT",
        b.gh.addr,
        &format!("/repos/{OWNER}/{REPO}/pulls/{}/merge", pr.number),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("User-Agent", "the-test"),
            ("Content-Type", "application/json"),
        ],
        "{\"merge_method\": \"merge\"}",
    );
    assert_eq!(status, 200, "{answer}");
    b.wait("the Pi's machine run", 120, || {
        b.times(&format!("end machine {name}")).is_some()
    });
    let to_machine = merged_at.elapsed();
    b.wait("alpha rebuilt with the Pi", 120, || {
        b.marker("cluster-alpha")
            .contains(&format!("{name} agent,k3s_cluster"))
    });
    let to_cluster = merged_at.elapsed();
    assert!(
        b.marker(&format!("machine-{name}")).contains("198.18.0.23"),
        "over SSH to the Pi"
    );
    let runs = b.runs();
    let cluster_runs = runs
        .iter()
        .filter(|l| l.starts_with("start cluster alpha"))
        .count();
    assert_eq!(
        cluster_runs, 2,
        "built once before, rebuilt once with the Pi: {runs:?}"
    );
    let machine_play = b.times(&format!("end machine {name}")).unwrap_or(0.0)
        - b.times(&format!("start machine {name}")).unwrap_or(0.0);
    println!("FIGURE plug to pull request: {to_pull:.1?}; merge to machine provisioned: {to_machine:.1?} (its playbook {machine_play:.1} s); merge to cluster rebuilt: {to_cluster:.1?}");
}
