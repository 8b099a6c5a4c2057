//! Discovery: what is on the network, compared with the database. `scan`
//! observes (one sweep), `classify` compares (a pure function), `sweep` is
//! the loop of `mdb serve` that keeps history and publishes. Nothing here
//! writes the database or talks to GitHub.

pub mod classify;
pub mod history;
pub mod metrics;
pub mod mirror_cache;
pub mod mirroring;
pub mod mirrors;
pub mod names;
pub mod received;
pub mod scan;
pub mod settings;
pub mod sources;
pub mod sweep;

pub use metrics::SweepMetrics;
