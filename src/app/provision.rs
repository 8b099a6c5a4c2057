//! `mdb provision`, wired: its ports bound first, then the runner
//! following the server's database, its statuses served over gRPC
//! (`mdb.v1.Provisioning`, behind the runner's tokens or client CA), its
//! failures filed on GitHub and told to the `[[notify]]` sinks, and the
//! admin routes.

use anyhow::Context;

use super::shell::{self, Shell};
use crate::provision::{metrics::ProvisionMetrics, report, runner::Runner, status, Config};

/// Runs `mdb provision` until SIGTERM (or once, with `--dry-run`).
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let shutdown = super::shutdown::on_signal();
    let registry = crate::metrics::registry();
    let metrics = ProvisionMetrics::register(&registry);
    let mut runner = Runner::new(cfg.clone(), metrics)?;
    if let Some(gh) = &cfg.github {
        let gh_metrics = crate::github::GithubMetrics::register(&registry);
        runner.report_to(report::Reporter::new(gh, gh_metrics)?);
    }
    if cfg.dry_run {
        runner.run(shutdown).await;
        return Ok(());
    }
    let grpc = shell::bind(cfg.grpc_listen).await?;
    let http = shell::bind(cfg.metrics_listen).await?;
    let shell = Shell::new(shutdown, cfg.shutdown_grace);
    if let Some(n) = cfg.notify.clone() {
        let (announcer, announcements) = crate::notify::announcer();
        runner.announce_to(announcer);
        let names: Vec<&str> = n.sinks.iter().map(|s| s.name.as_str()).collect();
        let nm = crate::notify::deliver::NotifyMetrics::register(&registry, &names);
        shell.spawn(crate::notify::run(
            n,
            None,
            announcements,
            nm,
            shell.tracker(),
            shell.shutdown.child_token(),
        ));
    }
    if cfg.auth.is_open() {
        crate::auth::warn_open("mdb provision");
    }
    let auth = crate::auth::grpc::AuthLayer::new(
        cfg.auth.tokens.clone(),
        cfg.auth.client_certs,
        crate::auth::grpc::Refused::register(&registry),
    );
    let guard =
        crate::auth::web::Guard::new(Default::default(), cfg.auth.tokens.clone(), &registry);
    let registry = std::sync::Arc::new(registry);
    let admin = shell::admin_router(
        move || crate::metrics::encode(&registry),
        || Ok("ok".into()),
    );
    shell.serve_http(http, shell::guarded(admin, guard));
    let service =
        crate::proto::provisioning_server::ProvisioningServer::new(status::StatusService {
            statuses: runner.statuses(),
            refused: runner.refusal(),
        });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = cfg.auth.tls.clone() {
        builder = builder.tls_config(tls).context("the runner's TLS")?;
    }
    let stop = shell.shutdown.clone();
    let server = async move {
        let incoming = crate::limit::capped(
            tonic::transport::server::TcpIncoming::from(grpc),
            std::sync::Arc::new(crate::limit::PerAddress::new(
                crate::serve::MAX_CONNECTIONS_PER_ADDRESS,
            )),
        );
        builder
            .layer(auth)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
    };
    tracing::info!(server = %cfg.server.addr, grpc = %cfg.grpc_listen, metrics = %cfg.metrics_listen, "mdb provision running");
    shell.spawn(runner.run(shell.shutdown.clone()));
    if let Err(e) = shell.run(server).await {
        tracing::warn!(error = %e, "provisioning status server stopped");
    }
    Ok(())
}
