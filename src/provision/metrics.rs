//! What the provisioning runner records: runs by kind of target and result,
//! how long they took, each cluster's last success, and machines not ready.

use prometheus::{Gauge, GaugeVec, Histogram, IntCounterVec, IntGauge, Opts, Registry};

use crate::metrics as m;

/// Kinds of target, as `mdb_provision_runs_total{kind}` spells them.
pub const KINDS: &[&str] = &["machine", "cluster", "removal"];
/// Results, as `mdb_provision_runs_total{result}` spells them.
pub const RESULTS: &[&str] = &["ok", "failed", "not_ready"];

#[derive(Clone)]
pub struct ProvisionMetrics {
    runs: IntCounterVec,
    duration: Histogram,
    cluster_success: GaugeVec,
    cluster_failed: prometheus::IntGaugeVec,
    not_ready: IntGauge,
    last_pass: Gauge,
    refused: IntGauge,
    pass_seconds: Gauge,
}

impl ProvisionMetrics {
    pub fn register(r: &Registry) -> ProvisionMetrics {
        let start: Vec<[&str; 2]> = KINDS
            .iter()
            .flat_map(|k| RESULTS.iter().map(move |res| [*k, *res]))
            .collect();
        let cluster_success = GaugeVec::new(
            Opts::new(
                "provision_cluster_last_success_timestamp_seconds",
                "When a cluster's playbook last succeeded.",
            ),
            &["cluster"],
        )
        .expect("valid");
        r.register(Box::new(cluster_success.clone()))
            .expect("registered once");
        ProvisionMetrics {
            runs: m::counter_by2(
                r,
                "provision_runs_total",
                "Provisioning runs by kind of target and result.",
                ["kind", "result"],
                &start,
            ),
            duration: m::histogram(
                r,
                "provision_run_duration_seconds",
                "Time of one provisioning run.",
                &[
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ],
            ),
            cluster_success,
            cluster_failed: m::int_gauge_vec(
                r,
                "provision_cluster_failed",
                "1 while a cluster's last playbook run failed.",
                &["cluster"],
            ),
            not_ready: m::int_gauge(
                r,
                "provision_machines_not_ready",
                "Machines whose readiness checks failed in the last pass.",
            ),
            last_pass: m::gauge(
                r,
                "provision_last_pass_timestamp_seconds",
                "When the runner last looked for work.",
            ),
            pass_seconds: m::gauge(
                r,
                "provision_last_pass_duration_seconds",
                "How long the last pass took (checks and runs).",
            ),
            refused: m::int_gauge(
                r,
                "provision_revision_refused",
                "1 while the revision the runner was sent does not validate (nothing runs).",
            ),
        }
    }

    pub fn pass_took(&self, seconds: f64) {
        self.pass_seconds.set(seconds);
    }

    pub fn refused(&self, refused: bool) {
        self.refused.set(i64::from(refused));
    }

    pub fn ran(&self, kind: &str, result: &str, seconds: f64) {
        self.runs.with_label_values(&[kind, result]).inc();
        self.duration.observe(seconds);
    }

    pub fn not_ready(&self, n: usize) {
        self.not_ready.set(n as i64);
    }

    pub fn cluster(&self, name: &str, ok: bool, at_unix: i64) {
        if ok {
            self.cluster_success
                .with_label_values(&[name])
                .set(at_unix as f64);
        }
        self.cluster_failed
            .with_label_values(&[name])
            .set(i64::from(!ok));
    }

    pub fn passed(&self, at_unix: i64) {
        self.last_pass.set(at_unix as f64);
    }
}
