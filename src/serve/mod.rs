//! What an API replica serves: the read-only gRPC service (`api`) with
//! health and reflection, its metrics (`metrics`) and the web page
//! (`web`). `app::serve` wires them into `mdb serve`.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

pub mod api;
pub mod metrics;
pub mod web;

use crate::{db::Store, proto::machine_db_server::MachineDbServer, serve::api::Api, sync};

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
    pub runner: Option<crate::dial::Remote>,
    /// Who may ask this server, and how the page is signed in to.
    pub auth: crate::auth::settings::ServerAuth,
    /// What this process shows the scanners it mirrors.
    pub scanner_creds: crate::dial::Credentials,
    /// The scanners (one per segment) whose discovery this API replica
    /// mirrors, merged.
    pub scanners: Vec<String>,
    /// Each scanner's last view, kept for a start while it is away.
    pub mirror_cache: Option<std::path::PathBuf>,
    /// How often each scanner is read whole again.
    pub mirror_refresh: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The gRPC server of the API: `MachineDb` with health and reflection on
/// `listener`. Health turns SERVING once a revision is loaded (`health`,
/// a task to run beside it) and NOT_SERVING at shutdown, before tonic
/// stops taking requests and drains its connections (`serve`).
pub struct Grpc {
    pub serve: Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
    pub health: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Streams one connection may open at once (HTTP/2's setting): one client
/// cannot hold every Watch of the server over one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Connections one address (an IPv6 client by its /64) may hold at once:
/// mdb's own parts and a lab's clients use one or two each, and pods behind
/// one node's address share it.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

pub async fn grpc(
    listener: TcpListener,
    store: Arc<Store>,
    metrics: crate::serve::metrics::GrpcMetrics,
    auth: crate::auth::grpc::AuthLayer,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: CancellationToken,
) -> Result<Grpc, Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter.set_not_serving::<MachineDbServer<Api>>().await;
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let api = Api::new(store.clone(), metrics, shutdown.clone());
    let drain = not_serving_on(shutdown.clone(), reporter.clone());
    // Pings find a client that vanished without closing its connection, so
    // its streams and places go back.
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| Error::Tls(e.to_string()))?;
    }
    let serve = builder
        .layer(auth)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(MachineDbServer::new(api))
        .serve_with_incoming_shutdown(
            // Small responses must not wait for delayed ACKs (Nagle).
            crate::limit::capped(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                Arc::new(crate::limit::PerAddress::new(MAX_CONNECTIONS_PER_ADDRESS)),
            ),
            drain,
        );
    Ok(Grpc {
        serve: Box::pin(async move { serve.await.map_err(Error::from) }),
        health: Box::pin(serving_once_loaded(store, reporter, shutdown)),
    })
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
