//! What sync records: runs and failures by kind, how long a step took, the
//! last success, re-clones, and the gauges of the revision it serves.

use prometheus::{Gauge, Histogram, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::Error;
use crate::{
    db::{store::now_unix, words::USE_NAMES, Snapshot},
    metrics as m,
};

/// How a sync step ended, as `mdb_sync_runs_total{result}` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    Ok,
    Unchanged,
    Error,
}

impl RunResult {
    pub const WORDS: &'static [(&'static str, RunResult)] = &[
        ("ok", RunResult::Ok),
        ("unchanged", RunResult::Unchanged),
        ("error", RunResult::Error),
    ];

    fn word(self) -> &'static str {
        crate::db::words::word_in(RunResult::WORDS, self)
    }
}

#[derive(Clone)]
pub struct SyncMetrics {
    runs: IntCounterVec,
    errors: IntCounterVec,
    duration: Histogram,
    last_success: Gauge,
    reclones: IntGauge,
    machines: IntGauge,
    machines_by_use: IntGaugeVec,
    cluster_nodes: IntGaugeVec,
    revision: IntGaugeVec,
    loaded: Gauge,
}

impl SyncMetrics {
    pub fn register(r: &Registry) -> SyncMetrics {
        SyncMetrics {
            runs: m::counter_by(
                r,
                "sync_runs_total",
                "Sync attempts by result.",
                "result",
                &m::words(RunResult::WORDS),
            ),
            errors: m::counter_by(
                r,
                "sync_errors_total",
                "Failed syncs by kind; the last good revision keeps serving.",
                "kind",
                Error::LABELS,
            ),
            duration: m::histogram(
                r,
                "sync_duration_seconds",
                "Time for one fetch-and-validate step.",
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
            ),
            last_success: m::gauge(
                r,
                "sync_last_success_timestamp_seconds",
                "When a sync last fetched and validated the DB repository.",
            ),
            reclones: m::int_gauge(
                r,
                "sync_reclones",
                "Times the checkout was found damaged and cloned again since start.",
            ),
            machines: m::int_gauge(r, "machines", "Machines in the served database revision."),
            machines_by_use: m::int_gauge_by(
                r,
                "machines_by_use",
                "Machines in the served revision, by use.",
                "use",
                USE_NAMES,
            ),
            cluster_nodes: m::int_gauge_vec(
                r,
                "cluster_nodes",
                "Nodes per cluster and role in the served revision.",
                &["cluster", "role"],
            ),
            revision: m::int_gauge_vec(
                r,
                "db_revision_info",
                "The commit id being served (value is always 1).",
                &["revision"],
            ),
            loaded: m::gauge(
                r,
                "db_loaded_timestamp_seconds",
                "When the served revision was swapped in.",
            ),
        }
    }

    /// A step that reached the remote: the revision is served (new or not).
    pub fn succeeded(&self, result: RunResult) {
        self.runs.with_label_values(&[result.word()]).inc();
        self.last_success.set(now_unix() as f64);
    }

    pub fn failed(&self, e: &Error) {
        self.runs
            .with_label_values(&[RunResult::Error.word()])
            .inc();
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }

    pub fn step_took(&self, seconds: f64, reclones: u64) {
        self.duration.observe(seconds);
        self.reclones.set(reclones as i64);
    }

    /// Sets the database gauges from a newly served snapshot.
    pub fn published(&self, s: &Snapshot) {
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
        self.revision.reset();
        self.revision.with_label_values(&[&s.revision]).set(1);
        self.loaded.set(now_unix() as f64);
    }
}
