//! The metrics of `mdb serve`: gRPC requests recorded here, every other
//! subsystem's own struct gathered into one registry, and the HTTP
//! endpoints `/metrics`, `/healthz` (the process is up) and `/readyz` (a
//! database revision is loaded and can be served).

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use prometheus::{IntCounterVec, Registry};

use crate::{
    db::Store, discover::SweepMetrics, github::GithubMetrics, metrics as m,
    sync::metrics::SyncMetrics,
};

/// The methods of `mdb.v1.MachineDb`, for the series created at 0.
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
    "GetReadiness",
    "GetHostHistory",
    "ListHostHistory",
];

#[derive(Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    handling: prometheus::HistogramVec,
    watch_dropped: IntCounterVec,
}

impl GrpcMetrics {
    pub fn register(r: &Registry) -> GrpcMetrics {
        let start: Vec<[&str; 2]> = GRPC_METHODS.iter().map(|m| [*m, "Ok"]).collect();
        GrpcMetrics {
            requests: m::counter_by2(
                r,
                "grpc_requests_total",
                "gRPC requests by method and status code.",
                ["method", "code"],
                &start,
            ),
            handling: m::histogram_by(
                r,
                "grpc_request_duration_seconds",
                "Time the server spent answering a gRPC request (from the decoded request to the answer), by method.",
                "method",
                GRPC_METHODS,
                &[0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0],
            ),
            watch_dropped: m::counter_by(
                r,
                "grpc_watch_refused_total",
                "Watch streams refused (limit: the server holds its most) or dropped (slow: the client read nothing for 30 s).",
                "reason",
                &["limit", "slow"],
            ),
        }
    }

    /// A Watch refused or dropped, for `reason` (`limit`, `slow`).
    pub fn watch_dropped(&self, reason: &'static str) {
        self.watch_dropped.with_label_values(&[reason]).inc();
    }

    /// One answered request; the code is tonic's own closed set.
    pub fn request(
        &self,
        method: &'static str,
        code: Option<tonic::Code>,
        took: std::time::Duration,
    ) {
        let code = code.map_or_else(|| "Ok".to_string(), |c| format!("{c:?}"));
        self.requests.with_label_values(&[method, &code]).inc();
        self.handling
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
    }
}

/// Every subsystem's metrics in one registry.
pub struct Metrics {
    registry: Registry,
    pub sync: SyncMetrics,
    pub sweep: SweepMetrics,
    pub github: GithubMetrics,
    pub grpc: GrpcMetrics,
    /// Set at each scrape from what is served (scanner and replicas alike).
    discovery_stale: prometheus::IntGauge,
    discovery_as_of: prometheus::Gauge,
    segment_hosts: prometheus::IntGaugeVec,
    segment_stale: prometheus::IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = m::registry();
        let build = m::int_gauge_vec(
            &registry,
            "build_info",
            "The version and commit of this mdb (value is always 1).",
            &["version", "revision"],
        );
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("MDB_GIT_REVISION")])
            .set(1);
        Arc::new(Metrics {
            sync: SyncMetrics::register(&registry),
            sweep: SweepMetrics::register(&registry),
            github: GithubMetrics::register(&registry),
            grpc: GrpcMetrics::register(&registry),
            discovery_stale: m::int_gauge(
                &registry,
                "discovery_stale",
                "1 while a replica cannot reach its scanner and serves the last state it had.",
            ),
            discovery_as_of: m::gauge(
                &registry,
                "discovery_last_sweep_timestamp_seconds",
                "When the sweep that discovery answers come from ended (scanner or mirrored).",
            ),
            segment_hosts: m::int_gauge_vec(
                &registry,
                "discovered_hosts_by_segment",
                "Discovered hosts each network segment sees (scan.segment; a host on two counts on both).",
                &["segment"],
            ),
            segment_stale: m::int_gauge_vec(
                &registry,
                "discovery_segment_stale",
                "1 while the hosts seen only on a segment are all stale (its scanner is unreachable): they are served as last seen.",
                &["segment"],
            ),
            registry,
        })
    }

    /// Hosts and staleness per segment, from what is served now.
    fn segments(&self, disc: &crate::db::store::Discovery) {
        /// Label values come from scanners' configs; a bound all the same.
        const MAX_SEGMENTS: usize = 64;
        let mut by: std::collections::BTreeMap<&str, (i64, Option<bool>)> = Default::default();
        for h in &disc.hosts {
            for s in &h.segments {
                if by.len() >= MAX_SEGMENTS && !by.contains_key(s.as_str()) {
                    continue;
                }
                let e = by.entry(s.as_str()).or_insert((0, None));
                e.0 += 1;
                // A host seen on several segments says nothing of one.
                if h.segments.len() == 1 {
                    e.1 = Some(e.1.unwrap_or(true) && h.segment_stale);
                }
            }
        }
        self.segment_hosts.reset();
        self.segment_stale.reset();
        for (segment, (hosts, stale)) in by {
            self.segment_hosts.with_label_values(&[segment]).set(hosts);
            self.segment_stale
                .with_label_values(&[segment])
                .set(i64::from(stale.unwrap_or(false)));
        }
    }

    /// For a subsystem whose series depend on its configuration.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self) -> String {
        String::from_utf8(m::encode(&self.registry)).unwrap_or_default()
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    store: Arc<Store>,
}

pub fn router(metrics: Arc<Metrics>, store: Arc<Store>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HttpState { metrics, store })
}

async fn render(State(s): State<HttpState>) -> impl IntoResponse {
    let disc = s.store.discovery();
    s.metrics.discovery_stale.set(i64::from(disc.stale));
    s.metrics.discovery_as_of.set(disc.last_sweep_unix as f64);
    s.metrics.segments(&disc);
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
