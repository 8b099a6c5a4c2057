//! What the sweep loop records: sweeps by result (failures by kind),
//! duration and last success, hosts per state, probes sent and failed.

use std::collections::HashMap;

use prometheus::{Gauge, Histogram, IntCounterVec, IntGaugeVec, Registry};

use crate::{
    db::words::{state_name, HOST_STATES},
    discover::scan::{self, Counts},
    metrics as m,
    proto::DiscoveredHost,
};

/// Kinds of probe, as `mdb_probes_*_total{kind}` spells them.
pub const PROBE_KINDS: &[&str] = &["arp", "icmp", "tcp"];

#[derive(Clone)]
pub struct SweepMetrics {
    sweeps: IntCounterVec,
    errors: IntCounterVec,
    duration: Histogram,
    last_success: Gauge,
    hosts: IntGaugeVec,
    probes_sent: IntCounterVec,
    probes_failed: IntCounterVec,
}

impl SweepMetrics {
    pub fn register(r: &Registry) -> SweepMetrics {
        SweepMetrics {
            sweeps: m::counter_by(
                r,
                "sweeps_total",
                "Sweeps by result.",
                "result",
                &["ok", "error"],
            ),
            errors: m::counter_by(
                r,
                "sweep_errors_total",
                "Failed sweeps by kind.",
                "kind",
                scan::Error::LABELS,
            ),
            duration: m::histogram(
                r,
                "sweep_duration_seconds",
                "Time for one sweep of all configured subnets.",
                &[0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
            ),
            last_success: m::gauge(
                r,
                "sweep_last_success_timestamp_seconds",
                "When a sweep last completed.",
            ),
            hosts: m::int_gauge_by(
                r,
                "discovered_hosts",
                "Hosts by classification after the last sweep.",
                "state",
                &m::words(HOST_STATES),
            ),
            probes_sent: m::counter_by(
                r,
                "probes_sent_total",
                "Probes sent by kind.",
                "kind",
                PROBE_KINDS,
            ),
            probes_failed: m::counter_by(
                r,
                "probes_failed_total",
                "Probes that could not be sent, by kind.",
                "kind",
                PROBE_KINDS,
            ),
        }
    }

    /// The probes of one sweep and how long it took.
    pub fn probed(&self, sent: &Counts, seconds: f64) {
        for (kind, n) in [("arp", sent.arp), ("icmp", sent.icmp), ("tcp", sent.tcp)] {
            self.probes_sent.with_label_values(&[kind]).inc_by(n);
        }
        self.probes_failed
            .with_label_values(&["icmp"])
            .inc_by(sent.icmp_failed);
        self.duration.observe(seconds);
    }

    /// A completed sweep: hosts per state, at `at_unix`.
    pub fn swept(&self, hosts: &[DiscoveredHost], at_unix: i64) {
        let mut counts: HashMap<&str, i64> = HOST_STATES.iter().map(|(s, _)| (*s, 0)).collect();
        for h in hosts {
            *counts.entry(state_name(h.state)).or_default() += 1;
        }
        for (state, n) in counts {
            self.hosts.with_label_values(&[state]).set(n);
        }
        self.sweeps.with_label_values(&["ok"]).inc();
        self.last_success.set(at_unix as f64);
    }

    pub fn failed(&self, e: &scan::Error) {
        self.sweeps.with_label_values(&["error"]).inc();
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }
}
