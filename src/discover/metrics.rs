//! What the sweep loop records: sweeps by result (failures by kind),
//! duration and last success, hosts per state, probes sent and failed.

use std::collections::HashMap;

use prometheus::{Gauge, Histogram, IntCounterVec, IntGaugeVec, Registry};

use crate::{
    db::words::{presence_name, state_name, HOST_STATES, PRESENCES},
    discover::scan::{self, Counts},
    metrics as m,
    proto::{DiscoveredHost, PresenceTransition},
};

/// Kinds of probe, as `mdb_probes_*_total{kind}` spells them.
pub const PROBE_KINDS: &[&str] = &["arp", "icmp", "tcp", "ndp"];

#[derive(Clone)]
pub struct SweepMetrics {
    sweeps: IntCounterVec,
    errors: IntCounterVec,
    duration: Histogram,
    last_success: Gauge,
    hosts: IntGaugeVec,
    probes_sent: IntCounterVec,
    probes_failed: IntCounterVec,
    presence: IntGaugeVec,
    transitions: IntCounterVec,
    store_bytes: prometheus::IntGauge,
    store_writes: Histogram,
    store_errors: prometheus::IntCounter,
    away: prometheus::IntGauge,
    shed: prometheus::IntCounter,
    carried: prometheus::IntCounter,
    overrun: prometheus::IntGauge,
    ndp_capped: prometheus::IntCounter,
    source_reads: IntCounterVec,
    port_reads: IntCounterVec,
    source_hosts: IntGaugeVec,
    source_seconds: prometheus::GaugeVec,
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
            presence: m::int_gauge_by(
                r,
                "discovered_presence",
                "Hosts by presence after the last sweep.",
                "presence",
                &m::words(PRESENCES),
            ),
            transitions: m::counter_by(
                r,
                "presence_transitions_total",
                "Hosts that went up or down.",
                "presence",
                &m::words(PRESENCES),
            ),
            store_bytes: m::int_gauge(r, "history_store_bytes", "Size of the history store file."),
            store_writes: m::histogram(
                r,
                "history_write_seconds",
                "Time to write one sweep to the history store.",
                &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
            ),
            store_errors: m::int_counter(
                r,
                "history_write_errors_total",
                "Sweeps the history store could not write (kept in memory).",
            ),
            away: m::int_gauge(
                r,
                "machines_away_from_reservation",
                "Database machines up at another address than their own (on an old DHCP lease).",
            ),
            shed: m::int_counter(
                r,
                "sweep_followups_shed_total",
                "Hosts whose port, banner and name probes were cut to keep a sweep within its interval.",
            ),
            carried: m::int_counter(
                r,
                "sweep_followups_carried_total",
                "Hosts whose earlier probes were still fresh (same address and MAC, up, within scan.refresh) and not probed again.",
            ),
            overrun: m::int_gauge(
                r,
                "sweep_overrun",
                "1 while the last sweep had to shed follow-ups to fit its interval.",
            ),
            ndp_capped: m::int_counter(
                r,
                "ndp_claims_capped_total",
                "IPv6 neighbour claims dropped by the caps (addresses per MAC, MACs per link): a forged flood or a host claiming more than one device holds.",
            ),
            source_reads: m::counter_by2(
                r,
                "snmp_reads_total",
                "Neighbour-table reads of each SNMP source (scan.snmp), by result: ok, or why it failed (its hosts are then kept as last seen, marked stale).",
                ["source", "result"],
                &[],
            ),
            port_reads: m::counter_by2(
                r,
                "snmp_port_reads_total",
                "Forwarding-table reads of each SNMP switch (scan.snmp with ports = true), by result: ok, or why it failed (ports then stay as last known).",
                ["source", "result"],
                &[],
            ),
            source_hosts: m::int_gauge_vec(
                r,
                "snmp_source_hosts",
                "Hosts the last good read of each SNMP source gave.",
                &["source"],
            ),
            source_seconds: m::gauge_vec(
                r,
                "snmp_read_seconds",
                "How long the last read of each SNMP source took.",
                &["source"],
            ),
        }
    }

    pub fn transitions(&self, ts: &[PresenceTransition]) {
        for t in ts {
            self.transitions
                .with_label_values(&[presence_name(t.presence)])
                .inc();
        }
    }

    pub fn stored(&self, took: std::time::Duration, size: u64) {
        self.store_writes.observe(took.as_secs_f64());
        self.store_bytes.set(size as i64);
    }

    pub fn store_failed(&self) {
        self.store_errors.inc();
    }

    /// The probes of one sweep and how long it took.
    pub fn probed(&self, sent: &Counts, seconds: f64) {
        let kinds = [
            ("arp", sent.arp),
            ("icmp", sent.icmp),
            ("tcp", sent.tcp),
            ("ndp", sent.ndp),
        ];
        for (kind, n) in kinds {
            self.probes_sent.with_label_values(&[kind]).inc_by(n);
        }
        self.probes_failed
            .with_label_values(&["icmp"])
            .inc_by(sent.icmp_failed);
        self.duration.observe(seconds);
    }

    /// The follow-ups of one sweep: carried over, and shed at its deadline.
    pub fn ndp_capped(&self, n: u64) {
        self.ndp_capped.inc_by(n);
    }

    /// Every result series of each configured source, at 0 from the start.
    pub fn sources(&self, sources: &[crate::snmp::Source]) {
        for s in sources {
            let tag = s.tag();
            for result in crate::snmp::Error::LABELS {
                if !s.serves.is_empty() {
                    self.source_reads.with_label_values(&[tag.as_str(), result]);
                }
                if s.ports.is_some() {
                    self.port_reads.with_label_values(&[tag.as_str(), result]);
                }
            }
        }
    }

    /// One SNMP source's read: `result` is "ok" or the failure's label.
    pub fn source_read(
        &self,
        source: &str,
        ports: bool,
        result: &str,
        hosts: Option<usize>,
        seconds: f64,
    ) {
        let reads = if ports {
            &self.port_reads
        } else {
            &self.source_reads
        };
        reads.with_label_values(&[source, result]).inc();
        if ports {
            return;
        }
        if let Some(n) = hosts {
            self.source_hosts.with_label_values(&[source]).set(n as i64);
        }
        self.source_seconds
            .with_label_values(&[source])
            .set(seconds);
    }

    pub fn follow_ups(&self, carried: usize, shed: usize) {
        self.carried.inc_by(carried as u64);
        self.shed.inc_by(shed as u64);
        self.overrun.set(i64::from(shed > 0));
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
        for (word, p) in PRESENCES {
            let n = hosts.iter().filter(|h| h.presence == *p as i32).count();
            self.presence.with_label_values(&[word]).set(n as i64);
        }
        let away = hosts
            .iter()
            .filter(|h| {
                h.state == crate::proto::HostState::Moved as i32
                    && h.presence == crate::proto::Presence::Up as i32
            })
            .count();
        self.away.set(away as i64);
        self.sweeps.with_label_values(&["ok"]).inc();
        self.last_success.set(at_unix as f64);
    }

    pub fn failed(&self, e: &scan::Error) {
        self.sweeps.with_label_values(&["error"]).inc();
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }
}
