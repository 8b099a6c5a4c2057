//! A real `mdb serve` process on loopback ports, for what only a process
//! shows: peak memory, time to exit, exit codes, the log it writes.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use mdb::proto::machine_db_client::MachineDbClient;
use tonic::transport::Channel;

use super::{bin, http_get};

/// A child process killed (and reaped) when the test ends, also when it
/// fails: no test leaves a process behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Processes in group `pgid` now, zombies aside.
pub fn group_members(pgid: i32) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| stat.rsplit_once(')').map(|(_, after)| after.to_string()))
        .filter(|after| {
            let f: Vec<&str> = after.split_whitespace().collect();
            f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .count()
}

/// The gRPC and metrics addresses `mdb serve` logs once it has bound them
/// (text or JSON logs); waits at most 30 s.
fn bound_addresses(child: &mut Child, log: &Path) -> (SocketAddr, SocketAddr) {
    let after = |text: &str, key: &str| -> Option<SocketAddr> {
        let rest = &text[text.find(key)? + key.len()..];
        let start = rest.find("127.0.0.1:")?;
        let addr: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        addr.parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("mdb serving")) {
            if let (Some(g), Some(m)) = (after(line, "grpc"), after(line, "metrics")) {
                return (g, m);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("mdb serve exited with {status} before serving:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "mdb serve did not bind in 30 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port free at the time of asking (another process may take
/// it before it is used: only for ports nobody needs to win).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct ServeProcess {
    pub child: Child,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    log: PathBuf,
}

impl ServeProcess {
    /// `mdb serve` with `args`, logging into `dir/serve-N.log`. The ports
    /// are the kernel's choice (port 0), read back from the "mdb serving"
    /// line: no other test can take them in between.
    pub fn start(dir: &Path, args: &[&str]) -> ServeProcess {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        ServeProcess::launch(dir, &all)
    }

    /// `mdb demo`, as the README's first command runs it (on port 0).
    pub fn demo(dir: &Path) -> ServeProcess {
        ServeProcess::launch(dir, &["demo"])
    }

    fn launch(dir: &Path, args: &[&str]) -> ServeProcess {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = dir.join(format!("serve-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(bin())
            .args(args)
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("MDB_LOG", "info,mdb=debug")
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn mdb");
        let (grpc, metrics) = bound_addresses(&mut child, &log);
        ServeProcess {
            child,
            grpc,
            metrics,
            log,
        }
    }

    /// `mdb serve` syncing `url` into `dir/checkout`, with `extra` flags.
    pub fn for_repo(dir: &Path, url: &str, extra: &[&str]) -> ServeProcess {
        let checkout = dir.join("checkout");
        let mut args = vec!["--db-url", url, "--checkout"];
        let checkout = checkout.to_str().expect("utf-8 path").to_string();
        args.push(&checkout);
        args.extend_from_slice(extra);
        ServeProcess::start(dir, &args)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (at most 30 s) until `/readyz` says a revision is served.
    pub async fn wait_ready(&mut self) -> Duration {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mdb serve exited with {status}:\n{}", self.logs());
            }
            if let Ok(Ok((200, _))) =
                tokio::time::timeout(Duration::from_secs(2), try_get(self.metrics, "/readyz")).await
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not ready after 30 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 30 s) until the process listens on its metrics port.
    pub async fn wait_listening(&mut self) {
        let started = Instant::now();
        while tokio::net::TcpStream::connect(self.metrics).await.is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mdb serve exited with {status}:\n{}", self.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> MachineDbClient<Channel> {
        MachineDbClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect to mdb serve")
    }

    pub async fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics").await.1
    }

    /// `GetStats`, which must answer.
    pub async fn stats(&self) -> mdb::proto::Stats {
        self.client()
            .await
            .get_stats(mdb::proto::GetStatsRequest::default())
            .await
            .expect("GetStats")
            .into_inner()
    }

    /// The memory the process holds now (VmRSS), in MiB.
    pub fn rss_mib(&self) -> f64 {
        proc_status_kib(self.pid(), "VmRSS:") as f64 / 1024.0
    }

    /// The most memory the process has held (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        proc_status_kib(self.pid(), "VmHWM:") as f64 / 1024.0
    }

    /// Open file descriptors of the process now. An unreadable `/proc` is
    /// a failed test, never a zero that passes a bound.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap_or_else(|e| panic!("cannot count the fds of {}: {e}", self.pid()))
            .count()
    }

    /// SIGTERM, then waits (at most 60 s): how long exit took, and how.
    pub fn terminate(&mut self) -> (Duration, ExitStatus) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (started.elapsed(), status);
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("mdb serve ignored SIGTERM for 60 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of /proc/PID/status; a failed test when it cannot be read.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A GET that reports a refused or dropped connection instead of panicking.
pub async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    try_get_with(addr, path, &[]).await
}

/// [`try_get`] with request headers.
pub async fn try_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A GET with request headers, which must connect.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    try_get_with(addr, path, headers).await.expect("GET")
}
