//! `mdb dhcp --follow`, wired: its HTTP port bound first (the admin routes
//! and `/status`), then the reservations applied as the server's database
//! changes.

use std::sync::Arc;

use anyhow::Context;

use super::shell::{self, Shell};
use crate::dhcp::{metrics::DhcpMetrics, Config, Reserver};

/// Runs `mdb dhcp --follow` until SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let http = shell::bind(cfg.metrics_listen).await?;
    let shell = Shell::new(super::shutdown::on_signal(), cfg.shutdown_grace);
    let registry = crate::metrics::registry();
    let metrics = DhcpMetrics::register(&registry);
    let guard = crate::auth::web::Guard::new(Default::default(), cfg.tokens.clone(), &registry)
        .with_token_paths(&["/metrics", "/status"]);
    if guard.is_open() {
        crate::auth::warn_open("mdb dhcp --follow");
    }
    let mut reserver = Reserver::new(cfg.clone(), metrics);
    let registry = Arc::new(registry);
    let status = reserver.status();
    let routes = shell::admin_router(
        move || crate::metrics::encode(&registry),
        || Ok("ok".into()),
    )
    .route(
        "/status",
        axum::routing::get(move || {
            let status = status.clone();
            async move {
                let s = status.lock().map(|s| s.clone()).unwrap_or_default();
                (
                    [("content-type", "application/json")],
                    serde_json::to_string_pretty(&s).unwrap_or_default(),
                )
            }
        }),
    );
    shell.serve_http(http, shell::guarded(routes, guard));
    tracing::info!(server = %cfg.server.addr, listen = %cfg.metrics_listen, "mdb dhcp following");
    let (server, debounce) = (cfg.server.clone(), cfg.debounce);
    let stop = shell.shutdown.clone();
    shell.spawn(async move {
        crate::watcher::watch(&server, "the DHCP follower", debounce, &mut reserver, stop).await;
    });
    shell.run_until_shutdown().await;
    Ok(())
}
