//! What the DHCP follower records: reservations each target holds, when
//! each last applied, failures by target and kind, reservations refused.

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{targets::Error, TARGETS};
use crate::metrics as m;

#[derive(Clone)]
pub struct DhcpMetrics {
    reservations: IntGaugeVec,
    applied_at: GaugeVec,
    failures: IntCounterVec,
    refused: IntGauge,
    revision_refused: IntGauge,
}

impl DhcpMetrics {
    pub fn register(r: &Registry) -> DhcpMetrics {
        let applied_at = GaugeVec::new(
            Opts::new(
                "dhcp_last_apply_timestamp_seconds",
                "When a target last took the reservations.",
            ),
            &["target"],
        )
        .expect("valid");
        r.register(Box::new(applied_at.clone()))
            .expect("registered once");
        let pairs: Vec<[&str; 2]> = TARGETS
            .iter()
            .flat_map(|t| Error::LABELS.iter().map(move |k| [*t, *k]))
            .collect();
        DhcpMetrics {
            reservations: m::int_gauge_by(
                r,
                "dhcp_reservations",
                "Reservations a target holds.",
                "target",
                TARGETS,
            ),
            applied_at,
            failures: m::counter_by2(
                r,
                "dhcp_apply_failures_total",
                "Applies that failed, by target and kind.",
                ["target", "kind"],
                &pairs,
            ),
            refused: m::int_gauge(
                r,
                "dhcp_refused_reservations",
                "Reservations left out (a live lease of another MAC, or a twin).",
            ),
            revision_refused: m::int_gauge(
                r,
                "dhcp_revision_refused",
                "1 while the revision received does not validate (nothing is applied).",
            ),
        }
    }

    pub fn applied(&self, target: &str, n: usize, at_unix: i64) {
        self.reservations.with_label_values(&[target]).set(n as i64);
        self.applied_at
            .with_label_values(&[target])
            .set(at_unix as f64);
    }

    pub fn failed(&self, target: &str, e: &Error) {
        self.failures
            .with_label_values(&[target, e.metric_label()])
            .inc();
    }

    pub fn refused(&self, n: usize) {
        self.refused.set(n as i64);
    }

    pub fn revision_refused(&self, refused: bool) {
        self.revision_refused.set(i64::from(refused));
    }
}
