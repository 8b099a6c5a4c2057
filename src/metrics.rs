//! One Prometheus registry for the whole process (prefix `mdb_`), the
//! metrics every subsystem updates, and the HTTP endpoints that expose
//! them (`/metrics`, `/healthz`, `/readyz`). Label values come from closed
//! sets only; no IP or MAC is ever a label.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::db::{
    words::{HOST_STATES, USE_NAMES},
    Snapshot, Store,
};

pub const SYNC_RESULTS: &[&str] = &["ok", "unchanged", "error"];
pub const PROBE_KINDS: &[&str] = &["icmp", "arp", "tcp"];
pub const GRPC_METHODS: &[&str] = &[
    "ListMachines",
    "GetMachine",
    "ListClusters",
    "GetCluster",
    "GetStats",
    "ListDiscovered",
    "GetDiscovered",
    "SuggestAddress",
    "Watch",
];

pub struct Metrics {
    registry: Registry,
    pub machines: IntGauge,
    pub machines_by_use: IntGaugeVec,
    pub cluster_nodes: IntGaugeVec,
    pub db_revision: IntGaugeVec,
    pub db_loaded: Gauge,
    pub sync_last_success: Gauge,
    pub sync_runs: IntCounterVec,
    pub sync_errors: IntCounterVec,
    pub sync_duration: Histogram,
    pub sync_reclones: IntGauge,
    pub grpc_requests: IntCounterVec,
    pub discovered: IntGaugeVec,
    pub sweeps: IntCounterVec,
    pub sweep_duration: Histogram,
    pub sweep_last_success: Gauge,
    pub probes_sent: IntCounterVec,
    pub probes_failed: IntCounterVec,
    pub github_requests: IntCounterVec,
    pub github_issues: IntCounterVec,
    pub github_errors: IntCounterVec,
    pub github_deferred: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry =
            Registry::new_custom(Some("mdb".into()), None).expect("static prefix is valid");
        let m = Metrics {
            machines: IntGauge::with_opts(opts(
                "machines",
                "Machines in the served database revision.",
            ))
            .expect("valid"),
            machines_by_use: IntGaugeVec::new(
                opts(
                    "machines_by_use",
                    "Machines in the served revision, by use.",
                ),
                &["use"],
            )
            .expect("valid"),
            cluster_nodes: IntGaugeVec::new(
                opts(
                    "cluster_nodes",
                    "Nodes per cluster and role in the served revision.",
                ),
                &["cluster", "role"],
            )
            .expect("valid"),
            db_revision: IntGaugeVec::new(
                opts(
                    "db_revision_info",
                    "The commit id being served (value is always 1).",
                ),
                &["revision"],
            )
            .expect("valid"),
            db_loaded: Gauge::with_opts(opts(
                "db_loaded_timestamp_seconds",
                "When the served revision was swapped in.",
            ))
            .expect("valid"),
            sync_last_success: Gauge::with_opts(opts(
                "sync_last_success_timestamp_seconds",
                "When a sync last fetched and validated the DB repository.",
            ))
            .expect("valid"),
            sync_runs: IntCounterVec::new(
                opts("sync_runs_total", "Sync attempts by result."),
                &["result"],
            )
            .expect("valid"),
            sync_errors: IntCounterVec::new(
                opts(
                    "sync_errors_total",
                    "Failed syncs by kind; the last good revision keeps serving.",
                ),
                &["kind"],
            )
            .expect("valid"),
            sync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "sync_duration_seconds",
                    "Time for one fetch-and-validate step.",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )
            .expect("valid"),
            sync_reclones: IntGauge::with_opts(opts(
                "sync_reclones",
                "Times the checkout was found damaged and cloned again since start.",
            ))
            .expect("valid"),
            grpc_requests: IntCounterVec::new(
                opts(
                    "grpc_requests_total",
                    "gRPC requests by method and status code.",
                ),
                &["method", "code"],
            )
            .expect("valid"),
            discovered: IntGaugeVec::new(
                opts(
                    "discovered_hosts",
                    "Hosts by classification after the last sweep.",
                ),
                &["state"],
            )
            .expect("valid"),
            sweeps: IntCounterVec::new(opts("sweeps_total", "Sweeps by result."), &["result"])
                .expect("valid"),
            sweep_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "sweep_duration_seconds",
                    "Time for one sweep of all configured subnets.",
                )
                .buckets(vec![
                    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ]),
            )
            .expect("valid"),
            sweep_last_success: Gauge::with_opts(opts(
                "sweep_last_success_timestamp_seconds",
                "When a sweep last completed.",
            ))
            .expect("valid"),
            probes_sent: IntCounterVec::new(
                opts("probes_sent_total", "Probes sent by kind."),
                &["kind"],
            )
            .expect("valid"),
            probes_failed: IntCounterVec::new(
                opts(
                    "probes_failed_total",
                    "Probes that could not be sent, by kind.",
                ),
                &["kind"],
            )
            .expect("valid"),
            github_requests: IntCounterVec::new(
                opts("github_requests_total", "GitHub API requests by result."),
                &["result"],
            )
            .expect("valid"),
            github_issues: IntCounterVec::new(
                opts(
                    "github_issue_operations_total",
                    "Issue operations done, by kind.",
                ),
                &["op"],
            )
            .expect("valid"),
            github_errors: IntCounterVec::new(
                opts(
                    "github_errors_total",
                    "Reconcile passes that failed, by kind.",
                ),
                &["kind"],
            )
            .expect("valid"),
            github_deferred: IntGauge::with_opts(opts(
                "github_deferred_problems",
                "New problems waiting for a later sweep (per-sweep cap).",
            ))
            .expect("valid"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.machines.clone()),
            Box::new(m.machines_by_use.clone()),
            Box::new(m.cluster_nodes.clone()),
            Box::new(m.db_revision.clone()),
            Box::new(m.db_loaded.clone()),
            Box::new(m.sync_last_success.clone()),
            Box::new(m.sync_runs.clone()),
            Box::new(m.sync_errors.clone()),
            Box::new(m.sync_duration.clone()),
            Box::new(m.sync_reclones.clone()),
            Box::new(m.grpc_requests.clone()),
            Box::new(m.discovered.clone()),
            Box::new(m.sweeps.clone()),
            Box::new(m.sweep_duration.clone()),
            Box::new(m.sweep_last_success.clone()),
            Box::new(m.probes_sent.clone()),
            Box::new(m.probes_failed.clone()),
            Box::new(m.github_requests.clone()),
            Box::new(m.github_issues.clone()),
            Box::new(m.github_errors.clone()),
            Box::new(m.github_deferred.clone()),
        ];
        for c in collectors {
            m.registry
                .register(c)
                .expect("each metric is registered once");
        }
        // Failure series exist from the start, so rate() and alerts see 0, not absence.
        for r in SYNC_RESULTS {
            m.sync_runs.with_label_values(&[*r]);
        }
        for k in crate::sync::Error::LABELS {
            m.sync_errors.with_label_values(&[*k]);
        }
        for u in USE_NAMES {
            m.machines_by_use.with_label_values(&[*u]);
        }
        for (s, _) in HOST_STATES {
            m.discovered.with_label_values(&[*s]);
        }
        for r in ["ok", "error"] {
            m.sweeps.with_label_values(&[r]);
        }
        for r in [
            "ok",
            "transport_error",
            "rate_limited",
            "server_error",
            "client_error",
        ] {
            m.github_requests.with_label_values(&[r]);
        }
        for op in ["created", "updated", "reopened", "closed"] {
            m.github_issues.with_label_values(&[op]);
        }
        for k in [
            "client",
            "transient",
            "status",
            "rate_limited",
            "disabled",
            "decode",
        ] {
            m.github_errors.with_label_values(&[k]);
        }
        for method in GRPC_METHODS {
            m.grpc_requests.with_label_values(&[*method, "Ok"]);
        }
        for k in PROBE_KINDS {
            m.probes_sent.with_label_values(&[*k]);
            m.probes_failed.with_label_values(&[*k]);
        }
        Arc::new(m)
    }

    /// Sets the database gauges from a newly served snapshot.
    pub fn observe_snapshot(&self, s: &Snapshot) {
        self.machines.set(s.machines.len() as i64);
        for (u, n) in s.count_by_use() {
            self.machines_by_use.with_label_values(&[u]).set(n as i64);
        }
        self.cluster_nodes.reset();
        for name in s.cluster_names() {
            if let Some((cp, w)) = s.cluster(name) {
                self.cluster_nodes
                    .with_label_values(&[name, "control-plane"])
                    .set(cp.len() as i64);
                self.cluster_nodes
                    .with_label_values(&[name, "worker"])
                    .set(w.len() as i64);
            }
        }
        self.db_revision.reset();
        self.db_revision.with_label_values(&[&s.revision]).set(1);
        self.db_loaded.set(crate::db::store::now_unix() as f64);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    store: Arc<Store>,
}

/// `/metrics`, `/healthz` (the process is up) and `/readyz` (a database
/// revision is loaded and can be served).
pub fn router(metrics: Arc<Metrics>, store: Arc<Store>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HttpState { metrics, store })
}

async fn render(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    match s.store.snapshot() {
        Some(snap) => (
            StatusCode::OK,
            format!("ready: revision {}\n", snap.revision),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no database revision loaded yet\n".to_string(),
        ),
    }
}
