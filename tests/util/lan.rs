//! A real test LAN built from network namespaces: one scanner namespace
//! holding a bridge, and one namespace per host joined to it by a veth
//! pair. Addresses come from 198.18.0.0/15 only. Everything is torn down
//! on drop, also when the test fails. Needs root; panics loudly without it.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

pub const SCANNER_IP: &str = "198.18.0.1";

#[derive(Clone, Debug, Default)]
pub struct HostSpec {
    pub ip: &'static str,
    pub mac: &'static str,
    /// Drop ICMP echo requests with nftables (the host still answers ARP).
    pub drop_icmp: bool,
    /// Run a real OpenSSH server on port 22.
    pub sshd: bool,
    /// Accept TCP connections on these ports.
    pub ports: Vec<u16>,
    /// Answer ARP only this late (the kernel ignores ARP; a userspace
    /// responder, tests/py/arp_late.py, answers after the delay).
    pub arp_delay_ms: Option<u32>,
    /// No fixed address: `ip` is empty and [`Lan::start_dhcp_client`]
    /// gets one from a DHCP server the test runs.
    pub dhcp: bool,
}

pub struct Host {
    pub ns: String,
    pub spec: HostSpec,
    sshd: Option<Child>,
    listener: Option<Child>,
}

pub struct Lan {
    pub scanner: String,
    pub hosts: Vec<Host>,
    dir: tempfile::TempDir,
    netns_etc: PathBuf,
    extra: Vec<Child>,
    /// Programs started in host namespaces; they outlive mdb restarts.
    helpers: Vec<Child>,
    /// DHCP clients, by host.
    dhcp_clients: Vec<(usize, Child)>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n(the network tests need root, iproute2 and nftables; .ci/run installs them)",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    run(&all);
}

impl Lan {
    /// Builds the LAN: the scanner at 198.18.0.1/24 on bridge br0.
    pub fn new(hosts: &[HostSpec]) -> Lan {
        for h in hosts.iter().filter(|h| !h.dhcp) {
            assert!(
                h.ip.starts_with("198.18.") || h.ip.starts_with("198.19."),
                "test hosts live in 198.18.0.0/15 only"
            );
        }
        let tag = format!(
            "mdbt{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let scanner = format!("{tag}s");
        let dir = tempfile::tempdir().expect("tempdir");
        let netns_etc = PathBuf::from("/etc/netns").join(&scanner);
        let mut lan = Lan {
            scanner: scanner.clone(),
            hosts: Vec::new(),
            dir,
            netns_etc,
            extra: Vec::new(),
            helpers: Vec::new(),
            dhcp_clients: Vec::new(),
        };
        ip(&["netns", "add", &scanner]);
        ip(&["-n", &scanner, "link", "set", "lo", "up"]);
        ip(&["-n", &scanner, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &scanner,
            "addr",
            "add",
            &format!("{SCANNER_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &scanner, "link", "set", "br0", "up"]);
        // Reverse DNS inside the scanner namespace: /etc/hosts names the
        // hosts, and DNS goes to the namespace's own loopback only.
        std::fs::create_dir_all(&lan.netns_etc).expect("netns etc");
        let names: String = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.dhcp)
            .map(|(i, h)| format!("{} h{i}.lan.test\n", h.ip))
            .collect();
        std::fs::write(
            lan.netns_etc.join("hosts"),
            format!("127.0.0.1 localhost\n{names}"),
        )
        .expect("hosts");
        std::fs::write(
            lan.netns_etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .expect("resolv");
        for (i, spec) in hosts.iter().enumerate() {
            let ns = format!("{tag}h{i}");
            ip(&["netns", "add", &ns]);
            lan.hosts.push(Host {
                ns: ns.clone(),
                spec: spec.clone(),
                sshd: None,
                listener: None,
            });
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let peer = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer,
                "netns", &scanner,
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "address", spec.mac]);
            if !spec.dhcp {
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", spec.ip),
                    "dev",
                    "eth0",
                ]);
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &scanner, "link", "set", &peer, "master", "br0", "up"]);
            if spec.drop_icmp {
                let rules = "table inet mdbt {\n chain input {\n  type filter hook input priority 0;\n  icmp type echo-request drop\n }\n}\n";
                let path = lan.dir.path().join(format!("{ns}.nft"));
                std::fs::write(&path, rules).expect("nft rules");
                run(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "nft",
                    "-f",
                    path.to_str().expect("path"),
                ]);
            }
            if let Some(delay) = spec.arp_delay_ms {
                lan.answer_arp_late(i, delay);
            }
            if spec.sshd {
                lan.start_sshd(i);
            }
            if !spec.ports.is_empty() {
                lan.listen(i);
            }
        }
        lan
    }

    fn answer_arp_late(&mut self, i: usize, delay_ms: u32) {
        let ns = self.hosts[i].ns.clone();
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.conf.eth0.arp_ignore=8",
        ]);
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/arp_late.py");
        let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, &python])
            .arg(script)
            .args(["eth0", self.hosts[i].spec.ip, &delay_ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the late ARP responder");
        use std::io::BufRead;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("responder ready");
        assert_eq!(line.trim(), "ready", "late ARP responder");
        self.extra.push(child);
    }

    /// Starts `argv` inside host `i`'s namespace and waits (bounded: the
    /// program's own) for it to print "ready"; it is killed with the LAN.
    pub fn spawn_ready(&mut self, i: usize, argv: &[&str]) {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(argv)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready", "{argv:?} did not start");
        self.helpers.push(child);
    }

    /// A Python script of `tests/py/` with the test virtualenv's Python.
    pub fn python_script(name: &str) -> (String, String) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/py")
            .join(name);
        let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
        (python, script.display().to_string())
    }

    pub fn start_sshd(&mut self, i: usize) {
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let key = self.dir.path().join(format!("hostkey{i}"));
        if !key.exists() {
            run(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                key.to_str().expect("path"),
            ]);
        }
        let h = &self.hosts[i];
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &h.ns,
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
                "/dev/null",
            ])
            .args([
                "-o",
                &format!(
                    "ListenAddress={}",
                    if h.spec.dhcp { "0.0.0.0" } else { h.spec.ip }
                ),
                "-o",
                &format!("HostKey={}", key.display()),
            ])
            .args([
                "-o",
                "PidFile=none",
                "-o",
                "UsePAM=no",
                "-o",
                "StrictModes=no",
            ])
            .args([
                "-o",
                &format!("AuthorizedKeysFile={}", self.authorized_keys(i).display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        self.hosts[i].sshd = Some(child);
        self.wait_for_port(i, 22);
    }

    /// The file host `i`'s sshd reads authorized keys from (each host has
    /// its own, although the namespaces share one filesystem).
    pub fn authorized_keys(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("authorized_keys{i}"))
    }

    pub fn stop_sshd(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn listen(&mut self, i: usize) {
        let h = &self.hosts[i];
        let ports: Vec<String> = h.spec.ports.iter().map(|p| p.to_string()).collect();
        let script = format!(
            "import socket,select\nss=[]\nfor p in [{}]:\n s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',p)); s.listen(64); ss.append(s)\nwhile True:\n r,_,_=select.select(ss,[],[])\n for s in r:\n  c,_=s.accept(); c.close()\n",
            ports.join(",")
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns, "python3", "-c", &script])
            .spawn()
            .expect("listener");
        let first = h.spec.ports[0];
        self.hosts[i].listener = Some(child);
        self.wait_for_port(i, first);
    }

    /// Waits until something listens on the host's port (bounded: 10 s).
    fn wait_for_port(&self, i: usize, port: u16) {
        let h = &self.hosts[i];
        for _ in 0..200 {
            let out = Command::new("ip")
                .args(["netns", "exec", &h.ns, "ss", "-ltnH"])
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nothing listens on {}:{port}", h.spec.ip);
    }

    /// Starts Debian's `udhcpc` on host `i` (asking as `hostname`), with a
    /// script that only sets the address; [`Lan::renew`] makes it renew.
    pub fn start_dhcp_client(&mut self, i: usize, hostname: &str) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dhcp/udhcpc.sh");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns, "udhcpc", "-i", "eth0", "-f", "-t", "30", "-T", "1", "-A", "1"])
            .arg("-s")
            .arg(script)
            .args(["-x", &format!("hostname:{hostname}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udhcpc (.ci/run installs it)");
        self.dhcp_clients.push((i, child));
    }

    /// Makes host `i`'s DHCP client renew its lease now (SIGUSR1), as its
    /// renewal time would.
    pub fn renew(&self, i: usize) {
        for (host, c) in &self.dhcp_clients {
            if *host == i {
                // SAFETY: kill(2) on our own child's pid.
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGUSR1);
                }
            }
        }
    }

    /// Host `i`'s IPv4 address now, if it has one.
    pub fn address_of(&self, i: usize) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &self.hosts[i].ns, "-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
    }

    /// Starts a program in the scanner's namespace for as long as the LAN
    /// lives (a DHCP server), its output in `log`.
    pub fn spawn_in_scanner(&mut self, argv: &[&str], envs: &[(&str, &str)], log: &std::path::Path) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.scanner]).args(argv);
        for (k, v) in envs {
            c.env(k, v);
        }
        let log = std::fs::File::create(log).expect("log");
        let child = c
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        self.helpers.push(child);
    }

    /// Adds another address to host `i` (one namespace standing in for
    /// many machines).
    pub fn add_address(&self, i: usize, addr: &str) {
        assert!(addr.starts_with("198.18.") || addr.starts_with("198.19."));
        ip(&[
            "-n",
            &self.hosts[i].ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
    }

    /// Counts (and, with `drop`, drops) TCP packets to `port` arriving at
    /// host `i`: [`Lan::port_hits`] reads the count.
    pub fn watch_port(&self, i: usize, port: u16, drop: bool) {
        let verdict = if drop { " drop" } else { "" };
        let rules = format!(
            "table inet mdbwatch {{\n chain input {{\n  type filter hook input priority -10;\n  tcp dport {port} counter{verdict}\n }}\n}}\n"
        );
        let path = self.dir.path().join(format!("watch-{i}-{port}.nft"));
        std::fs::write(&path, rules).expect("nft rules");
        run(&[
            "ip",
            "netns",
            "exec",
            &self.hosts[i].ns,
            "nft",
            "-f",
            path.to_str().expect("path"),
        ]);
    }

    /// TCP packets to the watched port of host `i` so far.
    pub fn port_hits(&self, i: usize) -> u64 {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.hosts[i].ns,
            "nft",
            "list",
            "table",
            "inet",
            "mdbwatch",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {text}"))
    }

    /// One HTTP/1.0 request from inside the scanner's namespace (where the
    /// fake GitHub and mdb's own ports listen): the status and the body.
    pub fn http_in_scanner(
        &self,
        method: &str,
        addr: std::net::SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let ns = PathBuf::from("/var/run/netns").join(&self.scanner);
        let request = {
            let mut r = format!(
                "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                r.push_str(&format!("{k}: {v}\r\n"));
            }
            r.push_str("\r\n");
            r.push_str(body);
            r
        };
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let f = std::fs::File::open(&ns).expect("netns file");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut s =
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
                    .expect("connect");
            s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .expect("timeout");
            s.write_all(request.as_bytes()).expect("send");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            let status = answer
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = answer
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            (status, body)
        })
        .join()
        .expect("http thread")
    }

    /// Gives host `i` another address (it "moves").
    pub fn set_ip(&mut self, i: usize, new_ip: &'static str) {
        assert!(new_ip.starts_with("198.18."));
        let h = &self.hosts[i];
        ip(&["-n", &h.ns, "addr", "flush", "dev", "eth0"]);
        ip(&[
            "-n",
            &h.ns,
            "addr",
            "add",
            &format!("{new_ip}/24"),
            "dev",
            "eth0",
        ]);
        self.hosts[i].spec.ip = new_ip;
    }

    /// Gives host `i` another MAC (new hardware behind the same address).
    pub fn set_mac(&mut self, i: usize, mac: &'static str) {
        let h = &self.hosts[i];
        ip(&["-n", &h.ns, "link", "set", "eth0", "address", mac]);
        self.hosts[i].spec.mac = mac;
    }

    /// Takes host `i` off the LAN (link down) or puts it back.
    pub fn set_link(&self, i: usize, up: bool) {
        let h = &self.hosts[i];
        ip(&[
            "-n",
            &h.ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    /// Runs the mdb binary inside the scanner namespace.
    pub fn mdb(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.scanner, super::bin()])
            .args(args)
            .output()
            .expect("run mdb in the scanner namespace")
    }

    /// Starts the mdb binary in the scanner namespace in the background.
    pub fn spawn_mdb(&mut self, args: &[&str], envs: &[(&str, &str)]) -> &mut Child {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.scanner, super::bin()])
            .args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // Logs go to a file (a pipe nobody reads would fill and block mdb).
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mdb.log"))
            .expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mdb");
        self.extra.push(child);
        self.extra.last_mut().expect("just pushed")
    }

    /// A TCP listener on the scanner namespace's own loopback: a socket
    /// belongs to the namespace it was made in, so a thread enters the
    /// namespace just to bind it.
    pub fn listen_in_scanner(&self) -> std::net::TcpListener {
        let ns = PathBuf::from("/var/run/netns").join(&self.scanner);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("netns file");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind in scanner namespace")
        })
        .join()
        .expect("setns thread")
    }

    /// Stops every mdb started with `spawn_mdb`.
    pub fn stop_mdb(&mut self) {
        for mut c in self.extra.drain(..) {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn mdb_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mdb.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let mut children: Vec<Child> = self.extra.drain(..).collect();
        children.append(&mut self.helpers);
        children.extend(self.dhcp_clients.drain(..).map(|(_, c)| c));
        for h in &mut self.hosts {
            children.extend(h.sshd.take());
            children.extend(h.listener.take());
        }
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut all: Vec<String> = self.hosts.iter().map(|h| h.ns.clone()).collect();
        all.push(self.scanner.clone());
        for ns in all {
            // Anything still running inside goes too.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.netns_etc);
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.path().join("mdb.log")) {
                eprintln!("--- mdb log ---\n{log}");
            }
        }
    }
}
