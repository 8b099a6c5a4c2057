//! What each subcommand does, for `main` to dispatch to. The logic lives
//! in the library; these functions read arguments, call it and print.

use std::{collections::HashMap, process::ExitCode};

use crate::{
    cli::{args as cli, client},
    config, db, demo,
    discover::sweep as discovery,
    proto::{ListMachinesRequest, Provisioner, UseKind},
    serve as server,
    serve::metrics::Metrics,
    serve::shutdown,
};
use anyhow::Context;

pub fn validate(
    path: &std::path::Path,
    max_file: &str,
    max_repo: &str,
    format: cli::ValidateFormat,
) -> ExitCode {
    let limits = match (
        crate::units::parse_size(max_file),
        crate::units::parse_size(max_repo),
    ) {
        (Some(file_bytes), Some(repo_bytes)) => db::Limits {
            file_bytes,
            repo_bytes,
        },
        _ => {
            eprintln!("mdb: --max-file-size and --max-repo-size take sizes like 16MiB");
            return ExitCode::from(2);
        }
    };
    if !path.join("machines").is_dir() {
        eprintln!(
            "mdb: {} has no machines/ folder: give the root of a DB repository checkout",
            path.display()
        );
        return ExitCode::from(2);
    }
    let intake = match db::read_dir(path, limits) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mdb: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let read = intake.files.len();
    match intake.validate("working tree") {
        Ok(snap) => {
            println!(
                "ok: {} machines, {} clusters in {} files",
                snap.machines.len(),
                snap.cluster_names().count(),
                read
            );
            ExitCode::SUCCESS
        }
        Err(report) => {
            for p in &report.0 {
                match format {
                    cli::ValidateFormat::Text => println!("{p}"),
                    cli::ValidateFormat::Github => println!("{}", github_annotation(p)),
                }
            }
            eprintln!("mdb: {} problem(s) found", report.0.len());
            ExitCode::FAILURE
        }
    }
}

/// A problem as a GitHub Actions workflow command: the PR shows it on the line.
fn github_annotation(p: &db::Problem) -> String {
    // Workflow commands escape %, CR and LF in data, and also , and : in properties.
    let data = |s: &str| {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let title = if p.field.is_empty() {
        "mdb validate".to_string()
    } else {
        format!("mdb validate: {}", p.field)
    };
    format!(
        "::error file={},line={},col={},title={}::{}",
        prop(&p.file),
        p.line,
        p.col,
        prop(&title),
        data(&p.message)
    )
}

pub fn serve_config(a: &cli::ServeArgs) -> Result<config::Config, config::Error> {
    let raw = match &a.config {
        Some(p) => config::read_file(p)?,
        None => config::RawConfig::default(),
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = config::Flags {
        db_url: a.db_url.clone(),
        branch: a.branch.clone(),
        token_file: a.token_file.clone(),
        checkout: a.checkout.clone(),
        grpc_listen: a.grpc_listen.clone(),
        metrics_listen: a.metrics_listen.clone(),
        poll_interval: a.poll_interval.clone(),
        resync_interval: a.resync_interval.clone(),
        scan: a.scan.clone(),
        scan_interval: a.scan_interval.clone(),
        runner: a.runner.clone(),
        scanner: a.scanner.clone(),
        state_dir: a.state_dir.clone(),
    };
    config::resolve(raw, &env, &flags)
}

pub fn provision_config(a: &cli::ProvisionArgs) -> Result<crate::provision::Config, config::Error> {
    let raw = match &a.config {
        Some(p) => config::read_file(p)?,
        None => config::RawConfig::default(),
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = config::ProvisionFlags {
        server: a.server.clone(),
        state_dir: a.state_dir.clone(),
        grpc_listen: a.grpc_listen.clone(),
        metrics_listen: a.metrics_listen.clone(),
        dry_run: a.dry_run,
    };
    config::resolve_provision(raw, &env, &flags)
}

/// `mdb provisioned`: the runner's statuses as a table or JSON.
pub async fn provisioned(runner: &str, json: bool) -> anyhow::Result<()> {
    let statuses = client::list_statuses(runner).await?;
    let word = client::result_word;
    if json {
        let v: Vec<_> = statuses
            .iter()
            .map(|s| {
                serde_json::json!({
                    "target": s.target, "cluster": s.cluster, "result": word(s.result),
                    "applied_revision": s.applied_revision, "at_unix": s.at_unix,
                    "reason": s.reason, "attempts": s.attempts, "output_tail": s.output_tail,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                if s.cluster {
                    format!("cluster {}", s.target)
                } else {
                    s.target.clone()
                },
                word(s.result).to_string(),
                s.applied_revision.chars().take(12).collect(),
                s.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        client::table(&["TARGET", "RESULT", "APPLIED", "REASON"], &rows)
    );
    Ok(())
}

pub async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    let start = match cfg.scan.as_ref() {
        Some(scan) => Some(history_start(scan)?),
        None => None,
    };
    let bound = server::bind(&cfg).await?;
    let store = db::Store::new();
    let metrics = Metrics::new();
    let shutdown = shutdown::on_signal();
    let mut tasks: Vec<server::Task> = Vec::new();
    if let Some(scanner) = cfg.scanner.clone() {
        tasks.push(Box::pin(crate::discover::follow::run(
            scanner,
            store.clone(),
            shutdown.child_token(),
        )));
    }
    if let (Some(scan), Some(start)) = (cfg.scan.clone(), start) {
        let (results, receiver) = tokio::sync::watch::channel(None);
        tasks.push(Box::pin(discovery::run(
            scan,
            start,
            store.clone(),
            metrics.sweep.clone(),
            results,
            shutdown.child_token(),
        )));
        if let Some(gh) = cfg.github.clone() {
            tasks.push(Box::pin(crate::github::run(
                gh,
                store.clone(),
                metrics.github.clone(),
                receiver,
                shutdown.child_token(),
            )));
        }
    }
    bound.run(cfg, store, metrics, tasks, shutdown).await?;
    Ok(())
}

/// Opens the scanner's history store, before any port is bound: a store
/// from a newer mdb, or one another scanner holds, stops the start.
fn history_start(scan: &discovery::Config) -> anyhow::Result<discovery::Start> {
    use crate::discover::history::store;
    let Some(dir) = &scan.state_dir else {
        tracing::warn!(
            "no scan.state_dir: the sweep history lives in memory only and a restart forgets it"
        );
        return Ok(discovery::Start::empty());
    };
    let opened = store::open(dir)?;
    if let Some(aside) = &opened.set_aside {
        tracing::warn!(moved_to = %aside.display(), "the history store was unreadable; moved it aside and started an empty history");
    }
    if opened.undecodable > 0 {
        tracing::warn!(
            records = opened.undecodable,
            "history records that do not decode were skipped"
        );
    }
    tracing::info!(
        path = %opened.store.path().display(),
        hosts = opened.records.len(),
        sweeps = opened.sweeps.len(),
        recovered = opened.recovered,
        took_ms = opened.took.as_millis() as u64,
        "history store opened"
    );
    Ok(discovery::Start::from(opened))
}

pub async fn run_demo(args: cli::DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mdb-demo-{}", std::process::id()));
    let origin = dir.join("origin.git");
    demo::create_repo(&origin).context("creating the demo repository")?;
    let env = HashMap::new();
    let flags = config::Flags {
        db_url: Some(origin.display().to_string()),
        checkout: Some(dir.join("checkout")),
        grpc_listen: Some(args.grpc_listen.clone()),
        metrics_listen: Some(args.metrics_listen.clone()),
        poll_interval: Some("10s".into()),
        scan_interval: Some("30s".into()),
        state_dir: Some(dir.join("state")),
        ..Default::default()
    };
    // The demo sweeps only the loopback subnet of its own mdb.yaml.
    let raw: config::RawConfig =
        toml::from_str("[scan]\ndb_subnets = true\n").context("demo scan config")?;
    let cfg = config::resolve(raw, &env, &flags)?;
    eprintln!("mdb demo: database repository at {}", origin.display());
    eprintln!(
        "  try: mdb list --server {}   |   curl http://{}/metrics",
        args.grpc_listen, args.metrics_listen
    );
    eprintln!(
        "       grpcurl -plaintext {} mdb.v1.MachineDb/GetStats",
        args.grpc_listen
    );
    let result = serve(cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub async fn list(a: cli::ListArgs) -> anyhow::Result<()> {
    let mut c = client::connect(&a.conn.server).await?;
    let req = ListMachinesRequest {
        r#use: a.use_.map_or(UseKind::Unspecified, |u| match u {
            cli::UseArg::Cluster => UseKind::Cluster,
            cli::UseArg::Discover => UseKind::Discover,
            cli::UseArg::Development => UseKind::Development,
            cli::UseArg::Games => UseKind::Games,
            cli::UseArg::Device => UseKind::Device,
        }) as i32,
        cluster: a.cluster.unwrap_or_default(),
        provisioner: a.provisioner.map(|p| match p {
            cli::ProvisionerArg::None => Provisioner::None as i32,
            cli::ProvisionerArg::Primary => Provisioner::Primary as i32,
            cli::ProvisionerArg::Secondary => Provisioner::Secondary as i32,
        }),
        labels: a.labels,
        ..Default::default()
    };
    let (_, ms) = client::list_all(&mut c, req).await?;
    let statuses = match &a.runner {
        Some(r) => Some(client::provision_statuses(r).await?),
        None => None,
    };
    if a.json {
        let v: Vec<_> = ms
            .iter()
            .map(|m| client::with_status(client::machine_json(m), statuses.as_ref(), &m.name))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::machines_table_with(&ms, statuses.as_ref()));
    }
    Ok(())
}

pub async fn get(server: &str, key: &str, json: bool, runner: Option<&str>) -> anyhow::Result<()> {
    let mut c = client::connect(server).await?;
    let m = match client::get(&mut c, key).await {
        Ok(m) => m,
        // Not in the database: a host the sweeps found, if there is one.
        Err(client::Error::Rpc(s)) if s.code() == tonic::Code::NotFound => {
            let found = c
                .get_discovered(crate::proto::GetDiscoveredRequest {
                    key: key.to_string(),
                })
                .await;
            let Ok(h) = found.map(|r| r.into_inner()) else {
                return Err(client::Error::Rpc(s).into());
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&client::host_json(&h))?);
            } else {
                println!("not in the database; the sweeps found it:");
                println!("host         {} {} {} {}", h.key, h.ip, h.mac, h.vendor);
                print!("{}", client::presence_lines(&h));
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let statuses = match runner {
        Some(r) => Some(client::provision_statuses(r).await?),
        None => None,
    };
    if json {
        let v = client::with_status(client::machine_json(&m), statuses.as_ref(), &m.name);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::machine_detail(&m));
        let seen = c
            .get_discovered(crate::proto::GetDiscoveredRequest {
                key: format!("machine:{}", m.name),
            })
            .await
            .ok()
            .map(|r| r.into_inner());
        match seen {
            Some(h) => print!("{}", client::presence_lines(&h)),
            None => println!("discovery    not seen by the sweeps"),
        }
        if let Some(s) = statuses.as_ref().and_then(|s| s.get(&m.name)) {
            println!("{}", client::status_line(s));
        }
    }
    Ok(())
}

pub async fn stats(server: &str, json: bool) -> anyhow::Result<()> {
    let mut c = client::connect(server).await?;
    let s = client::stats(&mut c).await?;
    let mut by_use: Vec<_> = s.machines_by_use.iter().collect();
    by_use.sort();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "machines": s.machines,
                "machines_by_use": s.machines_by_use.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "clusters": s.clusters,
                "revision": s.revision,
                "loaded_unix": s.loaded_unix,
                "last_sync_unix": s.last_sync_unix,
                "last_sync_error": s.last_sync_error,
                "discovered_by_state": s.discovered_by_state.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "last_sweep_unix": s.last_sweep_unix,
                "discovery_source": s.discovery_source,
                "discovery_stale": s.discovery_stale,
            }))?
        );
        return Ok(());
    }
    let when = |t: i64| {
        if t <= 0 {
            "never".to_string()
        } else {
            format!(
                "{} ({}s ago)",
                crate::github::entry::time(t),
                (db::store::now_unix() - t).max(0)
            )
        }
    };
    println!(
        "revision    {}",
        if s.revision.is_empty() {
            "none loaded"
        } else {
            &s.revision
        }
    );
    println!("synced      {}", when(s.last_sync_unix));
    println!("loaded      {}", when(s.loaded_unix));
    if !s.last_sync_error.is_empty() {
        println!(
            "sync error  {}",
            s.last_sync_error.lines().next().unwrap_or("")
        );
    }
    println!("machines    {}", s.machines);
    for (u, n) in by_use {
        println!("  {u:<11} {n}");
    }
    println!("clusters    {}", s.clusters);
    println!(
        "last sweep  {} ({}{})",
        when(s.last_sweep_unix),
        s.discovery_source,
        if s.discovery_stale { ", stale" } else { "" }
    );
    let mut states: Vec<_> = s.discovered_by_state.iter().collect();
    states.sort();
    for (state, n) in states {
        println!("  {state:<15} {n}");
    }
    Ok(())
}

pub async fn scan_command(a: cli::ScanArgs) -> ExitCode {
    match scan(a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mdb scan: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn scan(a: cli::ScanArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    let mut targets = Vec::new();
    for t in &a.targets {
        let net: ipnetwork::IpNetwork = t
            .parse()
            .with_context(|| format!("{t:?} is not an address or CIDR"))?;
        targets.push(net);
    }
    let snap = match &a.db {
        Some(path) => Some(load_checkout(path)?),
        None => None,
    };
    let timeout = config::scan_timeout(&a.timeout).map_err(|e| anyhow::anyhow!("--timeout {e}"))?;
    anyhow::ensure!(
        a.rate != Some(0) && a.tries != Some(0),
        "--rate and --tries must be at least 1"
    );
    let cfg = discovery::Config {
        subnets: targets,
        db_subnets: false,
        interval: discovery::DEFAULT_INTERVAL,
        options: crate::discover::scan::Options {
            ports: a.ports.clone(),
            timeout,
            tries: a.tries,
            rate: a.rate,
            reverse_dns: !a.no_rdns,
            allow_large: a.allow_large,
            interface: a.interface.clone(),
            arp: !a.no_arp,
            ..Default::default()
        },
        ports: if a.no_ports {
            discovery::Ports::None
        } else {
            discovery::Ports::DatabaseAnd(a.ports.clone())
        },
        state_dir: None,
        retention: crate::discover::history::DEFAULT_RETENTION,
    };
    let bar = progress_bar(&cfg, a.json)?;
    let progress: crate::discover::scan::Progress = match bar.clone() {
        Some(b) => {
            let found = Arc::new(std::sync::atomic::AtomicU64::new(0));
            Arc::new(move |tick| match tick {
                crate::discover::scan::Tick::Sent(n) => b.inc(n),
                crate::discover::scan::Tick::Found(n) => {
                    let total = found.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                    b.set_message(format!("{total} answered"));
                }
            })
        }
        None => Arc::new(|_| {}),
    };
    let look = discovery::look(&cfg, snap.as_ref(), progress).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = &look.report;
    for w in &report.warnings {
        eprintln!("mdb scan: warning: {w}");
    }
    let hosts: Vec<crate::proto::DiscoveredHost> = look.hosts.into_iter().map(|c| c.host).collect();
    if a.report {
        print!("{}", crate::github::text::preview(&hosts, snap.as_ref()));
    } else if a.json {
        let v: Vec<_> = hosts.iter().map(client::host_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::discovered_table(&hosts, snap.is_some()));
        eprintln!(
            "{} of {} addresses answered in {:.2} s ({} ARP, {} ICMP, {} TCP probes)",
            hosts.len(),
            report.addresses,
            report.duration.as_secs_f64(),
            report.sent.arp,
            report.sent.icmp,
            report.sent.tcp
        );
    }
    // A target nothing could be sent to is a failed sweep, not "0 answered".
    Ok(if report.unroutable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress bar over every address, on a terminal only.
fn progress_bar(
    cfg: &discovery::Config,
    json: bool,
) -> anyhow::Result<Option<indicatif::ProgressBar>> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return Ok(None);
    }
    let addresses =
        crate::discover::scan::Targets::of(&cfg.subnets, cfg.options.allow_large)?.len();
    // Counts first probes sent (retries are not planned work), with the
    // answers so far and an estimate of the time left.
    let b = indicatif::ProgressBar::new(addresses as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} probed {pos}/{len} addresses, {msg} {wide_bar} {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Ok(Some(b))
}

pub async fn discovered(
    server: &str,
    state: Option<cli::StateArg>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::proto::HostState;
    let mut c = client::connect(server).await?;
    let state = state.map_or(HostState::Unspecified, |s| match s {
        cli::StateArg::Known => HostState::Known,
        cli::StateArg::Moved => HostState::Moved,
        cli::StateArg::Conflict => HostState::Conflict,
        cli::StateArg::New => HostState::New,
        cli::StateArg::Missing => HostState::Missing,
        cli::StateArg::Unprovisionable => HostState::Unprovisionable,
        cli::StateArg::Scanner => HostState::Scanner,
    });
    let answer = c
        .list_discovered(crate::proto::ListDiscoveredRequest {
            state: state as i32,
        })
        .await?
        .into_inner();
    if answer.stale {
        eprintln!(
            "mdb: stale: the server cannot reach its scanner; this is the state of {}",
            crate::github::entry::time(answer.as_of_unix)
        );
    }
    let hosts = answer.hosts;
    if json {
        let v: Vec<_> = hosts.iter().map(client::host_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", client::discovered_table(&hosts, true));
    }
    Ok(())
}

/// Simulated sweeps through the real store; prints the figures as JSON.
pub fn history_bench(
    dir: &std::path::Path,
    hosts: u32,
    sweeps: u32,
    interval: &str,
    start_unix: i64,
) -> anyhow::Result<()> {
    use crate::discover::history::simulate;
    let interval = crate::units::parse_duration(interval)
        .filter(|d| d.as_secs() > 0)
        .ok_or_else(|| anyhow::anyhow!("--interval {interval:?} is not a duration like 5m"))?;
    let plan = simulate::Plan {
        hosts,
        sweeps,
        interval,
        start_unix,
    };
    let report = simulate::run(dir, &plan)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One host's history: its addresses over time and its presence
/// transitions.
pub async fn history(server: &str, key: &str, json: bool) -> anyhow::Result<()> {
    use crate::github::entry::time;
    let mut c = client::connect(server).await?;
    let r = c
        .get_host_history(crate::proto::GetHostHistoryRequest {
            key: key.to_string(),
        })
        .await?
        .into_inner();
    let h = r.host.clone().unwrap_or_default();
    if json {
        let v = client::history_json(&r);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("host         {} {} {}", h.key, h.ip, h.machine);
    print!("{}", client::presence_lines(&h));
    let rows: Vec<Vec<String>> = r
        .addresses
        .iter()
        .map(|a| {
            vec![
                a.ip.clone(),
                a.mac.clone(),
                time(a.first_seen_unix),
                time(a.last_seen_unix),
            ]
        })
        .collect();
    print!(
        "\n{}",
        client::table(&["IP", "MAC", "FIRST SEEN", "LAST SEEN"], &rows)
    );
    let rows: Vec<Vec<String>> = r
        .transitions
        .iter()
        .rev()
        .map(|t| {
            vec![
                time(t.at_unix),
                db::words::presence_name(t.presence).to_string(),
                t.ip.clone(),
            ]
        })
        .collect();
    print!("\n{}", client::table(&["AT", "WENT", "IP"], &rows));
    Ok(())
}

/// A checkout on disk, validated as the server would validate it.
fn load_checkout(path: &std::path::Path) -> anyhow::Result<db::Snapshot> {
    db::read_dir(path, db::Limits::default())
        .with_context(|| format!("reading {}", path.display()))?
        .validate("working tree")
        .map_err(|report| {
            anyhow::anyhow!("the database at {} is invalid: {report}", path.display())
        })
}

/// The database from a checkout (validated) or from a server.
async fn snapshot(source: &cli::Source) -> anyhow::Result<db::Snapshot> {
    if let Some(path) = &source.db {
        return load_checkout(path);
    }
    let mut c = client::connect(&source.server).await?;
    let (revision, machines) = client::list_all(
        &mut c,
        ListMachinesRequest {
            page_size: 10_000,
            ..Default::default()
        },
    )
    .await?;
    Ok(db::Snapshot::new(
        revision,
        machines,
        db::Settings::default(),
    ))
}

pub async fn inventory(
    source: &cli::Source,
    host: Option<&str>,
    format: cli::InventoryFormat,
    runner: Option<&str>,
) -> anyhow::Result<()> {
    let mut snap = snapshot(source).await?;
    if let Some(r) = runner {
        let statuses = client::provision_statuses(r).await?;
        snap = client::label_statuses(snap, &statuses);
    }
    match (host, format) {
        (Some(h), _) => println!(
            "{}",
            serde_json::to_string_pretty(&crate::export::inventory::host(&snap, h))?
        ),
        (None, cli::InventoryFormat::Json) => {
            println!(
                "{}",
                serde_json::to_string(&crate::export::inventory::list(&snap))?
            )
        }
        (None, cli::InventoryFormat::Yaml) => {
            print!("{}", crate::export::inventory::static_yaml(&snap))
        }
    }
    Ok(())
}

pub async fn cluster(
    name: &str,
    source: &cli::Source,
    format: cli::ClusterFormat,
) -> anyhow::Result<()> {
    let snap = snapshot(source).await?;
    let missing = || anyhow::anyhow!("no cluster {name:?}");
    match format {
        cli::ClusterFormat::K3s => {
            print!(
                "{}",
                crate::export::inventory::k3s(&snap, name).ok_or_else(missing)?
            )
        }
        cli::ClusterFormat::Kubespray => print!(
            "{}",
            crate::export::inventory::kubespray(&snap, name).ok_or_else(missing)?
        ),
        cli::ClusterFormat::Json => {
            let c = snap.cluster_view(name).ok_or_else(missing)?;
            let v = serde_json::json!({
                "name": c.name,
                "control_plane": c.control_plane.iter().map(client::machine_json).collect::<Vec<_>>(),
                "workers": c.workers.iter().map(client::machine_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        cli::ClusterFormat::Table => {
            let c = snap.cluster_view(name).ok_or_else(missing)?;
            let rows: Vec<Vec<String>> = c
                .control_plane
                .iter()
                .map(|m| ("control-plane", m))
                .chain(c.workers.iter().map(|m| ("worker", m)))
                .map(|(role, m)| {
                    vec![
                        role.to_string(),
                        m.name.clone(),
                        m.ips.join(","),
                        m.mac.clone(),
                    ]
                })
                .collect();
            print!("{}", client::table(&["ROLE", "NAME", "IP", "MAC"], &rows));
        }
    }
    Ok(())
}

pub async fn ip_next(subnet: &str, source: &cli::Source) -> anyhow::Result<()> {
    if source.db.is_some() {
        let snap = snapshot(source).await?;
        let s = snap
            .settings
            .subnet(subnet)
            .ok_or_else(|| anyhow::anyhow!("no subnet {subnet:?} in mdb.yaml"))?;
        let ip = crate::export::ipam::next_free(s, &snap, &Default::default())
            .ok_or_else(|| anyhow::anyhow!("subnet {} has no free static address", s.name))?;
        println!("{ip}");
        return Ok(());
    }
    let mut c = client::connect(&source.server).await?;
    let r = c
        .suggest_address(crate::proto::SuggestAddressRequest {
            subnet: subnet.to_string(),
        })
        .await?
        .into_inner();
    println!("{}", r.ip);
    Ok(())
}

pub async fn dhcp(source: &cli::Source, format: cli::DhcpFormat) -> anyhow::Result<()> {
    let snap = snapshot(source).await?;
    let f = match format {
        cli::DhcpFormat::Dnsmasq => crate::export::dhcp::Format::Dnsmasq,
        cli::DhcpFormat::Isc => crate::export::dhcp::Format::Isc,
        cli::DhcpFormat::Kea => crate::export::dhcp::Format::Kea,
    };
    print!("{}", crate::export::dhcp::render(&snap, f));
    Ok(())
}
