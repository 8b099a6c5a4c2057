//! What the GitHub side records: requests by outcome, issue operations,
//! passes completed, failed passes by kind, and problems deferred by the per-sweep cap.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::{db::words::word_in as word, github::error::Error, metrics as m};

/// How one request ended, as `mdb_github_requests_total{result}` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Ok,
    TransportError,
    RateLimited,
    ServerError,
    ClientError,
}

impl RequestOutcome {
    pub const WORDS: &'static [(&'static str, RequestOutcome)] = &[
        ("ok", RequestOutcome::Ok),
        ("transport_error", RequestOutcome::TransportError),
        ("rate_limited", RequestOutcome::RateLimited),
        ("server_error", RequestOutcome::ServerError),
        ("client_error", RequestOutcome::ClientError),
    ];
}

/// What was done to an issue or pull request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Created,
    Updated,
    Reopened,
    Closed,
}

impl Operation {
    pub const WORDS: &'static [(&'static str, Operation)] = &[
        ("created", Operation::Created),
        ("updated", Operation::Updated),
        ("reopened", Operation::Reopened),
        ("closed", Operation::Closed),
    ];
}

#[derive(Clone)]
pub struct GithubMetrics {
    requests: IntCounterVec,
    issues: IntCounterVec,
    pulls: IntCounterVec,
    errors: IntCounterVec,
    passes: prometheus::IntCounter,
    deferred: IntGauge,
    capped: IntGaugeVec,
}

impl GithubMetrics {
    pub fn register(r: &Registry) -> GithubMetrics {
        GithubMetrics {
            requests: m::counter_by(
                r,
                "github_requests_total",
                "GitHub API requests by result.",
                "result",
                &m::words(RequestOutcome::WORDS),
            ),
            issues: m::counter_by(
                r,
                "github_issue_operations_total",
                "Issue operations done, by kind.",
                "op",
                &m::words(Operation::WORDS),
            ),
            pulls: m::counter_by(
                r,
                "github_pull_operations_total",
                "Enrolment pull request operations done, by kind.",
                "op",
                &m::words(Operation::WORDS),
            ),
            errors: m::counter_by(
                r,
                "github_errors_total",
                "Reconcile passes that failed, by kind.",
                "kind",
                Error::LABELS,
            ),
            passes: m::int_counter(
                r,
                "github_passes_total",
                "Reconcile passes that completed (one per sweep GitHub kept up with).",
            ),
            deferred: m::int_gauge(
                r,
                "github_deferred_problems",
                "Problems waiting for room under a cap, all caps together.",
            ),
            capped: m::int_gauge_by(
                r,
                "github_deferred",
                "Problems a cap held back at the last pass, by cap.",
                "cap",
                &m::words(crate::github::Cap::WORDS),
            ),
        }
    }

    pub fn request(&self, outcome: RequestOutcome) {
        self.requests
            .with_label_values(&[word(RequestOutcome::WORDS, outcome)])
            .inc();
    }

    pub fn issue(&self, op: Operation) {
        self.issues
            .with_label_values(&[word(Operation::WORDS, op)])
            .inc();
    }

    pub fn pull(&self, op: Operation) {
        self.pulls
            .with_label_values(&[word(Operation::WORDS, op)])
            .inc();
    }

    pub fn passed(&self) {
        self.passes.inc();
    }

    pub fn failed(&self, e: &Error) {
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }

    pub fn deferred(&self, by_cap: &crate::github::Deferred) {
        self.deferred.set(by_cap.values().sum::<usize>() as i64);
        for (word, cap) in crate::github::Cap::WORDS {
            let n = by_cap.get(cap).copied().unwrap_or(0);
            self.capped.with_label_values(&[word]).set(n as i64);
        }
    }
}
