//! Wires `mdb serve`: binds the ports, then runs the sync task, the gRPC
//! server (with health and reflection) and the metrics endpoint under one
//! cancellation token. Owns no logic of its own.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::{
    api::Api,
    config::Config,
    db::Store,
    metrics::{self, Metrics},
    proto::machine_db_server::MachineDbServer,
    sync,
};

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

        let reflection = |b: tonic_reflection::server::Builder<'static>| {
            b.register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
            .build_v1()
            .map_err(|e| Error::Reflection(e.to_string()))?;
        let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
            .build_v1alpha()
            .map_err(|e| Error::Reflection(e.to_string()))?;

        let tasks = TaskTracker::new();
        tasks.spawn(sync::run(
            sync::Checkout::new(cfg.source.clone()),
            cfg.timing,
            store.clone(),
            metrics.clone(),
            shutdown.child_token(),
        ));
        for t in extra {
            tasks.spawn(t);
        }
        // Healthy once the first good revision is served.
        {
            let store = store.clone();
            let reporter = reporter.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
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
            });
        }

        let (grpc_addr, metrics_addr) = (self.grpc_addr(), self.metrics_addr());
        {
            let router = metrics::router(metrics.clone(), store.clone());
            let shutdown = shutdown.clone();
            let listener = self.http;
            tasks.spawn(async move {
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
                {
                    warn!(error = %e, "metrics server stopped");
                }
            });
        }

        info!(grpc = %grpc_addr, metrics = %metrics_addr, db = %sync::redact_url(&cfg.source.url), "mdb serving");
        let api = Api::new(store, metrics, shutdown.clone());
        let drain = {
            let reporter = reporter.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                reporter
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                reporter.set_not_serving::<MachineDbServer<Api>>().await;
            }
        };
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
        let result = tokio::select! {
            r = &mut grpc => r,
            _ = shutdown.cancelled() => {
                // tonic waits for every connection; bound that wait.
                match tokio::time::timeout(cfg.shutdown_grace, &mut grpc).await {
                    Ok(r) => r,
                    Err(_) => {
                        warn!(grace = ?cfg.shutdown_grace, "gRPC drain exceeded the grace period");
                        Ok(())
                    }
                }
            }
        };
        shutdown.cancel();
        tasks.close();
        if tokio::time::timeout(cfg.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            warn!(grace = ?cfg.shutdown_grace, "tasks did not finish within the grace period");
        }
        result.map_err(Error::from)
    }
}
