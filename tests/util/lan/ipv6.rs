//! IPv6 on the test LAN: the scanner's bridge holds 2001:db8:1::1/64 (a
//! documentation prefix that never leaves the namespaces) and Debian's
//! `radvd` announces it, so hosts take SLAAC addresses; privacy hosts
//! rotate temporary addresses within seconds.

use std::process::{Command, Stdio};

use super::{ip, run, Lan};

pub const PREFIX: &str = "2001:db8:1::/64";
pub const SCANNER_IP6: &str = "2001:db8:1::1";

/// `use_tempaddr=2` with lifetimes of seconds: a new temporary address
/// every ~10 s, each valid for 40 s.
pub(super) fn privacy(ns: &str) {
    for (k, v) in [
        ("use_tempaddr", "2"),
        ("temp_prefered_lft", "12"),
        ("temp_valid_lft", "40"),
        ("max_desync_factor", "2"),
        ("regen_max_retry", "3"),
    ] {
        run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.eth0.{k}={v}"),
        ]);
    }
}

impl Lan {
    /// Gives the bridge the prefix's first address and starts `radvd`
    /// announcing it every few seconds; returns once every host holds a usable
    /// global address.
    pub fn announce_prefix(&mut self) {
        ip(&[
            "-n",
            &self.scanner,
            "addr",
            "add",
            &format!("{SCANNER_IP6}/64"),
            "dev",
            "br0",
            "nodad",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &self.scanner,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        let conf = self.dir().join("radvd.conf");
        std::fs::write(
            &conf,
            format!("interface br0 {{ AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 6; prefix {PREFIX} {{ AdvOnLink on; AdvAutonomous on; }}; }};\n"),
        )
        .expect("radvd.conf");
        let pid = self.dir().join("radvd.pid");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.scanner,
                "radvd",
                "-n",
                "-m",
                "stderr",
            ])
            .arg("-C")
            .arg(&conf)
            .arg("-p")
            .arg(&pid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("radvd (Debian package radvd; .ci/run installs it)");
        self.extra.push(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for i in 0..self.hosts.len() {
            while self.global6(i).is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "host {i} took no address from radvd within 30 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }

    /// Host `i`'s usable global IPv6 addresses (DAD done), as it holds them.
    pub fn global6(&self, i: usize) -> Vec<String> {
        let out = run(&[
            "ip",
            "-n",
            &self.hosts[i].ns,
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
            "scope",
            "global",
            "-tentative",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|a| a.split('/').next())
            .map(String::from)
            .collect()
    }

    /// What a person would do by hand in the scanner: `ping -6 ff02::1%br0`
    /// then `ip -6 neigh`: every (address, MAC) the kernel then holds.
    pub fn ping_all_nodes_and_neigh(&self) -> Vec<(String, String)> {
        for from in ["br0", SCANNER_IP6] {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.scanner, "ping", "-6", "-c", "2"])
                .args(["-i", "0.2", "-w", "2", "-I", from, "ff02::1%br0"])
                .stdout(Stdio::null())
                .status()
                .expect("ping (Debian package iputils-ping; .ci/run installs it)");
            assert!(ok.success(), "ping -6 -I {from} ff02::1%br0 had no answer");
        }
        let out = run(&[
            "ip",
            "-n",
            &self.scanner,
            "-6",
            "neigh",
            "show",
            "dev",
            "br0",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let mac = w
                    .iter()
                    .position(|x| *x == "lladdr")
                    .and_then(|p| w.get(p + 1))?;
                Some((w.first()?.to_string(), mac.to_string()))
            })
            .collect()
    }

    /// Runs a script of tests/py in host `i`'s namespace, in the background.
    pub fn spawn_py_in_host(&mut self, i: usize, script: &str, args: &[&str]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/py")
            .join(script);
        let python = std::env::var("MDB_PYTHON").unwrap_or_else(|_| "python3".into());
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns, &python])
            .arg(path)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start a test script");
        self.helpers.push(child);
    }
}
