//! `mdb serve`, wired in one place. Its ports are bound first; then:
//!
//! ```text
//! DB repo --sync--> Store --> gRPC api, /metrics, the page, Watch
//! scanners of other segments --mirror--> Mirrors (merged view)
//! sweep --> classify --> history --> view (Store, or Mirrors when merged)
//!                                 |-> results --> filer (issues, pull requests) --announce--+
//!                                 '-> the Store's news -----------> notify (sinks) <--------'
//! ```
//!
//! Every stage gets its handles here (the store, the results channel, the
//! announcer); none reaches for a global.

use std::sync::Arc;

use super::shell::{self, Shell};
use crate::{
    db::Store,
    discover::{self, sweep},
    serve::{self, metrics::Metrics, Config},
};

/// Runs `mdb serve` until SIGTERM, then drains within the grace.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let start = match cfg.scan.as_ref() {
        Some(scan) => Some(history_start(scan)?),
        None => None,
    };
    let ports = Ports::bind(&cfg).await?;
    let shutdown = super::shutdown::on_signal();
    serve(cfg, start, ports, Store::new(), Metrics::new(), shutdown).await
}

/// The ports of `mdb serve`, bound before anything starts.
pub struct Ports {
    grpc: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
}

impl Ports {
    pub async fn bind(cfg: &Config) -> Result<Ports, shell::Error> {
        Ok(Ports {
            grpc: shell::bind(cfg.grpc_listen).await?,
            http: shell::bind(cfg.metrics_listen).await?,
        })
    }

    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.grpc
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }
}

/// Serves on `ports` until `shutdown`, then drains within the grace. The
/// sweep pipeline runs when `cfg` has `[scan]` and its history was opened
/// (`start`).
pub async fn serve(
    cfg: Config,
    start: Option<sweep::Start>,
    ports: Ports,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let shell = Shell::new(shutdown, cfg.shutdown_grace);
    if cfg.github.is_some() {
        store.set_files_github();
    }
    crate::sync::set_git_timeouts(std::time::Duration::from_secs(10), cfg.source.fetch_timeout);
    shell.spawn(crate::sync::run(
        crate::sync::Checkout::new(cfg.source.clone()),
        cfg.timing,
        store.clone(),
        metrics.sync.clone(),
        shell.shutdown.child_token(),
    ));
    let mirrors = discover::mirrors::Mirrors::new(
        store.clone(),
        &cfg.scanners,
        cfg.mirror_cache.clone(),
        cfg.mirror_refresh,
    );
    for scanner in cfg.scanners.clone() {
        shell.spawn(discover::mirroring::run(
            scanner,
            cfg.scanner_creds.clone(),
            mirrors.clone(),
            shell.shutdown.child_token(),
        ));
    }
    if let (Some(scan), Some(start)) = (cfg.scan.clone(), start) {
        discovery(&shell, &cfg, scan, start, &store, &metrics, mirrors);
    }
    let (grpc_addr, metrics_addr) = (ports.grpc_addr(), ports.metrics_addr());
    if cfg.auth.is_open() {
        crate::auth::warn_open("mdb serve");
    }
    let guard = crate::auth::web::Guard::new(
        cfg.auth.login.clone(),
        cfg.auth.tokens.clone(),
        metrics.registry(),
    );
    let routes = serve::metrics::router(metrics.clone(), store.clone()).merge(serve::web::router(
        store.clone(),
        &cfg.source.url,
        cfg.runner.clone(),
    ));
    shell.serve_http(ports.http, shell::guarded(routes, guard));
    let auth = crate::auth::grpc::AuthLayer::new(
        cfg.auth.tokens.clone(),
        cfg.auth.client_certs,
        crate::auth::grpc::Refused::register(metrics.registry()),
    );
    let grpc = serve::grpc(
        ports.grpc,
        store.clone(),
        metrics.grpc.clone(),
        auth,
        cfg.auth.tls.clone(),
        shell.shutdown.clone(),
    )
    .await?;
    shell.spawn(grpc.health);
    tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, db = %crate::sync::redact_url(&cfg.source.url), "mdb serving");
    shell.run(grpc.serve).await?;
    Ok(())
}

/// The sweep pipeline: sweep → classify → history → the view, and from it
/// the filer and notify.
fn discovery(
    shell: &Shell,
    cfg: &Config,
    scan: sweep::Config,
    start: sweep::Start,
    store: &Arc<Store>,
    metrics: &Metrics,
    mirrors: Arc<discover::mirrors::Mirrors>,
) {
    let (results, filed) = tokio::sync::watch::channel(None);
    let publish = if cfg.scanners.is_empty() {
        sweep::Publish::Store(store.clone())
    } else {
        sweep::Publish::Merged(mirrors, format!("this scanner ({})", scan.segment))
    };
    let (announcer, announcements) = crate::notify::announcer();
    shell.spawn(sweep::run(
        scan,
        start,
        store.clone(),
        publish,
        metrics.sweep.clone(),
        results,
        shell.shutdown.child_token(),
    ));
    if let Some(n) = cfg.notify.clone() {
        let names: Vec<&str> = n.sinks.iter().map(|s| s.name.as_str()).collect();
        let nm = crate::notify::deliver::NotifyMetrics::register(metrics.registry(), &names);
        shell.spawn(crate::notify::run(
            n,
            Some(store.clone()),
            announcements,
            nm,
            shell.tracker(),
            shell.shutdown.child_token(),
        ));
    }
    if let Some(gh) = cfg.github.clone() {
        shell.spawn(crate::github::run(
            gh,
            store.clone(),
            metrics.github.clone(),
            filed,
            announcer,
            shell.shutdown.child_token(),
        ));
    }
}

/// Opens the scanner's history store, before any port is bound: a store
/// from a newer mdb, or one another scanner holds, stops the start.
fn history_start(scan: &sweep::Config) -> anyhow::Result<sweep::Start> {
    use crate::discover::history::store;
    let Some(dir) = &scan.state_dir else {
        tracing::warn!(
            "no scan.state_dir: the sweep history lives in memory only and a restart forgets it"
        );
        return Ok(sweep::Start::empty());
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
    Ok(sweep::Start::from(opened))
}
