//! mdb, the machine database.
//!
//! # Layout
//! - `db`: YAML model, validation, immutable snapshots and the store.
//! - `sync`: git2 clone, poll and hourly hard resync of the DB repository.
//! - `api`: the read-only tonic service, health and reflection.
//! - `metrics`: the Prometheus registry and the HTTP endpoints.
//! - `config`: the service's own configuration (file, env, flags).
//! - `server`: wires the tasks of `mdb serve` together.
//! - `client`: the small gRPC client commands (`mdb list`, `mdb get`).
//! - `demo`: the embedded demo database.
//! - `net`: MAC addresses and address ranges.

pub mod api;
pub mod classify;
pub mod client;
pub mod config;
pub mod db;
pub mod demo;
pub mod dhcp;
pub mod discovery;
pub mod gen;
pub mod github;
pub mod inventory;
pub mod ipam;
pub mod metrics;
pub mod net;
pub mod scan;
pub mod server;
pub mod shutdown;
pub mod sync;

pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("mdb.v1");

    /// For gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mdb_descriptor.bin"));
}
