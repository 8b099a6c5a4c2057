//! The provisioning bench: a namespace LAN with real sshd hosts, a bare DB
//! repository, the fake GitHub, and real `mdb serve` and `mdb provision`
//! processes in the scanner's namespace, with playbooks that leave markers
//! on the hosts over SSH.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    fake_github::{FakeGithub, OWNER, REPO, TOKEN},
    lan::{HostSpec, Lan},
    TestRepo,
};

pub const MDB_YAML: &str =
    "subnets:\n  - name: lab\n    cidr: 198.18.0.0/24\n    static: 198.18.0.10-198.18.0.99\n";

pub fn machine(name: &str, ip: &str, role: &str) -> String {
    format!("  - name: {name}\n    ip: {ip}\n    use: {{ cluster: {{ name: alpha, role: {role} }} }}\n    ssh: {{ user: root }}\n")
}

pub struct Bench {
    pub lan: Lan,
    pub repo: TestRepo,
    pub gh: FakeGithub,
    _rt: tokio::runtime::Runtime,
    runner: Option<Child>,
    server: Option<Child>,
    pub dir: PathBuf,
    pub key: PathBuf,
}

impl Bench {
    /// `hosts` machines with sshd at 198.18.0.11, .12, .13.
    pub fn new(hosts: usize) -> Bench {
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
        Bench::with(&specs)
    }

    /// A LAN of these hosts; those with sshd accept the provisioner's key.
    pub fn with(specs: &[HostSpec]) -> Bench {
        let lan = Lan::new(specs);
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
        for (i, spec) in specs.iter().enumerate() {
            if spec.sshd {
                b.authorize(i, true);
            }
        }
        b.write_playbooks();
        b
    }

    pub fn authorize(&self, i: usize, on: bool) {
        let public = std::fs::read_to_string(self.key.with_extension("pub")).expect("pub key");
        std::fs::write(
            self.lan.authorized_keys(i),
            if on { public } else { String::new() },
        )
        .expect("authorized_keys");
    }

    pub fn write_playbooks(&self) {
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

    /// When each run started and ended ("start|end KIND TARGET", unix time).
    pub fn times(&self, line_start: &str) -> Option<f64> {
        std::fs::read_to_string(self.dir.join("times.log"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|t| t.parse().ok())
    }

    /// A value of the runner's metrics (read inside the scanner's namespace).
    pub fn runner_metric(&self, series: &str) -> Option<f64> {
        self.lan.metric_in_scanner("127.0.0.1:9093", series)
    }

    /// Commits `mdb.yaml` and `machines/lab.yaml` as given.
    pub fn commit_with(&mut self, mdb_yaml: &str, machines: &[String], message: &str) -> String {
        self.repo.write("mdb.yaml", mdb_yaml);
        self.repo.write(
            "machines/lab.yaml",
            &format!("machines:\n{}", machines.concat()),
        );
        self.repo.commit(message).to_string()
    }

    pub fn commit(&mut self, machines: &[String], message: &str) -> String {
        self.repo.write("mdb.yaml", MDB_YAML);
        self.repo.write(
            "machines/lab.yaml",
            &format!("machines:\n{}", machines.concat()),
        );
        self.repo.commit(message).to_string()
    }

    pub fn start_server(&mut self) {
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

    /// Waits until the server has loaded a revision (`/readyz`).
    pub fn wait_server_ready(&self) {
        self.wait("the server's /readyz", 30, || {
            let (status, _) = self.lan.http_in_scanner(
                "GET",
                "127.0.0.1:9090".parse().expect("addr"),
                "/readyz",
                &[],
                "",
            );
            status == 200
        });
    }

    /// `mdb` with these arguments as the server (in the scanner's namespace).
    pub fn start_server_with(&mut self, args: &[&str], envs: &[(&str, &str)]) {
        let mut c = self.in_scanner();
        c.args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        self.server = Some(spawn(c, &self.dir.join("serve.log")));
    }

    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn config(&self, machine_command: &str) -> PathBuf {
        let log = self.dir.join("runs.log");
        let playbook = super::venv_tool("ansible-playbook")
            .get_program()
            .to_string_lossy()
            .into_owned();
        let times = self.dir.join("times.log");
        let wrap = |what: &str, cmd: String| {
            format!("[\"sh\", \"-c\", \"echo start {what} $MDB_HOSTS$MDB_CLUSTER $MDB_REVISION >> {log}; echo start {what} $MDB_HOSTS$MDB_CLUSTER $(date +%s.%N) >> {times}; {cmd} && echo done {what} $MDB_HOSTS$MDB_CLUSTER $MDB_REVISION >> {log} && echo end {what} $MDB_HOSTS$MDB_CLUSTER $(date +%s.%N) >> {times}\"]", log = log.display(), times = times.display())
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
                "[provision]\nserver = \"http://127.0.0.1:50051\"\nstate_dir = \"{}\"\nmachine_command = {machine}\ncluster_command = {cluster}\ncluster_format = \"k3s\"\ntimeout = \"20s\"\nretry_base = \"300ms\"\nretry_max = \"1s\"\ndebounce = \"700ms\"\nssh_key = \"{}\"\nssh_timeout = \"5s\"\nenv = [\"ANSIBLE_LOCAL_TEMP\", \"ANSIBLE_HOME\"]\ngrpc_listen = \"127.0.0.1:50053\"\nmetrics_listen = \"127.0.0.1:9093\"\n\n[github]\nrepo = \"{OWNER}/{REPO}\"\napi_url = \"{}\"\nwrite_gap = \"5ms\"\nretry_base = \"20ms\"\n",
                self.dir.join("state").display(),
                self.key.display(),
                self.gh.url()
            ),
        )
        .expect("config");
        cfg
    }

    pub fn start_runner(&mut self, cfg: &Path) {
        let mut c = self.in_scanner();
        c.arg("provision").arg("--config").arg(cfg);
        // The runner checks host keys and hands Ansible its key itself;
        // only what `env` in its config names reaches the playbooks.
        c.env("MDB_GITHUB_TOKEN", TOKEN)
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("ansible-tmp"))
            .env("ANSIBLE_HOME", self.dir.join("ansible-home"));
        self.runner = Some(spawn(c, &self.dir.join("provision.log")));
    }

    /// `mdb dhcp --follow` of the server, in the scanner's namespace, with
    /// `args` (its targets, lease files); the port of its /status.
    pub fn start_dhcp_follower(&mut self, args: &[&str]) -> u16 {
        let port = super::process::free_port();
        let state = self.dir.join("dhcp-state");
        let listen = format!("127.0.0.1:{port}");
        let mut argv = vec![
            super::bin(),
            "dhcp",
            "--follow",
            "--server",
            "127.0.0.1:50051",
            "--state-dir",
            state.to_str().expect("path"),
            "--metrics-listen",
            &listen,
        ];
        argv.extend_from_slice(args);
        self.lan
            .spawn_in_scanner(&argv, &[("MDB_LOG", "info")], &self.dir.join("dhcp.log"));
        port
    }

    /// The DHCP follower's /status, asked inside the scanner's namespace.
    pub fn dhcp_status(&self, port: u16) -> Value {
        let (_, body) =
            self.lan
                .http_in_scanner("GET", ([127, 0, 0, 1], port).into(), "/status", &[], "");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Debian's Kea serving br0's 198.18.0.100-199, its leases in
    /// `kea-leases.csv` (returned); `more` adds settings to `Dhcp4` (each
    /// `"key": value,`).
    pub fn start_kea(&mut self, more: &str) -> PathBuf {
        let leases = self.dir.join("kea-leases.csv");
        let conf = self.dir.join("kea.conf");
        std::fs::write(
            &conf,
            format!(
                "{{\"Dhcp4\": {{\n \"interfaces-config\": {{\"interfaces\": [\"br0\"], \"dhcp-socket-type\": \"raw\"}},\n \"lease-database\": {{\"type\": \"memfile\", \"persist\": true, \"name\": \"{}\", \"lfc-interval\": 0}},\n \"valid-lifetime\": 600,\n {more}\n \"subnet4\": [{{\"id\": 1, \"subnet\": \"198.18.0.0/24\", \"pools\": [{{\"pool\": \"198.18.0.100 - 198.18.0.199\"}}]}}],\n \"loggers\": [{{\"name\": \"kea-dhcp4\", \"output_options\": [{{\"output\": \"stdout\"}}], \"severity\": \"INFO\"}}]\n}}}}\n",
                leases.display()
            ),
        )
        .expect("kea config");
        let run_dir = self.dir.to_str().expect("path").to_string();
        self.lan.spawn_in_scanner(
            &["kea-dhcp4", "-c", conf.to_str().expect("path")],
            &[
                ("KEA_LOCKFILE_DIR", &run_dir),
                ("KEA_PIDFILE_DIR", &run_dir),
            ],
            &self.dir.join("kea.log"),
        );
        leases
    }

    /// kill -9: no chance to clean anything up.
    pub fn kill_runner(&mut self) {
        if let Some(mut c) = self.runner.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn in_scanner(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.lan.scanner, super::bin()]);
        c.env("MDB_LOG", "info");
        c
    }

    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn statuses(&self) -> Vec<Value> {
        let out = self
            .lan
            .mdb(&["provisioned", "--runner", "127.0.0.1:50053", "--json"]);
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default()
    }

    pub fn status(&self, target: &str) -> Option<Value> {
        self.statuses()
            .into_iter()
            .find(|s| s["target"] == target && s["cluster"] == false)
    }

    pub fn wait(&self, what: &str, secs: u64, cond: impl Fn() -> bool) {
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

    pub fn marker(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("markers").join(name)).unwrap_or_default()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.kill_runner();
        self.stop_server();
    }
}

pub fn spawn(mut c: Command, log: &Path) -> Child {
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

pub fn run_ok(c: &mut Command) {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn count(runs: &[String], prefix: &str) -> usize {
    runs.iter().filter(|l| l.starts_with(prefix)).count()
}
