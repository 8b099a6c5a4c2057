//! Foundation benchmark: a generated 100,000-machine DB repository.
//! Reports load+validate time, RSS after load, and GetMachine /
//! ListMachines(filter) latency percentiles over loopback gRPC under
//! concurrent load. Every loop is bounded in count.
//!
//! Then 64 concurrent clients against a server in this process that
//! serves 5,000 discovered hosts: client-observed p50/p99 and throughput
//! of GetMachine and ListDiscovered, and the server's own handling-time
//! p99 from `mdb_grpc_request_duration_seconds`; and GetMachine paced
//! (each client a call every 20 ms, then every 5 ms), a call held up by
//! the one before counted from when it was due.
//!
//! Last, the cost of authentication: GetMachine with 64 clients against a
//! server without tokens and one with a read token, in one run.
//!
//! Run: cargo bench --bench db   (MDB_BENCH_MACHINES to change the size)

use std::time::{Duration, Instant};

use mdb::proto::{
    machine_db_client::MachineDbClient, GetMachineRequest, GetStatsRequest, ListMachinesRequest,
    UseKind,
};

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    format!(
        "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  (n={})",
        p(0.5),
        p(0.9),
        p(0.99),
        v.len()
    )
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("MDB_BENCH_MACHINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let files = mdb::gen::database(n, 1000);
    let sources = mdb::gen::source_files(&files);
    let bytes: usize = sources.iter().map(|f| f.text.len()).sum();

    let me = std::process::id();
    let rss0 = rss_mb(me);
    let t = Instant::now();
    let snap = mdb::db::validate(&sources, "bench").expect("generated DB is valid");
    let load = t.elapsed();
    println!(
        "machines            {n} in {} files ({:.1} MB of YAML)",
        files.len(),
        bytes as f64 / 1e6
    );
    println!("load+validate       {:.3} s", load.as_secs_f64());
    println!(
        "RSS after load      {:.0} MB (bench process; {:.0} MB before)",
        rss_mb(me),
        rss0
    );
    drop(snap);
    drop(sources);

    // The real path: a bare git repo over file://, synced by the server.
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = git2::Repository::init_bare(dir.path().join("db.git")).expect("init");
    let head = mdb::demo::commit_files(&repo, "main", &files, None, "bench").expect("commit");
    drop(files);
    // The server is its own process, so its RSS is its own.
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
    };
    let (addr, maddr) = (free_port(), free_port());
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mdb"))
        .args(["serve", "--poll-interval", "1h"])
        .arg("--db-url")
        .arg(format!("file://{}", dir.path().join("db.git").display()))
        .arg("--checkout")
        .arg(dir.path().join("checkout"))
        .args([
            "--grpc-listen",
            &addr.to_string(),
            "--metrics-listen",
            &maddr.to_string(),
        ])
        .env("MDB_LOG", "warn")
        .spawn()
        .expect("start mdb serve");
    let mut client = loop {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "server did not start"
        );
        if let Ok(c) = MachineDbClient::connect(format!("http://{addr}")).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "server did not load the DB"
        );
        if let Ok(s) = client.get_stats(GetStatsRequest {}).await {
            if s.get_ref().revision == head.to_string() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "clone+checkout+load {:.3} s (server start to first revision served)",
        t.elapsed().as_secs_f64()
    );
    println!(
        "server RSS at load  {:.0} MB (peak of the first load)",
        rss_mb(child.id())
    );
    // After the load the server returns the parse's memory; let it settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("server RSS serving  {:.0} MB (settled)", rss_mb(child.id()));

    // One client, one request at a time: the server's own cost per call,
    // without 16 clients and the server sharing two cores.
    let mut lat = Vec::with_capacity(5000);
    for i in 0..5000usize {
        let key = format!("m{:06}", (i * 104_729) % n);
        let t = Instant::now();
        client
            .get_machine(GetMachineRequest { key })
            .await
            .expect("get");
        lat.push(t.elapsed());
    }
    println!("GetMachine, 1 client  {}", percentiles(lat));

    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 2000;
    let run = |list: bool| async move {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            tasks.push(tokio::spawn(async move {
                let mut client = MachineDbClient::connect(format!("http://{addr}"))
                    .await
                    .expect("connect");
                let per = if list { PER_CLIENT / 10 } else { PER_CLIENT };
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let k = (c * 7919 + i * 104_729) % n;
                    let t = Instant::now();
                    if list {
                        let req = ListMachinesRequest {
                            r#use: UseKind::Cluster as i32,
                            cluster: format!("c{}", k / 20),
                            page_size: 100,
                            ..Default::default()
                        };
                        let r = client.list_machines(req).await.expect("list").into_inner();
                        assert!(!r.machines.is_empty());
                    } else {
                        client
                            .get_machine(GetMachineRequest {
                                key: format!("m{k:06}"),
                            })
                            .await
                            .expect("get");
                    }
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let t = Instant::now();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("client"));
        }
        (all, t.elapsed())
    };
    let (lat, wall) = run(false).await;
    println!(
        "GetMachine, {CLIENTS} clients {}  {:.0} req/s",
        percentiles(lat.clone()),
        lat.len() as f64 / wall.as_secs_f64()
    );
    let (lat, wall) = run(true).await;
    println!(
        "ListMachines(cluster filter, page 100, of {n}) {}  {:.0} req/s",
        percentiles(lat.clone()),
        lat.len() as f64 / wall.as_secs_f64()
    );

    println!("server RSS after    {:.0} MB", rss_mb(child.id()));

    // `mdb inventory --list` as Ansible runs it, on 10,000 machines: from a
    // checkout (read + validate + render) and from the server above.
    let inv_dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in mdb::gen::database(10_000, 1000) {
        let p = inv_dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    let time_inventory = |args: Vec<String>| {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdb"))
                .args(&args)
                .output()
                .expect("inventory");
            assert!(out.status.success());
            best = best.min(t.elapsed());
        }
        best
    };
    let local = time_inventory(vec![
        "inventory".into(),
        "--list".into(),
        "--db".into(),
        inv_dir.path().display().to_string(),
    ]);
    println!("inventory --list    {:.3} s for 10,000 machines from a checkout (best of 5, whole process)", local.as_secs_f64());
    let remote = time_inventory(vec![
        "inventory".into(),
        "--list".into(),
        "--server".into(),
        addr.to_string(),
    ]);
    println!(
        "inventory --list    {:.3} s for {n} machines from the server (best of 5, whole process)",
        remote.as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
    campus_clients(&repo_url(&dir)).await;
    auth_cost(&repo_url(&dir)).await;
}

/// The bare repository of the run above, for the in-process server.
fn repo_url(dir: &tempfile::TempDir) -> String {
    format!("file://{}", dir.path().join("db.git").display())
}

const CAMPUS_HOSTS: u32 = 5000;
const CAMPUS_CLIENTS: usize = 64;

/// 5,000 hosts as a campus scanner publishes them.
fn campus() -> Vec<mdb::proto::HostHistory> {
    use mdb::proto::{DiscoveredHost, HostHistory, HostState, Presence};
    (0..CAMPUS_HOSTS)
        .map(|i| {
            let ip =
                std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 10)) + i);
            let mac = format!("dc:a6:32:00:{:02x}:{:02x}", i >> 8, i & 255);
            HostHistory {
                host: Some(DiscoveredHost {
                    ip: ip.to_string(),
                    key: format!("mac:{mac}"),
                    mac,
                    vendor: "Raspberry Pi Trading Ltd".into(),
                    state: HostState::New as i32,
                    presence: Presence::Up as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// The server's p99 for `method` from its histogram's buckets (the upper
/// bound of the bucket holding the 99th percentile, as Prometheus reads it).
fn server_p99(metrics: &str, method: &str) -> String {
    let prefix = format!("mdb_grpc_request_duration_seconds_bucket{{method=\"{method}\",le=\"");
    let buckets: Vec<(String, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.to_string(), count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let at = buckets
        .iter()
        .find(|(_, c)| *c >= total * 0.99)
        .map_or("?".to_string(), |(le, _)| le.clone());
    format!("server p99 <= {at} s (n={total})")
}

/// A server in this process on loopback ports, loaded.
struct InProcess {
    addr: std::net::SocketAddr,
    store: std::sync::Arc<mdb::db::Store>,
    metrics: std::sync::Arc<mdb::serve::metrics::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn in_process(url: &str, raw: mdb::config::RawConfig, dir: &std::path::Path) -> InProcess {
    use mdb::config::{self, Flags};
    let flags = Flags {
        db: config::DbFlags {
            db_url: Some(url.to_string()),
            checkout: Some(dir.join("checkout")),
            poll_interval: Some("1h".into()),
            ..Default::default()
        },
        grpc_listen: Some("127.0.0.1:0".into()),
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let cfg = config::resolve(raw, &Default::default(), &flags).expect("config");
    let ports = mdb::app::serve::Ports::bind(&cfg).await.expect("bind");
    let addr = ports.grpc_addr();
    let store = mdb::db::Store::new();
    let metrics = mdb::serve::metrics::Metrics::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = {
        let (store, metrics, shutdown) = (store.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            mdb::app::serve::serve(cfg, None, ports, store, metrics, shutdown).await
        })
    };
    let t = Instant::now();
    while store.snapshot().is_none() {
        assert!(t.elapsed() < Duration::from_secs(300), "no revision loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    InProcess {
        addr,
        store,
        metrics,
        shutdown,
        task,
    }
}

impl InProcess {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// A client of `addr` that shows `token` on every call, when there is one.
async fn client_with(
    addr: std::net::SocketAddr,
    token: Option<&str>,
) -> MachineDbClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor + Clone,
    >,
> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        token.map(|t| format!("Bearer {t}").parse().expect("ascii"));
    MachineDbClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(v) = &value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    })
}

/// `clients` concurrent clients calling GetMachine `per` times each; every
/// latency, and the wall time.
async fn get_machines(
    addr: std::net::SocketAddr,
    token: Option<&'static str>,
    n: usize,
    clients: usize,
    per: usize,
) -> (Vec<Duration>, Duration) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut client = client_with(addr, token).await;
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let key = format!("m{:06}", (c * 7919 + i * 104_729) % n.max(1));
                let t = Instant::now();
                client
                    .get_machine(GetMachineRequest { key })
                    .await
                    .expect("get");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let t = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    (all, t.elapsed())
}

/// GetMachine as clients that are not racing each other call it: each of
/// `clients` sends one call every `every_ms`, `per` times, starts spread
/// over one period. A call held up by the one before it counts from when
/// it was due, so a server that falls behind is charged for the queue (no
/// coordinated omission).
async fn paced_get_machines(
    addr: std::net::SocketAddr,
    n: usize,
    clients: usize,
    per: usize,
    every_ms: u64,
) -> (Vec<Duration>, Duration) {
    let every = Duration::from_millis(every_ms);
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut client = client_with(addr, None).await;
            let first = start + every * c as u32 / clients as u32;
            let mut lat = Vec::with_capacity(per);
            let mut previous_end = tokio::time::Instant::now();
            for i in 0..per {
                let due = first + every * i as u32;
                tokio::time::sleep_until(due).await;
                // The timer wakes up to a millisecond late: that is the
                // client's, not the server's. A call delayed by the one
                // before it counts from when it was due.
                let from = if previous_end > due {
                    due
                } else {
                    tokio::time::Instant::now()
                };
                let key = format!("m{:06}", (c * 7919 + i * 104_729) % n.max(1));
                client
                    .get_machine(GetMachineRequest { key })
                    .await
                    .expect("get");
                previous_end = tokio::time::Instant::now();
                lat.push(previous_end - from);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    (all, start.elapsed())
}

/// What a token costs: GetMachine with 64 clients against a server without
/// tokens and one that checks a read token on every call, in one run.
async fn auth_cost(url: &str) {
    const TOKEN: &str = "bench-read-token-0123456789abcdef";
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("read");
    std::fs::write(&token_file, TOKEN).expect("token file");
    println!();
    println!(
        "authentication cost: GetMachine, {CAMPUS_CLIENTS} clients x 500 (server in this process)"
    );
    for tokens in [false, true] {
        let raw: mdb::config::RawConfig = if tokens {
            toml::from_str(&format!(
                "[server.tokens]\nread = \"{}\"\n",
                token_file.display()
            ))
            .expect("raw config")
        } else {
            Default::default()
        };
        let sub = dir.path().join(if tokens { "on" } else { "off" });
        let server = in_process(url, raw, &sub).await;
        let n = server.store.snapshot().map_or(0, |s| s.machines.len());
        let token = tokens.then_some(TOKEN);
        let (lat, wall) = get_machines(server.addr, token, n, CAMPUS_CLIENTS, 500).await;
        println!(
            "tokens {:<3}          {}  {:.0} req/s  {}",
            if tokens { "on" } else { "off" },
            percentiles(lat.clone()),
            lat.len() as f64 / wall.as_secs_f64(),
            server_p99(&server.metrics.render(), "GetMachine")
        );
        server.stop().await;
    }
}

async fn campus_clients(url: &str) {
    use mdb::db::store::{Discovery, DiscoverySource, News};
    use mdb::proto::ListDiscoveredRequest;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = in_process(url, Default::default(), dir.path()).await;
    let (addr, store, metrics) = (server.addr, server.store.clone(), server.metrics.clone());
    let n = store.snapshot().map_or(0, |s| s.machines.len());
    store.publish_discovery(
        Discovery::of(campus(), Vec::new(), DiscoverySource::Scanner),
        News::default(),
    );
    println!();
    println!("{CAMPUS_CLIENTS} concurrent clients, {n} machines, {CAMPUS_HOSTS} discovered hosts (server in this process)");
    let (lat, wall) = get_machines(addr, None, n, CAMPUS_CLIENTS, 500).await;
    println!(
        "GetMachine      {}  {:.0} req/s  {}",
        percentiles(lat.clone()),
        lat.len() as f64 / wall.as_secs_f64(),
        server_p99(&metrics.render(), "GetMachine")
    );
    for every_ms in [20u64, 5] {
        let (lat, wall) = paced_get_machines(addr, n, CAMPUS_CLIENTS, 250, every_ms).await;
        println!(
            "GetMachine paced, each client every {every_ms} ms: {}  {:.0} req/s",
            percentiles(lat.clone()),
            lat.len() as f64 / wall.as_secs_f64(),
        );
    }
    let mut tasks = Vec::new();
    for _ in 0..CAMPUS_CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut client = client_with(addr, None).await;
            let mut lat = Vec::with_capacity(20);
            for _ in 0..20 {
                let t = Instant::now();
                let r = client
                    .list_discovered(ListDiscoveredRequest::default())
                    .await
                    .expect("list")
                    .into_inner();
                assert_eq!(r.hosts.len(), CAMPUS_HOSTS as usize);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let t = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    println!(
        "ListDiscovered  {}  {:.0} req/s  {}",
        percentiles(all.clone()),
        all.len() as f64 / t.elapsed().as_secs_f64(),
        server_p99(&metrics.render(), "ListDiscovered")
    );
    server.stop().await;
}
