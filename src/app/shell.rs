//! The shell every long-running mdb daemon stands on (`mdb serve`, `mdb
//! provision`, `mdb dhcp --follow`), after mini-redis's
//! `server::run(listener, shutdown)`: its configuration was resolved before
//! (a bad one exits 64 with no port bound), its ports are bound before
//! anything starts (a port in use fails fast), one admin router
//! (`/metrics`, `/healthz`, `/readyz`) is served with bounded connections,
//! every task and sink joins one `TaskTracker`, and one deadline bounds the
//! drain after SIGTERM. It owns no logic of any daemon.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{http::StatusCode, response::IntoResponse, routing::get, Router};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

/// Open connections the HTTP port (metrics, health) holds at most; more are
/// closed at once, so idle or slow clients cannot take every file descriptor.
pub const HTTP_MAX_CONNECTIONS: usize = 128;
/// Open connections one address holds at most: one client cannot take the
/// slots a probe or a scrape needs.
pub const HTTP_MAX_PER_ADDRESS: usize = 32;
/// A client must send its request headers within this time.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one HTTP connection, idle keep-alive included; a scrape
/// needs milliseconds.
pub const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Connections kept for probes when every other slot is taken: on these
/// only `/healthz` and `/readyz` are answered, once each, so held streams
/// and idle clients never starve the liveness probe.
pub const HTTP_PROBE_SLOTS: usize = 16;
/// Probe slots one address holds at most, and the time a probe has to send
/// its headers: one client cannot sit on all of them.
pub const HTTP_PROBE_SLOTS_PER_ADDRESS: usize = 2;
const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds one of a daemon's ports, before anything starts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// A daemon's tasks, its shutdown signal and its drain deadline.
pub struct Shell {
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
    grace: Duration,
}

impl Shell {
    /// A shell that drains within `grace` once `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken, grace: Duration) -> Shell {
        Shell {
            shutdown,
            tasks: TaskTracker::new(),
            grace,
        }
    }

    /// Runs `task` beside the others; the drain waits for it.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The tracker a subsystem spawns its own tasks on (notify's sinks),
    /// so the drain waits for them too.
    pub fn tracker(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Serves `router` on `listener` with the HTTP limits until shutdown.
    pub fn serve_http(&self, listener: TcpListener, router: Router) {
        self.spawn(serve_http(listener, router, self.shutdown.clone()));
    }

    /// Waits for the shutdown signal, then for `server` (a gRPC server
    /// draining its connections) and every task, all within the grace.
    pub async fn run<T>(self, server: impl Future<Output = Result<(), T>>) -> Result<(), T> {
        tokio::pin!(server);
        let finished = tokio::select! {
            r = &mut server => Some(r),
            _ = self.shutdown.cancelled() => None,
        };
        self.shutdown.cancel();
        let server = async move {
            match finished {
                Some(r) => r,
                None => server.await,
            }
        };
        drain_within(self.grace, server, self.tasks).await
    }

    /// [`Shell::run`] for a daemon without a gRPC server of its own.
    pub async fn run_until_shutdown(self) {
        let shutdown = self.shutdown.clone();
        let _ = self
            .run(async move {
                shutdown.cancelled().await;
                Ok::<(), ()>(())
            })
            .await;
    }
}

/// `router` behind the guard of its port (the page's login, the metrics
/// token; health and readiness open).
pub fn guarded(router: Router, guard: crate::auth::web::Guard) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard),
        crate::auth::web::guard,
    ))
}

/// The admin routes every daemon answers: `/metrics` (what `metrics`
/// renders at each scrape), `/healthz` (the process is up) and `/readyz`
/// (what `ready` says: why not, when it is not).
pub fn admin_router(
    metrics: impl Fn() -> Vec<u8> + Clone + Send + Sync + 'static,
    ready: impl Fn() -> Result<String, String> + Clone + Send + Sync + 'static,
) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        metrics(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(what) => (StatusCode::OK, format!("{what}\n")).into_response(),
                        Err(why) => {
                            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
                        }
                    }
                }
            }),
        )
}

/// Serves the HTTP router with the limits above until `shutdown`.
pub async fn serve_http(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    use hyper_util::{rt::TokioIo, rt::TokioTimer, service::TowerToHyperService};
    let slots = Arc::new(tokio::sync::Semaphore::new(HTTP_MAX_CONNECTIONS));
    let probe_slots = Arc::new(tokio::sync::Semaphore::new(HTTP_PROBE_SLOTS));
    let per_address = Arc::new(crate::limit::PerAddress::new(HTTP_MAX_PER_ADDRESS));
    let probes_per_address = Arc::new(crate::limit::PerAddress::new(HTTP_PROBE_SLOTS_PER_ADDRESS));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = match slots.clone().try_acquire_owned() {
            Ok(slot) => per_address.take(peer.ip()).map(|held| (slot, held, false)),
            Err(_) => probe_slots
                .clone()
                .try_acquire_owned()
                .ok()
                .and_then(|slot| probes_per_address.take(peer.ip()).map(|h| (slot, h, true))),
        };
        let Some((slot, held, probes_only)) = admitted else {
            drop(stream);
            continue;
        };
        let router = if probes_only {
            router
                .clone()
                .layer(axum::middleware::from_fn(probes_only_layer))
        } else {
            router.clone()
        };
        let service =
            TowerToHyperService::new(router.layer(axum::Extension(crate::auth::web::Peer(peer))));
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = (slot, held);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(if probes_only {
                    PROBE_HEADER_TIMEOUT
                } else {
                    HTTP_HEADER_TIMEOUT
                })
                .keep_alive(!probes_only)
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

/// A connection on a probe slot: anything but a probe is told to come back.
async fn probes_only_layer(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "5")],
        "every connection of this port is taken; only /healthz and /readyz are answered\n",
    )
        .into_response()
}

/// The part of the shutdown grace that draining may use; the rest is left
/// for ending the runtime and the process, so exit stays within the grace.
pub fn drain_budget(grace: Duration) -> Duration {
    grace.saturating_sub(Duration::from_secs(1)).max(grace / 2)
}

/// One deadline for everything still draining: the server (tonic waits
/// for every connection), the HTTP port and every task.
async fn drain_within<T>(
    grace: Duration,
    server: impl Future<Output = Result<(), T>>,
    tasks: TaskTracker,
) -> Result<(), T> {
    let deadline = tokio::time::Instant::now() + drain_budget(grace);
    tasks.close();
    let drained = async {
        let r = server.await;
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
