//! mdb, the machine database.
//!
//! # Layout
//! One folder per subsystem; imports point down this list, never up.
//! - `cli`: clap definitions, one function per subcommand, client helpers and tables.
//! - `config`: the service's configuration (file < env < flags), validated before any port is bound.
//! - `export`: Ansible inventory and cluster exports, DHCP leases, free addresses.
//! - `github`: issue text, fingerprints, the pure plan, the HTTP layer and the filer.
//! - `discover`: one sweep (`scan`: ARP, ICMP, ports, names), `classify` (pure) and the `sweep` loop.
//! - `serve`: wiring of `mdb serve` (ports, one drain deadline), the gRPC `api`, `shutdown`.
//! - `sync`: git2 fetch with a hard deadline, hard resync, re-clone only on damage.
//! - `metrics`: the process's Prometheus registry and what each subsystem records.
//! - `db`: YAML with positions, bounded load, validation, `Snapshot`, `Store`.
//! - `demo`, `gen`: the embedded demo database; generated databases.
//! - `net`, `secret`: small shared types (MACs and ranges; tokens that never print).

pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod discover;
pub mod export;
pub mod gen;
pub mod github;
pub mod metrics;
pub mod net;
pub mod provision;
pub mod secret;
pub mod serve;
pub mod sync;

/// The version and the commit mdb was built from: `0.1.0 (abc123def456)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MDB_GIT_REVISION"),
    ")"
);

pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("mdb.v1");

    /// For gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mdb_descriptor.bin"));
}
