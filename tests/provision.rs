//! The provisioning runner against real parts: namespace hosts with real
//! sshd and key authentication, real `ansible-playbook`, a bare git repo as
//! the DB remote, real `mdb serve` and `mdb provision` processes, and the
//! fake GitHub for the problems it files.

mod util;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use util::{
    fake_github::{FakeGithub, OWNER, REPO, TOKEN},
    lan::{HostSpec, Lan},
    TestRepo,
};

const MDB_YAML: &str =
    "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\n";

fn machine(name: &str, ip: &str, role: &str) -> String {
    format!("  - name: {name}\n    ip: {ip}\n    use: {{ cluster: {{ name: alpha, role: {role} }} }}\n    ssh: {{ user: root }}\n")
}

struct Bench {
    lan: Lan,
    repo: TestRepo,
    gh: FakeGithub,
    _rt: tokio::runtime::Runtime,
    runner: Option<Child>,
    server: Option<Child>,
    dir: PathBuf,
    key: PathBuf,
}

impl Bench {
    fn new(hosts: usize) -> Bench {
        let specs: Vec<HostSpec> = (0..hosts)
            .map(|i| HostSpec {
                ip: ["198.18.0.11", "198.18.0.12", "198.18.0.13"][i],
                mac: [
                    "00:16:3e:00:01:11",
                    "00:16:3e:00:01:12",
                    "00:16:3e:00:01:13",
                ][i],
                sshd: true,
                ..Default::default()
            })
            .collect();
        let lan = Lan::new(&specs);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let listener = lan.listen_in_scanner();
        let gh = rt.block_on(async { FakeGithub::start(listener) });
        let dir = lan.dir().join("bench");
        std::fs::create_dir_all(dir.join("markers")).expect("dirs");
        let key = dir.join("provisioner_key");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(&key),
        );
        let b = Bench {
            lan,
            repo: TestRepo::new(),
            gh,
            _rt: rt,
            runner: None,
            server: None,
            dir,
            key,
        };
        for i in 0..hosts {
            b.authorize(i, true);
        }
        b.write_playbooks();
        b
    }

    fn authorize(&self, i: usize, on: bool) {
        let public = std::fs::read_to_string(self.key.with_extension("pub")).expect("pub key");
        std::fs::write(
            self.lan.authorized_keys(i),
            if on { public } else { String::new() },
        )
        .expect("authorized_keys");
    }

    fn write_playbooks(&self) {
        let markers = self.dir.join("markers");
        // The runs log what they were told; the playbooks leave a marker on
        // each host over SSH ($SSH_CONNECTION names the host's address).
        std::fs::write(
            self.dir.join("site.yml"),
            format!("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: echo \"$SSH_CONNECTION\" > {}/machine-{{{{ inventory_hostname }}}}\n", markers.display()),
        )
        .expect("site.yml");
        std::fs::write(
            self.dir.join("cluster.yml"),
            format!("- hosts: k3s_cluster\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: echo \"{{{{ inventory_hostname }}}} {{{{ group_names | sort | join(',') }}}}\" >> {}/cluster-{{{{ lookup('ansible.builtin.env', 'MDB_CLUSTER') }}}}\n", markers.display()),
        )
        .expect("cluster.yml");
    }

    fn commit(&mut self, machines: &[String], message: &str) -> String {
        self.repo.write("mdb.yaml", MDB_YAML);
        self.repo.write(
            "machines/lab.yaml",
            &format!("machines:\n{}", machines.concat()),
        );
        self.repo.commit(message).to_string()
    }

    fn start_server(&mut self) {
        let mut c = self.in_scanner();
        c.args([
            "serve",
            "--db-url",
            &self.repo.url(),
            "--poll-interval",
            "100ms",
        ])
        .arg("--checkout")
        .arg(self.dir.join("checkout"))
        .args([
            "--grpc-listen",
            "127.0.0.1:50051",
            "--metrics-listen",
            "127.0.0.1:9090",
        ]);
        self.server = Some(spawn(c, &self.dir.join("serve.log")));
    }

    fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn config(&self, machine_command: &str) -> PathBuf {
        let log = self.dir.join("runs.log");
        let playbook = util::venv_tool("ansible-playbook")
            .get_program()
            .to_string_lossy()
            .into_owned();
        let wrap = |what: &str, cmd: String| {
            format!("[\"sh\", \"-c\", \"echo start {what} $MDB_HOSTS$MDB_CLUSTER $MDB_REVISION >> {log}; {cmd} && echo done {what} $MDB_HOSTS$MDB_CLUSTER $MDB_REVISION >> {log}\"]", log = log.display())
        };
        let machine = wrap(
            "machine",
            machine_command
                .replace("PLAYBOOK", &playbook)
                .replace("SITE", &self.dir.join("site.yml").display().to_string()),
        );
        let cluster = wrap(
            "cluster",
            format!(
                "{playbook} -i {{inventory}} {}",
                self.dir.join("cluster.yml").display()
            ),
        );
        let cfg = self.dir.join("provision.toml");
        std::fs::write(
            &cfg,
            format!(
                "[provision]\nserver = \"http://127.0.0.1:50051\"\nstate_dir = \"{}\"\nmachine_command = {machine}\ncluster_command = {cluster}\ncluster_format = \"k3s\"\ntimeout = \"20s\"\nretry_base = \"300ms\"\nretry_max = \"1s\"\ndebounce = \"700ms\"\nssh_key = \"{}\"\nssh_timeout = \"5s\"\ngrpc_listen = \"127.0.0.1:50053\"\nmetrics_listen = \"127.0.0.1:9093\"\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"20ms\"\n",
                self.dir.join("state").display(),
                self.key.display(),
                self.gh.url()
            ),
        )
        .expect("config");
        cfg
    }

    fn start_runner(&mut self, cfg: &Path) {
        let mut c = self.in_scanner();
        c.arg("provision").arg("--config").arg(cfg);
        c.env("MDB_GITHUB_TOKEN", TOKEN)
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_PRIVATE_KEY_FILE", &self.key)
            .env(
                "ANSIBLE_SSH_ARGS",
                "-o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null",
            )
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("ansible-tmp"))
            .env("ANSIBLE_HOME", self.dir.join("ansible-home"));
        self.runner = Some(spawn(c, &self.dir.join("provision.log")));
    }

    /// kill -9: no chance to clean anything up.
    fn kill_runner(&mut self) {
        if let Some(mut c) = self.runner.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn in_scanner(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.lan.scanner, util::bin()]);
        c.env("MDB_LOG", "info");
        c
    }

    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn statuses(&self) -> Vec<Value> {
        let out = self
            .lan
            .mdb(&["provisioned", "--runner", "127.0.0.1:50053", "--json"]);
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default()
    }

    fn status(&self, target: &str) -> Option<Value> {
        self.statuses()
            .into_iter()
            .find(|s| s["target"] == target && s["cluster"] == false)
    }

    fn wait(&self, what: &str, secs: u64, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nruns:\n{}\nstatuses: {:#?}\nprovision log:\n{}",
                self.runs().join("\n"),
                self.statuses(),
                std::fs::read_to_string(self.dir.join("provision.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn marker(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("markers").join(name)).unwrap_or_default()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.kill_runner();
        self.stop_server();
    }
}

fn spawn(mut c: Command, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn")
}

fn run_ok(c: &mut Command) {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(runs: &[String], prefix: &str) -> usize {
    runs.iter().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn merged_machines_are_provisioned_and_clusters_rebuilt_through_restarts_and_faults() {
    let mut b = Bench::new(3);
    let cp = machine("cp", "198.18.0.11", "control-plane");
    let w1 = machine("w1", "198.18.0.12", "worker");
    let w2 = machine("w2", "198.18.0.13", "worker");
    b.commit(&[cp.clone(), w1.clone()], "cp and w1");
    b.start_server();
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&cfg);
    b.wait("the first provisioning", 90, || {
        count(&b.runs(), "done cluster alpha") == 1
    });
    assert_eq!(
        count(&b.runs(), "start machine"),
        1,
        "one run for both machines: {:?}",
        b.runs()
    );

    // New worker: one machine run for w2 alone, one cluster run with it in it.
    let pushed = Instant::now();
    let rev = b.commit(&[cp.clone(), w1.clone(), w2.clone()], "w2 joins alpha");
    b.wait("w2's machine run", 60, || {
        b.runs().iter().any(|l| l.starts_with("start machine w2 "))
    });
    let to_start = pushed.elapsed();
    b.wait("alpha's rebuild", 60, || {
        count(&b.runs(), "done cluster alpha") == 2
    });
    let runs = b.runs();
    assert!(runs.contains(&format!("done machine w2 {rev}")), "{runs:?}");
    assert_eq!(
        count(&runs, "start machine"),
        2,
        "exactly once, only w2: {runs:?}"
    );
    assert!(
        b.marker("machine-w2").split_whitespace().nth(2) == Some("198.18.0.13"),
        "over SSH to w2: {:?}",
        b.marker("machine-w2")
    );
    assert!(
        b.marker("cluster-alpha").contains("w2 agent,k3s_cluster"),
        "{}",
        b.marker("cluster-alpha")
    );
    println!(
        "FIGURE git push to playbook start: {to_start:?} (server poll 100 ms, debounce 700 ms)"
    );

    // A burst of five commits: one run, on the last revision.
    let before = count(&b.runs(), "start machine");
    let mut last = String::new();
    for i in 0..5 {
        let w1 = w1.replace(
            "ssh: { user: root }",
            &format!("ssh: {{ user: root }}\n    labels: {{ burst: \"{i}\" }}"),
        );
        last = b.commit(&[cp.clone(), w1, w2.clone()], "burst");
        std::thread::sleep(Duration::from_millis(60));
    }
    b.wait("the burst's run", 60, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine w1 {last}"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let burst = count(&b.runs(), "start machine") - before;
    assert_eq!(burst, 1, "{:?}", b.runs());
    println!("FIGURE runs per burst of 5 commits: {burst}");

    // Broken key: not ready, one issue with the reason; key back: closed.
    b.authorize(0, false);
    let cp_changed = cp.replace(
        "ssh: { user: root }",
        "ssh: { user: root }\n    labels: { rack: \"2\" }",
    );
    let w1_now = w1.replace(
        "ssh: { user: root }",
        "ssh: { user: root }\n    labels: { burst: \"4\" }",
    );
    b.commit(&[cp_changed.clone(), w1_now.clone(), w2.clone()], "move cp");
    b.wait("an issue for cp", 60, || {
        b.gh.plain_issues()
            .iter()
            .any(|i| i.title == "Cannot provision cp")
    });
    let st = b.status("cp").expect("status");
    assert_eq!(st["result"], "not ready", "{st}");
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ssh key authentication as root@198.18.0.11:22 failed"),
        "{st}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        b.gh.plain_issues().len(),
        1,
        "exactly one issue while it keeps failing"
    );
    b.authorize(0, true);
    b.wait("cp's issue to close", 60, || {
        b.gh.plain_issues().iter().all(|i| i.state == "closed")
    });
    assert!(b.gh.plain_issues()[0]
        .comments
        .iter()
        .any(|c| c.starts_with("Provisioned at revision")));

    // kill -9 during a run: redone after the restart, nothing skipped or repeated.
    b.kill_runner();
    let slow = b.config("sleep 3; PLAYBOOK -i {inventory} --limit {hosts} SITE");
    b.start_runner(&slow);
    let w2_moved = w2.replace(
        "ssh: { user: root }",
        "ssh: { user: root }\n    labels: { disk: ssd }",
    );
    let rev = b.commit(
        &[cp_changed.clone(), w1_now.clone(), w2_moved.clone()],
        "w2 disk",
    );
    b.wait("the slow run to start", 60, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("start machine w2 {rev}"))
    });
    b.kill_runner();
    b.start_runner(&slow);
    b.wait("the interrupted run to be redone", 60, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine w2 {rev}"))
    });
    let runs = b.runs();
    assert_eq!(
        count(&runs, &format!("start machine w2 {rev}")),
        2,
        "interrupted, then redone: {runs:?}"
    );
    let done: Vec<&String> = runs.iter().filter(|l| l.starts_with("done ")).collect();
    let unique: std::collections::BTreeSet<&&String> = done.iter().collect();
    assert_eq!(
        done.len(),
        unique.len(),
        "no finished run is repeated: {runs:?}"
    );

    // The server restarts mid-stream: the runner reconnects and goes on.
    b.stop_server();
    std::thread::sleep(Duration::from_secs(1));
    b.start_server();
    let w1_later = w1_now.replace("burst: \"4\"", "burst: \"after-restart\"");
    let rev = b.commit(
        &[cp_changed, w1_later, w2_moved],
        "after the server restart",
    );
    b.wait("a run after the server restart", 90, || {
        b.runs()
            .iter()
            .any(|l| l == &format!("done machine w1 {rev}"))
    });
    assert!(b.gh.rejected().is_empty(), "{:?}", b.gh.rejected());
}

#[test]
fn bad_commands_failing_playbooks_and_hangs_are_statuses_and_retries() {
    let mut b = Bench::new(1);
    b.commit(&[machine("cp", "198.18.0.11", "control-plane")], "cp");
    b.start_server();
    for (command, expect) in [
        ("/nonexistent/ansible-playbook {hosts}", "not found"),
        (
            "PLAYBOOK -i {inventory} --limit {hosts} /nonexistent/site.yml",
            "failed",
        ),
        ("sleep 60", "timeout"),
    ] {
        let _ = std::fs::remove_dir_all(b.dir.join("state"));
        let cfg = b.config(command);
        let cfg_text = std::fs::read_to_string(&cfg)
            .expect("config")
            .replace("timeout = \"20s\"", "timeout = \"2s\"");
        std::fs::write(&cfg, cfg_text).expect("config");
        b.start_runner(&cfg);
        b.wait("a failed status", 60, || {
            b.status("cp").is_some_and(|s| {
                s["result"] == "failed" && s["attempts"].as_u64().unwrap_or(0) >= 2
            })
        });
        let st = b.status("cp").expect("status");
        let reason = st["reason"].as_str().unwrap_or("").to_lowercase();
        assert!(reason.contains(expect), "{expect:?} in {st}");
        b.kill_runner();
    }
    let log = std::fs::read_to_string(b.dir.join("provision.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn dry_run_prints_what_would_run_and_changes_nothing() {
    let mut b = Bench::new(1);
    b.commit(&[machine("cp", "198.18.0.11", "control-plane")], "cp");
    b.start_server();
    let cfg = b.config("PLAYBOOK -i {inventory} --limit {hosts} SITE");
    std::thread::sleep(Duration::from_secs(1));
    let out = b
        .in_scanner()
        .args([
            "provision",
            "--config",
            cfg.to_str().expect("path"),
            "--dry-run",
        ])
        .env("MDB_GITHUB_TOKEN", TOKEN)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("would check and provision cp:"), "{text}");
    assert!(text.contains("would rebuild cluster alpha:"), "{text}");
    assert!(b.runs().is_empty(), "nothing ran");
    assert!(!b.dir.join("state/state.json").exists(), "no state changed");
}
