//! mdb, the machine database.
//!
//! # Layout
//! - `db`: YAML model with positions, validation, immutable snapshots, the store.
//! - `sync`: git2 clone, poll and hourly hard resync of the DB repository.
//! - `api`: the read-only tonic service.
//! - `server`: wires the tasks of `mdb serve` (sync, gRPC with health and
//!   reflection, metrics HTTP, extra tasks) under one cancellation token.
//! - `metrics`: the Prometheus registry and `/metrics`, `/healthz`, `/readyz`.
//! - `config`: the service's configuration (file, env, flags), validated.
//! - `scan`: one discovery sweep (ARP, ICMP, ports, names, vendors).
//! - `classify`: sweep × snapshot → host states (pure).
//! - `discovery`: the sweep loop and per-host history.
//! - `github`: issue text, fingerprints, the issue plan and the filer.
//! - `inventory`, `dhcp`, `ipam`: Ansible, cluster exports, DHCP leases, free addresses.
//! - `client`: gRPC client helpers and tables for the CLI.
//! - `demo`, `gen`: the embedded demo database; generated databases.
//! - `net`: MAC addresses and address ranges.
//! - `secret`: a credential that never prints.
//! - `shutdown`: SIGTERM/SIGINT → a cancelled token.

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
pub mod secret;
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
