//! The small shared part of metrics: a registry with the `mdb_` prefix and
//! constructors that register a metric and create every series of a closed
//! label set at 0 (so `rate()` and alerts see 0, not absence). Each
//! subsystem owns the struct of what it records (`sync::SyncMetrics`,
//! `discover::SweepMetrics`, `github::GithubMetrics`, `serve::GrpcMetrics`);
//! `serve::metrics` gathers them and serves `/metrics`. No IP, MAC or
//! machine name is ever a label.

use prometheus::{
    core::Collector, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The process's registry; every name gets the `mdb_` prefix.
pub fn registry() -> Registry {
    Registry::new_custom(Some("mdb".into()), None).expect("a static prefix is valid")
}

/// The standard `process_*` series (CPU, resident memory, open files,
/// start time), unprefixed as every exporter names them.
fn process_registry() -> &'static Registry {
    static PROCESS: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    PROCESS.get_or_init(|| {
        let r = Registry::new();
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        r
    })
}

/// The text exposition of `registry` and the process series.
pub fn encode(registry: &Registry) -> Vec<u8> {
    use prometheus::Encoder;
    let mut families = registry.gather();
    families.extend(process_registry().gather());
    let mut buf = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    buf
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("each metric is registered once, with a valid name");
    c
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(
        registry,
        Gauge::with_opts(Opts::new(name, help)).expect("valid"),
    )
}

pub fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::with_opts(Opts::new(name, help)).expect("valid"),
    )
}

pub fn int_counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    register(
        registry,
        prometheus::IntCounter::with_opts(Opts::new(name, help)).expect("valid"),
    )
}

/// A gauge family whose label values are not known in advance (clusters).
pub fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid"),
    )
}

pub fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    register(
        registry,
        prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid"),
    )
}

/// A gauge with one label whose every value exists from the start.
pub fn int_gauge_by(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> IntGaugeVec {
    let g = int_gauge_vec(registry, name, help, &[label]);
    for v in values {
        g.with_label_values(&[*v]);
    }
    g
}

/// A counter with one label whose every value exists from the start.
pub fn counter_by(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> IntCounterVec {
    let c = register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid"),
    );
    for v in values {
        c.with_label_values(&[*v]);
    }
    c
}

/// A counter with two labels; `start` lists the series created at 0.
pub fn counter_by2(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: [&str; 2],
    start: &[[&str; 2]],
) -> IntCounterVec {
    let c = register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &labels).expect("valid"),
    );
    for pair in start {
        c.with_label_values(pair);
    }
    c
}

pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("valid"),
    )
}

/// A histogram with one label; `values` are the series created at 0.
pub fn histogram_by(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    buckets: &[f64],
) -> prometheus::HistogramVec {
    let h = register(
        registry,
        prometheus::HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            &[label],
        )
        .expect("valid"),
    );
    for v in values {
        h.with_label_values(&[*v]);
    }
    h
}

/// The words of a closed set, for the series created at 0.
pub fn words<T>(list: &[(&'static str, T)]) -> Vec<&'static str> {
    list.iter().map(|(w, _)| *w).collect()
}
