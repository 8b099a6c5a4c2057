//! Shared helpers for the integration tests: a real bare git repository to
//! push to, a real server on a loopback port, and bounded waiting.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub mod bench;
pub mod enrol_lab;
pub mod fake_github;
pub mod filer_bench;
pub mod impostor;
pub mod kube;
pub mod lan;
pub mod pki;
pub mod process;
pub mod receiver;

use git2::{Oid, Repository};
use mdb::{
    config::{self, Flags, RawConfig},
    db::Store,
    proto::machine_db_client::MachineDbClient,
    serve::metrics::Metrics,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A bare repository in a temp dir that tests commit to, as a push would.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
    pub files: BTreeMap<String, String>,
    pub head: Option<Oid>,
}

impl TestRepo {
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path().join("db.git")).expect("init bare");
        TestRepo {
            dir,
            repo,
            files: BTreeMap::new(),
            head: None,
        }
    }

    /// The demo database as the first commit.
    pub fn with_demo() -> TestRepo {
        let mut r = TestRepo::new();
        for (p, t) in mdb::demo::FILES {
            r.files.insert(p.to_string(), t.to_string());
        }
        r.commit("demo database");
        r
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("db.git")
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    pub fn write(&mut self, path: &str, text: &str) -> &mut Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }

    pub fn remove(&mut self, path: &str) -> &mut Self {
        self.files.remove(path);
        self
    }

    pub fn commit(&mut self, message: &str) -> Oid {
        let oid = mdb::demo::commit_files(&self.repo, "main", &self.files, self.head, message)
            .expect("commit");
        self.head = Some(oid);
        oid
    }

    /// Rewrites history: the branch moves to a commit whose parent is
    /// `base` (or none), as `git push --force` would.
    pub fn force_commit(&mut self, base: Option<Oid>, message: &str) -> Oid {
        let oid = mdb::demo::commit_files(&self.repo, "main", &self.files, base, message)
            .expect("commit");
        self.head = Some(oid);
        oid
    }
}

pub struct TestServer {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub store: Arc<Store>,
    pub checkout: PathBuf,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Starts a real server on 127.0.0.1 ports syncing from `url`.
/// A server on the embedded demo database, its first revision served.
pub async fn demo_server() -> (TestRepo, TestServer) {
    let repo = TestRepo::with_demo();
    let server = start_server(&repo.url(), "1s", "1h").await;
    server.wait_for_revision(repo.head.expect("head")).await;
    (repo, server)
}

pub async fn start_server(url: &str, poll: &str, resync: &str) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkout = dir.path().join("checkout");
    let flags = Flags {
        db: mdb::config::DbFlags {
            db_url: Some(url.to_string()),
            checkout: Some(checkout.clone()),
            poll_interval: Some(poll.into()),
            resync_interval: Some(resync.into()),
            ..Default::default()
        },
        grpc_listen: Some("127.0.0.1:0".into()),
        metrics_listen: Some("127.0.0.2:0".into()),
        ..Default::default()
    };
    let cfg = config::resolve(RawConfig::default(), &Default::default(), &flags).expect("config");
    let ports = mdb::app::serve::Ports::bind(&cfg).await.expect("bind");
    let (grpc, metrics_addr) = (ports.grpc_addr(), ports.metrics_addr());
    let store = Store::new();
    let shutdown = CancellationToken::new();
    let handle = {
        let store = store.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            mdb::app::serve::serve(cfg, None, ports, store, Metrics::new(), shutdown)
                .await
                .expect("server run");
        })
    };
    TestServer {
        grpc,
        metrics: metrics_addr,
        store,
        checkout,
        shutdown,
        handle,
        _dir: dir,
    }
}

impl TestServer {
    pub async fn client(&self) -> MachineDbClient<Channel> {
        MachineDbClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect")
    }

    pub async fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics").await.1
    }

    /// Waits (bounded) until the server serves `revision`.
    pub async fn wait_for_revision(&self, revision: Oid) {
        let want = revision.to_string();
        wait_until(&format!("revision {want}"), || {
            self.store.snapshot().is_some_and(|s| s.revision == want)
        })
        .await;
    }

    /// Stops the server: a server that hangs on stop, or panics, fails the
    /// test.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(30), self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the server's task failed: {e}"),
            Err(_) => panic!("the server did not stop within 30 s of its shutdown"),
        }
    }
}

impl TestServer {
    /// Serves `hosts` as a scanner's sweep would, telling watchers that
    /// `changed` changed.
    pub fn publish_hosts(
        &self,
        hosts: Vec<mdb::proto::HostHistory>,
        changed: Vec<mdb::proto::DiscoveredHost>,
    ) {
        self.store.publish_discovery(
            mdb::db::store::Discovery::of(
                hosts,
                Vec::new(),
                mdb::db::store::DiscoverySource::Scanner,
            ),
            mdb::db::store::News {
                changed,
                ..Default::default()
            },
        );
    }
}

/// Polls `cond` every 20 ms for at most 30 s; panics with `what` after that.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal HTTP/1.0 GET, so the tests need no HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    process::try_get(addr, path).await.expect("GET")
}

/// The value of a metric line, e.g. `mdb_sync_errors_total{kind="invalid"}`.
/// Polls `probe` until it gives a value, for at most `secs` seconds.
#[track_caller]
pub fn wait_for<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A tool from the test virtualenv (the directory of `MDB_PYTHON`, which
/// .ci/run sets), else from PATH.
pub fn venv_tool(name: &str) -> std::process::Command {
    let path = std::env::var("MDB_PYTHON")
        .ok()
        .and_then(|p| Path::new(&p).parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name));
    std::process::Command::new(path)
}

/// Runs a command that must succeed; its stdout.
pub fn run_ok(mut c: std::process::Command) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e} (.ci/run installs the tools the tests use)"));
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mdb")
}

pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, t).expect("write");
    }
}

/// One finished run of the `mdb` binary, with everything needed to say
/// what went wrong when an expectation fails (ripgrep's TestCommand).
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    command: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Asserts success; the run's full context otherwise.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success:{self}");
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "expected exit {code}:{self}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):{self}"))
    }
}

/// Runs `mdb` with `args` to completion.
pub fn mdb<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = std::process::Command::new(bin());
    c.args(args);
    Run::of(c)
}

impl Run {
    /// Runs a prepared command (of the `mdb` binary) to completion.
    pub fn of(mut c: std::process::Command) -> Run {
        c.stdin(std::process::Stdio::null());
        let command = format!("{c:?}");
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        }
    }
}
