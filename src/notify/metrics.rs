//! What the sinks did: messages delivered, failed attempts, and messages
//! given up, each by sink (a closed set: the configured names).

use prometheus::IntCounterVec;

#[derive(Clone)]
pub struct NotifyMetrics {
    sent: IntCounterVec,
    failed: IntCounterVec,
    dropped: IntCounterVec,
}

impl NotifyMetrics {
    /// Every sink's series exist at 0 from the start.
    pub fn register(r: &prometheus::Registry, sinks: &[&str]) -> NotifyMetrics {
        use crate::metrics as m;
        NotifyMetrics {
            sent: m::counter_by(r, "notify_sent_total", "Notifications delivered, by sink.", "sink", sinks),
            failed: m::counter_by(
                r,
                "notify_failures_total",
                "Notification attempts that failed (a refused answer, a timeout, no connection), by sink.",
                "sink",
                sinks,
            ),
            dropped: m::counter_by(
                r,
                "notify_dropped_total",
                "Notifications given up: the sink's queue was full or every try failed, by sink.",
                "sink",
                sinks,
            ),
        }
    }

    pub fn dropped(&self, sink: &str) {
        self.dropped.with_label_values(&[sink]).inc();
    }

    pub fn sent(&self, sink: &str) {
        self.sent.with_label_values(&[sink]).inc();
    }

    pub fn failed(&self, sink: &str) {
        self.failed.with_label_values(&[sink]).inc();
    }
}
