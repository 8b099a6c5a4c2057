//! A real test LAN built from network namespaces: one scanner namespace
//! holding a bridge, and one namespace per host joined to it by a veth
//! pair. Addresses come from 198.18.0.0/15 only. Everything is torn down
//! on drop, also when the test fails. Needs root; panics loudly without it.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

mod ipv6;
mod services;

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
    /// No IPv4 at all (`ip` is empty): IPv6 only, from the prefix
    /// [`Lan::announce_prefix`] announces.
    pub ipv6_only: bool,
    /// Privacy addresses (`use_tempaddr=2`) that rotate within seconds.
    pub privacy: bool,
}

impl HostSpec {
    /// A plain host: an address and a MAC, nothing else running.
    pub fn at(ip: &'static str, mac: &'static str) -> HostSpec {
        HostSpec {
            ip,
            mac,
            ..Default::default()
        }
    }
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
        for h in hosts.iter().filter(|h| !h.dhcp && !h.ipv6_only) {
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
            .filter(|(_, h)| !h.dhcp && !h.ipv6_only)
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
            if spec.privacy {
                ipv6::privacy(&ns);
            }
            if !spec.dhcp && !spec.ipv6_only {
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

    /// A LAN of plain hosts (`HostSpec::at`), the i-th IP with the i-th MAC.
    pub fn plain(ips: &[&'static str], macs: &[&'static str]) -> Lan {
        assert_eq!(ips.len(), macs.len());
        let hosts: Vec<HostSpec> = ips
            .iter()
            .zip(macs)
            .map(|(ip, mac)| HostSpec::at(ip, mac))
            .collect();
        Lan::new(&hosts)
    }

    /// `ip -n SCANNER ARGS`, which must succeed: its output.
    pub fn ip_in_scanner(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.scanner])
            .args(args)
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `mdb scan 198.18.0.0/24 --json ARGS` in the scanner namespace, by IP.
    pub fn scan_json(&self, extra: &[&str]) -> BTreeMap<String, Value> {
        let mut args = vec!["scan", "198.18.0.0/24", "--json"];
        args.extend_from_slice(extra);
        let out = self.mdb(&args);
        assert!(
            out.status.success(),
            "mdb scan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
        v.into_iter()
            .map(|h| (h["ip"].as_str().unwrap_or_default().to_string(), h))
            .collect()
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
        self.listen_in_scanner_at("127.0.0.1:0")
    }

    /// [`Lan::listen_in_scanner`] at `addr` (the scanner's own
    /// 198.18.0.1, say: an address that is not loopback).
    pub fn listen_in_scanner_at(&self, addr: &'static str) -> std::net::TcpListener {
        let ns = PathBuf::from("/var/run/netns").join(&self.scanner);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("netns file");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpListener::bind(addr).expect("bind in scanner namespace")
        })
        .join()
        .expect("setns thread")
    }

    /// Runs `f` on a Tokio runtime in a thread inside the scanner
    /// namespace: a socket belongs to the namespace of the thread that
    /// makes it (a gRPC client of a server bound to the scanner's
    /// loopback, say).
    pub fn run_in_scanner<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = PathBuf::from("/var/run/netns").join(&self.scanner);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&ns).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f())
        })
    }

    /// Stops every mdb started with `spawn_mdb`.
    pub fn stop_mdb(&mut self) {
        for mut c in self.extra.drain(..) {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// `mdb discovered --json` of the server at `server`, by IP (empty
    /// while it does not answer).
    pub fn discovered(&self, server: &str) -> std::collections::HashMap<String, serde_json::Value> {
        let out = self.mdb(&["discovered", "--json", "--server", server]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.as_array()
            .into_iter()
            .flatten()
            .map(|h| (h["ip"].as_str().unwrap_or_default().to_string(), h.clone()))
            .collect()
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
