//! Wires `mdb serve`: binds the ports, then runs the sync task, the gRPC
//! server (with health and reflection) and the metrics endpoint under one
//! cancellation token. Owns no logic of its own.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tracing::{info, warn};

pub mod api;
pub mod metrics;
pub mod shutdown;
pub mod web;

use crate::{
    db::Store, proto::machine_db_server::MachineDbServer, serve::api::Api, serve::metrics::Metrics,
    sync,
};

/// Validated settings of `mdb serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: sync::Source,
    pub timing: sync::Timing,
    pub grpc_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// The sweep loop; `None` when nothing is to be swept.
    pub scan: Option<crate::discover::sweep::Config>,
    /// The GitHub filer; only with `scan`, since sweeps feed it.
    pub github: Option<crate::github::Config>,
    /// Where news goes (`[[notify]]`); only with `scan`, like `github`.
    pub notify: Option<crate::notify::Config>,
    /// A provisioning runner (`mdb provision`) whose statuses the page shows.
    pub runner: Option<String>,
    /// The scanners (one per segment) whose discovery this API replica
    /// mirrors, merged.
    pub scanners: Vec<String>,
    /// Each scanner's last view, kept for a start while it is away.
    pub mirror_cache: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Open connections the HTTP port (metrics, health) holds at most; more are
/// closed at once, so idle or slow clients cannot take every file descriptor.
pub const HTTP_MAX_CONNECTIONS: usize = 128;
/// A client must send its request headers within this time.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one HTTP connection, idle keep-alive included; a scrape
/// needs milliseconds.
pub const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Serves the HTTP router with the limits above until `shutdown`.
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    use hyper_util::{rt::TokioIo, rt::TokioTimer, service::TowerToHyperService};
    let slots = Arc::new(tokio::sync::Semaphore::new(HTTP_MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HTTP_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// The part of the shutdown grace that draining may use; the rest is left
/// for ending the runtime and the process, so exit stays within the grace.
pub fn drain_budget(grace: Duration) -> Duration {
    grace.saturating_sub(Duration::from_secs(1)).max(grace / 2)
}

/// A task that runs beside the server until the token is cancelled.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Listening sockets, bound before anything else starts so that a port in
/// use fails fast.
pub struct Bound {
    grpc: TcpListener,
    http: TcpListener,
}

pub async fn bind(cfg: &Config) -> Result<Bound, Error> {
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })
    };
    Ok(Bound {
        grpc: listen(cfg.grpc_listen).await?,
        http: listen(cfg.metrics_listen).await?,
    })
}

impl Bound {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    /// Serves until `shutdown` is cancelled, then drains for at most the
    /// configured grace period. `extra` tasks (the scanner) run alongside.
    pub async fn run(
        self,
        cfg: Config,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        extra: Vec<Task>,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        sync::set_git_timeouts(Duration::from_secs(10), cfg.source.fetch_timeout);
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter.set_not_serving::<MachineDbServer<Api>>().await;

        let (reflection_v1, reflection_v1alpha) = reflection()?;

        let tasks = TaskTracker::new();
        tasks.spawn(sync::run(
            sync::Checkout::new(cfg.source.clone()),
            cfg.timing,
            store.clone(),
            metrics.sync.clone(),
            shutdown.child_token(),
        ));
        for t in extra {
            tasks.spawn(t);
        }
        tasks.spawn(serving_once_loaded(
            store.clone(),
            reporter.clone(),
            shutdown.clone(),
        ));

        let (grpc_addr, metrics_addr) = (self.grpc_addr(), self.metrics_addr());
        let http_routes = metrics::router(metrics.clone(), store.clone()).merge(web::router(
            store.clone(),
            &cfg.source.url,
            cfg.runner.clone(),
        ));
        tasks.spawn(serve_http(self.http, http_routes, shutdown.clone()));

        info!(grpc = %grpc_addr, metrics = %metrics_addr, db = %sync::redact_url(&cfg.source.url), "mdb serving");
        let api = Api::new(store, metrics.grpc.clone(), shutdown.clone());
        let drain = not_serving_on(shutdown.clone(), reporter.clone());
        let grpc = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(MachineDbServer::new(api))
            .serve_with_incoming_shutdown(
                // Small responses must not wait for delayed ACKs (Nagle).
                TcpIncoming::from(self.grpc).with_nodelay(Some(true)),
                drain,
            );
        tokio::pin!(grpc);
        let finished = tokio::select! {
            r = &mut grpc => Some(r),
            _ = shutdown.cancelled() => None,
        };
        shutdown.cancel();
        let grpc = async move {
            match finished {
                Some(r) => r,
                None => grpc.await,
            }
        };
        drain_within(cfg.shutdown_grace, grpc, tasks)
            .await
            .map_err(Error::from)
    }
}

/// gRPC reflection, v1 and v1alpha, for the MachineDb and health services.
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| Error::Reflection(e.to_string()))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| Error::Reflection(e.to_string()))?;
    Ok((v1, v1alpha))
}

/// Health turns SERVING once the first good revision is served.
async fn serving_once_loaded(
    store: Arc<Store>,
    reporter: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    let mut rx = store.subscribe();
    while store.snapshot().is_none() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = rx.recv() => {}
        }
    }
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter.set_serving::<MachineDbServer<Api>>().await;
}

/// Resolves at shutdown, after health says NOT_SERVING: the signal for
/// tonic to stop taking requests.
async fn not_serving_on(
    shutdown: CancellationToken,
    reporter: tonic_health::server::HealthReporter,
) {
    shutdown.cancelled().await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter.set_not_serving::<MachineDbServer<Api>>().await;
}

/// One deadline for everything still draining: gRPC (tonic waits for every
/// connection), the HTTP port and every task.
async fn drain_within<T>(
    grace: Duration,
    grpc: impl Future<Output = Result<(), T>>,
    tasks: TaskTracker,
) -> Result<(), T> {
    let deadline = tokio::time::Instant::now() + drain_budget(grace);
    tasks.close();
    let drained = async {
        let r = grpc.await;
        tasks.wait().await;
        r
    };
    tokio::time::timeout_at(deadline, drained)
        .await
        .unwrap_or_else(|_| {
            warn!(grace = ?grace, "shutdown grace exceeded; exiting with work still open");
            Ok(())
        })
}
