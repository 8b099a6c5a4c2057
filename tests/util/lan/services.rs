//! What runs on the test LAN's hosts: sshd, listeners, late ARP
//! responders, DHCP clients and servers, helpers that print "ready", port
//! counters, and HTTP from inside the scanner's namespace.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use super::{ip, run, Lan};

impl Lan {
    pub(super) fn answer_arp_late(&mut self, i: usize, delay_ms: u32) {
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

    /// A campus behind host `i`: `tests/py/arp_campus.py` answers ARP for
    /// `count` addresses from `first`, each with its own Raspberry Pi MAC,
    /// for 240 s at most.
    pub fn start_campus(&mut self, i: usize, first: &str, count: usize) {
        let (python, script) = Lan::python_script("arp_campus.py");
        let count = count.to_string();
        self.spawn_ready(i, &[&python, &script, "eth0", first, &count, "240"]);
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
        let keys = format!("AuthorizedKeysFile={}", self.authorized_keys(i).display());
        self.start_sshd_with(i, &["-o", &keys], Stdio::null());
    }

    /// An impostor's sshd on host `i`: its own host key, and an
    /// `AuthorizedKeysCommand` that echoes whatever key a client offers, so
    /// it accepts any key. Returns its log (every key offered, every
    /// session accepted).
    pub fn start_any_key_sshd(&mut self, i: usize) -> PathBuf {
        let log = self.dir.path().join(format!("sshd-any-key{i}.log"));
        let file = std::fs::File::create(&log).expect("sshd log");
        self.start_sshd_with(
            i,
            &[
                "-o",
                "AuthorizedKeysFile=none",
                "-o",
                "AuthorizedKeysCommand=/bin/echo %t %k",
                "-o",
                "AuthorizedKeysCommandUser=root",
                "-o",
                "LogLevel=VERBOSE",
            ],
            Stdio::from(file),
        );
        log
    }

    fn start_sshd_with(&mut self, i: usize, auth: &[&str], stderr: Stdio) {
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
        // sshd runs commands through the login shell, and bash sources
        // ~/.bashrc for them: the machine's own (a pyenv init that waits on
        // a stale rehash lock, say) would decide how long a test host takes
        // to answer. The host's sshd sees an empty one in its own mount
        // namespace; the machine's file is untouched.
        let empty_rc = self.dir.path().join("empty_bashrc");
        std::fs::write(&empty_rc, "").expect("empty bashrc");
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let h = &self.hosts[i];
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"for f in .bashrc .bash_profile .profile; do [ -e "$HOME/$f" ] && mount --bind "$0" "$HOME/$f"; done; exec "$@""#)
            .arg(&empty_rc)
            .env("HOME", &home)
            .args([
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
                    if h.spec.dhcp { "0.0.0.0" } else if h.spec.ipv6_only { "[::]" } else { h.spec.ip }
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
            .args(auth)
            .stdout(Stdio::null())
            .stderr(stderr)
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

    /// Stops host `i`'s listener: its ports refuse connections from now on.
    pub fn stop_listening(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].listener.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts Debian's `avahi-daemon` on host `i`, announcing `hostname`
    /// and one service of each type in `services` (e.g. `_ipp._tcp`). It
    /// runs in its own mount namespace: its services directory and its
    /// runtime directory are the test's own, bound over the machine's.
    /// Returns once the daemon says its host name is established.
    pub fn start_avahi(&mut self, i: usize, hostname: &str, services: &[&str]) {
        let base = self.dir.path().join(format!("avahi{i}"));
        let (svc, rundir) = (base.join("services"), base.join("run"));
        std::fs::create_dir_all(&svc).expect("avahi services dir");
        std::fs::create_dir_all(&rundir).expect("avahi run dir");
        std::fs::create_dir_all("/run/avahi-daemon").expect("/run/avahi-daemon");
        for (n, kind) in services.iter().enumerate() {
            std::fs::write(
                svc.join(format!("s{n}.service")),
                format!("<?xml version=\"1.0\" standalone='no'?>\n<!DOCTYPE service-group SYSTEM \"avahi-service.dtd\">\n<service-group><name>test {n}</name><service><type>{kind}</type><port>631</port></service></service-group>\n"),
            )
            .expect("service file");
        }
        let conf = base.join("avahi.conf");
        std::fs::write(
            &conf,
            format!("[server]\nhost-name={hostname}\ndomain-name=local\nuse-ipv4=yes\nuse-ipv6=no\nenable-dbus=no\nallow-interfaces=eth0\n[publish]\npublish-addresses=yes\npublish-workstation=no\npublish-hinfo=no\n"),
        )
        .expect("avahi.conf");
        let ns = self.hosts[i].ns.clone();
        // Its own multicast needs a route in a namespace without a default.
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "eth0",
        ]);
        let log = base.join("avahi.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/avahi/services && mount --bind "$1" /run/avahi-daemon && exec avahi-daemon -f "$2" --no-drop-root --no-chroot --no-rlimits"#)
            .args([&svc, &rundir, &conf])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("avahi log"))
            .spawn()
            .expect("avahi-daemon");
        self.helpers.push(child);
        for _ in 0..100 {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.contains("Server startup complete")
                && (services.is_empty() || said.contains("successfully established"))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "avahi-daemon on host {i} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops every program started with `spawn_ready`.
    pub fn stop_helpers(&mut self) {
        for mut c in self.helpers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(super) fn listen(&mut self, i: usize) {
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
            .args([
                "netns",
                "exec",
                &self.hosts[i].ns,
                "udhcpc",
                "-i",
                "eth0",
                "-f",
                "-t",
                "30",
                "-T",
                "1",
                "-A",
                "1",
            ])
            .arg("-s")
            .arg(script)
            // Option 12 as raw bytes: busybox would cut `hostname:` at a space.
            .args(["-x", &format!("0x0c:{}", hex(hostname.as_bytes()))])
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
            .args([
                "-n",
                &self.hosts[i].ns,
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
    }

    /// Starts a program in the scanner's namespace for as long as the LAN
    /// lives (a DHCP server), its output in `log`; its process id.
    pub fn spawn_in_scanner(
        &mut self,
        argv: &[&str],
        envs: &[(&str, &str)],
        log: &std::path::Path,
    ) -> u32 {
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
        let pid = child.id();
        self.helpers.push(child);
        pid
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
        let rule = format!("tcp dport {port} counter{verdict}");
        self.load_nft(i, "mdbwatch", COUNT_FIRST, &rule);
    }

    /// Counts UDP datagrams from the scanner (198.18.0.1) to `port`
    /// arriving at host `i` ([`Lan::udp_hits`]); the host's own multicast
    /// (an mDNS responder's announcements) is not counted.
    pub fn watch_udp(&self, i: usize, port: u16) {
        let rule = format!("ip saddr 198.18.0.1 udp dport {port} counter");
        self.load_nft(i, "mdbwatchudp", COUNT_FIRST, &rule);
    }

    /// Drops UDP datagrams to `port` at host `i` from now on, silently (no
    /// ICMP refusal): an answer lost on the way. Counted first.
    pub fn drop_udp(&self, i: usize, port: u16) {
        let rule = format!("udp dport {port} drop");
        self.load_nft(i, "mdbdropudp", DROP_AFTER, &rule);
    }

    /// Loads one input rule into its own table in host `i`'s namespace, at
    /// `priority` (a counter before a drop, so a dropped packet counts).
    fn load_nft(&self, i: usize, table: &str, priority: i32, rule: &str) {
        let rules = format!(
            "table inet {table} {{\n chain input {{\n  type filter hook input priority {priority};\n  {rule}\n }}\n}}\n"
        );
        let path = self.dir.path().join(format!("{table}-{i}.nft"));
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
        self.counter(i, "mdbwatch")
    }

    /// UDP datagrams to the watched port of host `i` so far.
    pub fn udp_hits(&self, i: usize) -> u64 {
        self.counter(i, "mdbwatchudp")
    }

    fn counter(&self, i: usize, table: &str) -> u64 {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.hosts[i].ns,
            "nft",
            "list",
            "table",
            "inet",
            table,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {text}"))
    }

    /// One HTTP/1.0 request from inside the scanner's namespace (where the
    /// fake GitHub and mdb's own ports listen): the status and the body;
    /// status 0 when nothing listens there (yet).
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
            // Nothing listening yet is status 0: callers poll.
            let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
            else {
                return (0, String::new());
            };
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

    /// One series of the metrics served at `addr` in the scanner's
    /// namespace (none while nothing listens there).
    pub fn metric_in_scanner(&self, addr: &str, series: &str) -> Option<f64> {
        let (_, text) =
            self.http_in_scanner("GET", addr.parse().expect("addr"), "/metrics", &[], "");
        crate::util::metric(&text, series)
    }
}

/// nftables priorities: a counting table's rule runs before a dropping one's.
const COUNT_FIRST: i32 = -10;
const DROP_AFTER: i32 = -5;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
